"""One run of a fleet as lines in the seed's byte layout, and the run's ground truth.

:class:`Readings` walks the :class:`~iotmon.tools.fleet.Fleet`'s devices cycle after cycle
(temperature = baseline + drift + noise, overheat ramps, dropouts, spikes, malformed and late
lines, as the fleet module describes) in one flat hot loop, and afterwards tells in
:meth:`Readings.manifest` what it emitted. Event times are integer microseconds since the epoch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from iotmon.parse import format_event_time
from iotmon.tools.fleet import (
    BAD_KINDS,
    BASELINE_MAX,
    DRIFT_MAX,
    FORMATO,
    MAX_SPIKE_TIMES_PER_DEVICE,
    NOISE,
    SPIKE_MIN,
    SPIKE_SPAN,
)

if TYPE_CHECKING:
    from iotmon.tools.fleet import Device, Fleet

__all__ = ["Readings", "format_line", "wall_clock_us"]

_NEVER: Final = 1 << 62
_US: Final = 1_000_000
_MID: Final = '", "padrao":{"formato":"' + FORMATO + '", "leitura":{"temperatura":'
_DRIFT_KEEP: Final = 0.995
_DRIFT_STEP: Final = 0.3


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def format_line(
    *, id_sensor: str, id_equipamento: str, sensor: str, event_us: int, temperature: float
) -> bytes:
    """One reading in the seed's exact byte layout (without the line terminator)."""
    return (
        f'{{"id_sensor":"{id_sensor}","id_equipamento":"{id_equipamento}","sensor":"{sensor}",'
        f' "data_evento":"{format_event_time(event_us)}{_MID}{temperature:.1f}}}}}}}'
    ).encode()


@dataclass(slots=True)
class _DeviceStats:
    lines: int = 0
    bad: int = 0
    late: int = 0
    spikes: int = 0
    spike_times: list[str] = field(default_factory=list)


