"""What the engine needs from the parts around it, and nothing about what they are.

A :class:`~iotmon.sources.base.Source` hands over batches and acknowledges positions; a
:class:`~iotmon.state.deadletters.DeadLetters` sink keeps rejected lines; a
:class:`Committer` is the source's *commit side*: where a checkpoint goes besides the
state directory, and how the positions it includes are acknowledged. The three come
together as :class:`Parts`, built in one place (:func:`iotmon.engine.parts.open_parts`,
which asks :mod:`iotmon.kafka.wiring` for Kafka's), so the engine never names a transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from iotmon.sources.base import Position, Source
from iotmon.state.deadletters import DeadLetters, TakenDeadLetters
from iotmon.state.encoding import Fragments

__all__ = ["Checkpoint", "Committer", "Parts", "SourceCommitter", "Stored"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One partition's checkpoint, encoded, for a commit side to store."""

    partition: str
    checkpoint: str
    position: Position | None
    payload: bytes | Fragments


class Stored(Protocol):
    """The newest checkpoint of a partition in a commit side's store. ``payload`` is None
    when it is the one the engine said it holds already (nothing was downloaded)."""

    @property
    def checkpoint(self) -> str: ...

    @property
    def payload(self) -> bytes | None: ...


class Committer(Protocol):
    """A source's commit side."""

    @property
    def shared(self) -> bool:
        """Whether partitions' checkpoints live in a store every instance reads (a Kafka
        changelog): partitions may then move between processes, the state directory is
        only a cache, and a notification waits for the checkpoint recording it as sent."""
        ...

    @property
    def store(self) -> str:
        """Where checkpoints are kept, for messages."""
        ...

    def outdated(self) -> bool:
        """Whether batches fetched now predate a rebalance (they come again: skip them)."""
        ...

    async def latest(
        self, names: Collection[str], *, known: Mapping[str, str | None]
    ) -> Mapping[str, Stored]:
        """The newest stored checkpoint of each partition that has one; ``known``: the
        checkpoint id the engine already holds of each."""
        ...

    async def commit(
        self,
        checkpoints: Sequence[Checkpoint],
        dead: TakenDeadLetters,
        positions: Mapping[str, Position],
        *,
        durable: Callable[[], Awaitable[None]],
    ) -> bool:
        """Store ``checkpoints`` and ``dead`` letters, await ``durable`` once they are
        stored (the engine's own writes), then acknowledge ``positions``. False when the
        acknowledgement did not go through (this process may have lost its partitions)."""
        ...

    def forget(self, partition: str) -> None:
        """``partition`` moved to another process."""
        ...

    async def close(self) -> None: ...


class SourceCommitter:
    """The commit side of a source whose state lives only in the state directory (files,
    stdin, any custom :class:`~iotmon.sources.base.Source`)."""

    shared = False
    store = "the state directory"

    def __init__(self, source: Source) -> None:
        self._source = source

    def outdated(self) -> bool:
        return False

    async def latest(
        self, names: Collection[str], *, known: Mapping[str, str | None]
    ) -> Mapping[str, Stored]:
        return {}

    async def commit(
        self,
        checkpoints: Sequence[Checkpoint],
        dead: TakenDeadLetters,
        positions: Mapping[str, Position],
        *,
        durable: Callable[[], Awaitable[None]],
    ) -> bool:
        await dead.send()
        await durable()
        await self._source.commit(dict(positions))
        return True

    def forget(self, partition: str) -> None:
        """Nothing kept per partition."""

    async def close(self) -> None:
        """Nothing to close: the source is closed on its own."""


@dataclass(slots=True)
class Parts:
    """A source, its dead-letter sink and its commit side, opened together."""

    source: Source
    dead_letters: DeadLetters
    committer: Committer

    async def close(self) -> None:
        try:
            await self.source.close()
            await self.dead_letters.close()
        finally:
            await self.committer.close()
