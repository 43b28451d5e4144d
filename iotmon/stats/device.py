"""Per-device running statistics and sliding-window mean; semantics in :mod:`iotmon.stats`."""

from __future__ import annotations

import math
from array import array
from typing import Any

from iotmon.stats.window import WindowSpec

# head_us/last_event_us of a device that has seen no reading. Far enough below any real
# event time that the first reading always starts a fresh window, so add() needs no
# "first reading" branch.
NO_EVENT_US = -(2**63)

# DeviceStats.to_state() layout (a list, not a dict: one per device, so key names would
# dominate the size of a partition snapshot).
_STATE_LEN = 11
DeviceState = list[Any]

# DeviceStats._buf: all float state of a device in one array('d'), then the pane ring.
# One contiguous buffer instead of a float object per statistic saves ~200 bytes per device
# and keeps a reading's updates in one or two cache lines; the hot path indexes it with
# literals (no global lookups):
#   0 sum, 1 Neumaier compensation, 2 min, 3 max, 4 last,
#   5 window sum, 6 window count, 7 count   (counts as doubles: exact up to 2**53)
#   8 + 2*k: sum of the pane in ring slot k, 9 + 2*k: its reading count
_HEADER = 8
_FRESH = array("d", [0.0, 0.0, math.inf, -math.inf, math.nan, 0.0, 0.0, 0.0])


