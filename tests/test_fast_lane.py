"""Property test: the fast lane of the batch path computes exactly what the exact path does.

The same random stream, cut into the same batches, goes through the real
:class:`~iotmon.engine.pipeline.Pipeline` twice: once with ``fast=False`` (every reading
through the exact path, the reference) and once with the fast lane (blocks parsed into
columns, quiet in-order readings held and folded in later, :mod:`iotmon.engine.hotpath`).
Both runs must end with the same statistics (each device's ``to_state()``, floats compared
exactly), late count, counts by rejection reason, read/accepted, alert transitions (in the
order recorded: device, state, event time, value), tracker state and the digests handed
to the notifier.

Size: 150 streams × 3,000–15,000 lines (a few 512-line blocks each), every stream run twice.
A stream is a list of segments, each expanded from its own seed, so hypothesis can shrink
a failure to the segments that matter. Segments: quiet readings of a few devices reporting
many times a second (many readings in order in one pane: what the fast lane holds), values
at and just below the threshold and the fast lane's quiet bound (within 1e-6 of them),
spikes across the threshold, ints, bools (rejected), valid-range extremes and subnormals,
event-time disorder within the allowed lateness, beyond it and beyond the window, every
kind of rejected line (``hostile()``), one device alone while the others fall silent (stale
when stale detection is on). Each stream starts up to 150 s before an hour and runs past it.
Settings vary too: both key fields, both metrics, ``for`` 0 or 20 s, with and without stale
detection, a silence on no device, one device or all of them, and the held-readings limit
of the fast lane at its default or low enough to settle every few blocks. Batches are one
line each, random sizes, or the whole stream at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from iotmon.alerts import AlertSettings
from iotmon.alerts.silences import Silence
from iotmon.blocks import BLOCK_LINES, BlockParser, Columns
from iotmon.engine import hotpath
from iotmon.engine.pipeline import Pipeline
from iotmon.notify import EmailSettings, Notification
from iotmon.parse import ParseSettings
from iotmon.settings import Settings
from iotmon.sources.base import Batch
from iotmon.state.silences import FileSilenceStore
from tests.helpers import PATIENCE_S
from tests.test_batch_invariance import KEY_FIELDS, SPEC, ScriptedSource, cuts, hostile, reading

HOUR = datetime(2023, 3, 15, 13, 0, tzinfo=UTC)
THRESHOLD = 75.0
QUIET = THRESHOLD - 1e-6 * 200.0
"""The fast lane's quiet bound for the default valid range (-50..200): hotpath's margin."""
MIN_LINES = 3_000
KINDS = ("quiet", "edge", "hot", "ints", "bools", "extremes", "disorder", "hostile", "solo")


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    key_field: str
    metric: str
    for_seconds: float
    stale_after: float | None
    devices: int
    silence: str | None
    lead_s: float
    """Seconds between the first reading and the hour boundary."""
    segments: tuple[tuple[str, int, int], ...]
    """``(kind, length, seed)``."""
    batches: str
    sizes: tuple[int, ...]
    most_held: int | None
    """The fast lane's held-readings limit, when lowered from its default."""


def edge_values(rng: random.Random) -> float:
    """A value at or just around the threshold or the quiet bound."""
    return rng.choice(
        (
            THRESHOLD,
            THRESHOLD - 1e-7,
            THRESHOLD - rng.uniform(0, 1e-6),
            math.nextafter(THRESHOLD, 0.0),
            QUIET,
            math.nextafter(QUIET, 0.0),
            math.nextafter(QUIET, 100.0),
            QUIET - rng.uniform(0, 1e-6),
            QUIET + rng.uniform(0, 1e-6),
            rng.uniform(74.9, 75.0),
        )
    )


def extreme_value(rng: random.Random) -> float | int:
    return rng.choice((-50.0, 200.0, -50, 200, 5e-324, -5e-324, 0.0, -0.0, 1e-300, 199.99999999))


