"""Scale-out bench: aggregate throughput of 1, 2, 3 `iotmon consume` instances in one
consumer group, and how long restoring 100,000 devices from the changelog takes.

    python -m bench.scale_out [--bootstrap-servers HOST:PORT] [--readings N] [--quick]

Without ``--bootstrap-servers`` it starts its own single-node broker (dev/kafka/kafka.sh on
port 39592, wiped afterwards). Prints a markdown table on stdout; progress goes to stderr.

What is measured, per instance count: the group's committed offsets are sampled while the
instances work through the topic (``--once``, checkpoint every second). *wall* runs from
spawning the processes until the last one exited (Python start, group join, rebalances
included); *steady* is the rate between 20 % and 80 % of the topic, when every instance
has its partitions. CPU is user+system of the iotmon processes only (the broker and the
bench are not counted), from ``wait4``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from bench.broker import Broker
from bench.scenarios import START
from iotmon.kafka.admin import ensure_topic

# Away from the main bench's broker (39492) and the test suite's (39092).
PORT = 39592


def say(message: str) -> None:
    print(f"[scale-out] {message}", file=sys.stderr, flush=True)


async def committed(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except GroupCoordinatorNotAvailableError:
        return 0  # a fresh broker: no group has committed anything yet
    finally:
        await admin.close()
    return sum(max(o.offset, 0) for o in offsets.values())


def iotmon(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "iotmon", *args], check=True, capture_output=True, timeout=1800
    )


def consume_once(bootstrap: str, topic: str, group: str, state: Path) -> list[str]:
    """``iotmon consume --once`` arguments for one member of ``group``."""
    return [
        "consume",
        "--once",
        "--no-live",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--state-dir",
        str(state),
        "--outbox",
        str(state / "eml"),
    ]


def load(bootstrap: str, topic: str, *simulate: str) -> None:
    iotmon(
        "simulate",
        "--start",
        START,
        "-q",
        *simulate,
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
    )


# ------------------------------------------------------------------------------ throughput


@dataclass(frozen=True)
class Throughput:
    instances: int
    readings: int
    wall: float
    steady: float
    cpu: float


def throughput(bootstrap: str, topic: str, readings: int, instances: int, root: Path) -> Throughput:
    group = f"bench-scale-{instances}-{uuid.uuid4().hex[:6]}"
    procs = []
    started = time.monotonic()
    for i in range(instances):
        state = root / f"{group}-{i}"
        log = (root / f"{group}-{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "iotmon",
                    *consume_once(bootstrap, topic, group, state),
                    "--checkpoint-interval",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    samples: list[tuple[float, int]] = []
    cpu = 0.0
    running = {p.pid: p for p in procs}
    while running:
        samples.append((time.monotonic(), asyncio.run(committed(bootstrap, group))))
        for pid in list(running):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                cpu += usage.ru_utime + usage.ru_stime
                del running[pid]
                if os.waitstatus_to_exitcode(status) != 0:
                    raise RuntimeError(f"instance {pid} failed; see {root}/{group}-*.log")
        time.sleep(0.1)
    wall = time.monotonic() - started
    return Throughput(instances, readings, wall, _steady(samples, readings), cpu)


def _steady(samples: list[tuple[float, int]], total: int) -> float:
    low = next((s for s in samples if s[1] >= 0.2 * total), None)
    high = next((s for s in samples if s[1] >= 0.8 * total), None)
    if low is None or high is None or high[0] <= low[0]:
        return float("nan")
    return (high[1] - low[1]) / (high[0] - low[0])


# --------------------------------------------------------------------------------- restore


@dataclass(frozen=True)
class Restore:
    devices: int
    payload_mb: float
    from_changelog: float
    from_cache: float
    process_changelog: float
    process_cache: float


_READY = re.compile(r"(\d+) partition\(s\) ready in ([0-9.]+) s")


def restore(bootstrap: str, devices: int, root: Path) -> Restore:
    topic = f"bench-restore-{uuid.uuid4().hex[:6]}"
    group = f"bench-restore-{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topic(bootstrap, topic, partitions=6))
    # Twelve readings per device, 25 s apart: every device holds a 300 s window of panes.
    say(f"loading {devices * 12:,} readings of {devices:,} devices")
    load(
        bootstrap,
        topic,
        "--devices",
        str(devices),
        "--count",
        str(devices * 12),
        "--period",
        "25",
        "--seed",
        "3",
    )
    say("building the state (one instance)")
    iotmon(*consume_once(bootstrap, topic, group, root / "build"))
    payload = sum(p.stat().st_size for p in (root / "build" / "partitions").glob("*.json"))

    def timed(state: Path) -> tuple[float, float]:
        t0 = time.monotonic()
        result = iotmon(*consume_once(bootstrap, topic, group, state))
        elapsed = time.monotonic() - t0
        ready = [float(m.group(2)) for m in _READY.finditer(result.stderr.decode())]
        return (sum(ready), elapsed)

    say("restoring from the changelog into an empty state dir")
    changelog, process_changelog = timed(root / "fresh")
    say("restoring again: the local cache now holds the newest checkpoints")
    cache, process_cache = timed(root / "fresh")
    return Restore(devices, payload / 1e6, changelog, cache, process_changelog, process_cache)


# ------------------------------------------------------------------------------------ main


def table(rows: Sequence[Throughput], restored: Restore | None, cores: int) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"Aggregate throughput, {rows[0].readings:,} readings, 6 partitions, "
        f"{cores} cores (broker on the same machine; load average at the end {load}; "
        "median of the runs by wall time):",
        "",
        "| instances | wall s | readings/s (wall) | readings/s (steady) | CPU s (iotmon) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.instances} | {r.wall:.1f} | {r.readings / r.wall:,.0f} | {r.steady:,.0f} | "
            f"{r.cpu:.1f} |"
        )
    if restored is not None:
        lines += [
            "",
            f"Restore of {restored.devices:,} devices (6 partitions, "
            f"{restored.payload_mb:.0f} MB of checkpoints):",
            "",
            "| restored from | partitions ready after (s) | whole `consume --once` (s) |",
            "| --- | ---: | ---: |",
            f"| changelog (empty state dir) | {restored.from_changelog:.2f} | "
            f"{restored.process_changelog:.1f} |",
            f"| local cache (newest checkpoint on disk) | {restored.from_cache:.2f} | "
            f"{restored.process_cache:.1f} |",
        ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    broker = Broker(args.bootstrap_servers, say, port=PORT)
    with broker, tempfile.TemporaryDirectory() as tmp:
        try:
            return _measure(args, broker, Path(tmp))
        finally:
            if args.bootstrap_servers:
                asyncio.run(broker.delete_matching("bench-"))


def _measure(args: argparse.Namespace, broker: Broker, root: Path) -> str:
    topic = f"bench-scale-{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topic(broker.bootstrap, topic, partitions=6))
    say(f"loading {args.readings:,} readings into {topic}")
    load(
        broker.bootstrap,
        topic,
        "--devices",
        str(args.devices),
        "--count",
        str(args.readings),
        "--seed",
        "5",
    )
    rows = []
    for instances in args.instances:
        runs = []
        for attempt in range(args.repeat):
            say(f"{instances} instance(s), run {attempt + 1} of {args.repeat}")
            runs.append(throughput(broker.bootstrap, topic, args.readings, instances, root))
        # The median run by wall time: one noisy neighbour should not make the figure.
        rows.append(sorted(runs, key=lambda r: r.wall)[len(runs) // 2])
    restored = None
    if not args.no_restore:
        restored = restore(broker.bootstrap, args.restore_devices, root)
    return table(rows, restored, os.cpu_count() or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__)
    parser.add_argument("--bootstrap-servers", help="use this broker instead of starting one")
    parser.add_argument("--readings", type=int, default=2_000_000)
    parser.add_argument("--devices", type=int, default=5_000)
    parser.add_argument(
        "--instances", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3]
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per instance count")
    parser.add_argument("--restore-devices", type=int, default=100_000)
    parser.add_argument("--no-restore", action="store_true")
    parser.add_argument("--quick", action="store_true", help="200k readings, 20k devices")
    args = parser.parse_args(argv)
    if args.quick:
        args.readings, args.restore_devices, args.repeat = 200_000, 20_000, 1
    print(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
