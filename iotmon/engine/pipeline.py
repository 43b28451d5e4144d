"""The pipeline: source → parse → per-partition stats → alerts → notifications.

One asyncio task runs the data path. Applying a batch is synchronous, so at every await
point each partition's statistics, alert states, counters and source position agree with
each other, and a checkpoint taken there is consistent without locks. Notifications are
delivered by the alerter's own task, so a slow or dead SMTP server never stalls reading.

Clocks: statistics use each device's own event time; the *stream clock* that drives stale
detection and digest timing is the latest event time seen minus the allowed lateness,
advanced with wall time while the stream is idle, so a replay at full speed and a live run
produce the same alerts, and pending notifications still go out when readings stop.

Several instances (Kafka input, one consumer group): each partition's state — statistics,
alert states, unannounced alert changes, counters, position — is one unit that follows the
partition. On a rebalance the data path pauses; revoked partitions are checkpointed and
released, assigned ones restored (from the group's changelog topic, or this instance's
local cache when it already holds the newest checkpoint) before any of their records is
applied. Notifications are held until the checkpoint that records them as announced is
durable (:class:`_CommitGate`), so a partition's next owner never announces them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from itertools import islice
from typing import Any

from iotmon.alerts import Alerter
from iotmon.engine.latency import Histogram
from iotmon.engine.partition import PartitionState
from iotmon.kafka.admin import MAX_REQUEST_BYTES, KafkaUnavailableError
from iotmon.kafka.changelog import ChangelogError, Checkpoint, Found, KafkaChangelog
from iotmon.kafka.deadletters import DeadLetter, KafkaDeadLetters
from iotmon.kafka.source import KafkaSource
from iotmon.notify import Notification, Notifier, build_notifier
from iotmon.notify.outbox import Outbox
from iotmon.parse import Reading, ReadingParser, Reason, Rejection, format_event_time
from iotmon.report import AlertRecord, DeviceSummaries, Report
from iotmon.settings import Settings
from iotmon.sources.base import Batch, OversizedLine, Position, Source
from iotmon.sources.files import FileSource, LineIterableSource, stdin_lines
from iotmon.state.deadletters import DeadLetters, FileDeadLetters
from iotmon.state.encoding import Fragments
from iotmon.state.statedir import CheckpointError, StagedFile, StateDir, decode_partition
from iotmon.stats import DeviceStats, StatsTable

__all__ = ["Pipeline", "ProgressHook"]

log = logging.getLogger(__name__)

ProgressHook = Callable[["Pipeline"], None]

# Devices found in two partitions named one by one in the log; after that only totals.
_SPLIT_WARNINGS = 10
_SPLIT_REMEMBERED = 100_000


class Pipeline:
    """Runs iotmon's whole job. Use ``async with Pipeline(settings) as p: await p.run()``.

    ``source`` and ``notifier`` replace the ones the settings describe: any async iterable
    of raw lines (``bytes`` or ``str``) is a source, and any async callable taking a
    :class:`~iotmon.notify.Notification` is a notifier (raise
    :class:`~iotmon.notify.TransientDeliveryError` to be retried later).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        source: Source | AsyncIterable[bytes | str] | None = None,
        notifier: Notifier | None = None,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._source_override = _as_source(source, self.settings.source.max_line_bytes)
        self._notifier_override = notifier
        self._dead_letters_override = dead_letters
        self.state_dir = StateDir(self.settings.state_dir)
        self._parser = ReadingParser(self.settings.parse)
        self._max_future_us = round(self.settings.max_future * 1_000_000)
        self._partitions: dict[str, PartitionState] = {}
        self._source: Source | None = None
        self._dead_letters: DeadLetters | None = None
        self._alerter: Alerter | None = None
        self._changelog: KafkaChangelog | None = None
        self._gate: _CommitGate | None = None
        self._stopping = asyncio.Event()
        self._opened = False
        self._last_checkpoint = time.monotonic()
        self._checkpoint_seconds: float = 0.0
        self._checkpoints = 0
        self._checkpoint_lock = asyncio.Lock()
        # Cleared while a rebalance moves state in or out: the data path waits for it.
        self._settled = asyncio.Event()
        self._settled.set()
        # Partitions taken away (or failing to restore): records still in flight for them
        # are not applied.
        self._blocked: set[str] = set()
        # Revoked partitions' states, checkpointed: reused as they are if the same
        # partitions come straight back (aiokafka revokes everything on every rebalance).
        self._parked: dict[str, tuple[PartitionState, dict[str, Any]]] = {}
        self._failure: BaseException | None = None
        self._running = False
        self._clock_us = 0
        self._idle_since: float | None = None
        self._finished_input = False
        self._progress: list[ProgressHook] = []
        self._split: set[str] = set()
        self.split_devices = 0
        """Devices seen in more than one partition of this instance (unkeyed input)."""
        self.restores: dict[str, int] = {"changelog": 0, "cache": 0, "memory": 0, "new": 0}
        """Partitions restored on assignment, by where their state came from."""
        self.last_restore_seconds = 0.0
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
        self._source = self._source_override or self._build_source()
        shared = isinstance(self._source, KafkaSource) and self._source.settings.changelog
        process = self.state_dir.load_process()
        mark = None if process is None else process.get("outbox_seq")
        self._gate = _CommitGate(
            self._notifier_override or build_notifier(settings.email),
            holding=shared,
            checkpoint=self._checkpoint_for_notifications,
        )
        self._alerter = Alerter(
            settings=settings.alerts,
            email=settings.email,
            notifier=self._gate,
            state_dir=settings.state_dir,
            alerts_log=settings.alerts_log,
        )
        if shared and mark is not None:
            dropped = self._alerter.outbox.discard_after(int(mark))
            if dropped:
                log.info(
                    "dropped %d notification(s) queued after the last durable checkpoint; the "
                    "owners of their partitions announce them again",
                    len(dropped),
                )
        self._gate.bind(self._alerter.outbox, released=None if mark is None else int(mark))
        if process is not None:
            self._alerter.restore(process.get("alerter", {}))
            self._clock_us = int(process.get("clock_us", 0))
        await self._alerter.start()
        if shared:
            self._changelog = await self._build_changelog()
        self._dead_letters = self._dead_letters_override or await self._build_dead_letters()
        await self._source.open(on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _build_source(self) -> Source:
        source = self.settings.source
        limit = source.max_line_bytes
        if source.input is None:
            return KafkaSource(source.kafka, once=source.once, max_line_bytes=limit)
        if source.input == "-":
            return LineIterableSource(stdin_lines(limit), name="stdin", max_line_bytes=limit)
        return FileSource(source.input_path, follow=source.follow, max_line_bytes=limit)

    async def _build_changelog(self) -> KafkaChangelog:
        from aiokafka.errors import KafkaError

        assert isinstance(self._source, KafkaSource)
        kafka = self._source.settings
        instance = kafka.instance_id or self.state_dir.instance_id()
        exactly_once = self.settings.guarantee == "exactly-once"
        changelog = KafkaChangelog(
            bootstrap_servers=kafka.bootstrap_servers,
            topic=kafka.changelog_topic_name,
            group=kafka.group,
            transactional_id=f"iotmon-{kafka.group}-{instance}" if exactly_once else None,
            client_id=f"iotmon-{instance}",
        )
        try:
            await changelog.open(input_topics=kafka.topics)
        except KafkaUnavailableError as exc:
            raise ConnectionError(str(exc)) from exc
        except (KafkaError, ChangelogError) as exc:
            raise ConnectionError(
                f"cannot use the changelog topic {changelog.topic} on {kafka.bootstrap_servers} "
                f"({exc!r}) — check the broker, or pass --no-changelog to keep state only in "
                "--state-dir (one instance per group then)"
            ) from exc
        return changelog

    async def _build_dead_letters(self) -> DeadLetters:
        if not isinstance(self._source, KafkaSource):
            return FileDeadLetters(self.settings.state_dir)
        if self._changelog is not None:
            # One producer for both: under exactly-once the dead letters must be part of the
            # checkpoint's transaction.
            return KafkaDeadLetters(
                self._changelog.producer,
                bootstrap_servers=self._source.settings.bootstrap_servers,
                transactional=self._changelog.exactly_once,
            )
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        bootstrap = self._source.settings.bootstrap_servers
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=20, max_request_size=MAX_REQUEST_BYTES
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise ConnectionError(
                f"cannot reach Kafka at {bootstrap} for the dead-letter topic ({exc}) — start a "
                "broker (`make kafka-up`) or pass --bootstrap-servers HOST:PORT"
            ) from exc
        return _OwningKafkaDeadLetters(producer, bootstrap_servers=bootstrap)

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
            if self._source is not None:
                await self._source.close()
            if self._dead_letters is not None:
                await self._dead_letters.close()
            if self._changelog is not None:
                await self._changelog.close()
            if self._alerter is not None:
                await self._alerter.aclose()
        finally:
            self.state_dir.close()

    def on_progress(self, hook: ProgressHook) -> None:
        """Call ``hook(pipeline)`` after batches, at most every 50 ms (live views, metrics)."""
        self._progress.append(hook)

    # -- running -----------------------------------------------------------------------

    async def run(self) -> Report:
        """Process until the source ends or :meth:`stop` is called; returns the final report."""
        await self.open()
        assert self._source is not None
        settings = self.settings
        batches = aiter(self._source.batches())
        self._running = True
        try:
            while not self._stopping.is_set():
                batch = await self._next(batches)
                if batch is _END:
                    self._finished_input = not self._stopping.is_set()
                    break
                await self._wait_settled()
                now = time.monotonic()
                if isinstance(batch, Batch):
                    # A batch fetched before a rebalance is not applied: the rebalance sought
                    # every assigned partition to its state's position, so it comes again.
                    if batch.partition not in self._blocked and not self._outdated():
                        self._apply_watching_devices(batch)
                    self._idle_since = None
                else:
                    self._advance_idle_clock(now)
                # After every batch: a due digest waits for nothing but the stream clock,
                # and one held for its checkpoint gets that checkpoint now.
                self._tick()
                held = self._gate is not None and self._gate.held
                if held or now - self._last_checkpoint >= settings.checkpoint_interval:
                    await self.checkpoint()
        finally:
            self._running = False
            closer = getattr(batches, "aclose", None)
            if closer is not None:
                await closer()
        await self._wait_settled()
        assert self._alerter is not None
        self._tick()
        if self._finished_input:
            # Nothing more will come to group with: send what is waiting now, and checkpoint
            # after that so a restart does not regroup these changes differently.
            self._alerter.drain()
        await self.checkpoint()
        delivered = await self._alerter.flush(timeout=settings.flush_timeout, drain=False)
        if not delivered:
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

    async def _wait_settled(self) -> None:
        if not self._settled.is_set():
            await self._settled.wait()
        if self._failure is not None:
            raise self._failure

    def _outdated(self) -> bool:
        return isinstance(self._source, KafkaSource) and self._source.outdated()

    async def _next(self, batches: Any) -> Batch | object | None:
        stop = asyncio.ensure_future(self._stopping.wait())
        step = asyncio.ensure_future(anext(batches, _END))
        done, _ = await asyncio.wait({stop, step}, return_when=asyncio.FIRST_COMPLETED)
        if step in done:
            stop.cancel()
            return step.result()
        step.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await step
        return _END

    def _apply_watching_devices(self, batch: Batch) -> None:
        part = self._partitions.get(batch.partition)
        before = 0 if part is None else len(part.table.devices)
        self.apply(batch)
        if len(self._partitions) > 1:
            devices = self._partitions[batch.partition].table.devices
            if len(devices) > before:
                # New devices are the last ones in insertion order: only they are checked.
                self._check_split(batch.partition, islice(reversed(devices), len(devices) - before))

    def apply(self, batch: Batch) -> None:
        """Parse a batch and fold it into its partition's state (synchronous: the hot path)."""
        started = time.perf_counter()
        part = self._partitions.get(batch.partition)
        if part is None:
            part = self._new_partition(batch.partition)
        parse = self._parser.parse if not batch.oversized else self._parse_capped
        table = part.table
        devices = table.devices
        spec = table.spec
        observe = part.tracker.observe
        head = part.head_us
        # Event times past `limit` are checked against --max-future (iotmon.engine.horizon); the
        # limit is only brought up to date there, so a reading in bounds costs one compare.
        horizon = part.horizon
        now_us = time.time_ns() // 1000
        reference = horizon.reference(head, now_us)
        limit = reference + self._max_future_us if head else 0
        accepted = late = 0
        # StatsTable.add, inlined: this loop runs once per reading.
        for index, line in enumerate(batch.lines):
            reading = parse(line)
            if type(reading) is tuple:
                key, value, event_us = reading
                if event_us > head:
                    if event_us > limit:
                        limit = horizon.limit(
                            event_us,
                            head_us=head,
                            reference_us=reference,
                            now_us=now_us,
                            ahead_us=self._max_future_us,
                        )
                        if event_us > limit:
                            self._reject(part, batch, index, line, self._future(event_us, now_us))
                            continue
                    head = event_us
                stats = devices.get(key)
                if stats is None:
                    stats = devices[key] = DeviceStats(spec)
                if not stats.add(value, event_us):
                    late += 1
                observe(key, stats)
                accepted += 1
            else:
                assert isinstance(reading, Rejection)
                self._reject(part, batch, index, line, reading)
        table.late += late
        self.batch_seconds.observe(time.perf_counter() - started)
        part.read += len(batch.lines)
        part.accepted += accepted
        if head != part.head_us:
            part.head_us = head
            horizon.head_wall_us = now_us
        part.position = batch.end
        part.dirty = True
        self._advance_clock()
        if self._progress:
            for hook in self._progress:
                hook(self)

    def _parse_capped(self, line: bytes) -> Reading | Rejection:
        """``parse`` for a batch with lines too long to be readings (see ``OversizedLine``)."""
        if type(line) is OversizedLine:
            return Rejection(
                Reason.TOO_LONG,
                f"a line of {line.length} bytes, over --max-line-bytes "
                f"{self.settings.source.max_line_bytes}; kept here: its first {len(line)} bytes",
            )
        return self._parser.parse(line)

    def _future(self, event_us: int, now_us: int) -> Rejection:
        field = self.settings.parse.time_field
        ahead = self.settings.max_future
        if event_us > now_us + self._max_future_us:
            than = f"wall time ({format_event_time(now_us)})"
        else:
            than = "the latest readings of its partition"
        return Rejection(
            Reason.FUTURE_TIME,
            f"{field}={format_event_time(event_us)} is more than --max-future {ahead:g} s "
            f"ahead of {than}",
        )

    def _reject(
        self, part: PartitionState, batch: Batch, index: int, line: bytes, rejection: Rejection
    ) -> None:
        part.rejected[rejection.reason.value] += 1
        key = batch.key_of(index) if batch.key_of is not None else None
        assert self._dead_letters is not None
        self._dead_letters.put(part.name, batch.positions[index], line, rejection, key)

    def _advance_clock(self) -> None:
        heads = {p.name: p.head_us for p in self._partitions.values() if p.head_us}
        if not heads:
            return
        if len(heads) == 1:
            head = next(iter(heads.values()))
        else:
            # The slowest partition with a backlog sets the pace: one catching up after a
            # restart must not see its devices judged by a clock that another partition has
            # pushed ahead. A caught-up partition holds nothing back, so it does not hold the
            # clock back either (else one quiet partition would stall every alert).
            assert self._source is not None
            lag = self._source.lag()
            behind = [h for name, h in heads.items() if lag.get(name, 1) > 0]
            head = min(behind) if behind else max(heads.values())
        watermark = head - self.settings.window.lateness_us
        if watermark > self._clock_us:
            self._clock_us = watermark

    def _advance_idle_clock(self, now: float) -> None:
        if self._idle_since is None:
            self._idle_since = now
            return
        elapsed_us = int((now - self._idle_since) * 1_000_000)
        self._idle_since = now
        if self._clock_us:
            self._clock_us += elapsed_us

    def _tick(self) -> None:
        if self._alerter is not None and self._clock_us:
            self._alerter.tick(self._clock_us)

    # -- one device, one partition ------------------------------------------------------

    def _check_split(self, partition: str, keys: Iterable[str]) -> None:
        """Warn about devices that are also in another partition of this instance: input
        not keyed by device, so each partition (and instance) sees only part of a device."""
        others = [
            (p.name, p.table.devices) for p in self._partitions.values() if p.name != partition
        ]
        for key in keys:
            if key in self._split:
                continue
            other = next((name for name, devices in others if key in devices), None)
            if other is None:
                continue
            if len(self._split) < _SPLIT_REMEMBERED:
                self._split.add(key)
            self.split_devices += 1
            count = self.split_devices
            if count <= _SPLIT_WARNINGS:
                log.warning(
                    "device %s is in partitions %s and %s: the input is not keyed by device, "
                    "so its readings are split and each part is averaged separately (the final "
                    "report merges them, alerts do not) — re-key the topic with `iotmon "
                    "repartition --from-topic A --to-topic B`",
                    key,
                    other,
                    partition,
                )
            elif count & (count - 1) == 0 or count % 10_000 == 0:
                log.warning("%d devices seen in more than one partition so far", count)

    # -- partitions and checkpoints ---------------------------------------------------

    def _new_partition(self, name: str) -> PartitionState:
        assert self._alerter is not None
        part = PartitionState(
            name=name,
            table=StatsTable(self.settings.window),
            tracker=self._alerter.tracker(name),
        )
        self._partitions[name] = part
        return part

    async def _on_assign(self, names: list[str]) -> dict[str, Position | None]:
        """Restore assigned partitions before any of their records is applied."""
        self._settled.clear()
        self._blocked.update(names)
        try:
            positions = await self._restore(names)
        except BaseException as exc:
            # Raised inside Kafka's rebalance listener this would only be logged, and the
            # partition consumed without its state: make run() fail instead.
            self._failure = exc
            raise
        else:
            self._blocked.difference_update(names)
            return positions
        finally:
            if self._changelog is not None:
                # Handed over for good: the cached copy would only ever be outdated, and
                # `iotmon status` would show it as this instance's.
                for name in self._parked:
                    await asyncio.to_thread(self.state_dir.remove_partition, name)
            self._parked.clear()
            self._settled.set()

    async def _restore(self, names: list[str]) -> dict[str, Position | None]:
        started = time.monotonic()
        parked = {n: self._parked.pop(n) for n in names if n in self._parked}
        cached: dict[str, dict[str, Any] | None] = {}
        for name in names:
            if name not in parked:
                cached[name] = await self._load_cached(name)
        found: dict[str, Found] = {}
        if self._changelog is not None:
            known = {n: part.checkpoint_id for n, (part, _) in parked.items()}
            known.update({n: _checkpoint_of(doc) for n, doc in cached.items()})
            try:
                found = await self._changelog.latest(names, known=known)
            except (ChangelogError, ConnectionError) as exc:
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
                # Only a safety net: the cache is written after the changelog, never ahead.
                if doc is None or _offset_of(doc) <= _offset_of(remote):
                    doc, origin = remote, "changelog"
                    # Cache it: the next restore here, if nothing moved on, downloads nothing.
                    await asyncio.to_thread(self.state_dir.cache_partition, name, latest.payload)
                else:
                    origin = "cache"
                part = self._build(name, doc)
            elif name in parked:
                origin = "memory"
                part = self._unpark(*parked[name])
            elif doc is not None:
                origin = "cache"
                part = self._build(name, doc)
            else:
                origin = "new"
                part = self._new_partition(name)
                # Dead letters of a run that crashed before its first checkpoint (or whose
                # checkpoint was deleted) are covered by no checkpoint: the replay from the
                # start writes them again.
                assert self._dead_letters is not None
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
            if len(self._partitions) > 1:
                self._check_split(name, part.table.devices)
            positions[name] = part.position
        self.last_restore_seconds = time.monotonic() - started
        if len(names) > 1 or self.last_restore_seconds >= 1.0:
            log.info("%d partition(s) ready in %.2f s", len(names), self.last_restore_seconds)
        return positions

    async def _load_cached(self, name: str) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(self.state_dir.load_partition, name)
        except CheckpointError as exc:
            if self._changelog is None:
                raise
            # Only a cache (not fsynced): the changelog has the copy that counts.
            log.warning(
                "ignoring the cached checkpoint of %s (%s); restoring it from %s",
                name,
                exc,
                self._changelog.topic,
            )
            return None

    def _build(self, name: str, doc: dict[str, Any]) -> PartitionState:
        assert self._alerter is not None and self._dead_letters is not None
        try:
            tracker = self._alerter.tracker(name, state=doc["alerts"])
            part = PartitionState.from_state(name, doc, spec=self.settings.window, tracker=tracker)
        except (KeyError, TypeError, ValueError) as exc:
            self._alerter.release(name)
            raise CheckpointError(
                f"checkpoint of partition {name} ({self.state_dir.root} or the changelog) "
                f"cannot be restored: {exc}"
            ) from exc
        self._dead_letters.restore(name, part.dlq_size)
        self._alerter.requeue(part.announce)
        return part

    def _unpark(self, part: PartitionState, tracker_state: dict[str, Any]) -> PartitionState:
        assert self._alerter is not None
        part.tracker = self._alerter.tracker(part.name, state=tracker_state)
        self._alerter.requeue(part.announce)
        return part

    async def _on_revoke(self, names: list[str]) -> None:
        """Checkpoint, then let revoked partitions go: their next owner continues from it."""
        assert self._alerter is not None
        self._settled.clear()
        try:
            durable = True
            try:
                await self.checkpoint()
            except Exception as exc:
                # The next owner restores the previous checkpoint and replays from there.
                log.error("checkpoint before handing over %s failed: %s", ", ".join(names), exc)
                self._failure = exc
                durable = False
            for name in names:
                part = self._partitions.pop(name, None)
                tracker_state = self._alerter.release(name)
                if part is None:
                    continue
                # Its next owner announces these, restored from the checkpoint.
                self._alerter.drop_queued(part.table.devices)
                if self._changelog is not None:
                    self._changelog.forget(name)
                if durable and tracker_state is not None:
                    self._parked[name] = (part, tracker_state)
            if isinstance(self._dead_letters, KafkaDeadLetters):
                self._dead_letters.discard(names)
            self._blocked.update(names)
        finally:
            self._settled.set()

    async def checkpoint(self) -> None:
        """Make the current state durable, then acknowledge the positions it includes."""
        async with self._checkpoint_lock:
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        started = time.monotonic()
        dead_letters, source, alerter, gate = (
            self._dead_letters,
            self._source,
            self._alerter,
            self._gate,
        )
        assert dead_letters is not None and source is not None
        assert alerter is not None and gate is not None
        kafka_dead_letters = dead_letters if isinstance(dead_letters, KafkaDeadLetters) else None
        sizes = {} if kafka_dead_letters is not None else await dead_letters.flush()
        # From here to the first await: one consistent snapshot.
        dead: list[DeadLetter] = [] if kafka_dead_letters is None else kafka_dead_letters.take()
        announce = self._queued_by_partition()
        checkpoint_id = uuid.uuid4().hex[:16]
        changelog = self._changelog
        covered: list[PartitionState] = []
        written: list[tuple[PartitionState, Fragments]] = []
        staged: list[StagedFile] = []
        for part in self._partitions.values():
            rows = announce.get(part.name, [])
            if not part.dirty and rows == part.announce:
                continue
            part.dlq_size = sizes.get(part.name, part.dlq_size)
            part.announce = rows
            part.checkpoint_id = checkpoint_id
            body = {**part.to_document(), "checkpoint": checkpoint_id}
            if changelog is None:
                # The state dir holds the only copy: encode straight into it, so a checkpoint
                # of a million devices does not hold their encoded state in memory.
                staged.append(self.state_dir.stage_partition(part.name, body))
            else:
                written.append((part, self.state_dir.encode_partition(part.name, body)))
            covered.append(part)
            part.dirty = False
        mark = gate.mark()
        process = {
            "alerter": alerter.to_state(devices=False),
            "clock_us": self._clock_us,
            "outbox_seq": mark,
        }
        positions = {p.name: p.position for p in covered if p.position is not None}
        if changelog is None:
            if kafka_dead_letters is not None:
                await kafka_dead_letters.send(dead)
            await asyncio.to_thread(self._commit_staged, staged, process)
            await source.commit(positions)
        else:
            # process.json (with the outbox mark) before Kafka: a crash in between can only
            # repeat a notification on restart, never lose one (see _CommitGate).
            await asyncio.to_thread(self.state_dir.write_process, process)
            if written or dead:
                member = await self._commit_changelog(
                    changelog, checkpoint_id, written, dead, positions, kafka_dead_letters
                )
                if not member:
                    # Possibly no longer the owner of these partitions (a rebalance is under
                    # way): the notifications wait for the next checkpoint that gets through.
                    mark = 0
        gate.release(mark)
        self._last_checkpoint = time.monotonic()
        self._checkpoint_seconds = self._last_checkpoint - started
        self._checkpoints += 1

    async def _commit_changelog(
        self,
        changelog: KafkaChangelog,
        checkpoint_id: str,
        written: list[tuple[PartitionState, Fragments]],
        dead: list[DeadLetter],
        positions: dict[str, Position],
        dead_letters: KafkaDeadLetters | None,
    ) -> bool:
        """Changelog records, dead letters and offsets: one transaction under exactly-once;
        else dead letters and changelog acknowledged first, offsets committed after. False
        when the offset commit failed (at-least-once), as after losing group membership."""
        entries = [Checkpoint(p.name, checkpoint_id, p.position, b) for p, b in written]
        if changelog.exactly_once:
            async with changelog.transaction():
                if dead_letters is not None:
                    await dead_letters.send(dead)
                refs = await changelog.write(entries)
                await changelog.send_offsets(
                    {
                        name: (int(position["offset"]), refs[name].metadata())
                        for name, position in positions.items()
                    }
                )
            # The cache only ever holds what the changelog has committed.
            await asyncio.to_thread(self._write_cache, written)
            return True
        if dead_letters is not None:
            await dead_letters.send(dead)
        refs = await changelog.write(entries)
        await asyncio.to_thread(self._write_cache, written)
        assert isinstance(self._source, KafkaSource)
        await self._source.commit(
            positions, metadata={name: ref.metadata() for name, ref in refs.items()}
        )
        return self._source.committed

    async def _checkpoint_for_notifications(self) -> bool:
        """A notification waits for a checkpoint: outside :meth:`run` (e.g. a final
        ``alerter.flush(drain=True)``) nothing else takes one, so take it now."""
        if self._running or not self._opened:
            return False
        await self.checkpoint()
        return True

    def _queued_by_partition(self) -> dict[str, list[list[Any]]]:
        """The alerter's queued changes, by the partition their device belongs to."""
        assert self._alerter is not None
        rows = self._alerter.queued_changes()
        result: dict[str, list[list[Any]]] = {}
        for row in rows:
            for part in self._partitions.values():
                if row[0] in part.table.devices:
                    result.setdefault(part.name, []).append(row)
                    break
        return result

    def _write_cache(self, written: list[tuple[PartitionState, Fragments]]) -> None:
        for part, payload in written:
            self.state_dir.cache_partition(part.name, payload)

    def _commit_staged(self, staged: list[StagedFile], process: dict[str, Any]) -> None:
        for file in staged:
            file.commit()
        self.state_dir.write_process(process)

    # -- views -------------------------------------------------------------------------

    @property
    def clock_us(self) -> int:
        return self._clock_us

    @property
    def last_checkpoint_seconds(self) -> float:
        return self._checkpoint_seconds

    @property
    def last_checkpoint_age(self) -> float:
        return time.monotonic() - self._last_checkpoint

    @property
    def partitions(self) -> dict[str, PartitionState]:
        return self._partitions

    @property
    def opened(self) -> bool:
        """Whether :meth:`open` has finished: views served from before it (``/metrics``)
        show zeros for the parts it builds until then."""
        return self._opened

    @property
    def alerter(self) -> Alerter:
        assert self._alerter is not None, "open() first"
        return self._alerter

    def lag(self) -> dict[str, int]:
        return self._source.lag() if self._source is not None else {}

    def counters(self) -> tuple[int, int, int]:
        """``(read, accepted, rejected)`` summed over partitions — cheap, for live views."""
        read = accepted = 0
        for part in self._partitions.values():
            read += part.read
            accepted += part.accepted
        return read, accepted, read - accepted

    def snapshot(self, *, copy: bool = True) -> Report:
        """The current per-device statistics, counters and alert history.

        ``copy=False`` makes ``devices`` a view of the statistics rather than a copy: cheap
        even at a million devices, and right where nothing is processed before it is read
        (a table rendered at once, the report :meth:`run` returns once it has finished).
        """
        parts = list(self._partitions.values())
        alerter = self._alerter
        devices = DeviceSummaries(p.table.devices for p in parts)
        return Report.build(
            counters=((p.read, p.accepted, p.rejected, p.table.late) for p in parts),
            devices=devices.copy() if copy else devices,
            alert_states=alerter.states() if alerter is not None else {},
            alerts=[
                AlertRecord(device=t.device, state=t.state, at_us=t.at_us, value=t.value)
                for t in (alerter.transitions if alerter is not None else [])
            ],
            partitions={
                p.name: {"position": p.position, "read": p.read, "devices": len(p.table.devices)}
                for p in parts
            },
        )


_END = object()


def _as_source(
    candidate: Source | AsyncIterable[bytes | str] | None, max_line_bytes: int
) -> Source | None:
    if candidate is None or isinstance(candidate, Source):
        return candidate
    return LineIterableSource(candidate, max_line_bytes=max_line_bytes)


def _checkpoint_of(doc: dict[str, Any] | None) -> str | None:
    checkpoint = None if doc is None else doc.get("checkpoint")
    return None if checkpoint is None else str(checkpoint)


def _offset_of(doc: dict[str, Any]) -> int:
    position = doc.get("position")
    if isinstance(position, dict) and isinstance(position.get("offset"), int):
        return int(position["offset"])
    return -1


class _CommitGate:
    """The notifier, behind a gate: a notification goes out only once a checkpoint taken
    after it was queued is durable.

    Why: a partition's unannounced changes travel in its checkpoint. A digest that left
    before the checkpoint recording it as announced was durable, from a process that then
    died, would be announced a second time by the partition's next owner, who restores the
    changes as still queued. Held back, it waits for that checkpoint, and if the process
    dies first the digest is dropped on restart (``outbox_seq`` in ``process.json``) and
    the partition's owner announces its changes — once.

    ``process.json`` with the mark is written before the Kafka write, so the one remaining
    window is a crash between the two (milliseconds): the restarted instance then sends a
    digest whose changes the partition's owner announces again — a duplicate, never a loss.

    Only with a changelog (partitions can move); otherwise every notification is released.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        holding: bool,
        checkpoint: Callable[[], Awaitable[bool]],
    ) -> None:
        self._notifier = notifier
        self._holding = holding
        self._checkpoint = checkpoint
        self._outbox: Outbox | None = None
        self._released = 0
        self._wakeup = asyncio.Event()

    def bind(self, outbox: Outbox, *, released: int | None) -> None:
        """``released``: the mark of the last durable checkpoint of an earlier run (None:
        release what the outbox holds from before)."""
        self._outbox = outbox
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
        if self._holding and self._outbox is not None:
            wanted = notification.digest.digest_id
            seq = next((e.seq for e in self._outbox.pending() if e.digest_id == wanted), None)
            while seq is not None and seq > self._released:
                self._wakeup.clear()
                if not await self._checkpoint():
                    await self._wakeup.wait()
        await self._notifier(notification)


class _OwningKafkaDeadLetters(KafkaDeadLetters):
    """A Kafka DLQ whose producer the pipeline created, so closing it stops the producer."""

    async def close(self) -> None:
        await super().close()
        await self._producer.stop()
