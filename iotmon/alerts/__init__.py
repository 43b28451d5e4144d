"""Alerting: per-device rules judged on event time, grouped into digests. Deciding only:
rendering and delivery are :mod:`iotmon.notify`'s.

- :mod:`~iotmon.alerts.rules` — :class:`AlertSettings`, per-device overrides, the resolved
  :class:`Rule` of each device.
- :mod:`~iotmon.alerts.tracker` — :class:`AlertTracker`, the per-partition state machine
  (pending → firing → resolved, stale) and the clock design behind it.
- :mod:`~iotmon.alerts.digest` — when digests go out, what they contain, their identity.
- :mod:`~iotmon.alerts.model` — :class:`Digest`, what a notification tells.
- :mod:`~iotmon.alerts.silences` — silences: which devices digests leave out for now.
- :mod:`~iotmon.alerts.alerter` — :class:`Alerter`, which runs those for a process and
  hands due digests to a sink (:class:`iotmon.notify.Notifications` in the pipeline).
"""

from iotmon.alerts.alerter import Alerter
from iotmon.alerts.digest import Change, DigestScheduler
from iotmon.alerts.rules import AlertSettings, Rule, RuleBook, RuleOverride
from iotmon.alerts.tracker import (
    AlertTracker,
    StatsView,
    Transition,
    TransitionSink,
    TransitionState,
)

__all__ = [
    "AlertSettings",
    "AlertTracker",
    "Alerter",
    "Change",
    "DigestScheduler",
    "Rule",
    "RuleBook",
    "RuleOverride",
    "StatsView",
    "Transition",
    "TransitionSink",
    "TransitionState",
]
