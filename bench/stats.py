"""Summaries of repeated measurements: median with min–max, and latency percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Summary", "percentile", "summarize"]


@dataclass(frozen=True, slots=True)
class Summary:
    median: float
    low: float
    high: float
    n: int
    samples: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "n": self.n,
            "samples": list(self.samples),
        }


def summarize(samples: Sequence[float | None]) -> Summary | None:
    """Median and range of the samples that exist; None when there are none."""
    values = [float(s) for s in samples if s is not None and math.isfinite(s)]
    if not values:
        return None
    return Summary(statistics.median(values), min(values), max(values), len(values), tuple(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
