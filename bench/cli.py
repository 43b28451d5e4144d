"""`python -m bench`: run the benchmarks and write bench/results/latest.{md,json}."""

from __future__ import annotations

import argparse
import compileall
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench.baseline import Baseline, ensure_baseline
from bench.broker import Broker
from bench.environment import REPO, PeerEnv, ensure_peer_env, machine_info, versions
from bench.plan import SCENARIOS, Plan
from bench.report import render_markdown
from bench.scenarios import Bench

__all__ = ["main"]

RESULTS = REPO / "bench" / "results"
CACHE = REPO / ".cache" / "bench"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of iotmon next to a bare aiokafka loop, Quix Streams, "
        "PySpark Structured Streaming, faust-streaming and Bytewax (see bench/README.md).",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the full plan: more repetitions, 1M-device memory, Spark latency",
    )
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="use this broker instead of starting one on 127.0.0.1:39492",
    )
    parser.add_argument(
        "--only",
        metavar="LIST",
        help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 3, full 5)")
    parser.add_argument(
        "--readings",
        type=int,
        help="readings in the Kafka topics (default 1,000,000; the file path reads twice as "
        "many lines) — smaller for a quick check of the bench itself",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        action="append",
        default=[],
        help="also run iotmon as of git revision REV (built once into "
        f"{CACHE}/baseline-<sha>) beside the current tree, and report current ÷ baseline "
        "(repeatable)",
    )
    parser.add_argument("--no-quix", action="store_true", help="leave Quix Streams out")
    parser.add_argument("--no-spark", action="store_true", help="leave PySpark out")
    parser.add_argument(
        "--faust",
        action=argparse.BooleanOptionalAction,
        help="faust-streaming in the throughput scenario (default: in --full only)",
    )
    parser.add_argument(
        "--bytewax",
        action=argparse.BooleanOptionalAction,
        help="Bytewax in the throughput and memory scenarios (default: in --full only)",
    )
    parser.add_argument(
        "--spark-latency",
        action="store_true",
        help="also measure PySpark's alert latency (on in --full)",
    )
    parser.add_argument(
        "--refresh-peers",
        action="store_true",
        help="rebuild .cache/bench-peers/venv with the newest releases",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where latest.md and latest.json go (default bench/results)",
    )
    parser.add_argument(
        "--keep-work",
        action="store_true",
        help=f"keep the generated data and per-run logs (in {CACHE}/work-*)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = Plan.full_plan() if args.full else Plan.default()
    if args.only:
        wanted = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = [s for s in wanted if s not in SCENARIOS]
        if unknown:
            print(f"bench: unknown scenario(s) {', '.join(unknown)}", file=sys.stderr)
            return 2
        plan.scenarios = tuple(s for s in SCENARIOS if s in wanted)
        plan.skipped.append(
            f"scenarios not run (--only): "
            f"{', '.join(s for s in SCENARIOS if s not in wanted) or 'none'}"
        )
    if args.reps:
        plan.reps = args.reps
        plan.quix_sliding_reps = min(plan.quix_sliding_reps, args.reps)
        plan.faust_reps = min(plan.faust_reps, args.reps)
        plan.bytewax_reps = min(plan.bytewax_reps, args.reps)
    if args.readings:
        plan.readings = args.readings
        plan.file_lines = 2 * args.readings
        plan.quix_readings = min(plan.quix_readings, args.readings)
        plan.quix_sliding_readings = min(plan.quix_sliding_readings, args.readings)
        plan.faust_readings = min(plan.faust_readings, args.readings)
        plan.faust_running_readings = min(plan.faust_running_readings, args.readings)
        plan.bytewax_readings = min(plan.bytewax_readings, args.readings)
        plan.skipped.append(f"smaller data than the plan's (--readings {args.readings:,})")
    plan.quix = not args.no_quix
    plan.spark = not args.no_spark
    for peer in ("faust", "bytewax"):
        wanted_peer = getattr(args, peer)
        if wanted_peer is not None:
            setattr(plan, peer, wanted_peer)
    if args.spark_latency:
        plan.spark_latency = True
        plan.skipped = [s for s in plan.skipped if "PySpark alert latency" not in s]

    # aiokafka logs retries (a new topic's leader not elected yet) that are no news here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    t0 = time.monotonic()

    def log(message: str) -> None:
        print(f"[bench {time.monotonic() - t0:6.1f}s] {message}", file=sys.stderr, flush=True)

    lock = lock_or_none()
    if lock is None:
        print(
            "bench: another `python -m bench` is running in this checkout (it owns the bench "
            "broker on port 39492); wait for it to finish",
            file=sys.stderr,
        )
        return 2
    started = datetime.now(UTC)
    # Bytecode for this tree now, as a baseline gets it (bench/baseline.py) and as an
    # installed iotmon has it: where nothing wrote it (PYTHONDONTWRITEBYTECODE, a fresh
    # checkout) every start would compile every module, ~65 ms of start-up that is the
    # checkout's, not iotmon's.
    compileall.compile_dir(REPO / "iotmon", quiet=1)
    needs_peers = bool({"throughput", "startup", "memory", "latency"} & set(plan.scenarios))
    if needs_peers and (plan.quix or plan.spark or plan.faust or plan.bytewax):
        peers = ensure_peer_env(
            refresh=args.refresh_peers,
            log=log,
            want_quix=plan.quix,
            want_spark=plan.spark,
            want_faust=plan.faust,
            want_bytewax=plan.bytewax,
        )
    else:
        peers = PeerEnv()
    try:
        baselines = _baselines(args.baseline, log)
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        lock.close()
        return 2
    # A folder of its own, so nothing else's cleanup can pull files from under this run.
    work = CACHE / f"work-{started:%Y%m%dT%H%M%S}-{os.getpid()}"
    work.mkdir(parents=True)
    broker = Broker(args.bootstrap_servers, log)
    bench = Bench(plan, broker, peers, work, log, baselines)
    failed: str | None = None
    try:
        broker.start()
        for scenario in plan.scenarios:
            getattr(bench, scenario)()
    except KeyboardInterrupt:
        failed = "interrupted"
        raise
    except Exception as exc:  # a partial result table is still worth writing
        failed = f"{type(exc).__name__}: {exc}"
        log(f"bench stopped early: {failed}")
    finally:
        try:
            broker.stop()
        finally:
            if args.keep_work:
                log(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
            _write(args.results_dir, plan, bench, peers, broker, started, t0, failed, log)
            lock.close()
    return 1 if failed else 0


def _baselines(revs: list[str], log: Any) -> tuple[Baseline, ...]:
    """Each --baseline built (or found in the cache), once per commit."""
    found: dict[str, Baseline] = {}
    for rev in revs:
        baseline = ensure_baseline(rev, CACHE, log)
        found.setdefault(baseline.sha, baseline)
    return tuple(found.values())


def lock_or_none() -> IO[str] | None:
    """An exclusive lock per checkout, held for the whole run (None if taken): two benches
    would share, and reset, one broker and one peers' virtualenv."""
    CACHE.mkdir(parents=True, exist_ok=True)
    handle = (CACHE / "bench.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _write(
    results_dir: Path,
    plan: Plan,
    bench: Any,
    peers: PeerEnv,
    broker: Broker,
    started: datetime,
    t0: float,
    failed: str | None,
    log: Any,
) -> None:
    doc = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - t0, 1),
            "mode": "full" if plan.full else "default",
            "command": " ".join(["python -m bench", *sys.argv[1:]]),
            "machine": machine_info(),
            "versions": versions(peers, external_broker=broker.external),
            "plan": {k: getattr(plan, k) for k in plan.__slots__ if k not in ("skipped",)},
            "skipped": plan.skipped,
            "unavailable": bench.unavailable,
            "notes": bench.notes,
            "failed": failed,
        },
        **bench.results,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "latest.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (results_dir / "latest.md").write_text(render_markdown(doc))
    log(f"wrote {results_dir / 'latest.md'} and latest.json")
