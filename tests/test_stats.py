"""Unit tests for iotmon.stats: window rules, running statistics, snapshots."""

from __future__ import annotations

import itertools
import math
import random
import tracemalloc
from typing import Any

import orjson
import pytest

from iotmon.parse import format_event_time
from iotmon.state.encoding import encode_document
from iotmon.stats import NO_EVENT_US, DeviceStats, StatsTable, WindowSpec

S = 1_000_000  # µs per second
T0 = 1_700_000_000 * S  # a realistic epoch time, on a pane boundary for every spec used here


def spec(window: int = 30, pane: int = 10, lateness: int = 1000) -> WindowSpec:
    """Spec in whole seconds; lateness defaults to huge so only the window rule applies."""
    return WindowSpec(window_us=window * S, pane_us=pane * S, lateness_us=lateness * S)


def feed(dev: DeviceStats, readings: list[tuple[float, float]]) -> list[bool]:
    """Add (seconds after T0, value) readings; return the on-time flags."""
    return [dev.add(v, T0 + round(t * S)) for t, v in readings]


def window(dev: DeviceStats) -> tuple[int, float | None]:
    """(window_count, window_mean), the mean rounded so exact expectations can be written."""
    mean = dev.window_mean
    return dev.window_count, None if mean is None else round(mean, 9)


# --- WindowSpec ---------------------------------------------------------------------------


def test_spec_defaults() -> None:
    s = WindowSpec()
    assert (s.window_us, s.pane_us, s.lateness_us, s.panes) == (300 * S, 10 * S, 30 * S, 30)
    assert WindowSpec.from_seconds() == s


def test_spec_from_seconds_rounds_to_microseconds() -> None:
    s = WindowSpec.from_seconds(window=0.3, pane=0.1, lateness=0.0)
    assert (s.window_us, s.pane_us, s.lateness_us, s.panes) == (300_000, 100_000, 0, 3)


def test_spec_window_must_be_pane_multiple() -> None:
    with pytest.raises(ValueError, match=r"window_us \(300000000 µs\) must be a whole multiple"):
        WindowSpec.from_seconds(window=300, pane=7)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pane_us": 0},
        {"window_us": 0},
        {"window_us": -10, "pane_us": 5},
        {"lateness_us": -1},
        {"pane_us": True},
        {"window_us": 300.0},
    ],
)
def test_spec_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        WindowSpec(**kwargs)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_spec_from_seconds_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        WindowSpec.from_seconds(lateness=bad)


def test_spec_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        WindowSpec(300 * S, 10 * S, 30 * S)  # type: ignore[call-arg]


# --- running statistics -------------------------------------------------------------------


def test_empty_device() -> None:
    dev = DeviceStats(spec())
    assert dev.count == 0
    assert dev.window_count == 0
    assert dev.window_mean is None
    assert math.isnan(dev.mean)
    assert dev.head_us == dev.last_event_us == NO_EVENT_US
    assert dev.to_state() == []
    assert DeviceStats.from_state(spec(), []).to_state() == []


def test_running_stats() -> None:
    dev = DeviceStats(spec())
    feed(dev, [(5, 20.0), (3, 25.0), (4, 10.0)])
    assert (dev.count, dev.min, dev.max, dev.last) == (3, 10.0, 25.0, 10.0)
    assert dev.mean == pytest.approx(55.0 / 3)
    assert dev.head_us == T0 + 5 * S  # the latest event time ...
    assert dev.last_event_us == T0 + 4 * S  # ... but the latest *arrival* is another one


def test_first_reading_is_never_late() -> None:
    assert DeviceStats(spec(lateness=0)).add(1.0, -(10**15))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_value_rejected(bad: float) -> None:
    dev = DeviceStats(spec())
    dev.add(1.0, T0)
    with pytest.raises(ValueError, match="finite"):
        dev.add(bad, T0)
    assert dev.count == 1  # rejected before touching any state


def test_compensated_mean_1e6() -> None:
    dev = DeviceStats(spec())
    n = 1_000_000
    for _ in range(n):
        dev.add(0.1, T0)
    exact = math.fsum([0.1] * n) / n
    assert abs(dev.mean - exact) <= 1e-15 * exact
    # A naive running sum is off by ~1e-11 relative here: the test really exercises Neumaier.
    assert abs(sum([0.1] * n) / n - exact) > 1e-12 * exact


