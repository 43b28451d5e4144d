"""Per-partition alert state machine: ok → pending → firing → resolved, plus stale.

Clocks — the design decision that makes a replay at full speed raise the same alerts as
living through the stream:

* A device's metric is treated as a step function of *its own event time*: the value
  computed at a reading holds until the device's next reading. Transitions caused by
  readings (ok → pending, pending → ok, firing → resolved, stale → recovered) happen at
  the reading's event time, ``head_us``.
* pending → firing happens at exactly ``pending_since + for`` if no reading in between
  brought the metric back down. Whichever notices first records it with that same
  time: :meth:`AlertTracker.observe`, when the device's next reading is at or past it, or
  :meth:`AlertTracker.advance`, when the stream clock gets there (so a device that reports
  rarely still fires).
* stale happens at exactly ``last_seen + stale_after``, noticed by :meth:`advance` when the
  stream clock passes it or, retroactively, by the device's next reading when that comes
  after it.

So every transition time is a function of the readings alone, not of how often ``advance``
runs or how partitions interleave. The one assumption: no reading arrives with an event
time the stream clock has already passed (the watermark's allowed lateness covers the
disorder of the input, across partitions too). A reading that breaks it can make a device
fire, or go stale, that a slower run would have seen recover first.

Hot path: :meth:`observe` is called for every accepted reading the batch path does not
hold back (:mod:`iotmon.engine.hotpath`). For a device that is ok and stays below its
threshold, or firing and stays above its clear level, it is one dict lookup, two attribute
reads on the stats, a few comparisons and two stores; everything else goes to
:meth:`_evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeAlias

from iotmon.alerts.rules import Rule, RuleBook, seconds_to_us
from iotmon.state.encoding import Chunked

if TYPE_CHECKING:
    from iotmon.stats import WindowSpec

__all__ = [
    "AlertTracker",
    "StatsView",
    "Transition",
    "TransitionSink",
    "TransitionState",
]

TransitionState: TypeAlias = Literal["pending", "ok", "firing", "resolved", "stale", "recovered"]
"""The state a device entered: ``ok`` is pending that cleared before firing, ``resolved``
is firing that cleared, ``recovered`` is a stale device reporting again."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Larger than any event time: "never" for deadlines, and a stale limit that never trips.
_NEVER: Final = 2**62
_STATE_VERSION: Final = 1

# Device states as small ints: compared on the hot path.
_OK: Final = 0
_PENDING: Final = 1
_FIRING: Final = 2
_STATE_NAMES: Final = ("ok", "pending", "firing")


class StatsView(Protocol):
    """What the tracker reads of a device's statistics (:class:`iotmon.stats.DeviceStats`);
    ``spec`` and ``pane_means`` are for the trend a digest shows."""

    @property
    def mean(self) -> float: ...
    @property
    def window_mean(self) -> float | None: ...
    @property
    def max(self) -> float: ...
    @property
    def head_us(self) -> int: ...
    @property
    def spec(self) -> WindowSpec: ...
    def pane_means(self) -> tuple[float | None, ...]: ...


