"""Load JSON-lines readings into a Kafka topic, fast.

One Kafka message per line (line terminator and a trailing ``\\r`` stripped, empty lines
skipped), keyed by a field of the line so that all readings of a device land in one partition
and stay ordered. Messages are packed into per-partition record batches ourselves
(``create_batch``/``send_batch``) instead of one ``send()`` coroutine per message: aiokafka's
per-message path costs tens of µs per line, the batch builder is Cython. Partitions are chosen
exactly like the Java client and aiokafka's default partitioner (murmur2 of the key), so the
key → partition mapping is the one every other Kafka client computes. How input is read is
:mod:`iotmon.tools.line_chunks`; how a line's key is found, :mod:`iotmon.tools.message_keys`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from types import TracebackType
from typing import IO, Any, Final

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_gzip, has_lz4, has_snappy, has_zstd
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import murmur2

from iotmon.errors import IotmonError
from iotmon.kafka.admin import KafkaUnavailableError, KafkaUnreachableError, ensure_topic
from iotmon.kafka.settings import COMPRESSIONS, DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_TOPIC
from iotmon.tools.line_chunks import iter_line_chunks
from iotmon.tools.message_keys import DEFAULT_KEY_FIELD, key_from, scan_string_field
from iotmon.views.progress import Pacer, Progress

__all__ = [
    "KafkaLoader",
    "ProduceError",
    "ProduceStats",
    "ProducerSettings",
    "available_compressions",
    "produce_files",
    "produce_lines",
]

ACKS: Final = ("1", "all")

_PARTITION_CACHE_MAX: Final = 200_000
# Bounds the memory held by delivered-but-unchecked batch futures.
_MAX_PENDING_FUTURES: Final = 256

_COMPRESSION_CHECKS = {"gzip": has_gzip, "lz4": has_lz4, "zstd": has_zstd, "snappy": has_snappy}


class ProduceError(IotmonError, RuntimeError):
    """A problem the user can fix (bad option, unreadable file, message too large, ...)."""


def available_compressions() -> list[str]:
    """The ``--compression`` values usable with the libraries installed here."""
    return ["none", *(name for name, check in _COMPRESSION_CHECKS.items() if check())]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerSettings:
    """Where and how to produce. ``key_field`` is a dotted path into the JSON line
    (``None``: no keys). ``rate`` caps lines per second (``None``: as fast as possible)."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    topic: str = DEFAULT_TOPIC
    key_field: str | None = DEFAULT_KEY_FIELD
    acks: str = "all"
    compression: str = "none"
    linger_ms: int = 30
    max_batch_size: int = 512 * 1024
    partitions: int = 6
    create_topic: bool = True
    skip_invalid: bool = False
    rate: float | None = None
    client_id: str = "iotmon-produce"

    def __post_init__(self) -> None:
        if not self.topic:
            raise ProduceError("topic: must not be empty", setting="topic")
        if self.acks not in ACKS:
            raise ProduceError(f"acks must be one of {', '.join(ACKS)}, got {self.acks!r}")
        if self.compression not in COMPRESSIONS:
            raise ProduceError(
                f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}"
            )
        check = _COMPRESSION_CHECKS.get(self.compression)
        if check is not None and not check():
            raise ProduceError(
                f"{self.compression} compression needs the cramjam library: "
                f"`pip install cramjam` (or use one of: {', '.join(available_compressions())})"
            )
        if self.key_field is not None and any(not p for p in self.key_field.split(".")):
            raise ProduceError(f"key field {self.key_field!r} is not a dotted field path")
        if self.partitions < 1:
            raise ProduceError(f"partitions must be >= 1, got {self.partitions}")
        if self.linger_ms < 0 or self.max_batch_size < 1024:
            raise ProduceError("linger_ms must be >= 0 and max_batch_size >= 1024")
        if self.rate is not None and not self.rate > 0:
            raise ProduceError(f"rate must be > 0 lines per second, got {self.rate}")


@dataclass(slots=True)
class ProduceStats:
    """What a load did. ``lines`` counts non-empty input lines; ``sent`` the messages
    acknowledged by Kafka (``lines - skipped_invalid`` on success)."""

    lines: int = 0
    sent: int = 0
    keyless: int = 0
    skipped_invalid: int = 0
    skipped_empty: int = 0
    elapsed: float = 0.0
    per_partition: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


