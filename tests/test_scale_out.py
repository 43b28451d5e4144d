"""Several `iotmon consume` processes in one consumer group on a real broker: state follows
its partitions through the changelog topic, with no shared disk, and the result is exactly
that of one uninterrupted run — statistics and alerts alike.

Each scenario ends with one more `--once` member of the group: it restores every partition
from the changelog and reports the union of what the instances left there (and, being the
restarted killed instance, delivers what that one had committed but not yet sent).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import MakeTopic
from tests.helpers import (
    NOISY_FLEET,
    assert_same_stats,
    consume_json,
    drop_topics,
    fill_topic,
    group_args,
    iotmon,
    simulate_file,
)

READINGS = 1_000_000


# ------------------------------------------------------------------------------- helpers


@dataclass
class Instance:
    """One `iotmon consume` process of the group, logging to a file (a pipe could fill up
    and stall it)."""

    name: str
    state_dir: Path
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout: float = 180) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()

    def logged(self) -> str:
        return (self.state_dir.parent / f"{self.name}.log").read_text(errors="replace")


class Group:
    """Starts members of one consumer group and watches the group's committed offsets."""

    def __init__(self, bootstrap: str, topic: str, root: Path, *extra: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.root = root
        self.name = f"scale-{uuid.uuid4().hex[:8]}"
        self.extra = list(extra)
        self.instances: list[Instance] = []

    def args(self, state_dir: Path) -> list[str]:
        return [
            *group_args(self.bootstrap, self.topic, self.name, state_dir),
            "--no-live",
            "--checkpoint-interval",
            "0.2",
            *self.extra,
        ]

    def start(self, name: str, *options: str) -> Instance:
        state_dir = self.root / name
        state_dir.mkdir(parents=True, exist_ok=True)
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "consume", *self.args(state_dir), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        instance = Instance(name, state_dir, proc, log)
        self.instances.append(instance)
        return instance

    def report(self, state_dir: Path) -> dict[str, Any]:
        """One more `--once` member: restores every partition and reports the union."""
        args = [a for a in self.args(state_dir) if a != "--no-live"]
        return consume_json(*args)

    async def committed(self) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.name)
        finally:
            await admin.close()
        return sum(o.offset for tp, o in offsets.items() if tp.topic == self.topic and o.offset > 0)

    async def wait_committed(self, at_least: int, *, patience: float = 120) -> None:
        deadline = time.monotonic() + patience
        while (done := await self.committed()) < at_least:
            for instance in self.instances:
                if instance.proc.poll() not in (None, 0):
                    raise AssertionError(f"{instance.name} failed:\n{instance.logged()[-3000:]}")
            assert time.monotonic() < deadline, f"group at {done:,} of {at_least:,} offsets"
            await asyncio.sleep(0.05)

    async def wait_members(self, count: int, *, patience: float = 60) -> None:
        """Until the group is stable with ``count`` members (a rebalance went through)."""
        deadline = time.monotonic() + patience
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                (response,) = await admin.describe_consumer_groups([self.name])
            finally:
                await admin.close()
            _, _, state, _, _, members = response.groups[0]
            if state == "Stable" and len(members) == count:
                return
            assert time.monotonic() < deadline, f"group {state} with {len(members)} members"
            await asyncio.sleep(0.1)

    def stop_all(self) -> None:
        for instance in self.instances:
            if instance.alive():
                instance.kill()
            if not instance.log.closed:
                instance.log.close()


def announced(state_dirs: list[Path]) -> collections.Counter[str]:
    """How often each device was announced as newly firing, over every instance's sent
    notifications (the outbox keeps the digest of each one)."""
    counts: collections.Counter[str] = collections.Counter()
    for state_dir in state_dirs:
        for path in (state_dir / "notifications" / "sent").glob("*.json"):
            digest = orjson.loads(path.read_bytes())["digest"]
            counts.update(d["device"] for d in digest["firing"] if d["new"])
            counts.update(f"resolved:{d['device']}" for d in digest["resolved"])
    return counts


def fired(report: dict[str, Any]) -> collections.Counter[str]:
    """Firing (and resolved) transitions of a single uninterrupted run."""
    counts: collections.Counter[str] = collections.Counter()
    for alert in report["alerts"]:
        if alert["state"] == "firing":
            counts[alert["device"]] += 1
        elif alert["state"] == "resolved":
            counts[f"resolved:{alert['device']}"] += 1
    return counts


def positions(state_dir: Path) -> dict[str, int]:
    """Input offsets this instance's local checkpoints (its cache) hold."""
    found = {}
    for path in (state_dir / "partitions").glob("*.json"):
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            doc = orjson.loads(path.read_bytes())
            found[doc["partition"]] = (doc["position"] or {}).get("offset", 0)
    return found


