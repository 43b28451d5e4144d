"""Re-key a topic by device: ``iotmon repartition --from-topic A --to-topic B``.

iotmon keeps each device's statistics in the partition that holds its readings, which
assumes the topic is keyed by device. A topic filled without keys (``kafka-console-producer``,
as the original setup did) spreads every device over all partitions: each partition, and
each instance of a consumer group, would then see only part of a device. This copies A into
B with every message keyed by the device field, so ``consume --topic B`` sees each device in
exactly one partition.

Reading: every partition of A, from this job's committed offsets (group
``iotmon-repartition-<A>-<B>`` by default) or the beginning. Writing: the producer's
batching (:class:`~iotmon.tools.produce.KafkaLoader`, murmur2 partitioning like every Kafka
client). Offsets are committed after what they cover is acknowledged by B, so a crash
repeats at most the messages since the last commit in B: at-least-once, not exactly-once —
a restarted copy can duplicate a few seconds of readings in B. Run it to completion before
consuming B (``--once``), or accept that window.

A's partitions are merged by record timestamp (the time each message was produced), so a
device's readings reach B in the order they were produced in, up to messages produced
within the same millisecond; statistics that depend on arrival order (``last``) can differ
there, since the unkeyed topic no longer holds the exact original order.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from iotmon.errors import IotmonError
from iotmon.kafka.admin import KafkaUnreachableError, partitions_of
from iotmon.tools.message_keys import DEFAULT_KEY_FIELD
from iotmon.tools.produce import KafkaLoader, ProducerSettings, ProduceStats
from iotmon.views.progress import Progress

__all__ = ["RepartitionError", "RepartitionSettings", "RepartitionStats", "repartition"]


class RepartitionError(IotmonError, RuntimeError):
    """A problem the user can fix (missing topic, same topic twice, ...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RepartitionSettings:
    bootstrap_servers: str
    from_topic: str
    to_topic: str
    key_field: str = DEFAULT_KEY_FIELD
    partitions: int = 6
    """Partitions of ``to_topic`` when it has to be created."""
    group: str | None = None
    """Where progress is committed; default ``iotmon-repartition-<from>-<to>``."""
    once: bool = False
    """Stop at the end offsets seen at start instead of following A."""
    max_records: int = 20_000
    commit_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.from_topic == self.to_topic:
            raise RepartitionError(
                "`from_topic` and `to_topic` must differ", setting=("from_topic", "to_topic")
            )
        if not self.key_field:
            raise RepartitionError("`key_field` must name the device field", setting="key_field")

    @property
    def group_id(self) -> str:
        return self.group or f"iotmon-repartition-{self.from_topic}-{self.to_topic}"


@dataclass(slots=True)
class RepartitionStats:
    read: int = 0
    """Messages read from A (empty values skipped are counted here too)."""
    produced: ProduceStats | None = None
    elapsed: float = 0.0


async def repartition(
    settings: RepartitionSettings,
    *,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> RepartitionStats:
    """Copy ``from_topic`` into ``to_topic`` keyed by ``key_field``; returns what it did.
    Runs until A's end offsets at start (``once``) or until ``stop`` is set."""
    started = time.monotonic()
    stats = RepartitionStats()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.group_id,
        client_id="iotmon-repartition",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 << 20,
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise KafkaUnreachableError(settings.bootstrap_servers) from exc
    try:
        partitions = await _partitions_of(settings.bootstrap_servers, settings.from_topic)
        consumer.assign(partitions)
        done = await _resume(consumer, partitions)
        ends = await consumer.end_offsets(partitions) if settings.once else {}
        loader_settings = ProducerSettings(
            bootstrap_servers=settings.bootstrap_servers,
            topic=settings.to_topic,
            key_field=settings.key_field,
            partitions=settings.partitions,
            client_id="iotmon-repartition",
        )
        async with KafkaLoader(loader_settings) as loader:
            await _copy(consumer, loader, settings, done, ends, stats, progress, stop)
            await loader.flush()
            await consumer.commit(dict(done))
        stats.produced = loader.stats
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    stats.elapsed = time.monotonic() - started
    return stats


async def _copy(
    consumer: AIOKafkaConsumer,
    loader: KafkaLoader,
    settings: RepartitionSettings,
    done: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    stats: RepartitionStats,
    progress: Progress | None,
    stop: asyncio.Event | None,
) -> None:
    """Merge A's partitions by record timestamp — the order the messages were produced in —
    so each device's readings reach B in their original order (reading A partition by
    partition would hand B whole partitions one after the other, far out of event-time
    order). ``done``: per partition of A, the offset after the last message sent to B."""
    buffered: dict[TopicPartition, deque[Any]] = {tp: deque() for tp in done}
    fetched_to = dict(done)
    per_partition = max(1_000, settings.max_records // max(1, len(done)))
    last_commit = time.monotonic()
    while not (stop is not None and stop.is_set()):
        if (
            ends
            and all(fetched_to[tp] >= end for tp, end in ends.items())
            and not any(buffered.values())
        ):
            return
        fetched = await consumer.getmany(timeout_ms=200, max_records=settings.max_records)
        for tp, records in fetched.items():
            end = ends.get(tp)
            for record in records:
                if end is not None and record.offset >= end:
                    break
                buffered[tp].append(record)
        for tp in buffered:
            position = await consumer.position(tp)
            fetched_to[tp] = position if tp not in ends else min(position, ends[tp])
            # A partition far ahead waits for the others: bounded memory, and the merge
            # always has every partition to choose from.
            if len(buffered[tp]) >= per_partition:
                consumer.pause(tp)
            else:
                consumer.resume(tp)
        lines = _merge(consumer, buffered, done, ends, fetched_to)
        if lines:
            await loader.send(lines)
            stats.read += len(lines)
            if progress is not None:
                progress.advance(len(lines))
        else:
            await loader.tick()
        for tp, queue in buffered.items():
            if not queue:
                # Offsets without a message (transaction markers, compacted away) count.
                done[tp] = max(done[tp], fetched_to[tp])
        if time.monotonic() - last_commit >= settings.commit_interval:
            # Only what B acknowledged is committed: a restart repeats, never skips.
            await loader.flush()
            await consumer.commit(dict(done))
            last_commit = time.monotonic()


def _merge(
    consumer: AIOKafkaConsumer,
    buffered: dict[TopicPartition, deque[Any]],
    done: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    fetched_to: dict[TopicPartition, int],
) -> list[bytes]:
    """Take messages in timestamp order while every partition that may still hold earlier
    ones has something buffered."""

    def exhausted(tp: TopicPartition) -> bool:
        if tp in ends:
            return fetched_to[tp] >= ends[tp]
        high = consumer.highwater(tp)
        return high is not None and fetched_to[tp] >= high

    lines: list[bytes] = []
    if any(not q and not exhausted(tp) for tp, q in buffered.items()):
        return lines
    # Heads in (timestamp, offset, partition) order; after a take only that partition's
    # head changes, so it alone is pushed again or, once drained, checked for exhaustion.
    heads = [(q[0].timestamp, q[0].offset, tp.partition, tp) for tp, q in buffered.items() if q]
    heapq.heapify(heads)
    while heads:
        tp = heapq.heappop(heads)[3]
        queue = buffered[tp]
        record = queue.popleft()
        lines.append(record.value or b"")
        done[tp] = record.offset + 1
        if queue:
            heapq.heappush(heads, (queue[0].timestamp, queue[0].offset, tp.partition, tp))
        elif not exhausted(tp):
            break
    return lines


async def _partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="iotmon-repartition")
    try:
        await admin.start()
        if topic not in await admin.list_topics():
            raise RepartitionError(
                f"topic {topic!r} does not exist; check `from_topic`", setting="from_topic"
            )
        numbers = await partitions_of(admin, topic)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    if not numbers:
        raise RepartitionError(f"topic {topic!r} has no partitions yet; try again")
    return [TopicPartition(topic, n) for n in numbers]


async def _resume(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Seek to this job's committed offsets, else to the beginning; returns the positions."""
    starts = await consumer.beginning_offsets(partitions)
    committed = await asyncio.gather(*(consumer.committed(tp) for tp in partitions))
    positions = {}
    for tp, mark in zip(partitions, committed, strict=True):
        offset = mark if mark is not None and mark >= 0 else starts[tp]
        consumer.seek(tp, offset)
        positions[tp] = int(offset)
    return positions
