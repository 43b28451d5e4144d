"""Digest scheduling: group wait/interval, reminders, recipient groups, identity (pure logic)."""

from __future__ import annotations

from iotmon.alerts import AlertSettings, Change, DigestScheduler
from iotmon.alerts.digest import ChangeState
from iotmon.alerts.tracker import StatsView
from iotmon.notify import Digest
from iotmon.stats import WindowSpec

S = 1_000_000
T0 = 1_678_882_537 * S


def no_live_stats(device: str) -> StatsView | None:
    return None


def change(
    device: str,
    state: ChangeState,
    at_s: float,
    *,
    recipients: tuple[str, ...] = (),
    value: float = 80.0,
) -> Change:
    return Change(
        device=device,
        state=state,
        at_us=T0 + round(at_s * S),
        value=value,
        threshold=75.0,
        clear_below=73.0,
        recipients=recipients,
        window_mean=value,
        running_mean=value - 1,
        max=value + 5,
        last_seen_us=T0 + round(at_s * S),
    )


def scheduler(**kwargs: float) -> DigestScheduler:
    return DigestScheduler(settings=AlertSettings(**kwargs))  # type: ignore[arg-type]


def due(s: DigestScheduler, at_s: float) -> list[Digest]:
    return s.due(T0 + round(at_s * S), live=no_live_stats)


def slot_s(digest: Digest) -> float:
    return (digest.slot_us - T0) / S


def test_first_digest_waits_group_wait_and_collects_what_happened_meanwhile() -> None:
    s = scheduler()
    s.add(change("a", "firing", 100))
    assert due(s, 109.9) == []
    s.add(change("b", "firing", 105))
    [digest] = due(s, 110)
    assert slot_s(digest) == 110.0
    assert [r.device for r in digest.firing] == ["a", "b"]
    assert all(r.new for r in digest.firing)


def test_at_most_one_digest_per_group_interval() -> None:
    s = scheduler()
    s.add(change("a", "firing", 0))
    assert len(due(s, 10)) == 1
    s.add(change("b", "firing", 20))
    assert due(s, 69) == []
    [second] = due(s, 70)
    assert slot_s(second) == 70.0  # previous digest + group_interval
    # Everything that fired so far is listed; only b is new.
    assert [(r.device, r.new) for r in second.firing] == [("a", False), ("b", True)]


def test_change_after_the_slot_goes_to_the_next_digest_even_if_asked_late() -> None:
    s = scheduler()
    s.add(change("a", "firing", 0))
    s.add(change("b", "firing", 30))  # after a's slot (10): not in the first digest
    first, second = due(s, 1000)
    assert [r.device for r in first.firing] == ["a"]
    assert slot_s(second) == 70.0
    assert [r.device for r in second.firing] == ["a", "b"]


def test_reminder_every_repeat_interval_while_firing_and_none_after_resolved() -> None:
    s = scheduler(repeat_interval=3600)
    s.add(change("a", "firing", 0))
    assert [d.kind for d in due(s, 10)] == ["change"]
    assert [(d.kind, slot_s(d)) for d in due(s, 3610)] == [("reminder", 3610.0)]
    assert [(d.kind, slot_s(d)) for d in due(s, 7210)] == [("reminder", 7210.0)]
    s.add(change("a", "resolved", 7300, value=70.0))
    [resolved] = due(s, 8000)
    assert resolved.kind == "change"
    assert resolved.firing == ()
    assert [r.device for r in resolved.resolved] == ["a"]
    assert due(s, 100_000) == []
    assert s.next_due_us() is None


def test_fired_and_resolved_within_one_slot_shows_only_as_resolved() -> None:
    s = scheduler()
    s.add(change("a", "firing", 0))
    s.add(change("a", "resolved", 5, value=70.0))
    [digest] = due(s, 10)
    assert digest.firing == ()
    assert [r.device for r in digest.resolved] == ["a"]


def test_stale_and_recovered_sections() -> None:
    s = scheduler(stale_after=300)
    s.add(change("quiet", "stale", 0))
    [first] = due(s, 10)
    assert [r.device for r in first.stale] == ["quiet"]
    assert first.stale_after == 300
    s.add(change("quiet", "recovered", 500))
    [second] = due(s, 510)
    assert second.stale == ()
    assert [r.device for r in second.recovered] == ["quiet"]


