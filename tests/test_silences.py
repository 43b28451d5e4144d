"""Silences: the model, wall-clock expiry, the file store, and what digests leave out
(pure logic and files; the CLI and a running consumer in test_silences_cli.py and
test_silences_kafka.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import html
from pathlib import Path

import pytest

from iotmon.alerts import AlertSettings
from iotmon.alerts.digest import DigestScheduler
from iotmon.alerts.silences import (
    Silence,
    SilenceError,
    Silences,
    new_silence,
    parse_duration,
    parse_time,
)
from iotmon.errors import ConfigError
from iotmon.notify import Digest, EmailSettings, render_email
from iotmon.notify.preview import sample
from iotmon.state.silences import FileSilenceStore, FileSilenceWatch
from tests.test_digest import T0, change, no_live_stats
from tests.test_email_golden import EN, PT, received
from tests.test_email_golden import NOW as GOLDEN_NOW
from tests.test_email_golden import text_of as golden_text

S = 1_000_000
NOW = 1_790_000_000.0


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def silence(pattern: str, *, start: float = NOW, end: float = NOW + 3600) -> Silence:
    return Silence(id=pattern, pattern=pattern, starts_at=start, ends_at=end, created_at=start)


def test_a_silence_covers_the_devices_its_glob_matches_while_the_wall_clock_is_inside_it() -> None:
    clock = FakeClock(NOW - 1)
    live = Silences([silence("Sensor-1*")], clock=clock)
    assert not live.silenced("Sensor-10")  # not started yet
    clock.now = NOW
    assert live.silenced("Sensor-10")
    assert not live.silenced("Sensor-20")
    assert not live.silenced("sensor-10")  # case-sensitive, like per-device rules
    clock.now = NOW + 3600
    assert not live.silenced("Sensor-10")  # ended


def test_durations_times_and_bad_values() -> None:
    assert parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    assert parse_time("2026-12-01T18:00Z") == parse_time("2026-12-01T15:00-03:00")
    with pytest.raises(ConfigError, match="for: '2q' is not a duration"):
        parse_duration("2q")
    with pytest.raises(ConfigError, match="not in the future"):
        new_silence(pattern="x", until=NOW - 1, now=NOW)
    with pytest.raises(ConfigError, match="one of the two"):
        new_silence(pattern="x", duration=60, until=NOW + 60, now=NOW)
    made = new_silence(pattern="x", duration=60, comment="c", created_by="me", now=NOW)
    assert Silence.from_json(made.to_json()) == made


def test_file_store_adds_lists_expires_and_drops_ended_silences(tmp_path: Path) -> None:
    clock = FakeClock()
    store = FileSilenceStore(tmp_path / "state", clock=clock)
    first = new_silence(pattern="a*", duration=60, now=clock.now)
    second = new_silence(pattern="b*", duration=600, now=clock.now)
    asyncio.run(store.add(first))
    asyncio.run(store.add(second))
    assert asyncio.run(store.read()) == [first, second]
    assert asyncio.run(store.expire(second.id[:6])) == second
    assert asyncio.run(store.read()) == [first]
    with pytest.raises(SilenceError, match="silence list"):
        asyncio.run(store.expire("nope"))
    clock.now += 61  # `first` ended: the next write leaves it out
    third = new_silence(pattern="c*", duration=60, now=clock.now)
    asyncio.run(store.add(third))
    assert asyncio.run(store.read()) == [third]


def test_file_watch_sees_a_silence_added_while_it_runs_and_survives_a_broken_file(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    live = Silences(clock=clock)
    watch = FileSilenceWatch(tmp_path, silences=live)
    store = FileSilenceStore(tmp_path, clock=clock)

    async def scenario() -> None:
        await watch.start()
        try:
            assert len(live) == 0
            await store.add(new_silence(pattern="Sensor-1*", duration=60, now=clock.now))
            assert watch.refresh()
            assert live.silenced("Sensor-1")
            (tmp_path / "silences.json").write_text("{broken")
            assert watch.refresh()
            assert live.silenced("Sensor-1")  # the silences read before stay in force
        finally:
            await watch.aclose()

    asyncio.run(scenario())


# -- what digests leave out ------------------------------------------------------------


def scheduler(live: Silences) -> DigestScheduler:
    return DigestScheduler(settings=AlertSettings(), silences=live)


def due(s: DigestScheduler, at_s: float) -> list[Digest]:
    return s.due(T0 + round(at_s * S), live=no_live_stats)


def test_silenced_devices_are_left_out_and_counted_and_only_silenced_changes_send_nothing() -> None:
    clock = FakeClock()
    live = Silences([silence("a")], clock=clock)
    s = scheduler(live)
    s.add(change("a", "firing", 0))
    s.add(change("b", "firing", 1))
    [digest] = due(s, 10)
    assert [r.device for r in digest.firing] == ["b"]
    assert digest.silenced == 1
    s.add(change("a", "resolved", 20))  # resolved while silenced: not reported at all
    assert due(s, 70) == []
    s.add(change("a", "firing", 100))
    assert due(s, 130) == []  # only a, silenced: nothing to send


def test_silencing_does_not_change_a_digests_identity() -> None:
    def first_digest(live: Silences) -> Digest:
        s = scheduler(live)
        s.add(change("a", "firing", 0))
        s.add(change("b", "firing", 1))
        [digest] = due(s, 10)
        return digest

    silenced = first_digest(Silences([silence("a")], clock=FakeClock()))
    plain = first_digest(Silences(clock=FakeClock()))
    # A replay after the silence changed regenerates the same id: the outbox drops it.
    assert silenced.digest_id == plain.digest_id
    assert (silenced.silenced, plain.silenced) == (1, 0)


def test_when_a_silence_ends_the_next_digest_lists_the_device_still_firing_not_as_new() -> None:
    clock = FakeClock()
    live = Silences([silence("a", end=NOW + 100)], clock=clock)
    s = scheduler(live)
    s.add(change("a", "firing", 0))
    s.add(change("b", "firing", 1))
    [first] = due(s, 10)
    assert [r.device for r in first.firing] == ["b"]
    assert due(s, 200) == []  # still silenced: nothing due before the 4 h reminder
    clock.now = NOW + 100  # the silence ends (wall time)
    [second] = due(s, 200)
    assert slot_s(second) == 70.0  # group_interval after the previous digest
    assert [(r.device, r.new) for r in second.firing] == [("a", False), ("b", False)]
    assert second.silenced == 0
    assert due(s, 300) == []  # told once; reminders as usual from here


def test_a_silence_lifted_over_a_device_that_resolved_meanwhile_sends_nothing() -> None:
    clock = FakeClock()
    live = Silences([silence("a", end=NOW + 100)], clock=clock)
    s = scheduler(live)
    s.add(change("a", "firing", 0))
    assert due(s, 10) == []
    s.add(change("a", "resolved", 20))
    assert due(s, 80) == []  # the resolution is not reported either
    clock.now = NOW + 100
    assert due(s, 200) == []


def slot_s(digest: Digest) -> float:
    return (digest.slot_us - T0) / S


# -- what emails say -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        (EN, "2 devices silenced: not listed here, still watched (`iotmon silence list`)."),
        (
            PT,
            "2 sensores silenciados: fora desta lista, ainda monitorados (`iotmon silence list`).",
        ),
    ],
)
def test_an_email_says_how_many_devices_are_silenced_and_nothing_else_changes(
    settings: EmailSettings, line: str
) -> None:
    plain = sample("mixed")
    quiet = dataclasses.replace(plain, silenced=2)
    before, after = (
        received(render_email(d, settings=settings, now=GOLDEN_NOW)) for d in (plain, quiet)
    )
    lines_before = golden_text(before, "plain").splitlines()
    lines_after = golden_text(after, "plain").splitlines()
    assert [x for x in lines_after if x not in lines_before] == [line]
    assert len(lines_after) == len(lines_before) + 1
    assert html.escape(line, quote=True) in golden_text(after, "html")
    assert "silenc" not in golden_text(before, "html")
    # Queued digests round-trip, and those queued before silences read as none silenced.
    assert Digest.from_json(quiet.to_json()) == quiet
    old = quiet.to_json()
    del old["silenced"]
    assert Digest.from_json(old) == plain
