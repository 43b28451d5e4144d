"""Read a state directory without running anything: what the checkpoints hold.

This is what the original notebook got by querying Spark's in-memory table, available here
for a running or a stopped consumer alike (checkpoints are replaced atomically, so reading
them while a consumer runs is safe).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from iotmon.alerts import AlertSettings, AlertTracker
from iotmon.alerts.rules import RuleBook
from iotmon.alerts.silences import Silence, Silences
from iotmon.report import DeviceSummaries, Report
from iotmon.state.documents import JsonObject
from iotmon.state.silences import FileSilenceStore
from iotmon.state.statedir import CheckpointError, StateDir
from iotmon.stats import DeviceStats, StatsTable, WindowSpec

__all__ = ["read_status", "silenced_in"]


def read_status(state_dir: Path) -> Report:
    if not state_dir.exists():
        raise CheckpointError(f"{state_dir} does not exist; pass the consumer's `state_dir`")
    docs = StateDir(state_dir).partitions()
    counters: list[tuple[int, int, Counter[str], int]] = []
    tables: list[dict[str, DeviceStats]] = []
    states: dict[str, str] = {}
    partitions: dict[str, dict[str, Any]] = {}
    try:
        for doc in docs:
            spec = WindowSpec(
                window_us=doc.window.window_us,
                pane_us=doc.window.pane_us,
                lateness_us=doc.window.lateness_us,
            )
            table = StatsTable.from_state(spec, doc.stats)
            counters.append((doc.read, doc.accepted, Counter(doc.rejected), table.late))
            tables.append(table.devices)
            states.update(_alert_states(doc.partition, doc.alerts))
            partitions[doc.partition] = {
                "position": doc.position,
                "read": doc.read,
                "devices": len(table.devices),
            }
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"a checkpoint in {state_dir} cannot be read: {exc}") from exc
    return Report.build(
        counters=counters,
        devices=DeviceSummaries(tables),
        alert_states=states,
        alerts=[],
        partitions=partitions,
    )


def silenced_in(state_dir: Path, alert_states: dict[str, str]) -> list[str]:
    """The devices of ``alert_states`` an active silence covers now: a file-input consumer's
    silences are in the state directory's silences file; a Kafka group's are in its topic,
    and the consumer copies the ones it knows into each checkpoint."""
    known = FileSilenceStore(state_dir, clock=time.time).load()
    process = StateDir(state_dir).load_process()
    if process is not None:
        try:
            known += [Silence.from_json(dict(doc)) for doc in process.silences]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"the silences in {state_dir}'s checkpoint: {exc}") from exc
    live = Silences(known)
    return sorted(live.covered(alert_states))


class _Discard:
    def record(self, *args: object) -> None:
        """Reading a checkpoint replays nothing, so there is nothing to record."""


def _alert_states(partition: str, state: JsonObject) -> dict[str, str]:
    if not state:
        return {}
    tracker = AlertTracker.from_state(
        state, partition=partition, rules=RuleBook(AlertSettings()), sink=_Discard()
    )
    return tracker.states()
