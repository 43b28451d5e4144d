"""Silences of a Kafka consumer group: the compacted topic ``iotmon-<group>-silences``.

One record per silence (key: its id, value: its JSON), a tombstone when it is expired, so
compaction keeps the topic as small as the set of silences. Every instance of the group
reads the whole topic at start and then follows it in a background task: a silence added
with `iotmon silence add` reaches all of them within about a second, without a restart,
and survives restarts because it is in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from iotmon.aio import stop_task
from iotmon.alerts.silences import Clock, Silence, Silences, ended_ids, find
from iotmon.kafka.admin import KafkaUnavailableError, KafkaUnreachableError, ensure_topic
from iotmon.kafka.clients import stop_client

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord

__all__ = ["TOPIC_CONFIG", "KafkaSilenceStore", "KafkaSilenceWatch", "silences_topic"]

log = logging.getLogger(__name__)

TOPIC_CONFIG: Final = {"cleanup.policy": "compact", "segment.ms": str(3600 * 1000)}
_FOLLOW_WAIT_MS: Final = 500
_RETRY_S: Final = 10.0


def silences_topic(group: str) -> str:
    return f"iotmon-{group}-silences"


class KafkaSilenceStore:
    """The silences of one consumer group, for `iotmon silence`."""

    def __init__(self, *, bootstrap_servers: str, topic: str, clock: Clock) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._clock = clock

    async def read(self) -> list[Silence]:
        await self._ensure()
        silences = Silences(clock=self._clock)
        consumer = await _start_consumer(self.bootstrap_servers)
        try:
            await _catch_up(consumer, self.topic, silences)
        finally:
            await consumer.stop()
        return silences.all()

    async def add(self, silence: Silence) -> None:
        stored = await self.read()
        # Ended silences are removed whenever one is added, so the topic does not keep them.
        await self._send(
            [(silence.id, silence)] + [(i, None) for i in ended_ids(stored, self._clock())]
        )

    async def expire(self, silence_id: str) -> Silence:
        found = find(await self.read(), silence_id)
        await self._send([(found.id, None)])
        return found

    async def _ensure(self) -> None:
        await ensure_topic(self.bootstrap_servers, self.topic, partitions=1, config=TOPIC_CONFIG)

    async def _send(self, records: list[tuple[str, Silence | None]]) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, acks="all", enable_idempotence=True
        )
        try:
            await producer.start()
        except KafkaConnectionError as exc:
            await producer.stop()
            raise KafkaUnreachableError(self.bootstrap_servers) from exc
        try:
            for key, silence in records:
                value = None if silence is None else orjson.dumps(silence.to_json())
                await producer.send_and_wait(self.topic, key=key.encode(), value=value)
        except KafkaError as exc:
            raise KafkaUnavailableError(
                f"Kafka at {self.bootstrap_servers} did not take the silence ({exc!r}) — check "
                "the broker and try again"
            ) from exc
        finally:
            await producer.stop()


class KafkaSilenceWatch:
    """Keeps :attr:`silences` equal to the topic's content while a consumer runs."""

    def __init__(self, *, bootstrap_servers: str, topic: str, silences: Silences) -> None:
        self.silences = silences
        self._store = KafkaSilenceStore(
            bootstrap_servers=bootstrap_servers, topic=topic, clock=silences.clock
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read every silence, then follow the topic. If that fails (a broker that refuses
        to create the topic), monitoring goes on without silences — mailing too much
        beats not watching at all — and the watch keeps trying in the background."""
        try:
            await self._open()
        except (KafkaError, KafkaUnavailableError) as exc:
            log.error(
                "cannot read the silences topic %s (%s): running without silences until it "
                "can; create it (compacted, 1 partition) or let iotmon create topics",
                self._store.topic,
                exc,
            )
            self._task = asyncio.create_task(self._retry(), name="iotmon-silences")
            return
        assert self._consumer is not None
        self._task = asyncio.create_task(self._follow(self._consumer), name="iotmon-silences")

    async def _open(self) -> None:
        store = self._store
        await store._ensure()
        consumer = self._consumer = await _start_consumer(store.bootstrap_servers)
        # All of it before the first reading: a silence must not lapse across a restart.
        await _catch_up(consumer, store.topic, self.silences)

    async def _retry(self) -> None:
        while True:
            await asyncio.sleep(_RETRY_S)
            if self._consumer is not None:
                await self._consumer.stop()
                self._consumer = None
            try:
                await self._open()
            except (KafkaError, KafkaUnavailableError) as exc:
                log.debug("silences topic still unavailable: %s", exc)
                continue
            log.info("reading silences from %s again", self._store.topic)
            assert self._consumer is not None
            await self._follow(self._consumer)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=_FOLLOW_WAIT_MS)
            except KafkaError as exc:
                # The consumer reconnects by itself; the silences known so far stay in force.
                log.warning(
                    "reading silences from %s failed (%r); retrying", self._store.topic, exc
                )
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                _apply(self.silences, records)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        if self._consumer is not None:
            await stop_client(self._consumer, what="the silences reader")
            self._consumer = None


async def _start_consumer(bootstrap_servers: str) -> AIOKafkaConsumer:
    # No group: every reader sees every silence, and nothing is committed.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        # Its first request waits for the topic's metadata, polled every retry_backoff_ms:
        # the default 100 ms is added to every start (this consumer makes one connection).
        retry_backoff_ms=20,
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        raise KafkaUnreachableError(bootstrap_servers) from exc
    return consumer


async def _catch_up(consumer: AIOKafkaConsumer, topic: str, silences: Silences) -> None:
    """Read ``topic`` (one partition) from its start to its current end into ``silences``."""
    tp = TopicPartition(topic, 0)
    # The end first: once the partition is assigned the consumer long-polls it, and the
    # offsets request would wait behind that fetch (fetch_max_wait_ms, 0.5 s) on every start.
    end = (await consumer.end_offsets([tp]))[tp]
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    while await consumer.position(tp) < end:
        batches = await consumer.getmany(tp, timeout_ms=_FOLLOW_WAIT_MS)
        _apply(silences, batches.get(tp, []))


def _apply(silences: Silences, records: list[ConsumerRecord[bytes, bytes]]) -> None:
    for record in records:
        if record.key is None:
            continue
        key = record.key.decode(errors="replace")
        if record.value is None:
            silences.remove(key)
            continue
        try:
            silences.put(Silence.from_json(orjson.loads(record.value)))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("ignoring a malformed silence record %r in the silences topic: %s", key, exc)
