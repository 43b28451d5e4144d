"""A fixed-bucket histogram cheap enough to update once per batch on the data path."""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

__all__ = ["BATCH_SECONDS_BUCKETS", "Histogram"]

BATCH_SECONDS_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = BATCH_SECONDS_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus-style ``(le, cumulative count)`` pairs, ending with ``+Inf``."""
        total = 0
        result = []
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            total += count
            result.append((bound, total))
        return result
