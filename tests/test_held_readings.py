"""Property test: readings held back (DeviceStats.hold) and folded in later give exactly the
state that adding them one by one (DeviceStats.add) gives.

The batch path (:mod:`iotmon.engine.hotpath`) appends in-order readings to a device's held
list, in the head pane or (when it may) in later panes, and lets the first reader fold them
in; nothing may tell the difference, float for float. Size: 500 histories of up to 8
readings before the hold and up to 60 held, over up to 40 panes; and the fold's running sum
on its own, 1,000 lists of up to 40 values against add()'s steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from iotmon.parse import format_event_time
from iotmon.stats import DeviceStats, WindowSpec
from iotmon.stats.device import _add_each, _running_sum

S = 1_000_000
SPEC = WindowSpec.from_seconds(window=60, pane=10, lateness=15)
HEAD_PANE = 1_678_882_530 * S // SPEC.pane_us
"""A pane of 2023-03-15 (12:15:30 to 12:15:40)."""

values = st.one_of(
    st.floats(-50, 200),
    st.floats(-1e-300, 1e-300),
    st.sampled_from((5e-324, -5e-324, 2.2250738585072014e-308, 0.0, -0.0, 1e-16)),
    st.sampled_from((199.99999999999997, -49.99999999999999, 200.0, -50.0, 123456.789e-3)),
    st.integers(-50, 200),
)

READERS: dict[str, Callable[[DeviceStats], Any]] = {
    "to_state": DeviceStats.to_state,
    "mean": lambda s: s.mean,
    "window_mean": lambda s: s.window_mean,
    "window_count": lambda s: s.window_count,
    "count": lambda s: s.count,
    "min": lambda s: s.min,
    "max": lambda s: s.max,
    "last": lambda s: s.last,
    "head_us": lambda s: s.head_us,
    "last_event_us": lambda s: s.last_event_us,
    "pane_means": DeviceStats.pane_means,
    "repr": repr,
    "settle": DeviceStats.settle,
    "add in the head pane": lambda s: s.add(71.5, (HEAD_PANE + 1) * SPEC.pane_us - 1),
    "add in the next pane": lambda s: s.add(71.5, (HEAD_PANE + 1) * SPEC.pane_us),
    "add 50 panes later": lambda s: s.add(71.5, (HEAD_PANE + 50) * SPEC.pane_us),
    "add late": lambda s: s.add(71.5, HEAD_PANE * SPEC.pane_us - 20 * S),
    "slack": lambda s: (s.slack(75.0, window=True), s.slack(75.0, window=False)),
    "panes_within": lambda s: s.panes_within(0.0, 75.0),
    "release": DeviceStats.release,
}
RELEASING = {name for name in READERS if name.startswith("add") or name == "release"}
"""Readers after which nothing more may be appended; after the others holding goes on."""


History = tuple[list[tuple[float, int]], list[tuple[float, int]], int]


@st.composite
def histories(draw: st.DrawFn) -> History:
    """``(before, held, cut)``: readings added before the head-pane reading that starts the
    hold (in earlier panes of the window, when there are any: the device has a ring), the
    readings held after it, in order: within the head pane or, when ``across`` is drawn,
    up to 40 panes later (beyond the window of 6 too, which empties it), and how many of
    them are held before the statistics are read."""
    start = HEAD_PANE * SPEC.pane_us
    earlier = draw(st.lists(st.tuples(values, st.integers(1, 5 * SPEC.pane_us)), max_size=8))
    before = [(v, start - back) for v, back in earlier]
    first = draw(st.integers(0, SPEC.pane_us - 1))
    span = SPEC.pane_us * draw(st.sampled_from((1, 3, 40)))
    offsets = sorted(draw(st.lists(st.integers(first, span - 1), max_size=60)))
    before.append((draw(values), start + first))
    held = [(draw(values), start + offset) for offset in offsets]
    return before, held, draw(st.integers(0, len(held)))


def pane_end(event_us: int) -> str:
    return format_event_time((event_us // SPEC.pane_us + 1) * SPEC.pane_us)


def append(hold: list[Any], value: float, event_us: int) -> None:
    """What the fast lane does with a reading it holds (iotmon.engine.hotpath)."""
    stamp = format_event_time(event_us)
    assert hold[1] <= stamp
    if stamp >= hold[0]:
        hold[2].append((len(hold[3]), event_us // SPEC.pane_us))
        hold[0] = pane_end(event_us)
    hold[1] = stamp
    hold[3].append(value)


def state(stats: DeviceStats) -> str:
    """The state, its floats by repr: -0.0 and 0.0 differ."""
    return repr(stats.to_state())


GAP_OVER_THE_OLDEST_PANE: History = (
    [(70.0, (HEAD_PANE - 5) * SPEC.pane_us), (72.0, HEAD_PANE * SPEC.pane_us)],
    [(80.0, (HEAD_PANE + 2) * SPEC.pane_us + 5)],
    1,
)
"""A held reading two panes on: the pane it skips takes the slot of the oldest pane of the
window, which has a reading, so both leave (which the drawn histories seldom reach)."""


@settings(max_examples=500, deadline=None)
@given(history=histories(), reader=st.sampled_from(sorted(READERS)))
@example(history=GAP_OVER_THE_OLDEST_PANE, reader="to_state")
def test_held_readings_fold_in_exactly_as_added_ones(history: History, reader: str) -> None:
    before, held, cut = history
    added, holding = DeviceStats(SPEC), DeviceStats(SPEC)
    for value, event_us in before:
        added.add(value, event_us)
        holding.add(value, event_us)
    head_us = before[-1][1]
    assert holding.head_us == head_us
    hold = holding.hold(format_event_time(head_us), pane_end(head_us), across=True)
    for value, event_us in held[:cut]:
        append(hold, float(value), event_us)
        added.add(float(value), event_us)
    read = READERS[reader]
    assert repr(read(holding)) == repr(read(added))
    if reader in RELEASING:
        assert hold[1] > format_event_time(9 * 10**15)  # nothing more can be appended
    else:
        assert not hold[3] and not hold[2]  # folded in; the device stays held
        for value, event_us in held[cut:]:
            append(hold, float(value), event_us)
            added.add(float(value), event_us)
    assert state(holding) == state(added)
    assert holding.pane_means() == added.pane_means()


def test_the_property_covers_devices_with_and_without_a_ring() -> None:
    """Readings in earlier panes of the window give the device a ring, a first reading in
    the head pane does not: both kinds are what the property test holds readings for."""
    start = HEAD_PANE * SPEC.pane_us
    ringed, plain = DeviceStats(SPEC), DeviceStats(SPEC)
    ringed.add(70.0, start - SPEC.pane_us)
    ringed.add(72.0, start)
    plain.add(72.0, start)
    assert ringed.to_state()[10] is not None
    assert plain.to_state()[10] is None
    for stats in (ringed, plain):
        hold = stats.hold(format_event_time(start), pane_end(start), across=False)
        hold[1] = format_event_time(start + 1)
        hold[3].extend((1e-310, 199.5))
    assert ringed.to_state()[10] == [HEAD_PANE - 1, 70.0, 1, HEAD_PANE, 72.0 + 1e-310 + 199.5, 3]
    assert plain.to_state()[8:] == [72.0 + 1e-310 + 199.5, 3, None]
    assert plain.head_us == start + 1


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False)), st.floats(-1e300, 1e300))
def test_window_sums_of_many_values_round_as_one_by_one(values: list[float], start: float) -> None:
    """The fold adds a pane's held values with ``_add_each`` (``sum()`` where that rounds
    after each addition, as on Python 3.11): it must give what add()'s ``+=`` gives."""
    expected = start
    for value in values:
        expected += value
    assert str(_add_each(values, start)) == str(expected)


