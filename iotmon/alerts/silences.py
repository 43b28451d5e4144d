"""Silences: "we know, it's being repaired — stop mailing us about it".

A :class:`Silence` covers the devices whose key its pattern matches (the same glob as the
per-device rules, :func:`~iotmon.alerts.rules.device_matches`) between two wall-clock
times. A silenced device keeps its statistics and its alert state machine; only what is
*told* changes: digests leave it out and count it (:attr:`Digest.silenced
<iotmon.alerts.model.Digest.silenced>`), see :mod:`iotmon.alerts.digest`.

Wall time, not event time: a silence is a person's promise about the present ("for the
next two hours"), and a replay of last week's readings must not be silenced by it any less
than a live run — it is asked when a digest is built.

Where silences live is a store's business (:class:`SilenceStore`): a file in the state
directory for file input (:mod:`iotmon.state.silences`), a compacted topic for Kafka input
(:mod:`iotmon.kafka.silences`). A running consumer holds a :class:`Silences`, the live
set its store's watcher keeps up to date.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, TypeAlias

from iotmon.alerts.rules import device_matches
from iotmon.errors import ConfigError, IotmonError

__all__ = [
    "Clock",
    "Silence",
    "SilenceError",
    "SilenceState",
    "SilenceStore",
    "SilenceWatch",
    "Silences",
    "ended_ids",
    "find",
    "new_silence",
    "parse_duration",
    "parse_time",
]

Clock: TypeAlias = Callable[[], float]
"""Wall time in seconds since the epoch (:func:`time.time`; tests pass their own)."""
SilenceState: TypeAlias = Literal["pending", "active", "ended"]

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class SilenceError(IotmonError):
    """A silence that cannot be added, found or expired; the message says what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    """Hold back notifications about the devices matching ``pattern`` from ``starts_at``
    until ``ends_at`` (wall time, seconds since the epoch)."""

    id: str
    pattern: str
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""
    created_at: float = 0.0

    def state(self, now: float) -> SilenceState:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "ended"

    def covers(self, device: str) -> bool:
        return device_matches(device, self.pattern)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pattern": self.pattern,
            "starts_at": _iso(self.starts_at),
            "ends_at": _iso(self.ends_at),
            "comment": self.comment,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Silence:
        """ValueError (or KeyError) for a malformed record."""
        return cls(
            id=str(doc["id"]),
            pattern=str(doc["pattern"]),
            starts_at=_from_iso(doc["starts_at"]),
            ends_at=_from_iso(doc["ends_at"]),
            comment=str(doc.get("comment", "")),
            created_by=str(doc.get("created_by", "")),
            created_at=_from_iso(doc.get("created_at", doc["starts_at"])),
        )


