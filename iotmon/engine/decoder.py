"""Decode a batch's blocks of lines into columns, on a second core when there is one.

Decoding (``orjson.loads`` and the column passes of :mod:`iotmon.blocks`) is about half of
what a plain reading costs, and CPython runs one thread of Python at a time. So for large
batches a worker process (:mod:`iotmon.engine.decoder_worker`) decodes block after block
while this process applies the blocks before them: the two overlap, and a batch takes
about as long as the slower of the two instead of their sum.

What the worker answers is what :meth:`BlockParser.columns
<iotmon.blocks.BlockParser.columns>` answers here: the same code on the same lines, its
columns sent back as JSON that reads back as the same strings, ints and doubles. Nothing
depends on the worker being there: small batches (a live stream's) are decoded here,
without the round trip; a batch is decoded here while the worker starts; and if the worker
fails or stalls, the blocks it has not answered are decoded here, once and for all
(a warning says so). The lines never leave this process, so nothing can be lost with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import subprocess
import sys
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import orjson

import iotmon
from iotmon.blocks import BLOCK_LINES, BlockParser, Columns
from iotmon.engine.decoder_worker import READY, REQUEST, SIZE, UNSPLIT, settings_frame
from iotmon.errors import IotmonError
from iotmon.parse import ParseSettings
from iotmon.sources.base import Joined

__all__ = ["WORKER_MIN_LINES", "BlockDecoder"]

log = logging.getLogger(__name__)

WORKER_MIN_LINES: Final = 2 * BLOCK_LINES
"""Smaller batches are decoded here: the round trip would cost more than it overlaps."""
_WORKER_MAIN: Final = (
    "import sys; sys.path.append({home!r}); from iotmon.engine.decoder_worker import main; main()"
)
_KEPT_ENV: Final = frozenset(
    {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "VIRTUAL_ENV", "SYSTEMROOT"}
)
_PIPE_BYTES: Final = 1 << 20
_STALL_SECONDS: Final = 30.0
"""A block takes the worker about a millisecond; one that takes this long, it never will."""


class _WorkerFailed(IotmonError):
    """Never leaves this module: the batch is decoded here instead."""


class _Unsplit:
    """The worker's answer when a line held a newline: the lines are decoded here."""


_UNSPLIT_ANSWER: Final = _Unsplit()


