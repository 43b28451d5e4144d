"""Property test: how a stream is cut into batches changes nothing the engine computes.

The same random stream goes through the real :class:`~iotmon.engine.pipeline.Pipeline` once
line by line, once in random chunks and once as one batch, and every run must end with the
same statistics (each device's exact state, window panes included), the same counts by
rejection reason and late readings, and the same alert transitions (device, state, event
time, value). This is the contract a batch-at-a-time hot path has to keep: whatever it does
per batch, it must agree with the reading-at-a-time rules.

Streams mix both key fields, ints and floats, spikes across the threshold, disorder within
the allowed lateness, silent devices (stale), and every kind of rejection a line can earn,
too-long lines and far-future times included.

Not readings later than the allowed lateness: the engine advances its stream clock once per
batch, so a deadline (stale, pending → firing) that such a reading falls behind is applied
before it when it is alone in its batch and after it when it shares one — found by this
test (a device silent 90 s whose next reading came 16 s behind the partition's newest:
stale + recovered line by line, nothing in one batch). The alert tracker documents that
assumption; a hot path that advances the clock per reading would lift it.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotmon.alerts import AlertSettings
from iotmon.alerts.tracker import Transition
from iotmon.engine.pipeline import Pipeline
from iotmon.notify import Notification
from iotmon.parse import ParseSettings
from iotmon.settings import Settings
from iotmon.sources.base import Batch, Position, RestoreHook, RevokeHook, cap_lines
from iotmon.stats import WindowSpec

T0 = datetime(2023, 3, 15, 12, 0, tzinfo=UTC)
SPEC = WindowSpec.from_seconds(window=60, pane=10, lateness=15)
MAX_LINE_BYTES = 600
KEY_FIELDS = ("id_equipamento", "sensor")


class ScriptedSource:
    """One partition whose batches are exactly ``chunks`` (too-long lines capped the way
    the Kafka source caps them)."""

    name = "scripted"

    def __init__(self, chunks: Sequence[Sequence[bytes]]) -> None:
        self._chunks = chunks

    async def open(self, *, on_assign: RestoreHook, on_revoke: RevokeHook) -> None:
        await on_assign([self.name])

    async def batches(self) -> AsyncIterator[Batch | None]:
        line = 0
        for chunk in self._chunks:
            lines = list(chunk)
            oversized = cap_lines(lines, MAX_LINE_BYTES)
            positions = range(line, line + len(lines))
            line += len(lines)
            yield Batch(self.name, lines, positions, {"line": line}, oversized=oversized)

    async def commit(self, positions: dict[str, Position]) -> None:
        """Nothing to acknowledge: the script is replayed whole by every run."""

    def lag(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        """Nothing held open."""


def reading(key_field: str, device: str, at: datetime, temperature: float | int) -> bytes:
    doc: dict[str, Any] = {
        "id_sensor": "Sensor-1503-762GK",
        "id_equipamento": "Equipament-0323XH-762GK",
        "sensor": "sensor16",
        "data_evento": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "padrao": {"formato": "iot:leitura:sensor:temp", "leitura": {"temperatura": temperature}},
    }
    doc[key_field] = device
    return orjson.dumps(doc)


def hostile(key_field: str, at: datetime) -> list[bytes]:
    """One line per rejection reason."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    good = orjson.loads(reading(key_field, "x", at, 70.0))
    missing = {k: v for k, v in good.items() if k != "data_evento"}
    return [
        b"{not json",
        b"[1, 2, 3]",
        orjson.dumps(missing),
        orjson.dumps({**good, key_field: 17}),
        orjson.dumps({**good, "padrao": {"leitura": {"temperatura": "hot"}}}),
        orjson.dumps({**good, "padrao": {"leitura": {"temperatura": 0}}}).replace(
            b":0}", b":1e400}"
        ),
        orjson.dumps({**good, "padrao": {"leitura": {"temperatura": 900.0}}}),
        orjson.dumps({**good, "data_evento": stamp.replace("T", " at ")}),
        orjson.dumps({**good, key_field: "   "}),
        b'{"pad": "' + b"x" * (2 * MAX_LINE_BYTES) + b'"}',
        orjson.dumps({**good, "data_evento": "9999-01-01T00:00:00.000000Z"}),
    ]


