"""What ``iotmon simulate`` emits, and writing it: settings → a fleet's run → a byte stream.

The fleet model is :mod:`iotmon.tools.fleet`, the line generation :mod:`iotmon.tools.readings`;
producing to Kafka is :func:`iotmon.tools.produce.produce_lines`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import IO

from iotmon.tools.fleet import DEFAULT_BEHAVIOUR, Fleet, plan_horizon
from iotmon.tools.readings import Readings
from iotmon.views.progress import Pacer, Progress

__all__ = ["SimulateSettings", "build_readings", "write_lines"]


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
    overheat_fraction: float = DEFAULT_BEHAVIOUR.overheat_fraction
    overheat_to: float = DEFAULT_BEHAVIOUR.overheat_to
    spike_rate: float = DEFAULT_BEHAVIOUR.spike_rate
    bad_rate: float = DEFAULT_BEHAVIOUR.bad_rate
    late_rate: float = DEFAULT_BEHAVIOUR.late_rate
    late_by: float = DEFAULT_BEHAVIOUR.late_by
    dropout_fraction: float = DEFAULT_BEHAVIOUR.dropout_fraction


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
