"""Everything iotmon knows about one input partition, kept together so it can be
checkpointed, restored and handed to another process as one unit.

That includes the partition's share of the alerter's digest queue: changes of its devices
that were recorded but not yet announced in a digest (``announce``). They travel with the
partition, so when it moves the new owner announces them and the old one drops them —
whichever process owns a device's partition is the only one that ever tells about it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from iotmon.alerts import AlertTracker
from iotmon.engine.horizon import Horizon
from iotmon.parse import Reason
from iotmon.sources.base import Position
from iotmon.stats import StatsTable, WindowSpec

__all__ = ["PartitionState"]


@dataclass(slots=True, eq=False)
class PartitionState:
    name: str
    table: StatsTable
    tracker: AlertTracker
    position: Position | None = None
    read: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dlq_size: int = 0
    head_us: int = 0
    """Latest event time seen in this partition: the input to the stream watermark."""
    horizon: Horizon = field(default_factory=Horizon)
    """How far ahead of ``head_us`` a reading may be (``--max-future``)."""
    dirty: bool = False
    announce: list[list[Any]] = field(default_factory=list)
    """Changes of this partition's devices queued for a digest but not announced yet
    (``Change.to_list()`` rows), as of the last checkpoint."""
    checkpoint_id: str | None = None
    """Identity of the checkpoint this state was last written as, or restored from."""

    def to_document(self) -> dict[str, Any]:
        """The checkpoint body, for :func:`~iotmon.state.encoding.encode_document`, which encodes
        its per-device maps a chunk at a time (:meth:`from_state` reads it back)."""
        return {
            "position": self.position,
            "counters": {
                "read": self.read,
                "accepted": self.accepted,
                "rejected": dict(self.rejected),
            },
            "head_us": self.head_us,
            "head_wall_us": self.horizon.head_wall_us,
            "dlq_size": self.dlq_size,
            "window": _window_fields(self.table.spec),
            "stats": self.table.to_document(),
            "alerts": self.tracker.to_document(),
            "announce": self.announce,
        }

    @classmethod
    def from_state(
        cls, name: str, doc: dict[str, Any], *, spec: WindowSpec, tracker: AlertTracker
    ) -> PartitionState:
        saved = doc.get("window")
        if saved != _window_fields(spec):
            raise ValueError(
                f"partition {name} was checkpointed with window settings {saved}, now "
                f"{_window_fields(spec)}; restart with the old --window/--pane/--allowed-lateness "
                "or use a fresh --state-dir"
            )
        counters = doc["counters"]
        rejected: Counter[str] = Counter()
        for reason, count in counters["rejected"].items():
            rejected[Reason(reason).value] = int(count)
        announce = doc.get("announce", [])
        if not isinstance(announce, list) or not all(isinstance(r, list) for r in announce):
            raise ValueError(f"partition {name}: 'announce' must be a list of change rows")
        checkpoint = doc.get("checkpoint")
        table = StatsTable.from_state(spec, doc["stats"])
        tracker.track_untracked(table.devices)
        return cls(
            name=name,
            table=table,
            tracker=tracker,
            position=doc["position"],
            read=int(counters["read"]),
            accepted=int(counters["accepted"]),
            rejected=rejected,
            dlq_size=int(doc["dlq_size"]),
            head_us=int(doc["head_us"]),
            horizon=Horizon(head_wall_us=int(doc.get("head_wall_us", 0))),
            announce=announce,
            checkpoint_id=None if checkpoint is None else str(checkpoint),
        )


def _window_fields(spec: WindowSpec) -> dict[str, int]:
    return {"window_us": spec.window_us, "pane_us": spec.pane_us, "lateness_us": spec.lateness_us}
