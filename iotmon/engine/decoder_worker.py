"""The decode worker: a second process that turns blocks of lines into columns.

Started by :class:`iotmon.engine.decoder.BlockDecoder`, which calls :func:`main` in a new
interpreter; not a command for people. It speaks over its stdin and
stdout, in frames that start with their length as a little-endian ``u32``:

- first the parent sends the parse settings (pickled, see :func:`settings_frame`: they
  come from the process that started this one, over its own pipe), and the worker
  answers one byte, ``R``, once it is ready;
- then, for each request, the parent sends ``<n lines> <bytes>`` (two ``u32``) and the
  lines joined by ``\\n``; the worker answers one frame per block of
  :data:`~iotmon.blocks.BLOCK_LINES` lines, in order: empty when that block is not all plain
  readings, else its columns as JSON ``[keys, values, stamps, latest_us]`` (orjson writes
  every float so that it reads back as the same double). When the data does not split into
  ``n`` lines (a line held a ``\\n``) the answer is one frame of :data:`UNSPLIT`.

It ignores SIGINT (a Ctrl-C in the terminal is the parent's to handle) and exits when its
stdin closes, so it never outlives the parent.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import struct
from typing import Final

import orjson

from iotmon.blocks import BLOCK_LINES, BlockParser
from iotmon.parse import ParseSettings

__all__ = ["READY", "REQUEST", "SIZE", "UNSPLIT", "main", "settings_frame"]

SIZE: Final = struct.Struct("<I")
REQUEST: Final = struct.Struct("<II")
READY: Final = b"R"
UNSPLIT: Final = b"!"


def settings_frame(settings: ParseSettings) -> bytes:
    """The first frame: the parse settings, whole (every field, however many it gets)."""
    payload = pickle.dumps(settings)
    return SIZE.pack(len(payload)) + payload


def _read_exactly(size: int) -> bytes | None:
    """``size`` bytes of stdin, or None at its end."""
    parts = []
    while size:
        part = os.read(0, min(size, 1 << 20))
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _write(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def main() -> None:
    """Serve requests until stdin closes (or stdout does: the parent has gone)."""
    try:
        _serve()
    except BrokenPipeError:
        # Quietly: the interpreter would report the broken stdout again while exiting.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)


def _serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    header = _read_exactly(SIZE.size)
    if header is None:
        return
    payload = _read_exactly(SIZE.unpack(header)[0])
    if payload is None:
        return
    settings = pickle.loads(payload)
    if not isinstance(settings, ParseSettings):
        raise TypeError(f"expected ParseSettings, got {type(settings).__name__}")
    parser = BlockParser(settings)
    # As in the main process: the decoded documents are short-lived and have no cycles.
    gc.freeze()
    gc.set_threshold(5_000, 10, 10)
    _write(READY)
    dumps = orjson.dumps
    while True:
        header = _read_exactly(REQUEST.size)
        if header is None:
            return
        count, size = REQUEST.unpack(header)
        data = _read_exactly(size)
        if data is None:
            return
        lines = data.split(b"\n")
        if len(lines) != count:
            _write(SIZE.pack(len(UNSPLIT)) + UNSPLIT)
            continue
        for start in range(0, count, BLOCK_LINES):
            columns = parser.columns(lines[start : start + BLOCK_LINES])
            if columns is None:
                _write(SIZE.pack(0))
            else:
                frame = dumps([columns.keys, columns.values, columns.stamps, columns.latest_us])
                _write(SIZE.pack(len(frame)) + frame)
