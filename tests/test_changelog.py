"""Partition state in the changelog topic: restored without the local cache, chunked when
large, compacted, and — with exactly-once — committed together with the dead letters and
the offsets. Real broker, real processes."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from iotmon.kafka.changelog import CHUNK_BYTES, Checkpoint, KafkaChangelog, describe_changelog
from tests.conftest import MakeTopic
from tests.helpers import (
    PATIENCE_S,
    assert_same_stats,
    consume_json,
    drop_topics,
    group_args,
    iotmon,
    kill_repeatedly,
    simulate_file,
)


def split(path: Path, parts: int) -> list[Path]:
    lines = path.read_bytes().splitlines(keepends=True)
    size = -(-len(lines) // parts)
    paths = []
    for i in range(parts):
        part = path.with_name(f"{path.stem}-{i}.txt")
        part.write_bytes(b"".join(lines[i * size : (i + 1) * size]))
        paths.append(part)
    return paths


async def test_state_comes_back_from_the_changelog_when_the_local_cache_is_gone(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path, changelogs: list[str]
) -> None:
    topic = await make_topic(partitions=3)
    group = f"roundtrip-{topic}"
    changelogs.append(group)
    readings = simulate_file(
        tmp_path / "readings.txt", "--devices", "300", "--count", "60000", "--bad-rate", "0.01"
    )
    first, second = split(readings, 2)
    produce = ["--bootstrap-servers", kafka_bootstrap, "--topic", topic]
    iotmon("produce", str(first), *produce)
    state = tmp_path / "state"
    args = group_args(kafka_bootstrap, topic, group, state)
    assert consume_json(*args)["readings"] == 30_000

    # Another machine: nothing on disk but the instance id's absence.
    for path in (state / "partitions").glob("*.json"):
        path.unlink()
    iotmon("produce", str(second), *produce)
    result = iotmon("consume", "--once", "--json", "--no-live", *args)
    assert result.stderr.decode().count("from changelog") == 3
    resumed = orjson.loads(result.stdout)
    whole = consume_json("--input", str(readings), "--state-dir", str(tmp_path / "file"))
    assert_same_stats(resumed, whole)

    # The changelog also refilled the cache: the next start downloads nothing.
    again = iotmon("consume", "--once", "--json", "--no-live", *args)
    assert again.stderr.decode().count("from cache") == 3
    assert_same_stats(orjson.loads(again.stdout), whole)

    config = await describe_changelog(kafka_bootstrap, f"iotmon-{group}-changelog")
    assert config["cleanup.policy"] == "compact"
    assert int(config["min.compaction.lag.ms"]) > 0
    assert int(config["segment.bytes"]) <= 64 << 20


async def test_a_large_state_is_chunked_and_only_the_newest_checkpoint_counts(
    kafka_bootstrap: str, make_topic: MakeTopic, changelogs: list[str]
) -> None:
    topic = await make_topic(partitions=2)
    changelogs.append(f"test-{uuid.uuid4().hex[:8]}")
    changelog_topic = f"iotmon-{changelogs[-1]}-changelog"
    changelog = KafkaChangelog(
        bootstrap_servers=kafka_bootstrap, topic=changelog_topic, group=f"g-{topic}"
    )
    await changelog.open(input_topics=[topic])
    name = f"{topic}:1"
    big = os.urandom(CHUNK_BYTES * 4 + 123)
    small = b"x" * 1000
    try:
        (ref,) = (await changelog.write([Checkpoint(name, "one", {"offset": 5}, big)])).values()
        assert ref.chunks == 5
        await changelog.write([Checkpoint(name, "two", {"offset": 9}, small)])

        # No committed index (no group offsets): the changelog partition is scanned.
        reader = KafkaChangelog(
            bootstrap_servers=kafka_bootstrap, topic=changelog_topic, group=f"g-{topic}"
        )
        await reader.open(input_topics=[topic])
        try:
            found = await reader.latest([name, f"{topic}:0"], known={})
            assert list(found) == [name]
            assert (found[name].checkpoint, found[name].payload) == ("two", small)
            assert found[name].position == {"offset": 9}
            # Held already: nothing is downloaded.
            held = await reader.latest([name], known={name: "two"})
            assert held[name].payload is None

            # An index pointing at the first checkpoint (an offset commit that outlived a
            # newer write): the newer one after it still wins.
            consumer = AIOKafkaConsumer(
                bootstrap_servers=kafka_bootstrap, group_id=f"g-{topic}", enable_auto_commit=False
            )
            await consumer.start()
            try:
                tp = TopicPartition(topic, 1)
                consumer.assign([tp])
                await consumer.commit({tp: (5, ref.metadata())})
            finally:
                await consumer.stop()
            indexed = await reader.latest([name], known={})
            assert (indexed[name].checkpoint, indexed[name].payload) == ("two", small)
        finally:
            await reader.close()
    finally:
        await changelog.close()

    # Every chunk of the superseded checkpoint got a tombstone, so compaction drops it.
    raw = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await raw.start()
    try:
        tp = TopicPartition(changelog_topic, ref.partition)
        raw.assign([tp])
        end = (await raw.end_offsets([tp]))[tp]
        records = []
        while not records or records[-1].offset < end - 1:
            batch = await raw.getmany(tp, timeout_ms=int(PATIENCE_S * 1000))
            assert batch, "changelog records did not arrive"
            records += batch[tp]
    finally:
        await raw.stop()
    tombstones = {r.key for r in records if r.value is None}
    assert tombstones == {f"{name}#one#{i}".encode() for i in range(5)}


async def test_exactly_once_sigkills_leave_exact_stats_and_each_dead_letter_once(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path, changelogs: list[str]
) -> None:
    topic = await make_topic(partitions=3)
    group = f"eos-{topic}"
    changelogs.append(group)
    readings = simulate_file(
        tmp_path / "readings.txt", "--devices", "1000", "--count", "200000", "--bad-rate", "0.01"
    )
    iotmon("produce", str(readings), "--bootstrap-servers", kafka_bootstrap, "--topic", topic)
    whole = consume_json("--input", str(readings), "--state-dir", str(tmp_path / "file"))

    state = tmp_path / "eos"
    args = [
        *group_args(kafka_bootstrap, topic, group, state),
        "--guarantee",
        "exactly-once",
        "--checkpoint-interval",
        "0.2",
    ]
    kill_repeatedly(["consume", "--once", "--no-live", *args], state_dir=state, kills=3)
    resumed = consume_json(*args)
    assert_same_stats(resumed, whole)

    # read_committed sees each rejected line exactly once, aborted attempts not at all.
    consumer = AIOKafkaConsumer(
        f"{topic}.dlq",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        seen: list[tuple[bytes, bytes]] = []
        while len(seen) < whole["rejected"]:
            batch = await consumer.getmany(timeout_ms=int(PATIENCE_S * 1000))
            assert batch, f"{len(seen)} of {whole['rejected']} dead letters arrived"
            for records in batch.values():
                for record in records:
                    headers = dict(record.headers)
                    seen.append(
                        (headers["iotmon.source.partition"], headers["iotmon.source.offset"])
                    )
        assert not await consumer.getmany(timeout_ms=1_000)
    finally:
        await consumer.stop()
    assert len(seen) == len(set(seen)) == whole["rejected"]
    await drop_topics(kafka_bootstrap, [f"{topic}.dlq"])
