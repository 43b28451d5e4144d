"""Checkpoints: make the partitions' state durable, then acknowledge the positions it
includes — and hold notifications until the checkpoint recording them is durable.

A checkpoint is taken between batches. Up to its first await it is one synchronous
snapshot: the partitions' states, the dead letters taken, the alerter's queued changes and
the outbox mark all describe the same readings. Then, with the state directory as the only
copy, the partition files are staged, the dead letters sent, the files and
``process.json`` made durable and the positions acknowledged; with a shared store (a
changelog, see :class:`~iotmon.engine.ports.Committer`) ``process.json`` is written first,
the commit side stores checkpoints and dead letters and acknowledges, and the state
directory only caches what it stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from iotmon.alerts import Alerter, Change
from iotmon.engine.clock import StreamClock
from iotmon.engine.partition import PartitionState
from iotmon.engine.ports import Checkpoint, Committer
from iotmon.notify.model import Notification, Notifier
from iotmon.notify.outbox import Outbox
from iotmon.state.deadletters import DeadLetters
from iotmon.state.documents import ProcessDocument
from iotmon.state.encoding import Fragments
from iotmon.state.statedir import StagedFile, StateDir

__all__ = ["Checkpointer", "CommitGate"]

log = logging.getLogger(__name__)

_MOST_DEVICES_REUSED: Final = 50_000
"""Devices whose encoded state a checkpoint keeps for the next one to reuse, at most. A
held notification gets a checkpoint at once, so an alert storm means a checkpoint every
few milliseconds, while few devices change between two of them; the copy costs up to a
kilobyte per device (a full window), too much beside a million devices' own kilobyte."""