def test_digests_are_split_per_recipient_set() -> None:
    s = scheduler()
    s.add(change("room", "firing", 0))
    s.add(change("lab-1", "firing", 0, recipients=("lab@example.com",)))
    digests = due(s, 10)
    assert {d.recipients: [r.device for r in d.firing] for d in digests} == {
        (): ["room"],
        ("lab@example.com",): ["lab-1"],
    }
    assert len({d.digest_id for d in digests}) == 2


def test_identity_depends_on_what_happened_not_on_the_figures() -> None:
    def run(value: float) -> str:
        s = scheduler()
        s.add(change("a", "firing", 0, value=value))
        [digest] = due(s, 10)
        return digest.digest_id

    assert run(80.0) == run(81.5)

    other = scheduler()
    other.add(change("a", "firing", 1))
    [digest] = due(other, 11)
    assert digest.digest_id != run(80.0)


def test_state_round_trip_regenerates_the_same_digests() -> None:
    s = scheduler(repeat_interval=600)
    s.add(change("a", "firing", 0))
    due(s, 10)
    s.add(change("b", "firing", 20))
    saved = s.to_state()
    expected = [d.digest_id for at_s in (100, 700, 1300, 1900) for d in due(s, at_s)]

    restored = scheduler(repeat_interval=600)
    restored.restore(saved)
    got = [d.digest_id for at_s in (100, 700, 1300, 1900) for d in due(restored, at_s)]
    assert got == expected
    assert len(expected) == 4  # b's change at 70, reminders at 670, 1270, 1870


def test_a_gap_in_the_stream_sends_one_reminder_not_a_backlog() -> None:
    """A replay with a year missing, or one reading dated 9000 years ahead, must not mail one
    reminder per interval it jumped over (at 4 h that was millions, and a hung consumer)."""
    s = scheduler(repeat_interval=3600)
    s.add(change("a", "firing", 0))
    due(s, 10)
    [reminder] = due(s, 365 * 86400)
    assert reminder.kind == "reminder"
    assert slot_s(reminder) == 10 + (365 * 86400 - 10) // 3600 * 3600
    [again] = due(s, 365 * 86400 + 3600)
    assert slot_s(again) == slot_s(reminder) + 3600


def test_drain_sends_queued_changes_now_in_one_digest_per_group() -> None:
    s = scheduler()
    s.add(change("a", "firing", 0))
    s.add(change("b", "firing", 500))
    [digest] = s.drain(live=no_live_stats)
    assert [r.device for r in digest.firing] == ["a", "b"]
    assert s.drain(live=no_live_stats) == []
    # Reminders are not drained.
    assert s.next_due_us() is not None


def test_adopted_devices_are_reminded_about_but_not_announced() -> None:
    s = scheduler(repeat_interval=600)
    s.add(change("mine", "firing", 0))
    due(s, 10)
    s.adopt(change("moved-here", "firing", -100))
    assert due(s, 600) == []
    [reminder] = due(s, 610)
    assert [(r.device, r.new) for r in reminder.firing] == [("mine", False), ("moved-here", False)]
    s.forget({"moved-here"})
    [reminder] = due(s, 1210)
    assert [r.device for r in reminder.firing] == ["mine"]


def test_live_stats_replace_the_snapshot_figures() -> None:
    class Stats:
        mean = 90.0
        window_mean = 91.0
        max = 99.0
        head_us = T0 + 9 * S
        spec = WindowSpec.from_seconds(window=30, pane=10)

        def pane_means(self) -> tuple[float | None, ...]:
            return (88.0, None, 91.0)

    s = scheduler()
    s.add(change("a", "firing", 0))
    [digest] = s.due(T0 + 10 * S, live=lambda device: Stats())
    [report] = digest.firing
    assert (report.value, report.running_mean, report.max) == (91.0, 90.0, 99.0)
    assert report.last_seen_us == T0 + 9 * S
    assert report.since_us == T0
    # The trend is a figure too: the live pane means, with their pane length.
    assert (report.trend, report.pane_s) == ((88.0, None, 91.0), 10.0)
