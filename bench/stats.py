"""Summaries of repeated measurements: median with min–max, and latency percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Summary", "against_baseline", "percentile", "summarize"]


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


def against_baseline(
    current: Sequence[float | None], baseline: Sequence[float | None], *, higher_is_better: bool
) -> dict[str, Any]:
    """The current tree's measure over a baseline's, round by round (``current[i]`` and
    ``baseline[i]`` ran in the same round; None where a run failed), with a verdict.

    Noise is the baseline's relative spread over the rounds, (max − min) ÷ median: what the
    same code does from round to round on this machine (the current tree's own spread is
    left out, as an intermittent slowdown would widen it). A change is beyond noise when the
    median of the per-round ratios is further from 1 than that: below 1 − noise for a rate,
    above 1 + noise for a time, is ``worse`` (the other way ``better``). One round gives no
    spread, hence no verdict."""
    pairs = [
        (c, b)
        for c, b in zip(current, baseline, strict=False)
        if c is not None and b is not None and b > 0
    ]
    mine, theirs = summarize([c for c, _ in pairs]), summarize([b for _, b in pairs])
    ratios = summarize([c / b for c, b in pairs])
    out: dict[str, Any] = {
        "current": mine.to_json() if mine else None,
        "baseline": theirs.to_json() if theirs else None,
        "ratio": ratios.to_json() if ratios else None,
        "higher_is_better": higher_is_better,
        "noise": None,
        "verdict": "not measured",
    }
    if mine is None or theirs is None or ratios is None:
        return out
    if len(pairs) < 2:
        out["verdict"] = "one round: no noise estimate"
        return out
    noise = (theirs.high - theirs.low) / theirs.median if theirs.median > 0 else 0.0
    out["noise"] = noise
    low, high = ratios.median < 1 - noise, ratios.median > 1 + noise
    if low or high:
        out["verdict"] = "better" if high == higher_is_better else "worse"
    else:
        out["verdict"] = "within noise"
    return out
