"""The Prometheus endpoint, scraped over HTTP after a real run: every number it serves agrees
with the pipeline's final report, and the report with the simulator's ground truth."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from iotmon.alerts import AlertSettings
from iotmon.metrics import serve_metrics
from iotmon.notify import EmailSettings, SmtpSettings
from iotmon.pipeline import Pipeline
from iotmon.settings import Settings, SourceSettings
from iotmon.simulate import Fleet, parse_event_time
from iotmon.stats import WindowSpec
from tests.conftest import SMTPCapture

START_US = parse_event_time("2026-01-01T00:00:00Z")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def labelled(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(key)[label]: v for (n, key), v in samples.items() if n == name}


async def test_metrics_agree_with_the_report(tmp_path: Path, smtp_server: SMTPCapture) -> None:
    fleet = Fleet.create(devices=8, seed=5, overheat_fraction=0.125, bad_rate=0.02, horizon_s=900.0)
    readings = fleet.readings(start_us=START_US, duration=900.0)
    data = tmp_path / "readings.txt"
    data.write_bytes(b"\n".join(readings) + b"\n")
    truth = readings.manifest()
    overheater = next(d["id_equipamento"] for d in truth["devices"] if d["overheat"])

    settings = Settings(
        source=SourceSettings(input=str(data), once=True),
        window=WindowSpec.from_seconds(window=60, pane=5, lateness=5),
        state_dir=tmp_path / "state",
        alerts=AlertSettings(for_seconds=30, group_wait=5, group_interval=30),
        email=EmailSettings(
            mail_to=("ops@example.com",),
            smtp=SmtpSettings(host=smtp_server.host, port=smtp_server.port, security="none"),
        ),
    )
    port = free_port()
    async with Pipeline(settings) as pipeline:
        stop = serve_metrics(pipeline, host="127.0.0.1", port=port, registry=CollectorRegistry())
        report = await pipeline.run_once()
        samples = await asyncio.to_thread(scrape, port)
        stop()
    received = smtp_server.messages

    # The report against the ground truth.
    assert report.readings == truth["totals"]["lines"]
    # A malformed line that only lacks the `sensor` label is still a valid reading here.
    assert 0 < report.rejected <= truth["totals"]["bad"]
    assert report.alert_states == {overheater: "firing"}
    assert received, "the overheating device should have been mailed about"

    # The endpoint against the report.
    assert value(samples, "iotmon_readings_read_total") == report.readings
    assert value(samples, "iotmon_readings_accepted_total") == report.accepted
    by_reason = labelled(samples, "iotmon_readings_rejected_total", "reason")
    assert by_reason == {k: float(v) for k, v in report.rejected_by_reason.items()}
    assert sum(by_reason.values()) == report.rejected
    assert value(samples, "iotmon_readings_late_total") == report.late
    assert value(samples, "iotmon_devices_tracked") == len(report.devices) == 8
    states = Counter(report.alert_states.values())
    for state in ("pending", "firing", "stale"):
        assert value(samples, "iotmon_alerts", state=state) == states.get(state, 0), state
    assert value(samples, "iotmon_notifications_sent_total") == len(received)
    assert value(samples, "iotmon_notifications_failed_total") == 0
    assert value(samples, "iotmon_notifications_retried_total") == 0
    assert value(samples, "iotmon_outbox_depth") == 0
    # One input file is one partition, read to its end.
    lag = labelled(samples, "iotmon_partition_lag", "partition")
    assert list(lag.values()) == [0.0] and list(lag) == list(report.partitions)
    assert value(samples, "iotmon_checkpoint_duration_seconds") >= 0
    assert value(samples, "iotmon_checkpoint_age_seconds") >= 0
    assert value(samples, "iotmon_uptime_seconds") > 0
    # A fresh state dir: the file's one partition started from nothing.
    restores = labelled(samples, "iotmon_partition_restores_total", "origin")
    assert restores == {"cache": 0.0, "changelog": 0.0, "memory": 0.0, "new": 1.0}
    assert value(samples, "iotmon_split_devices") == 0
    batches = value(samples, "iotmon_batch_processing_seconds_count")
    assert batches >= 1
    assert value(samples, "iotmon_batch_processing_seconds_bucket", le="+Inf") == batches


async def test_metrics_before_any_input(tmp_path: Path) -> None:
    """A scrape right after start (nothing read yet) is valid and all zero."""
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    settings = Settings(
        source=SourceSettings(input=str(empty), once=True),
        state_dir=tmp_path / "state",
        email=EmailSettings(eml_dir=tmp_path / "outbox"),
    )
    port = free_port()
    async with Pipeline(settings) as pipeline:
        stop = serve_metrics(pipeline, host="127.0.0.1", port=port, registry=CollectorRegistry())
        samples = await asyncio.to_thread(scrape, port)
        stop()
    assert value(samples, "iotmon_readings_read_total") == 0
    assert value(samples, "iotmon_devices_tracked") == 0
    assert labelled(samples, "iotmon_readings_rejected_total", "reason") == {}
    assert value(samples, "iotmon_alerts", state="firing") == 0
