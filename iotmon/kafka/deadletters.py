"""Kafka dead letters: the raw value of every rejected message goes to ``<topic>.dlq``.

The reason and source position travel as headers. Records are flushed before offsets are
committed (at-least-once), or sent as part of the checkpoint's transaction (exactly-once).
The topic is created (one partition) before its first record rather than left to the
broker's auto-creation, which production clusters usually turn off. A record that would not
fit the producer's request limit or the topic's ``max.message.bytes`` has its value cut to
fit, with headers giving the original size and SHA-256: a message the source topic accepted
but the DLQ cannot hold must never stop the consumer (every restart would fail on the same
offset).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Collection
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from iotmon.kafka.admin import MAX_REQUEST_BYTES, ensure_topic, topic_config
from iotmon.parse import Rejection
from iotmon.state.deadletters import TakenDeadLetters

__all__ = ["DeadLetter", "KafkaDeadLetters", "fit_record"]

log = logging.getLogger(__name__)


DeadLetter = tuple[str, str, bytes, bytes | None, list[tuple[str, bytes]]]
"""A buffered Kafka dead letter: source partition, DLQ topic, raw value, key, headers."""

Headers = list[tuple[str, bytes]]


def _record_size(key: bytes | None, value: bytes, headers: Headers) -> int:
    """The producer's own upper bound for a batch holding just this record."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    return size


def fit_record(
    value: bytes, key: bytes | None, headers: Headers, *, limit: int
) -> tuple[bytes, bytes | None, Headers]:
    """The record as it is if it fits ``limit`` bytes (as the producer estimates a batch of
    it alone), else with the value cut to fit and ``iotmon.truncated``,
    ``iotmon.original.size`` and ``iotmon.original.sha256`` headers — and without its key
    (``iotmon.key.size`` says how long it was) should the key alone leave no room."""
    size = _record_size
    if size(key, value, headers) <= limit:
        return value, key, headers
    headers = [
        *headers,
        ("iotmon.truncated", b"true"),
        ("iotmon.original.size", str(len(value)).encode()),
        ("iotmon.original.sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    if key is not None and size(key, b"", headers) + 8 > limit:
        headers.append(("iotmon.key.size", str(len(key)).encode()))
        key = None
    # 8: the value's length prefix grows from one byte (empty) to at most five.
    room = max(limit - size(key, b"", headers) - 8, 0)
    return value[:room], key, headers


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
        max_request_bytes: int = MAX_REQUEST_BYTES,
        owns_producer: bool = False,
    ) -> None:
        """``bootstrap_servers``: where to create missing dead-letter topics and learn their
        ``max.message.bytes`` (None: leave that to the broker). ``max_request_bytes``: the
        producer's ``max_request_size``. ``owns_producer``: :meth:`close` stops it."""
        self._producer = producer
        self._owns_producer = owns_producer
        self._bootstrap_servers = bootstrap_servers
        self._suffix = suffix
        self._transactional = transactional
        self._max_request_bytes = max_request_bytes
        self._buffer: list[DeadLetter] = []
        self._ensured: set[str] = set()
        self._limits: dict[str, int] = {}

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

    def take(self) -> TakenDeadLetters:
        """Everything put so far, removed from the buffer: taken in the same synchronous
        step as the checkpoint's state, so the two cover exactly the same readings."""
        taken, self._buffer = self._buffer, []
        return TakenDeadLetters(count=len(taken), send=partial(self.send, taken))

    async def send(self, records: list[DeadLetter]) -> None:
        """Send taken records and wait for their acknowledgement."""
        await self._ensure_topics({topic for _, topic, _, _, _ in records})
        # One producer batch may hold several records, and the broker applies the topic's
        # limit to the batch: wait for what is in flight before a batch could outgrow it.
        futures: list[asyncio.Future[Any]] = []
        in_flight: dict[str, int] = {}
        for partition, topic, raw, key, headers in records:
            limit = self._limits.get(topic, self._max_request_bytes)
            value, key, headers = fit_record(raw, key, headers, limit=limit)
            if len(value) < len(raw):
                log.warning(
                    "a dead letter of %s is %d bytes, more than %s takes (%d): its first %d "
                    "bytes are kept, its size and SHA-256 in headers",
                    partition,
                    len(raw),
                    topic,
                    limit,
                    len(value),
                )
            size = _record_size(key, value, headers)
            if in_flight.get(topic, 0) + size > limit:
                await asyncio.gather(*futures)
                futures, in_flight = [], {}
            in_flight[topic] = in_flight.get(topic, 0) + size
            futures.append(await self._producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)

    async def _ensure_topics(self, topics: set[str]) -> None:
        if self._bootstrap_servers is None:
            return
        for topic in sorted(topics - self._ensured):
            await ensure_topic(self._bootstrap_servers, topic, partitions=1)
            self._limits[topic] = min(self._max_request_bytes, await self._topic_limit(topic))
            self._ensured.add(topic)

    async def _topic_limit(self, topic: str) -> int:
        assert self._bootstrap_servers is not None
        try:
            config = await topic_config(self._bootstrap_servers, topic)
            return int(config["max.message.bytes"])
        except (KafkaError, KeyError, ValueError) as exc:
            log.warning(
                "cannot read max.message.bytes of %s (%r); dead letters are cut to %d bytes",
                topic,
                exc,
                self._max_request_bytes,
            )
            return self._max_request_bytes

    def discard(self, partitions: Collection[str]) -> None:
        """Drop buffered records of partitions that moved away (their next owner replays
        the readings after the last checkpoint, rejections included)."""
        self._buffer = [r for r in self._buffer if r[0] not in partitions]

    async def flush(self) -> dict[str, int]:
        taken, self._buffer = self._buffer, []
        await self.send(taken)
        return {}

    def restore(self, partition: str, size: int) -> None:
        """Kafka DLQ records are not rewound: at-least-once, like the offsets (exactly-once
        needs nothing to rewind: uncommitted records are invisible to readers)."""

    async def close(self) -> None:
        try:
            if self._transactional:
                if self._buffer:
                    log.info(
                        "%d dead letters after the last checkpoint are left to the replay",
                        len(self._buffer),
                    )
                self._buffer = []
            else:
                await self.flush()
        finally:
            if self._owns_producer:
                await self._producer.stop()
