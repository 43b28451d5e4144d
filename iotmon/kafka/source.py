"""Kafka as a source: a consumer-group member with manual commits and ``getmany`` batching.

Offsets are committed only for positions a durable checkpoint already includes, and on
assignment each partition is sought to the position stored with its state, so the state and
the stream never disagree (the committed group offset only matters for a partition that has
no state yet, for lag monitoring, and — through its metadata — as the index of the
changelog record holding that state; see :mod:`iotmon.kafka.changelog`).

Several instances with the same group split the partitions; the rebalance listener hands
each revoked partition to the pipeline to checkpoint and release, and each assigned one to
restore before any of its records is processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, overload

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError, KafkaError

from iotmon.errors import KafkaUnreachableError, TopicNotFoundError
from iotmon.kafka.clients import stop_client
from iotmon.kafka.messages import KEY, LEAN_OPTIONS, OFFSET, Message, as_messages
from iotmon.kafka.settings import KafkaSettings
from iotmon.sources.base import (
    DEFAULT_MAX_LINE_BYTES,
    Batch,
    Position,
    RestoreHook,
    RevokeHook,
    cap_lines,
)

__all__ = ["KafkaSource", "partition_name"]

log = logging.getLogger(__name__)


def partition_name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


class KafkaSource:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        once: bool = False,
        idle_seconds: float = 0.1,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ):
        self.settings = settings
        self.once = once
        self.idle_seconds = idle_seconds
        self.max_line_bytes = max_line_bytes
        self.name = f"kafka:{settings.bootstrap_servers}/{','.join(settings.topics)}"
        self._consumer: AIOKafkaConsumer | None = None
        self._on_assign: RestoreHook | None = None
        self._on_revoke: RevokeHook | None = None
        self._partitions: dict[str, TopicPartition] = {}
        self._stop_at: dict[TopicPartition, int] = {}
        self._next: dict[TopicPartition, int] = {}
        # Bumped when a rebalance callback starts and ends: tells fetched records from stale
        # ones. Cleared while one runs.
        self._generation = 0
        self._ready = asyncio.Event()
        self._ready.set()
        self._yielded = 0
        self.committed = True
        """Whether the last :meth:`commit` went through: it also proves this instance was
        still a member of the group's current generation."""

    async def open(self, *, on_assign: RestoreHook, on_revoke: RevokeHook) -> None:
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        s = self.settings
        options: dict[str, Any] = {
            "bootstrap_servers": s.bootstrap_servers,
            "group_id": s.group,
            "enable_auto_commit": False,
            "auto_offset_reset": s.start_from,
            "fetch_max_bytes": s.fetch_max_bytes,
            "max_partition_fetch_bytes": min(s.fetch_max_bytes, 16 * 1024 * 1024),
            "isolation_level": "read_committed",
            # An idle fetch holds the connection this long, and offset lookups on a rebalance
            # wait behind it (the default 500 ms made start-up take seconds). Data still comes
            # back at once: this only bounds the wait when there is none.
            "fetch_max_wait_ms": 100,
            **LEAN_OPTIONS,
        }
        consumer = AIOKafkaConsumer(**{**options, **s.client_options})
        try:
            await consumer.start()
        except KafkaConnectionError as exc:
            await consumer.stop()
            raise KafkaUnreachableError(s.bootstrap_servers, str(exc)) from exc
        existing = await consumer.topics()
        missing = [t for t in s.topics if t not in existing]
        if missing and self.once:
            await consumer.stop()
            raise TopicNotFoundError(
                f"topic(s) {', '.join(missing)} do not exist on {s.bootstrap_servers} — "
                "load data first or check `topic`",
                setting="topic",
            )
        consumer.subscribe(topics=list(s.topics), listener=_Listener(self))
        self._consumer = consumer

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None and self._on_assign is not None
        with self._rebalancing():
            names = {partition_name(tp): tp for tp in assigned}
            self._partitions.update(names)
            # Looked up while the states are restored, not after: the broker answers them
            # only once this consumer's long-polling fetch returns.
            lookup = asyncio.ensure_future(self._offsets(assigned))
            try:
                restored = await self._on_assign(sorted(names))
            except BaseException:
                lookup.cancel()
                raise
            starts, ends = await lookup
            for name, tp in names.items():
                # Every assigned partition is sought, with or without state, so that records
                # fetched around the rebalance (and dropped) are read again from here.
                position = restored.get(name)
                offset = starts[tp] if position is None else int(position["offset"])
                self._consumer.seek(tp, offset)
                self._next[tp] = offset
            if self.once:
                self._stop_at.update(ends)

    @contextlib.contextmanager
    def _rebalancing(self) -> Iterator[None]:
        """While partitions are handed out or taken back nothing is yielded, and whatever was
        fetched before or meanwhile is dropped: every assigned partition is sought anew."""
        self._generation += 1
        self._ready.clear()
        try:
            yield
        finally:
            self._generation += 1
            self._ready.set()

    async def _offsets(
        self, tps: set[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Where each partition starts if it has no state — the group's committed offset,
        else the beginning or the end (``start_from``) — and its end offset now.

        One request each for all partitions, sent together: on the broker they queue behind
        this consumer's long-polling fetch (``fetch_max_wait_ms``), so a request per
        partition would add that wait per partition to every rebalance.
        """
        consumer = self._consumer
        assert consumer is not None
        if not tps:
            return {}, {}
        ordered = list(tps)
        committed = await asyncio.gather(*(consumer.committed(tp) for tp in ordered))
        starts = {
            tp: int(offset)
            for tp, offset in zip(ordered, committed, strict=True)
            if offset is not None and offset >= 0
        }
        rest = [tp for tp in tps if tp not in starts]
        earliest = self.settings.start_from == "earliest"
        beginnings, ends = await asyncio.gather(
            consumer.beginning_offsets(rest) if rest and earliest else _nothing(),
            consumer.end_offsets(ordered) if self.once or not earliest else _nothing(),
        )
        edges = beginnings if earliest else ends
        starts.update({tp: int(edges[tp]) for tp in rest})
        return starts, {tp: int(end) for tp, end in ends.items()}

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        assert self._on_revoke is not None
        names = [partition_name(tp) for tp in revoked]
        with self._rebalancing():
            try:
                await self._on_revoke(sorted(names))
            finally:
                for tp in revoked:
                    self._partitions.pop(partition_name(tp), None)
                    self._stop_at.pop(tp, None)
                    self._next.pop(tp, None)

    def _reread(self, tp: TopicPartition) -> None:
        """Read ``tp`` again from where its state is. The rebalance sought it there already,
        but records fetched *after* that seek moved the consumer past them: dropped without
        this, they would be lost."""
        assert self._consumer is not None
        offset = self._next.get(tp)
        if offset is not None and partition_name(tp) in self._partitions:
            with contextlib.suppress(IllegalStateError):
                self._consumer.seek(tp, offset)

    def outdated(self) -> bool:
        """Whether a rebalance happened since the last batch yielded was fetched: it then
        must not be applied, its partition is read again from its state's position."""
        return self._yielded != self._generation

    def _caught_up(self) -> bool:
        return bool(self._stop_at) and all(
            self._next.get(tp, 0) >= end for tp, end in self._stop_at.items()
        )

    async def batches(self) -> AsyncIterator[Batch | None]:
        consumer = self._consumer
        assert consumer is not None, "open() first"
        timeout_ms = int(self.idle_seconds * 1000)
        while True:
            if self.once and self._caught_up():
                return
            generation = self._generation
            records = await consumer.getmany(
                timeout_ms=timeout_ms, max_records=self.settings.max_records
            )
            if not self._ready.is_set():
                await self._ready.wait()
            if not records:
                yield None
                continue
            for tp, fetched in records.items():
                if not self._ready.is_set():
                    await self._ready.wait()
                if self._generation != generation:
                    # A rebalance happened since these were fetched: they are read again
                    # from the positions stored with the states.
                    self._reread(tp)
                    continue
                if partition_name(tp) not in self._partitions:
                    # Fetched before a rebalance took the partition away: its new owner
                    # reads these again from the position stored with its state.
                    continue
                messages = as_messages(fetched)
                stop = self._stop_at.get(tp) if self.once else None
                if stop is not None and messages[-1][OFFSET] >= stop:
                    messages = [m for m in messages if m[OFFSET] < stop]
                    if not messages:
                        self._next[tp] = max(self._next.get(tp, 0), stop)
                        continue
                end = messages[-1][OFFSET] + 1
                self._next[tp] = end
                self._yielded = generation
                # A tombstone (no value) reads as an empty line.
                lines = [value if value is not None else b"" for _, _, value in messages]
                yield Batch(
                    partition=partition_name(tp),
                    lines=lines,
                    positions=_Offsets(messages),
                    end={"offset": end},
                    key_of=_keys(messages),
                    oversized=cap_lines(lines, self.max_line_bytes),
                )

    async def commit(
        self, positions: dict[str, Position], *, metadata: dict[str, str] | None = None
    ) -> None:
        """Commit offsets; ``metadata`` (per partition) is stored with them — the changelog
        uses it as the index of the checkpoint that includes that offset."""
        consumer = self._consumer
        if consumer is None:
            return
        metadata = metadata or {}
        offsets = {
            self._partitions[name]: (int(position["offset"]), metadata.get(name, ""))
            for name, position in positions.items()
            if name in self._partitions
        }
        if not offsets:
            self.committed = True
            return
        self.committed = False
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # The checkpoint, not the group offset, is the source of truth; a failed commit
            # only delays lag reporting and is retried with the next checkpoint.
            log.warning("offset commit failed (%s); will retry at the next checkpoint", exc)
        else:
            self.committed = True

    def lag(self) -> dict[str, int]:
        consumer = self._consumer
        if consumer is None:
            return {}
        result: dict[str, int] = {}
        for name, tp in self._partitions.items():
            high = consumer.highwater(tp)
            if high is not None and tp in self._next:
                result[name] = max(0, high - self._next[tp])
        return result

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await stop_client(consumer, what="the Kafka consumer")


async def _nothing() -> dict[TopicPartition, int]:
    return {}


class _Offsets(Sequence[int]):
    """The offsets of a fetched batch, looked up only for the lines that are dead-lettered
    (a list of them would cost an allocation per message)."""

    __slots__ = ("_messages",)

    def __init__(self, messages: Sequence[Message]) -> None:
        self._messages = messages

    def __len__(self) -> int:
        return len(self._messages)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> list[int]: ...

    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return [int(m[OFFSET]) for m in self._messages[index]]
        return int(self._messages[index][OFFSET])


def _keys(messages: Sequence[Message]) -> Any:
    def key_of(index: int) -> bytes | None:
        return messages[index][KEY]

    return key_of


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            await self._source._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._source._assigned(assigned)