@pytest.mark.slow
def test_compensated_mean_1e7() -> None:
    dev = DeviceStats(spec())
    add = dev.add
    n = 10_000_000
    for _ in range(n):
        add(0.1, T0)
    assert dev.mean == pytest.approx(0.1, rel=1e-12, abs=0)
    assert dev.mean == math.fsum([0.1] * n) / n


def test_compensated_mean_cancellation() -> None:
    values = [1e16, 1.0, -1e16, 3.0] * 1000
    dev = DeviceStats(spec())
    for v in values:
        dev.add(v, T0)
    assert dev.mean == math.fsum(values) / len(values) == 1.0


# --- window rules -------------------------------------------------------------------------


def test_window_mean_and_count() -> None:
    dev = DeviceStats(spec())  # 3 panes of 10 s
    feed(dev, [(1, 10.0), (12, 20.0), (25, 30.0)])
    assert dev.window_count == 3
    assert dev.window_mean == pytest.approx(20.0)


def test_late_by_lateness() -> None:
    dev = DeviceStats(spec(window=60, lateness=5))
    feed(dev, [(100, 1.0)])
    assert not dev.add(99.0, T0 + 95 * S - 1)  # more than 5 s behind the head
    assert dev.add(2.0, T0 + 95 * S)  # exactly at the lateness bound: on time
    assert dev.window_count == 2
    assert dev.window_mean == 1.5
    # Late readings still count in the running statistics.
    assert (dev.count, dev.max, dev.last) == (3, 99.0, 2.0)
    assert dev.mean == pytest.approx(34.0)


def test_late_by_lateness_within_the_head_pane() -> None:
    dev = DeviceStats(spec(lateness=0))
    feed(dev, [(5, 1.0)])
    assert not dev.add(2.0, T0 + 4 * S)  # same pane as the head, but behind it
    assert dev.add(3.0, T0 + 5 * S)
    assert dev.window_count == 2


def test_late_by_window() -> None:
    dev = DeviceStats(spec())  # window = panes (h-3, h]; huge lateness
    feed(dev, [(100, 1.0)])  # head pane 10: window covers [80 s, 110 s)
    assert not dev.add(5.0, T0 + 80 * S - 1)  # pane 7: already outside
    assert dev.add(3.0, T0 + 80 * S)  # pane 8: oldest pane still in the window
    assert dev.window_count == 2
    assert dev.window_mean == 2.0
    assert dev.count == 3


def test_out_of_order_lands_in_its_own_pane() -> None:
    dev = DeviceStats(spec())
    feed(dev, [(25, 1.0), (5, 2.0), (15, 4.0)])  # panes 2, 0, 1
    assert dev.window_count == 3
    dev.add(8.0, T0 + 30 * S)  # head -> pane 3: evicts pane 0 (the value 2.0)
    assert dev.window_count == 3
    assert dev.window_mean == pytest.approx((1.0 + 4.0 + 8.0) / 3)
    dev.add(16.0, T0 + 40 * S)  # head -> pane 4: evicts pane 1 (the value 4.0)
    assert dev.window_mean == pytest.approx((1.0 + 8.0 + 16.0) / 3)


def test_eviction_when_head_advances() -> None:
    dev = DeviceStats(spec())
    feed(dev, [(0, 1.0), (1, 1.0), (10, 2.0), (20, 3.0)])
    assert window(dev) == (4, 7.0 / 4)
    dev.add(4.0, T0 + 39 * S)  # pane 3: pane 0 leaves, pane 1 stays
    assert window(dev) == (3, 3.0)
    dev.add(5.0, T0 + 55 * S)  # pane 5: panes 1 and 2 leave
    assert window(dev) == (2, 4.5)


def test_gap_longer_than_window_empties_it() -> None:
    dev = DeviceStats(spec())
    feed(dev, [(0, 1.0), (10, 2.0), (20, 3.0)])
    dev.add(100.0, T0 + 1000 * S)
    assert (dev.window_count, dev.window_mean) == (1, 100.0)
    # ...and the window keeps working after the ring was dropped and rebuilt.
    feed(dev, [(995, 60.0), (1012, 200.0)])
    assert window(dev) == (3, 120.0)


def test_same_pane_later_time_moves_head_without_eviction() -> None:
    dev = DeviceStats(spec(lateness=2))
    feed(dev, [(10, 1.0), (19, 2.0)])  # both pane 1; head now 19 s
    assert dev.head_us == T0 + 19 * S
    assert not dev.add(3.0, T0 + 16 * S)  # same pane, but more than 2 s behind the new head
    assert dev.window_count == 2


