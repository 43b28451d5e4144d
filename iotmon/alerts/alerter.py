"""The alerter: one per process. Owns the trackers of its partitions, the digest schedule
and the alerts log, and decides what to tell; telling it is :mod:`iotmon.notify`'s.

Data flow::

    tracker.observe()  ──transition──▶  Alerter.record()  ──▶ alerts log, transitions,
                                                               digest queue (if notable)
    Alerter.tick(now)  ──▶ trackers advance (for / stale deadlines)
                       ──▶ due digests handed to the sink (:class:`DigestSink`; usually
                           :class:`iotmon.notify.Notifications`, which renders them and
                           fsyncs them into the outbox before waking its delivery task)

Everything here is synchronous and runs on the consumer's task, so a checkpoint taken
between batches sees trackers, schedule and the sink's queue in agreement.

Crash safety: tracker states are saved in each partition's checkpoint, the schedule
(:meth:`to_state`) in the process checkpoint. After a crash, the replay from the
checkpoint regenerates the same transitions at the same event times and so the same
digests with the same ids; the outbox drops those it already holds or has sent (see
:mod:`iotmon.notify.outbox` for the remaining duplicate window). The alerts log is
append-only and may repeat the replayed transitions.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeAlias

import orjson

from iotmon.alerts.digest import Change, ChangeState, DigestScheduler
from iotmon.alerts.model import Digest
from iotmon.alerts.rules import AlertSettings, Rule, RuleBook
from iotmon.alerts.silences import Silences
from iotmon.alerts.tracker import AlertTracker, StatsView, Transition

__all__ = ["Alerter", "DigestSink"]

DigestSink: TypeAlias = Callable[[Sequence[Digest]], None]
"""Takes the digests now due, synchronously (it must make them durable before returning:
the next checkpoint records their changes as announced)."""

log = logging.getLogger(__name__)

# The transitions people are told about, narrowed to the digest's vocabulary.
_NOTABLE: dict[str, ChangeState] = {
    "firing": "firing",
    "resolved": "resolved",
    "stale": "stale",
    "recovered": "recovered",
}
_STATE_VERSION = 1


class Alerter:
    """Alert rules and digest scheduling for one process.

    Due digests go to ``sink``. Transitions are appended as JSON lines to ``alerts_log``
    (default ``<state_dir>/alerts.jsonl``).
    """

    def __init__(
        self,
        *,
        settings: AlertSettings,
        sink: DigestSink,
        state_dir: Path,
        alerts_log: Path | None = None,
        silences: Silences | None = None,
    ) -> None:
        self.settings = settings
        self.rules = RuleBook(settings)
        self.silences = silences
        """Asked when digests are built and transitions logged; None: nothing is silenced."""
        self._sink = sink
        self._scheduler = DigestScheduler(settings=settings, silences=silences)
        self._trackers: dict[str, AlertTracker] = {}
        self._transitions: deque[Transition] = deque(maxlen=settings.transitions_kept)
        self._log_path = Path(alerts_log) if alerts_log else state_dir / "alerts.jsonl"
        self._log_file: IO[bytes] | None = None
        self._log_broken = False
        self._now_us = 0

    def __repr__(self) -> str:
        return f"Alerter(partitions={sorted(self._trackers)}, log={str(self._log_path)!r})"

    # -- partitions --------------------------------------------------------------------

    def tracker(self, partition: str, *, state: Mapping[str, Any] | None = None) -> AlertTracker:
        """The tracker of ``partition``: new, or rebuilt from its checkpointed ``state``
        (:meth:`AlertTracker.to_state`). Raises ValueError for a malformed state."""
        if state is None:
            tracker = AlertTracker(partition=partition, rules=self.rules, sink=self)
        else:
            tracker = AlertTracker.from_state(
                state, partition=partition, rules=self.rules, sink=self
            )
            self._adopt(tracker)
        self._trackers[partition] = tracker
        return tracker

    def release(self, partition: str) -> dict[str, Any] | None:
        """Drop a partition that moved to another process; returns its final tracker state.
        Its devices stop appearing in reminders here; changes already queued still go out."""
        tracker = self._trackers.pop(partition, None)
        if tracker is None:
            return None
        self._scheduler.forget({t.device for t, _, _ in tracker.active()})
        return tracker.to_state()

    # -- the digest queue's share of each partition --------------------------------------
    #
    # Changes queued but not announced yet travel in their partition's checkpoint, so that
    # whichever process owns a device's partition is the only one that tells about it.

    def queued_changes(self) -> list[Change]:
        """Every change queued for a digest."""
        return list(self._scheduler.queued())

    def drop_queued(self, devices: Container[str]) -> int:
        """Remove the queued changes of ``devices`` (a partition that moved away: its new
        owner announces them); returns how many were dropped."""
        return self._scheduler.drop_queued(devices)

    def requeue(self, changes: Iterable[Change]) -> None:
        """Queue a restored partition's unannounced changes again, in their recipient
        groups."""
        for change in changes:
            self._scheduler.add(change)

    # -- the data path (synchronous) ---------------------------------------------------

    def record(self, transition: Transition, rule: Rule, stats: StatsView | None) -> None:
        """Called by the trackers for every transition."""
        self._transitions.append(transition)
        self._write_log(transition)
        state = _NOTABLE.get(transition.state)
        if state is not None:
            self._scheduler.add(_change(transition, state, rule, stats))

    def tick(self, now_us: int) -> None:
        """Advance the stream clock (µs; never moves backwards): fire pending devices whose
        ``for`` elapsed, mark silent devices stale, and queue the digests now due — each
        handed to the sink."""
        if now_us > self._now_us:
            self._now_us = now_us
        now_us = self._now_us
        for tracker in self._trackers.values():
            tracker.advance(now_us)
        due = self._scheduler.next_due_us()
        if due is not None and due <= now_us:
            self._queue(self._scheduler.due(now_us, live=self._live_stats))

    # -- state -------------------------------------------------------------------------

    def to_state(self, *, devices: bool = True) -> dict[str, Any]:
        """JSON-able process-level state (digest schedule and queue), for the checkpoint.

        ``devices=False`` leaves out everything that belongs to partitions: queued changes
        travel in the partition checkpoints, firing and stale devices are adopted again from
        the trackers of the partitions this process gets. Left: the digest schedule."""
        return {
            "version": _STATE_VERSION,
            "now_us": self._now_us,
            "digests": self._scheduler.to_state(devices=devices),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load :meth:`to_state` output; an empty mapping (first run) is a no-op."""
        if not state:
            return
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"alerter state: unknown version {state.get('version')!r}")
        self._scheduler.restore(state["digests"])
        self._now_us = max(self._now_us, int(state["now_us"]))
        for tracker in self._trackers.values():
            self._adopt(tracker)

    # -- the end of a run -------------------------------------------------------------

    def drain(self) -> None:
        """Queue the changes still waiting for their group slot now, one digest per group,
        so a run that ends (``--once``) does not keep its last alerts to itself.

        Call it before the final checkpoint: the checkpoint then records them as sent, and
        the next start does not announce them again in a differently grouped digest."""
        self._queue(self._scheduler.drain(live=self._live_stats))

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- views -------------------------------------------------------------------------

    @property
    def transitions(self) -> list[Transition]:
        """The most recent transitions (up to ``settings.transitions_kept``), in the order
        they were recorded."""
        return list(self._transitions)

    @property
    def now_us(self) -> int:
        return self._now_us

    def states(self) -> dict[str, str]:
        """Devices that are pending, firing or stale, over all partitions."""
        result: dict[str, str] = {}
        for tracker in self._trackers.values():
            result.update(tracker.states())
        return result

    def silenced_devices(self) -> list[str]:
        """The pending, firing and stale devices an active silence covers now."""
        if self.silences is None:
            return []
        return sorted(self.silences.covered(self.states()))

    # -- internals ---------------------------------------------------------------------

    def _queue(self, digests: list[Digest]) -> None:
        if digests:
            self._sink(digests)

    def _live_stats(self, device: str) -> StatsView | None:
        for tracker in self._trackers.values():
            stats = tracker.stats_of(device)
            if stats is not None:
                return stats
        return None

    def _adopt(self, tracker: AlertTracker) -> None:
        for transition, rule, stats in tracker.active():
            state = _NOTABLE[transition.state]
            self._scheduler.adopt(_change(transition, state, rule, stats))

    def _write_log(self, transition: Transition) -> None:
        if self._log_broken:
            return
        try:
            if self._log_file is None:
                self._log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log_file = self._log_path.open("ab")
            doc = transition.to_json()
            if self.silences is not None and self.silences.silenced(transition.device):
                # Not mailed: whoever reads the log should know why.
                doc["silenced"] = True
            self._log_file.write(orjson.dumps(doc) + b"\n")
            # Flushed per line so `tail -f` shows transitions as they happen; they are rare.
            self._log_file.flush()
        except OSError as exc:
            # The log is a convenience; alerting must go on without it.
            self._log_broken = True
            log.error(
                "cannot write the alerts log %s, no more transitions go there: %s",
                self._log_path,
                exc,
            )


def _change(
    transition: Transition, state: ChangeState, rule: Rule, stats: StatsView | None
) -> Change:
    return Change(
        device=transition.device,
        state=state,
        at_us=transition.at_us,
        value=transition.value,
        threshold=rule.threshold,
        clear_below=rule.clear_below,
        recipients=rule.recipients,
        webhooks=rule.webhooks,
        window_mean=None if stats is None else stats.window_mean,
        running_mean=None if stats is None else stats.mean,
        max=None if stats is None else stats.max,
        last_seen_us=None if stats is None else stats.head_us,
    )
