"""Alert settings and the per-device rule each device is judged by.

A device's rule is the global settings with the first matching override applied
(``fnmatch`` glob on the device key, case-sensitive). Without an explicit ``clear_below``,
an override keeps the global hysteresis gap: global threshold 75 with clear-below 73 and an
override threshold of 90 resolve below 88.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final

from iotmon.addresses import check_address, check_webhook_ref, webhook_id
from iotmon.alerts.model import METRICS, Metric
from iotmon.errors import ConfigError

__all__ = [
    "DEFAULT_THRESHOLD",
    "AlertSettings",
    "Rule",
    "RuleBook",
    "RuleOverride",
    "device_matches",
]

DEFAULT_THRESHOLD: Final = 75.0
"""°C: the threshold of the original notebook."""

_US_PER_S: Final = 1_000_000
_DEFAULT_GAP: Final = 2.0


def device_matches(device: str, pattern: str) -> bool:
    """Whether ``pattern`` (an ``fnmatch`` glob, case-sensitive) covers device key ``device``:
    how overrides and silences pick their devices."""
    return fnmatchcase(device, pattern)


def seconds_to_us(seconds: float) -> int:
    # round(), not int(): 0.3 s is 299999.99999999994 µs in floating point.
    return round(seconds * _US_PER_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleOverride:
    """Per-device settings from the config file; unset fields fall back to the globals."""

    match: str
    threshold: float | None = None
    clear_below: float | None = None
    for_seconds: float | None = None
    recipients: tuple[str, ...] | None = None
    webhooks: tuple[str, ...] | None = None
    """Webhook references (``env:NAME``, ``file:PATH`` or a URL) replacing the default
    ``--webhook-url`` list for the matching devices."""

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> RuleOverride:
        """From a config-file table: ``{match = "glob", threshold = 90, clear_below = 85,
        for = 30, recipients = ["a@x"], webhooks = ["env:LINE3_TEAMS"]}`` (``recipients``
        and ``webhooks`` may also be one string).
        ConfigError, naming the override, for unknown keys or wrong types."""
        where = f"override {table.get('match')!r}"
        known = {"match", "threshold", "clear_below", "for", "recipients", "webhooks"}
        unknown = set(table) - known
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        match = table.get("match")
        if not isinstance(match, str):
            raise ConfigError(f"override: 'match' must be a glob string, got {match!r}")
        recipients = table.get("recipients")
        if isinstance(recipients, str):
            recipients = [recipients]
        if recipients is not None and not (
            isinstance(recipients, list | tuple) and all(isinstance(r, str) for r in recipients)
        ):
            raise ConfigError(f"{where}: recipients must be a list of addresses")
        webhooks = table.get("webhooks")
        if isinstance(webhooks, str):
            webhooks = [webhooks]
        if webhooks is not None and not (
            isinstance(webhooks, list | tuple) and all(isinstance(w, str) for w in webhooks)
        ):
            raise ConfigError(f"{where}: webhooks must be a list of env:NAME, file:PATH or URLs")
        return cls(
            match=match,
            threshold=_number(where, "threshold", table.get("threshold")),
            clear_below=_number(where, "clear_below", table.get("clear_below")),
            for_seconds=_number(where, "for", table.get("for")),
            recipients=None if recipients is None else tuple(recipients),
            webhooks=None if webhooks is None else tuple(webhooks),
        )

    def __post_init__(self) -> None:
        where = f"override {self.match!r}"
        if not self.match:
            raise ConfigError("override: match must be a non-empty glob")
        _finite(f"{where}: threshold", self.threshold)
        _finite(f"{where}: clear_below", self.clear_below)
        _non_negative(f"{where}: for", self.for_seconds)
        if self.recipients is not None:
            if not self.recipients:
                raise ConfigError(f"{where}: recipients must not be empty (leave it out instead)")
            for address in self.recipients:
                check_address(f"{where}: recipients", address)
        if self.webhooks is not None:
            if not self.webhooks:
                raise ConfigError(f"{where}: webhooks must not be empty (leave it out instead)")
            for ref in self.webhooks:
                check_webhook_ref(f"{where}: webhooks", ref)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertSettings:
    """When a device's average counts as a problem, and how often to tell about it.

    Durations are seconds. ``clear_below=None`` means ``threshold - 2``; ``stale_after=None``
    turns stale detection off.
    """

    threshold: float = DEFAULT_THRESHOLD
    metric: Metric = "window"
    for_seconds: float = 60.0
    clear_below: float | None = None
    stale_after: float | None = None
    group_wait: float = 10.0
    group_interval: float = 60.0
    repeat_interval: float = 4 * 3600.0
    overrides: tuple[RuleOverride, ...] = ()
    transitions_kept: int = 10_000
    """How many recent transitions :attr:`Alerter.transitions` keeps in memory."""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"metric: must be window or running, got {self.metric!r}")
        _finite("threshold", self.threshold)
        _finite("clear-below", self.clear_below)
        if self.effective_clear_below > self.threshold:
            raise ConfigError(
                f"clear-below ({self.effective_clear_below}) must not be above the threshold "
                f"({self.threshold}): a firing device could never resolve",
                setting="clear_below",
            )
        _non_negative("for", self.for_seconds)
        _non_negative("group-wait", self.group_wait)
        for name in ("stale_after", "group_interval", "repeat_interval"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                option = name.replace("_", "-")
                raise ConfigError(f"{option}: must be a positive number of seconds, got {value}")
        if self.transitions_kept < 0:
            raise ConfigError("transitions_kept: must be >= 0")
        # Building every rule once here reports a bad override at startup, not at the first
        # device that happens to match it.
        for override in self.overrides:
            _resolve(self, override)

    @property
    def effective_clear_below(self) -> float:
        if self.clear_below is not None:
            return self.clear_below
        return self.threshold - _DEFAULT_GAP


@dataclass(frozen=True, slots=True)
class Rule:
    """The resolved rule of one device; times in integer microseconds."""

    threshold: float
    clear_below: float
    for_us: int
    recipients: tuple[str, ...]
    """Empty: the default ``--mail-to`` recipients."""
    webhooks: tuple[str, ...] = ()
    """Webhook destination ids; empty: the default ``--webhook-url`` list."""


class RuleBook:
    """Resolves and caches the rule of each device key."""

    __slots__ = ("_cache", "_default", "settings")

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        self._default = _resolve(settings, None)
        self._cache: dict[str, Rule] = {}

    @property
    def uniform(self) -> bool:
        """Whether every device has the same rule (no overrides)."""
        return not self.settings.overrides

    @property
    def default(self) -> Rule:
        return self._default

    def rule_for(self, device: str) -> Rule:
        if self.uniform:
            # No per-device cache entry: at a million devices it would cost ~100 MB.
            return self._default
        rule = self._cache.get(device)
        if rule is None:
            rule = self._default
            for override in self.settings.overrides:
                if device_matches(device, override.match):
                    rule = _resolve(self.settings, override)
                    break
            self._cache[device] = rule
        return rule


def _resolve(settings: AlertSettings, override: RuleOverride | None) -> Rule:
    if override is None:
        return Rule(
            threshold=settings.threshold,
            clear_below=settings.effective_clear_below,
            for_us=seconds_to_us(settings.for_seconds),
            recipients=(),
        )
    threshold = settings.threshold if override.threshold is None else override.threshold
    if override.clear_below is not None:
        clear_below = override.clear_below
    else:
        clear_below = threshold - (settings.threshold - settings.effective_clear_below)
    if clear_below > threshold:
        raise ConfigError(
            f"override {override.match!r}: clear_below ({clear_below}) must not be above its "
            f"threshold ({threshold})"
        )
    for_seconds = settings.for_seconds if override.for_seconds is None else override.for_seconds
    return Rule(
        threshold=threshold,
        clear_below=clear_below,
        for_us=seconds_to_us(for_seconds),
        recipients=tuple(sorted(set(override.recipients or ()))),
        webhooks=tuple(sorted({webhook_id(ref) for ref in override.webhooks or ()})),
    )


def _finite(option: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise ConfigError(f"{option}: must be a finite number, got {value}")


def _non_negative(option: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{option}: must be zero or a positive number of seconds, got {value}")


def _number(where: str, key: str, value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)