def test_negative_event_times_use_floor_panes() -> None:
    dev = DeviceStats(spec())
    assert dev.add(1.0, -1)  # pane -1, not pane 0
    assert dev.add(2.0, 20 * S)  # pane 2: window is panes 0..2, so pane -1 is evicted
    assert (dev.window_count, dev.window_mean) == (1, 2.0)


# --- StatsTable -----------------------------------------------------------------------------


def test_table_add_creates_devices_and_counts_late() -> None:
    table = StatsTable(spec())
    a = table.add("a", 1.0, T0 + 100 * S)
    assert table.add("a", 2.0, T0) is a  # late for the window
    b = table.add("b", 3.0, T0)  # per-device head: not late for device b
    assert set(table.devices) == {"a", "b"}
    assert table.late == 1
    assert (a.count, a.window_count, b.window_count) == (2, 1, 1)


def test_table_is_independent_of_device_interleaving() -> None:
    rnd = random.Random(7)
    readings = {
        key: [(rnd.uniform(0, 50), T0 + rnd.randrange(200 * S)) for _ in range(300)]
        for key in "abc"
    }
    interleaved = [(k, v, t) for k, rs in readings.items() for v, t in rs]
    round_robin = [(k, *readings[k][i]) for i in range(300) for k in "abc"]
    states = []
    for order in (interleaved, round_robin):
        table = StatsTable(spec())
        for k, v, t in order:
            table.add(k, v, t)
        states.append(table.to_state())
    assert states[0] == states[1]


# --- snapshots ------------------------------------------------------------------------------


def random_readings(n: int, seed: int) -> list[tuple[str, float, int]]:
    rnd = random.Random(seed)
    return [
        (f"dev-{rnd.randrange(20)}", rnd.uniform(-40.0, 120.0), T0 + i * 300_000 - rnd.randrange(S))
        for i in range(n)
    ]


def test_table_state_round_trip_via_orjson_is_exact() -> None:
    sp = spec(window=60, pane=10, lateness=30)
    readings = random_readings(4000, seed=1)
    table = StatsTable(sp)
    for k, v, t in readings[:2000]:
        table.add(k, v, t)
    state = table.to_state()
    assert set(state) == {"late", "devices"}
    restored = StatsTable.from_state(sp, orjson.loads(orjson.dumps(state)))
    assert restored.to_state() == state
    assert restored.late == table.late
    # Identical future results, bit for bit.
    for k, v, t in readings[2000:]:
        a = table.add(k, v, t)
        b = restored.add(k, v, t)
        assert (a.window_mean, a.window_count, a.mean) == (b.window_mean, b.window_count, b.mean)
    assert restored.to_state() == table.to_state()


def test_a_document_reusing_encoded_devices_is_what_encoding_them_all_gives() -> None:
    # Checkpoints in a row, a few readings apart: the devices that did not change in between
    # are taken from the previous document, and every document must still be the table's
    # state as it is now (late readings, held ones, devices replaced or gone included).
    sp = spec(window=60, pane=10, lateness=30)
    rnd = random.Random(7)
    table = StatsTable(sp)
    readings = iter(random_readings(3000, seed=2))
    for round_ in range(300):
        for k, v, t in itertools.islice(readings, rnd.choice((0, 1, 3, 20))):
            table.add(k, v, t)
        if round_ % 50 == 7:
            # Another object in a device's place, with the same count but another last
            # value: encoded again.
            key = rnd.choice(sorted(table.devices))
            state = table.devices[key].to_state()
            state[5] = state[3] if state[5] != state[3] else state[4]
            table.devices[key] = DeviceStats.from_state(sp, state)
        if round_ % 50 == 31:
            del table.devices[rnd.choice(sorted(table.devices))]
        if round_ % 40 == 13:
            # Readings held back by the batch path: the count moves only once they are
            # folded in, which encoding the device does first.
            key = rnd.choice(sorted(table.devices))
            device = table.devices[key]
            stamp = format_event_time(device.head_us)
            held = device.hold(stamp, format_event_time(device.head_us + 1), across=False)
            held[3].append(2.5)
        expected = orjson.dumps(table.to_state())
        assert b"".join(encode_document(table.to_document(reuse=True))) == expected
        if round_ % 100 == 99:
            assert b"".join(encode_document(table.to_document())) == expected


def test_encoded_devices_kept_for_the_next_document_cost_about_their_size() -> None:
    # orjson.dumps leaves its output in a buffer of kilobytes: kept as it is for each of
    # 10,000 devices, that was 80 MB beside their 6 MB of encoded state.
    sp = spec(window=60, pane=10)
    table = StatsTable(sp)
    for k, v, t in random_readings(6000, seed=3):
        table.add(k.replace("dev", "device"), v, t)
    for i in range(1000):
        table.add(f"more-{i}", 20.5, T0 + i)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        size = len(b"".join(encode_document(table.to_document(reuse=True))))
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert size < kept < 2 * size