class BlockDecoder:
    """Yields the columns of each block of a batch, in order (None for a block that is not
    all plain readings); ``worker=False`` decodes everything in this process."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_parser",
        "_process",
        "_ready",
        "_sent",
        "_settings",
        "_stopper",
    )

    def __init__(self, settings: ParseSettings, *, worker: bool) -> None:
        self._parser = BlockParser(settings)
        # None: no worker, now or later (turned off, one core, or it failed once).
        self._settings: ParseSettings | None = settings
        if not worker or _cores() < 2 or not sys.executable:
            self._settings = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._buffer = bytearray()
        self._sent: deque[tuple[Sequence[bytes], list[Sequence[bytes]], int]] = deque()
        """Batches the worker has (the lines, their blocks, and how many of those it has),
        in order."""
        self._stopper: weakref.finalize[[subprocess.Popen[bytes]], BlockDecoder] | None = None

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id, once it is ready."""
        return self._process.pid if self._process is not None and self._ready else None

    def start_worker(self, *, wait: float = 0.0) -> bool:
        """Start the worker now rather than on the first large batch, waiting up to
        ``wait`` seconds for it to be ready; whether it is."""
        return self._worker_ready(wait)

    def send_ahead(self, lines: Sequence[bytes], *, joined: Joined | None = None) -> None:
        """Give the worker a batch that :meth:`columns` will be asked for after those given
        already, so that it decodes it while this process applies the ones before it."""
        if len(lines) >= WORKER_MIN_LINES and self._worker_ready():
            # All of it: by the time it is asked for, the worker has had time for it.
            blocks = _blocks(lines)
            sent = self._send(blocks, joined, keep=0)
            if sent:
                self._sent.append((lines, blocks, sent))

    def columns(
        self, lines: Sequence[bytes], *, joined: Joined | None = None
    ) -> Iterator[Columns | None]:
        """The columns of ``lines[0:BLOCK_LINES]``, ``lines[BLOCK_LINES:2*BLOCK_LINES]``, …;
        ``joined``, ``b"\\n".join(lines)`` if the caller has it, saves making it."""
        decode = self._parser.columns
        ahead = self._sent_for(lines)
        if ahead is not None:
            blocks, sent = ahead
        else:
            blocks = _blocks(lines)
            if self._sent or len(lines) < WORKER_MIN_LINES or not self._worker_ready():
                # (Behind batches sent ahead, its answers would come after theirs.)
                yield from map(decode, blocks)
                return
            # Asked for now: the last third is decoded here while the worker starts on the
            # rest. Applying a block costs this process about what decoding one costs the
            # worker, so a third keeps either from waiting long for the other.
            sent = self._send(blocks, joined, keep=max(1, len(blocks) // 3))
        # The blocks the worker did not get are decoded here (while it starts on its own).
        mine = [decode(block) for block in blocks[sent:]]
        yielded = 0
        abandoned = True
        try:
            for block in blocks[:sent]:
                answer = self._answer()
                # (_Unsplit: a line of it holds a newline.)
                yield decode(block) if isinstance(answer, _Unsplit) else answer
                yielded += 1
            abandoned = False
        except (_WorkerFailed, OSError, ValueError) as exc:
            abandoned = False
            self._fail(exc)
        finally:
            if abandoned and self._process is not None:
                # Left midway: the rest of its answers would be taken for the next batch's.
                self._fail(_WorkerFailed("a batch was left before its last block"))
        # What the worker did not answer, if it failed, is decoded here.
        for block in blocks[yielded:sent]:
            yield decode(block)
        yield from mine

    def close(self) -> None:
        """Stop the worker (it exits when its input closes)."""
        stopper, self._stopper = self._stopper, None
        self._process = None
        self._ready = False
        if stopper is not None:
            stopper()

    # -- the worker ---------------------------------------------------------------------

    def _worker_ready(self, wait: float = 0.0) -> bool:
        """Start the worker on the first large batch and use it once it has said it is
        ready; until then (and for good if it fails) batches are decoded here."""
        if self._ready:
            return True
        if self._settings is None:
            return False
        try:
            process = self._process or self._start()
            assert process.stdout is not None
            readable, _, _ = select.select([process.stdout], [], [], wait)
            if not readable:
                return False
            if os.read(process.stdout.fileno(), len(READY)) != READY:
                raise _WorkerFailed(f"it exited while starting (code {process.poll()})")
        except (_WorkerFailed, OSError) as exc:
            self._fail(exc)
            return False
        self._ready = True
        return True

    def _start(self) -> subprocess.Popen[bytes]:
        assert self._settings is not None
        # The worker finds iotmon as this process did, or else where this one came from
        # (a path added at run time); last, so that nothing there shadows the standard
        # library.
        home = str(Path(iotmon.__file__).resolve().parent.parent)
        # Only what the interpreter needs to start as this one did: none of the secrets an
        # operator may have put in the environment (SMTP password, webhook URLs).
        env = {k: v for k, v in os.environ.items() if k.startswith("PYTHON") or k in _KEPT_ENV}
        process = self._process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_MAIN.format(home=home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert process.stdin is not None and process.stdout is not None
        os.set_blocking(process.stdin.fileno(), False)
        for pipe in (process.stdin, process.stdout):
            _widen(pipe.fileno())
        # Stopped by close(), or when this object goes away or the interpreter exits.
        self._stopper = weakref.finalize(self, _stop, process)
        self._write(settings_frame(self._settings))
        log.debug("decode worker started (pid %d)", process.pid)
        return process

    def _send(self, blocks: list[Sequence[bytes]], joined: Joined | None, *, keep: int) -> int:
        """Send the worker all ``blocks`` of a batch but the last ``keep``, one request
        each (so that it starts on the first at once); returns how many it got."""
        sent = max(0, len(blocks) - keep)
        view = None if joined is None else memoryview(joined)
        start = 0
        try:
            for block in blocks[:sent]:
                if view is None:
                    data: Joined = b"\n".join(block)
                else:
                    end = start + sum(map(len, block)) + len(block) - 1
                    data = view[start:end]
                    start = end + 1
                self._write(REQUEST.pack(len(block), len(data)))
                self._write(data)
        except (_WorkerFailed, OSError) as exc:
            self._fail(exc)
            return 0
        return sent

    def _sent_for(self, lines: Sequence[bytes]) -> tuple[list[Sequence[bytes]], int] | None:
        """The blocks of ``lines`` and how many of them the worker has, if it was sent
        ahead (else None): the answers of batches sent before it, which will not be asked
        for now, are read and dropped."""
        if not any(batch is lines for batch, _, _ in self._sent):
            return None
        while True:
            batch, blocks, sent = self._sent.popleft()
            if batch is lines:
                return blocks, sent
            try:
                for _ in range(sent):
                    self._answer()
            except (_WorkerFailed, OSError, ValueError) as exc:
                self._fail(exc)
                return None

    def _answer(self) -> Columns | _Unsplit | None:
        """The next block's columns, or _Unsplit (the worker could not split the lines)."""
        while not (end := self._answer_end()):
            self._exchange(b"", wait=True)
        buffer = self._buffer
        frame = buffer[SIZE.size : end]  # the one copy: orjson reads a bytearray as is
        del buffer[:end]
        if frame == UNSPLIT:
            return _UNSPLIT_ANSWER
        if not frame:
            return None
        keys, values, stamps, latest_us = orjson.loads(frame)
        return Columns(keys, values, stamps, latest_us)

    def _answer_end(self) -> int:
        """Where the next answer ends in the buffer, 0 until all of it is there."""
        buffer = self._buffer
        if len(buffer) < SIZE.size:
            return 0
        end = SIZE.size + SIZE.unpack_from(buffer)[0]
        return end if len(buffer) >= end else 0

    def _write(self, data: Joined) -> None:
        view = memoryview(data)
        while view:
            view = view[self._exchange(view, wait=True) :]

    def _exchange(self, data: memoryview | bytes, *, wait: bool) -> int:
        """Write what the worker takes of ``data`` now, and read what it has answered; with
        ``wait``, first wait until one of them can happen. Returns how much was written.

        Never blocks in a write: a batch need not fit in the pipe, and the worker, writing
        answers that fill its own, would wait for this side to read them while this side
        waited for it to read."""
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        readers = [process.stdout]
        writers = [process.stdin] if data else []
        readable, writable, _ = select.select(readers, writers, [], _STALL_SECONDS if wait else 0)
        if wait and not (readable or writable):
            raise _WorkerFailed(f"it has not answered for {_STALL_SECONDS:.0f} s")
        written = 0
        if writable:
            try:
                written = os.write(process.stdin.fileno(), data)
            except BlockingIOError:
                written = 0
        if readable:
            chunk = os.read(process.stdout.fileno(), 1 << 20)
            if not chunk:
                raise _WorkerFailed(f"it exited (code {process.poll()})")
            self._buffer += chunk
        return written

    def _fail(self, exc: BaseException) -> None:
        log.warning(
            "the decode worker stopped (%s); decoding in this process from now on, which is "
            "slower but loses nothing (if this repeats, check memory and process limits)",
            exc,
        )
        self.close()
        self._settings = None
        self._buffer.clear()
        self._sent.clear()


def _blocks(lines: Sequence[bytes]) -> list[Sequence[bytes]]:
    return [lines[start : start + BLOCK_LINES] for start in range(0, len(lines), BLOCK_LINES)]


def _stop(process: subprocess.Popen[bytes]) -> None:
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()
    try:
        process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _widen(fd: int) -> None:
    """Make the pipe hold a few blocks, so that one goes across in one write (Linux; the
    default of 64 KiB is not even one block)."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