class DeviceStats:
    """Running statistics of one device plus the mean over its sliding event-time window.

    ``count``/``min``/``max``/``last``/``mean`` cover every reading ever added, late or not;
    ``window_mean``/``window_count`` cover the non-late readings inside the window.
    Before the first reading: count 0, min inf, max -inf, last and mean NaN, head_us and
    last_event_us ``NO_EVENT_US``. All attributes are read-only in spirit: ``head_us`` and
    ``last_event_us`` are plain slots only because they are read after every reading.
    """

    __slots__ = ("_buf", "_ringed", "head_us", "last_event_us", "spec")

    spec: WindowSpec
    last_event_us: int
    head_us: int
    # The ring (slot of pane i is i % N) is appended to _buf only once the window holds
    # readings from two different panes; until then every window reading is in the head
    # pane, and the window sum/count *are* that pane. Slots of panes outside the window are
    # kept at zero, so no per-slot pane ids are needed. A device reporting less often than
    # once per window never pays for a ring, and one that goes quiet for a window drops it.
    _buf: array[float]
    _ringed: bool

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.head_us = NO_EVENT_US
        self.last_event_us = NO_EVENT_US
        self._buf = _FRESH[:]
        self._ringed = False

    def __repr__(self) -> str:
        return (
            f"DeviceStats(count={self.count}, mean={self.mean!r}, min={self.min!r}, "
            f"max={self.max!r}, last={self.last!r}, head_us={self.head_us}, "
            f"window_count={self.window_count}, window_mean={self.window_mean!r})"
        )

    @property
    def count(self) -> int:
        return int(self._buf[7])

    @property
    def min(self) -> float:
        return self._buf[2]

    @property
    def max(self) -> float:
        return self._buf[3]

    @property
    def last(self) -> float:
        """Value of the reading that arrived last (not necessarily the latest event time)."""
        return self._buf[4]

    @property
    def mean(self) -> float:
        """All-time mean (compensated sum, so no drift); NaN before the first reading."""
        b = self._buf
        count = b[7]
        return (b[0] + b[1]) / count if count else math.nan

    @property
    def window_mean(self) -> float | None:
        """Mean of the non-late readings in the window; None if there are none."""
        b = self._buf
        wcount = b[6]
        return b[5] / wcount if wcount else None

    @property
    def window_count(self) -> int:
        return int(self._buf[6])

    def pane_means(self) -> tuple[float | None, ...]:
        """The mean of each pane of the window, oldest first, ending with the head pane's;
        None for a pane without readings. Empty before the first reading. Read when a
        digest is rendered (its trend), never on the hot path."""
        b = self._buf
        n = self.spec.panes
        if not b[6]:
            return ()
        if not self._ringed:
            # Every window reading is in the head pane.
            return (None,) * (n - 1) + (b[5] / b[6],)
        head = self.head_us // self.spec.pane_us
        means: list[float | None] = []
        for pane in range(head - n + 1, head + 1):
            i = 8 + 2 * (pane % n)
            count = b[i + 1]
            means.append(b[i] / count if count else None)
        return tuple(means)

    def add(self, value: float, event_us: int) -> bool:
        """Add one reading; return False if it was late for the window.

        A late reading still counts in count/mean/min/max/last/last_event_us.
        Raises ValueError for a NaN or infinite value, which would poison the sums forever.
        """
        if value - value != 0.0:
            raise ValueError(f"reading value must be finite, got {value!r}")
        b = self._buf
        # Neumaier (Kahan–Babuška) compensation, with the rounding error of s + value taken
        # from Knuth's branch-free TwoSum: exact whatever the magnitudes, and no abs() calls.
        s = b[0]
        t = s + value
        bv = t - s
        b[1] += (s - (t - bv)) + (value - bv)
        b[0] = t
        if value < b[2]:
            b[2] = value
        if value > b[3]:
            b[3] = value
        b[4] = value
        b[7] += 1.0
        self.last_event_us = event_us

        spec = self.spec
        pane_us = spec.pane_us
        head_us = self.head_us
        if event_us >= head_us:
            pane = event_us // pane_us
            head = head_us // pane_us
            self.head_us = event_us
            if pane != head:
                self._advance(head, pane, value)
                return True
        else:
            if event_us < head_us - spec.lateness_us:
                return False
            pane = event_us // pane_us
            head = head_us // pane_us
            if pane <= head - spec.panes:
                return False

        # The reading lands in `pane`, which is inside the window and not after the head.
        if not self._ringed:
            if pane == head:
                b[5] += value
                b[6] += 1.0
                return True
            b = self._make_ring(head)
        i = 8 + 2 * (pane % spec.panes)
        b[i] += value
        b[i + 1] += 1.0
        b[5] += value
        b[6] += 1.0
        return True

    def _make_ring(self, head: int) -> array[float]:
        """Append the ring; the current window contents all belong to pane `head`."""
        n = self.spec.panes
        b = self._buf + array("d", bytes(16 * n))
        i = 8 + 2 * (head % n)
        b[i] = b[5]
        b[i + 1] = b[6]
        self._buf = b
        self._ringed = True
        return b

    def _advance(self, head: int, pane: int, value: float) -> None:
        """Move the head from pane `head` to the later pane `pane` and add `value` there."""
        n = self.spec.panes
        b = self._buf
        if pane - head >= n:
            # Whole window evicted.
            if self._ringed:
                b = self._buf = b[:_HEADER]
                self._ringed = False
            b[5] = value
            b[6] = 1.0
            return
        if not self._ringed:
            # The old head pane stays in the window, so from now on panes must be tracked.
            b = self._make_ring(head)
        else:
            # Slot k % n of each newly covered pane k still holds pane k - n, which has
            # just left the window.
            evicted = 0.0
            for k in range(head + 1, pane + 1):
                i = 9 + 2 * (k % n)
                c = b[i]
                if c:
                    evicted += c
                    b[i - 1] = 0.0
                    b[i] = 0.0
            if evicted:
                b[6] -= evicted
                # Re-sum rather than subtract, so rounding errors cannot pile up over time.
                b[5] = math.fsum(b[_HEADER::2])
        i = 8 + 2 * (pane % n)
        b[i] = value
        b[i + 1] = 1.0
        b[5] += value
        b[6] += 1.0

    def to_state(self) -> DeviceState:
        """JSON-able snapshot; floats are stored as-is, so they round-trip exactly.

        Layout: ``[count, sum, comp, min, max, last, last_event_us, head_us, wsum, wcount,
        panes]`` where ``panes`` is None when every window reading is in the head pane, else
        a flat ``[pane_index, sum, count, ...]`` list of the non-empty panes in pane order.
        A device without readings is ``[]``.
        """
        b = self._buf
        if not b[7]:
            return []
        panes: list[int | float] | None = None
        if self._ringed:
            n = self.spec.panes
            head = self.head_us // self.spec.pane_us
            panes = []
            for pane in range(head - n + 1, head + 1):
                i = 8 + 2 * (pane % n)
                c = b[i + 1]
                if c:
                    panes += (pane, b[i], int(c))
        return [
            int(b[7]),
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            self.last_event_us,
            self.head_us,
            b[5],
            int(b[6]),
            panes,
        ]

    @classmethod
    def from_state(cls, spec: WindowSpec, state: object) -> DeviceStats:
        """Rebuild from :meth:`to_state` output; ValueError if the state is malformed."""
        self = cls(spec)
        if not isinstance(state, list):
            raise ValueError(f"device state must be a list, got {type(state).__name__}")
        if not state:
            return self
        if len(state) != _STATE_LEN:
            raise ValueError(f"device state must have {_STATE_LEN} items, got {len(state)}")
        count = _int("count", state[0], minimum=1)
        lo = _float("min", state[3])
        hi = _float("max", state[4])
        last = _float("last", state[5])
        last_event_us = _int("last_event_us", state[6])
        head_us = _int("head_us", state[7])
        wcount = _int("window count", state[9], minimum=0)
        panes = state[10]
        if not lo <= last <= hi:
            raise ValueError(f"device state: need min <= last <= max, got {lo}, {last}, {hi}")
        if last_event_us > head_us:
            raise ValueError(
                f"device state: last_event_us {last_event_us} is after head_us {head_us}"
            )
        if wcount > count:
            raise ValueError(f"device state: window count {wcount} exceeds count {count}")
        b = self._buf
        b[0] = _float("sum", state[1])
        b[1] = _float("comp", state[2])
        b[2] = lo
        b[3] = hi
        b[4] = last
        b[5] = _float("window sum", state[8])
        b[6] = wcount
        b[7] = count
        if panes is not None:
            self._buf = b + _ring_from_state(spec, head_us, wcount, panes)
            self._ringed = True
        self.last_event_us = last_event_us
        self.head_us = head_us
        return self