def test_device_state_round_trip_both_window_modes() -> None:
    sp = spec()
    one_pane = DeviceStats(sp)
    feed(one_pane, [(1, 0.1), (2, 0.2)])
    multi_pane = DeviceStats(sp)
    feed(multi_pane, [(1, 0.1), (12, 0.2), (3, -0.0)])
    assert one_pane.to_state()[-1] is None
    assert multi_pane.to_state()[-1] == [T0 // (10 * S), 0.1, 2, T0 // (10 * S) + 1, 0.2, 1]
    for dev in (one_pane, multi_pane):
        state = dev.to_state()
        back = DeviceStats.from_state(sp, orjson.loads(orjson.dumps(state)))
        assert back.to_state() == state
        assert back.window_mean == dev.window_mean


def good_state() -> list[Any]:
    dev = DeviceStats(spec())
    feed(dev, [(1, 1.0), (12, 2.0), (13, 4.0)])
    return dev.to_state()


def with_item(index: int, value: object) -> list[Any]:
    state = good_state()
    state[index] = value
    return state


PANE0 = T0 // (10 * S)


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ("nope", "must be a list"),
        ([1, 2, 3], "must have 11 items"),
        (with_item(0, 0), "count must be >= 1"),
        (with_item(0, True), "count must be an int"),
        (with_item(1, "1.0"), "sum must be a number"),
        (with_item(1, None), "sum must be a number"),
        (with_item(5, 0.5), "min <= last <= max"),
        (with_item(6, T0 + 99 * S), "after head_us"),
        (with_item(7, 1.5), "head_us must be an int"),
        (with_item(9, 7), "window count 7 exceeds count 3"),
        (with_item(10, [PANE0, 1.0]), "flat"),
        (with_item(10, {"a": 1}), "flat"),
        (with_item(10, [PANE0 - 5, 1.0, 1, PANE0 + 1, 6.0, 2]), "outside the window"),
        (with_item(10, [PANE0 + 1, 1.0, 1, PANE0 + 1, 6.0, 2]), "listed twice"),
        (with_item(10, [PANE0, 1.0, 0, PANE0 + 1, 6.0, 3]), "pane count must be >= 1"),
        (with_item(10, [PANE0, 1.0, 1, PANE0 + 1, 6.0, 1]), "add up to 2"),
    ],
)
def test_malformed_device_state(state: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DeviceStats.from_state(spec(), state)


def test_good_state_is_accepted() -> None:
    assert DeviceStats.from_state(spec(), good_state()).to_state() == good_state()


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ([], "must be a dict"),
        ({"late": 0}, "exactly the keys"),
        ({"late": 0, "devices": {}, "extra": 1}, "exactly the keys"),
        ({"late": -1, "devices": {}}, "'late' must be an int >= 0"),
        ({"late": "0", "devices": {}}, "'late' must be an int >= 0"),
        ({"late": 0, "devices": []}, "'devices' must map"),
        ({"late": 0, "devices": {1: []}}, "device key must be a str"),
        ({"late": 0, "devices": {"x": [1]}}, r"device 'x': device state must have 11"),
    ],
)
def test_malformed_table_state(state: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StatsTable.from_state(spec(), state)


def test_pane_means_follow_the_window_oldest_first() -> None:
    spec = WindowSpec.from_seconds(window=40, pane=10, lateness=30)
    stats = DeviceStats(spec)
    assert stats.pane_means() == ()
    stats.add(70.0, 1_000 * S)
    stats.add(72.0, 1_005 * S)
    # Every window reading in the head pane (no ring yet).
    assert stats.pane_means() == (None, None, None, 71.0)
    stats.add(80.0, 1_021 * S)  # pane 102, after an empty one
    assert stats.pane_means() == (None, 71.0, None, 80.0)
    stats.add(90.0, 1_041 * S)  # pane 104: pane 100 leaves the window
    assert stats.pane_means() == (None, 80.0, None, 90.0)
    # Restored from a checkpoint, the same panes.
    assert DeviceStats.from_state(spec, stats.to_state()).pane_means() == stats.pane_means()
    stats.add(60.0, 2_000 * S)  # a gap longer than the window empties it
    assert stats.pane_means() == (None, None, None, 60.0)
