"""The changelog's records: where a checkpoint lives (:class:`ChangelogRef`, the offset
commit metadata that indexes it), its manifest, and joining its chunks back into the
checkpoint payload. See :mod:`iotmon.kafka.changelog` for the layout."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiokafka import TopicPartition

from iotmon.errors import IotmonError
from iotmon.state.encoding import sha256_of

__all__ = [
    "CHUNK_BYTES",
    "FORMAT",
    "TOPIC_CONFIG",
    "VERSION",
    "ChangelogError",
    "ChangelogRef",
    "Found",
    "Manifest",
    "RecordSorter",
    "changelog_partition",
    "join_chunks",
    "parse_manifest",
    "split_partition_name",
    "stable_ends",
]

log = logging.getLogger(__name__)

FORMAT: Final = "iotmon-changelog"
VERSION: Final = 1
CHUNK_BYTES: Final = 256 * 1024
INDEX_PREFIX: Final = "iotmon-cl1"

TOPIC_CONFIG: Final[Mapping[str, str]] = {
    "cleanup.policy": "compact",
    # Compaction only ever cleans closed segments: roll them often enough that superseded
    # checkpoints (a full partition state each) do not pile up in the active one.
    "segment.bytes": str(64 << 20),
    "segment.ms": str(10 * 60 * 1000),
    # A checkpoint just superseded stays readable for a minute, for a restore that looked up
    # its index an instant before the newer one was written.
    "min.compaction.lag.ms": str(60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
}


class ChangelogError(IotmonError, RuntimeError):
    """The changelog topic cannot be used; the message says what to do about it."""


def split_partition_name(name: str) -> TopicPartition:
    """``"readings:3"`` → ``TopicPartition("readings", 3)``."""
    topic, _, number = name.rpartition(":")
    return TopicPartition(topic, int(number))


def changelog_partition(name: str, partitions: int) -> int:
    """The changelog partition holding input partition ``name``'s checkpoints: the input
    partition number modulo the changelog's partitions, so each input partition of one
    topic has a changelog partition of its own (and its restore reads nothing else)."""
    return int(split_partition_name(name).partition) % partitions


@dataclass(frozen=True, slots=True)
class ChangelogRef:
    """Where one checkpoint of one input partition lives in the changelog."""

    partition: int
    first: int
    """Offset of its first chunk."""
    manifest: int
    chunks: int
    checkpoint: str

    def metadata(self) -> str:
        """The offset-commit metadata that makes the committed offset an index."""
        return (
            f"{INDEX_PREFIX}:{self.partition}:{self.first}:{self.manifest}:{self.chunks}:"
            f"{self.checkpoint}"
        )

    @classmethod
    def parse(cls, metadata: str | None) -> ChangelogRef | None:
        if not metadata:
            return None
        parts = metadata.split(":")
        if len(parts) != 6 or parts[0] != INDEX_PREFIX:
            return None
        try:
            return cls(int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4]), parts[5])
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Found:
    """The newest checkpoint of a partition in the changelog. ``payload`` is None when it is
    the checkpoint the caller already holds (``known``): nothing was downloaded."""

    checkpoint: str
    position: dict[str, Any] | None
    payload: bytes | None


@dataclass(slots=True)
class Manifest:
    partition: str
    checkpoint: str
    chunk_offsets: list[int]
    size: int
    sha256: str
    position: dict[str, Any] | None
    offset: int


def parse_manifest(partition: str, offset: int, value: bytes) -> Manifest | None:
    try:
        doc = orjson.loads(value)
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError(f"format {doc.get('format')!r} version {doc.get('version')!r}")
        if doc["partition"] != partition:
            raise ValueError(f"manifest of {doc['partition']!r} under key {partition!r}")
        return Manifest(
            partition=partition,
            checkpoint=str(doc["checkpoint"]),
            chunk_offsets=[int(o) for o in doc["chunks"]],
            size=int(doc["size"]),
            sha256=str(doc["sha256"]),
            position=doc["position"],
            offset=offset,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning(
            "ignoring a malformed changelog manifest of %s at %d: %s", partition, offset, exc
        )
        return None


def join_chunks(manifest: Manifest, chunks: dict[bytes, tuple[int, bytes]]) -> bytes | None:
    parts = []
    for i, offset in enumerate(manifest.chunk_offsets):
        found = chunks.get(f"{manifest.partition}#{manifest.checkpoint}#{i}".encode())
        if found is None or found[0] != offset:
            return None
        parts.append(found[1])
    payload = b"".join(parts)
    if len(payload) != manifest.size or sha256_of(payload) != manifest.sha256:
        log.warning(
            "changelog checkpoint %s of %s does not match its manifest; ignored",
            manifest.checkpoint,
            manifest.partition,
        )
        return None
    return payload


class RecordSorter:
    """Sorts changelog records read in offset order into the ``wanted`` partitions' manifests
    (in offset order) and live chunks."""

    def __init__(self, wanted: set[str]) -> None:
        self._wanted = wanted
        self.manifests: dict[str, list[Manifest]] = {}
        self.chunks: dict[bytes, tuple[int, bytes]] = {}

    def add(self, record: Any) -> None:
        key: bytes = record.key or b""
        name, sep, _ = key.partition(b"#")
        partition = name.decode("utf-8", "replace")
        if partition not in self._wanted:
            return
        if sep:
            if record.value is None:
                self.chunks.pop(key, None)
            else:
                self.chunks[key] = (record.offset, record.value)
        elif record.value is None:
            self.manifests.pop(partition, None)
        else:
            manifest = parse_manifest(partition, record.offset, record.value)
            if manifest is not None:
                self.manifests.setdefault(partition, []).append(manifest)


async def stable_ends(
    reader: Any,
    tps: list[TopicPartition],
    until: Mapping[int, int],
    deadline: float,
    *,
    topic: str,
    patience_s: float,
) -> dict[TopicPartition, int]:
    """End offsets for a read-committed ``reader`` (last stable offsets), waiting while one
    is still below ``until``: a crashed instance's open transaction holds the last stable
    offset back until the broker aborts it (``transaction.timeout.ms``)."""
    waited = False
    while True:
        ends: dict[TopicPartition, int] = await reader.end_offsets(tps)
        behind = {tp: end for tp, end in ends.items() if end < until.get(tp.partition, 0)}
        if not behind:
            return ends
        if time.monotonic() > deadline:
            raise ChangelogError(
                f"{topic}: committed checkpoints stay unreadable behind an open "
                f"transaction for over {patience_s:.0f} s ({behind})"
            )
        if not waited:
            log.info(
                "waiting for an open transaction on %s to end (a crashed instance's; the "
                "broker aborts it after its transaction timeout)",
                topic,
            )
            waited = True
        await asyncio.sleep(0.2)