def expand(plan: Plan) -> list[bytes]:
    """The stream a plan describes: one segment after the other, each from its own seed,
    padded with quiet readings to at least ``MIN_LINES``."""
    devices = [f"dev-{n}" for n in range(plan.devices)]
    clock = [-plan.lead_s]
    lines: list[bytes] = []

    def line(
        rng: random.Random, value: float | int, *, back: float = 0.0, device: str = ""
    ) -> None:
        at = HOUR + timedelta(seconds=clock[0] - back)
        lines.append(reading(plan.key_field, device or rng.choice(devices), at, value))

    def step(rng: random.Random, longest: float) -> None:
        clock[0] += rng.uniform(0, longest)

    def quiet(rng: random.Random) -> float:
        return rng.uniform(60.0, 74.0)

    segments = list(plan.segments)
    total = sum(min(n, 3) if kind == "hostile" else n for kind, n, _ in segments)
    if total < MIN_LINES:
        segments.append(("quiet", MIN_LINES - total, 0))
    for kind, n, seed in segments:
        rng = random.Random(seed)
        if kind == "hostile":
            step(rng, 0.05)
            at = HOUR + timedelta(seconds=clock[0])
            lines.extend(rng.sample(hostile(plan.key_field, at), min(n, 3)))
            continue
        hot = rng.choice((0.3, 0.7, 1.0))
        pace = rng.choice((0.01, 0.05, 0.5))
        for _ in range(n):
            step(rng, pace)
            if kind == "quiet":
                line(rng, quiet(rng))
            elif kind == "edge":
                line(rng, edge_values(rng) if rng.random() < 0.7 else quiet(rng))
            elif kind == "hot":
                line(rng, rng.uniform(76.0, 95.0) if rng.random() < hot else quiet(rng))
            elif kind == "ints":
                line(rng, rng.randint(60, 80) if rng.random() < 0.5 else quiet(rng))
            elif kind == "bools":
                line(rng, rng.choice((True, False)) if rng.random() < 0.05 else quiet(rng))
            elif kind == "extremes":
                line(rng, extreme_value(rng) if rng.random() < 0.2 else quiet(rng))
            elif kind == "disorder":
                # Within the allowed lateness (15 s), beyond it, beyond the window (60 s).
                back = rng.choice((0.0, rng.uniform(0, 14.9), rng.uniform(15, 59), 400.0))
                line(rng, quiet(rng) if rng.random() < 0.8 else 90.0, back=back)
            else:
                assert kind == "solo"
                # One device alone for a while: the others fall silent (stale after 90 s).
                step(rng, 1.0)
                line(rng, quiet(rng), device=devices[0])
    return lines


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    segment = st.tuples(st.sampled_from(KINDS), st.integers(1, 1000), st.integers(0, 2**32 - 1))
    batches = draw(st.sampled_from(("one line", "random", "all at once")))
    return Plan(
        key_field=draw(st.sampled_from(KEY_FIELDS)),
        metric=draw(st.sampled_from(("window", "running"))),
        for_seconds=draw(st.sampled_from((0.0, 20.0))),
        stale_after=draw(st.sampled_from((None, 90.0))),
        devices=draw(st.integers(1, 4)),
        silence=draw(st.sampled_from((None, "dev-1", "dev-*"))),
        lead_s=draw(st.floats(0, 150)),
        segments=tuple(draw(st.lists(segment, min_size=1, max_size=14))),
        batches=batches,
        sizes=tuple(draw(st.lists(st.integers(1, 1500), max_size=12)))
        if batches == "random"
        else (),
        most_held=draw(st.sampled_from((None, 300))),
    )


class ClockedSource(ScriptedSource):
    """Records, after each batch, the partition's head and the stream clock: a rejected
    line must not move them, and they drive stale detection, pending → firing and digests."""

    def __init__(self, chunks: list[list[bytes]]) -> None:
        super().__init__(chunks)
        self.pipeline: Pipeline | None = None
        self.clocks: list[tuple[int, int]] = []

    async def batches(self) -> AsyncIterator[Batch | None]:
        async for batch in super().batches():
            yield batch
            # Resumed for the next batch: this one is applied and the clock has ticked.
            assert self.pipeline is not None and batch is not None
            head = self.pipeline.partitions[batch.partition].head_us
            self.clocks.append((head, self.pipeline.clock.now_us))


def batches_of(plan: Plan, lines: list[bytes]) -> list[list[bytes]]:
    if plan.batches == "one line":
        return [[line] for line in lines]
    if plan.batches == "all at once":
        return [lines]
    return cuts(lines, list(plan.sizes))


