"""What every source hands the pipeline: batches of raw lines from one partition.

A *partition* is the unit that owns state: a Kafka topic-partition (``readings:3``) or
one input file (``file:/var/log/sensors.txt``). A batch always comes from one partition,
so the pipeline can apply it to that partition's statistics and record the position the
state now includes (``end``) in the same step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "OVERSIZED_PREFIX_BYTES",
    "Batch",
    "Joined",
    "OversizedLine",
    "Position",
    "RestoreHook",
    "RevokeHook",
    "Source",
    "cap_lines",
]

DEFAULT_MAX_LINE_BYTES: Final = 1 << 20
"""Longest line (or Kafka message value) taken as a reading; a reading is ~220 bytes."""

OVERSIZED_PREFIX_BYTES: Final = 1024
"""How much of a too-long line is kept for its dead letter: enough to see what it was."""


class OversizedLine(bytes):
    """The first bytes of a line longer than the source's ``max_line_bytes``, standing in
    for the line, which was never held whole; ``length`` is the whole line's size."""

    length: int

    def __new__(cls, line_start: bytes, length: int) -> OversizedLine:
        self = super().__new__(cls, line_start[:OVERSIZED_PREFIX_BYTES])
        self.length = length
        return self


def cap_lines(lines: list[bytes], max_line_bytes: int) -> bool:
    """Replace lines over ``max_line_bytes`` by their :class:`OversizedLine`; True if any.

    For transports that deliver whole messages (Kafka): the size check is one pass in C.
    """
    if not lines or max(map(len, lines)) <= max_line_bytes:
        return False
    for index, line in enumerate(lines):
        if len(line) > max_line_bytes and type(line) is not OversizedLine:
            lines[index] = OversizedLine(line, len(line))
    return True


Joined = bytes | memoryview
"""Lines joined by ``\\n``, as a source may have them at hand (a view of what it read)."""

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
    oversized: bool = False
    """Some of ``lines`` are :class:`OversizedLine`: too long to be readings."""
    joined: Joined | None = None
    """``b"\\n".join(lines)``, when the source has it at hand without copying."""


@runtime_checkable
class Source(Protocol):
    """An async stream of batches; ``None`` items are idle heartbeats (nothing arrived).

    A source may have a ``next_is_ready`` attribute, true while ``batches()`` has its next
    item at hand (reading it costs no wait) and may be read before the one it yielded last
    is applied: the pipeline then reads one batch ahead, to have it decoded meanwhile.
    """

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
