"""Per-device running statistics and sliding-window mean; semantics in :mod:`iotmon.stats`."""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import Any

from iotmon.parse import canonical_event_us
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
# DeviceStats.hold(): the time that seals a held list (after every canonical time).
_SEALED = "\U0010ffff"
_FRESH = array("d", [0.0, 0.0, math.inf, -math.inf, math.nan, 0.0, 0.0, 0.0])


class DeviceStats:
    """Running statistics of one device plus the mean over its sliding event-time window.

    ``count``/``min``/``max``/``last``/``mean`` cover every reading ever added, late or not;
    ``window_mean``/``window_count`` cover the non-late readings inside the window.
    Before the first reading: count 0, min inf, max -inf, last and mean NaN, head_us and
    last_event_us ``NO_EVENT_US``. Readings come in through :meth:`add`, or are held back
    by the batch path (:meth:`hold`) and folded in before anything is read.
    """

    __slots__ = ("_buf", "_head_us", "_held", "_last_event_us", "_ringed", "spec")

    spec: WindowSpec
    _last_event_us: int
    _head_us: int
    # The ring (slot of pane i is i % N) is appended to _buf only once the window holds
    # readings from two different panes; until then every window reading is in the head
    # pane, and the window sum/count *are* that pane. Slots of panes outside the window are
    # kept at zero, so no per-slot pane ids are needed. A device reporting less often than
    # once per window never pays for a ring, and one that goes quiet for a window drops it.
    _buf: array[float]
    _ringed: bool
    # Readings the batch path (iotmon.engine.hotpath) appended without adding them yet
    # (None, or the list hold() describes). Every reader below folds them in first
    # (_settle), with the same float operations in the same order as add(): nothing can
    # tell them apart.
    _held: list[Any] | None

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self._head_us = NO_EVENT_US
        self._last_event_us = NO_EVENT_US
        self._buf = _FRESH[:]
        self._ringed = False
        self._held = None

    def __repr__(self) -> str:
        return (
            f"DeviceStats(count={self.count}, mean={self.mean!r}, min={self.min!r}, "
            f"max={self.max!r}, last={self.last!r}, head_us={self.head_us}, "
            f"window_count={self.window_count}, window_mean={self.window_mean!r})"
        )

    @property
    def head_us(self) -> int:
        """The latest event time of the device (NO_EVENT_US before its first reading)."""
        if self._held is not None:
            self._settle()
        return self._head_us

    @property
    def last_event_us(self) -> int:
        """Event time of the reading that arrived last."""
        if self._held is not None:
            self._settle()
        return self._last_event_us

    @property
    def count(self) -> int:
        return int(self._settled()[7])

    @property
    def min(self) -> float:
        return self._settled()[2]

    @property
    def max(self) -> float:
        return self._settled()[3]

    @property
    def last(self) -> float:
        """Value of the reading that arrived last (not necessarily the latest event time)."""
        return self._settled()[4]

    @property
    def mean(self) -> float:
        """All-time mean (compensated sum, so no drift); NaN before the first reading."""
        b = self._settled()
        count = b[7]
        return (b[0] + b[1]) / count if count else math.nan

    @property
    def window_mean(self) -> float | None:
        """Mean of the non-late readings in the window; None if there are none."""
        b = self._settled()
        wcount = b[6]
        return b[5] / wcount if wcount else None

    @property
    def window_count(self) -> int:
        return int(self._settled()[6])

    def pane_means(self) -> tuple[float | None, ...]:
        """The mean of each pane of the window, oldest first, ending with the head pane's;
        None for a pane without readings. Empty before the first reading. Read when a
        digest is rendered (its trend), never on the hot path."""
        b = self._settled()
        n = self.spec.panes
        if not b[6]:
            return ()
        if not self._ringed:
            # Every window reading is in the head pane.
            return (None,) * (n - 1) + (b[5] / b[6],)
        head = self._head_us // self.spec.pane_us
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
        if self._held is not None:
            self.release()
        return self._add(value, event_us)

    def _add(self, value: float, event_us: int) -> bool:
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
        self._last_event_us = event_us

        spec = self.spec
        pane_us = spec.pane_us
        head_us = self._head_us
        if event_us >= head_us:
            pane = event_us // pane_us
            head = head_us // pane_us
            self._head_us = event_us
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

    # -- readings held back by the batch path -----------------------------------------

    def hold(self, stamp: str, until: str, *, across: bool) -> list[Any]:
        """Start holding readings back, after a reading that made ``stamp`` the head.

        Times here are canonical ISO strings (:func:`~iotmon.parse.canonical_event_us`):
        ``stamp`` the head's and ``until`` the end of its pane. The caller appends later
        readings to the returned ``held``, in order, each value (a float) to the array
        ``held[3]``: a reading at or after ``held[1]`` and before ``held[0]`` (in the head
        pane) just so; when ``held[2]`` is a list (``across``), one in a later pane too,
        adding ``(its index in held[3], its pane)`` to that list and setting
        ``held[0]`` to the end of its pane. Either way ``held[1]`` becomes its time.
        Reading a statistic folds them in and empties ``held[3]`` and ``held[2]``, and
        appending may go on. :meth:`add` and :meth:`release` fold them in and make
        ``held[1]`` a time after every other, so nothing more is appended. Items after
        ``held[3]`` are the caller's.

        Folding them in later replays :meth:`add` exactly: a reading in the head pane, in
        order, changes the running sums and counts, min, max, last and the head pane's sums
        only, the same float operations in the same order; one in a later pane goes
        through :meth:`add`'s own steps. (An array, not a list: a float stored as a double
        while it is at hand is not a scattered object to fetch again when it is folded.)
        """
        held: list[Any] = [until, stamp, [] if across else None, array("d")]
        self._held = held
        return held

    def slack(self, bound: float, *, window: bool) -> float:
        """``bound`` times the number of readings of the window (``window``) or of all,
        less their sum: how much more the sum may grow with their mean at or below
        ``bound`` (negative: by how much it is above)."""
        b = self._settled()
        if window:
            return bound * b[6] - b[5]
        return bound * b[7] - (b[0] + b[1])

    def panes_within(self, low: float, high: float) -> bool:
        """Whether the mean of every pane of the window is within ``[low, high]``: then so
        is the mean of any of its panes together, whichever leave the window."""
        b = self._settled()
        if not self._ringed:
            return not b[6] or low <= b[5] / b[6] <= high
        for i in range(_HEADER, len(b), 2):
            count = b[i + 1]
            if count and not low <= b[i] / count <= high:
                return False
        return True

    def settle(self) -> None:
        """Fold the held readings in now (reading any statistic does it too); the holder
        may go on appending."""
        if self._held is not None:
            self._settle()

    def release(self) -> None:
        """Fold the held readings in and stop holding: nothing more can be appended."""
        held = self._held
        if held is not None:
            self._settle()
            held[1] = _SEALED
            self._held = None

    def _settled(self) -> array[float]:
        if self._held is not None:
            self._settle()
        return self._buf

    def _settle(self) -> None:
        held = self._held
        assert held is not None
        if not held[3]:
            # Nothing held since the last fold: every statistic read of a held device
            # comes here, so no copy of the empty array either.
            return
        values = held[3].tolist()
        # Emptied, not replaced: the holder keeps appending to the same array and list.
        del held[3][:]
        later = held[2]
        # add()'s steps for each value, in two passes: the running statistics and the window
        # touch different state, so their order between readings does not matter.
        b = self._buf
        low = min(values)
        high = max(values)
        # min() and max() return the first of equal values, as add()'s strict compares keep.
        if low < b[2]:
            b[2] = low
        if high > b[3]:
            b[3] = high
        b[4] = values[-1]
        b[7] += len(values)
        b[0], b[1] = _running_sum(b[0], b[1], values, low, high)
        self._fold_window(values, later)
        if later:
            later.clear()
        self._head_us = self._last_event_us = canonical_event_us(held[1])

    def _fold_window(self, values: list[float], later: list[tuple[int, int]] | None) -> None:
        """add()'s window steps for ``values``: in the head pane, except those ``later``
        lists by index, with their pane, as starting a later pane. Leaves ``_head_us``
        to the caller.

        add() adds each value to the window sum, rounding each time, and re-sums it exactly
        (fsum of the panes) when a pane leaves the window; so the sum it ends with is the
        values after the last such re-summing added one by one to it (``base``, from
        ``since`` on), and that is all that is computed here. The pane sums and all counts
        are kept as add() keeps them.

        That last re-summing (``resummed``: the pane it was for) is done at the end, on the
        panes as they are then with the panes from that one on left out: those were empty
        when it happened (the pane whose slot it took was just emptied, and a later pane
        whose slot was not empty would have made a later re-summing), and no other pane
        has changed since."""
        spec = self.spec
        n = spec.panes
        head = self._head_us // spec.pane_us
        b = self._buf
        base, since = b[5], 0
        resummed: int | None = None
        # The head pane's sum and count before values[start:] (its slot is written when it
        # closes, or at the end), and the window count before them.
        ringed = self._ringed
        slot = 8 + 2 * (head % n)
        start = 0
        pane_sum, pane_count = (b[slot], b[slot + 1]) if ringed else (0.0, 0.0)
        count = b[6]
        for mark, pane in later or ():
            if pane == head:
                continue
            count += mark - start
            # What add() (_advance) does for values[mark], the first of a later pane.
            value = values[mark]
            if pane - head >= n:
                # The whole window leaves: the window is this value alone.
                if ringed:
                    b = self._buf = b[:_HEADER]
                    self._ringed = ringed = False
                base, since, resummed = value, mark + 1, None
                count = 1.0
            else:
                if ringed:
                    b[slot] = _add_each(values[start:mark], pane_sum)
                    b[slot + 1] = pane_count + (mark - start)
                    if pane - head == 1:
                        # The slot the pane takes holds the pane that leaves.
                        evicted = b[9 + 2 * (pane % n)]
                    else:
                        evicted = _evict(b, head, pane, n)
                    if evicted:
                        count -= evicted
                        since, resummed = mark, pane
                else:
                    # The ring starts from the window as it is now.
                    b[5] = _add_each(values[since:mark], base)
                    base, since = b[5], mark
                    b[6] = count
                    b = self._make_ring(head)
                    ringed = True
                slot = 8 + 2 * (pane % n)
                pane_sum, pane_count = value, 1.0
                count += 1.0
            head = pane
            start = mark + 1
        if ringed:
            b[slot] = _add_each(values[start:], pane_sum)
            b[slot + 1] = pane_count + (len(values) - start)
        b[6] = count + (len(values) - start)
        if resummed is not None:
            sums = b[_HEADER::2]
            for k in range(resummed, head + 1):
                sums[k % n] = 0.0
            base = math.fsum(sums)
        b[5] = _add_each(values[since:], base)

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
            evicted = _evict(b, head, pane, n)
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
        b = self._settled()
        if not b[7]:
            return []
        panes: list[int | float] | None = None
        if self._ringed:
            n = self.spec.panes
            head = self._head_us // self.spec.pane_us
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
            self._last_event_us,
            self._head_us,
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
        self._last_event_us = last_event_us
        self._head_us = head_us
        return self


