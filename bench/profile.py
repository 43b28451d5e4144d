"""`python -m bench.profile`: where iotmon's time goes, on the file path and the Kafka path.

Runs ``iotmon consume --once`` under the py-spy sampling profiler on a simulated log file
(``--input``) and on a Kafka topic holding the same readings (the bench's own broker on
127.0.0.1:39492, or ``--bootstrap-servers``), and writes each function's share of the
samples — its own time, and its time including what it calls — to
``bench/results/profile.txt``. Sampling leaves the code's speed alone (unlike cProfile,
which adds a cost to every call), so the shares are what a normal run spends. py-spy is
pip-installed into ``.cache/bench-peers/tools`` on first use. bench/README.md summarises
the findings.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.broker import Broker
from bench.cli import lock_or_none
from bench.environment import REPO, ensure_py_spy
from bench.plan import Plan
from bench.scenarios import IOTMON, START

RESULTS = REPO / "bench" / "results"
WORK = REPO / ".cache" / "bench" / "profile"
SAMPLES_PER_SECOND = 250


def _profile(py_spy: Path, label: str, args: list[str], top: int) -> str:
    raw = WORK / f"{label}.stacks.txt"
    state = WORK / f"state-{label}"
    shutil.rmtree(state, ignore_errors=True)
    argv = [
        str(py_spy), "record", "--format", "raw", "--rate", str(SAMPLES_PER_SECOND),
        "--nonblocking", "--output", str(raw), "--",
        IOTMON, "consume", "--once", "--no-live",
        "--state-dir", str(state), "--outbox", str(state / "outbox"), *args,
    ]  # fmt: skip
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - started
    own, total, samples = _shares(raw)
    lines = [
        f"=== {label}: iotmon consume --once {' '.join(args)}",
        f"{wall:.1f} s under py-spy, {samples:,} samples of the main thread",
    ]
    for title, counts in (("own time", own), ("including callees", total)):
        lines += ["", f"--- top {top} by {title} (% of samples)"]
        lines += [f"{100 * n / samples:5.1f} %  {name}" for name, n in counts.most_common(top)]
    return "\n".join(lines) + "\n"


def _shares(raw: Path) -> tuple[Counter[str], Counter[str], int]:
    """Per function: samples where it was running, samples where it was on the stack.

    py-spy's raw format is one ``frame;frame;...;frame count`` line per distinct stack, each
    frame ``function (file:line)``. Worker threads (the checkpoint writer's pool, mostly
    idle) are left out: the main thread is where readings are processed.
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or "threading.py" in stack.split(";", 1)[0]:
            continue
        n = int(count)
        samples += n
        names = [_function(frame) for frame in stack.split(";")]
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
    return own, total, max(samples, 1)


def _function(frame: str) -> str:
    """``add (/x/iotmon/stats/device.py:118)`` → ``add (device.py)``; generated code's long
    ``<...>`` file names are shortened."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    if path.startswith("<") and len(path) > 40:
        path = path[:39] + "…>"
    return f"{name} ({Path(path).name})"


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
    try:
        py_spy = ensure_py_spy(lambda message: print(message, file=sys.stderr))
    except RuntimeError as exc:
        print(f"bench.profile: {exc}", file=sys.stderr)
        return 2

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    readings = WORK / "readings.txt"
    subprocess.run(
        [
            IOTMON, "simulate", "--devices", str(args.devices), "--count", str(args.readings),
            "--seed", str(Plan().seed), "--start", START, "--output", str(readings),
            "--quiet",
        ],
        check=True,
    )  # fmt: skip
    sections = [_profile(py_spy, "file", ["--input", str(readings)], args.top)]
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
            sections.append(_profile(py_spy, "kafka", kafka, args.top))
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
