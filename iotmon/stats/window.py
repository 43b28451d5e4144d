"""Sliding event-time window geometry; the rules are documented in :mod:`iotmon.stats`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from iotmon.errors import ConfigError

_US_PER_S = 1_000_000
# The defaults, in seconds; the fields below hold them in µs.
_WINDOW_S = 300
_PANE_S = 10
_LATENESS_S = 30


def _seconds_to_us(name: str, seconds: float) -> int:
    if not math.isfinite(seconds):
        raise ConfigError(f"{name} must be a finite number of seconds, got {seconds!r}")
    # round() rather than int(): 0.3 * 1e6 is 299999.99999999994, which must mean 300000 µs.
    return round(seconds * _US_PER_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSpec:
    """Window length, pane granularity and allowed lateness, all in integer microseconds."""

    window_us: int = _WINDOW_S * _US_PER_S
    pane_us: int = _PANE_S * _US_PER_S
    lateness_us: int = _LATENESS_S * _US_PER_S
    # A stored field rather than a computed property: DeviceStats.add reads it on the hot path.
    panes: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("window_us", "pane_us", "lateness_us"):
            value = getattr(self, name)
            # bool is an int subclass; WindowSpec(pane_us=True) is always a mistake.
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an int (microseconds), got {value!r}")
        if self.pane_us <= 0:
            raise ConfigError(f"pane_us must be positive, got {self.pane_us}")
        if self.window_us <= 0:
            raise ConfigError(f"window_us must be positive, got {self.window_us}")
        if self.lateness_us < 0:
            raise ConfigError(f"lateness_us must be >= 0, got {self.lateness_us}")
        if self.window_us % self.pane_us:
            raise ConfigError(
                f"window_us ({self.window_us} µs) must be a whole multiple of pane_us "
                f"({self.pane_us} µs); {self.window_us} / {self.pane_us} = "
                f"{self.window_us / self.pane_us:g}"
            )
        object.__setattr__(self, "panes", self.window_us // self.pane_us)

    @classmethod
    def from_seconds(
        cls, *, window: float = _WINDOW_S, pane: float = _PANE_S, lateness: float = _LATENESS_S
    ) -> WindowSpec:
        """Build a spec from seconds (rounded to the nearest microsecond)."""
        return cls(
            window_us=_seconds_to_us("window", window),
            pane_us=_seconds_to_us("pane", pane),
            lateness_us=_seconds_to_us("lateness", lateness),
        )
