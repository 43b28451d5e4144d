"""Partition state in Kafka itself: one compacted changelog topic per consumer group.

Any instance of a group can take a partition over on any machine, because the partition's
checkpoint lives in ``iotmon-<group>-changelog`` (``--changelog-topic``); the local state
dir is only a cache that saves the download when it already holds the latest checkpoint.

Records (input partition ``readings:3`` → changelog partition ``3 % partitions``):

``readings:3#<checkpoint>#<i>`` — *chunk* ``i`` of the checkpoint payload, which is
    byte for byte the local checkpoint file (``PartitionState.to_document`` + format, version,
    position). Payloads are cut into chunks of :data:`CHUNK_BYTES` so a partition of any
    size fits the broker's default 1 MB record limit without touching cluster settings.
``readings:3`` — the *manifest*, written after every chunk is acknowledged: which
    checkpoint, the chunks' offsets, size, SHA-256 and the source position.

Chunk keys are unique per checkpoint, so compaction can never leave a manifest pointing
at another checkpoint's chunks; once a newer manifest is written the older chunks get
tombstones (in the same transaction under exactly-once) and compaction drops them.

Finding a checkpoint without reading the whole topic: every offset iotmon commits for an
input partition carries, as commit metadata, where the checkpoint of that position lives
(:class:`ChangelogRef`). A restore reads from there to the end of that one changelog
partition — usually one checkpoint — and takes the newest complete manifest. Without an
index (offsets expired, a group from before the changelog) it scans the changelog
partition from the start, which compaction keeps short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from iotmon.engine.ports import Checkpoint
from iotmon.kafka.admin import (
    MAX_REQUEST_BYTES,
    KafkaUnreachableError,
    ensure_topic,
    partitions_of,
    topic_config,
)
from iotmon.kafka.changelog_records import (
    CHUNK_BYTES,
    FORMAT,
    TOPIC_CONFIG,
    VERSION,
    ChangelogError,
    ChangelogRef,
    Found,
    Manifest,
    RecordSorter,
    changelog_partition,
    join_chunks,
    split_partition_name,
    stable_ends,
)
from iotmon.kafka.clients import stop_client
from iotmon.kafka.source import partition_name
from iotmon.state.encoding import rechunk, sha256_of, size_of

__all__ = [
    "CHUNK_BYTES",
    "TOPIC_CONFIG",
    "ChangelogError",
    "ChangelogRef",
    "Checkpoint",
    "Found",
    "KafkaChangelog",
    "changelog_partition",
    "split_partition_name",
]

log = logging.getLogger(__name__)

# Three chunks and their overhead stay under the broker's default max.message.bytes (1 MB).
_MAX_BATCH_BYTES: Final = 900 * 1024


class KafkaChangelog:
    """Writes and reads partition checkpoints in the changelog topic.

    One producer serves the changelog and the dead letters; with ``transactional_id`` it is
    transactional and a checkpoint is one transaction (:meth:`transaction`,
    :meth:`send_offsets`). A separate read-committed consumer without a group reads
    checkpoints back, and an admin client fetches the committed offsets that index them.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        group: str,
        transactional_id: str | None = None,
        transaction_timeout_ms: int = 10_000,
        client_id: str = "iotmon-changelog",
        restore_timeout: float = 120.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group = group
        self.transactional_id = transactional_id
        self._transaction_timeout_ms = transaction_timeout_ms
        self._client_id = client_id
        self._restore_timeout = restore_timeout
        self._partitions = 0
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._warm_up: asyncio.Future[Any] | None = None
        # Chunks of the checkpoint each partition's manifest points at now: tombstoned once
        # a newer manifest is written.
        self._current: dict[str, tuple[str, int]] = {}

    @property
    def exactly_once(self) -> bool:
        return self.transactional_id is not None

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "open() first"
        return self._producer

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self, *, input_topics: Sequence[str]) -> None:
        """Create the topic if missing (as many partitions as the input topics have), then
        start the clients."""
        try:
            await self._open(input_topics)
        except BaseException:
            await self.close()
            raise

    async def _open(self, input_topics: Sequence[str]) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, client_id=f"{self._client_id}-admin"
        )
        self._admin = admin
        try:
            await admin.start()
        except KafkaConnectionError as exc:
            raise KafkaUnreachableError(self.bootstrap_servers) from exc
        existing = set(await admin.list_topics())
        if self.topic not in existing:
            # One changelog partition per input partition; input that does not exist yet
            # will most likely get `iotmon produce`'s default of 6.
            wanted = sum([await self._count(t) for t in input_topics if t in existing])
            await ensure_topic(
                self.bootstrap_servers,
                self.topic,
                partitions=wanted or 6,
                config=dict(TOPIC_CONFIG),
            )
        self._partitions = await self._count(self.topic)
        if not self._partitions:
            raise ChangelogError(f"changelog topic {self.topic!r} has no partitions")
        options: dict[str, Any] = {}
        if self.transactional_id is not None:
            options = {
                "transactional_id": self.transactional_id,
                "transaction_timeout_ms": self._transaction_timeout_ms,
            }
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            max_batch_size=_MAX_BATCH_BYTES,
            max_request_size=MAX_REQUEST_BYTES,
            **options,
        )
        # Starting a transactional producer fences an earlier incarnation with the same id
        # and aborts its open transaction, so read-committed readers are not held up by it.
        await self._producer.start()
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=f"{self._client_id}-reader",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=16 << 20,
            fetch_max_bytes=64 << 20,
            # Restores read to a known end offset: no point in the broker holding a fetch.
            fetch_max_wait_ms=20,
            # Its first lookup always waits one backoff for metadata (see ``_warm_up``).
            retry_backoff_ms=20,
        )
        await self._reader.start()
        # The reader learns where the changelog's partitions live on its first request, one
        # metadata round trip plus a retry backoff later: have that happen while the group
        # is being joined, not in the first restore.
        self._warm_up = asyncio.ensure_future(
            self._reader.end_offsets(
                [TopicPartition(self.topic, p) for p in range(self._partitions)]
            )
        )

    async def _count(self, topic: str) -> int:
        assert self._admin is not None
        return len(await partitions_of(self._admin, topic))

    async def close(self) -> None:
        if self._warm_up is not None:
            self._warm_up.cancel()
        for client, what in (
            (self._reader, "the changelog reader"),
            (self._producer, "the changelog producer"),
        ):
            if client is not None:
                with contextlib.suppress(Exception):
                    await stop_client(client, what=what)
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        self._reader = self._producer = None
        self._admin = None

    # -- writing -----------------------------------------------------------------------

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """``async with changelog.transaction():`` — commits on success, aborts on error."""
        return self.producer.transaction()  # type: ignore[no-any-return]

    async def send_offsets(self, offsets: Mapping[str, tuple[int, str]]) -> None:
        """Commit input offsets (with their index metadata) as part of the transaction."""
        if offsets:
            await self.producer.send_offsets_to_transaction(
                {split_partition_name(n): value for n, value in offsets.items()}, self.group
            )

    async def write(self, checkpoints: Sequence[Checkpoint]) -> dict[str, ChangelogRef]:
        """Write checkpoints (chunks, then manifests, then tombstones for the chunks they
        replace) and wait until Kafka has them; returns where each one lives."""
        producer = self.producer
        chunk_futures: list[tuple[Checkpoint, int, list[asyncio.Future[Any]]]] = []
        for cp in checkpoints:
            target = changelog_partition(cp.partition, self._partitions)
            futures = []
            for i, chunk in enumerate(rechunk(cp.payload, CHUNK_BYTES)):
                key = f"{cp.partition}#{cp.checkpoint}#{i}".encode()
                futures.append(await producer.send(self.topic, chunk, key=key, partition=target))
            chunk_futures.append((cp, target, futures))
        manifests: list[tuple[Checkpoint, int, list[int], asyncio.Future[Any]]] = []
        for cp, target, futures in chunk_futures:
            offsets = [meta.offset for meta in await asyncio.gather(*futures)]
            doc = {
                "format": FORMAT,
                "version": VERSION,
                "partition": cp.partition,
                "checkpoint": cp.checkpoint,
                "chunks": offsets,
                "size": size_of(cp.payload),
                "sha256": sha256_of(cp.payload),
                "position": cp.position,
            }
            future = await producer.send(
                self.topic, orjson.dumps(doc), key=cp.partition.encode(), partition=target
            )
            manifests.append((cp, target, offsets, future))
        refs: dict[str, ChangelogRef] = {}
        tombstones = []
        for cp, target, offsets, future in manifests:
            meta = await future
            refs[cp.partition] = ChangelogRef(
                target, offsets[0], meta.offset, len(offsets), cp.checkpoint
            )
            previous = self._current.get(cp.partition)
            self._current[cp.partition] = (cp.checkpoint, len(offsets))
            if previous is not None and previous[0] != cp.checkpoint:
                old, count = previous
                for i in range(count):
                    key = f"{cp.partition}#{old}#{i}".encode()
                    tombstones.append(
                        await producer.send(self.topic, None, key=key, partition=target)
                    )
        if tombstones:
            await asyncio.gather(*tombstones)
        return refs

    def forget(self, partition: str) -> None:
        """The partition moved away: its next owner tombstones what this one wrote."""
        self._current.pop(partition, None)

    # -- reading -----------------------------------------------------------------------

    async def latest(
        self, names: Collection[str], *, known: Mapping[str, str | None]
    ) -> dict[str, Found]:
        """The newest checkpoint of each partition that has one. ``known`` maps a partition
        to the checkpoint id the caller already holds (local cache): if that is still the
        newest, only the changelog's tail after it is read."""
        index = await self._index(names)
        by_target: dict[int, dict[str, int]] = {}
        for name in names:
            ref = index.get(name)
            if ref is None:
                start = 0
            elif known.get(name) == ref.checkpoint:
                start = ref.manifest + 1
            else:
                start = ref.first
            target = changelog_partition(name, self._partitions)
            by_target.setdefault(target, {})[name] = start
        wanted = set(names)
        # An indexed checkpoint is committed, so it becomes readable; it may sit behind an
        # open transaction of another (crashed) instance for a while.
        until: dict[int, int] = {}
        for name, ref in index.items():
            if name in wanted:
                until[ref.partition] = max(until.get(ref.partition, 0), ref.manifest + 1)
        manifests, chunks = await self._read(
            {target: min(starts.values()) for target, starts in by_target.items()},
            wanted,
            until=until,
        )
        found: dict[str, Found] = {}
        stale: dict[int, set[str]] = {}
        for target, starts in by_target.items():
            for name, start in starts.items():
                result = self._pick(name, manifests, chunks, index.get(name), known.get(name))
                if result is not None:
                    found[name] = result
                elif start > 0:
                    stale.setdefault(target, set()).add(name)
        if stale:
            # The indexed checkpoint is gone (compacted after a newer one whose offset commit
            # failed): look through the whole changelog partition.
            log.info("changelog index of %s is stale; scanning", ", ".join(map(str, stale)))
            lost = {name for names in stale.values() for name in names}
            manifests, chunks = await self._read(dict.fromkeys(stale, 0), lost)
            for name in lost:
                result = self._pick(name, manifests, chunks, None, known.get(name))
                if result is not None:
                    found[name] = result
        return found

    def _pick(
        self,
        name: str,
        manifests: dict[str, list[Manifest]],
        chunks: dict[bytes, tuple[int, bytes]],
        ref: ChangelogRef | None,
        known: str | None,
    ) -> Found | None:
        for manifest in reversed(manifests.get(name, [])):
            if manifest.checkpoint == known:
                self._current[name] = (manifest.checkpoint, len(manifest.chunk_offsets))
                return Found(manifest.checkpoint, manifest.position, None)
            payload = join_chunks(manifest, chunks)
            if payload is None:
                # Chunks before where this read started or compacted away; an older
                # complete manifest is still a valid (older) state, so keep looking.
                continue
            self._current[name] = (manifest.checkpoint, len(manifest.chunk_offsets))
            return Found(manifest.checkpoint, manifest.position, payload)
        if ref is not None and ref.checkpoint == known:
            # Nothing newer after the indexed checkpoint, which the caller holds.
            self._current[name] = (ref.checkpoint, ref.chunks)
            return Found(ref.checkpoint, None, None)
        return None

    async def _index(self, names: Collection[str]) -> dict[str, ChangelogRef]:
        assert self._admin is not None
        tps = [split_partition_name(n) for n in names]
        if not tps:
            return {}
        committed = await self._admin.list_consumer_group_offsets(self.group, partitions=tps)
        index: dict[str, ChangelogRef] = {}
        for tp, entry in committed.items():
            if entry.offset is None or entry.offset < 0:
                continue
            ref = ChangelogRef.parse(entry.metadata)
            if ref is not None:
                index[partition_name(tp)] = ref
        return index

    async def _read(
        self,
        starts: Mapping[int, int],
        wanted: set[str],
        *,
        until: Mapping[int, int] | None = None,
    ) -> tuple[dict[str, list[Manifest]], dict[bytes, tuple[int, bytes]]]:
        """Manifests (in offset order) and live chunks of the ``wanted`` partitions, read from
        each changelog partition in ``starts`` (from that offset to its current end, and at
        least to ``until``)."""
        sorter = RecordSorter(wanted)
        async for record in self._records(starts, until or {}):
            sorter.add(record)
        return sorter.manifests, sorter.chunks

    async def _records(
        self, starts: Mapping[int, int], until: Mapping[int, int]
    ) -> AsyncIterator[Any]:
        """Records of several changelog partitions at once, each in offset order."""
        reader = self._reader
        assert reader is not None
        tps = {TopicPartition(self.topic, target): start for target, start in starts.items()}
        if not tps:
            return
        deadline = time.monotonic() + self._restore_timeout
        if self._warm_up is not None:
            with contextlib.suppress(Exception):
                await self._warm_up
        ends = await stable_ends(
            reader, list(tps), until, deadline, topic=self.topic, patience_s=self._restore_timeout
        )
        todo = {tp: ends[tp] for tp, start in tps.items() if start < ends[tp]}
        if not todo:
            return
        reader.assign(list(todo))
        for tp in todo:
            reader.seek(tp, tps[tp])
        while todo:
            batch = await reader.getmany(*todo, timeout_ms=200, max_records=2_000)
            for tp, records in batch.items():
                end = todo.get(tp)
                if end is None:
                    continue
                for record in records:
                    if record.offset < end:
                        yield record
            for tp, end in list(todo.items()):
                if await reader.position(tp) >= end:
                    del todo[tp]
                    # Stop fetching it: a fetch left hanging at its end would hold up the
                    # next read by the broker's long-poll wait.
                    reader.pause(tp)
            if todo and time.monotonic() > deadline:
                raise ChangelogError(
                    f"reading {self.topic} up to offsets {todo} took longer than "
                    f"{self._restore_timeout:.0f} s; is the broker overloaded?"
                )
        reader.assign([])


async def describe_changelog(bootstrap_servers: str, topic: str) -> dict[str, str]:
    """The changelog topic's configuration (for checks and tests)."""
    try:
        return await topic_config(bootstrap_servers, topic)
    except KafkaError as exc:
        raise ChangelogError(f"cannot describe {topic}: {exc}") from exc
