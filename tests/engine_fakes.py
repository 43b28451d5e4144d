"""Fakes for unit tests of the engine's logic (no broker): a commit side that records what
it is given, and the real state dir, alerter and file dead letters around it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from iotmon.alerts import Alerter, AlertSettings
from iotmon.alerts.model import Digest
from iotmon.engine.partition import PartitionState
from iotmon.engine.ports import Checkpoint, Stored
from iotmon.sources.base import Position
from iotmon.state.deadletters import FileDeadLetters, TakenDeadLetters
from iotmon.state.statedir import StateDir
from iotmon.stats import StatsTable, WindowSpec

SPEC = WindowSpec.from_seconds(window=300, pane=10, lateness=30)
S = 1_000_000
T0 = 1_678_882_537 * S


@dataclass(frozen=True)
class Found:
    checkpoint: str
    payload: bytes | None


@dataclass
class FakeCommitter:
    """Records commits; ``stored`` answers :meth:`latest`; ``member`` what commit returns."""

    shared: bool = False
    store: str = "the fake store"
    member: bool = True
    stored: dict[str, Found] = field(default_factory=dict)
    commits: list[tuple[list[Checkpoint], int, dict[str, Position]]] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    on_commit: Callable[[], None] = lambda: None
    asked: list[dict[str, str | None]] = field(default_factory=list)

    def outdated(self) -> bool:
        return False

    async def latest(
        self, names: Collection[str], *, known: Mapping[str, str | None]
    ) -> Mapping[str, Stored]:
        self.asked.append(dict(known))
        return {n: self.stored[n] for n in names if n in self.stored}

    async def commit(
        self,
        checkpoints: Sequence[Checkpoint],
        dead: TakenDeadLetters,
        positions: Mapping[str, Position],
        *,
        durable: Callable[[], Awaitable[None]],
    ) -> bool:
        self.on_commit()
        await dead.send()
        await durable()
        self.commits.append((list(checkpoints), dead.count, dict(positions)))
        return self.member

    def forget(self, partition: str) -> None:
        self.forgotten.append(partition)

    async def close(self) -> None:
        pass


class Sink:
    """The alerter's digest sink: keeps what it is handed."""

    def __init__(self) -> None:
        self.digests: list[Digest] = []

    def __call__(self, digests: Sequence[Digest]) -> None:
        self.digests.extend(digests)


def opened_state_dir(root: Path) -> StateDir:
    state_dir = StateDir(root)
    state_dir.open()
    return state_dir


def alerter(root: Path) -> Alerter:
    return Alerter(settings=AlertSettings(), sink=Sink(), state_dir=root)


def partition(name: str, alerts: Alerter, *, readings: int = 0, offset: int = 0) -> PartitionState:
    """A partition that has seen ``readings`` readings of devices d0, d1, ... at 20 °C."""
    part = PartitionState(name=name, table=StatsTable(SPEC), tracker=alerts.tracker(name))
    for i in range(readings):
        part.table.add(f"d{i}", 20.0, T0 + i * S)
    part.read = part.accepted = readings
    part.head_us = T0 + readings * S
    part.position = {"offset": offset}
    part.dirty = True
    return part


def dead_letters(root: Path) -> FileDeadLetters:
    return FileDeadLetters(root)
