"""Line sources without a broker: a log file (optionally followed like ``tail -F``), stdin,
or any async iterable of lines handed in from Python.

A file is one partition. Its checkpointed position is a byte offset plus a fingerprint of
the file's first bytes, so a restart resumes exactly where the state ends, and a file that
was replaced by another one (rotation while we were down) is read from the start instead of
from a meaningless offset. Non-seekable inputs (stdin, iterables) resume by skipping the
number of lines their checkpoint already includes, which is right when the same input is
replayed.

Every source cuts lines with :class:`LineSplitter`, which never holds more than
``max_line_bytes`` of one: a longer line is handed on as an :class:`OversizedLine` (its
first bytes and its length) for the pipeline to reject as ``too_long``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
import sys
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO, Final

from iotmon.errors import InputNotFoundError
from iotmon.sources.base import (
    DEFAULT_MAX_LINE_BYTES,
    OVERSIZED_PREFIX_BYTES,
    Batch,
    Joined,
    OversizedLine,
    Position,
    RestoreHook,
    RevokeHook,
)

__all__ = ["FileSource", "LineIterableSource", "LineSplitter", "stdin_lines"]

log = logging.getLogger(__name__)

CHUNK_BYTES: Final = 1 << 20
FINGERPRINT_BYTES: Final = 256
FOLLOW_POLL_SECONDS: Final = 0.1
ITERABLE_BATCH_LINES: Final = 4096


class LineSplitter:
    """Cuts a byte stream, fed in chunks, into lines (without their ``\\n``).

    An unfinished line is carried over to the next chunk, but never more than
    ``max_line_bytes`` of it: past that only its first bytes and its length are kept, and
    the line comes out as an :class:`OversizedLine` once its end arrives.
    """

    __slots__ = ("_carried", "_pending", "max_line_bytes")

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._pending = b""
        self._carried = 0

    def feed(self, chunk: bytes) -> tuple[list[bytes], int, bool]:
        """The lines ``chunk`` completes, the bytes they span (newlines included, and the
        carried-over start) and whether any of them is oversized."""
        lines, consumed, oversized, _ = self._cut(chunk, joined=False)
        return lines, consumed, oversized

    def cut(self, chunk: bytes) -> tuple[list[bytes], int, bool, Joined | None]:
        """:meth:`feed`, and the lines joined by ``\\n`` as they were in the input (None
        when one of them is oversized): the bytes are at hand, a join would copy them."""
        return self._cut(chunk, joined=True)

    def _cut(self, chunk: bytes, *, joined: bool) -> tuple[list[bytes], int, bool, Joined | None]:
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if not lines:
            self._carry(tail)
            return lines, 0, False, None
        limit = self.max_line_bytes
        carried = self._carried
        consumed = len(chunk) - len(tail) + carried
        oversized = False
        # Up to the newline that ends the last line.
        view: Joined | None = memoryview(chunk)[: len(chunk) - len(tail) - 1] if joined else None
        if carried:
            # Glue the carried start onto the first piece: no copy of the whole chunk.
            length = carried + len(lines[0])
            if length > limit:
                lines[0] = OversizedLine(self._pending + lines[0][:OVERSIZED_PREFIX_BYTES], length)
                oversized = True
            else:
                lines[0] = self._pending + lines[0]
                if view is not None:
                    view = self._pending + view
        # A line inside one chunk is shorter than the chunk: only a small limit needs a look.
        if len(chunk) > limit and max(map(len, lines)) > limit:
            for index, line in enumerate(lines):
                if len(line) > limit and type(line) is not OversizedLine:
                    lines[index] = OversizedLine(line, len(line))
                    oversized = True
        self._pending = b""
        self._carried = 0
        self._carry(tail)
        return lines, consumed, oversized, None if oversized else view

    def finish(self) -> tuple[list[bytes], int, bool]:
        """The last line when the input ends without a newline (like :meth:`feed`)."""
        carried = self._carried
        if not carried:
            return [], 0, False
        pending = self._pending
        self.reset()
        if carried > self.max_line_bytes:
            return [OversizedLine(pending, carried)], carried, True
        return [pending], carried, False

    def reset(self) -> None:
        self._pending = b""
        self._carried = 0

    def _carry(self, piece: bytes) -> None:
        self._carried += len(piece)
        if self._carried <= self.max_line_bytes:
            self._pending += piece
        elif len(self._pending) != OVERSIZED_PREFIX_BYTES:
            # Over the limit: from now on only the line's first bytes are kept.
            start = self._pending[:OVERSIZED_PREFIX_BYTES] + piece[:OVERSIZED_PREFIX_BYTES]
            self._pending = start[:OVERSIZED_PREFIX_BYTES]


def _fingerprint(handle: BinaryIO, length: int) -> str:
    handle.seek(0)
    return hashlib.sha256(handle.read(length)).hexdigest()[:32]


class FileSource:
    """Reads a text log line by line; with ``follow`` it keeps reading what is appended and
    survives truncation (reads again from the start) and rotation (drains the old file,
    then opens the new one at the same path)."""

    next_is_ready: Final = True
    """The next batch never waits: at the end of the file it is None (waiting comes when
    the one after is asked for)."""

    def __init__(
        self,
        path: Path,
        *,
        follow: bool = False,
        idle_seconds: float = 0.1,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.path = path
        self.follow = follow
        self.idle_seconds = idle_seconds
        self._splitter = LineSplitter(max_line_bytes)
        self.name = f"file:{path.resolve()}"
        self._handle: BinaryIO | None = None
        self._offset = 0
        self._line = 0
        self._fingerprint = ""
        self._fingerprint_len = 0

    async def open(self, *, on_assign: RestoreHook, on_revoke: RevokeHook) -> None:
        try:
            self._handle = self.path.open("rb")
        except FileNotFoundError:
            if not self.follow:
                raise InputNotFoundError(
                    f"input file {self.path} does not exist — check the `input` path",
                    setting="input",
                ) from None
            log.warning("waiting for %s to appear", self.path)
        restored = (await on_assign([self.name])).get(self.name)
        if restored is not None and self._handle is not None:
            self._resume(restored)

    def _resume(self, position: Position) -> None:
        assert self._handle is not None
        offset = int(position.get("offset", 0))
        size = os.fstat(self._handle.fileno()).st_size
        length = int(position.get("fingerprint_len", 0))
        same_file = size >= offset and (
            length == 0 or _fingerprint(self._handle, length) == position.get("fingerprint")
        )
        if not same_file:
            log.warning(
                "%s is not the file the checkpoint was taken from (shorter or different start);"
                " reading it from the beginning",
                self.path,
            )
            self._handle.seek(0)
            return
        self._offset = offset
        self._line = int(position.get("line", 0))
        self._handle.seek(offset)

    def _position(self) -> Position:
        if self._handle is not None and self._fingerprint_len < FINGERPRINT_BYTES:
            here = self._handle.tell()
            length = min(FINGERPRINT_BYTES, self._offset)
            if length > self._fingerprint_len:
                self._fingerprint = _fingerprint(self._handle, length)
                self._fingerprint_len = length
            self._handle.seek(here)
        return {
            "offset": self._offset,
            "line": self._line,
            "fingerprint": self._fingerprint,
            "fingerprint_len": self._fingerprint_len,
        }

    async def batches(self) -> AsyncIterator[Batch | None]:
        splitter = self._splitter
        while True:
            handle = self._handle
            chunk = handle.read(CHUNK_BYTES) if handle is not None else b""
            if chunk:
                lines, consumed, oversized, joined = splitter.cut(chunk)
                if lines:
                    yield self._batch(lines, consumed, oversized, joined)
                continue
            if not self.follow:
                lines, consumed, oversized = splitter.finish()
                if lines:
                    yield self._batch(lines, consumed, oversized)
                return
            yield None
            await asyncio.sleep(self.idle_seconds)
            if self._reopen_if_replaced():
                splitter.reset()

    def _batch(
        self, lines: list[bytes], consumed: int, oversized: bool, joined: Joined | None = None
    ) -> Batch:
        first = self._line + 1
        self._line += len(lines)
        self._offset += consumed
        return Batch(
            partition=self.name,
            lines=lines,
            positions=range(first, first + len(lines)),
            end=self._position(),
            oversized=oversized,
            joined=joined,
        )

    def _reopen_if_replaced(self) -> bool:
        """At EOF in follow mode: notice truncation and rotation (``tail -F`` semantics)."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        handle = self._handle
        if handle is not None:
            opened = os.fstat(handle.fileno())
            if (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino):
                if current.st_size >= self._offset:
                    return False
                log.warning("%s was truncated; reading it again from the start", self.path)
            else:
                log.info("%s was rotated; continuing with the new file", self.path)
            handle.close()
        self._handle = self.path.open("rb")
        self._offset = 0
        self._line = 0
        self._fingerprint = ""
        self._fingerprint_len = 0
        return True

    async def commit(self, positions: dict[str, Position]) -> None:
        """Files have nothing to acknowledge: the checkpoint is the record."""

    def lag(self) -> dict[str, int]:
        if self._handle is None:
            return {}
        try:
            size = os.fstat(self._handle.fileno()).st_size
        except OSError:
            return {}
        return {self.name: max(0, size - self._offset)}

    async def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class LineIterableSource:
    """Any async iterable of lines (``bytes`` or ``str``) as one partition.

    This is how stdin is read, and the extension point for custom sources from Python.
    """

    def __init__(
        self,
        lines: AsyncIterable[bytes | str],
        *,
        name: str = "custom",
        idle_seconds: float = 0.1,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.name = name
        self.idle_seconds = idle_seconds
        self.max_line_bytes = max_line_bytes
        self._lines = lines
        self._skip = 0
        self._line = 0
        # Oversized lines queued but not batched yet: only then is a batch searched for them.
        self._oversized = 0

    async def open(self, *, on_assign: RestoreHook, on_revoke: RevokeHook) -> None:
        restored = (await on_assign([self.name])).get(self.name)
        if restored is not None:
            self._skip = int(restored.get("line", 0))

    async def batches(self) -> AsyncIterator[Batch | None]:
        # A pump task decouples the producer's pace from ours: a slow, interactive input is
        # processed line by line, a fast one in batches, and idle time yields heartbeats.
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4 * ITERABLE_BATCH_LINES)
        pump = asyncio.create_task(self._pump(queue), name=f"iotmon-source-{self.name}")
        try:
            finished = False
            while not finished:
                try:
                    first = await asyncio.wait_for(queue.get(), self.idle_seconds)
                except TimeoutError:
                    yield None
                    continue
                buffer: list[bytes] = []
                item: bytes | None = first
                while item is not None:
                    buffer.append(item)
                    if len(buffer) >= ITERABLE_BATCH_LINES or queue.empty():
                        break
                    item = queue.get_nowait()
                finished = item is None
                if buffer:
                    oversized = 0
                    if self._oversized:
                        oversized = sum(1 for line in buffer if type(line) is OversizedLine)
                        self._oversized -= oversized
                    yield self._batch(buffer, oversized > 0)
            await pump
        finally:
            pump.cancel()

    async def _pump(self, queue: asyncio.Queue[bytes | None]) -> None:
        try:
            async for item in self._lines:
                line = item.encode() if isinstance(item, str) else item
                if self._skip:
                    self._skip -= 1
                    self._line += 1
                    continue
                if type(line) is not OversizedLine:
                    line = line.rstrip(b"\r\n")
                    if len(line) > self.max_line_bytes:
                        line = OversizedLine(line, len(line))
                if type(line) is OversizedLine:
                    self._oversized += 1
                await queue.put(line)
        finally:
            await queue.put(None)

    def _batch(self, lines: list[bytes], oversized: bool) -> Batch:
        first = self._line + 1
        self._line += len(lines)
        return Batch(
            partition=self.name,
            lines=lines,
            positions=range(first, first + len(lines)),
            end={"line": self._line},
            oversized=oversized,
        )

    async def commit(self, positions: dict[str, Position]) -> None:
        """Nothing to acknowledge upstream."""

    def lag(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        closer = getattr(self._lines, "aclose", None)
        if closer is not None:
            await closer()


async def stdin_lines(max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> AsyncIterator[bytes]:
    """Lines of standard input (without ``\\n``) without blocking the event loop on a pipe or
    terminal; a line over ``max_line_bytes`` comes as an :class:`OversizedLine`."""
    splitter = LineSplitter(max_line_bytes)
    if stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode):
        # A redirected regular file cannot be watched by the loop; it never blocks anyway.
        while chunk := sys.stdin.buffer.read(CHUNK_BYTES):
            for line in splitter.feed(chunk)[0]:
                yield line
    else:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=CHUNK_BYTES)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while chunk := await reader.read(CHUNK_BYTES):
            for line in splitter.feed(chunk)[0]:
                yield line
    for line in splitter.finish()[0]:
        yield line
