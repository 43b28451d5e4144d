"""When digests go out and what they say: grouping, rate limits, reminders, identity.

Every transition that matters to people (firing, resolved, stale, recovered) is a
:class:`Change` queued in its recipient group (devices whose rule has the same recipients
and webhooks share a group, so a digest is split per recipient set). A group's next digest
is due at::

    max(earliest queued change + group_wait, previous digest + group_interval)

and carries exactly the queued changes with ``at <= due``; with nothing queued but devices
still firing, a reminder is due ``repeat_interval`` after the previous digest. All of
these are event times, and :meth:`DigestScheduler.due` emits whatever is due by the stream
clock it is given, however late it is asked (several change digests in a row if need be)
-- so which digest a change lands in, and when, does not depend on the tick cadence. A
clock that passes several reminder slots at once (a gap in a replay, a clock jump) gets
one reminder, at the last of those slots, never a backlog of identical ones.

Identity: a digest's id hashes its kind, schedule slot, recipient set (and webhook
destinations, when a rule names its own) and the transitions
it reports (device, state, time) — or, for a reminder, the firing devices and since when.
The figures shown (means, max, last seen, the trend of pane means) are the latest known
when it is rendered and are left out of the id on purpose: a replay after a crash
regenerates the same id and the outbox drops the copy, even though the figures may have
moved on.

Silences (:mod:`iotmon.alerts.silences`): a digest leaves out the devices an active
silence covers and counts them in :attr:`Digest.silenced`; the scheduler's own state moves
on exactly as without silences (a device that fires while silenced is firing as of that
digest), so:

* the digest id is computed before anything is left out: silencing never changes a
  digest's identity, and a replay after a crash regenerates the same ids whether or not a
  silence started or ended in between — the outbox drops the copies, no duplicate email
  (the cost: a replayed digest keeps the silences of its first rendering);
* a digest left with nothing to tell is not sent at all: a change digest whose changes
  are all silenced devices', a reminder whose firing devices are all silenced;
* a device that resolves (or recovers) while silenced is not reported: the silence said
  "we know"; the alerts log has the transition;
* when a silence ends and a device it held back still fires (or is still stale), the
  group's next digest is due ``group_interval`` after the previous one and lists it —
  not as new, since it was already firing as of an earlier digest. Which devices were held
  back is process memory: after a restart (or with their partition on another instance)
  they show up in the next reminder instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

import orjson

from iotmon.alerts.model import DeviceReport, Digest
from iotmon.alerts.rules import AlertSettings, seconds_to_us
from iotmon.alerts.silences import Silences
from iotmon.alerts.tracker import StatsView

__all__ = ["Change", "ChangeState", "DigestScheduler", "LiveStats"]

ChangeState: TypeAlias = Literal["firing", "resolved", "stale", "recovered"]
_Key: TypeAlias = tuple[tuple[str, ...], tuple[str, ...]]
"""A group: (recipients, webhook destination ids)."""
LiveStats: TypeAlias = Callable[[str], StatsView | None]
"""Current statistics of a device, when this process has them."""

_STATE_VERSION: Final = 1
_ID_VERSION: Final = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A transition worth telling, with the device's rule and figures at that moment."""

    device: str
    state: ChangeState
    at_us: int
    value: float | None
    threshold: float
    clear_below: float
    recipients: tuple[str, ...]
    window_mean: float | None = None
    running_mean: float | None = None
    max: float | None = None
    last_seen_us: int | None = None
    webhooks: tuple[str, ...] = ()

    def to_list(self) -> list[Any]:
        row = [
            self.device,
            self.state,
            self.at_us,
            self.value,
            self.threshold,
            self.clear_below,
            list(self.recipients),
            self.window_mean,
            self.running_mean,
            self.max,
            self.last_seen_us,
        ]
        # Twelve fields only when set: states of older versions have eleven.
        return [*row, list(self.webhooks)] if self.webhooks else row

    @classmethod
    def from_list(cls, row: list[Any]) -> Change:
        if not isinstance(row, list) or len(row) not in (11, 12):
            raise ValueError(f"alerter state: bad change record {row!r}")
        state = row[1]
        if state not in ("firing", "resolved", "stale", "recovered"):
            raise ValueError(f"alerter state: unknown change state {state!r}")
        return cls(
            device=str(row[0]),
            state=state,
            at_us=int(row[2]),
            value=_opt_float(row[3]),
            threshold=float(row[4]),
            clear_below=float(row[5]),
            recipients=tuple(str(r) for r in row[6]),
            window_mean=_opt_float(row[7]),
            running_mean=_opt_float(row[8]),
            max=_opt_float(row[9]),
            last_seen_us=None if row[10] is None else int(row[10]),
            webhooks=tuple(str(w) for w in row[11]) if len(row) == 12 else (),
        )


