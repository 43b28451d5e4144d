"""File dead letters, and the interface every dead-letter sink offers the engine.

Every rejected line is kept with its raw bytes, where it came from and why it was refused,
so nothing vanishes and an operator can fix and replay it. :class:`FileDeadLetters`
appends JSON lines to ``<partition>.dlq.jsonl`` in the state directory. Its size is stored
in each checkpoint and the file is cut back to that size on restore (emptied when the
partition has no checkpoint), so a crash never leaves a rejected line recorded twice.
Kafka's sink lives in :mod:`iotmon.kafka.deadletters`.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import orjson

from iotmon.parse import Rejection
from iotmon.state.statedir import partition_filename

__all__ = ["DeadLetters", "FileDeadLetters", "TakenDeadLetters", "dlq_record"]

log = logging.getLogger(__name__)


async def _nothing_to_send() -> None:
    """A file sink's dead letters are durable once taken: nothing is left to send."""


@dataclass(frozen=True, slots=True)
class TakenDeadLetters:
    """What a checkpoint takes from a dead-letter sink in its synchronous snapshot, so the
    checkpoint and the dead letters cover exactly the same readings."""

    sizes: Mapping[str, int] = field(default_factory=dict)
    """The durable size of each partition's dead letters, recorded in its checkpoint
    (a sink that can be cut back on restore; empty otherwise)."""
    count: int = 0
    """Records still to be sent along with the checkpoint."""
    send: Callable[[], Awaitable[None]] = _nothing_to_send
    """Sends them (inside the checkpoint's transaction, where there is one)."""


class DeadLetters(Protocol):
    def put(
        self, partition: str, position: int, raw: bytes, rejection: Rejection, key: bytes | None
    ) -> None: ...

    async def flush(self) -> dict[str, int]:
        """Make what was put durable; return the durable size of each partition's file."""
        ...

    def take(self) -> TakenDeadLetters:
        """Called by a checkpoint in its synchronous snapshot: make durable what can be made
        durable now, hand over the rest to send with the checkpoint."""
        ...

    def discard(self, partitions: Collection[str]) -> None:
        """Partitions moved to another process: drop what is still buffered for them (their
        next owner replays the readings after their last checkpoint, rejections too)."""
        ...

    def restore(self, partition: str, size: int) -> None: ...

    async def close(self) -> None: ...


def dlq_record(partition: str, position: int, raw: bytes, rejection: Rejection) -> bytes:
    record: dict[str, object] = {
        "source": partition,
        "position": position,
        "reason": rejection.reason.value,
        "detail": rejection.detail,
    }
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_b64"] = base64.b64encode(raw).decode("ascii")
    return orjson.dumps(record) + b"\n"


class FileDeadLetters:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, IO[bytes]] = {}

    def path_for(self, partition: str) -> Path:
        return self.directory / f"{partition_filename(partition)}.dlq.jsonl"

    def _file(self, partition: str) -> IO[bytes]:
        handle = self._files.get(partition)
        if handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = self._files[partition] = self.path_for(partition).open("ab")
        return handle

    def put(
        self, partition: str, position: int, raw: bytes, rejection: Rejection, key: bytes | None
    ) -> None:
        self._file(partition).write(dlq_record(partition, position, raw, rejection))

    async def flush(self) -> dict[str, int]:
        return self._sync()

    def take(self) -> TakenDeadLetters:
        return TakenDeadLetters(sizes=self._sync())

    def discard(self, partitions: Collection[str]) -> None:
        """Nothing buffered: what was written is cut back by :meth:`restore` if needed."""

    def _sync(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for partition, handle in self._files.items():
            handle.flush()
            os.fsync(handle.fileno())
            sizes[partition] = handle.tell()
        return sizes

    def restore(self, partition: str, size: int) -> None:
        """Cut the file back to the size its checkpoint recorded (0: no checkpoint): what
        follows belongs to readings the replay puts again."""
        path = self.path_for(partition)
        if path.exists() and path.stat().st_size > size:
            log.info(
                "%s cut back to its checkpoint (%d bytes); the replay adds the rest", path, size
            )
            with path.open("r+b") as handle:
                handle.truncate(size)

    async def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
