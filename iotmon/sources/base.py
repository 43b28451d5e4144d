"""What every source hands the pipeline: batches of raw lines from one partition.

A *partition* is the unit that owns state: a Kafka topic-partition (``sensoresInfos:3``) or
one input file (``file:/var/log/sensors.txt``). A batch always comes from one partition,
so the pipeline can apply it to that partition's statistics and record the position the
state now includes (``end``) in the same step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Batch", "Position", "RestoreHook", "RevokeHook", "Source"]

Position = dict[str, Any]
"""A source-specific, JSON-serialisable resume point stored in the partition checkpoint."""

RestoreHook = Callable[[list[str]], Awaitable[dict[str, Position | None]]]
"""Called when partitions are assigned; returns the checkpointed position of each."""

RevokeHook = Callable[[list[str]], Awaitable[None]]
"""Called before partitions are taken away, so their state can be checkpointed first."""


@dataclass(slots=True)
class Batch:
    partition: str
    lines: list[bytes]
    positions: Sequence[int]
    """Where each line came from: a line number for files, an offset for Kafka."""
    end: Position
    """The resume point after the last line of this batch."""
    key_of: Callable[[int], bytes | None] | None = None
    """Message key of line ``i`` when the transport has keys (Kafka), for the DLQ."""


@runtime_checkable
class Source(Protocol):
    """An async stream of batches; ``None`` items are idle heartbeats (nothing arrived)."""

    name: str

    async def open(self, *, on_assign: RestoreHook, on_revoke: RevokeHook) -> None: ...

    def batches(self) -> AsyncIterator[Batch | None]: ...

    async def commit(self, positions: dict[str, Position]) -> None:
        """Acknowledge positions whose state is durably checkpointed."""
        ...

    def lag(self) -> dict[str, int]:
        """Readings known to be waiting per partition (empty when unknown)."""
        ...

    async def close(self) -> None: ...
