"""Progress and throughput on stderr for long-running commands.

On a terminal it draws a rich progress bar; otherwise (CI logs, files, pipes) it prints one
plain line every ``interval`` seconds: ``label: 1,234,567 lines, 215,000 lines/s``. Either
way :meth:`Progress.close` prints a final summary with the overall rate.

:meth:`Progress.advance` is meant to be called per chunk, not per item: it reads the clock
on every call.

:class:`Pacer` is the matching rate limiter (items per wall-clock second) for the same loops.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Pacer", "Progress"]


class Progress:
    """Counts items and reports the rate on ``stream`` (stderr by default).

    ``enabled=False`` keeps counting (for the final figures) but prints nothing.
    ``fancy`` forces (True) or forbids (False) the rich bar; by default it is used when
    ``stream`` is a terminal.
    """

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "lines",
        stream: TextIO | None = None,
        interval: float = 2.0,
        enabled: bool = True,
        fancy: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.enabled = enabled
        self.count = 0
        self._t0 = time.monotonic()
        self._t_end: float | None = None
        self._last_t = self._t0
        self._last_count = 0
        self._next = self._t0 + interval
        self._bar: Any = None
        self._task: Any = None
        if enabled and (fancy if fancy is not None else _isatty(self.stream)):
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as RichProgress

        columns: list[Any] = [TextColumn("[bold]{task.description}")]
        if self.total is not None:
            columns += [BarColumn(), TaskProgressColumn(), MofNCompleteColumn()]
        else:
            columns.append(TextColumn("{task.completed:,} " + self.unit))
        columns += [TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
        self._bar = RichProgress(
            *columns,
            console=Console(file=self.stream),
            auto_refresh=False,
            transient=True,  # the summary line replaces it
        )
        self._task = self._bar.add_task(self.label, total=self.total, rate="")
        self._bar.start()
        # The bar is redrawn at most this often; the plain-line interval is far too slow.
        self._next = self._t0 + 0.1

    @property
    def elapsed(self) -> float:
        end = self._t_end if self._t_end is not None else time.monotonic()
        return end - self._t0

    @property
    def rate(self) -> float:
        """Overall items per second so far (or over the whole run once closed)."""
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int = 1) -> None:
        self.count += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now >= self._next:
            self._report(now)

    def _report(self, now: float) -> None:
        span = now - self._last_t
        recent = (self.count - self._last_count) / span if span > 0 else 0.0
        self._last_t, self._last_count = now, self.count
        if self._bar is not None:
            self._bar.update(self._task, completed=self.count, rate=f"{recent:,.0f} {self.unit}/s")
            self._bar.refresh()
            self._next = now + 0.1
            return
        total = f"/{self.total:,}" if self.total is not None else ""
        print(
            f"{self.label}: {self.count:,}{total} {self.unit}, {recent:,.0f} {self.unit}/s",
            file=self.stream,
            flush=True,
        )
        self._next = now + self.interval

    def summary(self) -> str:
        """``label: 20,000 lines in 0.10 s (200,000 lines/s)``."""
        return (
            f"{self.label}: {self.count:,} {self.unit} in {self.elapsed:.2f} s "
            f"({self.rate:,.0f} {self.unit}/s)"
        )

    def close(self, *, summary: bool = True) -> None:
        """Stop the clock, remove the bar and print the summary line (once)."""
        if self._t_end is not None:
            return
        self._t_end = time.monotonic()
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(
                self._task, completed=self.count, rate=f"{self.rate:,.0f} {self.unit}/s"
            )
            self._bar.refresh()
            self._bar.stop()
        if summary:
            print(self.summary(), file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Pacer:
    """Keeps a producer at ``rate`` items per wall-clock second (``None`` = unlimited)."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be > 0 per second, got {rate}")
        self.rate = rate
        self._t0 = time.monotonic()
        # Small chunks at low rates keep the output smooth; big ones keep the overhead low.
        self.chunk = 4096 if rate is None else max(1, min(4096, int(rate / 50)))

    def delay(self, done: int) -> float:
        """Seconds to wait before emitting more, after ``done`` items in total."""
        if self.rate is None:
            return 0.0
        return max(0.0, self._t0 + done / self.rate - time.monotonic())
