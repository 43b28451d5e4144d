"""The alert state machine on event time: crafted streams through tracker + alerter.

Readings go through the real statistics (:class:`iotmon.stats.StatsTable`, 300 s window)
and the real :class:`Alerter`; the stream clock is computed as the pipeline does (latest
event time minus the allowed lateness), so no test sleeps or reads the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from iotmon.alerts import AlertSettings, AlertTracker, RuleBook, RuleOverride, Transition
from iotmon.alerts.rules import Rule
from iotmon.alerts.tracker import StatsView
from iotmon.notify import Digest, EmailSettings, Notification
from iotmon.stats import StatsTable, WindowSpec
from tests.helpers import WiredAlerter

S = 1_000_000
T0 = 1_678_882_537 * S  # 2023-03-15T12:15:37Z, the seed data's day
LATENESS_US = 30 * S
SPEC = WindowSpec.from_seconds(window=300, pane=10, lateness=30)

Reading = tuple[str, float, int]


def steady(
    device: str, value: float, start_s: float, end_s: float, step_s: float = 5
) -> list[Reading]:
    """Readings of ``value`` every ``step_s`` seconds in [start_s, end_s)."""
    readings = []
    t = start_s
    while t < end_s:
        readings.append((device, value, T0 + round(t * S)))
        t += step_s
    return readings


async def _not_started(notification: Notification) -> None:  # pragma: no cover
    raise AssertionError("these tests never start delivery")


class Harness:
    """Feeds readings through stats, trackers and the alerter like the pipeline does."""

    def __init__(
        self, state_dir: Path, settings: AlertSettings | None = None, *, partitions: int = 1
    ) -> None:
        self.alerter = WiredAlerter(
            settings=settings or AlertSettings(),
            notifier=_not_started,
            state_dir=state_dir,
            email=EmailSettings(mail_to=("ops@example.com",)),
        )
        self.names = [f"sensoresInfos:{i}" for i in range(partitions)]
        self.tables = {name: StatsTable(SPEC) for name in self.names}
        self.trackers = {name: self.alerter.tracker(name) for name in self.names}
        self.head_us = 0

    def partition_of(self, device: str) -> str:
        return self.names[sum(device.encode()) % len(self.names)]

    def feed(self, readings: Iterable[Reading], *, tick_every_s: float | None = 0) -> None:
        """``tick_every_s=0``: tick after every reading (a live run); larger: tick only when
        that much event time has passed (a replay at full speed, big batches); None: never."""
        last_tick = 0
        for device, value, event_us in readings:
            name = self.partition_of(device)
            self.trackers[name].observe(device, self.tables[name].add(device, value, event_us))
            self.head_us = max(self.head_us, event_us)
            if tick_every_s is not None and self.head_us - last_tick >= tick_every_s * S:
                last_tick = self.head_us
                self.alerter.tick(self.head_us - LATENESS_US)

    def idle_until(self, seconds: float) -> None:
        """The stream clock moves on with no readings (the pipeline's idle advance)."""
        self.alerter.tick(T0 + round(seconds * S))

    def transitions(self, device: str | None = None) -> list[tuple[str, str, float]]:
        return [
            (t.device, t.state, (t.at_us - T0) / S)
            for t in self.alerter.transitions
            if device is None or t.device == device
        ]

    def digests(self) -> list[Digest]:
        return [entry.digest for entry in self.alerter.outbox.pending()]


def merged(*streams: list[Reading]) -> list[Reading]:
    return sorted((r for s in streams for r in s), key=lambda r: (r[2], r[0]))


# -- the scenarios of the issue ----------------------------------------------------------


def test_device_held_at_80_for_ten_minutes_fires_once_with_one_digest(tmp_path: Path) -> None:
    run = Harness(tmp_path)
    run.feed(steady("sensor50", 80.0, 0, 600))
    run.idle_until(700)
    assert run.transitions() == [("sensor50", "pending", 0.0), ("sensor50", "firing", 60.0)]
    digests = run.digests()
    assert len(digests) == 1
    assert [r.device for r in digests[0].firing] == ["sensor50"]
    assert (digests[0].slot_us - T0) / S == 70.0  # firing + group_wait


def test_one_spike_in_a_steady_70_never_fires_on_the_window_mean(tmp_path: Path) -> None:
    stream = steady("sensor07", 70.0, 0, 600)
    stream[60] = ("sensor07", 200.0, stream[60][2])
    run = Harness(tmp_path, AlertSettings(metric="window"))
    run.feed(stream)
    run.idle_until(1000)
    assert run.transitions() == []
    assert run.digests() == []


def test_crossing_for_less_than_for_never_fires(tmp_path: Path) -> None:
    stream = steady("sensor12", 80.0, 0, 20) + steady("sensor12", 60.0, 20, 600)
    run = Harness(tmp_path)
    run.feed(stream)
    run.idle_until(1000)
    states = [state for _, state, _ in run.transitions()]
    assert states == ["pending", "ok"]
    assert run.digests() == []


def test_hovering_between_clear_below_and_threshold_fires_once_resolves_once(
    tmp_path: Path,
) -> None:
    stream = (
        steady("sensor24", 90.0, 0, 120)
        + steady("sensor24", 74.0, 120, 900)  # above clear-below (73): still firing
        + steady("sensor24", 60.0, 900, 1500)
    )
    run = Harness(tmp_path)
    run.feed(stream)
    run.idle_until(2000)
    assert [state for _, state, _ in run.transitions()] == ["pending", "firing", "resolved"]
    digests = run.digests()
    assert [(len(d.firing), len(d.resolved)) for d in digests] == [(1, 0), (0, 1)]


def test_flapping_around_the_threshold_while_firing_sends_nothing_new(tmp_path: Path) -> None:
    stream = steady("sensor10", 80.0, 0, 300)
    for i, t in enumerate(range(300, 900, 5)):
        stream.append(("sensor10", 76.0 if i % 2 else 74.5, T0 + t * S))
    run = Harness(tmp_path, AlertSettings(metric="running"))
    run.feed(stream)
    run.idle_until(1000)
    assert [state for _, state, _ in run.transitions()] == ["pending", "firing"]
    assert len(run.digests()) == 1


# -- replay at full speed == living through it -------------------------------------------


def _mixed_stream() -> list[Reading]:
    return merged(
        steady("hot", 80.0, 0, 1200),
        steady("brief", 80.0, 100, 130) + steady("brief", 60.0, 130, 1200),
        steady("hover", 90.0, 0, 200)
        + steady("hover", 74.0, 200, 700)
        + steady("hover", 60.0, 700, 1200),
        # Reports every 100 s: fires through the stream clock between two readings.
        steady("rare", 85.0, 0, 1200, step_s=100),
        # Silent from 300 s to 800 s: stale, then recovered.
        steady("gap", 50.0, 0, 300) + steady("gap", 50.0, 800, 1200),
        steady("cool", 40.0, 0, 1200),
        steady("late-hot", 95.0, 600, 1200),
    )


@pytest.mark.parametrize("coarse_tick_s", [37, 250, None])
def test_same_stream_gives_the_same_transitions_and_digests_at_any_tick_cadence(
    tmp_path: Path, coarse_tick_s: float | None
) -> None:
    settings = AlertSettings(stale_after=120, repeat_interval=600)
    live = Harness(tmp_path / "live", settings, partitions=3)
    live.feed(_mixed_stream(), tick_every_s=0)
    live.idle_until(2500)
    replay = Harness(tmp_path / "replay", settings, partitions=3)
    replay.feed(_mixed_stream(), tick_every_s=coarse_tick_s)
    replay.idle_until(2500)

    assert sorted(replay.transitions()) == sorted(live.transitions())
    assert [d.digest_id for d in replay.digests()] == [d.digest_id for d in live.digests()]
    # The stream exercised every path.
    states = {state for _, state, _ in live.transitions()}
    assert states == {"pending", "ok", "firing", "resolved", "stale", "recovered"}
    assert ("rare", "firing", 60.0) in live.transitions()
    assert ("gap", "stale", 415.0) in live.transitions()
    assert any(d.kind == "reminder" for d in live.digests())


# -- unit tests of the tracker with a plain stats object -------------------------------


@dataclass
class FakeStats:
    """A device whose metric is set directly; enough for the tracker's StatsView."""

    mean: float
    window_mean: float | None
    max: float
    head_us: int


class RecordingSink:
    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def record(self, transition: Transition, rule: Rule, stats: StatsView | None) -> None:
        self.transitions.append(transition)


def _tracker(settings: AlertSettings) -> tuple[AlertTracker, RecordingSink]:
    sink = RecordingSink()
    return AlertTracker(partition="p", rules=RuleBook(settings), sink=sink), sink


def _at(stats: FakeStats, seconds: float, value: float) -> FakeStats:
    stats.mean = stats.window_mean = value
    stats.max = max(stats.max, value)
    stats.head_us = T0 + round(seconds * S)
    return stats


def test_quiet_readings_record_nothing() -> None:
    tracker, sink = _tracker(AlertSettings())
    stats = FakeStats(mean=20.0, window_mean=20.0, max=20.0, head_us=T0)
    for i in range(1000):
        tracker.observe("d", _at(stats, i, 20.0 + i % 5))
    assert sink.transitions == []
    assert tracker.states() == {}


def test_for_zero_fires_at_once() -> None:
    tracker, sink = _tracker(AlertSettings(for_seconds=0))
    tracker.observe("d", FakeStats(mean=80.0, window_mean=80.0, max=80.0, head_us=T0))
    assert [(t.state, t.at_us) for t in sink.transitions] == [("firing", T0)]


def test_pending_fires_on_the_stream_clock_at_exactly_since_plus_for() -> None:
    tracker, sink = _tracker(AlertSettings(for_seconds=60))
    tracker.observe("d", FakeStats(mean=80.0, window_mean=80.0, max=80.0, head_us=T0))
    tracker.advance(T0 + 59 * S)
    assert [t.state for t in sink.transitions] == ["pending"]
    tracker.advance(T0 + 3600 * S)
    assert [(t.state, t.at_us, t.value) for t in sink.transitions][-1] == (
        "firing",
        T0 + 60 * S,
        80.0,
    )


def test_metric_running_uses_the_all_time_mean() -> None:
    tracker, sink = _tracker(AlertSettings(metric="running", for_seconds=0))
    tracker.observe("d", FakeStats(mean=70.0, window_mean=99.0, max=99.0, head_us=T0))
    assert sink.transitions == []
    tracker.observe("d", FakeStats(mean=76.0, window_mean=10.0, max=99.0, head_us=T0 + S))
    assert [t.state for t in sink.transitions] == ["firing"]


def test_per_device_override_threshold_applies() -> None:
    settings = AlertSettings(
        for_seconds=0, overrides=(RuleOverride(match="oven-*", threshold=200.0),)
    )
    tracker, sink = _tracker(settings)
    tracker.observe("oven-1", FakeStats(mean=150.0, window_mean=150.0, max=150.0, head_us=T0))
    tracker.observe("room-1", FakeStats(mean=76.0, window_mean=76.0, max=76.0, head_us=T0))
    assert [(t.device, t.state) for t in sink.transitions] == [("room-1", "firing")]


def test_stale_and_recovered_on_event_time() -> None:
    tracker, sink = _tracker(AlertSettings(stale_after=60))
    stats = FakeStats(mean=20.0, window_mean=20.0, max=20.0, head_us=T0)
    tracker.observe("d", stats)
    tracker.advance(T0 + 60 * S)  # silent for exactly stale_after: not yet stale
    assert sink.transitions == []
    tracker.advance(T0 + 61 * S)
    tracker.advance(T0 + 500 * S)  # stays stale, recorded once
    tracker.observe("d", _at(stats, 600, 21.0))
    assert [(t.state, (t.at_us - T0) / S) for t in sink.transitions] == [
        ("stale", 60.0),
        ("recovered", 600.0),
    ]


def test_state_round_trip_keeps_pending_and_firing() -> None:
    settings = AlertSettings(for_seconds=60, stale_after=300)
    tracker, _ = _tracker(settings)
    tracker.observe("hot", FakeStats(mean=80.0, window_mean=80.0, max=80.0, head_us=T0))
    tracker.advance(T0 + 60 * S)
    tracker.observe("warm", FakeStats(mean=80.0, window_mean=80.0, max=80.0, head_us=T0 + 30 * S))
    tracker.observe("cool", FakeStats(mean=20.0, window_mean=20.0, max=20.0, head_us=T0 + 30 * S))
    state = tracker.to_state()

    sink2 = RecordingSink()
    restored = AlertTracker.from_state(state, partition="p", rules=RuleBook(settings), sink=sink2)
    assert restored.states() == {"hot": "firing", "warm": "pending"}
    restored.advance(T0 + 90 * S)  # warm's for elapses after the restore
    assert [(t.device, t.state, t.at_us) for t in sink2.transitions] == [
        ("warm", "firing", T0 + 90 * S)
    ]
    restored.advance(T0 + 331 * S)  # every device silent for more than 300 s
    assert sorted(t.device for t in sink2.transitions if t.state == "stale") == [
        "cool",
        "hot",
        "warm",
    ]


def test_without_stale_detection_only_devices_that_went_above_are_kept() -> None:
    tracker, sink = _tracker(AlertSettings(for_seconds=0))
    for i in range(100):
        tracker.observe(f"cool-{i}", FakeStats(mean=20.0, window_mean=20.0, max=20.0, head_us=T0))
    hot = FakeStats(mean=80.0, window_mean=80.0, max=80.0, head_us=T0)
    tracker.observe("hot", hot)
    tracker.observe("hot", _at(hot, 10, 60.0))
    assert len(tracker) == 1
    assert list(tracker.to_state()["devices"]) == ["hot"]
    assert [(t.device, t.state) for t in sink.transitions] == [
        ("hot", "firing"),
        ("hot", "resolved"),
    ]


def test_a_restore_with_stale_detection_on_watches_devices_left_untracked() -> None:
    tracker, _ = _tracker(AlertSettings())
    cool = FakeStats(mean=20.0, window_mean=20.0, max=20.0, head_us=T0)
    tracker.observe("cool", cool)
    state = tracker.to_state()
    assert state["devices"] == {}

    sink = RecordingSink()
    settings = AlertSettings(stale_after=300)
    restored = AlertTracker.from_state(state, partition="p", rules=RuleBook(settings), sink=sink)
    restored.track_untracked({"cool": cool})
    restored.advance(T0 + 301 * S)
    assert [(t.device, t.state, t.at_us) for t in sink.transitions] == [
        ("cool", "stale", T0 + 300 * S)
    ]


@pytest.mark.parametrize(
    "state",
    [
        {"version": 2, "devices": {}},
        {"version": 1, "devices": []},
        {"version": 1, "devices": {"d": [5, 0, None, 0, False]}},
        {"version": 1, "devices": {"d": [0, 0, None, "x", False]}},
    ],
)
def test_malformed_state_is_refused(state: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="alert state"):
        AlertTracker.from_state(
            state, partition="p", rules=RuleBook(AlertSettings()), sink=RecordingSink()
        )