@dataclass(frozen=True, slots=True)
class Transition:
    """One device changing state, at an event time (µs since the epoch)."""

    device: str
    state: TransitionState
    at_us: int
    value: float | None
    """The alert metric at that moment (the last known one for stale)."""

    @property
    def at(self) -> str:
        """``at_us`` as ISO 8601 UTC with microseconds, like the input's ``data_evento``."""
        return (_EPOCH + timedelta(microseconds=self.at_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "state": self.state, "at": self.at, "value": self.value}


class TransitionSink(Protocol):
    """Where a tracker reports transitions (the :class:`~iotmon.alerts.alerter.Alerter`)."""

    def record(self, transition: Transition, rule: Rule, stats: StatsView | None) -> None: ...


class _Device:
    __slots__ = (
        "clear_below",
        "follows",
        "key",
        "last_seen_us",
        "rule",
        "since_us",
        "stale",
        "state",
        "stats",
        "threshold",
        "value",
    )

    def __init__(self, key: str, rule: Rule, last_seen_us: int) -> None:
        self.key = key
        self.rule = rule
        # Copied out of the rule: read on every reading.
        self.threshold = rule.threshold
        self.clear_below = rule.clear_below
        self.state = _OK
        # pending: pending since; firing: firing since; ok: unused.
        self.since_us = 0
        # The metric after the device's latest reading.
        self.value: float | None = None
        self.last_seen_us = last_seen_us
        self.stale = False
        self.stats: StatsView | None = None
        # Value and last_seen_us may lag stats, by readings follow() let by.
        self.follows = False


class AlertTracker:
    """Alert states of the devices of one input partition.

    Create it through :meth:`Alerter.tracker <iotmon.alerts.alerter.Alerter.tracker>`,
    which wires it to the alerter; its state travels in the partition checkpoint
    (:meth:`to_state`), so the partition can be resumed by another process.
    """

    __slots__ = (
        "_devices",
        "_pending",
        "_sink",
        "_stale_after_us",
        "_stale_check_us",
        "_untracked_below",
        "_use_window",
        "partition",
        "rules",
    )

    def __init__(self, *, partition: str, rules: RuleBook, sink: TransitionSink) -> None:
        self.partition = partition
        self.rules = rules
        self._sink = sink
        settings = rules.settings
        self._use_window = settings.metric == "window"
        stale_after = settings.stale_after
        self._stale_after_us = _NEVER if stale_after is None else seconds_to_us(stale_after)
        self._devices: dict[str, _Device] = {}
        self._pending: dict[str, _Device] = {}
        # Stream time before which no device can go stale, so advance() can skip the scan.
        self._stale_check_us = _NEVER
        # Without stale detection and with one rule for all, a device that is ok has nothing
        # to remember: it is tracked only from its first reading above this threshold.
        # (Memory: a tracked device costs ~200 bytes; most devices are never hot.)
        self._untracked_below: float | None = None
        if stale_after is None and rules.uniform:
            self._untracked_below = rules.default.threshold

    def __repr__(self) -> str:
        return (
            f"AlertTracker(partition={self.partition!r}, devices={len(self._devices)}, "
            f"pending={len(self._pending)})"
        )

    # -- the hot path ------------------------------------------------------------------

    def observe(self, key: str, stats: StatsView) -> None:
        """Judge device ``key`` after one of its readings was added to ``stats``."""
        device = self._devices.get(key)
        value = stats.window_mean if self._use_window else stats.mean  # _metric(), inlined
        if device is None:
            below = self._untracked_below
            if below is not None and value is not None and value <= below:
                return
            device = self._admit(key, stats)
        head_us = stats.head_us
        if (
            value is not None
            and head_us - device.last_seen_us <= self._stale_after_us
            and not device.stale
            and (
                (device.state == _OK and value <= device.threshold)
                or (device.state == _FIRING and value >= device.clear_below)
            )
        ):
            # Stays ok, or stays firing: what _evaluate() would do comes down to this.
            device.last_seen_us = head_us
            # Kept even here: a later stale transition reports the value as of the last
            # reading, and must not depend on which path noticed the silence.
            device.value = value
            return
        self._evaluate(device, value, head_us, stats)

    def follow(self, key: str, stats: StatsView, *, margin: float) -> tuple[float, float] | None:
        """After :meth:`observe` of a reading of ``key``: the range its metric may keep while
        later readings skip :meth:`observe` (each end ``margin`` inside the bound where
        this tracker would act), or None if there is none (the device is pending, stale
        detection is on, or its metric is outside that range now).

        Within that range observe() would only record the device's value and last reading
        time, so from now on those are taken from ``stats`` whenever they are read."""
        if self._stale_after_us != _NEVER:
            return None
        value = self._metric(stats)
        if value is None:
            return None
        device = self._devices.get(key)
        if device is None:
            if self._untracked_below is None:
                return None
            low, high = -math.inf, self._untracked_below - margin
        elif device.state == _OK:
            low, high = -math.inf, device.threshold - margin
        elif device.state == _FIRING:
            low, high = device.clear_below + margin, math.inf
        else:
            return None
        if not low <= value <= high:
            return None
        if device is not None:
            device.stats = stats
            device.follows = True
        return low, high

    def track_untracked(self, devices: Mapping[str, StatsView]) -> None:
        """After a restore: start tracking the devices the checkpoint left untracked (it was
        written without stale detection, which is on now) as of their last reading."""
        if self._untracked_below is None:
            for key, stats in devices.items():
                if key not in self._devices:
                    self._admit(key, stats)

    # -- the stream clock --------------------------------------------------------------

    def advance(self, now_us: int) -> None:
        """Apply the deadlines the stream clock ``now_us`` has reached: pending devices
        whose ``for`` elapsed fire, silent devices go stale."""
        if self._pending:
            for device in list(self._pending.values()):
                fire_at = device.since_us + device.rule.for_us
                if now_us >= fire_at:
                    self._fire(device, fire_at)
        if now_us > self._stale_check_us:
            self._scan_stale(now_us)

    # -- state -------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """JSON-able: ``{"version": 1, "devices": {key: [state, since_us, value,
        last_seen_us, stale]}}`` with state 0 ok, 1 pending, 2 firing."""
        return {"version": _STATE_VERSION, "devices": dict(self.device_states())}

    def device_states(self) -> Iterator[tuple[str, list[Any]]]:
        """The ``devices`` member of :meth:`to_state`, one device at a time."""
        for key, d in self._devices.items():
            if d.follows:
                self._catch_up(d)
            yield key, [d.state, d.since_us, d.value, d.last_seen_us, d.stale]

    def to_document(self) -> dict[str, Any]:
        """:meth:`to_state` for :func:`~iotmon.state.encoding.encode_document`: the devices are
        encoded a chunk at a time, never all built as objects at once."""
        return {"version": _STATE_VERSION, "devices": Chunked(self.device_states())}

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], *, partition: str, rules: RuleBook, sink: TransitionSink
    ) -> AlertTracker:
        """Rebuild from :meth:`to_state`; ValueError if malformed. Rules are re-resolved
        from the current settings, so a changed threshold applies from the next reading."""
        tracker = cls(partition=partition, rules=rules, sink=sink)
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"alert state: unknown version {state.get('version')!r}")
        devices = state.get("devices")
        if not isinstance(devices, dict):
            raise ValueError("alert state: 'devices' must map device key to its state")
        for key, row in devices.items():
            if not (isinstance(key, str) and isinstance(row, list) and len(row) == 5):
                raise ValueError(f"alert state: device {key!r}: expected a 5-item list")
            code, since_us, value, last_seen_us, stale = row
            if code not in (_OK, _PENDING, _FIRING) or not isinstance(stale, bool):
                raise ValueError(f"alert state: device {key!r}: bad state {row!r}")
            if not (isinstance(since_us, int) and isinstance(last_seen_us, int)):
                raise ValueError(f"alert state: device {key!r}: times must be integers")
            if value is not None and not isinstance(value, int | float):
                raise ValueError(f"alert state: device {key!r}: value must be a number")
            device = _Device(key, rules.rule_for(key), last_seen_us)
            device.state = code
            device.since_us = since_us
            device.value = None if value is None else float(value)
            device.stale = stale
            tracker._devices[key] = device
            if code == _PENDING:
                tracker._pending[key] = device
            if not stale:
                tracker._watch_stale(device)
        return tracker

    # -- views -------------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        """Devices that are not simply ok: ``pending``, ``firing`` or ``stale`` (a firing
        device that also went silent shows as ``firing``)."""
        result = {}
        for key, d in self._devices.items():
            if d.state != _OK:
                result[key] = _STATE_NAMES[d.state]
            elif d.stale:
                result[key] = "stale"
        return result

    def active(self) -> Iterator[tuple[Transition, Rule, StatsView | None]]:
        """The firing and stale devices, as the transition that made them so: what a
        process taking over this partition needs to know to keep reminding about them."""
        for key, d in self._devices.items():
            if d.follows:
                self._catch_up(d)
            if d.state == _FIRING:
                yield Transition(key, "firing", d.since_us, d.value), d.rule, d.stats
            if d.stale:
                stale_at = d.last_seen_us + self._stale_after_us
                yield Transition(key, "stale", stale_at, d.value), d.rule, d.stats

    def stats_of(self, key: str) -> StatsView | None:
        device = self._devices.get(key)
        return None if device is None else device.stats

    def __len__(self) -> int:
        return len(self._devices)

    # -- internals ---------------------------------------------------------------------

    def _catch_up(self, device: _Device) -> None:
        """What observe() would have recorded for the readings :meth:`follow` let by."""
        stats = device.stats
        assert stats is not None
        device.value = self._metric(stats)
        device.last_seen_us = stats.head_us

    def _metric(self, stats: StatsView) -> float | None:
        """The mean this tracker judges."""
        return stats.window_mean if self._use_window else stats.mean

    def _admit(self, key: str, stats: StatsView) -> _Device:
        device = _Device(key, self.rules.rule_for(key), stats.head_us)
        device.stats = stats
        self._devices[key] = device
        self._watch_stale(device)
        return device

    def _evaluate(self, device: _Device, value: float | None, head_us: int, stats: Any) -> None:
        device.stats = stats
        # Deadlines that fell between the previous reading and this one happened first,
        # under the previous value; apply them in time order (firing first on a tie, as
        # advance() does).
        fire_at = device.since_us + device.rule.for_us
        fire_due = device.state == _PENDING and fire_at <= head_us
        stale_at = device.last_seen_us + self._stale_after_us
        stale_due = not device.stale and head_us > stale_at
        if stale_due and not (fire_due and fire_at <= stale_at):
            self._go_stale(device, stale_at)
            stale_due = False
        if fire_due:
            self._fire(device, fire_at)
        if stale_due:
            self._go_stale(device, stale_at)
        if device.stale:
            device.stale = False
            self._emit(device, "recovered", head_us, value, stats)
        if head_us > device.last_seen_us:
            device.last_seen_us = head_us
            self._watch_stale(device)
        if value is None:
            return
        rule = device.rule
        if device.state == _OK:
            if value > rule.threshold:
                device.since_us = head_us
                if rule.for_us == 0:
                    device.state = _FIRING
                    self._emit(device, "firing", head_us, value, stats)
                else:
                    device.state = _PENDING
                    self._pending[device.key] = device
                    self._emit(device, "pending", head_us, value, stats)
        elif device.state == _PENDING:
            if value <= rule.threshold:
                device.state = _OK
                del self._pending[device.key]
                self._emit(device, "ok", head_us, value, stats)
        elif value < rule.clear_below:
            device.state = _OK
            self._emit(device, "resolved", head_us, value, stats)
        device.value = value

    def _fire(self, device: _Device, at_us: int) -> None:
        device.state = _FIRING
        device.since_us = at_us
        del self._pending[device.key]
        self._emit(device, "firing", at_us, device.value, device.stats)

    def _go_stale(self, device: _Device, at_us: int) -> None:
        device.stale = True
        self._emit(device, "stale", at_us, device.value, device.stats)

    def _scan_stale(self, now_us: int) -> None:
        limit = self._stale_after_us
        earliest = _NEVER
        for device in self._devices.values():
            if device.stale:
                continue
            deadline = device.last_seen_us + limit
            if now_us > deadline:
                self._go_stale(device, deadline)
            elif deadline < earliest:
                earliest = deadline
        self._stale_check_us = earliest

    def _watch_stale(self, device: _Device) -> None:
        deadline = device.last_seen_us + self._stale_after_us
        if deadline < self._stale_check_us:
            self._stale_check_us = deadline

    def _emit(
        self,
        device: _Device,
        state: TransitionState,
        at_us: int,
        value: float | None,
        stats: StatsView | None,
    ) -> None:
        self._sink.record(Transition(device.key, state, at_us, value), device.rule, stats)
