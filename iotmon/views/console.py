"""What a person watching ``consume`` or ``demo`` sees on stderr.

On a terminal: a live table (rich) of the hottest devices — firing and pending ones marked —
with throughput, rejects and lag. Elsewhere (CI, journald, ``--no-live``): one plain status
line every ``interval`` seconds, which greps and logs well.
"""

from __future__ import annotations

import asyncio
import heapq
import sys
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Final

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from iotmon.aio import stop_task
from iotmon.alerts.rules import DEFAULT_THRESHOLD
from iotmon.display import printable
from iotmon.parse import format_event_time
from iotmon.report import DeviceSummaries, DeviceSummary, Report
from iotmon.stats import DeviceStats

if TYPE_CHECKING:
    from iotmon.engine.pipeline import Pipeline

__all__ = ["StatusPrinter", "device_table"]

TOP_DEVICES: Final = 15
_MARKERS: Final = {"firing": "🔥 firing", "pending": "… pending", "stale": "⌛ stale"}
_SILENCED: Final = "(silenced)"


def device_table(
    report: Report,
    *,
    threshold: float,
    limit: int = TOP_DEVICES,
    silenced: Collection[str] = (),
) -> Table:
    """Devices above the threshold first, then the hottest by window mean; the alert state
    of the ``silenced`` ones says so (their notifications are held back)."""

    def hotness(device: DeviceSummary | DeviceStats) -> tuple[bool, float]:
        window_mean = device.window_mean
        value = window_mean if window_mean is not None else device.mean
        return (value > threshold, value)

    table = Table(title=f"hottest devices (threshold {threshold:.1f} °C)", expand=False)
    for column in ("device", "window mean", "running mean", "max", "count", "last seen", "alert"):
        if column == "device":
            table.add_column(column, no_wrap=True, min_width=23)
        else:
            table.add_column(column, justify="left" if column == "alert" else "right")
    devices = report.devices
    if isinstance(devices, DeviceSummaries):
        ranked = devices.top(limit, key=hotness)
    else:
        ranked = heapq.nlargest(limit, devices.items(), key=lambda item: hotness(item[1]))
    for key, device in ranked:
        window = "—" if device.window_mean is None else f"{device.window_mean:.2f}"
        state = report.alert_states.get(key, "")
        style = "bold red" if state == "firing" else "yellow" if state == "pending" else ""
        table.add_row(
            # A Text, not a str: rich would read "[bold]" in an id as markup.
            Text(printable(key)),
            window,
            f"{device.mean:.2f}",
            f"{device.max:.1f}",
            str(device.count),
            format_event_time(device.last_event_us)[:19],
            _MARKERS.get(state, state) + (f" {_SILENCED}" if key in silenced else ""),
            style="dim" if key in silenced else style,
        )
    return table


class StatusPrinter:
    """Runs beside the pipeline and reports on it; ``async with`` starts and stops it."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        live: bool,
        interval: float = 10.0,
        threshold: float = DEFAULT_THRESHOLD,
        console: Console | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.live = live
        self.interval = interval if not live else 0.5
        self.threshold = threshold
        # Not a terminal: no wrapping at 80 columns, so status lines stay one greppable line.
        self.console = console or Console(file=sys.stderr, soft_wrap=not sys.stderr.isatty())
        self._task: asyncio.Task[None] | None = None
        self._last = (time.monotonic(), 0)

    async def __aenter__(self) -> StatusPrinter:
        self._task = asyncio.create_task(self._loop(), name="iotmon-status")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await stop_task(self._task)

    def status_line(self) -> str:
        read, accepted, rejected = self.pipeline.counters()
        now = time.monotonic()
        then, before = self._last
        rate = (read - before) / (now - then) if now > then else 0.0
        self._last = (now, read)
        states = self.pipeline.alerter.states()
        firing = sum(1 for s in states.values() if s == "firing")
        pending = sum(1 for s in states.values() if s == "pending")
        lag = sum(self.pipeline.lag().values())
        devices = sum(len(p.table.devices) for p in self.pipeline.partitions.values())
        silenced = len(self.pipeline.alerter.silenced_devices())
        return (
            f"read={read} accepted={accepted} rejected={rejected} rate={rate:,.0f}/s "
            f"devices={devices} firing={firing} pending={pending} silenced={silenced} lag={lag}"
        )

    async def _loop(self) -> None:
        if not self.live:
            while True:
                await asyncio.sleep(self.interval)
                self.console.print(self.status_line(), markup=False, highlight=False)
        with Live(console=self.console, refresh_per_second=2, transient=False) as view:
            while True:
                await asyncio.sleep(self.interval)
                report = self.pipeline.snapshot(copy=False)
                table = device_table(
                    report,
                    threshold=self.threshold,
                    silenced=set(self.pipeline.alerter.silenced_devices()),
                )
                view.update(Group(table, self.status_line()))

    def final(self, report: Report) -> None:
        self.console.print(device_table(report, threshold=self.threshold))
        self.console.print(
            f"final: read={report.readings} accepted={report.accepted} "
            f"rejected={report.rejected} late={report.late} devices={len(report.devices)}",
            markup=False,
            highlight=False,
        )
