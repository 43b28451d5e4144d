"""A user's typed script: `mypy --strict` must accept it (checked by tests/test_api.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import iotmon


async def lines() -> AsyncIterator[bytes]:
    yield b'{"id_equipamento": "E-1", "data_evento": "2026-01-01T00:00:00Z",'
    yield b' "padrao": {"leitura": {"temperatura": 80.0}}}'


async def to_chat(notification: iotmon.Notification) -> None:
    digest: iotmon.Digest = notification.digest
    firing: list[str] = [device.device for device in digest.firing]
    if not firing:
        raise iotmon.TransientDeliveryError("nothing to say yet")


async def main(state: Path) -> float | None:
    settings = iotmon.Settings(
        parse=iotmon.ParseSettings(key_field="sensor"),
        window=iotmon.WindowSpec.from_seconds(window=60, pane=5, lateness=5),
        alerts=iotmon.AlertSettings(threshold=75.0, metric="running", for_seconds=0),
        state_dir=state,
    )
    async with iotmon.Pipeline(settings, source=lines(), notifier=to_chat) as pipeline:
        report: iotmon.Report = await pipeline.run_once()
        summary: iotmon.DeviceSummary = report.devices["E-1"]
        return summary.window_mean


def blocking(state: Path) -> iotmon.Report:
    return iotmon.run_once_sync(
        iotmon.Settings(source=iotmon.SourceSettings(input="log.txt", once=True), state_dir=state)
    )


if __name__ == "__main__":
    print(asyncio.run(main(Path(".state"))))