@dataclass(slots=True)
class _Group:
    recipients: tuple[str, ...]
    webhooks: tuple[str, ...] = ()
    queued: list[Change] = field(default_factory=list)
    firing: dict[str, Change] = field(default_factory=dict)
    """Firing devices as of the last digest, with the change that made them fire."""
    stale: dict[str, Change] = field(default_factory=dict)
    last_slot_us: int | None = None
    earliest_queued_us: int | None = None
    """min(at_us) over ``queued``, kept up to date: asked on every tick."""
    held: set[str] = field(default_factory=set)
    """Firing or stale devices the last digest left out because they were silenced."""
    held_checked: object = None
    """The silences' generation :attr:`held` was last checked against."""

    def enqueue(self, change: Change) -> None:
        self.queued.append(change)
        if self.earliest_queued_us is None or change.at_us < self.earliest_queued_us:
            self.earliest_queued_us = change.at_us

    def take(self, upto_us: int) -> list[Change]:
        """Remove and return the queued changes with ``at_us <= upto_us``."""
        taken = [c for c in self.queued if c.at_us <= upto_us]
        self.queued = [c for c in self.queued if c.at_us > upto_us]
        self.earliest_queued_us = min((c.at_us for c in self.queued), default=None)
        return taken


class DigestScheduler:
    """Pure scheduling logic, no I/O: feed it changes, ask it for due digests."""

    def __init__(self, *, settings: AlertSettings, silences: Silences | None = None) -> None:
        self.settings = settings
        self.silences = silences
        self._group_wait_us = seconds_to_us(settings.group_wait)
        self._group_interval_us = seconds_to_us(settings.group_interval)
        self._repeat_us = seconds_to_us(settings.repeat_interval)
        self._groups: dict[_Key, _Group] = {}

    def add(self, change: Change) -> None:
        self._group(change).enqueue(change)

    def adopt(self, change: Change) -> None:
        """Know about a device already firing or stale (a partition taken over from another
        process) without announcing it again; it shows up in later digests and reminders."""
        group = self._group(change)
        target = group.firing if change.state == "firing" else group.stale
        target.setdefault(change.device, change)

    def forget(self, devices: Collection[str]) -> None:
        """Stop reminding about devices whose partition went to another process. Their
        queued changes still go out from here."""
        for group in self._groups.values():
            for device in devices:
                group.firing.pop(device, None)
                group.stale.pop(device, None)

    def queued(self) -> list[Change]:
        """Every change waiting for its digest, group by group, oldest first."""
        return [change for group in self._groups.values() for change in group.queued]

    def drop_queued(self, devices: Container[str]) -> int:
        """Remove the queued changes of ``devices``; returns how many were removed."""
        dropped = 0
        for group in self._groups.values():
            kept = [c for c in group.queued if c.device not in devices]
            if len(kept) != len(group.queued):
                dropped += len(group.queued) - len(kept)
                group.queued = kept
                group.earliest_queued_us = min((c.at_us for c in kept), default=None)
        return dropped

    def next_due_us(self) -> int | None:
        """The earliest stream time at which some digest is due (None: nothing to send)."""
        dues = [d for g in self._groups.values() if (d := self._next_due(g)) is not None]
        return min(dues, default=None)

    def due(self, now_us: int, *, live: LiveStats) -> list[Digest]:
        """Every digest due by stream time ``now_us``, oldest first within each group."""
        digests = []
        for key in sorted(self._groups):
            group = self._groups[key]
            while (slot := self._next_due(group)) is not None and slot <= now_us:
                if group.earliest_queued_us is None and not self._released(group):
                    slot = self._latest_reminder_slot(slot, now_us)
                digest = self._emit(group, slot, upto_us=slot, live=live)
                if digest is not None:
                    digests.append(digest)
        return digests

    def drain(self, *, live: LiveStats) -> list[Digest]:
        """One digest per group with every queued change, whatever the time: for shutdown
        (``--once``), so the last changes of a run are not left waiting for a clock that
        will not move again. Reminders are not drained."""
        digests = []
        for key in sorted(self._groups):
            group = self._groups[key]
            if group.queued:
                slot = self._next_due(group)
                assert slot is not None
                upto = max(c.at_us for c in group.queued)
                digest = self._emit(group, slot, upto_us=upto, live=live)
                if digest is not None:
                    digests.append(digest)
        return digests

    # -- state -------------------------------------------------------------------------

    def to_state(self, *, devices: bool = True) -> dict[str, Any]:
        """``devices=False``: the schedule alone (when each group last sent), without the
        queued, firing and stale devices, which travel with their partitions."""
        return {
            "version": _STATE_VERSION,
            "groups": [
                {
                    "recipients": list(g.recipients),
                    "webhooks": list(g.webhooks),
                    "queued": [c.to_list() for c in g.queued] if devices else [],
                    "firing": [c.to_list() for c in g.firing.values()] if devices else [],
                    "stale": [c.to_list() for c in g.stale.values()] if devices else [],
                    "last_slot_us": g.last_slot_us,
                }
                for g in self._groups.values()
            ],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"alerter state: unknown digest state version {state.get('version')!r}"
            )
        groups: dict[_Key, _Group] = {}
        for doc in state["groups"]:
            recipients = tuple(str(r) for r in doc["recipients"])
            webhooks = tuple(str(w) for w in doc.get("webhooks", ()))
            last_slot = doc["last_slot_us"]
            group = groups[recipients, webhooks] = _Group(
                recipients=recipients,
                webhooks=webhooks,
                firing={(c := Change.from_list(row)).device: c for row in doc["firing"]},
                stale={(c := Change.from_list(row)).device: c for row in doc["stale"]},
                last_slot_us=None if last_slot is None else int(last_slot),
            )
            for row in doc["queued"]:
                group.enqueue(Change.from_list(row))
        self._groups = groups

    # -- internals ---------------------------------------------------------------------

    def _group(self, change: Change) -> _Group:
        key = (change.recipients, change.webhooks)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(
                recipients=change.recipients, webhooks=change.webhooks
            )
        return group

    def _next_due(self, group: _Group) -> int | None:
        last = group.last_slot_us
        if group.earliest_queued_us is not None:
            due = group.earliest_queued_us + self._group_wait_us
            if last is not None:
                due = max(due, last + self._group_interval_us)
            return due
        if last is not None and self._released(group):
            return last + self._group_interval_us
        if group.firing and last is not None:
            return last + self._repeat_us
        return None

    def _released(self, group: _Group) -> bool:
        """Whether a silence ended over a device the last digest held back, which is still
        firing or stale: the next digest tells about it without waiting for a reminder."""
        if not group.held or self.silences is None:
            return False
        generation = self.silences.generation()
        if generation == group.held_checked:
            return False
        held = {d for d in group.held if d in group.firing or d in group.stale}
        if held - self.silences.covered(held):
            return True
        # Nothing released under these silences: not asked again until they change.
        group.held, group.held_checked = held, generation
        return False

    def _latest_reminder_slot(self, first_us: int, now_us: int) -> int:
        """A gap in the stream (a replay's missing days, a clock jump) would otherwise
        mail one identical reminder per interval it spans: remind once, at the last slot."""
        return first_us + (now_us - first_us) // self._repeat_us * self._repeat_us

    def _emit(self, group: _Group, slot_us: int, *, upto_us: int, live: LiveStats) -> Digest | None:
        """The digest of ``slot_us`` (None when every device in it is silenced)."""
        taken = group.take(upto_us)
        # Stable sort: two changes of one device at the same time keep their order.
        taken.sort(key=lambda c: (c.at_us, c.device))
        new_firing: set[str] = set()
        new_stale: set[str] = set()
        resolved: dict[str, Change] = {}
        recovered: dict[str, Change] = {}
        for change in taken:
            device = change.device
            if change.state == "firing":
                group.firing[device] = change
                new_firing.add(device)
                resolved.pop(device, None)
            elif change.state == "resolved":
                group.firing.pop(device, None)
                new_firing.discard(device)
                resolved[device] = change
            elif change.state == "stale":
                group.stale[device] = change
                new_stale.add(device)
                recovered.pop(device, None)
            else:
                group.stale.pop(device, None)
                new_stale.discard(device)
                recovered[device] = change
        group.last_slot_us = slot_us
        kind: Literal["change", "reminder"] = "change" if taken else "reminder"
        if taken:
            about: list[Any] = [[c.device, c.state, c.at_us] for c in taken]
        else:
            about = [[d, c.at_us] for d, c in sorted(group.firing.items())]
        identity_parts = [_ID_VERSION, kind, slot_us, list(group.recipients), about]
        if group.webhooks:
            # Only then: the ids of digests without own webhooks stay what they were.
            identity_parts.append(list(group.webhooks))
        identity = orjson.dumps(identity_parts)
        quiet = self._silenced({*group.firing, *resolved, *group.stale, *recovered})
        group.held = {d for d in quiet if d in group.firing or d in group.stale}
        group.held_checked = None
        firing = {d: c for d, c in group.firing.items() if d not in quiet}
        stale = {d: c for d, c in group.stale.items() if d not in quiet}
        resolved = {d: c for d, c in resolved.items() if d not in quiet}
        recovered = {d: c for d, c in recovered.items() if d not in quiet}
        # Nothing to tell when every change in it is a silenced device's (the others still
        # firing wait for their reminder, as they would have without this digest).
        if quiet and not (any(c.device not in quiet for c in taken) if taken else firing):
            return None
        settings = self.settings
        return Digest(
            digest_id=hashlib.sha256(identity).hexdigest()[:32],
            kind=kind,
            slot_us=slot_us,
            recipients=group.recipients,
            metric=settings.metric,
            firing=tuple(
                self._report(c, new=d in new_firing, live=live) for d, c in sorted(firing.items())
            ),
            resolved=tuple(
                self._report(c, new=True, live=live) for _, c in sorted(resolved.items())
            ),
            stale=tuple(
                self._report(c, new=d in new_stale, live=live) for d, c in sorted(stale.items())
            ),
            recovered=tuple(
                self._report(c, new=True, live=live) for _, c in sorted(recovered.items())
            ),
            stale_after=settings.stale_after,
            silenced=len(quiet),
            webhooks=group.webhooks,
        )

    def _silenced(self, devices: set[str]) -> set[str]:
        return set() if self.silences is None else self.silences.covered(devices)

    def _report(self, change: Change, *, new: bool, live: LiveStats) -> DeviceReport:
        value = change.value
        window_mean = change.window_mean
        running_mean = change.running_mean
        maximum = change.max
        last_seen = change.last_seen_us
        trend: tuple[float | None, ...] = ()
        pane_s = 0.0
        stats = live(change.device)
        if stats is not None:
            trend = stats.pane_means()
            pane_s = stats.spec.pane_us / 1e6
            window_mean = stats.window_mean
            running_mean = stats.mean
            maximum = stats.max
            last_seen = stats.head_us
            if change.state == "firing":
                value = window_mean if self.settings.metric == "window" else running_mean
        return DeviceReport(
            device=change.device,
            value=value,
            window_mean=window_mean,
            running_mean=running_mean,
            max=maximum,
            threshold=change.threshold,
            clear_below=change.clear_below,
            since_us=change.at_us,
            last_seen_us=last_seen,
            new=new,
            trend=trend,
            pane_s=pane_s if trend else 0.0,
        )


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"alerter state: expected a number or null, got {value!r}")
    return float(value)
