"""`iotmon produce` and the Kafka loader: keys, line handling, errors, and round trips through
a real broker (simulate → Kafka, file → Kafka, the seed sample → Kafka)."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.codec import has_lz4
from aiokafka.partitioner import murmur2
from typer.testing import CliRunner

from iotmon.cli import app
from iotmon.kafka.admin import KafkaUnavailableError, ensure_topic
from iotmon.parse import parse_event_time
from iotmon.tools.fleet import Fleet
from iotmon.tools.line_chunks import iter_line_chunks
from iotmon.tools.message_keys import extract_key
from iotmon.tools.produce import (
    ProduceError,
    ProducerSettings,
    available_compressions,
    produce_files,
    produce_lines,
)
from tests.helpers import PATIENCE_S, SEED_FILE

if TYPE_CHECKING:
    from conftest import MakeTopic

LINE = (
    b'{"id_sensor":"Sensor-1503-762GK","id_equipamento":"Equipament-0323XH-762GK",'
    b'"sensor":"sensor16", "data_evento":"2023-03-15T12:15:37.166944Z", '
    b'"padrao":{"formato":"iot:leitura:sensor:temp", "leitura":{"temperatura":73.3}}}'
)
START_US = parse_event_time("2026-01-01T00:00:00Z")


# ------------------------------------------------------------------------------ no broker


def test_extract_key() -> None:
    assert extract_key(LINE, "id_equipamento") == b"Equipament-0323XH-762GK"
    assert extract_key(LINE, "padrao.formato") == b"iot:leitura:sensor:temp"
    assert extract_key(LINE, "padrao.leitura.temperatura") == b"73.3"
    assert extract_key(LINE, "nope") is None
    assert extract_key(b'{"id_equipamento":""}', "id_equipamento") is None
    assert extract_key(b'{"id_equipamento":{"a":1}}', "id_equipamento") is None
    assert extract_key(b"[1,2]", "id_equipamento") is None
    # Not JSON, but the device id is complete: keep the reading on its device's partition.
    assert extract_key(LINE[:120], "id_equipamento") == b"Equipament-0323XH-762GK"
    assert extract_key(LINE.replace(b"73.3", b"NaN"), "id_equipamento") is not None
    assert extract_key(LINE[:60], "id_equipamento") is None  # cut inside the id
    assert extract_key(b"garbage", "id_equipamento") is None
    assert extract_key(b'{"id_equipamento":"a\\"b', "id_equipamento") is None


async def test_iter_line_chunks_handles_crlf_and_a_last_line_without_newline() -> None:
    data = b"a\r\nb\n\nc\r\n" + b"x" * 3_000_000 + b"\nlast"
    lines = [line async for chunk in iter_line_chunks(io.BytesIO(data)) for line in chunk]
    assert lines == [b"a", b"b", b"", b"c", b"x" * 3_000_000, b"last"]


async def test_iter_line_chunks_reads_a_slow_pipe_without_blocking_the_loop() -> None:
    r, w = os.pipe()

    def writer() -> None:
        for i in range(5):
            os.write(w, b"line%d\n" % i)
            time.sleep(0.05)
        os.close(w)

    idle_calls = 0

    async def on_idle() -> None:
        nonlocal idle_calls
        idle_calls += 1

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(r, "rb") as stream:
        lines = [
            line
            async for chunk in iter_line_chunks(stream, on_idle=on_idle, idle_s=0.01)
            for line in chunk
        ]
    thread.join()
    assert lines == [b"line%d" % i for i in range(5)]
    assert idle_calls >= 5, "the loader gets a chance to send while the pipe is quiet"


def test_settings_are_validated() -> None:
    with pytest.raises(ProduceError, match="acks"):
        ProducerSettings(acks="2")
    with pytest.raises(ProduceError, match="compression"):
        ProducerSettings(compression="brotli")
    if not has_lz4():
        with pytest.raises(ProduceError, match="cramjam"):
            ProducerSettings(compression="lz4")
    assert "gzip" in available_compressions()
    ProducerSettings(compression="gzip", acks="1")


def test_cli_unreachable_kafka_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(LINE + b"\n")
    result = CliRunner().invoke(app, ["produce", str(path), "--bootstrap-servers", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr
    assert "make kafka-up" in result.stderr and "--bootstrap-servers" in result.stderr


def test_cli_missing_file_is_reported_before_connecting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["produce", str(tmp_path / "nope.txt"), "--bootstrap-servers", "127.0.0.1:1"]
    )
    assert result.exit_code == 1
    assert "cannot read" in result.stderr and "nope.txt" in result.stderr


async def test_ensure_topic_unreachable() -> None:
    with pytest.raises(KafkaUnavailableError, match="`bootstrap_servers`"):
        await ensure_topic("127.0.0.1:1", "t", partitions=1)


# ---------------------------------------------------------------------------- real broker


async def new_topic(make_topic: MakeTopic, partitions: int) -> str:
    return await make_topic(partitions=partitions)


@pytest.fixture
async def own_topics(kafka_bootstrap: str) -> AsyncIterator[list[str]]:
    """Names for topics the code under test creates itself; deleted afterwards."""
    names: list[str] = []
    yield names
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def fresh_name(own_topics: list[str], prefix: str) -> str:
    name = f"iotmon-{prefix}-{uuid.uuid4().hex[:8]}"
    own_topics.append(name)
    return name


async def consume_all(
    bootstrap: str, topic: str, expected: int, *, wait_s: float = PATIENCE_S
) -> list[tuple[int, bytes | None, bytes]]:
    """Every message of the topic as (partition, key, value), in per-partition order."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    await consumer.start()
    out: list[tuple[int, bytes | None, bytes]] = []
    try:
        deadline = time.monotonic() + wait_s
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for tp, records in batches.items():
                out.extend((tp.partition, r.key, r.value) for r in records)
        # Anything beyond the expected count would be a duplicate: give it a moment to show.
        extra = await consumer.getmany(timeout_ms=300)
        out.extend((tp.partition, r.key, r.value) for tp, rs in extra.items() for r in rs)
    finally:
        await consumer.stop()
    return out


