"""Apply a batch to its partition: the exact path and the fast lane, side by side.

**The exact path** is the rule book, one reading at a time: parse the line (naming the
reason when it is not a reading), check its time against the partition's horizon
(:mod:`iotmon.engine.horizon`), add it to its device's statistics
(:meth:`DeviceStats.add <iotmon.stats.DeviceStats.add>`) and let the alert tracker judge
the result (:meth:`AlertTracker.observe <iotmon.alerts.AlertTracker.observe>`).

**The fast lane** gives the same answers for most readings of a steady stream, doing only
what can make a difference:

1. Lines are parsed a block at a time into columns (:mod:`iotmon.blocks`), for large
   batches in a second process while this one applies the blocks before
   (:mod:`iotmon.engine.decoder`). A block with any line that is not a plain reading goes
   line by line through the exact path.
2. A block whose latest event time is within the partition's horizon holds no reading the
   horizon would reject, and the partition's head after it is that latest time.
3. A device is *held* (:meth:`DeviceStats.hold <iotmon.stats.DeviceStats.hold>`) after an
   exact reading that was in order, when the tracker gives a range its metric may keep
   with nothing to do but record it (:meth:`AlertTracker.follow
   <iotmon.alerts.AlertTracker.follow>`: at or below the threshold for a device that is
   ok, at or above the clear level for one that is firing, a margin inside). A reading of
   a held device that is a float, not before the device's latest time and in its head
   pane is then only appended to its held readings, when its value is in that range (two
   string compares and two float compares decide), or when the device's *slack*, how far
   its metric may still move before it leaves the range, covers the value. One in a later
   pane is appended too if every pane of the device's window had its mean in the range
   when it was held (always, for the running-mean metric) and its metric stays in range
   whichever panes leave the window. A device stays held when its readings are folded in
   for a reader (a checkpoint, a view, a digest) or to bound their memory, until a
   reading of it takes the exact path.

Why the fast lane changes nothing (the invariant). Statistics: a held reading is in order;
in the head pane it is not late and moves no window, so adding it changes the running sums
and counts, min, max, last and the head pane's sums only, and folding the held readings in
later performs the very same float operations in the same order; a reading in a later
pane is folded in through :meth:`add`'s own steps. Alerts: the metric after a held reading
is a mean of values in the range together with a window whose mean was (in the head pane),
or with panes whose means each were (across panes; whichever of them leave the window), or
with a history whose mean was (the running mean), with any values outside the range paid
for out of the slack, which counts only what they take (what values inside the range give
back is left out, so it never overstates); so it stays in the range, where
:meth:`observe <iotmon.alerts.AlertTracker.observe>` would only have recorded it, and the
tracker takes those records from the statistics from then on. The margin, a millionth of
the largest valid magnitude, covers the rounding of any mean of fewer than 2**32 readings.

The property test ``tests/test_fast_lane.py`` runs random streams through both paths and
demands identical statistics, counts and alert transitions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Final

from iotmon.blocks import BLOCK_LINES, Columns
from iotmon.engine.decoder import BlockDecoder
from iotmon.engine.partition import PartitionState
from iotmon.engine.rejections import capped, reject, too_far_ahead
from iotmon.parse import (
    ReadingParser,
    Rejection,
    canonical_event_us,
    format_event_time,
    is_valid_key,
)
from iotmon.sources.base import Batch
from iotmon.state.deadletters import DeadLetters
from iotmon.stats import DeviceStats, WindowSpec

__all__ = ["BatchApplier"]

_MOST_HELD: Final = 1 << 20
"""Readings held across a partition before all are folded in: bounds the memory they take
(8 bytes each)."""
_MOST_HELD_DEVICES: Final = 1 << 14
"""Devices held at once in a partition before all are let go (a held device costs a
few hundred bytes more, which at a million devices would not fit in their 1 KB each)."""
_PANE_ENDS_CACHE_LIMIT: Final = 4096
_MARGIN: Final = 1e-6
"""Of the largest valid magnitude: more than the rounding of any mean of fewer than 2**32
readings (see the module docstring)."""


@dataclass(slots=True)
class _Run:
    """What applying one batch carries from block to block."""

    part: PartitionState
    batch: Batch
    dead_letters: DeadLetters
    now_us: int
    head: int
    reference: int
    limit: int
    accepted: int = 0
    late: int = 0


class BatchApplier:
    """Applies batches to partitions, for one pipeline's parse and window settings.

    ``fast=False`` applies every reading through the exact path (for tests that compare
    the two, and as the reference)."""

    __slots__ = (
        "_blocks",
        "_margin",
        "_max_future_us",
        "_max_line_bytes",
        "_pane_ends",
        "_panes_by_second",
        "_parser",
        "_spec",
        "_window",
    )

    def __init__(
        self,
        parser: ReadingParser,
        *,
        spec: WindowSpec,
        max_future_us: int,
        max_line_bytes: int,
        window_metric: bool,
        fast: bool = True,
        decode_worker: bool,
    ) -> None:
        self._parser = parser
        self._spec = spec
        self._max_future_us = max_future_us
        self._max_line_bytes = max_line_bytes
        settings = parser.settings
        self._blocks = BlockDecoder(settings, worker=decode_worker) if fast else None
        self._margin = _MARGIN * max(1.0, abs(settings.valid_min), abs(settings.valid_max))
        self._pane_ends: dict[int, str] = {}
        self._panes_by_second: dict[str, tuple[int, str]] = {}
        self._window = window_metric

    def apply(self, part: PartitionState, batch: Batch, dead_letters: DeadLetters) -> None:
        """Fold ``batch`` into ``part``: statistics, alert states, counters, head."""
        now_us = time.time_ns() // 1000
        head = part.head_us
        # Event times past `limit` are checked against --max-future (iotmon.engine.horizon);
        # the limit is only brought up to date there, so a reading in bounds costs a compare.
        reference = part.horizon.reference(head, now_us)
        limit = reference + self._max_future_us if head else 0
        run = _Run(part, batch, dead_letters, now_us, head, reference, limit)
        lines = batch.lines
        blocks = self._blocks
        if blocks is None or batch.oversized:
            self._exact_lines(run, 0, len(lines))
        else:
            for block, columns in enumerate(blocks.columns(lines, joined=batch.joined)):
                start = block * BLOCK_LINES
                end = min(start + BLOCK_LINES, len(lines))
                if columns is None or columns.latest_us > run.limit:
                    self._exact_lines(run, start, end)
                else:
                    handed_back = self._columns(run, start, columns)
                    latest = columns.latest_us
                    if handed_back:
                        latest = _latest_but(columns.stamps, handed_back, run.head)
                    if latest > run.head:
                        run.head = latest
        part.table.late += run.late
        part.read += len(lines)
        part.accepted += run.accepted
        if run.head != part.head_us:
            part.head_us = run.head
            part.horizon.head_wall_us = now_us

    def send_ahead(self, batch: Batch) -> None:
        """Have ``batch`` decoded while the batches before it are applied: it must be the
        next one :meth:`apply` gets after those sent ahead already."""
        if self._blocks is not None and not batch.oversized:
            self._blocks.send_ahead(batch.lines, joined=batch.joined)

    def close(self) -> None:
        """Stop the decode worker, if one was started."""
        if self._blocks is not None:
            self._blocks.close()

    # -- the exact path ----------------------------------------------------------------

    def _exact_lines(self, run: _Run, start: int, end: int) -> None:
        """Lines ``start:end`` of the batch, one at a time."""
        part, batch, dead_letters = run.part, run.batch, run.dead_letters
        parse = self._parser.parse
        if batch.oversized:
            parse = capped(parse, self._max_line_bytes)
        table = part.table
        devices = table.devices
        spec = table.spec
        observe = part.tracker.observe
        horizon = part.horizon
        head, limit = run.head, run.limit
        accepted = late = 0
        lines = batch.lines
        for index in range(start, end):
            line = lines[index]
            reading = parse(line)
            if type(reading) is tuple:
                key, value, event_us = reading
                if event_us > head:
                    if event_us > limit:
                        limit = horizon.limit(
                            event_us,
                            head_us=head,
                            reference_us=run.reference,
                            now_us=run.now_us,
                            ahead_us=self._max_future_us,
                        )
                        if event_us > limit:
                            why = self._too_far_ahead(event_us, run.now_us)
                            reject(part, batch, index, line, dead_letters, why)
                            continue
                    head = event_us
                stats = devices.get(key)
                if stats is None:
                    stats = devices[key] = DeviceStats(spec)
                if not stats.add(value, event_us):
                    late += 1
                observe(key, stats)
                accepted += 1
            else:
                assert isinstance(reading, Rejection)
                reject(part, batch, index, line, dead_letters, reading)
        run.head, run.limit = head, limit
        run.accepted += accepted
        run.late += late

    def _too_far_ahead(self, event_us: int, now_us: int) -> Rejection:
        settings = self._parser.settings
        ahead = self._max_future_us / 1_000_000
        return too_far_ahead(event_us, now_us, field=settings.time_field, max_future=ahead)

    # -- the fast lane, with the exact path for what it does not take ------------------

    def _columns(self, run: _Run, start: int, columns: Columns) -> list[int]:
        """A block parsed into columns, all within the horizon (see the module docstring);
        returns where in it the lines are that were not readings after all."""
        part = run.part
        table = part.table
        devices = table.devices
        spec = table.spec
        pane_us = spec.pane_us
        tracker = part.tracker
        observe = tracker.observe
        use_window = self._window
        held_devices = part.held
        held_of = held_devices.get
        follow = tracker.follow
        margin = self._margin
        accepted = late = exact = 0
        handed_back: list[int] = []
        n = len(columns.keys)
        for index, key, value, stamp in zip(
            range(start, start + n), columns.keys, columns.values, columns.stamps, strict=True
        ):
            held = held_of(key)
            if held is not None and held[1] <= stamp and type(value) is float:
                if stamp < held[0] and held[4] <= value <= held[5]:
                    # In order, in the head pane, the value itself in the range (so the
                    # metric stays in it): only the device's sums change.
                    held[1] = stamp
                    held[3].append(value)
                    continue
                # How far the device's metric may still move towards the finite end of its
                # range (one end is infinite, so min() picks the other), after this.
                # held[6] only counts the values outside the range, each of which takes
                # some slack; the values inside it, which give some, are left out, so it
                # is never more than the slack there is.
                slack = held[6] + min(held[5] - value, value - held[4])
                if slack >= 0.0:
                    if stamp < held[0]:
                        held[1] = stamp
                        held[6] = slack
                        held[7] = True  # this pane has a value outside the range
                        held[3].append(value)
                        continue
                    if held[2] is not None and self._cross(held, stamp, value, slack):
                        continue

            exact += 1
            stats = devices.get(key)
            if type(value) is bool or (stats is None and not is_valid_key(key)):
                # Not a reading after all: let the per-line parser say why.
                self._exact_lines(run, index, index + 1)
                handed_back.append(index - start)
                continue
            if stats is None:
                stats = devices[key] = DeviceStats(spec)
            event_us = canonical_event_us(stamp)
            if not stats.add(float(value), event_us):
                late += 1
            accepted += 1
            observe(key, stats)
            if stats.head_us != event_us:
                continue
            coast = follow(key, stats, margin=margin)
            if coast is not None:
                until = self._pane_end(event_us // pane_us)
                if until:
                    low, high = coast
                    across = not use_window or stats.panes_within(low, high)
                    if high < math.inf:
                        slack = stats.slack(high, window=use_window)
                    else:
                        slack = -stats.slack(low, window=use_window)
                    held = stats.hold(stamp, until, across=across)
                    # held[4:]: the range, the slack, and whether the head pane has taken
                    # a value outside the range.
                    held += (low, high, slack, False)
                    held_devices[key] = held
        run.accepted += accepted + n - exact
        run.late += late
        part.held_count += n - exact
        if len(held_devices) > _MOST_HELD_DEVICES:
            release_held(part)
        elif part.held_count > _MOST_HELD:
            fold_held(part)
        return handed_back

    def _cross(self, held: list[Any], stamp: str, value: float, slack: float) -> bool:
        """Append a reading of a held device in a later pane, if its metric stays in range
        whichever panes leave the window (see the module docstring)."""
        if self._window:
            # The panes left from before the device was held are each in range; so is the
            # pane it leaves now, unless a value outside the range went into it (held[7]);
            # then the new pane alone decides, starting from this reading.
            if held[7]:
                return False
            slack = min(held[5] - value, value - held[4])
            if slack < 0.0:
                return False
        pane, held[0] = self._pane_of(stamp)
        held[1] = stamp
        values = held[3]
        held[2].append((len(values), pane))
        values.append(value)
        held[6] = slack
        held[7] = False
        return True

    def _pane_of(self, stamp: str) -> tuple[int, str]:
        """The pane of ``stamp`` (a canonical ISO string) and the start of the next one (see
        :meth:`_pane_end`); remembered by the second when panes are whole seconds long."""
        second = stamp[:19]
        known = self._panes_by_second.get(second)
        if known is None:
            pane = canonical_event_us(stamp) // self._spec.pane_us
            known = (pane, self._pane_end(pane))
            if self._spec.pane_us % 1_000_000 == 0:
                if len(self._panes_by_second) >= _PANE_ENDS_CACHE_LIMIT:
                    self._panes_by_second.clear()
                self._panes_by_second[second] = known
        return known

    def _pane_end(self, pane: int) -> str:
        """The start of pane ``pane + 1`` as a canonical ISO string ("" if it has none)."""
        ends = self._pane_ends
        end = ends.get(pane)
        if end is None:
            if len(ends) >= _PANE_ENDS_CACHE_LIMIT:
                ends.clear()
            try:
                end = format_event_time((pane + 1) * self._spec.pane_us)
            except (OverflowError, ValueError):
                end = ""
            # strftime writes years before 1000 with fewer digits on some platforms.
            ends[pane] = end = end if len(end) == 27 else ""
        return end


def _latest_but(stamps: list[str], left_out: list[int], head_us: int) -> int:
    """The latest event time of ``stamps`` but those at ``left_out`` (``head_us`` if none)."""
    skip = set(left_out)
    kept = [stamp for k, stamp in enumerate(stamps) if k not in skip]
    return canonical_event_us(max(kept)) if kept else head_us


def fold_held(part: PartitionState) -> None:
    """Fold in the readings held for every device of ``part``; they stay held."""
    devices = part.table.devices
    for key in part.held:
        devices[key].settle()
    part.held_count = 0


def release_held(part: PartitionState) -> None:
    """Fold in the readings held for every device of ``part`` and stop holding them."""
    devices = part.table.devices
    for key in part.held:
        devices[key].release()
    part.held.clear()
    part.held_count = 0
