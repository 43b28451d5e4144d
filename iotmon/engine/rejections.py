"""Why the data path rejects a parsed-looking line: too long to be a reading, or dated too
far ahead of its stream (:mod:`iotmon.engine.horizon`)."""

from __future__ import annotations

from collections.abc import Callable

from iotmon.engine.partition import PartitionState
from iotmon.parse import Reading, Reason, Rejection, format_event_time
from iotmon.sources.base import Batch, OversizedLine
from iotmon.state.deadletters import DeadLetters

__all__ = ["capped", "reject", "too_far_ahead"]


def capped(
    parse: Callable[[bytes], Reading | Rejection], max_line_bytes: int
) -> Callable[[bytes], Reading | Rejection]:
    """``parse`` for a batch with lines too long to be readings (see ``OversizedLine``)."""

    def parse_capped(line: bytes) -> Reading | Rejection:
        if type(line) is OversizedLine:
            return Rejection(
                Reason.TOO_LONG,
                f"a line of {line.length} bytes, over the limit of {max_line_bytes} "
                f"(max_line_bytes); kept here: its first {len(line)} bytes",
            )
        return parse(line)

    return parse_capped


def too_far_ahead(event_us: int, now_us: int, *, field: str, max_future: float) -> Rejection:
    """The rejection of a reading at ``event_us`` beyond its bound, at wall time ``now_us``."""
    if event_us > now_us + round(max_future * 1_000_000):
        than = f"wall time ({format_event_time(now_us)})"
    else:
        than = "the latest readings of its partition"
    return Rejection(
        Reason.FUTURE_TIME,
        f"{field}={format_event_time(event_us)} is more than {max_future:g} s (max_future) "
        f"ahead of {than}",
    )


def reject(
    part: PartitionState,
    batch: Batch,
    index: int,
    line: bytes,
    dead_letters: DeadLetters,
    rejection: Rejection,
) -> None:
    """Count line ``index`` of ``batch`` as rejected and keep it as a dead letter."""
    part.rejected[rejection.reason.value] += 1
    key = batch.key_of(index) if batch.key_of is not None else None
    dead_letters.put(part.name, batch.positions[index], line, rejection, key)