async def partition_count(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (desc,) = await admin.describe_topics([topic])
        return len(desc["partitions"])
    finally:
        await admin.close()


def check_keys(messages: list[tuple[int, bytes | None, bytes]], partitions: int) -> None:
    """Keys are the value's id_equipamento, and sit where every Kafka client puts them."""
    for partition, key, value in messages:
        doc = orjson.loads(value)
        assert key == doc["id_equipamento"].encode()
        assert partition == (murmur2(key) & 0x7FFFFFFF) % partitions


@pytest.mark.kafka
async def test_simulate_straight_to_kafka_100k(kafka_bootstrap: str, make_topic: MakeTopic) -> None:
    topic = await new_topic(make_topic, 6)
    args = ["--devices", "500", "--count", "100000", "--seed", "21", "--start", "2026-01-01"]
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["simulate", *args, "--bootstrap-servers", kafka_bootstrap, "--topic", topic],
    )
    assert result.exit_code == 0, result.output
    assert "lines/s" in result.stderr
    messages = await consume_all(kafka_bootstrap, topic, 100_000)
    assert len(messages) == 100_000
    check_keys(messages, 6)
    fleet_lines = await asyncio.to_thread(CliRunner().invoke, app, ["simulate", *args])
    expected = fleet_lines.stdout_bytes.splitlines()
    assert Counter(v for _, _, v in messages) == Counter(expected)
    # Per device, Kafka keeps the generation order (one partition per key).
    per_key: dict[bytes | None, list[bytes]] = defaultdict(list)
    for _, key, value in messages:
        per_key[key].append(value)
    want: dict[bytes | None, list[bytes]] = defaultdict(list)
    for line in expected:
        want[orjson.loads(line)["id_equipamento"].encode()].append(line)
    assert per_key == want


