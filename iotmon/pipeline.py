"""The pipeline: source → parse → per-partition stats → alerts → notifications.

One asyncio task runs the data path. Applying a batch is synchronous, so at every await
point each partition's statistics, alert states, counters and source position agree with
each other, and a checkpoint taken there is consistent without locks. Notifications are
delivered by the alerter's own task, so a slow or dead SMTP server never stalls reading.

Clocks: statistics use each device's own event time; the *stream clock* that drives stale
detection and digest timing is the latest event time seen minus the allowed lateness,
advanced with wall time while the stream is idle, so a replay at full speed and a live run
produce the same alerts, and pending notifications still go out when readings stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Callable
from typing import Any

from iotmon.alerts import Alerter
from iotmon.checkpoint import CheckpointError, StateDir
from iotmon.deadletter import DeadLetters, FileDeadLetters, KafkaDeadLetters
from iotmon.latency import Histogram
from iotmon.notify import Notifier, build_notifier
from iotmon.parse import ReadingParser, Rejection
from iotmon.partition import PartitionState
from iotmon.report import AlertRecord, DeviceSummary, Report
from iotmon.settings import Settings
from iotmon.sources.base import Batch, Position, Source
from iotmon.sources.files import FileSource, LineIterableSource, stdin_lines
from iotmon.sources.kafka import KafkaSource
from iotmon.stats import DeviceStats, StatsTable

__all__ = ["Pipeline", "ProgressHook"]

log = logging.getLogger(__name__)

ProgressHook = Callable[["Pipeline"], None]

_TICK_SECONDS = 0.05


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
        self._source_override = _as_source(source)
        self._notifier_override = notifier
        self._dead_letters_override = dead_letters
        self.state_dir = StateDir(self.settings.state_dir)
        self._parser = ReadingParser(self.settings.parse)
        self._partitions: dict[str, PartitionState] = {}
        self._source: Source | None = None
        self._dead_letters: DeadLetters | None = None
        self._alerter: Alerter | None = None
        self._stopping = asyncio.Event()
        self._opened = False
        self._last_checkpoint = time.monotonic()
        self._checkpoint_seconds: float = 0.0
        self._checkpoints = 0
        self._clock_us = 0
        self._idle_since: float | None = None
        self._finished_input = False
        self._progress: list[ProgressHook] = []
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
        notifier = self._notifier_override or build_notifier(settings.email)
        self._alerter = Alerter(
            settings=settings.alerts,
            email=settings.email,
            notifier=notifier,
            state_dir=settings.state_dir,
            alerts_log=settings.alerts_log,
        )
        process = self.state_dir.load_process()
        if process is not None:
            self._alerter.restore(process.get("alerter", {}))
            self._clock_us = int(process.get("clock_us", 0))
        await self._alerter.start()
        self._source = self._source_override or self._build_source()
        self._dead_letters = self._dead_letters_override or await self._build_dead_letters()
        await self._source.open(on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _build_source(self) -> Source:
        source = self.settings.source
        if source.input is None:
            return KafkaSource(source.kafka, once=source.once)
        if source.input == "-":
            return LineIterableSource(stdin_lines(), name="stdin")
        return FileSource(source.input_path, follow=source.follow)

    async def _build_dead_letters(self) -> DeadLetters:
        if not isinstance(self._source, KafkaSource):
            return FileDeadLetters(self.settings.state_dir)
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        bootstrap = self._source.settings.bootstrap_servers
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise ConnectionError(
                f"cannot reach Kafka at {bootstrap} for the dead-letter topic ({exc}) — start a "
                "broker (`make kafka-up`) or pass --bootstrap-servers HOST:PORT"
            ) from exc
        return _OwningKafkaDeadLetters(producer)

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
        last_tick = 0.0
        try:
            while not self._stopping.is_set():
                batch = await self._next(batches)
                if batch is _END:
                    self._finished_input = not self._stopping.is_set()
                    break
                now = time.monotonic()
                if isinstance(batch, Batch):
                    self.apply(batch)
                    self._idle_since = None
                else:
                    self._advance_idle_clock(now)
                if now - last_tick >= _TICK_SECONDS or batch is None:
                    last_tick = now
                    self._tick()
                if now - self._last_checkpoint >= settings.checkpoint_interval:
                    await self.checkpoint()
        finally:
            closer = getattr(batches, "aclose", None)
            if closer is not None:
                await closer()
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
        return self.snapshot()

    async def run_once(self) -> Report:
        """Process what is there now (a file to EOF, Kafka to the end offsets seen at start),
        flush alerts, write the final checkpoint and return the final report."""
        if self._source_override is None and not self.settings.source.once:
            raise ValueError("run_once() needs Settings(source=SourceSettings(once=True, ...))")
        return await self.run()

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

    def apply(self, batch: Batch) -> None:
        """Parse a batch and fold it into its partition's state (synchronous: the hot path)."""
        started = time.perf_counter()
        part = self._partitions.get(batch.partition)
        if part is None:
            part = self._new_partition(batch.partition)
        parse = self._parser.parse
        table = part.table
        devices = table.devices
        spec = table.spec
        observe = part.tracker.observe
        head = part.head_us
        accepted = late = 0
        # StatsTable.add, inlined: this loop runs once per reading.
        for index, line in enumerate(batch.lines):
            reading = parse(line)
            if type(reading) is tuple:
                key, value, event_us = reading
                stats = devices.get(key)
                if stats is None:
                    stats = devices[key] = DeviceStats(spec)
                if not stats.add(value, event_us):
                    late += 1
                observe(key, stats)
                accepted += 1
                if event_us > head:
                    head = event_us
            else:
                assert isinstance(reading, Rejection)
                self._reject(part, batch, index, line, reading)
        table.late += late
        self.batch_seconds.observe(time.perf_counter() - started)
        part.read += len(batch.lines)
        part.accepted += accepted
        part.head_us = head
        part.position = batch.end
        part.dirty = True
        self._advance_clock()
        if self._progress:
            for hook in self._progress:
                hook(self)

    def _reject(
        self, part: PartitionState, batch: Batch, index: int, line: bytes, rejection: Rejection
    ) -> None:
        part.rejected[rejection.reason.value] += 1
        key = batch.key_of(index) if batch.key_of is not None else None
        assert self._dead_letters is not None
        self._dead_letters.put(part.name, batch.positions[index], line, rejection, key)

    def _advance_clock(self) -> None:
        # The slowest partition sets the pace: a partition catching up after a restart must
        # not see its devices judged by a clock that another partition has pushed ahead.
        heads = [p.head_us for p in self._partitions.values() if p.head_us]
        if heads:
            watermark = min(heads) - self.settings.window.lateness_us
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
        assert self._alerter is not None and self._dead_letters is not None
        positions: dict[str, Position | None] = {}
        for name in names:
            doc = self.state_dir.load_partition(name)
            if doc is None:
                part = self._new_partition(name)
            else:
                try:
                    tracker = self._alerter.tracker(name, state=doc["alerts"])
                    part = PartitionState.from_state(
                        name, doc, spec=self.settings.window, tracker=tracker
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise CheckpointError(
                        f"checkpoint of partition {name} in {self.state_dir.root} cannot be "
                        f"restored: {exc}"
                    ) from exc
                self._partitions[name] = part
                self._dead_letters.restore(name, part.dlq_size)
                log.info(
                    "restored %s: %d devices, %d readings", name, len(part.table.devices), part.read
                )
            positions[name] = part.position
        return positions

    async def _on_revoke(self, names: list[str]) -> None:
        await self.checkpoint(only=names)
        assert self._alerter is not None
        for name in names:
            self._partitions.pop(name, None)
            self._alerter.release(name)

    async def checkpoint(self, *, only: list[str] | None = None) -> None:
        """Make the current state durable, then acknowledge the positions it includes."""
        started = time.monotonic()
        assert self._dead_letters is not None and self._source is not None
        assert self._alerter is not None
        names = only if only is not None else list(self._partitions)
        dirty = [
            self._partitions[n]
            for n in names
            if n in self._partitions and self._partitions[n].dirty
        ]
        sizes = await self._dead_letters.flush()
        payloads: list[tuple[str, bytes]] = []
        for part in dirty:
            part.dlq_size = sizes.get(part.name, part.dlq_size)
            payloads.append(
                (part.name, self.state_dir.encode_partition(part.name, part.to_state()))
            )
            part.dirty = False
        process = {"alerter": self._alerter.to_state(), "clock_us": self._clock_us}
        await asyncio.to_thread(self._write, payloads, process)
        positions = {p.name: p.position for p in dirty if p.position is not None}
        if positions:
            await self._source.commit(positions)
        self._last_checkpoint = time.monotonic()
        self._checkpoint_seconds = self._last_checkpoint - started
        self._checkpoints += 1

    def _write(self, payloads: list[tuple[str, bytes]], process: dict[str, Any]) -> None:
        for name, payload in payloads:
            self.state_dir.write_partition(name, payload)
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

    def snapshot(self) -> Report:
        """The current per-device statistics, counters and alert history."""
        parts = list(self._partitions.values())
        alerter = self._alerter
        return Report.build(
            counters=((p.read, p.accepted, p.rejected, p.table.late) for p in parts),
            devices=(
                (key, DeviceSummary.of(stats))
                for p in parts
                for key, stats in p.table.devices.items()
            ),
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


def _as_source(candidate: Source | AsyncIterable[bytes | str] | None) -> Source | None:
    if candidate is None or isinstance(candidate, Source):
        return candidate
    return LineIterableSource(candidate)


class _OwningKafkaDeadLetters(KafkaDeadLetters):
    """A Kafka DLQ whose producer the pipeline created, so closing it stops the producer."""

    async def close(self) -> None:
        await super().close()
        await self._producer.stop()
