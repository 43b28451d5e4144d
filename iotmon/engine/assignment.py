"""Which partitions this process owns, and moving their state in and out.

Each partition's state — statistics, alert states, unannounced alert changes, counters,
position — is one unit that follows the partition. On a rebalance the data path pauses
(:meth:`Assignment.wait_settled`); revoked partitions are checkpointed and released
(*parked*: kept as they are in case they come straight back, as they do on every
rebalance with aiokafka), assigned ones restored before any of their records is applied:
from memory when parked, from the commit side's shared store (a changelog), or from the
state directory when it holds the newest checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from iotmon.alerts import Alerter
from iotmon.engine.partition import PartitionState
from iotmon.engine.ports import Committer, Stored
from iotmon.sources.base import Position
from iotmon.state.deadletters import DeadLetters
from iotmon.state.documents import JsonObject, PartitionDocument
from iotmon.state.statedir import CheckpointError, StateDir, decode_partition
from iotmon.stats import StatsTable, WindowSpec

__all__ = ["ORIGINS", "Assignment"]

ORIGINS: Final = ("changelog", "cache", "memory", "new")
"""Where a partition's state can come from when it is assigned."""

log = logging.getLogger(__name__)


class Assignment:
    """Restores assigned partitions into ``partitions`` (the engine's live map) and takes
    revoked ones out of it."""

    def __init__(
        self,
        *,
        partitions: dict[str, PartitionState],
        state_dir: StateDir,
        committer: Committer,
        alerter: Alerter,
        dead_letters: DeadLetters,
        spec: WindowSpec,
        checkpoint: Callable[[], Awaitable[None]],
        on_restored: Callable[[PartitionState], None] = lambda part: None,
    ) -> None:
        self._partitions = partitions
        self.state_dir = state_dir
        self._committer = committer
        self._alerter = alerter
        self._dead_letters = dead_letters
        self._spec = spec
        self._checkpoint = checkpoint
        self._on_restored = on_restored
        # Cleared while a rebalance moves state in or out: the data path waits for it.
        self._settled = asyncio.Event()
        self._settled.set()
        self.blocked: set[str] = set()
        """Partitions taken away (or failing to restore): records still in flight for them
        are not applied."""
        # Revoked partitions' states, checkpointed: reused as they are if the same
        # partitions come straight back.
        self._parked: dict[str, tuple[PartitionState, JsonObject]] = {}
        self.failure: BaseException | None = None
        """Why a rebalance failed: the data path raises it."""
        self.restores = dict.fromkeys(ORIGINS, 0)
        """Partitions restored on assignment, by where their state came from."""
        self.last_restore_seconds = 0.0

    async def wait_settled(self) -> None:
        """Wait for a rebalance under way; raise what made one fail."""
        if not self._settled.is_set():
            await self._settled.wait()
        if self.failure is not None:
            raise self.failure

    def new_partition(self, name: str) -> PartitionState:
        part = PartitionState(
            name=name, table=StatsTable(self._spec), tracker=self._alerter.tracker(name)
        )
        self._partitions[name] = part
        return part

    async def on_assign(self, names: list[str]) -> dict[str, Position | None]:
        """Restore assigned partitions before any of their records is applied; returns the
        position each one's state includes (None: from the start)."""
        self._settled.clear()
        self.blocked.update(names)
        try:
            positions = await self._restore(names)
        except BaseException as exc:
            # Raised inside a rebalance listener this would only be logged, and the
            # partition consumed without its state: make the data path fail instead.
            self.failure = exc
            raise
        else:
            self.blocked.difference_update(names)
            return positions
        finally:
            if self._committer.shared:
                # Handed over for good: the cached copy would only ever be outdated, and
                # `iotmon status` would show it as this instance's.
                for name in self._parked:
                    await asyncio.to_thread(self.state_dir.remove_partition, name)
            self._parked.clear()
            self._settled.set()

    async def on_revoke(self, names: list[str]) -> None:
        """Checkpoint, then let revoked partitions go: their next owner continues from it."""
        self._settled.clear()
        try:
            durable = True
            try:
                await self._checkpoint()
            except Exception as exc:
                # The next owner restores the previous checkpoint and replays from there.
                log.error("checkpoint before handing over %s failed: %s", ", ".join(names), exc)
                self.failure = exc
                durable = False
            for name in names:
                part = self._partitions.pop(name, None)
                tracker_state = self._alerter.release(name)
                if part is None:
                    continue
                # Its next owner announces these, restored from the checkpoint.
                self._alerter.drop_queued(part.table.devices)
                self._committer.forget(name)
                if durable and tracker_state is not None:
                    self._parked[name] = (part, tracker_state)
            self._dead_letters.discard(names)
            self.blocked.update(names)
        finally:
            self._settled.set()

    async def _restore(self, names: list[str]) -> dict[str, Position | None]:
        started = time.monotonic()
        parked = {n: self._parked.pop(n) for n in names if n in self._parked}
        cached: dict[str, PartitionDocument | None] = {}
        for name in names:
            if name not in parked:
                cached[name] = await self._load_cached(name)
        found: Mapping[str, Stored] = {}
        if self._committer.shared:
            known = {n: part.checkpoint_id for n, (part, _) in parked.items()}
            known.update({n: None if d is None else d.checkpoint for n, d in cached.items()})
            try:
                found = await self._committer.latest(names, known=known)
            except (RuntimeError, ConnectionError) as exc:
                raise CheckpointError(f"cannot restore {', '.join(names)}: {exc}") from exc
        positions: dict[str, Position | None] = {}
        for name in names:
            t0 = time.monotonic()
            latest = found.get(name)
            doc = cached.get(name)
            if latest is not None and latest.payload is not None:
                remote = decode_partition(
                    name, latest.payload, origin=f"changelog checkpoint {latest.checkpoint}"
                )
                # Only a safety net: the cache is written after the store, never ahead.
                if doc is None or doc.offset <= remote.offset:
                    doc, origin = remote, "changelog"
                    # Cache it: the next restore here, if nothing moved on, downloads nothing.
                    await asyncio.to_thread(self.state_dir.cache_partition, name, latest.payload)
                else:
                    origin = "cache"
                part = self._build(doc)
            elif name in parked:
                origin = "memory"
                part = self._unpark(*parked[name])
            elif doc is not None:
                origin = "cache"
                part = self._build(doc)
            else:
                origin = "new"
                part = self.new_partition(name)
                # Dead letters of a run that crashed before its first checkpoint (or whose
                # checkpoint was deleted) are covered by no checkpoint: the replay from the
                # start writes them again.
                self._dead_letters.restore(name, 0)
            self._partitions[name] = part
            self.restores[origin] += 1
            if origin != "new":
                log.info(
                    "restored %s from %s: %d devices, %d readings, position %s (%.2f s)",
                    name,
                    origin,
                    len(part.table.devices),
                    part.read,
                    part.position,
                    time.monotonic() - t0,
                )
            self._on_restored(part)
            positions[name] = part.position
        self.last_restore_seconds = time.monotonic() - started
        if len(names) > 1 or self.last_restore_seconds >= 1.0:
            log.info("%d partition(s) ready in %.2f s", len(names), self.last_restore_seconds)
        return positions

    async def _load_cached(self, name: str) -> PartitionDocument | None:
        try:
            return await asyncio.to_thread(self.state_dir.load_partition, name)
        except CheckpointError as exc:
            if not self._committer.shared:
                raise
            # Only a cache (not fsynced): the shared store has the copy that counts.
            log.warning(
                "ignoring the cached checkpoint of %s (%s); restoring it from %s",
                name,
                exc,
                self._committer.store,
            )
            return None

    def _build(self, doc: PartitionDocument) -> PartitionState:
        name = doc.partition
        try:
            tracker = self._alerter.tracker(name, state=doc.alerts)
            part = PartitionState.from_document(doc, spec=self._spec, tracker=tracker)
        except (KeyError, TypeError, ValueError) as exc:
            self._alerter.release(name)
            raise CheckpointError(
                f"checkpoint of partition {name} ({self.state_dir.root} or the changelog) "
                f"cannot be restored: {exc}"
            ) from exc
        self._dead_letters.restore(name, part.dlq_size)
        self._alerter.requeue(part.announce)
        return part

    def _unpark(self, part: PartitionState, tracker_state: JsonObject) -> PartitionState:
        part.tracker = self._alerter.tracker(part.name, state=tracker_state)
        self._alerter.requeue(part.announce)
        return part
