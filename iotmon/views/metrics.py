"""Prometheus metrics, read from the pipeline at scrape time.

A custom collector instead of counters bumped per reading: the hot path stays free of
metric calls, and the numbers served are exactly the ones the checkpoint and ``--json``
report (they come from the same counters).
"""

from __future__ import annotations

import errno
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import start_http_server
from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from iotmon.engine.assignment import ORIGINS
from iotmon.errors import ConfigError
from iotmon.notify import DeliveryStats
from iotmon.settings import DEFAULT_METRICS_HOST

if TYPE_CHECKING:
    from iotmon.engine.pipeline import Pipeline


__all__ = ["PipelineCollector", "serve_metrics"]


class PipelineCollector(Collector):
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def collect(
        self,
    ) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        p = self.pipeline
        # The server starts before the pipeline opens (a busy port fails before joining a
        # group, and a slow start still answers the healthcheck), so the parts open() builds
        # may not be there yet: their numbers are zero until then.
        alerter = p.alerter if p.opened else None
        parts = list(p.partitions.values())
        read = CounterMetricFamily("iotmon_readings_read", "Lines read from the source.")
        read.add_metric([], sum(x.read for x in parts))
        yield read
        accepted = CounterMetricFamily("iotmon_readings_accepted", "Readings accepted.")
        accepted.add_metric([], sum(x.accepted for x in parts))
        yield accepted
        rejected = CounterMetricFamily(
            "iotmon_readings_rejected",
            "Lines rejected and dead-lettered, by reason.",
            labels=["reason"],
        )
        reasons: Counter[str] = Counter()
        for part in parts:
            reasons.update(part.rejected)
        for reason, count in sorted(reasons.items()):
            rejected.add_metric([reason], count)
        yield rejected
        late = CounterMetricFamily("iotmon_readings_late", "Readings too late for their window.")
        late.add_metric([], sum(x.table.late for x in parts))
        yield late
        devices = GaugeMetricFamily("iotmon_devices_tracked", "Devices with statistics in memory.")
        devices.add_metric([], sum(len(x.table.devices) for x in parts))
        yield devices
        lag = GaugeMetricFamily(
            "iotmon_partition_lag",
            "Readings waiting in the source, per partition.",
            labels=["partition"],
        )
        for name, value in sorted((p.lag() if p.opened else {}).items()):
            lag.add_metric([name], value)
        yield lag
        duration = GaugeMetricFamily(
            "iotmon_checkpoint_duration_seconds", "Duration of the last checkpoint."
        )
        checkpointer = p.checkpointer
        duration.add_metric([], checkpointer.last_seconds if checkpointer is not None else 0.0)
        yield duration
        age = GaugeMetricFamily("iotmon_checkpoint_age_seconds", "Time since the last checkpoint.")
        last = checkpointer.last_at if checkpointer is not None else p.started_at
        age.add_metric([], time.monotonic() - last)
        yield age
        alerts = GaugeMetricFamily("iotmon_alerts", "Devices per alert state.", labels=["state"])
        states: Counter[str] = Counter(alerter.states().values() if alerter else ())
        for state in ("pending", "firing", "stale"):
            alerts.add_metric([state], states.get(state, 0))
        yield alerts
        silenced = GaugeMetricFamily(
            "iotmon_silenced_devices",
            "Pending, firing or stale devices whose notifications an active silence holds back.",
        )
        silenced.add_metric([], len(alerter.silenced_devices()) if alerter else 0)
        yield silenced
        delivery = p.notifications.stats() if p.opened else DeliveryStats()
        for name, help_text in (
            ("sent", "Notifications delivered."),
            ("retried", "Delivery attempts that failed and will be retried."),
            ("failed", "Notifications given up on (permanent errors)."),
        ):
            family = CounterMetricFamily(f"iotmon_notifications_{name}", help_text)
            family.add_metric([], getattr(delivery, name))
            yield family
        depth = GaugeMetricFamily("iotmon_outbox_depth", "Notifications waiting to be delivered.")
        depth.add_metric([], delivery.queued)
        yield depth
        batches = HistogramMetricFamily(
            "iotmon_batch_processing_seconds",
            "Time to parse a batch and fold it into statistics and alert states.",
        )
        batches.add_metric([], buckets=p.batch_seconds.cumulative(), sum_value=p.batch_seconds.sum)
        yield batches
        restores = CounterMetricFamily(
            "iotmon_partition_restores",
            "Partitions taken on, by where their state came from (changelog, cache, memory, new).",
            labels=["origin"],
        )
        counts = p.assignment.restores if p.assignment is not None else dict.fromkeys(ORIGINS, 0)
        for origin, count in sorted(counts.items()):
            restores.add_metric([origin], count)
        yield restores
        split = GaugeMetricFamily(
            "iotmon_split_devices",
            "Devices seen in more than one partition: the topic is not keyed by device "
            "(fix: iotmon repartition).",
        )
        split.add_metric([], p.split_devices)
        yield split
        uptime = GaugeMetricFamily("iotmon_uptime_seconds", "Seconds since the pipeline started.")
        uptime.add_metric([], time.monotonic() - p.started_at)
        yield uptime


def serve_metrics(
    pipeline: Pipeline,
    *,
    host: str = DEFAULT_METRICS_HOST,
    port: int,
    registry: CollectorRegistry = REGISTRY,
) -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` (loopback unless told otherwise) in a thread;
    returns a function that stops the server. The pipeline need not be open yet.

    Raises :class:`~iotmon.errors.ConfigError` when the address cannot be served (port in
    use, no such local address)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        remedy = (
            "stop what listens there or pick another `metrics_port`"
            if exc.errno == errno.EADDRINUSE
            else "check `metrics_host` (an address of this machine) and `metrics_port`"
        )
        raise ConfigError(
            f"metrics-port: cannot serve metrics on {host}:{port} "
            f"({exc.strerror or exc}) — {remedy}",
            setting=("metrics_port", "metrics_host"),
        ) from None
    collector = PipelineCollector(pipeline)
    registry.register(collector)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        registry.unregister(collector)

    return stop