def _evict(b: array[float], head: int, pane: int, n: int) -> float:
    """Empty the ring slots of panes ``head + 1`` to ``pane``: slot k % n of each newly
    covered pane k still holds pane k - n, which has just left the window. Returns how many
    readings left with them."""
    evicted = 0.0
    for k in range(head + 1, pane + 1):
        i = 9 + 2 * (k % n)
        count = b[i]
        if count:
            evicted += count
            b[i - 1] = 0.0
            b[i] = 0.0
    return evicted


def _plain_float_sum() -> bool:
    """Whether ``sum()`` adds floats one after the other, rounding each time, as ``+=``
    does (up to Python 3.11; later versions compensate the rounding)."""
    return sum([1e100, 1.0, -1e100]) == 0.0


def _add_one_by_one(values: list[float], start: float, /) -> float:
    """``start + values[0] + values[1] + ...``, rounded after each addition."""
    for value in values:
        start += value
    return start


_add_each: Callable[[list[float], float], float] = sum if _plain_float_sum() else _add_one_by_one
"""add()'s window sums for many values at once: ``sum()`` where it is the same, in C."""


def _running_sum(
    s: float, c: float, values: list[float], low: float, high: float
) -> tuple[float, float]:
    """add()'s Neumaier steps for ``values`` (from ``low`` to ``high``) from sum ``s`` and
    compensation ``c``.

    add() takes each step's rounding error from Knuth's TwoSum. While no partial sum is
    smaller in magnitude than the next value, Dekker's Fast2Sum gives that same exact error
    with half the operations. That holds throughout when the sum is far enough from zero
    (each step moves it by at most twice the largest value); and when the sum and all the
    values have one sign, the partial sums only grow in magnitude, so it holds from the
    first partial sum as large as the largest value on. (Its error is written
    ``(s - t) + value``, which is TwoSum's +0.0 where ``value - (t - s)`` would be -0.0.)
    """
    largest = max(high, -low)
    rest = iter(values)
    if abs(s) <= (2 * len(values) + 2) * largest:
        one_sign = (low >= 0.0 and s >= 0.0) or (high <= 0.0 and s <= 0.0)
        until = largest if one_sign else math.inf
        for value in rest:
            t = s + value
            bv = t - s
            c += (s - (t - bv)) + (value - bv)
            s = t
            if abs(s) >= until:
                break
    for value in rest:
        t = s + value
        c += (s - t) + value
        s = t
    return s, c


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