class KafkaLoader:
    """An async context manager that owns one producer and packs lines into record batches.

    ``await loader.send(lines)`` queues a chunk (backpressure: it waits while the previous
    batch for a partition is still queued); leaving the context flushes and waits for every
    acknowledgement, so :attr:`stats` is final after ``async with``.
    """

    def __init__(self, settings: ProducerSettings) -> None:
        self.settings = settings
        self.stats = ProduceStats()
        self._producer: Any = None
        self._partitions: list[int] = []
        self._partition_of: dict[bytes, int] = {}
        self._builders: dict[int, Any] = {}
        self._builder_counts: dict[int, int] = {}
        self._opened: dict[int, float] = {}
        self._pending: deque[tuple[asyncio.Future[Any], int, int]] = deque()
        self._rr = 0
        self._path = settings.key_field.split(".") if settings.key_field else None
        self._last_field = self._path[-1].encode() if self._path else b""
        self._t0 = 0.0

    async def __aenter__(self) -> KafkaLoader:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self.stop()

    async def start(self) -> None:
        s = self.settings
        self._t0 = time.monotonic()
        if s.create_topic:
            await ensure_topic(s.bootstrap_servers, s.topic, partitions=s.partitions)
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            acks=1 if s.acks == "1" else "all",
            compression_type=None if s.compression == "none" else s.compression,
            linger_ms=s.linger_ms,
            max_batch_size=s.max_batch_size,
            # A whole batch must fit in one request.
            max_request_size=max(1 << 20, s.max_batch_size + (64 << 10)),
        )
        try:
            await producer.start()
        except KafkaConnectionError as exc:
            await _stop_quietly(producer)
            raise KafkaUnreachableError(s.bootstrap_servers) from exc
        self._producer = producer
        try:
            parts = await producer.partitions_for(s.topic)
        except KafkaError as exc:
            await self.stop()
            raise KafkaUnavailableError(
                f"topic {s.topic!r} is not available on {s.bootstrap_servers}: {exc} — create it "
                "(set `create_topic`) or check the broker",
                setting="create_topic",
            ) from exc
        if not parts:
            await self.stop()
            raise KafkaUnavailableError(
                f"topic {s.topic!r} does not exist on {s.bootstrap_servers} — set "
                "`create_topic` (with `partitions` N) or create it",
                setting=("create_topic", "partitions"),
            )
        self._partitions = sorted(parts)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer)
        self.stats.elapsed = time.monotonic() - self._t0

    def _partition(self, key: bytes | None) -> int:
        parts = self._partitions
        if key is None:
            self._rr += 1
            return parts[self._rr % len(parts)]
        p = self._partition_of.get(key)
        if p is None:
            # Same mapping as the Java client / aiokafka DefaultPartitioner; murmur2 is pure
            # Python here, hence the cache (fleets repeat their keys).
            p = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
            if len(self._partition_of) >= _PARTITION_CACHE_MAX:
                self._partition_of.clear()
            self._partition_of[key] = p
        return p

    async def send(self, lines: Iterable[bytes]) -> None:
        """Queue a chunk of lines (bytes without terminator; empty ones are skipped)."""
        stats = self.stats
        path = self._path
        skip_invalid = self.settings.skip_invalid
        builders = self._builders
        counts = self._builder_counts
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        top = path[0] if path is not None and len(path) == 1 else None
        partition_of = self._partition_of
        for line in lines:
            if not line:
                stats.skipped_empty += 1
                continue
            stats.lines += 1
            key: bytes | None = None
            if path is not None or skip_invalid:
                try:
                    obj = loads(line)
                except decode_error:
                    if skip_invalid:
                        stats.skipped_invalid += 1
                        continue
                    if path is not None:
                        key = scan_string_field(line, self._last_field)
                else:
                    if skip_invalid and not isinstance(obj, dict):
                        stats.skipped_invalid += 1
                        continue
                    if top is not None and type(obj) is dict:
                        # Fast path for the usual top-level string key (id_equipamento).
                        value = obj.get(top)
                        if type(value) is str:
                            key = value.encode() or None
                        elif value is not None:
                            key = key_from(obj, path or ())
                    elif path is not None:
                        key = key_from(obj, path)
            if key is None:
                stats.keyless += 1
                p = self._partition(None)
            elif (p := partition_of.get(key, -1)) < 0:
                p = self._partition(key)
            builder = builders.get(p)
            if builder is None:
                builder = self._open(p)
            if builder.append(timestamp=None, key=key, value=line) is None:
                await self._submit(p)
                builder = self._open(p)
                if builder.append(timestamp=None, key=key, value=line) is None:
                    await self._send_single(p, key, line)
                    continue
            counts[p] += 1
        await self._submit_lingering()

    def _open(self, p: int) -> Any:
        builder = self._producer.create_batch()
        self._builders[p] = builder
        self._builder_counts[p] = 0
        self._opened[p] = time.monotonic()
        return builder

    async def _submit(self, p: int) -> None:
        builder = self._builders.pop(p, None)
        n = self._builder_counts.pop(p, 0)
        self._opened.pop(p, None)
        if builder is None or n == 0:
            return
        fut = await self._producer.send_batch(builder, self.settings.topic, partition=p)
        self._pending.append((fut, p, n))
        await self._reap(block=len(self._pending) > _MAX_PENDING_FUTURES)

    async def _send_single(self, p: int, key: bytes | None, line: bytes) -> None:
        # Larger than a whole batch: let aiokafka size a request for it on its own.
        try:
            fut = await self._producer.send(self.settings.topic, line, key=key, partition=p)
        except KafkaError as exc:
            raise ProduceError(
                f"a {len(line):,}-byte line does not fit in a Kafka request: {exc} — "
                "raise max_batch_size or skip it"
            ) from exc
        self._pending.append((fut, p, 1))

    async def tick(self) -> None:
        """Submit batches older than ``linger_ms`` and collect finished deliveries; call it
        when no lines arrive for a while (``send`` does it after every chunk)."""
        await self._submit_lingering()
        await self._reap(block=False)

    async def _submit_lingering(self) -> None:
        if not self._opened:
            return
        cutoff = time.monotonic() - self.settings.linger_ms / 1000
        for p in [p for p, t in self._opened.items() if t <= cutoff]:
            await self._submit(p)

    async def _reap(self, *, block: bool) -> None:
        pending = self._pending
        while pending and (block or pending[0][0].done()):
            fut, p, n = pending.popleft()
            await fut  # raises the delivery error, if any
            self.stats.sent += n
            self.stats.per_partition[p] = self.stats.per_partition.get(p, 0) + n
            block = block and len(pending) > _MAX_PENDING_FUTURES // 2

    async def flush(self) -> None:
        """Submit every open batch and wait until Kafka acknowledged all of them."""
        for p in list(self._builders):
            await self._submit(p)
        while self._pending:
            await self._reap(block=True)


