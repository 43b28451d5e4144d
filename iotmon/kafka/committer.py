"""Kafka's commit side (:class:`~iotmon.engine.ports.Committer`): offsets alone, or the
changelog with offsets that index it.

With a changelog, a checkpoint's changelog records, dead letters and offset commits are one
transaction under exactly-once; at-least-once sends the dead letters and the changelog
records first and commits the offsets after, with metadata naming the changelog record
that holds the state of that position (:class:`~iotmon.kafka.changelog.ChangelogRef`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

from iotmon.engine.ports import Checkpoint, SourceCommitter, Stored
from iotmon.kafka.changelog import KafkaChangelog
from iotmon.kafka.source import KafkaSource
from iotmon.sources.base import Position
from iotmon.state.deadletters import TakenDeadLetters

__all__ = ["ChangelogCommitter", "OffsetCommitter"]


class OffsetCommitter(SourceCommitter):
    """Offsets only: the state directory holds the only copy of the state (one instance
    per group)."""

    def __init__(self, source: KafkaSource) -> None:
        super().__init__(source)
        self._kafka = source

    def outdated(self) -> bool:
        return self._kafka.outdated()

    async def commit(
        self,
        checkpoints: Sequence[Checkpoint],
        dead: TakenDeadLetters,
        positions: Mapping[str, Position],
        *,
        durable: Callable[[], Awaitable[None]],
    ) -> bool:
        await super().commit(checkpoints, dead, positions, durable=durable)
        # False when a rebalance took the partitions before the offsets went through.
        return self._kafka.committed


class ChangelogCommitter:
    """The group's changelog topic holds every partition's state: any instance can take a
    partition over."""

    shared = True

    def __init__(self, source: KafkaSource, changelog: KafkaChangelog) -> None:
        self._source = source
        self.changelog = changelog

    @property
    def store(self) -> str:
        return self.changelog.topic

    def outdated(self) -> bool:
        return self._source.outdated()

    async def latest(
        self, names: Collection[str], *, known: Mapping[str, str | None]
    ) -> Mapping[str, Stored]:
        return await self.changelog.latest(names, known=known)

    async def commit(
        self,
        checkpoints: Sequence[Checkpoint],
        dead: TakenDeadLetters,
        positions: Mapping[str, Position],
        *,
        durable: Callable[[], Awaitable[None]],
    ) -> bool:
        """False when the offset commit failed (at-least-once), as after losing group
        membership."""
        changelog = self.changelog
        if changelog.exactly_once:
            async with changelog.transaction():
                await dead.send()
                refs = await changelog.write(checkpoints)
                await changelog.send_offsets(
                    {
                        name: (int(position["offset"]), refs[name].metadata())
                        for name, position in positions.items()
                    }
                )
            # The cache only ever holds what the changelog has committed.
            await durable()
            return True
        await dead.send()
        refs = await changelog.write(checkpoints)
        await durable()
        await self._source.commit(
            dict(positions), metadata={name: ref.metadata() for name, ref in refs.items()}
        )
        return self._source.committed

    def forget(self, partition: str) -> None:
        self.changelog.forget(partition)

    async def close(self) -> None:
        await self.changelog.close()