async def outcome(plan: Plan, chunks: list[list[bytes]], state_dir: Path, *, fast: bool) -> Any:
    sent: list[dict[str, Any]] = []

    async def record(notification: Notification) -> None:
        sent.append(notification.digest.to_json())

    if plan.silence is not None:
        silence = Silence(id="s1", pattern=plan.silence, starts_at=0.0, ends_at=4e9)
        await FileSilenceStore(state_dir, clock=lambda: 1e9).add(silence)
    config = Settings(
        state_dir=state_dir,
        parse=ParseSettings(key_field=plan.key_field),
        window=SPEC,
        alerts=AlertSettings(
            threshold=THRESHOLD,
            metric="window" if plan.metric == "window" else "running",
            for_seconds=plan.for_seconds,
            stale_after=plan.stale_after,
        ),
        email=EmailSettings(mail_to=("ops@example.com",)),
        flush_timeout=PATIENCE_S,
    )
    source = ClockedSource(chunks)
    pipeline = source.pipeline = Pipeline(config, source=source, notifier=record, fast=fast)
    async with pipeline:
        if plan.silence is not None:
            assert pipeline.silences.silenced("dev-1" if plan.silence == "dev-1" else "dev-0")
        await pipeline.run()
        [part] = pipeline.partitions.values()
        held = part.held_count
        result = {
            "devices": {k: s.to_state() for k, s in sorted(part.table.devices.items())},
            "late": part.table.late,
            "read": part.read,
            "accepted": part.accepted,
            "rejected": dict(sorted(part.rejected.items())),
            "transitions": [
                (t.device, t.state, t.at_us, t.value) for t in pipeline.alerter.transitions
            ],
            "tracker": part.tracker.to_state(),
            "head_us": part.head_us,
            "clocks": source.clocks,
        }
    result["digests"] = sent
    return result, held