class CommitGate:
    """The notifier, behind a gate: a notification goes out only once a checkpoint taken
    after it was queued is durable.

    Why: a partition's unannounced changes travel in its checkpoint. A digest that left
    before the checkpoint recording it as announced was durable, from a process that then
    died, would be announced a second time by the partition's next owner, who restores the
    changes as still queued. Held back, it waits for that checkpoint, and if the process
    dies first the digest is dropped on restart (``outbox_seq`` in ``process.json``) and
    the partition's owner announces its changes — once.

    ``process.json`` with the mark is written before the shared store, so the one remaining
    window is a crash between the two (milliseconds): the restarted instance then sends a
    digest whose changes the partition's owner announces again — a duplicate, never a loss.

    Only with a shared store (partitions can move); otherwise every notification is
    released at once.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        holding: bool,
        checkpoint: Callable[[], Awaitable[bool]],
    ) -> None:
        """``checkpoint``: take one now if nothing else will (False: one will be taken)."""
        self._notifier = notifier
        self._holding = holding
        self._checkpoint = checkpoint
        self._outbox: Outbox | None = None
        self._released = 0
        self._wakeup = asyncio.Event()

    def bind(self, outbox: Outbox, *, released: int | None) -> None:
        """``released``: the mark of the last durable checkpoint of an earlier run (None:
        release what the outbox holds from before). Holding, what that run queued after
        its mark is dropped: the owners of those partitions announce it again."""
        self._outbox = outbox
        if self._holding and released is not None:
            dropped = outbox.discard_after(released)
            if dropped:
                log.info(
                    "dropped %d notification(s) queued after the last durable checkpoint; the "
                    "owners of their partitions announce them again",
                    len(dropped),
                )
        held = max((entry.seq for entry in outbox.pending()), default=0)
        self._released = held if released is None else max(released, 0)

    def mark(self) -> int:
        """The newest notification queued so far: a checkpoint taken now covers it."""
        assert self._outbox is not None
        newest = max((entry.seq for entry in self._outbox.pending()), default=0)
        return max(self._released, newest)

    def release(self, mark: int) -> None:
        if mark > self._released:
            self._released = mark
            self._wakeup.set()

    @property
    def held(self) -> int:
        """Notifications waiting for a checkpoint."""
        if self._outbox is None or not self._holding:
            return 0
        return sum(1 for entry in self._outbox.pending() if entry.seq > self._released)

    async def __call__(self, notification: Notification) -> None:
        await self.hold(notification.digest.digest_id)
        await self._notifier(notification)

    async def hold(self, digest_id: str) -> None:
        """Return once the digest may go out (any channel: webhooks are held here too)."""
        if self._holding and self._outbox is not None:
            seq = next((e.seq for e in self._outbox.pending() if e.digest_id == digest_id), None)
            while seq is not None and seq > self._released:
                self._wakeup.clear()
                if not await self._checkpoint():
                    await self._wakeup.wait()


class Checkpointer:
    """Takes checkpoints of ``partitions`` (the engine's live map), one at a time."""

    def __init__(
        self,
        *,
        state_dir: StateDir,
        partitions: Mapping[str, PartitionState],
        alerter: Alerter,
        dead_letters: DeadLetters,
        committer: Committer,
        gate: CommitGate,
        clock: StreamClock,
    ) -> None:
        self.state_dir = state_dir
        self._partitions = partitions
        self._alerter = alerter
        self._dead_letters = dead_letters
        self._committer = committer
        self._gate = gate
        self._clock = clock
        self._lock = asyncio.Lock()
        self.last_at = time.monotonic()
        """Monotonic time the last checkpoint finished (or the checkpointer was made)."""
        self.last_seconds = 0.0
        self.count = 0

    @property
    def held(self) -> int:
        """Notifications waiting for a checkpoint: take one soon."""
        return self._gate.held

    async def checkpoint(self) -> None:
        """Make the current state durable, then acknowledge the positions it includes."""
        async with self._lock:
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        started = time.monotonic()
        gate, committer = self._gate, self._committer
        # From here to the first await: one consistent snapshot.
        dead = self._dead_letters.take()
        announce = self._queued_by_partition()
        checkpoint_id = uuid.uuid4().hex[:16]
        shared = committer.shared
        covered: list[PartitionState] = []
        written: list[tuple[PartitionState, Fragments]] = []
        staged: list[StagedFile] = []
        devices = sum(len(p.table.devices) for p in self._partitions.values())
        reuse_encoded = devices <= _MOST_DEVICES_REUSED
        for part in self._partitions.values():
            changes = announce.get(part.name, [])
            if not part.dirty and changes == part.announce:
                continue
            part.dlq_size = dead.sizes.get(part.name, part.dlq_size)
            part.announce = changes
            part.checkpoint_id = checkpoint_id
            doc = part.to_document(checkpoint_id, reuse_encoded=reuse_encoded)
            if shared:
                written.append((part, self.state_dir.encode_partition(doc)))
            else:
                # The state dir holds the only copy: encode straight into it, so a checkpoint
                # of a million devices does not hold their encoded state in memory.
                staged.append(self.state_dir.stage_partition(doc))
            covered.append(part)
            part.dirty = False
        mark = gate.mark()
        silences = self._alerter.silences
        process = ProcessDocument(
            alerter=self._alerter.to_state(devices=False),
            clock_us=self._clock.now_us,
            outbox_seq=mark,
            silences=[] if silences is None else [s.to_json() for s in silences.all()],
        )
        positions = {p.name: p.position for p in covered if p.position is not None}
        checkpoints = [Checkpoint(p.name, checkpoint_id, p.position, b) for p, b in written]

        async def commit_staged() -> None:
            await asyncio.to_thread(self._commit_staged, staged, process)

        async def write_cache() -> None:
            # The cache only ever holds what the shared store has.
            await asyncio.to_thread(self._write_cache, written)

        if not shared:
            await committer.commit(checkpoints, dead, positions, durable=commit_staged)
        else:
            # process.json (with the outbox mark) before the store: a crash in between can
            # only repeat a notification on restart, never lose one (see CommitGate).
            await asyncio.to_thread(self.state_dir.write_process, process)
            if written or dead.count:
                member = await committer.commit(checkpoints, dead, positions, durable=write_cache)
                if not member:
                    # Possibly no longer the owner of these partitions (a rebalance is under
                    # way): the notifications wait for the next checkpoint that gets through.
                    mark = 0
        gate.release(mark)
        self.last_at = time.monotonic()
        self.last_seconds = self.last_at - started
        self.count += 1

    def _queued_by_partition(self) -> dict[str, list[Change]]:
        """The alerter's queued changes, by the partition their device belongs to."""
        result: dict[str, list[Change]] = {}
        for change in self._alerter.queued_changes():
            for part in self._partitions.values():
                if change.device in part.table.devices:
                    result.setdefault(part.name, []).append(change)
                    break
        return result

    def _write_cache(self, written: list[tuple[PartitionState, Fragments]]) -> None:
        for part, payload in written:
            self.state_dir.cache_partition(part.name, payload)

    def _commit_staged(self, staged: list[StagedFile], process: ProcessDocument) -> None:
        for file in staged:
            file.commit()
        self.state_dir.write_process(process)