def _ring_from_state(spec: WindowSpec, head_us: int, wcount: int, panes: object) -> array[float]:
    if not isinstance(panes, list) or len(panes) % 3:
        raise ValueError("device state: panes must be null or a flat [pane, sum, count, ...] list")
    n = spec.panes
    head = head_us // spec.pane_us
    ring = array("d", bytes(16 * n))
    seen: set[int] = set()
    total = 0
    for j in range(0, len(panes), 3):
        pane = _int("pane index", panes[j])
        if not head - n < pane <= head:
            raise ValueError(
                f"device state: pane {pane} is outside the window ({head - n}, {head}] "
                "(was the state written with a different WindowSpec?)"
            )
        if pane in seen:
            raise ValueError(f"device state: pane {pane} listed twice")
        seen.add(pane)
        c = _int("pane count", panes[j + 2], minimum=1)
        i = 2 * (pane % n)
        ring[i] = _float("pane sum", panes[j + 1])
        ring[i + 1] = c
        total += c
    if total != wcount:
        raise ValueError(f"device state: pane counts add up to {total}, window count is {wcount}")
    return ring


def _int(name: str, value: object, *, minimum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"device state: {name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"device state: {name} must be >= {minimum}, got {value}")
    return value


def _float(name: str, value: object) -> float:
    # JSON writers other than orjson may print 20.0 as 20; accept ints, never bools.
    if not isinstance(value, float | int) or isinstance(value, bool):
        raise ValueError(f"device state: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"device state: {name} must be finite, got {value!r}")
    return value
