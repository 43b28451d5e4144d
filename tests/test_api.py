"""The public library API: custom sources and notifiers, inside a running event loop."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import iotmon
from iotmon.parse import format_event_time
from tests.helpers import SEED_FILE

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs


def line(device: str, celsius: float, at_us: int) -> bytes:
    return b'{"id_equipamento":"%s","data_evento":"%s","padrao":{"leitura":{"temperatura":%r}}}' % (
        device.encode(),
        format_event_time(at_us).encode(),
        celsius,
    )


async def hot_and_cool_devices() -> AsyncIterator[bytes]:
    """Ten minutes, one reading a second: HOT at 80 °C, COOL at 70 °C, and junk."""
    for second in range(600):
        at = T0 + second * 1_000_000
        yield line("HOT", 80.0, at)
        yield line("COOL", 70.0, at)
        if second % 100 == 0:
            yield b"not json"


def settings_for(tmp_path: Path) -> iotmon.Settings:
    return iotmon.Settings(
        alerts=iotmon.AlertSettings(threshold=75.0, for_seconds=60, group_wait=10),
        email=iotmon.EmailSettings(mail_to=("ops@example.com",)),
        state_dir=tmp_path / "state",
    )


async def test_custom_source_and_notifier_in_a_running_loop(tmp_path: Path) -> None:
    received: list[iotmon.Notification] = []

    async def collect(notification: iotmon.Notification) -> None:
        received.append(notification)

    pipeline = iotmon.Pipeline(
        settings_for(tmp_path), source=hot_and_cool_devices(), notifier=collect
    )
    async with pipeline:
        report = await pipeline.run_once()
    assert (report.readings, report.accepted, report.rejected) == (1206, 1200, 6)
    assert report.above(75.0) == {"HOT": 80.0}
    assert report.alert_states == {"HOT": "firing"}
    assert [(a.device, a.state) for a in report.alerts] == [("HOT", "pending"), ("HOT", "firing")]
    assert len(received) == 1
    (digest_device,) = received[0].digest.firing
    assert digest_device.device == "HOT"
    assert received[0].message["To"] == "ops@example.com"


async def test_a_transient_notifier_error_is_retried(tmp_path: Path) -> None:
    attempts: list[str] = []

    async def flaky(notification: iotmon.Notification) -> None:
        attempts.append(notification.message_id)
        if len(attempts) == 1:
            raise iotmon.TransientDeliveryError("chat service busy")

    settings = settings_for(tmp_path)
    settings = iotmon.Settings(
        alerts=settings.alerts,
        email=iotmon.EmailSettings(
            mail_to=("ops@example.com",),
            delivery=iotmon.notify.DeliverySettings(initial_backoff=0.01, max_backoff=0.02),
        ),
        state_dir=settings.state_dir,
    )
    async with iotmon.Pipeline(settings, source=hot_and_cool_devices(), notifier=flaky) as p:
        await p.run_once()
        assert p.notifications.stats().sent == 1
    assert len(attempts) == 2 and attempts[0] == attempts[1]


async def test_snapshot_while_running_and_stop(tmp_path: Path) -> None:
    async def endless() -> AsyncIterator[bytes]:
        second = 0
        while True:
            yield line("D", 20.0 + second % 3, T0 + second * 1_000_000)
            second += 1

    pipeline = iotmon.Pipeline(settings_for(tmp_path), source=endless())
    seen: list[int] = []

    def watch(p: iotmon.Pipeline) -> None:
        seen.append(p.snapshot().readings)
        if seen[-1] >= 10_000:
            p.stop()

    pipeline.on_progress(watch)
    async with pipeline:
        report = await pipeline.run()
    assert report.readings >= 10_000
    assert seen == sorted(seen)
    assert report.devices["D"].count == report.readings


def test_run_once_sync_from_plain_code(tmp_path: Path) -> None:
    settings = iotmon.Settings(
        source=iotmon.SourceSettings(input=str(SEED_FILE), once=True),
        parse=iotmon.ParseSettings(key_field="sensor"),
        state_dir=tmp_path / "state",
        email=iotmon.EmailSettings(eml_dir=tmp_path / "outbox"),
    )
    report = iotmon.run_once_sync(settings)
    assert len(report.devices) == 50 and report.readings == 10_000


async def test_run_sync_works_inside_a_running_loop(tmp_path: Path) -> None:
    async def answer() -> int:
        return 42

    assert iotmon.run_sync(answer()) == 42


async def test_run_once_needs_a_finite_source(tmp_path: Path) -> None:
    settings = iotmon.Settings(source=iotmon.SourceSettings(input=str(SEED_FILE)))
    with pytest.raises(ValueError, match="once=True"):
        await iotmon.Pipeline(settings).run_once()


def test_a_typed_user_script_passes_mypy_strict() -> None:
    usage = Path(__file__).parent / "typing" / "usage.py"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(usage)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