@st.composite
def streams(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    key_field = draw(st.sampled_from(KEY_FIELDS))
    devices = [f"dev-{n}" for n in range(draw(st.integers(1, 5)))]
    clock = 0.0
    lines: list[bytes] = []
    for _ in range(draw(st.integers(1, 160))):
        step = draw(st.one_of(st.floats(0, 4), st.floats(0, 120), st.just(0.0)))
        clock += step
        kind = draw(st.integers(0, 19))
        at = T0 + timedelta(seconds=clock)
        if kind == 0:
            lines.append(draw(st.sampled_from(hostile(key_field, at))))
            continue
        if kind < 6:
            # Out of order, within the allowed lateness of the newest reading (never after
            # `clock`): see the module docstring for readings later than that.
            at -= timedelta(seconds=draw(st.floats(0, 14.9)))
        if kind == 2:
            temperature: float | int = draw(st.integers(60, 95))
        else:
            temperature = draw(st.floats(60, 95)) if kind != 3 else draw(st.sampled_from([30, 150]))
        lines.append(reading(key_field, draw(st.sampled_from(devices)), at, temperature))
    return key_field, lines


def cuts(lines: list[bytes], sizes: list[int]) -> list[list[bytes]]:
    chunks: list[list[bytes]] = []
    start = 0
    for size in sizes:
        if start >= len(lines):
            break
        chunks.append(lines[start : start + size])
        start += size
    if start < len(lines):
        chunks.append(lines[start:])
    return chunks


async def outcome(key_field: str, chunks: list[list[bytes]], state_dir: Path) -> dict[str, Any]:
    async def notifier(notification: Notification) -> None:
        """Digests are not what this test compares; transitions are."""

    config = Settings(
        state_dir=state_dir,
        parse=ParseSettings(key_field=key_field),
        window=SPEC,
        alerts=AlertSettings(threshold=75.0, for_seconds=20.0, stale_after=90.0),
        flush_timeout=0,
    )
    async with Pipeline(config, source=ScriptedSource(chunks), notifier=notifier) as pipeline:
        await pipeline.run()
        [part] = pipeline.partitions.values()
        return {
            "devices": {k: s.to_state() for k, s in sorted(part.table.devices.items())},
            "late": part.table.late,
            "read": part.read,
            "accepted": part.accepted,
            "rejected": dict(sorted(part.rejected.items())),
            # Per device, in the order recorded. Across devices the order is when each was
            # noticed: a deadline (pending → firing, stale) when the stream clock passes it,
            # which is after each batch; its time, like every transition's, is the readings'.
            "transitions": transitions_by_device(pipeline.alerter.transitions),
        }


def transitions_by_device(transitions: list[Transition]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for t in transitions:
        found.setdefault(t.device, []).append((t.state, t.at_us, t.value))
    return dict(sorted(found.items()))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stream=streams(), sizes=st.lists(st.integers(1, 40), max_size=60))
def test_how_a_stream_is_cut_into_batches_changes_nothing(
    stream: tuple[str, list[bytes]], sizes: list[int]
) -> None:
    key_field, lines = stream
    runs = {
        "line by line": [[line] for line in lines],
        "random chunks": cuts(lines, sizes),
        "one batch": [lines],
    }
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            name: asyncio.run(outcome(key_field, chunks, Path(tmp) / name.replace(" ", "-")))
            for name, chunks in runs.items()
        }
    reference = results["line by line"]
    assert reference["read"] == len(lines)
    for name, result in results.items():
        assert result == reference, name


def test_the_streams_reach_every_rejection_reason_and_every_transition() -> None:
    """The generator is worth its name: together, hostile lines earn every reason."""
    with tempfile.TemporaryDirectory() as tmp:
        lines = hostile("sensor", T0)
        hot = [reading("sensor", "hot", T0 + timedelta(seconds=s), 90.0) for s in range(0, 60, 5)]
        cool = [
            reading("sensor", "hot", T0 + timedelta(seconds=s), 60.0) for s in range(60, 200, 5)
        ]
        result = asyncio.run(outcome("sensor", [lines + hot + cool], Path(tmp)))
    assert set(result["rejected"]) == {
        "invalid_json",
        "not_object",
        "missing_field",
        "wrong_type",
        "not_finite",
        "out_of_range",
        "bad_timestamp",
        "bad_key",
        "too_long",
        "future_time",
    }
    states = {state for rows in result["transitions"].values() for state, _, _ in rows}
    assert states >= {"pending", "firing", "resolved"}
