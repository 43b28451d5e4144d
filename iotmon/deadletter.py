"""Dead-letter sinks: every rejected line is kept with its raw bytes, where it came from and
why it was refused, so nothing vanishes and an operator can fix and replay it.

- :class:`FileDeadLetters` appends JSON lines to ``<partition>.dlq.jsonl`` in the state
  directory. Its size is stored in each checkpoint and the file is cut back to that size on
  restore (emptied when the partition has no checkpoint), so a crash never leaves a
  rejected line recorded twice.
- :class:`KafkaDeadLetters` produces the raw value to ``<topic>.dlq`` with the reason and
  source position as headers, flushed before offsets are committed (at-least-once), or as
  part of the checkpoint's transaction (exactly-once). The topic is created (one
  partition) before its first record rather than left to the broker's auto-creation, which
  production clusters usually turn off.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import IO, Protocol

import orjson
from aiokafka import AIOKafkaProducer

from iotmon.checkpoint import partition_filename
from iotmon.kafka_admin import ensure_topic
from iotmon.parse import Rejection

__all__ = ["DeadLetter", "DeadLetters", "FileDeadLetters", "KafkaDeadLetters", "dlq_record"]

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


DeadLetter = tuple[str, str, bytes, bytes | None, list[tuple[str, bytes]]]
"""A buffered Kafka dead letter: source partition, DLQ topic, raw value, key, headers."""


class KafkaDeadLetters:
    """``transactional``: the producer is the changelog's transactional one and records
    are only sent inside a checkpoint's transaction (:meth:`take` then :meth:`send`); what
    is still buffered at close belongs to no committed checkpoint and is dropped — the
    replay after a restart puts it again."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        bootstrap_servers: str | None = None,
        suffix: str = ".dlq",
        transactional: bool = False,
    ) -> None:
        """``bootstrap_servers``: where to create missing dead-letter topics (None: leave
        that to the broker)."""
        self._producer = producer
        self._bootstrap_servers = bootstrap_servers
        self._suffix = suffix
        self._transactional = transactional
        self._buffer: list[DeadLetter] = []
        self._ensured: set[str] = set()

    def put(
        self, partition: str, position: int, raw: bytes, rejection: Rejection, key: bytes | None
    ) -> None:
        topic, _, number = partition.rpartition(":")
        headers = [
            ("iotmon.reason", rejection.reason.value.encode()),
            ("iotmon.detail", rejection.detail.encode("utf-8", "replace")[:512]),
            ("iotmon.source.topic", topic.encode()),
            ("iotmon.source.partition", number.encode()),
            ("iotmon.source.offset", str(position).encode()),
        ]
        # Rejections are rare and the hot loop is synchronous: buffer, send at flush time.
        self._buffer.append((partition, topic + self._suffix, raw, key, headers))

    def take(self) -> list[DeadLetter]:
        """Everything put so far, removed from the buffer: taken in the same synchronous
        step as the checkpoint's state, so the two cover exactly the same readings."""
        taken, self._buffer = self._buffer, []
        return taken

    async def send(self, records: list[DeadLetter]) -> None:
        """Send taken records and wait for their acknowledgement."""
        await self._ensure_topics({topic for _, topic, _, _, _ in records})
        futures = [
            await self._producer.send(topic, value=raw, key=key, headers=headers)
            for _, topic, raw, key, headers in records
        ]
        await asyncio.gather(*futures)

    async def _ensure_topics(self, topics: set[str]) -> None:
        if self._bootstrap_servers is None:
            return
        for topic in sorted(topics - self._ensured):
            await ensure_topic(self._bootstrap_servers, topic, partitions=1)
            self._ensured.add(topic)

    def discard(self, partitions: Collection[str]) -> None:
        """Drop buffered records of partitions that moved away (their next owner replays
        the readings after the last checkpoint, rejections included)."""
        self._buffer = [r for r in self._buffer if r[0] not in partitions]

    async def flush(self) -> dict[str, int]:
        await self.send(self.take())
        return {}

    def restore(self, partition: str, size: int) -> None:
        """Kafka DLQ records are not rewound: at-least-once, like the offsets (exactly-once
        needs nothing to rewind: uncommitted records are invisible to readers)."""

    async def close(self) -> None:
        if self._transactional:
            if self._buffer:
                log.info(
                    "%d dead letters after the last checkpoint are left to the replay",
                    len(self._buffer),
                )
            self._buffer = []
            return
        await self.flush()