async def end_offsets(bootstrap: str, topic: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {f"{tp.topic}:{tp.partition}": end for tp, end in ends.items()}


def half_way(now: dict[str, int], ends: dict[str, int]) -> bool:
    """Whether an instance's checkpoints cover half of the partitions they are for."""
    return bool(now) and 2 * sum(now.values()) >= sum(ends[name] for name in now)


async def wait_for(check: Callable[[], bool], what: str, *, patience: float = 60) -> None:
    deadline = time.monotonic() + patience
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


def undelivered(state_dirs: list[Path]) -> list[Path]:
    return [p for d in state_dirs for p in (d / "notifications" / "pending").glob("*.json")]


@dataclass(frozen=True)
class Dataset:
    topic: str
    reference: dict[str, Any]


@pytest.fixture(scope="module")
async def million(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Dataset]:
    """A 6-partition topic of 1,000,000 simulated readings and its single-run report."""
    topic = f"iotmon-scale-out-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    finally:
        await admin.close()
    fill_topic(kafka_bootstrap, topic, READINGS)
    ref = tmp_path_factory.mktemp("reference")
    reference = consume_json(*group_args(kafka_bootstrap, topic, f"reference-{topic}", ref))
    assert reference["readings"] == READINGS
    # The yardstick itself: one run announces every firing transition exactly once.
    assert announced([ref]) == fired(reference) and fired(reference)
    yield Dataset(topic, reference)
    await drop_topics(
        kafka_bootstrap, [topic, f"{topic}.dlq", f"iotmon-reference-{topic}-changelog"]
    )


@pytest.fixture
async def groups(kafka_bootstrap: str) -> AsyncIterator[list[Group]]:
    """Groups a test runs: their processes are killed and changelog topics deleted after."""
    groups: list[Group] = []
    yield groups
    for group in groups:
        group.stop_all()
    await drop_topics(kafka_bootstrap, [f"iotmon-{g.name}-changelog" for g in groups])


# --------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
async def test_three_instances_one_killed_half_way_another_started_later(
    kafka_bootstrap: str,
    million: Dataset,
    tmp_path: Path,
    groups: list[Group],
    guarantee: str,
) -> None:
    group = Group(kafka_bootstrap, million.topic, tmp_path, "--guarantee", guarantee)
    groups.append(group)
    a, b, c = (group.start(name, "--once") for name in ("a", "b", "c"))
    await group.wait_members(3)
    # Half-way through a's own partitions (by its checkpoints): a global mark can come after
    # a has finished its share.
    ends = await end_offsets(kafka_bootstrap, million.topic)
    await wait_for(lambda: half_way(positions(a.state_dir), ends), "a is half-way")
    assert a.alive(), f"a finished before half-way:\n{a.logged()[-2000:]}"
    a.kill()
    d = group.start("d", "--once")
    for instance in (b, c, d):
        assert instance.wait() == 0, instance.logged()[-3000:]
    # b, c and d took a's partitions over with nothing but the changelog.
    assert "from changelog" in b.logged() + c.logged() + d.logged()

    # a's machine comes back: it reports the union and sends what it had committed.
    final = group.report(a.state_dir)
    assert_same_stats(final, million.reference)
    dirs = [i.state_dir for i in (a, b, c, d)]
    assert undelivered(dirs) == []
    assert announced(dirs) == fired(million.reference)


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
async def test_scale_from_one_to_three_and_back_to_one_during_a_run(
    kafka_bootstrap: str,
    make_topic: MakeTopic,
    tmp_path: Path,
    groups: list[Group],
    guarantee: str,
) -> None:
    topic = await make_topic(partitions=6)
    readings = simulate_file(tmp_path / "readings.txt", "--count", "600000", *NOISY_FLEET)
    lines = readings.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    parts = [tmp_path / "first.txt", tmp_path / "second.txt"]
    parts[0].write_bytes(b"".join(lines[:half]))
    parts[1].write_bytes(b"".join(lines[half:]))

    def produce(path: Path) -> None:
        iotmon("produce", str(path), "--bootstrap-servers", kafka_bootstrap, "--topic", topic)

    group = Group(kafka_bootstrap, topic, tmp_path, "--guarantee", guarantee)
    groups.append(group)
    produce(parts[0])
    a = group.start("a")
    await group.wait_committed(half // 2)
    # 1 → 3 while a is half-way through the first half.
    b, c = group.start("b"), group.start("c")
    await group.wait_members(3)
    await group.wait_committed(half)
    produce(parts[1])
    await group.wait_committed(half + half // 3)
    # 3 → 1 while all three work on the second half.
    for instance in (b, c):
        instance.proc.send_signal(signal.SIGTERM)
    assert (b.wait(), c.wait()) == (0, 0), b.logged()[-2000:] + c.logged()[-2000:]
    await group.wait_members(1)
    await group.wait_committed(len(lines))
    assert a.stop() == 0, a.logged()[-3000:]
    assert "from changelog" in a.logged() and "from changelog" in b.logged() + c.logged()

    reference_group = f"reference-{group.name}"
    reference = consume_json(
        *group_args(kafka_bootstrap, topic, reference_group, tmp_path / "reference")
    )
    final = group.report(tmp_path / "v")
    assert_same_stats(final, reference)
    dirs = [i.state_dir for i in (a, b, c)] + [tmp_path / "v"]
    assert undelivered(dirs) == []
    assert announced(dirs) == fired(reference) and fired(reference)
    await drop_topics(kafka_bootstrap, [f"iotmon-{reference_group}-changelog", f"{topic}.dlq"])
