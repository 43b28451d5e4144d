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
from pathlib import Path
from typing import IO, Protocol

import orjson

from iotmon.parse import Rejection
from iotmon.state.statedir import partition_filename

__all__ = ["DeadLetters", "FileDeadLetters", "dlq_record"]

log = logging.getLogger(__name__)


class DeadLetters(Protocol):
    def put(
        self, partition: str, position: int, raw: bytes, rejection: Rejection, key: bytes | None
    ) -> None: ...

    async def flush(self) -> dict[str, int]:
        """Make what was put durable; return the durable size of each partition's file."""
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