async def _stop_quietly(producer: Any) -> None:
    # Stopping must not mask the error that made us stop.
    with contextlib.suppress(Exception):
        await producer.stop()


async def produce_lines(
    lines: Iterable[bytes],
    settings: ProducerSettings,
    *,
    progress: Progress | None = None,
) -> ProduceStats:
    """Produce lines from a (synchronous, possibly endless) iterable, e.g. the simulator.

    The iterable is consumed in chunks on the event loop, so it must not block for long.
    """
    pacer = Pacer(settings.rate)
    it = iter(lines)
    done = 0
    async with KafkaLoader(settings) as loader:
        while chunk := list(islice(it, pacer.chunk)):
            await loader.send(chunk)
            done += len(chunk)
            if progress is not None:
                progress.advance(len(chunk))
            wait = pacer.delay(done)
            # Yield even when not pacing so the sender task gets to run between chunks.
            await asyncio.sleep(wait)
    return loader.stats


def _check_readable(paths: Sequence[str]) -> None:
    for path in paths:
        if path == "-":
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ProduceError(f"cannot read {path}: {exc.strerror or exc}") from exc


async def produce_files(
    paths: Sequence[str],
    settings: ProducerSettings,
    *,
    progress: Progress | None = None,
    stdin: IO[bytes] | None = None,
) -> ProduceStats:
    """Produce every line of each file in order; ``-`` reads ``stdin``."""
    if "-" in paths and stdin is None:
        raise ProduceError("'-' given but no stdin stream was provided")
    await asyncio.to_thread(_check_readable, paths)
    pacer = Pacer(settings.rate)
    done = 0
    async with KafkaLoader(settings) as loader:
        for path in paths:
            if path == "-":
                assert stdin is not None
                stream, owned = stdin, False
            else:
                stream, owned = await asyncio.to_thread(open, path, "rb"), True
            try:
                async for chunk in iter_line_chunks(stream, on_idle=loader.tick):
                    # Split big reads so pacing and progress stay smooth.
                    for i in range(0, len(chunk), pacer.chunk):
                        part = chunk[i : i + pacer.chunk]
                        await loader.send(part)
                        done += len(part)
                        if progress is not None:
                            progress.advance(len(part))
                        if (wait := pacer.delay(done)) > 0:
                            await asyncio.sleep(wait)
            finally:
                if owned:
                    stream.close()
    return loader.stats
