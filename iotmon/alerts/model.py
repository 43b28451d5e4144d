"""What the alerting side decides to tell: a :class:`Digest` of device changes.

Rendering and delivery are :mod:`iotmon.notify`'s, which imports these; nothing here
depends on how a digest is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

__all__ = ["METRICS", "DeviceReport", "Digest", "DigestKind", "Metric"]

Metric: TypeAlias = Literal["window", "running"]
METRICS: Final[tuple[Metric, ...]] = get_args(Metric)
DigestKind: TypeAlias = Literal["change", "reminder"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceReport:
    """One device's line in a digest section.

    ``since_us`` depends on the section: firing since, resolved at, silent since (stale),
    or reporting again since (recovered). Figures are ``None`` when unknown (for example a
    device restored from a checkpoint that has not reported since).
    """

    device: str
    value: float | None
    """The alert metric (window or running mean, see :attr:`Digest.metric`)."""
    window_mean: float | None
    running_mean: float | None
    max: float | None
    threshold: float
    clear_below: float
    since_us: int
    last_seen_us: int | None
    new: bool = False
    """True when the device entered this section with this digest."""
    trend: tuple[float | None, ...] = ()
    """The mean of each pane of the device's window, oldest first, the last one ending at
    ``last_seen_us``; None for a pane without readings. Empty when unknown. A figure, like
    the means: it is left out of the digest's identity."""
    pane_s: float = 0.0
    """The length of one ``trend`` pane, in seconds (0 when there is no trend)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "value": self.value,
            "window_mean": self.window_mean,
            "running_mean": self.running_mean,
            "max": self.max,
            "threshold": self.threshold,
            "clear_below": self.clear_below,
            "since_us": self.since_us,
            "last_seen_us": self.last_seen_us,
            "new": self.new,
            "trend": list(self.trend),
            "pane_s": self.pane_s,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DeviceReport:
        return cls(
            device=str(doc["device"]),
            value=_opt_float(doc["value"]),
            window_mean=_opt_float(doc["window_mean"]),
            running_mean=_opt_float(doc["running_mean"]),
            max=_opt_float(doc["max"]),
            threshold=float(doc["threshold"]),
            clear_below=float(doc["clear_below"]),
            since_us=int(doc["since_us"]),
            last_seen_us=None if doc["last_seen_us"] is None else int(doc["last_seen_us"]),
            new=bool(doc["new"]),
            # Absent in records queued before trends existed.
            trend=tuple(_opt_float(v) for v in doc.get("trend", ())),
            pane_s=float(doc.get("pane_s", 0.0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """One grouped notification for one recipient set.

    ``digest_id`` is derived from what the digest is about (recipients, schedule slot and
    the transitions it reports), never from the figures in it, so regenerating the same
    digest after a crash gives the same id and the outbox recognises it.
    """

    digest_id: str
    kind: DigestKind
    slot_us: int
    """Stream time the digest was scheduled for (µs since the epoch)."""
    recipients: tuple[str, ...]
    """Override recipients; empty means the default ``--mail-to`` list."""
    metric: Metric
    firing: tuple[DeviceReport, ...] = ()
    resolved: tuple[DeviceReport, ...] = ()
    stale: tuple[DeviceReport, ...] = ()
    recovered: tuple[DeviceReport, ...] = ()
    stale_after: float | None = None
    silenced: int = 0
    """How many devices this digest would have listed but an active silence covers."""
    webhooks: tuple[str, ...] = ()
    """Override webhook destinations (ids, see :func:`iotmon.addresses.webhook_id`, never
    URLs); empty means the default ``--webhook-url`` list."""

    def to_json(self) -> dict[str, Any]:
        return {
            "digest_id": self.digest_id,
            "kind": self.kind,
            "slot_us": self.slot_us,
            "recipients": list(self.recipients),
            "metric": self.metric,
            "firing": [r.to_json() for r in self.firing],
            "resolved": [r.to_json() for r in self.resolved],
            "stale": [r.to_json() for r in self.stale],
            "recovered": [r.to_json() for r in self.recovered],
            "stale_after": self.stale_after,
            "silenced": self.silenced,
            "webhooks": list(self.webhooks),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Digest:
        kind = doc["kind"]
        metric = doc["metric"]
        if kind not in ("change", "reminder"):
            raise ValueError(f"digest kind must be 'change' or 'reminder', got {kind!r}")
        if metric not in METRICS:
            raise ValueError(f"digest metric must be 'window' or 'running', got {metric!r}")
        return cls(
            digest_id=str(doc["digest_id"]),
            kind=kind,
            slot_us=int(doc["slot_us"]),
            recipients=tuple(str(r) for r in doc["recipients"]),
            metric=metric,
            firing=tuple(DeviceReport.from_json(r) for r in doc["firing"]),
            resolved=tuple(DeviceReport.from_json(r) for r in doc["resolved"]),
            stale=tuple(DeviceReport.from_json(r) for r in doc["stale"]),
            recovered=tuple(DeviceReport.from_json(r) for r in doc["recovered"]),
            stale_after=_opt_float(doc["stale_after"]),
            silenced=int(doc.get("silenced", 0)),
            # Absent in records written before webhooks existed.
            webhooks=tuple(str(w) for w in doc.get("webhooks", ())),
        )


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"expected a number or null, got {value!r}")
    return float(value)