@pytest.mark.kafka
async def test_produce_file_with_bad_lines_100k(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = await new_topic(make_topic, 4)
    fleet = Fleet.create(devices=300, seed=5, bad_rate=0.01)
    readings = fleet.readings(count=100_000, start_us=START_US)
    lines = list(readings)
    path = tmp_path / "dados.txt"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["produce", str(path), "--bootstrap-servers", kafka_bootstrap, "--topic", topic],
    )
    assert result.exit_code == 0, result.output
    assert "100,000 lines" in result.stderr and "lines/s" in result.stderr
    messages = await consume_all(kafka_bootstrap, topic, 100_000)
    assert len(messages) == 100_000
    assert Counter(v for _, _, v in messages) == Counter(lines)
    keyless = 0
    for partition, key, value in messages:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("id_equipamento"), str):
            assert key == doc["id_equipamento"].encode()
        if key is None:
            keyless += 1
        else:
            assert partition == (murmur2(key) & 0x7FFFFFFF) % 4
    # Only lines whose id is missing or cut off go without a key.
    assert 0 < keyless < readings.manifest()["totals"]["bad"]


@pytest.mark.kafka
async def test_produce_the_seed_sample_as_is(kafka_bootstrap: str, own_topics: list[str]) -> None:
    # A topic nobody created: produce must create it with --partitions.
    topic = fresh_name(own_topics, "seed")
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        [
            "produce",
            str(SEED_FILE),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
            "--partitions",
            "3",
            "--compression",
            "gzip",
            "--acks",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert await partition_count(kafka_bootstrap, topic) == 3
    messages = await consume_all(kafka_bootstrap, topic, 10_000)
    assert len(messages) == 10_000
    check_keys(messages, 3)
    # The seed's CRLF line ends are stripped; the JSON is sent byte for byte.
    assert sorted(v for _, _, v in messages) == sorted(SEED_FILE.read_bytes().splitlines())


@pytest.mark.kafka
async def test_produce_stdin_skip_invalid_and_no_keys(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = await new_topic(make_topic, 2)
    data = LINE + b"\nnot json\n\n" + LINE.replace(b"73.3", b"NaN") + b"\n" + LINE + b"\n"
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        [
            "produce",
            "-",
            "--skip-invalid",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
        ],
        input=data,
    )
    assert result.exit_code == 0, result.output
    assert "2 invalid skipped" in result.stderr and "1 empty skipped" in result.stderr
    messages = await consume_all(kafka_bootstrap, topic, 2)
    assert [(k, v) for _, k, v in messages] == [(b"Equipament-0323XH-762GK", LINE)] * 2

    topic2 = await new_topic(make_topic, 2)
    settings = ProducerSettings(bootstrap_servers=kafka_bootstrap, topic=topic2, key_field=None)
    stats = await produce_lines([LINE] * 10 + [b"", b"x"], settings)
    assert (stats.lines, stats.sent, stats.keyless, stats.skipped_empty) == (11, 11, 11, 1)
    messages = await consume_all(kafka_bootstrap, topic2, 11)
    assert len(messages) == 11 and all(k is None for _, k, _ in messages)
    # Keyless messages are spread over the partitions.
    assert {p for p, _, _ in messages} == {0, 1}


@pytest.mark.kafka
async def test_produce_files_library_counts(
    kafka_bootstrap: str, own_topics: list[str], tmp_path: Path
) -> None:
    topic = fresh_name(own_topics, "files")
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(LINE + b"\n" + LINE + b"\n")
    b.write_bytes(LINE + b"\r\n")
    settings = ProducerSettings(
        bootstrap_servers=kafka_bootstrap, topic=topic, partitions=2, linger_ms=5
    )
    stats = await produce_files([str(a), str(b)], settings)
    assert stats.sent == 3 and stats.keyless == 0
    assert sum(stats.per_partition.values()) == 3
    assert await partition_count(kafka_bootstrap, topic) == 2
