"""Turn one raw line into a reading, or into a reason why it is not one.

The parser never raises on input: every line ends up either as a reading tuple
``(key, temperature, event_us)`` or as a :class:`Rejection` carrying a reason code, so
the pipeline can keep ``read == accepted + rejected`` and dead-letter what it refuses.

Event times are integer microseconds since the Unix epoch. Timestamps without an offset
are taken as UTC, like the seed's generator meant them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import orjson

from iotmon.errors import ConfigError

__all__ = [
    "DEFAULT_KEY_FIELD",
    "DEFAULT_TEMPERATURE_FIELD",
    "DEFAULT_TIME_FIELD",
    "MAX_EVENT_US",
    "MAX_KEY_LENGTH",
    "MIN_EVENT_US",
    "ParseSettings",
    "Reading",
    "ReadingParser",
    "Reason",
    "Rejection",
    "canonical_event_us",
    "format_event_time",
    "is_valid_key",
    "parse_event_time",
]

DEFAULT_KEY_FIELD: Final = "id_equipamento"
DEFAULT_TEMPERATURE_FIELD: Final = "padrao.leitura.temperatura"
DEFAULT_TIME_FIELD: Final = "data_evento"
MAX_KEY_LENGTH: Final = 256

Reading = tuple[str, float, int]
"""``(device key, temperature in °C, event time in µs since the epoch)``."""


class Reason(StrEnum):
    """Why a line was rejected; the values are stable codes used in metrics and the DLQ."""

    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_KEY = "bad_key"
    TOO_LONG = "too_long"
    """Over ``--max-line-bytes``: the source never held it whole (see ``OversizedLine``)."""
    FUTURE_TIME = "future_time"
    """More than ``--max-future`` ahead of its partition's stream or of wall time."""


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseSettings:
    """Where the fields live in a reading (dotted paths) and what counts as a valid value."""

    key_field: str = DEFAULT_KEY_FIELD
    temperature_field: str = DEFAULT_TEMPERATURE_FIELD
    time_field: str = DEFAULT_TIME_FIELD
    valid_min: float = -50.0
    valid_max: float = 200.0

    def __post_init__(self) -> None:
        for name in ("key_field", "temperature_field", "time_field"):
            path = getattr(self, name)
            if not path or any(not part for part in path.split(".")):
                raise ConfigError(f"{name.replace('_', '-')}: {path!r} is not a dotted field path")
        if not self.valid_min < self.valid_max:
            raise ConfigError(
                f"valid-range: minimum {self.valid_min} must be below maximum {self.valid_max}"
            )


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_SECONDS_CACHE_LIMIT: Final = 65536
MIN_EVENT_US: Final = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _ONE_US
MAX_EVENT_US: Final = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _ONE_US
"""The event times a reading may have: those a UTC ``datetime`` can represent."""


def _datetime_to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_US


