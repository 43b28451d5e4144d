"""Devices seen in more than one partition: input not keyed by device.

Each partition (and instance) then sees only part of a device, averages it separately and
alerts on its part alone. Said in the log, one device by name for the first few, then only
totals.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Final

from iotmon.engine.partition import PartitionState

__all__ = ["SplitWatch"]

log = logging.getLogger(__name__)

_NAMED: Final = 10
_REMEMBERED: Final = 100_000


class SplitWatch:
    """Watches the engine's live map of partitions."""

    def __init__(self, partitions: Mapping[str, PartitionState]) -> None:
        self._partitions = partitions
        self._split: set[str] = set()
        self.count = 0
        """Devices seen in more than one partition of this instance."""

    def added(self, partition: str, before: int) -> None:
        """``partition`` had ``before`` devices; the ones added since are checked."""
        if len(self._partitions) > 1:
            devices = self._partitions[partition].table.devices
            if len(devices) > before:
                # New devices are the last ones in insertion order: only they are checked.
                self.check(partition, islice(reversed(devices), len(devices) - before))

    def restored(self, part: PartitionState) -> None:
        if len(self._partitions) > 1:
            self.check(part.name, part.table.devices)

    def check(self, partition: str, keys: Iterable[str]) -> None:
        """Warn about ``keys`` of ``partition`` also found in another partition."""
        others = [
            (name, p.table.devices) for name, p in self._partitions.items() if name != partition
        ]
        for key in keys:
            if key in self._split:
                continue
            other = next((name for name, devices in others if key in devices), None)
            if other is None:
                continue
            if len(self._split) < _REMEMBERED:
                self._split.add(key)
            self.count += 1
            count = self.count
            if count <= _NAMED:
                log.warning(
                    "device %s is in partitions %s and %s: the input is not keyed by device, "
                    "so its readings are split and each part is averaged separately (the final "
                    "report merges them, alerts do not) — re-key the topic with `iotmon "
                    "repartition`",
                    key,
                    other,
                    partition,
                )
            elif count & (count - 1) == 0 or count % 10_000 == 0:
                log.warning("%d devices seen in more than one partition so far", count)
