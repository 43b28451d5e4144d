"""The checkpoint documents, typed: what a partition checkpoint and ``process.json`` hold.

This is the one place that turns them into JSON-able bodies and back. The envelope around
a body (format name, version, checksum) and the files themselves are
:mod:`iotmon.state.statedir`'s; the statistics and alert states inside a partition
document are their owners' documents (:meth:`StatsTable.to_document
<iotmon.stats.StatsTable.to_document>`, :meth:`AlertTracker.to_document
<iotmon.alerts.AlertTracker.to_document>`), carried here as opaque JSON objects and checked
by those owners when restored.

Unannounced alert changes are stored as compact rows (``Change.to_list()``) and are
:class:`~iotmon.alerts.Change` records everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from iotmon.alerts.digest import Change
from iotmon.errors import IotmonError
from iotmon.sources.base import Position

__all__ = [
    "DocumentError",
    "JsonObject",
    "PartitionDocument",
    "ProcessDocument",
    "WindowFields",
    "decode_partition_body",
    "decode_process_body",
    "partition_body",
    "process_body",
]

JsonObject: TypeAlias = Mapping[str, object]
"""A JSON object whose members belong to another module (statistics, alert states)."""

_POSITION_INTS: Final = ("offset", "line", "fingerprint_len")


class DocumentError(IotmonError, ValueError):
    """A field of a checkpoint with the wrong type: ``field`` names it, ``found`` shows it."""

    def __init__(self, field: str, want: str, found: object) -> None:
        super().__init__(f"{field} must be {want}, found {repr(found)[:60]}")
        self.field = field


@dataclass(frozen=True, slots=True)
class WindowFields:
    """The window settings a partition's statistics were built with (they must match)."""

    window_us: int
    pane_us: int
    lateness_us: int


@dataclass(slots=True, kw_only=True)
class PartitionDocument:
    """One partition's checkpoint: everything needed to carry on where it left off."""

    partition: str
    position: Position | None
    read: int
    accepted: int
    rejected: dict[str, int]
    head_us: int
    head_wall_us: int
    dlq_size: int
    window: WindowFields
    stats: object
    """The statistics table's document (with lazily encoded members when written)."""
    alerts: JsonObject
    """The alert tracker's document."""
    announce: list[Change] = field(default_factory=list)
    checkpoint: str | None = None
    """Identity of the checkpoint (None in documents from before checkpoints had one)."""

    @property
    def offset(self) -> int:
        """The source offset the document includes (-1: none, or not an offset source)."""
        offset = None if self.position is None else self.position.get("offset")
        return offset if type(offset) is int else -1


@dataclass(slots=True, kw_only=True)
class ProcessDocument:
    """``process.json``: the process-wide alert schedule and the stream clock."""

    alerter: JsonObject = field(default_factory=dict)
    clock_us: int = 0
    outbox_seq: int | None = None
    """The newest notification a durable checkpoint covers (see the commit gate)."""
    silences: list[JsonObject] = field(default_factory=list)
    """The silences the consumer knew of when it wrote this (``Silence.to_json``), for
    ``iotmon status``: a Kafka group keeps them in a topic that command does not read."""


def partition_body(doc: PartitionDocument) -> dict[str, object]:
    """The JSON-able body of ``doc`` (without the envelope), in the on-disk layout."""
    return {
        "position": doc.position,
        "counters": {"read": doc.read, "accepted": doc.accepted, "rejected": doc.rejected},
        "head_us": doc.head_us,
        "head_wall_us": doc.head_wall_us,
        "dlq_size": doc.dlq_size,
        "window": {
            "window_us": doc.window.window_us,
            "pane_us": doc.window.pane_us,
            "lateness_us": doc.window.lateness_us,
        },
        "stats": doc.stats,
        "alerts": doc.alerts,
        "announce": [change.to_list() for change in doc.announce],
        "checkpoint": doc.checkpoint,
    }


