"""The Prometheus endpoint, scraped over HTTP after a real run: every number it serves agrees
with the pipeline's final report, and the report with the simulator's ground truth."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from pathlib import Path

import orjson
from prometheus_client.registry import CollectorRegistry

from iotmon.alerts import AlertSettings
from iotmon.engine.pipeline import Pipeline
from iotmon.notify import EmailSettings, SmtpSettings
from iotmon.parse import parse_event_time
from iotmon.settings import Settings, SourceSettings
from iotmon.stats import WindowSpec
from iotmon.tools.fleet import Fleet
from iotmon.views.metrics import serve_metrics
from tests.conftest import MakeTopic, SMTPCapture
from tests.helpers import (
    SEED_FILE,
    free_port,
    iotmon,
    labelled,
    metric,
    scrape,
    scrape_until,
    spawn,
    stop,
)

START_US = parse_event_time("2026-01-01T00:00:00Z")


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
    assert metric(samples, "iotmon_readings_read_total") == report.readings
    assert metric(samples, "iotmon_readings_accepted_total") == report.accepted
    by_reason = labelled(samples, "iotmon_readings_rejected_total", "reason")
    assert by_reason == {k: float(v) for k, v in report.rejected_by_reason.items()}
    assert sum(by_reason.values()) == report.rejected
    assert metric(samples, "iotmon_readings_late_total") == report.late
    assert metric(samples, "iotmon_devices_tracked") == len(report.devices) == 8
    states = Counter(report.alert_states.values())
    for state in ("pending", "firing", "stale"):
        assert metric(samples, "iotmon_alerts", state=state) == states.get(state, 0), state
    assert metric(samples, "iotmon_notifications_sent_total") == len(received)
    assert metric(samples, "iotmon_notifications_failed_total") == 0
    assert metric(samples, "iotmon_notifications_retried_total") == 0
    assert metric(samples, "iotmon_outbox_depth") == 0
    # One input file is one partition, read to its end.
    lag = labelled(samples, "iotmon_partition_lag", "partition")
    assert list(lag.values()) == [0.0] and list(lag) == list(report.partitions)
    assert metric(samples, "iotmon_checkpoint_duration_seconds") >= 0
    assert metric(samples, "iotmon_checkpoint_age_seconds") >= 0
    assert metric(samples, "iotmon_uptime_seconds") > 0
    # A fresh state dir: the file's one partition started from nothing.
    restores = labelled(samples, "iotmon_partition_restores_total", "origin")
    assert restores == {"cache": 0.0, "changelog": 0.0, "memory": 0.0, "new": 1.0}
    assert metric(samples, "iotmon_split_devices") == 0
    batches = metric(samples, "iotmon_batch_processing_seconds_count")
    assert batches >= 1
    assert metric(samples, "iotmon_batch_processing_seconds_bucket", le="+Inf") == batches


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
    assert metric(samples, "iotmon_readings_read_total") == 0
    assert metric(samples, "iotmon_devices_tracked") == 0
    assert labelled(samples, "iotmon_readings_rejected_total", "reason") == {}
    assert metric(samples, "iotmon_alerts", state="firing") == 0


async def test_metrics_before_the_pipeline_is_open(tmp_path: Path) -> None:
    """The CLI serves /metrics before open(), so a scrape may come first: zeros, no error."""
    settings = Settings(
        source=SourceSettings(input=str(SEED_FILE), once=True),
        state_dir=tmp_path / "state",
        email=EmailSettings(eml_dir=tmp_path / "outbox"),
    )
    port = free_port()
    pipeline = Pipeline(settings)
    stop_server = serve_metrics(pipeline, host="127.0.0.1", port=port, registry=CollectorRegistry())
    try:
        samples = await asyncio.to_thread(scrape, port)
    finally:
        stop_server()
    assert metric(samples, "iotmon_readings_read_total") == 0
    assert metric(samples, "iotmon_notifications_sent_total") == 0
    assert metric(samples, "iotmon_alerts", state="firing") == 0
    assert labelled(samples, "iotmon_partition_lag", "partition") == {}


# -- through the CLI, as users (and compose.yaml) run it ----------------------------------

SEED_LINES = SEED_FILE.read_bytes().splitlines(keepends=True)


def test_consume_once_with_metrics_port(tmp_path: Path) -> None:
    """The issue's command: it used to crash at start (``AssertionError: open() first``)."""
    result = iotmon(
        "consume",
        *("--input", str(SEED_FILE), "--once", "--no-live", "--json"),
        *("--metrics-port", str(free_port()), "--state-dir", str(tmp_path / "state")),
    )
    assert orjson.loads(result.stdout)["readings"] == len(SEED_LINES)
    assert b"Traceback" not in result.stderr


def test_consume_follow_serves_live_metrics_over_http(tmp_path: Path) -> None:
    data = tmp_path / "live.txt"
    data.write_bytes(b"".join(SEED_LINES[:4000]))
    port = free_port()
    proc = spawn(
        "consume",
        *("--input", str(data), "--follow", "--no-live", "--metrics-port", str(port)),
        *("--state-dir", str(tmp_path / "state"), "--outbox", str(tmp_path / "eml")),
    )
    try:
        first = scrape_until(proc, port, lambda s: metric(s, "iotmon_readings_read_total") == 4000)
        assert metric(first, "iotmon_readings_accepted_total") == 4000
        assert metric(first, "iotmon_devices_tracked") > 0
        with data.open("ab") as handle:
            handle.write(b"".join(SEED_LINES[4000:]))
        later = scrape_until(
            proc, port, lambda s: metric(s, "iotmon_readings_read_total") == len(SEED_LINES)
        )
        assert labelled(later, "iotmon_partition_lag", "partition") == {f"file:{data}": 0.0}
    finally:
        if proc.poll() is None:
            stop(proc)
    # The server went with the process.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_consume_kafka_serves_metrics_over_http(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path, changelogs: list[str]
) -> None:
    topic = await make_topic(partitions=3)
    changelogs.append("metrics-cli")
    iotmon("produce", str(SEED_FILE), "--bootstrap-servers", kafka_bootstrap, "--topic", topic)
    port = free_port()
    proc = spawn(
        "consume",
        *("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--group", "metrics-cli"),
        *("--no-live", "--metrics-port", str(port), "--state-dir", str(tmp_path / "state")),
        *("--outbox", str(tmp_path / "eml")),
    )
    try:
        samples = await asyncio.to_thread(
            scrape_until,
            proc,
            port,
            lambda s: metric(s, "iotmon_readings_read_total") == len(SEED_LINES),
            timeout=120,
        )
        lag = labelled(samples, "iotmon_partition_lag", "partition")
        assert len(lag) == 3 and set(lag.values()) == {0.0}, lag
        assert metric(samples, "iotmon_partition_restores_total", origin="new") == 3
    finally:
        if proc.poll() is None:
            await asyncio.to_thread(stop, proc)


def test_metrics_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = iotmon(
            "consume",
            *("--input", str(SEED_FILE), "--once", "--no-live", "--metrics-port", str(port)),
            *("--state-dir", str(tmp_path / "state")),
            check=False,
        )
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port}" in lines[0] and "--metrics-port" in lines[0], lines[0]
    # Refused before anything started: no state was touched.
    assert not (tmp_path / "state" / "partitions").exists()
