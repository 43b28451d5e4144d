"""The stream clock on its own (iotmon.engine.clock): event time minus lateness, the slowest
partition with a backlog setting the pace, wall time while idle."""

from __future__ import annotations

from iotmon.engine.clock import StreamClock

S = 1_000_000
T0 = 1_678_882_537 * S
LATENESS = 30 * S


def no_lag() -> dict[str, int]:
    raise AssertionError("lag is asked only with several partitions")


def test_one_partition_sets_the_clock_to_its_latest_event_minus_lateness() -> None:
    clock = StreamClock(lateness_us=LATENESS)
    clock.advance({"p0": 0}, no_lag)
    assert clock.now_us == 0, "no reading yet: no clock"
    clock.advance({"p0": T0}, no_lag)
    assert clock.now_us == T0 - LATENESS
    clock.advance({"p0": T0 - 60 * S}, no_lag)
    assert clock.now_us == T0 - LATENESS, "never backwards"


def test_the_slowest_partition_with_a_backlog_sets_the_pace() -> None:
    clock = StreamClock(lateness_us=LATENESS)
    heads = {"p0": T0, "p1": T0 + 600 * S}
    clock.advance(heads, lambda: {"p0": 100, "p1": 5})
    assert clock.now_us == T0 - LATENESS
    # p0 caught up: it holds nothing back, so it no longer holds the clock back.
    clock.advance(heads, lambda: {"p0": 0, "p1": 5})
    assert clock.now_us == T0 + 600 * S - LATENESS
    # All caught up: the newest head.
    clock.advance({"p0": T0 + 700 * S, "p1": T0 + 650 * S}, lambda: {"p0": 0, "p1": 0})
    assert clock.now_us == T0 + 700 * S - LATENESS


def test_a_partition_of_unknown_lag_counts_as_behind() -> None:
    clock = StreamClock(lateness_us=LATENESS)
    clock.advance({"p0": T0, "p1": T0 + 600 * S}, lambda: {"p1": 0})
    assert clock.now_us == T0 - LATENESS


def test_idle_time_moves_the_clock_with_wall_time_from_the_second_beat() -> None:
    clock = StreamClock(lateness_us=LATENESS, now_us=T0)
    clock.idle(100.0)
    assert clock.now_us == T0, "the first idle beat only starts counting"
    clock.idle(102.5)
    assert clock.now_us == T0 + 2_500_000
    clock.busy()
    clock.idle(200.0)
    assert clock.now_us == T0 + 2_500_000, "a batch in between restarts the count"
    clock.idle(201.0)
    assert clock.now_us == T0 + 3_500_000


def test_idle_time_before_any_reading_sets_no_clock() -> None:
    clock = StreamClock(lateness_us=LATENESS)
    clock.idle(1.0)
    clock.idle(50.0)
    assert clock.now_us == 0
