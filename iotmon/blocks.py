"""Parse a block of lines at once, into columns, when every line in it is a plain reading.

The per-line parser (:mod:`iotmon.parse`) pays Python's overhead for each field of each
line. Here the same work is a few passes in C over the whole block: ``orjson.loads``
mapped over the lines, :func:`operator.itemgetter` mapped over the documents, and the
validity checks on joined strings and on ``min``/``max``. The price is that a block is all
or nothing: one line that is not a plain reading (a decoding error, a missing field, a
wrong type, a value out of range, a timestamp not in the seed's layout) and
:meth:`BlockParser.columns` answers None, and the caller parses that block line by line,
where the per-line parser names each line's reason.

Event times stay strings in the seed's layout, ``2023-03-15T12:15:37.166944Z``. Every
character of each one is checked (digits where digits go, the separators where they go,
and a real date and time), so string order is time order. To check that cheaply, a block's
event times must all be in one hour (a block across an hour boundary is parsed line by line).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Final

import orjson

from iotmon.parse import ParseSettings, canonical_event_us

__all__ = ["BLOCK_LINES", "BlockParser", "Columns"]

BLOCK_LINES: Final = 512
"""Lines parsed together: large enough that the per-block passes cost next to nothing per
line, small enough that a block with a bad line costs little to parse again line by line."""

# The layout "YYYY-MM-DDTHH:MM:SS.ffffffZ". A block's event times are checked joined by
# newlines, each digit turned into "0": then the whole must be this shape repeated, which
# also proves each of them is one whole event time (a newline inside one would be one too
# many). The date and hour, "YYYY-MM-DDTHH", are the same in every event time of a block,
# so whether they are a real date and hour is checked once.
_SHAPE: Final = b"0000-00-00T00:00:00.000000Z\n"
_SHAPES: Final = _SHAPE * BLOCK_LINES
_ZERO_DIGITS: Final = bytes.maketrans(b"123456789", b"000000000")
_TENS: Final = (14, 17)
"""Where the tens of minutes and of seconds are: digits up to 5."""
_UP_TO_FIVE: Final = b"012345"
_HOUR: Final = 13
_HOURS_CACHE_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class Columns:
    """The readings of a block, one list per field, in line order."""

    keys: list[str]
    values: list[Any]
    """Numbers in the valid range; ints (and bools, which the caller must refuse) included."""
    stamps: list[str]
    """Event times in the seed's layout, all checked, all in the same hour."""
    latest_us: int
    """The latest event time of the block, µs since the epoch."""


class BlockParser:
    """Columns of whole blocks for one field layout; keeps a cache of the hours seen."""

    __slots__ = ("_high", "_hours", "_key", "_low", "_stamp", "_value")

    def __init__(self, settings: ParseSettings) -> None:
        self._key = _getters(settings.key_field)
        self._value = _getters(settings.temperature_field)
        self._stamp = _getters(settings.time_field)
        self._low = settings.valid_min
        self._high = settings.valid_max
        self._hours: set[str] = set()

    def columns(self, lines: Sequence[bytes]) -> Columns | None:
        """The block's columns, or None when some line is not a plain reading (or there
        are no lines)."""
        if not lines:
            return None
        try:
            docs = list(map(orjson.loads, lines))
            keys = _column(docs, self._key)
            values = _column(docs, self._value)
            stamps = _column(docs, self._stamp)
            # Raise TypeError unless every key and every event time is a string, and unless
            # the values are comparable numbers (bools pass; the caller checks types).
            "".join(keys)
            joined = "\n".join(stamps)
            if min(values) < self._low or max(values) > self._high:
                return None
            text = joined.encode("ascii")
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, UnicodeEncodeError):
            return None
        n = len(stamps)
        size = len(_SHAPE) * n - 1
        shapes = _SHAPES if n <= BLOCK_LINES else _SHAPE * n
        if len(text) != size or text.translate(_ZERO_DIGITS) != shapes[:size]:
            return None
        for position in _TENS:
            if text[position :: len(_SHAPE)].translate(None, _UP_TO_FIVE):
                return None
        # Same shape, so string order is time order: the first and the last event time
        # share their hour only if all of them do.
        first, last = min(stamps), max(stamps)
        hour = first[:_HOUR]
        if last[:_HOUR] != hour or (hour not in self._hours and not self._learn(hour)):
            return None
        return Columns(keys, values, stamps, canonical_event_us(last))

    def _learn(self, hour: str) -> bool:
        """Remember ``hour`` (``2023-03-15T12``, its shape already checked) if it is a real
        date and hour."""
        try:
            datetime.fromisoformat(hour + ":00:00")
        except ValueError:
            return False
        if len(self._hours) >= _HOURS_CACHE_LIMIT:
            self._hours.clear()
        self._hours.add(hour)
        return True


def _getters(path: str) -> list[Callable[[Any], Any]]:
    return [itemgetter(part) for part in path.split(".")]


def _column(docs: list[Any], getters: list[Callable[[Any], Any]]) -> list[Any]:
    """One field of every document; KeyError or TypeError if one has no such field."""
    column: Any = docs
    for get in getters:
        column = map(get, column)
    return list(column)