def parse_event_time(text: str) -> int:
    """ISO-8601 text to µs since the epoch; ``ValueError`` when it is not a timestamp, or
    when its offset moves it outside the years 1..9999 UTC (``9999-12-31T23:59:59-12:00``):
    every later step (windows, alert times, reports) works in UTC datetimes."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO-8601 time (e.g. 2026-01-01T00:00:00Z)") from exc
    event_us = _datetime_to_us(moment)
    if not MIN_EVENT_US <= event_us <= MAX_EVENT_US:
        raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC")
    return event_us


_second_starts: dict[str, int] = {}
"""µs since the epoch of each second (``2023-03-15T12:15:37``) seen in the seed's layout:
a stream repeats the same second thousands of times. Shared by every parser and
:func:`canonical_event_us`; filled by :func:`_second_start` only."""


def _second_start(second: str) -> int:
    """µs since the epoch of ``second`` (``2023-03-15T12:15:37``), remembered; ValueError
    when it is not a time."""
    base = _second_starts.get(second)
    if base is None:
        base = parse_event_time(second)
        if len(_second_starts) >= _SECONDS_CACHE_LIMIT:
            _second_starts.clear()
        _second_starts[second] = base
    return base


def canonical_event_us(stamp: str) -> int:
    """µs since the epoch of a time already checked to be in the seed's layout,
    ``2023-03-15T12:15:37.166944Z`` (:mod:`iotmon.blocks` checks it): a cached lookup of
    its second plus its fraction."""
    return _second_start(stamp[:19]) + int(stamp[20:26])


_SECOND_TEXTS_CACHE_LIMIT: Final = 4096
_second_texts: dict[int, str] = {}
"""The text of each second (``2023-03-15T12:15:37.``) :func:`format_event_time` wrote: a
report or a digest writes many times from the same few seconds, and ``strftime`` costs
more than the rest of it. Filled by :func:`format_event_time` only."""


def format_event_time(event_us: int) -> str:
    """µs since the epoch to the seed's layout, ``2023-03-15T12:15:37.166944Z``."""
    seconds, fraction = divmod(event_us, 1_000_000)
    second = _second_texts.get(seconds)
    if second is None:
        second = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))
        if len(_second_texts) >= _SECOND_TEXTS_CACHE_LIMIT:
            _second_texts.clear()
        _second_texts[seconds] = second
    return f"{second}{fraction:06d}Z"


def is_valid_key(key: str) -> bool:
    """A device key is not empty, not only whitespace and at most MAX_KEY_LENGTH chars."""
    return 0 < len(key) <= MAX_KEY_LENGTH and not key.isspace()


def _split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


class ReadingParser:
    """Parses lines with fixed field paths; one instance per pipeline.

    ``parse`` is the per-line hot path: the seed layout (``...T12:15:37.166944Z``) is
    decoded with the per-second cache (``_second_starts``) instead of a full ISO parse.
    """

    __slots__ = ("_key", "_max", "_min", "_temp", "_time", "parse", "settings")

    def __init__(self, settings: ParseSettings | None = None) -> None:
        self.settings = settings or ParseSettings()
        self._key = _split(self.settings.key_field)
        self._temp = _split(self.settings.temperature_field)
        self._time = _split(self.settings.time_field)
        self._min = self.settings.valid_min
        self._max = self.settings.valid_max
        self.parse: Callable[[bytes], Reading | Rejection] = _fast_parser(self)

    def parse_strictly(self, line: bytes) -> Reading | Rejection:
        """The reference parser: checks each rule in turn and names the first one broken.

        :attr:`parse` gives the same answers faster for well-formed lines and falls back to
        this for everything else.
        """
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            message = str(exc)
            if "infinity" in message:
                return Rejection(Reason.NOT_FINITE, message)
            return Rejection(Reason.INVALID_JSON, message)
        if type(doc) is not dict:
            return Rejection(Reason.NOT_OBJECT, f"a JSON {type(doc).__name__}, not an object")

        key = _lookup(doc, self._key)
        if key is _MISSING:
            return Rejection(Reason.MISSING_FIELD, self.settings.key_field)
        if type(key) is not str:
            return Rejection(Reason.WRONG_TYPE, f"{self.settings.key_field} is not a string")
        if not is_valid_key(key):
            return Rejection(
                Reason.BAD_KEY, f"{self.settings.key_field} is empty or over {MAX_KEY_LENGTH} chars"
            )

        temperature = _lookup(doc, self._temp)
        if temperature is _MISSING:
            return Rejection(Reason.MISSING_FIELD, self.settings.temperature_field)
        kind = type(temperature)
        if kind is not float and kind is not int:
            return Rejection(
                Reason.WRONG_TYPE, f"{self.settings.temperature_field} is not a number"
            )
        value = float(temperature)
        if not math.isfinite(value):
            return Rejection(Reason.NOT_FINITE, self.settings.temperature_field)
        if not self._min <= value <= self._max:
            return Rejection(
                Reason.OUT_OF_RANGE,
                f"{self.settings.temperature_field}={value} outside {self._min}..{self._max}",
            )

        stamp = _lookup(doc, self._time)
        if stamp is _MISSING:
            return Rejection(Reason.MISSING_FIELD, self.settings.time_field)
        if type(stamp) is not str:
            return Rejection(Reason.WRONG_TYPE, f"{self.settings.time_field} is not a string")
        event_us = self._event_us(stamp)
        if event_us is None:
            return Rejection(Reason.BAD_TIMESTAMP, f"{self.settings.time_field}={stamp[:64]!r}")
        return key, value, event_us

    def _event_us(self, stamp: str) -> int | None:
        if len(stamp) == 27 and stamp[19] == "." and stamp[26] == "Z":
            fraction = stamp[20:26]
            if fraction.isascii() and fraction.isdigit():
                try:
                    return _second_start(stamp[:19]) + int(fraction)
                except ValueError:
                    return None
        try:
            return parse_event_time(stamp)
        except ValueError:
            return None


