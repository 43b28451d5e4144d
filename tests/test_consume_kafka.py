"""`iotmon consume` from a real Kafka broker: same answers as the file path, dead letters in
`<topic>.dlq`, and exact stats across SIGKILLs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from tests.conftest import MakeTopic
from tests.helpers import (
    PATIENCE_S,
    SEED_FILE,
    assert_same_stats,
    consume_json,
    fill_topic,
    iotmon,
    kill_repeatedly,
)


def kafka_args(bootstrap: str, topic: str, group: str) -> list[str]:
    return ["--bootstrap-servers", bootstrap, "--topic", topic, "--group", group]


async def test_seed_through_kafka_gives_the_file_means(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = await make_topic(partitions=6)
    iotmon("produce", str(SEED_FILE), "--bootstrap-servers", kafka_bootstrap, "--topic", topic)
    from_kafka = consume_json(
        *kafka_args(kafka_bootstrap, topic, "seed"),
        "--key",
        "sensor",
        "--state-dir",
        str(tmp_path / "kafka"),
    )
    from_file = consume_json(
        "--input", str(SEED_FILE), "--key", "sensor", "--state-dir", str(tmp_path / "file")
    )
    assert from_kafka["readings"] == 10_000
    assert from_kafka["devices"].keys() == from_file["devices"].keys()
    for sensor, device in from_file["devices"].items():
        other = from_kafka["devices"][sensor]
        assert other["count"] == device["count"]
        # Per-sensor order differs across partitions; the sum is the same to rounding.
        assert math.isclose(other["mean"], device["mean"], rel_tol=0, abs_tol=1e-9)


async def test_rejected_messages_go_to_the_dlq_topic(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = await make_topic(partitions=2)
    data = tmp_path / "bad.txt"
    data.write_bytes(
        SEED_FILE.read_bytes().splitlines(keepends=True)[0] * 3
        + b"not json\n"
        + b'{"id_equipamento": "E-1", "data_evento": "2026-01-01T00:00:00Z", '
        b'"padrao": {"leitura": {"temperatura": "hot"}}}\n'
    )
    iotmon("produce", str(data), "--bootstrap-servers", kafka_bootstrap, "--topic", topic)
    report = consume_json(
        *kafka_args(kafka_bootstrap, topic, "dlq"), "--state-dir", str(tmp_path / "state")
    )
    assert (report["readings"], report["accepted"], report["rejected"]) == (5, 3, 2)
    records = await read_topic(kafka_bootstrap, f"{topic}.dlq", 2)
    by_value = {r.value: dict(r.headers) for r in records}
    assert by_value[b"not json"]["iotmon.reason"] == b"invalid_json"
    hot = next(h for v, h in by_value.items() if b"hot" in v)
    assert hot["iotmon.reason"] == b"wrong_type"
    assert hot["iotmon.source.topic"] == topic.encode()
    # The source position of each dead letter is where the rejected message is.
    source = {(r.partition, r.offset): r.value for r in await read_topic(kafka_bootstrap, topic, 5)}
    for value, headers in by_value.items():
        at = (int(headers["iotmon.source.partition"]), int(headers["iotmon.source.offset"]))
        assert source[at] == value


async def read_topic(
    bootstrap: str, topic: str, count: int, **options: Any
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` messages of ``topic`` (``options``: more consumer options)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **options
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        while len(records) < count:
            more = await consumer.getmany(timeout_ms=int(PATIENCE_S * 1000))
            assert more, f"{topic}: {len(records)} of {count} records arrived"
            records += [r for rs in more.values() for r in rs]
    finally:
        await consumer.stop()
    return records


async def test_sigkill_during_a_million_readings_from_kafka_is_exact(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = await make_topic(partitions=6)
    fill_topic(kafka_bootstrap, topic, 1_000_000)
    reference = consume_json(
        *kafka_args(kafka_bootstrap, topic, "reference"), "--state-dir", str(tmp_path / "ref")
    )
    assert reference["readings"] == 1_000_000

    state = tmp_path / "killed"
    args = [
        "consume",
        *kafka_args(kafka_bootstrap, topic, "killed"),
        "--once",
        "--json",
        "--no-live",
        "--state-dir",
        str(state),
        "--checkpoint-interval",
        "0.2",
    ]
    kill_repeatedly(args, state_dir=state, kills=4)
    resumed = consume_json(*kafka_args(kafka_bootstrap, topic, "killed"), "--state-dir", str(state))
    assert_same_stats(resumed, reference)


async def test_a_quiet_partition_does_not_hold_alerts_back(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    """The stream clock follows the slowest partition that still has a backlog. A partition
    that is caught up and silent (its devices went quiet) must not freeze it — a frozen
    clock would never see the silent device go stale, nor send a digest while the stream
    runs."""
    topic = await make_topic(partitions=2)
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def reading(device: str, second: int, temperature: float) -> bytes:
        stamp = (start + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return orjson.dumps(
            {
                "id_equipamento": device,
                "data_evento": stamp,
                "padrao": {"leitura": {"temperatura": temperature}},
            }
        )

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send(topic, reading("quiet", 0, 20.0), key=b"quiet", partition=0)
        for second in range(0, 7200, 10):
            await producer.send(topic, reading("hot", second, 90.0), key=b"hot", partition=1)
        await producer.flush()
    finally:
        await producer.stop()

    report = consume_json(
        *kafka_args(kafka_bootstrap, topic, "quiet"),
        "--state-dir",
        str(tmp_path / "state"),
        "--outbox",
        str(tmp_path / "outbox"),
        "--for",
        "3600",
        "--stale-after",
        "1800",
    )
    states = {(a["device"], a["state"]) for a in report["alerts"]}
    assert ("hot", "firing") in states
    assert ("quiet", "stale") in states
    assert list((tmp_path / "outbox").glob("*.eml")), "no digest was written"


async def test_a_torn_cache_file_is_ignored_and_the_state_comes_from_the_changelog(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    """With a changelog the local checkpoint files are a cache written without fsync: after
    a power loss one may be torn. The changelog has the copy that counts."""
    topic = await make_topic(partitions=2)
    produce = ("produce", str(SEED_FILE), "--bootstrap-servers", kafka_bootstrap, "--topic", topic)
    iotmon(*produce)
    state = tmp_path / "state"
    args = (
        *kafka_args(kafka_bootstrap, topic, "torn"),
        "--key",
        "sensor",
        "--state-dir",
        str(state),
    )
    first = consume_json(*args)
    assert first["readings"] == 10_000
    cached = sorted((state / "partitions").glob("*.json"))
    assert len(cached) == 2
    cached[0].write_bytes(cached[0].read_bytes()[:100])

    iotmon(*produce)
    result = iotmon("consume", "--once", "--json", "--no-live", *args)
    assert b"ignoring the cached checkpoint" in result.stderr
    second = orjson.loads(result.stdout)
    assert second["readings"] == 20_000
    for sensor, device in first["devices"].items():
        assert second["devices"][sensor]["count"] == 2 * device["count"]
        assert math.isclose(second["devices"][sensor]["mean"], device["mean"], abs_tol=1e-9)
