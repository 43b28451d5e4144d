"""How far ahead of its stream a reading may be (``--max-future``).

A device's window and the stream clock only move forward, so one reading dated far ahead
would make every later reading of its device "late" (its alerts silenced, or its alert
stuck on) and, through the stream clock, mark the other devices stale. Such a reading is
rejected (``future_time``) when it is more than ``max_future`` ahead of either reference:

- **wall time**: a reading from the future is never real, live or replayed. This is the
  only reference for a partition's first reading, which would otherwise set the clock.
- **the partition's clock**: its latest accepted event time, moved on by the wall time
  that has passed since it was seen. Live, that is about wall time again, and a device that
  was quiet for a day is welcome back; in a replay at full speed (a 2023 log read in 2026)
  it is the replay's own time, so a reading years ahead of its neighbours is caught.

A real gap in replayed data (a night without readings) jumps ahead too. It is told from
one bad reading by what follows: a second reading beyond the bound, agreeing with the
first within ``max_future``, before the partition's clock has moved, shows the stream
really moved on. It is accepted and the clock follows; the first one stays rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_MAX_FUTURE_SECONDS", "LONGEST_MAX_FUTURE_SECONDS", "Horizon"]

DEFAULT_MAX_FUTURE_SECONDS: Final = 3600.0
LONGEST_MAX_FUTURE_SECONDS: Final = 100 * 366 * 86400.0
"""A longer bound would let event times come near year 9999, beyond which alert and digest
times (event time plus waits) cannot be written as dates."""


@dataclass(slots=True)
class Horizon:
    """One partition's bound on event time; the pipeline inlines the common case (a reading
    not beyond the running limit) and asks :meth:`limit` only past it."""

    head_wall_us: int = 0
    """Wall time when the partition's clock (``head_us``) last moved (0: not known)."""
    jump_us: int = 0
    """A rejected reading's time that a second one may confirm as the stream moving on..."""
    jump_from_us: int = 0
    """...as long as the partition's clock is still where it was then."""

    def reference(self, head_us: int, now_us: int) -> int:
        """Where the partition's stream is at wall time ``now_us``: its clock plus the wall
        time since it moved, never later than wall time (0: the partition has no clock)."""
        if not head_us:
            return 0
        if not self.head_wall_us:
            # Restored from a checkpoint that did not record it: wall time is all there is.
            return now_us
        return min(head_us + max(0, now_us - self.head_wall_us), now_us)

    def limit(
        self, event_us: int, *, head_us: int, reference_us: int, now_us: int, ahead_us: int
    ) -> int:
        """The latest event time accepted from here on, asked for a reading at ``event_us``
        beyond the running limit: the reading is rejected if it is still above the answer.

        ``reference_us`` is :meth:`reference` at the start of the batch and ``head_us`` the
        partition's clock now (it may have moved since).
        """
        wall_limit = now_us + ahead_us
        if event_us > wall_limit:
            return wall_limit
        if head_us:
            limit = min(max(reference_us, head_us), now_us) + ahead_us
            if event_us <= limit:
                return limit
            confirmed = self.jump_from_us == head_us and abs(event_us - self.jump_us) <= ahead_us
            if not confirmed:
                self.jump_us, self.jump_from_us = event_us, head_us
                return limit
        self.jump_us = self.jump_from_us = 0
        return min(event_us, now_us) + ahead_us
