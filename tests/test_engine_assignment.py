"""Restore and revoke on their own (iotmon.engine.assignment): where an assigned
partition's state comes from, what a revoke checkpoints and keeps, and that a failed
restore stops the data path. A fake commit side stands in for the changelog."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotmon.engine.assignment import Assignment
from iotmon.engine.partition import PartitionState
from iotmon.state.statedir import CheckpointError
from tests.engine_fakes import SPEC, FakeCommitter, Found, alerter, opened_state_dir, partition


class Rig:
    def __init__(self, root: Path, *, shared: bool) -> None:
        self.root = root
        self.state_dir = opened_state_dir(root)
        self.alerter = alerter(root)
        self.committer = FakeCommitter(shared=shared)
        self.partitions: dict[str, PartitionState] = {}
        self.checkpoints = 0
        self.discarded: list[list[str]] = []
        rig = self

        class DeadLetters:
            def __init__(self) -> None:
                self.restored: dict[str, int] = {}

            def put(self, *args: object) -> None:
                raise AssertionError("nothing is rejected here")

            async def flush(self) -> dict[str, int]:
                return {}

            def take(self) -> object:
                raise AssertionError("no checkpoint here")

            def discard(self, partitions: list[str]) -> None:
                rig.discarded.append(list(partitions))

            def restore(self, partition: str, size: int) -> None:
                self.restored[partition] = size

            async def close(self) -> None:
                pass

        self.dead_letters = DeadLetters()

        async def checkpoint() -> None:
            self.checkpoints += 1

        self.assignment = Assignment(
            partitions=self.partitions,
            state_dir=self.state_dir,
            committer=self.committer,
            alerter=self.alerter,
            dead_letters=self.dead_letters,  # type: ignore[arg-type]
            spec=SPEC,
            checkpoint=checkpoint,
        )

    def checkpoint_payload(self, name: str, *, readings: int, offset: int, cid: str) -> bytes:
        """A partition checkpoint as it is stored, made from a scratch alerter."""
        other = alerter(self.root / "elsewhere")
        doc = partition(name, other, readings=readings, offset=offset).to_document(cid)
        return b"".join(self.state_dir.encode_partition(doc))


async def test_a_partition_without_state_starts_new(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=False)
    positions = await rig.assignment.on_assign(["t:0"])
    assert positions == {"t:0": None}
    assert rig.assignment.restores["new"] == 1
    assert rig.dead_letters.restored == {"t:0": 0}, "uncovered dead letters are cut"
    assert rig.partitions["t:0"].read == 0


async def test_a_cached_checkpoint_is_restored_with_its_position(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=False)
    payload = rig.checkpoint_payload("t:0", readings=3, offset=9, cid="c1")
    rig.state_dir.cache_partition("t:0", payload)
    positions = await rig.assignment.on_assign(["t:0"])
    assert positions == {"t:0": {"offset": 9}}
    part = rig.partitions["t:0"]
    assert (part.read, len(part.table.devices), part.checkpoint_id) == (3, 3, "c1")
    assert rig.assignment.restores["cache"] == 1


async def test_a_revoked_partition_is_checkpointed_parked_and_comes_back_from_memory(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, shared=True)
    await rig.assignment.on_assign(["t:0", "t:1"])
    kept = rig.partitions["t:0"]
    kept.table.add("d", 20.0, 1)
    await rig.assignment.on_revoke(["t:0", "t:1"])
    assert rig.checkpoints == 1
    assert rig.partitions == {} and rig.assignment.blocked == {"t:0", "t:1"}
    assert rig.committer.forgotten == ["t:0", "t:1"] and rig.discarded == [["t:0", "t:1"]]
    await rig.assignment.on_assign(["t:0"])
    assert rig.partitions["t:0"] is kept, "the same state, not re-read"
    assert rig.assignment.restores["memory"] == 1
    assert rig.assignment.blocked == {"t:1"}, "records of a partition given away stay out"


async def test_with_a_shared_store_a_partition_handed_over_loses_its_cached_copy(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, shared=True)
    await rig.assignment.on_assign(["t:0"])
    rig.state_dir.cache_partition(
        "t:0", rig.checkpoint_payload("t:0", readings=1, offset=1, cid="c")
    )
    await rig.assignment.on_revoke(["t:0"])
    await rig.assignment.on_assign(["t:1"])
    assert not rig.state_dir.partition_path("t:0").exists()


async def test_the_shared_store_wins_unless_the_cache_is_ahead(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=True)
    rig.state_dir.cache_partition(
        "t:0", rig.checkpoint_payload("t:0", readings=2, offset=5, cid="old")
    )
    newer = rig.checkpoint_payload("t:0", readings=4, offset=8, cid="new")
    rig.committer.stored["t:0"] = Found("new", newer)
    assert await rig.assignment.on_assign(["t:0"]) == {"t:0": {"offset": 8}}
    assert rig.committer.asked == [{"t:0": "old"}], "the cached checkpoint's id is offered"
    assert rig.assignment.restores["changelog"] == 1
    assert rig.state_dir.partition_path("t:0").read_bytes() == newer, "cached for next time"

    again = Rig(tmp_path / "again", shared=True)
    again.state_dir.cache_partition(
        "t:0", again.checkpoint_payload("t:0", readings=6, offset=12, cid="ahead")
    )
    again.committer.stored["t:0"] = Found("new", newer)
    assert await again.assignment.on_assign(["t:0"]) == {"t:0": {"offset": 12}}
    assert again.assignment.restores["cache"] == 1


async def test_a_checkpoint_that_cannot_be_restored_stops_the_data_path(tmp_path: Path) -> None:
    rig = Rig(tmp_path, shared=False)
    payload = rig.checkpoint_payload("t:0", readings=1, offset=1, cid="c")
    rig.state_dir.cache_partition("t:0", payload.replace(b'"read":1', b'"read":2'))
    with pytest.raises(CheckpointError, match="checksum"):
        await rig.assignment.on_assign(["t:0"])
    assert rig.assignment.blocked == {"t:0"}
    with pytest.raises(CheckpointError, match="checksum"):
        await rig.assignment.wait_settled()


async def test_a_damaged_cache_is_ignored_when_the_shared_store_has_the_state(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, shared=True)
    rig.state_dir.cache_partition("t:0", b"{not json")
    stored = rig.checkpoint_payload("t:0", readings=2, offset=3, cid="c")
    rig.committer.stored["t:0"] = Found("c", stored)
    assert await rig.assignment.on_assign(["t:0"]) == {"t:0": {"offset": 3}}
    assert rig.assignment.failure is None
