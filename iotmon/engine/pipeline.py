"""The pipeline: source → parse → per-partition stats → alerts → notifications.

One asyncio task runs the data path. Applying a batch is synchronous, so at every await
point each partition's statistics, alert states, counters and source position agree with
each other, and a checkpoint taken there is consistent without locks. Notifications are
delivered on their own task (:class:`~iotmon.notify.Notifications`), so a slow or dead SMTP
server never stalls reading.

This module wires the parts and runs the loop; the jobs around it have modules of their
own: :mod:`~iotmon.engine.parts` builds the source, dead letters and commit side the
settings describe (:mod:`~iotmon.engine.ports` says what the engine needs of them),
:mod:`~iotmon.engine.clock` keeps the stream clock, :mod:`~iotmon.engine.assignment`
restores and releases partitions on a rebalance, and :mod:`~iotmon.engine.checkpointer`
takes checkpoints and holds notifications until the checkpoint recording them is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Callable
from typing import Any

from iotmon.alerts import Alerter
from iotmon.alerts.silences import Silences, SilenceWatch
from iotmon.engine.assignment import Assignment
from iotmon.engine.checkpointer import Checkpointer, CommitGate
from iotmon.engine.clock import StreamClock
from iotmon.engine.hotpath import BatchApplier
from iotmon.engine.latency import Histogram
from iotmon.engine.partition import PartitionState, report_of
from iotmon.engine.parts import as_source, open_parts, silence_watch
from iotmon.engine.ports import Parts
from iotmon.engine.split import SplitWatch
from iotmon.notify import Notifications, Notifier, build_notifier
from iotmon.parse import ReadingParser
from iotmon.report import Report
from iotmon.settings import Settings
from iotmon.sources.base import Batch, Source
from iotmon.state.deadletters import DeadLetters
from iotmon.state.statedir import StateDir

__all__ = ["Pipeline", "ProgressHook"]

log = logging.getLogger(__name__)

ProgressHook = Callable[["Pipeline"], None]


class Pipeline:
    """Runs iotmon's whole job. Use ``async with Pipeline(settings) as p: await p.run()``.

    ``source`` and ``notifier`` replace the ones the settings describe: any async iterable
    of raw lines (``bytes`` or ``str``) is a source, and any async callable taking a
    :class:`~iotmon.notify.Notification` is a notifier (raise
    :class:`~iotmon.notify.TransientDeliveryError` to be retried later).
    ``fast=False`` applies every reading through the exact path, without the fast lane
    (:mod:`iotmon.engine.hotpath`): the reference its tests compare it with.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        source: Source | AsyncIterable[bytes | str] | None = None,
        notifier: Notifier | None = None,
        dead_letters: DeadLetters | None = None,
        fast: bool = True,
    ) -> None:
        self.settings = settings or Settings()
        self._source_override = as_source(source, self.settings.source.max_line_bytes)
        self._notifier_override = notifier
        self._dead_letters_override = dead_letters
        self.state_dir = StateDir(self.settings.state_dir)
        self._applier = BatchApplier(
            ReadingParser(self.settings.parse),
            spec=self.settings.window,
            max_future_us=round(self.settings.max_future * 1_000_000),
            max_line_bytes=self.settings.source.max_line_bytes,
            window_metric=self.settings.alerts.metric == "window",
            fast=fast,
            decode_worker=self.settings.decode_worker,
        )
        self.partitions: dict[str, PartitionState] = {}
        """This process's partitions, by name (live: read them between batches)."""
        self._parts: Parts | None = None
        self._alerter: Alerter | None = None
        self._notifications: Notifications | None = None
        self.silences = Silences()
        """The silences in force (:mod:`iotmon.alerts.silences`), kept current while open."""
        self._silence_watch: SilenceWatch | None = None
        self._silences_loading: asyncio.Task[None] | None = None
        self.checkpointer: Checkpointer | None = None
        """Takes the checkpoints (None until :meth:`open`)."""
        self.assignment: Assignment | None = None
        """Restores and releases partitions (None until :meth:`open`)."""
        self.clock = StreamClock(lateness_us=self.settings.window.lateness_us)
        """Drives stale detection and digest timing (:mod:`iotmon.engine.clock`)."""
        self._stopping = asyncio.Event()
        self._opened = False
        self._running = False
        self._finished_input = False
        self._progress: list[ProgressHook] = []
        self._split = SplitWatch(self.partitions)
        self.batch_seconds = Histogram()
        """How long applying one batch took: the processing latency a reading sees."""
        self.started_at = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Pipeline:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._opened:
            return
        self.state_dir.open()
        try:
            await self._open_parts()
        except BaseException:
            await self._close_parts()
            raise
        self._opened = True

    async def _open_parts(self) -> None:
        settings = self.settings
        process = self.state_dir.load_process()
        watch = self._silence_watch = silence_watch(
            settings, self.silences, source=self._source_override
        )
        # Read the silences while the rest opens (joining a Kafka group takes a while); they
        # are in force before the first reading, which run() only takes after open().
        loading = self._silences_loading = asyncio.create_task(
            watch.start(), name="iotmon-silences-load"
        )
        parts = self._parts = await open_parts(
            settings,
            self.state_dir,
            source=self._source_override,
            dead_letters=self._dead_letters_override,
        )
        gate = CommitGate(
            self._notifier_override or build_notifier(settings.email),
            holding=parts.committer.shared,
            checkpoint=self._checkpoint_for_notifications,
        )
        notifications = self._notifications = Notifications(
            email=settings.email,
            notifier=gate,
            directory=settings.state_dir / "notifications",
            webhooks=settings.webhooks,
            hold=gate.hold,
        )
        alerter = self._alerter = Alerter(
            settings=settings.alerts,
            sink=notifications,
            state_dir=settings.state_dir,
            alerts_log=settings.alerts_log,
            silences=self.silences,
        )
        gate.bind(notifications.outbox, released=None if process is None else process.outbox_seq)
        if process is not None:
            alerter.restore(process.alerter)
            self.clock.now_us = process.clock_us
        self.checkpointer = Checkpointer(
            state_dir=self.state_dir,
            partitions=self.partitions,
            alerter=alerter,
            dead_letters=parts.dead_letters,
            committer=parts.committer,
            gate=gate,
            clock=self.clock,
        )
        assignment = self.assignment = Assignment(
            partitions=self.partitions,
            state_dir=self.state_dir,
            committer=parts.committer,
            alerter=alerter,
            dead_letters=parts.dead_letters,
            spec=settings.window,
            checkpoint=self.checkpoint,
            on_restored=self._split.restored,
        )
        await notifications.start()
        await parts.source.open(on_assign=assignment.on_assign, on_revoke=assignment.on_revoke)
        await loading

    def stop(self) -> None:
        """Ask ``run()`` to finish: stop reading, checkpoint, flush, return. Signal-safe."""
        self._stopping.set()

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        await self._close_parts()

    async def _close_parts(self) -> None:
        try:
            if self._parts is not None:
                await self._parts.close()
            if self._notifications is not None:
                await self._notifications.aclose()
            if self._alerter is not None:
                self._alerter.close()
            loading, self._silences_loading = self._silences_loading, None
            if loading is not None:
                loading.cancel()
                # Opening failed elsewhere first: that error is the one to report.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await loading
            if self._silence_watch is not None:
                await self._silence_watch.aclose()
        finally:
            self._applier.close()
            self.state_dir.close()

    def on_progress(self, hook: ProgressHook) -> None:
        """Call ``hook(pipeline)`` after batches, at most every 50 ms (live views, metrics)."""
        self._progress.append(hook)

    # -- running -----------------------------------------------------------------------

    async def run(self) -> Report:
        """Process until the source ends or :meth:`stop` is called; returns the final report."""
        await self.open()
        assert self._parts is not None and self.assignment is not None
        assert self.checkpointer is not None
        source, committer = self._parts.source, self._parts.committer
        assignment, checkpointer = self.assignment, self.checkpointer
        settings = self.settings
        batches = aiter(source.batches())
        ahead: Batch | object | None = _END
        self._running = True
        try:
            while not self._stopping.is_set():
                if ahead is _END:
                    batch = await _next(batches, self._stopping)
                else:
                    batch, ahead = ahead, _END
                if batch is _END:
                    self._finished_input = not self._stopping.is_set()
                    break
                if isinstance(batch, Batch) and getattr(source, "next_is_ready", False):
                    # Read one batch ahead (see Source), to have it decoded while this one
                    # is applied (iotmon.engine.decoder).
                    ahead = await _next(batches, self._stopping)
                    if isinstance(ahead, Batch):
                        self._applier.send_ahead(ahead)
                await assignment.wait_settled()
                now = time.monotonic()
                if isinstance(batch, Batch):
                    # A batch fetched before a rebalance is not applied: the rebalance sought
                    # every assigned partition to its state's position, so it comes again.
                    if batch.partition not in assignment.blocked and not committer.outdated():
                        self._apply_watching_devices(batch)
                    self.clock.busy()
                else:
                    self.clock.idle(now)
                # After every batch: a due digest waits for nothing but the stream clock,
                # and one held for its checkpoint gets that checkpoint now.
                self._tick()
                if checkpointer.held or now - checkpointer.last_at >= settings.checkpoint_interval:
                    await self.checkpoint()
        finally:
            self._running = False
            closer = getattr(batches, "aclose", None)
            if closer is not None:
                await closer()
        await assignment.wait_settled()
        self._tick()
        if self._finished_input:
            # Nothing more will come to group with: send what is waiting now, and checkpoint
            # after that so a restart does not regroup these changes differently.
            self.alerter.drain()
        await self.checkpoint()
        if not await self.flush(settings.flush_timeout, drain=False):
            log.warning(
                "some notifications are still undelivered after %.0f s; they stay queued in %s "
                "and go out on the next start",
                settings.flush_timeout,
                settings.state_dir,
            )
        return self.snapshot(copy=False)

    async def run_once(self) -> Report:
        """Process what is there now (a file to EOF, Kafka to the end offsets seen at start),
        flush alerts, write the final checkpoint and return the final report."""
        if self._source_override is None and not self.settings.source.once:
            raise ValueError("run_once() needs Settings(source=SourceSettings(once=True, ...))")
        return await self.run()

    # Seconds rather than asyncio.timeout(): --flush-timeout maps onto it one to one.
    async def flush(self, timeout: float = 30.0, *, drain: bool = True) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` s for every queued notification to be delivered (after
        queueing the changes still waiting for their group slot, unless ``drain=False``).
        True when nothing is left to wait for; what is undelivered stays queued on disk."""
        if drain:
            self.alerter.drain()
        assert self._notifications is not None, "open() first"
        return await self._notifications.flush(timeout)

    async def checkpoint(self) -> None:
        """Make the current state durable, then acknowledge the positions it includes."""
        assert self.checkpointer is not None, "open() first"
        await self.checkpointer.checkpoint()

    async def _checkpoint_for_notifications(self) -> bool:
        """A notification waits for a checkpoint: outside :meth:`run` (e.g. a final
        :meth:`flush`) nothing else takes one, so take it now."""
        if self._running or not self._opened:
            return False
        await self.checkpoint()
        return True

    def _apply_watching_devices(self, batch: Batch) -> None:
        part = self.partitions.get(batch.partition)
        before = 0 if part is None else len(part.table.devices)
        self.apply(batch)
        self._split.added(batch.partition, before)

    def apply(self, batch: Batch) -> None:
        """Parse a batch and fold it into its partition's state (synchronous: the hot path,
        :mod:`iotmon.engine.hotpath`)."""
        started = time.perf_counter()
        part = self.partitions.get(batch.partition)
        if part is None:
            assert self.assignment is not None
            part = self.assignment.new_partition(batch.partition)
        assert self._parts is not None
        self._applier.apply(part, batch, self._parts.dead_letters)
        self.batch_seconds.observe(time.perf_counter() - started)
        part.position = batch.end
        part.dirty = True
        self.clock.advance({p.name: p.head_us for p in self.partitions.values()}, self.lag)
        if self._progress:
            for hook in self._progress:
                hook(self)

    def _tick(self) -> None:
        if self._alerter is not None and self.clock.now_us:
            self._alerter.tick(self.clock.now_us)

    # -- views -------------------------------------------------------------------------

    @property
    def split_devices(self) -> int:
        """Devices seen in more than one partition of this instance (unkeyed input)."""
        return self._split.count

    @property
    def opened(self) -> bool:
        """Whether :meth:`open` has finished: views served from before it (``/metrics``)
        show zeros for the parts it builds until then."""
        return self._opened

    @property
    def alerter(self) -> Alerter:
        assert self._alerter is not None, "open() first"
        return self._alerter

    @property
    def notifications(self) -> Notifications:
        assert self._notifications is not None, "open() first"
        return self._notifications

    def lag(self) -> dict[str, int]:
        return self._parts.source.lag() if self._parts is not None else {}

    def counters(self) -> tuple[int, int, int]:
        """``(read, accepted, rejected)`` summed over partitions — cheap, for live views."""
        read = accepted = 0
        for part in self.partitions.values():
            read += part.read
            accepted += part.accepted
        return read, accepted, read - accepted

    def snapshot(self, *, copy: bool = True) -> Report:
        """The current per-device statistics, counters and alert history.

        ``copy=False`` makes ``devices`` a view of the statistics rather than a copy: cheap
        even at a million devices, and right where nothing is processed before it is read
        (a table rendered at once, the report :meth:`run` returns once it has finished).
        """
        return report_of(self.partitions.values(), self._alerter, copy=copy)


_END = object()


async def _next(batches: Any, stopping: asyncio.Event) -> Batch | object | None:
    """The next item of ``batches``, or ``_END`` when they end or ``stopping`` is set."""
    stop = asyncio.ensure_future(stopping.wait())
    step = asyncio.ensure_future(anext(batches, _END))
    done, _ = await asyncio.wait({stop, step}, return_when=asyncio.FIRST_COMPLETED)
    if step in done:
        stop.cancel()
        return step.result()
    step.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await step
    return _END
