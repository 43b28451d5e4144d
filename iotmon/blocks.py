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

# The layout "YYYY-MM-DDTHH:MM:SS.ffffffZ". The date and hour, "YYYY-MM-DDTHH", are the same
# in every event time of a block, so they are checked once; the rest in each of them.
_STAMP_LENGTH: Final = 27
_HOUR: Final = 13
_HOUR_SEPARATORS: Final = ((4, "-"), (7, "-"), (10, "T"))
_SEPARATORS: Final = ((13, ":"), (16, ":"), (19, "."), (26, "Z"))
_DIGITS: Final = (14, 15, 17, 18, 20, 21, 22, 23, 24, 25)
"""Where the rest has digits; the first and third (tens of minutes and of seconds) are
at most 5."""
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
            joined = "".join(stamps)
            if min(values) < self._low or max(values) > self._high:
                return None
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            return None
        n = len(stamps)
        if set(map(len, stamps)) != {_STAMP_LENGTH}:
            return None
        hour = joined[:_HOUR]
        for position in range(_HOUR):
            if joined[position::_STAMP_LENGTH] != hour[position] * n:
                return None
        if hour not in self._hours and not self._learn(hour):
            return None
        for position, char in _SEPARATORS:
            if joined[position::_STAMP_LENGTH] != char * n:
                return None
        digits = "".join([joined[p::_STAMP_LENGTH] for p in _DIGITS])
        if not (digits.isascii() and digits.isdigit()):
            return None
        if max(digits[:n]) > "5" or max(digits[2 * n : 3 * n]) > "5":
            return None
        return Columns(keys, values, stamps, canonical_event_us(max(stamps)))

    def _learn(self, hour: str) -> bool:
        """Remember ``hour`` (``2023-03-15T12``) if it is a real one, in the layout."""
        if not (hour.isascii() and hour[:4].isdigit()) or any(
            hour[position] != char for position, char in _HOUR_SEPARATORS
        ):
            return False
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
