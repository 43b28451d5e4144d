"""The stream clock: the time that drives stale detection and digest timing.

It is the latest event time seen minus the allowed lateness, so a replay at full speed and
a live run produce the same alerts; while the stream is idle it moves on with wall time, so
pending notifications still go out when readings stop. It never moves backwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["StreamClock"]


class StreamClock:
    def __init__(self, *, lateness_us: int, now_us: int = 0) -> None:
        self.lateness_us = lateness_us
        self.now_us = now_us
        """Stream time (µs since the epoch); 0 until the first reading."""
        self._idle_since: float | None = None

    def advance(self, heads: Mapping[str, int], lag: Callable[[], Mapping[str, int]]) -> None:
        """Follow the partitions' latest event times (``heads``, 0: none yet).

        With several partitions the slowest one with a backlog (``lag``, asked only then)
        sets the pace: one catching up after a restart must not see its devices judged by a
        clock that another partition has pushed ahead. A caught-up partition holds nothing
        back, so it does not hold the clock back either (else one quiet partition would
        stall every alert)."""
        known = [(name, head) for name, head in heads.items() if head]
        if not known:
            return
        if len(known) == 1:
            head = known[0][1]
        else:
            waiting = lag()
            behind = [h for name, h in known if waiting.get(name, 1) > 0]
            head = min(behind) if behind else max(h for _, h in known)
        watermark = head - self.lateness_us
        if watermark > self.now_us:
            self.now_us = watermark

    def busy(self) -> None:
        """A batch arrived: the stream, not wall time, moves the clock."""
        self._idle_since = None

    def idle(self, now: float) -> None:
        """Nothing arrived at monotonic time ``now``: move on by the wall time since the
        last idle beat (the first one only starts counting)."""
        if self._idle_since is None:
            self._idle_since = now
            return
        elapsed_us = int((now - self._idle_since) * 1_000_000)
        self._idle_since = now
        if self.now_us:
            self.now_us += elapsed_us
