"""What one bench run measures, and how often: the default (`make bench`, under 10 minutes
on 2 cores) and the full plan (`make bench-full`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SCENARIOS", "Plan"]

SCENARIOS = ("data", "startup", "throughput", "file", "memory", "latency")


@dataclass(slots=True, kw_only=True)
class Plan:
    full: bool = False
    scenarios: tuple[str, ...] = SCENARIOS
    quix: bool = True
    spark: bool = True
    faust: bool = False
    """faust-streaming in the throughput scenario (bench-full; ``--faust`` adds it here)."""
    bytewax: bool = False
    """Bytewax in the throughput and Kafka memory scenarios (bench-full; ``--bytewax``)."""
    reps: int = 3
    """Interleaved repetitions for throughput, file path, start-up, simulate and produce."""
    memory_reps: int = 1
    readings: int = 1_000_000
    devices: int = 10_000
    partitions: int = 6
    window: float = 300.0
    file_lines: int = 2_000_000
    quix_readings: int = 100_000
    """Quix Streams (running mean only) reads the first this-many readings of the topic."""
    quix_sliding_readings: int = 100_000
    """Quix Streams with its sliding window reads the first this-many readings: its cost per
    reading grows with the readings each device has in the window (about quadratic overall:
    100,000 take ~15 s here, 1,000,000 would take half an hour)."""
    quix_sliding_reps: int = 3
    faust_readings: int = 10_000
    """faust-streaming with its hopping window reads the first this-many readings: every
    reading updates 30 windows, each update one changelog record (~170 readings/s here)."""
    faust_running_readings: int = 100_000
    """faust-streaming, running mean only, reads the first this-many (~4,000 readings/s)."""
    faust_reps: int = 2
    """Rounds with faust-streaming (~2 min a round)."""
    bytewax_readings: int = 1_000_000
    """Bytewax reads the first this-many readings (this ÷ partitions of each partition). The
    whole topic: a prefix flatters it too much — ~15,000 readings/s on the first 300,000
    (30 s of event time, so no window closes before the end) against ~4,600/s on all of it,
    where about half the time goes to deep-copying each device's open windows for the
    recovery snapshots."""
    bytewax_reps: int = 1
    """Rounds with Bytewax (~4 min each on the whole topic)."""
    memory_devices: tuple[int, ...] = (10_000, 100_000)
    memory_readings_per_device: int = 3
    memory_period: float = 10.0
    """Event seconds between a device's readings in the memory runs: three readings span
    three 10-s panes, so every device holds its window ring (the realistic worst case)."""
    peer_memory_devices: int = 10_000
    spark_memory: bool = False
    """PySpark's Kafka memory pair (two more Spark starts) — bench-full."""
    zero_point_devices: int = 60
    """Devices in the Kafka memory zero point: as many readings as the fleet topic, on every
    partition, from a fleet too small to matter."""
    alerts: int = 200
    alert_interval: float = 0.05
    background_rate: int = 1_000
    """Readings/s of normal traffic during the latency runs (600 devices on all partitions),
    so that every partition's event time moves as in a live fleet."""
    spark_latency: bool = False
    spark_poll: float = 5.0
    latency_variants: bool = False
    """Also measure iotmon's alert latency with ``--no-changelog`` (where it has the flag)."""
    seed: int = 20260101
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def default(cls) -> Plan:
        plan = cls()
        plan.skipped = [
            "iotmon memory at 1,000,000 devices (bench-full)",
            "PySpark alert latency (bench-full)",
            "PySpark memory at 10,000 devices (bench-full)",
            "iotmon alert latency with --no-changelog (bench-full)",
            "Quix Streams on the whole 1,000,000-reading topic: it reads the first 100,000 "
            "(bench-full: all of it for the running mean, 300,000 with the sliding window)",
        ]
        return plan

    @classmethod
    def full_plan(cls) -> Plan:
        return cls(
            full=True,
            reps=5,
            memory_reps=3,
            quix_readings=1_000_000,
            quix_sliding_readings=300_000,
            quix_sliding_reps=2,
            memory_devices=(10_000, 100_000, 1_000_000),
            spark_latency=True,
            spark_memory=True,
            latency_variants=True,
            faust=True,
            bytewax=True,
            skipped=[
                "faust-streaming in the memory and start-up scenarios (its hopping window "
                "reads ~170 readings/s: the 30,000-reading memory topics would take minutes)",
                "Bytewax in the start-up scenario",
            ],
        )
