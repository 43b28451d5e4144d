"""`python -m bench.profile`: where iotmon's time goes, on the file path and the Kafka path.

Runs ``iotmon consume --once`` under cProfile on a simulated log file (``--input``) and on a
Kafka topic holding the same readings (the bench's own broker on 127.0.0.1:39492, or
``--bootstrap-servers``), and writes the top functions by own time and by cumulative time
to ``bench/results/profile.txt``. cProfile adds a fixed cost to every Python call, so
absolute times are inflated and call-heavy code looks worse than it is; the ranking is what
to read. bench/README.md summarises the findings.
"""

from __future__ import annotations

import argparse
import io
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.broker import Broker
from bench.cli import lock_or_none
from bench.environment import REPO

RESULTS = REPO / "bench" / "results"
WORK = REPO / ".cache" / "bench" / "profile"
IOTMON = str(Path(sys.executable).with_name("iotmon"))
RUNNER = REPO / "bench" / "peers" / "iotmon_run.py"


def _profile(label: str, args: list[str], top: int) -> str:
    stats_file = WORK / f"{label}.prof"
    state = WORK / f"state-{label}"
    shutil.rmtree(state, ignore_errors=True)
    argv = [
        sys.executable, "-m", "cProfile", "-o", str(stats_file), str(RUNNER),
        str(WORK / f"{label}.marks.json"), "consume", "--once", "--no-live",
        "--state-dir", str(state), "--outbox", str(state / "outbox"), *args,
    ]  # fmt: skip
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - started
    out = io.StringIO()
    out.write(
        f"=== {label}: iotmon consume --once {' '.join(args)} ({wall:.1f} s under cProfile)\n"
    )
    for order in ("tottime", "cumulative"):
        out.write(f"\n--- top {top} by {order}\n")
        stats = pstats.Stats(str(stats_file), stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--bootstrap-servers", metavar="HOST:PORT")
    parser.add_argument("--no-kafka", action="store_true", help="profile the file path only")
    parser.add_argument("--output", type=Path, default=RESULTS / "profile.txt")
    args = parser.parse_args(argv)
    lock = lock_or_none()
    if lock is None:
        print("bench.profile: a bench is running in this checkout; wait for it", file=sys.stderr)
        return 2

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    readings = WORK / "readings.txt"
    subprocess.run(
        [
            IOTMON, "simulate", "--devices", str(args.devices), "--count", str(args.readings),
            "--seed", "20260101", "--start", "2026-01-01T00:00:00Z", "--output", str(readings),
            "--quiet",
        ],
        check=True,
    )  # fmt: skip
    sections = [_profile("file", ["--input", str(readings)], args.top)]
    if not args.no_kafka:
        broker = Broker(args.bootstrap_servers, lambda m: print(m, file=sys.stderr))
        broker.start()
        try:
            topic = broker.remember(f"bench-profile-{int(time.time())}")
            subprocess.run(
                [IOTMON, "produce", str(readings), "--bootstrap-servers", broker.bootstrap,
                 "--topic", topic, "--quiet"],
                check=True,
            )  # fmt: skip
            kafka = ["--bootstrap-servers", broker.bootstrap, "--topic", topic,
                     "--group", f"{topic}-g"]  # fmt: skip
            sections.append(_profile("kafka", kafka, args.top))
        finally:
            broker.stop()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n\n".join(sections))
    print(f"wrote {args.output}", file=sys.stderr)
    shutil.rmtree(WORK, ignore_errors=True)
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
