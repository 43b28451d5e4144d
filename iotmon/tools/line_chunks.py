"""Reading a binary stream (file, pipe, terminal, stdin) as chunks of lines without blocking
the event loop."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Final

__all__ = ["iter_line_chunks"]

_READ_SIZE: Final = 1 << 20


async def iter_line_chunks(
    stream: IO[bytes],
    *,
    on_idle: Callable[[], Awaitable[None]] | None = None,
    idle_s: float = 0.05,
) -> AsyncIterator[list[bytes]]:
    """Lines of a binary stream, in chunks, without ``\\n``/``\\r\\n``.

    Pipes and terminals are read through the event loop (a blocked read must neither stall
    the loop nor keep a thread alive at Ctrl-C); regular files and file-like objects in a
    worker thread. While a read waits longer than ``idle_s``, ``on_idle`` is awaited, e.g. to
    send what was buffered so far when a slow pipe feeds us.
    """
    read, close = await _reader(stream)
    rest = b""
    try:
        while True:
            task = asyncio.ensure_future(read())
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=idle_s)
                    if not task.done() and on_idle is not None:
                        await on_idle()
            finally:
                if not task.done():
                    task.cancel()
            data = task.result()
            if not data:
                break
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            if b"\r" in data:
                lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
            if lines:
                yield lines
    finally:
        close()
    if rest.endswith(b"\r"):
        rest = rest[:-1]
    if rest:
        yield [rest]


async def _reader(
    stream: IO[bytes],
) -> tuple[Callable[[], Awaitable[bytes]], Callable[[], None]]:
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        mode = None
    if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_SIZE)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stream
        )

        async def read_pipe() -> bytes:
            return await reader.read(_READ_SIZE)

        return read_pipe, transport.close
    read_fn = getattr(stream, "read1", stream.read)

    async def read_file() -> bytes:
        data: bytes = await asyncio.to_thread(read_fn, _READ_SIZE)
        return data

    return read_file, lambda: None
