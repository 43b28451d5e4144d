"""The checkpointer and its commit gate on their own (iotmon.engine.checkpointer): what a
checkpoint writes, in which order, what it acknowledges, and when a held notification
goes out. A fake commit side stands in for Kafka."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import orjson
import pytest

from iotmon.alerts.model import Digest
from iotmon.engine.checkpointer import Checkpointer, CommitGate
from iotmon.engine.clock import StreamClock
from iotmon.engine.partition import PartitionState
from iotmon.notify.model import Notification
from iotmon.notify.outbox import Outbox
from iotmon.parse import Reason, Rejection
from tests.engine_fakes import (
    T0,
    FakeCommitter,
    alerter,
    dead_letters,
    opened_state_dir,
    partition,
)
from tests.helpers import PATIENCE_S


async def never(*_: object) -> bool:
    raise AssertionError("no checkpoint asked for")


async def taken_by_the_loop() -> bool:
    """The data path takes the next checkpoint: the gate just waits for it."""
    return False


def notification(name: str) -> Notification:
    digest_id = name.encode().hex().ljust(32, "0")
    message = EmailMessage()
    message["Subject"] = digest_id
    digest = Digest(digest_id=digest_id, kind="change", slot_us=T0, recipients=(), metric="window")
    return Notification(message=message, digest=digest)


class Rig:
    def __init__(self, root: Path, *, shared: bool, holding: bool | None = None) -> None:
        self.state_dir = opened_state_dir(root / "state")
        self.alerter = alerter(root / "state")
        self.dead_letters = dead_letters(root / "state")
        self.committer = FakeCommitter(shared=shared)
        self.outbox = Outbox(root / "state" / "notifications")
        self.sent: list[str] = []

        async def deliver(n: Notification) -> None:
            self.sent.append(bytes.fromhex(n.digest.digest_id.rstrip("0")).decode())

        self.gate = CommitGate(
            deliver, holding=shared if holding is None else holding, checkpoint=taken_by_the_loop
        )
        self.gate.bind(self.outbox, released=None)
        self.partitions: dict[str, PartitionState] = {}
        self.clock = StreamClock(lateness_us=0, now_us=T0)
        self.checkpointer = Checkpointer(
            state_dir=self.state_dir,
            partitions=self.partitions,
            alerter=self.alerter,
            dead_letters=self.dead_letters,
            committer=self.committer,
            gate=self.gate,
            clock=self.clock,
        )

    def add(self, name: str, **kwargs: int) -> PartitionState:
        part = self.partitions[name] = partition(name, self.alerter, **kwargs)
        return part


async def test_with_the_state_dir_as_the_only_copy_files_are_durable_before_the_ack(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, shared=False)
    part = rig.add("file:a", readings=3, offset=42)
    rig.dead_letters.put("file:a", 2, b"junk", Rejection(Reason.INVALID_JSON, "bad"), None)

    def files_in_place() -> None:
        # The fake commit side sees the positions before it acknowledges them: the
        # partition file must not be in place yet (the ack comes after durable()).
        assert not rig.state_dir.partition_path("file:a").exists()

    rig.committer.on_commit = files_in_place
    await rig.checkpointer.checkpoint()

    [(checkpoints, dead, positions)] = rig.committer.commits
    assert checkpoints == [] and dead == 0, "nothing goes to a shared store"
    assert positions == {"file:a": {"offset": 42}}
    doc = rig.state_dir.load_partition("file:a")
    assert doc is not None and doc.read == 3 and doc.position == {"offset": 42}
    assert doc.dlq_size == rig.dead_letters.path_for("file:a").stat().st_size > 0
    assert doc.checkpoint == part.checkpoint_id is not None
    process = rig.state_dir.load_process()
    assert process is not None and process.clock_us == T0
    assert not part.dirty


async def test_an_unchanged_partition_is_not_written_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=False)
    rig.add("file:a", readings=3, offset=42)
    await rig.checkpointer.checkpoint()
    path = rig.state_dir.partition_path("file:a")
    first = path.stat().st_mtime_ns
    await rig.checkpointer.checkpoint()
    assert path.stat().st_mtime_ns == first
    assert rig.committer.commits[-1][2] == {}, "no position to acknowledge again"
    assert rig.checkpointer.count == 2


async def test_a_shared_store_gets_the_checkpoint_after_process_json_and_before_the_cache(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, shared=True)
    rig.add("t:0", readings=2, offset=7)
    rig.outbox.put(notification("d1"))
    seen: list[bool] = []

    def order() -> None:
        process = rig.state_dir.load_process()
        seen.append(process is not None and process.outbox_seq == rig.gate.mark())
        seen.append(rig.state_dir.partition_path("t:0").exists())

    rig.committer.on_commit = order
    await rig.checkpointer.checkpoint()
    assert seen == [True, False], "process.json (with the mark) first, the cache after"
    [(checkpoints, _, positions)] = rig.committer.commits
    assert [(c.partition, c.position) for c in checkpoints] == [("t:0", {"offset": 7})]
    assert positions == {"t:0": {"offset": 7}}
    cached = rig.state_dir.partition_path("t:0").read_bytes()
    assert cached == b"".join(checkpoints[0].payload)
    assert rig.gate.held == 0, "the checkpoint covering d1 is durable"


async def test_a_refused_acknowledgement_keeps_notifications_held(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=True)
    rig.add("t:0", readings=2, offset=7)
    rig.outbox.put(notification("d1"))
    rig.committer.member = False
    await rig.checkpointer.checkpoint()
    assert rig.gate.held == 1 and rig.checkpointer.held == 1
    rig.committer.member = True
    rig.partitions["t:0"].dirty = True
    await rig.checkpointer.checkpoint()
    assert rig.gate.held == 0


async def test_queued_changes_travel_with_their_partition(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=False)
    a, b = rig.add("p:a", readings=1), rig.add("p:b")
    b.table.add("hot", 90.0, T0)
    b.tracker.observe("hot", b.table.devices["hot"])
    for tick in range(0, 700, 10):
        rig.alerter.tick(T0 + tick * 1_000_000)
        if rig.alerter.queued_changes():
            break
    [change] = rig.alerter.queued_changes()
    await rig.checkpointer.checkpoint()
    assert a.announce == [] and b.announce == [change]
    doc = rig.state_dir.load_partition("p:b")
    assert doc is not None and doc.announce == [change]
    raw = orjson.loads(rig.state_dir.partition_path("p:b").read_bytes())
    assert raw["announce"] == [change.to_list()], "stored compactly, as rows"


async def test_the_gate_holds_a_notification_until_a_checkpoint_covers_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=True)
    rig.outbox.put(notification("d1"))
    sending = asyncio.create_task(rig.gate(notification("d1")))
    await asyncio.sleep(0.05)
    assert not sending.done() and rig.sent == []
    rig.gate.release(rig.gate.mark())
    await asyncio.wait_for(sending, PATIENCE_S)
    assert rig.sent == ["d1"]


async def test_the_gate_asks_for_a_checkpoint_when_nothing_else_takes_one(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=True)
    rig.outbox.put(notification("d1"))
    asked: list[int] = []

    async def checkpoint_now() -> bool:
        asked.append(1)
        rig.gate.release(rig.gate.mark())
        return True

    rig.gate._checkpoint = checkpoint_now
    await asyncio.wait_for(rig.gate(notification("d1")), PATIENCE_S)
    assert asked == [1] and rig.sent == ["d1"]


async def test_without_a_shared_store_nothing_is_held(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=False)
    rig.outbox.put(notification("d1"))
    assert rig.gate.held == 0
    await asyncio.wait_for(rig.gate(notification("d1")), PATIENCE_S)
    assert rig.sent == ["d1"]


@pytest.mark.parametrize("holding", [True, False])
def test_binding_drops_what_a_crashed_run_queued_after_its_durable_mark(
    tmp_path: Path, holding: bool
) -> None:
    outbox = Outbox(tmp_path / "notifications")
    outbox.put(notification("before"))
    mark = max(e.seq for e in outbox.pending())
    outbox.put(notification("after"))
    gate = CommitGate(never, holding=holding, checkpoint=never)
    gate.bind(outbox, released=mark)
    kept = [e.digest_id for e in outbox.pending()]
    before, after = (notification(n).digest.digest_id for n in ("before", "after"))
    assert kept == ([before] if holding else [before, after])
