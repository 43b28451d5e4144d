"""The Kafka source's consumer gets ``(offset, key, value)`` tuples straight from aiokafka;
every other consumer in the same process still gets aiokafka's ``ConsumerRecord``."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.consumer.fetcher import PartitionRecords

from iotmon.kafka.messages import LEAN_OPTIONS, as_messages, lean_installed
from tests.conftest import MakeTopic
from tests.test_consume_kafka import read_topic

SENT: list[tuple[bytes | None, bytes | None]] = [
    (b"k1", b'{"a": 1}'),
    (None, b"no key"),
    (b"k2", None),  # a tombstone
    (b"k3", b"\xff not utf-8 \x00"),
]


def test_the_installed_aiokafka_takes_the_wrapper() -> None:
    """Fails when an aiokafka upgrade no longer has what the wrapper hooks into: iotmon
    would still read every message, more slowly (see the ``aiokafka`` case of
    ``test_poison_pills_from_kafka``)."""
    assert lean_installed
    assert PartitionRecords._consumer_record.__wrapped__ is not None


def test_records_are_turned_into_tuples() -> None:
    records = [
        ConsumerRecord("t", 0, offset, 0, 0, key, value, None, -1, -1, ())
        for offset, (key, value) in enumerate(SENT, start=7)
    ]
    assert as_messages(records) == [(7 + i, k, v) for i, (k, v) in enumerate(SENT)]
    tuples = [(1, None, b"x")]
    assert as_messages(tuples) is tuples
    assert as_messages([]) == []


async def test_only_the_lean_consumer_gets_tuples(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = await make_topic(partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for key, value in SENT:
            await producer.send_and_wait(topic, value, key=key, headers=[("h", b"v")])
    finally:
        await producer.stop()

    lean: list[Any] = await read_topic(kafka_bootstrap, topic, len(SENT), **LEAN_OPTIONS)
    plain = await read_topic(kafka_bootstrap, topic, len(SENT))

    assert lean == [(i, key, value) for i, (key, value) in enumerate(SENT)]
    assert all(type(m) is ConsumerRecord for m in plain)
    assert [m.headers for m in plain] == [(("h", b"v"),)] * len(SENT)
    assert as_messages(plain) == lean
