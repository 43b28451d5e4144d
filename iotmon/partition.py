"""Everything iotmon knows about one input partition, kept together so it can be
checkpointed, restored and (later) handed to another process as one unit."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from iotmon.alerts import AlertTracker
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
    dirty: bool = False

    def to_state(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "counters": {
                "read": self.read,
                "accepted": self.accepted,
                "rejected": dict(self.rejected),
            },
            "head_us": self.head_us,
            "dlq_size": self.dlq_size,
            "window": _window_fields(self.table.spec),
            "stats": self.table.to_state(),
            "alerts": self.tracker.to_state(),
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
        return cls(
            name=name,
            table=StatsTable.from_state(spec, doc["stats"]),
            tracker=tracker,
            position=doc["position"],
            read=int(counters["read"]),
            accepted=int(counters["accepted"]),
            rejected=rejected,
            dlq_size=int(doc["dlq_size"]),
            head_us=int(doc["head_us"]),
        )


def _window_fields(spec: WindowSpec) -> dict[str, int]:
    return {"window_us": spec.window_us, "pane_us": spec.pane_us, "lateness_us": spec.lateness_us}