_MISSING: Final[Any] = object()


def _fast_parser(parser: ReadingParser) -> Callable[[bytes], Reading | Rejection]:
    """Build ``parse`` for this parser's field paths.

    The per-line cost is dominated by Python overhead, not by JSON decoding, so the happy
    path is compiled once into straight-line code: direct subscripts for the configured
    paths, the validity checks as one expression, and the per-second timestamp cache inline.
    Anything unusual — a decoding error, a missing field, a wrong type, a value out of range
    or an unusual timestamp — is handed to :meth:`ReadingParser.parse_strictly`, which finds
    the precise reason (or accepts it: the fast path is allowed to be conservative).

    No user value is ever written into the generated source: it depends only on how many
    parts each field path has. The field names and the valid range reach it as closure
    variables, so any float (``inf`` too) or field name is just a value.
    """

    def access(name: str, path: tuple[str, ...]) -> str:
        return "doc" + "".join(f"[{name}_{i}]" for i in range(len(path)))

    def names(name: str, path: tuple[str, ...]) -> list[str]:
        return [f"{name}_{i}" for i in range(len(path))]

    paths = {"key": parser._key, "temp": parser._temp, "time": parser._time}
    values: dict[str, Any] = {
        "loads": orjson.loads,
        "JSONDecodeError": orjson.JSONDecodeError,
        "strict": parser.parse_strictly,
        "seconds": _second_starts,
        "low": parser._min,
        "high": parser._max,
        "max_key_length": MAX_KEY_LENGTH,
    }
    for name, path in paths.items():
        values.update(zip(names(name, path), path, strict=True))
    source = f"""
def make({", ".join(values)}):
    def parse(line):
        try:
            doc = loads(line)
            key = {access("key", parser._key)}
            value = {access("temp", parser._temp)}
            stamp = {access("time", parser._time)}
        except (JSONDecodeError, KeyError, TypeError, IndexError):
            return strict(line)
        kind = type(value)
        if (
            type(key) is str
            and (kind is float or kind is int)
            and type(stamp) is str
            and 0 < len(key) <= max_key_length
            and low <= value <= high
            and len(stamp) == 27
            and stamp[26] == "Z"
            and stamp[19] == "."
            and not key.isspace()
        ):
            base = seconds.get(stamp[:19])
            fraction = stamp[20:26]
            if base is not None and fraction.isdigit() and fraction.isascii():
                return key, float(value), base + int(fraction)
        return strict(line)
    return parse
"""
    namespace: dict[str, Any] = {}
    exec(compile(source, "<iotmon.parse fast path>", "exec"), namespace)
    fast: Callable[[bytes], Reading | Rejection] = namespace["make"](**values)
    return fast


def _lookup(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if type(node) is not dict:
            return _MISSING
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node
