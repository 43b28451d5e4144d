"""Kafka dead letters bigger than the DLQ takes: kept (cut to fit, with their original size
and hash in headers), never fatal, and reading — and alerting — goes on."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from iotmon.kafka.admin import ensure_topic
from tests.conftest import SMTPCapture
from tests.helpers import drop_topics, iotmon, reading_line
from tests.test_consume_kafka import read_topic

BIG = 2 << 20
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def reading(device: str, seconds: int, temperature: float) -> bytes:
    return reading_line(device, T0 + timedelta(seconds=seconds), temperature)


@pytest.mark.parametrize(
    ("dlq_limit", "guarantee"),
    [
        (None, "at-least-once"),
        # A DLQ topic an operator created with a lower limit: learned from its config, and
        # nothing the broker could refuse is sent (which would also doom the transaction).
        (300_000, "exactly-once"),
    ],
)
async def test_a_dead_letter_too_big_for_the_dlq_is_kept_cut_and_reading_goes_on(
    kafka_bootstrap: str,
    smtp_server: SMTPCapture,
    tmp_path: Path,
    dlq_limit: int | None,
    guarantee: str,
) -> None:
    topic = f"iotmon-big-dlq-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}"
    group = f"big-dlq-{guarantee}"
    cleanup = [topic, f"{topic}.dlq", f"iotmon-{group}-changelog"]
    await drop_topics(kafka_bootstrap, cleanup)
    if dlq_limit is not None:
        await ensure_topic(
            kafka_bootstrap,
            f"{topic}.dlq",
            partitions=1,
            config={"max.message.bytes": str(dlq_limit)},
        )
    # The source topic takes messages the DLQ (broker default, 1 MB) cannot.
    await ensure_topic(
        kafka_bootstrap, topic, partitions=1, config={"max.message.bytes": str(8 << 20)}
    )
    invalid = [
        # Over any line limit: two MiB that are not JSON.
        (None, b'{"id_equipamento": "' + b"x" * BIG),
        # Under 1 MiB itself, but with its key the record is over the producer's limit.
        (b"k" * (100 << 10), b"not json " + b"y" * 1_000_000),
    ]
    messages: list[tuple[bytes | None, bytes]] = [
        (b"Hot-1", reading("Hot-1", s, 90.0)) for s in range(0, 100, 10)
    ]
    messages += invalid
    messages += [(b"Hot-1", reading("Hot-1", s, 90.0)) for s in range(100, 300, 10)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=16 << 20)
    await producer.start()
    try:
        offsets = [
            (await producer.send_and_wait(topic, value, key=key)).offset for key, value in messages
        ]
    finally:
        await producer.stop()
    try:
        result = iotmon(
            *("consume", "--once", "--json", "--no-live"),
            *("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--group", group),
            *("--state-dir", str(tmp_path / "state"), "--outbox", str(tmp_path / "eml")),
            *("--threshold", "75", "--for", "30", "--group-wait", "0"),
            *("--guarantee", guarantee),
            # Lines up to 4 MiB are readings to this operator, so the 2 MiB one is parsed and
            # dead-lettered whole (not as a short too_long prefix): the DLQ must still take it.
            *("--max-line-bytes", str(4 << 20)),
            *("--smtp-host", smtp_server.host, "--smtp-port", str(smtp_server.port)),
            *("--smtp-security", "none", "--mail-to", "ops@example.com"),
        )
        report = orjson.loads(result.stdout)
        assert (report["readings"], report["rejected"]) == (len(messages), 2)
        assert report["devices"]["Hot-1"]["count"] == len(messages) - 2, "later readings too"

        records = await read_topic(kafka_bootstrap, f"{topic}.dlq", 2)
        by_offset = {int(dict(r.headers)["iotmon.source.offset"]): r for r in records}
        for (key, value), offset in zip(invalid, offsets[10:12], strict=True):
            record = by_offset[offset]
            headers = dict(record.headers)
            assert headers["iotmon.source.topic"] == topic.encode()
            assert headers["iotmon.source.partition"] == b"0"
            assert headers["iotmon.truncated"] == b"true"
            assert int(headers["iotmon.original.size"]) == len(value)
            assert headers["iotmon.original.sha256"] == hashlib.sha256(value).hexdigest().encode()
            assert record.key == key
            assert record.value is not None and value.startswith(record.value)
            fits = dlq_limit or 1 << 20
            assert fits - (150 << 10) < len(record.value) <= fits, "as much as fits"

        (mail,) = await smtp_server.wait_for(1, timeout=30)
        body = mail.message.get_body(("plain",))
        assert body is not None and "Hot-1" in body.get_content()
    finally:
        await drop_topics(kafka_bootstrap, cleanup)


def test_fit_record_leaves_a_record_that_fits_alone_and_drops_a_key_with_no_room() -> None:
    from iotmon.kafka.deadletters import fit_record

    headers = [("iotmon.reason", b"invalid_json")]
    assert fit_record(b"v" * 100, b"k", headers, limit=1000) == (b"v" * 100, b"k", headers)
    value, key, cut = fit_record(b"v" * 5000, b"k" * 5000, headers, limit=1000)
    assert key is None and 0 < len(value) < 1000
    assert dict(cut)["iotmon.key.size"] == b"5000"
    assert dict(cut)["iotmon.original.size"] == b"5000"
