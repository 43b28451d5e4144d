"""A deterministic fleet of temperature sensors that writes readings in the seed's format.

The original course project drew a fresh random id for every line, so no device was ever seen
twice. Here the fleet is *stable*: every device keeps its ``id_equipamento``/``id_sensor`` pair
and its ``sensor`` label for the whole run, and behaves according to parameters drawn once, in a
fixed order, from ``random.Random(seed)``. Same seed + same options = byte-identical output
(in simulated time; wall-clock timestamps obviously differ between runs).

Model (per device):

* ``sensor`` label uniform in ``sensor01..sensor50``; each label has a base drawn from U(10, 90)
  like the seed. Device baseline = label base + U(-10, 5). Baselines above
  :data:`BASELINE_MAX` (68 °C) are redrawn uniformly in [60, 68] so that a healthy device
  (baseline + drift ≤ ±3 + noise ≤ ±0.5 ⇒ at most 71.5 °C) never reaches the 75 °C alert
  threshold: only the designed overheaters (and one-off spikes) cross it. This removes the
  seed's quirk where whole labels sat above 75 °C.
* temperature = baseline + drift + noise, where drift is a mean-reverting random walk clamped
  to ±:data:`DRIFT_MAX` and noise is triangular in ±:data:`NOISE`.
* Overheaters (``overheat_fraction`` of the fleet) start ramping at U(0.1, 0.4) × horizon,
  ramp linearly for min(U(120, 300) s, horizon / 4) to a level of ``overheat_to`` + U(1, 4) and
  stay there (± noise, so always above ``overheat_to``) until the end of the run.
* Dropouts (``dropout_fraction``) go silent for good at U(0.2, 0.8) × horizon. They are chosen
  among the non-overheaters while there are any, so an overheater stays hot in the data.
* A fraction of the fleet is ``fraction × devices`` rounded half up, and at least one device
  for any non-zero fraction.
* Per reading: with probability ``bad_rate`` the line is malformed (see :data:`BAD_KINDS`),
  else with probability ``spike_rate`` it is a one-off outlier in [150, 199] °C; independently,
  with probability ``late_rate`` its event time is set back by U(0.5, 1) × ``late_by`` seconds
  (the temperature is still the current one: the line models a reading whose clock lags).

The *horizon* is how long the scenario is planned to last (see :func:`plan_horizon`); the
schedule above is laid out within it. Event times are integer microseconds since the epoch.

Device ids use the seed's prefixes and a suffix of 3 digits + 2 capital letters, which allows
1000 × 26² = 676,000 distinct devices. Larger fleets keep that space for their first 676,000
devices and give the next 1000 × 26³ devices 3 letters (``123ABC``), then 4, and so on, so ids
stay unique and the layout stays recognisable.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any, Final

from iotmon.errors import ConfigError
from iotmon.parse import format_event_time, parse_event_time
from iotmon.views.progress import Pacer, Progress

__all__ = [
    "BAD_KINDS",
    "BASELINE_MAX",
    "DEFAULT_HORIZON_S",
    "DRIFT_MAX",
    "FORMATO",
    "LABELS",
    "NOISE",
    "Device",
    "Fleet",
    "Readings",
    "SimulateSettings",
    "build_readings",
    "format_event_time",
    "format_line",
    "parse_event_time",
    "plan_horizon",
    "wall_clock_us",
    "write_lines",
]

FORMATO: Final = "iot:leitura:sensor:temp"
SENSOR_PREFIX: Final = "Sensor-1503-"
EQUIPMENT_PREFIX: Final = "Equipament-0323XH-"
LABELS: Final = 50
BASELINE_MAX: Final = 68.0
DRIFT_MAX: Final = 3.0
NOISE: Final = 0.5
SPIKE_MIN: Final = 150.0
SPIKE_SPAN: Final = 49.0
DEFAULT_HORIZON_S: Final = 600.0
BAD_KINDS: Final = ("truncated", "wrong_type", "missing_field", "nan", "wrong_nesting")
# Keeps the manifest small for long runs with many spikes; the count is always exact.
MAX_SPIKE_TIMES_PER_DEVICE: Final = 100

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


def plan_horizon(
    *,
    devices: int,
    count: int | None,
    duration: float | None,
    period: float,
    rate: float | None,
    simulated: bool,
) -> float:
    """How many seconds of event time the scenario (overheat ramps, dropouts) is laid out in.

    Simulated time: ``--duration``, or the span ``--count`` readings cover at one reading per
    device per ``--period`` (the smaller if both). Wall clock: ``--duration``, else
    ``--count / --rate``. Otherwise (run until Ctrl-C) :data:`DEFAULT_HORIZON_S`.
    """
    spans: list[float] = []
    if duration is not None:
        spans.append(duration)
    if count is not None:
        if simulated:
            spans.append(math.ceil(count / max(devices, 1)) * period)
        elif rate:
            spans.append(count / rate)
    span = min(spans) if spans else DEFAULT_HORIZON_S
    return span if span > 0 else DEFAULT_HORIZON_S


@dataclass(frozen=True, slots=True)
class Device:
    """One device's fixed parameters; schedule times are µs offsets from the run's start."""

    index: int
    id_equipamento: str
    id_sensor: str
    sensor: str
    baseline: float
    overheat_start_us: int | None = None
    overheat_ramp_end_us: int | None = None
    overheat_level: float | None = None
    dropout_us: int | None = None

    @property
    def overheats(self) -> bool:
        return self.overheat_start_us is not None


_TWO_LETTERS: Final = [chr(65 + a) + chr(65 + b) for a in range(26) for b in range(26)]


def _suffix(number: int, letters: int) -> str:
    if letters == 2:
        return f"{number // 676:03d}{_TWO_LETTERS[number % 676]}"
    digits, rest = divmod(number, 26**letters)
    chars = []
    for _ in range(letters):
        rest, c = divmod(rest, 26)
        chars.append(chr(65 + c))
    return f"{digits:03d}" + "".join(reversed(chars))


def _unique_suffixes(rng: random.Random, n: int) -> list[str]:
    out: list[str] = []
    letters = 2
    while len(out) < n:
        space = 1000 * 26**letters
        take = min(n - len(out), space)
        out.extend(_suffix(num, letters) for num in rng.sample(range(space), take))
        letters += 1
    return out


def _share(fraction: float, devices: int) -> int:
    # Rounded half up, and at least one device for any non-zero share: a 5-device demo with
    # the default 0.1 should still have an overheater.
    if fraction <= 0:
        return 0
    return min(devices, max(1, int(fraction * devices + 0.5)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    """Scenario knobs shared by the whole fleet (see the module docstring)."""

    overheat_fraction: float = 0.1
    overheat_to: float = 85.0
    spike_rate: float = 0.0
    bad_rate: float = 0.0
    late_rate: float = 0.0
    late_by: float = 30.0
    dropout_fraction: float = 0.0
    horizon_s: float = DEFAULT_HORIZON_S

    def __post_init__(self) -> None:
        for name in ("overheat_fraction", "dropout_fraction", "spike_rate", "bad_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name.replace('_', '-')} must be within 0..1, got {value}")
        if not 0.0 <= self.late_rate <= 1.0:
            raise ConfigError(f"late-rate must be within 0..1, got {self.late_rate}")
        if self.spike_rate + self.bad_rate > 1.0:
            raise ConfigError("spike-rate + bad-rate must not exceed 1")
        if self.late_by < 0:
            raise ConfigError(f"late-by must be >= 0 seconds, got {self.late_by}")
        if not math.isfinite(self.overheat_to):
            raise ConfigError("overheat-to must be a finite temperature")
        if not self.horizon_s > 0:
            raise ConfigError(f"horizon must be > 0 seconds, got {self.horizon_s}")


@dataclass(frozen=True, slots=True)
class Fleet:
    """The devices and their scenario. Immutable: each :meth:`readings` call replays the run."""

    seed: int
    behaviour: Behaviour
    label_bases: dict[str, float]
    devices: tuple[Device, ...]
    run_seed: int

    @classmethod
    def create(
        cls,
        *,
        devices: int = 50,
        seed: int | None = None,
        overheat_fraction: float = 0.1,
        overheat_to: float = 85.0,
        spike_rate: float = 0.0,
        bad_rate: float = 0.0,
        late_rate: float = 0.0,
        late_by: float = 30.0,
        dropout_fraction: float = 0.0,
        horizon_s: float = DEFAULT_HORIZON_S,
    ) -> Fleet:
        """Draw a fleet. ``seed=None`` picks a random seed (kept in :attr:`seed`)."""
        if devices < 1:
            raise ConfigError(f"devices must be >= 1, got {devices}")
        behaviour = Behaviour(
            overheat_fraction=overheat_fraction,
            overheat_to=overheat_to,
            spike_rate=spike_rate,
            bad_rate=bad_rate,
            late_rate=late_rate,
            late_by=late_by,
            dropout_fraction=dropout_fraction,
            horizon_s=horizon_s,
        )
        if seed is None:
            seed = random.SystemRandom().randrange(2**32)
        rng = random.Random(seed)
        # The order of draws below is part of the output contract: changing it changes
        # every fleet for a given seed.
        label_bases = {f"sensor{i:02d}": rng.uniform(10.0, 90.0) for i in range(1, LABELS + 1)}
        suffixes = _unique_suffixes(rng, devices)
        labels: list[str] = []
        baselines: list[float] = []
        for _ in range(devices):
            label = f"sensor{rng.randrange(LABELS) + 1:02d}"
            baseline = label_bases[label] + rng.uniform(-10.0, 5.0)
            if baseline > BASELINE_MAX:
                baseline = BASELINE_MAX - 8.0 * rng.random()
            labels.append(label)
            baselines.append(baseline)

        n_hot = _share(overheat_fraction, devices)
        hot = set(rng.sample(range(devices), n_hot))
        n_drop = _share(dropout_fraction, devices)
        cool = [i for i in range(devices) if i not in hot]
        if n_drop <= len(cool):
            drop = set(rng.sample(cool, n_drop))
        else:
            drop = set(cool) | set(rng.sample(sorted(hot), n_drop - len(cool)))

        horizon_us = horizon_s * _US
        schedule: dict[int, tuple[int, int, float]] = {}
        for i in sorted(hot):
            start = round(rng.uniform(0.1, 0.4) * horizon_us)
            ramp = round(min(rng.uniform(120.0, 300.0) * _US, horizon_us / 4))
            level = round(overheat_to + rng.uniform(1.0, 4.0), 1)
            schedule[i] = (start, start + max(ramp, 1), level)
        dropouts = {i: round(rng.uniform(0.2, 0.8) * horizon_us) for i in sorted(drop)}

        fleet_devices = []
        for i in range(devices):
            hot_plan = schedule.get(i)
            fleet_devices.append(
                Device(
                    index=i,
                    id_equipamento=EQUIPMENT_PREFIX + suffixes[i],
                    id_sensor=SENSOR_PREFIX + suffixes[i],
                    sensor=labels[i],
                    baseline=round(baselines[i], 2),
                    overheat_start_us=hot_plan[0] if hot_plan else None,
                    overheat_ramp_end_us=hot_plan[1] if hot_plan else None,
                    overheat_level=hot_plan[2] if hot_plan else None,
                    dropout_us=dropouts.get(i),
                )
            )
        return cls(
            seed=seed,
            behaviour=behaviour,
            label_bases={k: round(v, 2) for k, v in label_bases.items()},
            devices=tuple(fleet_devices),
            run_seed=rng.getrandbits(64),
        )

    def readings(
        self,
        *,
        count: int | None = None,
        duration: float | None = None,
        start_us: int | None = None,
        period: float = 1.0,
        clock: Callable[[], int] = wall_clock_us,
    ) -> Readings:
        """The run's lines (bytes, no terminator); iterate the result once.

        With ``start_us`` event time is simulated: device *j* reports at
        ``start_us + k * period + j * period / devices``. Without it each line is stamped with
        ``clock()`` (µs) when generated. Stops after ``count`` lines, after ``duration``
        seconds of event time, or when every device has dropped out, whichever comes first.
        """
        if count is not None and count < 0:
            raise ConfigError(f"count must be >= 0, got {count}")
        if duration is not None and duration < 0:
            raise ConfigError(f"duration must be >= 0 seconds, got {duration}")
        if not period > 0:
            raise ConfigError(f"period must be > 0 seconds, got {period}")
        return Readings(
            self, count=count, duration=duration, start_us=start_us, period=period, clock=clock
        )


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


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulateSettings:
    """Everything that decides *what* ``iotmon simulate`` emits (not where it goes).

    ``start_us`` switches to simulated event time; ``rate`` only paces the output and never
    changes it.
    """

    devices: int = 50
    count: int | None = None
    duration: float | None = None
    seed: int | None = None
    start_us: int | None = None
    period: float = 1.0
    rate: float | None = None
    overheat_fraction: float = 0.1
    overheat_to: float = 85.0
    spike_rate: float = 0.0
    bad_rate: float = 0.0
    late_rate: float = 0.0
    late_by: float = 30.0
    dropout_fraction: float = 0.0


def build_readings(settings: SimulateSettings) -> Readings:
    """The fleet and run described by ``settings`` (nothing is generated until iterated)."""
    horizon = plan_horizon(
        devices=settings.devices,
        count=settings.count,
        duration=settings.duration,
        period=settings.period,
        rate=settings.rate,
        simulated=settings.start_us is not None,
    )
    fleet = Fleet.create(
        devices=settings.devices,
        seed=settings.seed,
        overheat_fraction=settings.overheat_fraction,
        overheat_to=settings.overheat_to,
        spike_rate=settings.spike_rate,
        bad_rate=settings.bad_rate,
        late_rate=settings.late_rate,
        late_by=settings.late_by,
        dropout_fraction=settings.dropout_fraction,
        horizon_s=horizon,
    )
    return fleet.readings(
        count=settings.count,
        duration=settings.duration,
        start_us=settings.start_us,
        period=settings.period,
    )


def write_lines(
    lines: Iterable[bytes],
    out: IO[bytes],
    *,
    rate: float | None = None,
    progress: Progress | None = None,
    terminator: bytes = b"\n",
) -> int:
    """Write lines to a binary stream in chunks (flushed, so pipes see them promptly).

    Returns the number of lines written.
    """
    pacer = Pacer(rate)
    it = iter(lines)
    done = 0
    while chunk := list(islice(it, pacer.chunk)):
        out.write(terminator.join(chunk) + terminator)
        out.flush()
        done += len(chunk)
        if progress is not None:
            progress.advance(len(chunk))
        if (wait := pacer.delay(done)) > 0:
            time.sleep(wait)
    return done
