"""Read-only views of the pipeline's state: what ``--json``, ``status`` and ``snapshot()`` show."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iotmon.parse import format_event_time
from iotmon.stats import DeviceStats

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

__all__ = ["AlertRecord", "DeviceSummaries", "DeviceSummary", "Report"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceSummary:
    count: int
    mean: float
    window_mean: float | None
    window_count: int
    min: float
    max: float
    last: float
    last_event_us: int

    @classmethod
    def of(cls, stats: DeviceStats) -> DeviceSummary:
        return cls(
            count=stats.count,
            mean=stats.mean,
            window_mean=stats.window_mean,
            window_count=stats.window_count,
            min=stats.min,
            max=stats.max,
            last=stats.last,
            last_event_us=stats.last_event_us,
        )

    @classmethod
    def merged(cls, parts: list[DeviceSummary]) -> DeviceSummary:
        """One device seen in several partitions (unkeyed input): combine exactly by weight."""
        if len(parts) == 1:
            return parts[0]
        count = sum(p.count for p in parts)
        window_count = sum(p.window_count for p in parts)
        window_total = math.fsum(
            p.window_mean * p.window_count for p in parts if p.window_mean is not None
        )
        latest = max(parts, key=lambda p: p.last_event_us)
        return cls(
            count=count,
            mean=math.fsum(p.mean * p.count for p in parts) / count,
            window_mean=window_total / window_count if window_count else None,
            window_count=window_count,
            min=min(p.min for p in parts),
            max=max(p.max for p in parts),
            last=latest.last,
            last_event_us=latest.last_event_us,
        )

    def to_json(self) -> dict[str, Any]:
        return _summary_json(self)


def _summary_json(device: DeviceSummary | DeviceStats) -> dict[str, Any]:
    """A device's summary as ``--json`` prints it, from the summary or straight from the
    statistics (which have the same attributes)."""
    return {
        "count": device.count,
        "mean": device.mean,
        "window_mean": device.window_mean,
        "min": device.min,
        "max": device.max,
        "last": device.last,
        "last_event": format_event_time(device.last_event_us),
    }


class DeviceSummaries(Mapping[str, DeviceSummary]):
    """Every device's summary, read from the statistics tables (one per partition) when
    asked for, in key order. A device found in several tables (unkeyed input) is merged.

    A view, not a copy: at a million devices a copy costs hundreds of MB, and the final
    report of a run or a live table needs each device only once. :meth:`copy` freezes it.
    """

    def __init__(self, tables: Iterable[Mapping[str, DeviceStats]]) -> None:
        self._tables = [t for t in tables if t]
        self._keys: list[str] | None = None

    def __getitem__(self, key: str) -> DeviceSummary:
        found = [DeviceSummary.of(t[key]) for t in self._tables if key in t]
        if not found:
            raise KeyError(key)
        return DeviceSummary.merged(found)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sorted_keys())

    def __len__(self) -> int:
        # Counted without sorting: a live view shows the count of a million devices often.
        if self._keys is not None:
            return len(self._keys)
        if len(self._tables) == 1:
            return len(self._tables[0])
        return len(set().union(*self._tables))

    def __contains__(self, key: object) -> bool:
        return any(key in t for t in self._tables)

    def copy(self) -> dict[str, DeviceSummary]:
        return dict(self.items())

    def json_items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each device's summary as ``--json`` prints it, in key order; a device in one
        table only is written straight from its statistics (a final report of ten
        thousand devices took a tenth of a second building summaries only to write them;
        no map of owners either: at a million devices it would take tens of MB)."""
        tables = self._tables
        for key in self._sorted_keys():
            found = [t[key] for t in tables if key in t]
            yield key, _summary_json(found[0]) if len(found) == 1 else self[key].to_json()

    def top(
        self,
        n: int,
        *,
        key: Callable[[DeviceStats | DeviceSummary], SupportsRichComparison],
    ) -> list[tuple[str, DeviceSummary]]:
        """The ``n`` devices with the largest ``key``, best first, without sorting or
        summarising every device (a live table of a million devices refreshes often).
        ``key`` is given a device's statistics, or its merged summary if it is split over
        partitions (unkeyed input)."""
        best = heapq.nlargest(n, self._rankable(), key=lambda pair: key(pair[1]))
        return [(k, v if isinstance(v, DeviceSummary) else DeviceSummary.of(v)) for k, v in best]

    def _rankable(self) -> Iterator[tuple[str, DeviceStats | DeviceSummary]]:
        tables = self._tables
        if len(tables) == 1:
            yield from tables[0].items()
            return
        for i, table in enumerate(tables):
            earlier, later = tables[:i], tables[i + 1 :]
            for k, stats in table.items():
                if any(k in t for t in later):
                    if not any(k in t for t in earlier):
                        yield k, self[k]
                elif not any(k in t for t in earlier):
                    yield k, stats

    def _sorted_keys(self) -> list[str]:
        if self._keys is None:
            if len(self._tables) == 1:
                self._keys = sorted(self._tables[0])
            else:
                self._keys = sorted(set().union(*self._tables))
        return self._keys


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRecord:
    device: str
    state: str
    at_us: int
    value: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "state": self.state,
            "at": format_event_time(self.at_us),
            "value": self.value,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The pipeline's results at one moment: counters, per-device stats, alert history."""

    readings: int
    accepted: int
    rejected: int
    late: int
    rejected_by_reason: dict[str, int]
    devices: Mapping[str, DeviceSummary]
    """Per device, in key order (a :class:`DeviceSummaries` view or a dict)."""
    alert_states: dict[str, str] = field(default_factory=dict)
    alerts: list[AlertRecord] = field(default_factory=list)
    partitions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        counters: Iterable[tuple[int, int, Counter[str], int]],
        devices: Mapping[str, DeviceSummary],
        alert_states: dict[str, str],
        alerts: list[AlertRecord],
        partitions: dict[str, dict[str, Any]],
    ) -> Report:
        readings = accepted = late = 0
        reasons: Counter[str] = Counter()
        for read, acc, rejected, late_count in counters:
            readings += read
            accepted += acc
            reasons.update(rejected)
            late += late_count
        return cls(
            readings=readings,
            accepted=accepted,
            rejected=sum(reasons.values()),
            late=late,
            rejected_by_reason=dict(sorted(reasons.items())),
            devices=devices,
            alert_states=alert_states,
            alerts=alerts,
            partitions=partitions,
        )

    def above(self, threshold: float, *, metric: str = "window") -> dict[str, float]:
        """Devices whose mean is above ``threshold`` — the original notebook's query."""
        result: dict[str, float] = {}
        for key, device in self.devices.items():
            value = device.window_mean if metric == "window" else device.mean
            if value is not None and value > threshold:
                result[key] = value
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "readings": self.readings,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "late": self.late,
            "rejected_by_reason": self.rejected_by_reason,
            "devices": dict(_devices_json(self.devices)),
            "alerts": [alert.to_json() for alert in self.alerts],
        }


def _devices_json(devices: Mapping[str, DeviceSummary]) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(devices, DeviceSummaries):
        return devices.json_items()
    return ((key, device.to_json()) for key, device in devices.items())