def decode_partition_body(raw: Mapping[str, object]) -> PartitionDocument:
    """The typed document from a decoded JSON object; :class:`DocumentError` names the
    first field of a wrong type, ValueError a malformed change row."""
    position = raw.get("position")
    if position is not None:
        if type(position) is not dict:
            raise DocumentError("position", "an object", position)
        for name in _POSITION_INTS:
            if name in position and not _is_count(position[name]):
                raise DocumentError(f"position.{name}", "a whole number >= 0", position[name])
        if not isinstance(position.get("fingerprint", ""), str):
            raise DocumentError("position.fingerprint", "a string", position["fingerprint"])
    counters = _object(raw, "counters")
    read, accepted = (_count(counters, name, f"counters.{name}") for name in ("read", "accepted"))
    rejected = counters.get("rejected")
    if type(rejected) is not dict or not all(_is_count(n) for n in rejected.values()):
        raise DocumentError("counters.rejected", "an object of whole numbers >= 0", rejected)
    head_us, dlq_size = (_int(raw, name) for name in ("head_us", "dlq_size"))
    head_wall_us = raw.get("head_wall_us", 0)
    if type(head_wall_us) is not int:
        raise DocumentError("head_wall_us", "a whole number", head_wall_us)
    window = _object(raw, "window")
    announce = raw.get("announce", [])
    if not isinstance(announce, list) or not all(isinstance(r, list) for r in announce):
        raise DocumentError("announce", "a list of change rows", announce)
    checkpoint = raw.get("checkpoint")
    return PartitionDocument(
        partition=str(raw.get("partition")),
        position=position,
        read=read,
        accepted=accepted,
        rejected={str(reason): count for reason, count in rejected.items()},
        head_us=head_us,
        head_wall_us=head_wall_us,
        dlq_size=dlq_size,
        window=WindowFields(
            **{name: _int(window, name, f"window.{name}") for name in _WINDOW_FIELDS}
        ),
        stats=_object(raw, "stats"),
        alerts=_object(raw, "alerts"),
        announce=[Change.from_list(row) for row in announce],
        checkpoint=None if checkpoint is None else str(checkpoint),
    )


def process_body(doc: ProcessDocument) -> dict[str, object]:
    return {
        "alerter": doc.alerter,
        "clock_us": doc.clock_us,
        "outbox_seq": doc.outbox_seq,
        "silences": doc.silences,
    }


def decode_process_body(raw: Mapping[str, object]) -> ProcessDocument:
    alerter = raw.get("alerter", {})
    if type(alerter) is not dict:
        raise DocumentError("alerter", "an object", alerter)
    clock_us = raw.get("clock_us", 0)
    if type(clock_us) is not int:
        raise DocumentError("clock_us", "a whole number", clock_us)
    seq = raw.get("outbox_seq")
    if seq is not None and type(seq) is not int:
        raise DocumentError("outbox_seq", "a whole number or null", seq)
    # Absent from documents written before silences existed.
    silences = raw.get("silences", [])
    if type(silences) is not list or not all(type(s) is dict for s in silences):
        raise DocumentError("silences", "a list of objects", silences)
    return ProcessDocument(alerter=alerter, clock_us=clock_us, outbox_seq=seq, silences=silences)


_WINDOW_FIELDS: Final = ("window_us", "pane_us", "lateness_us")


def _object(raw: Mapping[str, object], name: str) -> dict[str, object]:
    value = raw.get(name)
    if type(value) is not dict:
        raise DocumentError(name, "an object", value)
    return value


def _int(raw: Mapping[str, object], name: str, shown: str | None = None) -> int:
    value = raw.get(name)
    if type(value) is not int:
        raise DocumentError(shown or name, "a whole number", value)
    return value


def _count(raw: Mapping[str, object], name: str, shown: str) -> int:
    value = raw.get(name)
    if not _is_count(value):
        raise DocumentError(shown, "a whole number >= 0", value)
    assert type(value) is int
    return value


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0