def new_silence(
    *,
    pattern: str,
    duration: float | None = None,
    until: float | None = None,
    comment: str = "",
    created_by: str = "",
    now: float,
) -> Silence:
    """A silence starting ``now`` for ``duration`` seconds or ``until`` a wall time (exactly
    one of them). ConfigError naming the setting for a bad value."""
    if not pattern:
        raise ConfigError("pattern: must be a non-empty glob on the device key, e.g. 'Sensor-*'")
    if (duration is None) == (until is None):
        raise ConfigError(
            "for: give the silence a length with `for` (e.g. 2h) or an end with `until`, "
            "one of the two",
            setting=("for", "until"),
        )
    if duration is not None:
        if not (math.isfinite(duration) and duration > 0):
            raise ConfigError(f"for: must be a positive duration, got {duration}")
        ends_at = now + duration
    else:
        assert until is not None
        if until <= now:
            raise ConfigError(f"until: {_iso(until)} is not in the future (now: {_iso(now)})")
        ends_at = until
    return Silence(
        id=uuid.uuid4().hex[:12],
        pattern=pattern,
        starts_at=now,
        ends_at=ends_at,
        comment=comment,
        created_by=created_by,
        created_at=now,
    )


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1d``, ``1h30m`` or plain seconds → seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(
            f"for: {text!r} is not a duration; write it like 90s, 15m, 2h, 1d or 1h30m"
        )
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_time(text: str) -> float:
    """An ISO 8601 time (``2026-12-01T18:00``, UTC unless it names an offset) → seconds."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"until: {text!r} is not a time; write it like 2026-12-01T18:00Z (ISO 8601)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class Silences:
    """The silences a process knows of, kept up to date by its store's watcher, asked
    "is this device silenced now?" by the alerter."""

    def __init__(self, silences: Iterable[Silence] = (), *, clock: Clock = time.time) -> None:
        self.clock = clock
        self._all: dict[str, Silence] = {s.id: s for s in silences}
        self._version = 0
        self._memo: tuple[object, tuple[Silence, ...]] | None = None

    def replace(self, silences: Iterable[Silence]) -> None:
        """The store's whole current set (a re-read file)."""
        self._all = {s.id: s for s in silences}
        self._version += 1

    def put(self, silence: Silence) -> None:
        self._all[silence.id] = silence
        self._version += 1

    def remove(self, silence_id: str) -> None:
        if self._all.pop(silence_id, None) is not None:
            self._version += 1

    def all(self) -> list[Silence]:
        """Every silence known, active or not, oldest first."""
        return sorted(self._all.values(), key=lambda s: (s.created_at, s.id))

    def active(self) -> tuple[Silence, ...]:
        """The silences in force now."""
        now = self.clock()
        # Asked on every tick: the answer changes only with the set or at a silence's start
        # or end, so the list is kept until then.
        key = (self._version, tuple(s.state(now) for s in self._all.values()))
        if self._memo is None or self._memo[0] != key:
            found = tuple(s for s in self.all() if s.state(now) == "active")
            self._memo = (key, found)
        return self._memo[1]

    def silenced(self, device: str) -> bool:
        """Whether an active silence covers ``device`` now."""
        return bool(self.covered((device,)))

    def covered(self, devices: Iterable[str]) -> set[str]:
        """The ``devices`` an active silence covers now: the silences in force are found
        once for all of them (a digest may list thousands)."""
        active = self.active()
        if not active:
            return set()
        return {d for d in devices if any(s.covers(d) for s in active)}

    def generation(self) -> object:
        """Changes whenever the answer of :meth:`silenced` may have changed."""
        return tuple(s.id for s in self.active())

    def __len__(self) -> int:
        return len(self._all)


class SilenceStore(Protocol):
    """Where silences are kept: what `iotmon silence` uses."""

    async def read(self) -> list[Silence]:
        """Every silence stored (ended ones that were not cleaned up yet included)."""
        ...

    async def add(self, silence: Silence) -> None: ...

    async def expire(self, silence_id: str) -> Silence:
        """End a silence now (it is removed); SilenceError if there is no such id."""
        ...


class SilenceWatch(Protocol):
    """Keeps a running consumer's :class:`Silences` up to date with its store."""

    silences: Silences

    async def start(self) -> None:
        """Load the current silences, then follow changes in the background."""
        ...

    async def aclose(self) -> None: ...


def ended_ids(silences: Iterable[Silence], now: float) -> list[str]:
    """The silences that are over: a store drops them when it writes."""
    return [s.id for s in silences if s.state(now) == "ended"]


def find(silences: Iterable[Silence], silence_id: str) -> Silence:
    """The silence with ``silence_id`` (a unique prefix will do); SilenceError otherwise."""
    found = [s for s in silences if s.id.startswith(silence_id)] if silence_id else []
    exact = [s for s in found if s.id == silence_id]
    if exact:
        return exact[0]
    if len(found) == 1:
        return found[0]
    if not found:
        raise SilenceError(f"no silence {silence_id!r}; `iotmon silence list` shows their ids")
    raise SilenceError(
        f"{silence_id!r} is the start of {len(found)} silence ids; give more of it "
        "(`iotmon silence list` shows them)"
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _from_iso(text: object) -> float:
    if not isinstance(text, str):
        raise ValueError(f"silence: expected an ISO 8601 time, got {text!r}")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
