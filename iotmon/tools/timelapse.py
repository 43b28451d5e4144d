"""Time-lapse: a simulated-time run released at ``speed`` × wall time, as the demo streams it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

from iotmon.tools.readings import Readings

__all__ = ["lines_of", "paced_chunks"]

_US: Final = 1_000_000
# How far past a line's due time the feeder sleeps: the lines due within this slack go out
# together, which keeps the feeder at ~20 wake-ups per second whatever the rate.
_PACE_SLACK_S: Final = 0.05


async def paced_chunks(
    readings: Readings, *, speed: float, stop: asyncio.Event
) -> AsyncIterator[list[bytes]]:
    """The lines of a simulated-time run, released when wall time reaches their event time
    divided by ``speed``, in chunks of what became due together. Ends when ``stop`` is set."""
    start_us = readings.start_us
    assert start_us is not None, "paced_chunks needs a simulated-time run (start_us)"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    chunk: list[bytes] = []
    for line in readings:
        # last_event_us is this line's event time: the demo has no late readings.
        assert readings.last_event_us is not None
        due = t0 + (readings.last_event_us - start_us) / _US / speed
        wait = due - loop.time()
        if wait > 0:
            if chunk:
                yield chunk
                chunk = []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait + _PACE_SLACK_S)
        if stop.is_set():
            break
        chunk.append(line)
    if chunk and not stop.is_set():
        yield chunk


async def lines_of(chunks: AsyncIterator[list[bytes]]) -> AsyncIterator[bytes]:
    """The chunks one line at a time (what a line source reads)."""
    async for chunk in chunks:
        for line in chunk:
            yield line