def run_both(plan: Plan) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(exact result, fast result, readings the fast run held)."""
    lines = expand(plan)
    chunks = batches_of(plan, lines)
    patch = (
        mock.patch.object(hotpath, "_MOST_HELD", plan.most_held)
        if plan.most_held is not None
        else mock.patch.object(hotpath, "_MOST_HELD", hotpath._MOST_HELD)
    )
    with tempfile.TemporaryDirectory() as tmp:
        exact, _ = asyncio.run(outcome(plan, chunks, Path(tmp) / "exact", fast=False))
        with patch:
            fast, held = asyncio.run(outcome(plan, chunks, Path(tmp) / "fast", fast=True))
    assert exact["read"] == len(lines)
    return exact, fast, held


def assert_same(exact: dict[str, Any], fast: dict[str, Any]) -> None:
    """Field by field first, so a failure names what differs."""
    for name in exact:
        assert fast[name] == exact[name], name
    # Floats equal by == could still differ in sign (-0.0) or be NaN: compare their reprs.
    assert repr(fast) == repr(exact)


@settings(
    max_examples=150,
    deadline=None,
    # Shrinking a stream of thousands of lines takes minutes; a failure prints its plan
    # (segments and seeds), and the minimal reproducers found live as tests below.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=plans())
def test_the_fast_lane_computes_what_the_exact_path_does(plan: Plan) -> None:
    exact, fast, _ = run_both(plan)
    assert_same(exact, fast)


# -- the property test cannot pass vacuously ------------------------------------------

STEADY = Plan(
    key_field="id_equipamento",
    metric="window",
    for_seconds=20.0,
    stale_after=None,
    devices=3,
    silence="dev-1",
    lead_s=200.0,
    segments=(
        ("quiet", 1500, 1),
        ("edge", 300, 2),
        ("hot", 400, 9),
        ("hostile", 3, 4),
        ("ints", 300, 5),
        ("bools", 300, 6),
        ("disorder", 400, 7),
        ("quiet", 1500, 8),
    ),
    batches="all at once",
    sizes=(),
    most_held=None,
)


def counting_columns(found: list[Columns | None]) -> Callable[..., Columns | None]:
    real = BlockParser.columns

    def columns(self: BlockParser, lines: Any) -> Columns | None:
        result = real(self, lines)
        found.append(result)
        return result

    return columns


def test_the_fast_lane_is_taken_and_agrees() -> None:
    """A steady stream of the kind the property test draws: most blocks parse into columns,
    most readings are held, it crosses the hour, alerts happen, and both paths agree."""
    found: list[Columns | None] = []
    with mock.patch.object(BlockParser, "columns", counting_columns(found)):
        exact, fast, held = run_both(STEADY)
    lines = len(expand(STEADY))
    assert len(found) == -(-lines // BLOCK_LINES)
    taken = [c for c in found if c is not None]
    # Blocks spanning the hour or holding hostile lines or readings from the hour before
    # go line by line; the others are columns.
    assert len(found) // 2 <= len(taken) < len(found)
    assert {c.stamps[0][:13] for c in taken} == {"2023-03-15T12", "2023-03-15T13"}
    # Until the hot readings, after which every device is tracked and nothing is held.
    assert held > lines // 10
    states = {state for _, state, _, _ in exact["transitions"]}
    assert states >= {"pending", "firing", "resolved"}
    assert exact["digests"] and exact["late"] and len(exact["rejected"]) >= 2
    assert_same(exact, fast)


def test_the_silence_changes_the_digests() -> None:
    """The silence the plans may draw is in force: the same stream without it lists more."""
    loud = dataclasses.replace(STEADY, silence=None)
    silenced = run_both(STEADY)[0]["digests"]
    listed = run_both(loud)[0]["digests"]
    assert any(d["silenced"] for d in silenced)
    assert not any(d["silenced"] for d in listed)


# -- found by the property test -----------------------------------------------------------


def test_a_line_the_fast_lane_hands_back_does_not_move_the_partition_head() -> None:
    """A reading with a bool value or a blank key parses into a block's columns, and the
    fast lane sends it back through the exact path, which rejects it (wrong_type,
    bad_key). The exact path does not let a rejected line move the partition's head; the
    fast lane must not either (its block's latest time counts that line), else the
    stream clock runs ahead and a device goes stale that the exact path keeps."""
    for rejected in (
        reading("sensor", "dev-0", HOUR + timedelta(seconds=200), True),
        reading("sensor", "   ", HOUR + timedelta(seconds=200), 70.0),
    ):
        plan = dataclasses.replace(
            STEADY, key_field="sensor", stale_after=90.0, silence=None, batches="one line"
        )
        lines = [reading("sensor", "dev-0", HOUR, 70.0), rejected]
        with tempfile.TemporaryDirectory() as tmp:
            exact, _ = asyncio.run(
                outcome(plan, [lines[:1], lines[1:]], Path(tmp) / "e", fast=False)
            )
            fast, _ = asyncio.run(outcome(plan, [lines[:1], lines[1:]], Path(tmp) / "f", fast=True))
        assert exact["transitions"] == []
        assert exact["head_us"] == round(HOUR.timestamp() * 1_000_000)
        assert_same(exact, fast)


def test_a_spike_held_in_one_pane_is_not_carried_into_later_panes() -> None:
    """Spikes may be held in the head pane while the window's mean has room for them, but
    the device may not then move on to later panes in the fast lane: once the quiet panes
    before the spikes leave the window, the pane of the spikes can lift the window's mean
    over the threshold, and the exact path fires there. (The int reading makes the device
    be held afresh in the pane of the spikes, with every pane of its window in range.)"""
    start = HOUR - timedelta(seconds=200)
    at = lambda s: start + timedelta(seconds=s)  # noqa: E731
    filler = [reading("id_equipamento", "dev-9", start, 60.0)] * BLOCK_LINES
    quiet = [reading("id_equipamento", "dev-0", at(s), 60.0) for s in range(50)]
    quiet.append(reading("id_equipamento", "dev-0", at(50), 74))
    spikes = [reading("id_equipamento", "dev-0", at(s), 100.0) for s in (51, 52, 53)]
    after = [reading("id_equipamento", "dev-0", at(s), 74.0) for s in range(60, 121)]
    lines = filler + quiet + spikes + after
    plan = dataclasses.replace(
        STEADY, for_seconds=0.0, silence=None, batches="all at once", most_held=None
    )
    with tempfile.TemporaryDirectory() as tmp:
        exact, _ = asyncio.run(outcome(plan, [lines], Path(tmp) / "e", fast=False))
        fast, held = asyncio.run(outcome(plan, [lines], Path(tmp) / "f", fast=True))
    assert ("dev-0", "firing") in [(d, state) for d, state, _, _ in exact["transitions"]]
    assert held > len(quiet) // 2
    assert_same(exact, fast)