class Readings:
    """One run of a fleet: iterate it for the lines; afterwards :meth:`manifest` tells what
    happened (ground truth for tests). Counters are live while iterating."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        count: int | None,
        duration: float | None,
        start_us: int | None,
        period: float,
        clock: Callable[[], int],
    ) -> None:
        self.fleet = fleet
        self.count = count
        self.duration = duration
        self.period = period
        self.simulated = start_us is not None
        self.start_us: int | None = start_us
        self.lines = 0
        self.first_event_us: int | None = None
        self.last_event_us: int | None = None
        self.bad_kinds: dict[str, int] = dict.fromkeys(BAD_KINDS, 0)
        self.stats = [_DeviceStats() for _ in fleet.devices]
        self._clock = clock
        self._gen = self._generate()

    def __iter__(self) -> Iterator[bytes]:
        # Handing out the generator itself keeps `for line in readings` at generator speed.
        return self._gen

    def __next__(self) -> bytes:
        return next(self._gen)

    def _generate(self) -> Iterator[bytes]:
        # One flat hot loop with everything in locals: this is what makes >400k lines/s.
        fleet = self.fleet
        beh = fleet.behaviour
        devices = fleet.devices
        n = len(devices)
        rng = random.Random(fleet.run_seed)
        rnd = rng.random
        clock = self._clock
        simulated = self.simulated
        start = self.start_us if self.start_us is not None else clock()
        self.start_us = start
        period_us = round(self.period * _US)
        offsets = [j * period_us // n for j in range(n)]
        limit = self.count if self.count is not None else _NEVER
        end_off = round(self.duration * _US) if self.duration is not None else _NEVER
        if limit == 0:
            return

        heads = [
            f'{{"id_sensor":"{d.id_sensor}","id_equipamento":"{d.id_equipamento}",'
            f'"sensor":"{d.sensor}", "data_evento":"'
            for d in devices
        ]
        baseline = [d.baseline for d in devices]
        drift = [0.0] * n
        ov_start = [_NEVER if d.overheat_start_us is None else d.overheat_start_us for d in devices]
        ov_end = [
            _NEVER if d.overheat_ramp_end_us is None else d.overheat_ramp_end_us for d in devices
        ]
        ov_level = [0.0 if d.overheat_level is None else d.overheat_level for d in devices]
        drop_at = [_NEVER if d.dropout_us is None else d.dropout_us for d in devices]
        stats = self.stats

        p_bad = beh.bad_rate
        p_special = beh.bad_rate + beh.spike_rate
        p_late = beh.late_rate
        late_us = beh.late_by * _US
        keep, step, dmax = _DRIFT_KEEP, _DRIFT_STEP, DRIFT_MAX
        mid = _MID

        cached_sec = None
        sec_text = ""
        first = _NEVER
        last = -_NEVER
        emitted = 0
        active = list(range(n))
        cycle = 0
        while active:
            base = start + cycle * period_us
            gone: list[int] = []
            for j in active:
                t = base + offsets[j] if simulated else clock()
                off = t - start
                if off >= end_off:
                    return
                if off >= drop_at[j]:
                    gone.append(j)
                    continue
                d = drift[j] * keep + (rnd() - 0.5) * step
                if d > dmax:
                    d = dmax
                elif d < -dmax:
                    d = -dmax
                drift[j] = d
                noise = (rnd() + rnd() - 1.0) * NOISE
                if off >= ov_start[j]:
                    if off >= ov_end[j]:
                        temp = ov_level[j] + noise
                    else:
                        normal = baseline[j] + d
                        frac = (off - ov_start[j]) / (ov_end[j] - ov_start[j])
                        temp = normal + (ov_level[j] - normal) * frac + noise
                else:
                    temp = baseline[j] + d + noise
                st = stats[j]
                if p_late and rnd() < p_late:
                    t -= int(late_us * (0.5 + 0.5 * rnd()))
                    st.late += 1
                if t < first:
                    first = t
                    self.first_event_us = t
                if t > last:
                    last = t
                    self.last_event_us = t
                sec, frac_us = divmod(t, _US)
                if sec != cached_sec:
                    cached_sec = sec
                    sec_text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
                st.lines += 1
                if p_special and (r := rnd()) < p_special:
                    stamp = f"{sec_text}{frac_us:06d}Z"
                    if r < p_bad:
                        st.bad += 1
                        line = self._bad_line(rng, devices[j], stamp, temp)
                    else:
                        temp = SPIKE_MIN + SPIKE_SPAN * rnd()
                        st.spikes += 1
                        if len(st.spike_times) < MAX_SPIKE_TIMES_PER_DEVICE:
                            st.spike_times.append(stamp)
                        line = f"{heads[j]}{stamp}{mid}{temp:.1f}}}}}}}".encode()
                else:
                    line = f"{heads[j]}{sec_text}{frac_us:06d}Z{mid}{temp:.1f}}}}}}}".encode()
                emitted += 1
                self.lines = emitted
                yield line
                if emitted >= limit:
                    return
            if gone:
                dropped = set(gone)
                active = [j for j in active if j not in dropped]
            cycle += 1

    def _bad_line(self, rng: random.Random, dev: Device, stamp: str, temp: float) -> bytes:
        kind = BAD_KINDS[rng.randrange(len(BAD_KINDS))]
        self.bad_kinds[kind] += 1
        value = f"{temp:.1f}"
        fields: dict[str, str] = {
            "id_sensor": f'"id_sensor":"{dev.id_sensor}"',
            "id_equipamento": f'"id_equipamento":"{dev.id_equipamento}"',
            "sensor": f'"sensor":"{dev.sensor}"',
            "data_evento": f' "data_evento":"{stamp}"',
        }
        padrao = f' "padrao":{{"formato":"{FORMATO}", "leitura":{{"temperatura":{value}}}}}'
        if kind == "truncated":
            full = "{" + ",".join([*fields.values(), padrao]) + "}"
            return full[: rng.randrange(1, len(full))].encode()
        if kind == "wrong_type":
            padrao = padrao.replace(f":{value}}}", f':"{value}"}}')
        elif kind == "nan":
            # NaN is not JSON: strict parsers (orjson, JSON.parse) must reject the line.
            padrao = padrao.replace(f":{value}}}", ":NaN}")
        elif kind == "wrong_nesting":
            padrao = f' "padrao":{{"formato":"{FORMATO}", "temperatura":{value}}}'
        else:  # missing_field
            victim = ("id_equipamento", "sensor", "data_evento", "temperatura")[rng.randrange(4)]
            if victim == "temperatura":
                padrao = f' "padrao":{{"formato":"{FORMATO}", "leitura":{{}}}}'
            else:
                del fields[victim]
        return ("{" + ",".join([*fields.values(), padrao]) + "}").encode()

    def manifest(self) -> dict[str, Any]:
        """JSON-ready ground truth: the fleet, its schedule in absolute event times, and what
        the run actually emitted (lines, spikes with their times, bad lines per kind, late)."""
        fleet = self.fleet
        beh = fleet.behaviour
        start = self.start_us if self.start_us is not None else 0

        def at(offset_us: int | None) -> str | None:
            # Unknown until a wall-clock run has started.
            if offset_us is None or self.start_us is None:
                return None
            return format_event_time(start + offset_us)

        def secs(offset_us: int | None) -> float | None:
            return None if offset_us is None else round(offset_us / _US, 6)

        devices: list[dict[str, Any]] = []
        for dev, st in zip(fleet.devices, self.stats, strict=True):
            overheat = None
            if dev.overheats:
                overheat = {
                    "start": at(dev.overheat_start_us),
                    "ramp_end": at(dev.overheat_ramp_end_us),
                    "level": dev.overheat_level,
                    "start_s": secs(dev.overheat_start_us),
                    "ramp_end_s": secs(dev.overheat_ramp_end_us),
                }
            devices.append(
                {
                    "id_equipamento": dev.id_equipamento,
                    "id_sensor": dev.id_sensor,
                    "sensor": dev.sensor,
                    "baseline": dev.baseline,
                    "overheat": overheat,
                    "dropout": at(dev.dropout_us),
                    "dropout_s": secs(dev.dropout_us),
                    "lines": st.lines,
                    "bad": st.bad,
                    "late": st.late,
                    "spikes": {
                        "count": st.spikes,
                        "times": list(st.spike_times),
                        "times_truncated": st.spikes > len(st.spike_times),
                    },
                }
            )
        return {
            "format": "iotmon-simulate-manifest/1",
            "seed": fleet.seed,
            "mode": "simulated" if self.simulated else "wall-clock",
            "start": format_event_time(start) if self.start_us is not None else None,
            "period": self.period,
            "note": "times are data_evento strings; *_s fields are seconds after start",
            "horizon_s": beh.horizon_s,
            "options": {
                "devices": len(fleet.devices),
                "count": self.count,
                "duration": self.duration,
                "overheat_fraction": beh.overheat_fraction,
                "overheat_to": beh.overheat_to,
                "spike_rate": beh.spike_rate,
                "bad_rate": beh.bad_rate,
                "late_rate": beh.late_rate,
                "late_by": beh.late_by,
                "dropout_fraction": beh.dropout_fraction,
            },
            "model": {
                "baseline_max": BASELINE_MAX,
                "drift_max": DRIFT_MAX,
                "noise": NOISE,
                "spike_range": [SPIKE_MIN, SPIKE_MIN + SPIKE_SPAN],
                "max_spike_times_per_device": MAX_SPIKE_TIMES_PER_DEVICE,
            },
            "label_bases": fleet.label_bases,
            "totals": {
                "lines": self.lines,
                "bad": sum(self.bad_kinds.values()),
                "bad_kinds": dict(self.bad_kinds),
                "spikes": sum(st.spikes for st in self.stats),
                "late": sum(st.late for st in self.stats),
                "overheating_devices": sum(1 for d in fleet.devices if d.overheats),
                "dropout_devices": sum(1 for d in fleet.devices if d.dropout_us is not None),
                "first_event": (
                    None if self.first_event_us is None else format_event_time(self.first_event_us)
                ),
                "last_event": (
                    None if self.last_event_us is None else format_event_time(self.last_event_us)
                ),
            },
            "devices": devices,
        }