magnitudes = st.one_of(
    st.floats(-1e6, 1e6),
    st.floats(-1e-6, 1e-6),
    st.sampled_from((1e16, -1e16, 3.0, -3.0, 5e-324, 0.0, -0.0)),
)


@settings(max_examples=1000)
@given(
    values=st.lists(magnitudes, min_size=1, max_size=40),
    s=magnitudes,
    c=st.sampled_from((0.0, -0.0, 1e-20, -3.5e-12)),
    sign=st.sampled_from((None, 1.0, -1.0)),
)
def test_running_sums_of_many_values_take_adds_steps(
    values: list[float], s: float, c: float, sign: float | None
) -> None:
    """The fold's running sum and compensation (``_running_sum``, which takes Fast2Sum's
    shortcut where it is exact) are what add()'s TwoSum steps give: for values of mixed
    signs and magnitudes, and of one sign (``sign``) with the sum of that sign too."""
    if sign is not None:
        values = [math.copysign(v, sign) for v in values]
        s = math.copysign(s, sign)
    expected_s, expected_c = s, c
    for value in values:
        t = expected_s + value
        bv = t - expected_s
        expected_c += (expected_s - (t - bv)) + (value - bv)
        expected_s = t
    got = _running_sum(s, c, values, min(values), max(values))
    assert repr(got) == repr((expected_s, expected_c))
