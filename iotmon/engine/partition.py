"""Everything iotmon knows about one input partition, kept together so it can be
checkpointed, restored and handed to another process as one unit.

That includes the partition's share of the alerter's digest queue: changes of its devices
that were recorded but not yet announced in a digest (``announce``). They travel with the
partition, so when it moves the new owner announces them and the old one drops them —
whichever process owns a device's partition is the only one that ever tells about it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from iotmon.alerts import Alerter, AlertTracker, Change
from iotmon.engine.horizon import Horizon
from iotmon.parse import Reason
from iotmon.report import AlertRecord, DeviceSummaries, Report
from iotmon.sources.base import Position
from iotmon.state.documents import PartitionDocument, WindowFields
from iotmon.stats import StatsTable, WindowSpec

__all__ = ["PartitionState", "report_of"]


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
    announce: list[Change] = field(default_factory=list)
    """Changes of this partition's devices queued for a digest but not announced yet, as
    of the last checkpoint."""
    checkpoint_id: str | None = None
    """Identity of the checkpoint this state was last written as, or restored from."""
    held: dict[str, list[Any]] = field(default_factory=dict)
    """Devices whose readings the batch path holds back, and the list it appends them to
    (:mod:`iotmon.engine.hotpath`); not state: the statistics fold them in before anything
    reads them."""
    held_count: int = 0
    """Readings held since the held devices were last all folded in."""

    def to_document(
        self, checkpoint: str | None = None, *, reuse_encoded: bool = False
    ) -> PartitionDocument:
        """The checkpoint document (its per-device maps encoded a chunk at a time when
        written; :meth:`from_document` reads it back). ``reuse_encoded``: see
        :meth:`StatsTable.to_document <iotmon.stats.StatsTable.to_document>`."""
        return PartitionDocument(
            partition=self.name,
            position=self.position,
            read=self.read,
            accepted=self.accepted,
            rejected=dict(self.rejected),
            head_us=self.head_us,
            head_wall_us=self.horizon.head_wall_us,
            dlq_size=self.dlq_size,
            window=_window_fields(self.table.spec),
            stats=self.table.to_document(reuse=reuse_encoded),
            alerts=self.tracker.to_document(),
            announce=self.announce,
            checkpoint=checkpoint,
        )

    @classmethod
    def from_document(
        cls, doc: PartitionDocument, *, spec: WindowSpec, tracker: AlertTracker
    ) -> PartitionState:
        """Raises ValueError when ``doc`` does not fit ``spec`` or holds malformed state."""
        if doc.window != _window_fields(spec):
            saved, now = _shown(doc.window), _shown(_window_fields(spec))
            raise ValueError(
                f"partition {doc.partition} was checkpointed with window settings {saved}, "
                f"now {now}; restart with the old window, pane and allowed lateness, or use a "
                "fresh state directory"
            )
        rejected: Counter[str] = Counter()
        for reason, count in doc.rejected.items():
            rejected[Reason(reason).value] = count
        table = StatsTable.from_state(spec, doc.stats)
        tracker.track_untracked(table.devices)
        return cls(
            name=doc.partition,
            table=table,
            tracker=tracker,
            position=doc.position,
            read=doc.read,
            accepted=doc.accepted,
            rejected=rejected,
            dlq_size=doc.dlq_size,
            head_us=doc.head_us,
            horizon=Horizon(head_wall_us=doc.head_wall_us),
            announce=list(doc.announce),
            checkpoint_id=doc.checkpoint,
        )


def _window_fields(spec: WindowSpec) -> WindowFields:
    return WindowFields(spec.window_us, spec.pane_us, spec.lateness_us)


def _shown(fields: WindowFields) -> str:
    return (
        f"(window {fields.window_us / 1e6:g} s, pane {fields.pane_us / 1e6:g} s, "
        f"lateness {fields.lateness_us / 1e6:g} s)"
    )


def report_of(
    partitions: Iterable[PartitionState], alerter: Alerter | None, *, copy: bool
) -> Report:
    """The report of ``partitions``' statistics and counters and ``alerter``'s history;
    ``copy=False``: devices are a view of the live statistics (see ``Pipeline.snapshot``)."""
    parts = list(partitions)
    devices = DeviceSummaries(p.table.devices for p in parts)
    return Report.build(
        counters=((p.read, p.accepted, p.rejected, p.table.late) for p in parts),
        devices=devices.copy() if copy else devices,
        alert_states=alerter.states() if alerter is not None else {},
        alerts=[
            AlertRecord(device=t.device, state=t.state, at_us=t.at_us, value=t.value)
            for t in (alerter.transitions if alerter is not None else [])
        ],
        partitions={
            p.name: {"position": p.position, "read": p.read, "devices": len(p.table.devices)}
            for p in parts
        },
    )
