"""The measurements. Each scenario appends its results to ``Bench.results[name]``.

Runs of different systems are interleaved (iotmon, bare loop, Quix, Spark, then again), so
a slow minute on this shared machine hits every system alike; summaries are medians with
the min–max range, and ratios are taken per repetition (iotmon's run against the peer's run
of the same round) before the median. Baselines (``--baseline REV``: iotmon at an older
commit) run as one more system in the throughput, file, start-up and latency scenarios,
beside the current tree's iotmon, and end up in ``results["baseline"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.baseline import Baseline, common_args, consume_flags
from bench.broker import Broker
from bench.environment import REPO, PeerEnv, spark_env
from bench.plan import Plan
from bench.procs import RunResult, run
from bench.smtp_sink import SmtpSink
from bench.stats import Summary, against_baseline, percentile, summarize
from iotmon.tools.readings import format_line

__all__ = ["Bench"]

PEERS = REPO / "bench" / "peers"
IOTMON = str(Path(sys.executable).with_name("iotmon"))
START = "2026-01-01T00:00:00Z"
MiB = 1024 * 1024

Log = Callable[[str], None]


def _summary(samples: list[float | None]) -> dict[str, Any] | None:
    found: Summary | None = summarize(samples)
    return found.to_json() if found is not None else None


class Bench:
    def __init__(
        self,
        plan: Plan,
        broker: Broker,
        peers: PeerEnv,
        work: Path,
        log: Log,
        baselines: tuple[Baseline, ...] = (),
    ) -> None:
        self.plan = plan
        self.baselines = baselines
        # Flags every baseline understands; the current tree's runs get the same arguments,
        # so that the two differ in code only.
        self._flags = [consume_flags(b.iotmon) for b in baselines]
        self._dropped: set[str] = set()
        self.broker = broker
        self.peers = peers
        self.work = work
        self.log = log
        self.run_id = uuid.uuid4().hex[:8]
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []
        self.unavailable: dict[str, str] = {}
        self._runs = 0
        if not plan.quix:
            self.unavailable["quix"] = "skipped (--no-quix)"
        elif peers.quix is None:
            self.unavailable["quix"] = f"unavailable: {peers.quix_error}"
        if not plan.spark:
            self.unavailable["spark"] = "skipped (--no-spark)"
        elif peers.spark is None or peers.spark_error:
            self.unavailable["spark"] = f"unavailable: {peers.spark_error}"
        for name, version, error in (
            ("faust", peers.faust, peers.faust_error),
            ("bytewax", peers.bytewax, peers.bytewax_error),
        ):
            if not getattr(plan, name):
                self.unavailable[name] = (
                    f"skipped (--no-{name})" if plan.full else f"skipped (bench-full; --{name})"
                )
            elif version is None:
                self.unavailable[name] = f"unavailable: {error}"
        # Filled by `data`; other scenarios create what they need if `data` was not run.
        self.topics_1m: list[str] = []
        self.file_2m: Path | None = None
        if baselines:
            self.results["baseline"] = {
                "systems": [
                    {"label": b.label, "rev": b.rev, "sha": b.sha, "subject": b.subject}
                    for b in baselines
                ],
                "comparisons": [],
            }

    # -- plumbing ----------------------------------------------------------------------

    def _dir(self, label: str) -> Path:
        self._runs += 1
        path = self.work / "runs" / f"{self._runs:03d}-{label}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _group(self) -> str:
        return f"bench-{self.run_id}-{uuid.uuid4().hex[:8]}"

    def _has(self, system: str) -> bool:
        return system not in self.unavailable

    def _common(self, args: list[str]) -> list[str]:
        """``iotmon consume`` arguments without the flags a baseline does not know."""
        for flags in self._flags:
            args, dropped = common_args(args, flags)
            for flag in set(dropped) - self._dropped:
                self._dropped.add(flag)
                self.notes.append(
                    f"{flag} left out of every iotmon run: a baseline does not know it"
                )
        return args

    def _iotmons(self, rep: int) -> list[tuple[str, str]]:
        """(name, python) of the current tree's iotmon and each baseline, in round ``rep``'s
        order: the current tree first in even rounds, last in odd ones, so that neither
        always runs right after the same peer."""
        systems = [("iotmon", sys.executable), *((b.label, b.python) for b in self.baselines)]
        return systems if rep % 2 == 0 else systems[::-1]

    def _compare(
        self,
        scenario: str,
        measure: str,
        runs: dict[str, list[RunResult]],
        value: Callable[[RunResult], float | None],
        *,
        higher_is_better: bool,
    ) -> None:
        """The current tree's ``measure`` against each baseline's, round by round."""
        for b in self.baselines:
            mine, theirs = runs.get("iotmon", []), runs.get(b.label, [])
            self.results["baseline"]["comparisons"].append(
                {
                    "scenario": scenario,
                    "measure": measure,
                    "against": b.label,
                    **against_baseline(
                        [value(r) if r.ok else None for r in mine],
                        [value(r) if r.ok else None for r in theirs],
                        higher_is_better=higher_is_better,
                    ),
                }
            )

    def _disable(self, system: str, result: RunResult) -> None:
        """A peer that fails is reported as unavailable rather than failing the bench."""
        reason = f"unavailable: {result.failure()} (log {result.log}; kept with --keep-work)"
        self.log(f"  {system} failed, dropping it from the rest of the run: {reason}")
        self.unavailable[system] = reason

    def _iotmon(
        self, label: str, args: list[str], *, timeout: float = 600, python: str = sys.executable
    ) -> RunResult:
        d = self._dir(label)
        return self._run_peer(
            [python, str(PEERS / "iotmon_run.py"), str(d / "marks.json"), *args],
            d,
            label=label,
            timeout=timeout,
            stdout=d / "stdout.json",
        )

    def _iotmon_kafka(
        self, label: str, topic: str, *, json_out: bool = True, python: str = sys.executable
    ) -> RunResult:
        return self._iotmon_consume(label, self._kafka_args(topic), json_out, python)

    def _kafka_args(self, topic: str) -> list[str]:
        """Where a consumer reads ``topic``, in a consumer group of its own."""
        return [
            "--bootstrap-servers",
            self.broker.bootstrap,
            "--topic",
            topic,
            "--group",
            self._group(),
        ]

    def _iotmon_file(
        self, label: str, path: Path, *, json_out: bool = True, python: str = sys.executable
    ) -> RunResult:
        return self._iotmon_consume(label, ["--input", str(path)], json_out, python)

    def _iotmon_consume(
        self, label: str, source: list[str], json_out: bool, python: str = sys.executable
    ) -> RunResult:
        """``iotmon consume --once`` from ``source`` with a throw-away state dir."""
        d = self.work / "state" / uuid.uuid4().hex[:8]
        args = [
            "--once",
            "--no-live",
            *source,
            "--state-dir",
            str(d),
            "--outbox",
            str(d / "outbox"),
            "--window",
            str(self.plan.window),
        ]
        if json_out:
            args.append("--json")
        try:
            return self._iotmon(label, ["consume", *self._common(args)], python=python)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def _bare_kafka(
        self, topic: str, count: int, *, parse: bool = False, tuples: bool = False
    ) -> RunResult:
        label = "bare-kafka" + ("-parse" if parse else "") + ("-tuples" if tuples else "")
        d = self._dir(label)
        return self._run_peer(
            [
                sys.executable,
                str(PEERS / "bare_kafka.py"),
                *self._kafka_args(topic),
                "--count",
                str(count),
                "--result",
                str(d / "marks.json"),
                *(["--parse"] if parse else []),
                *(["--tuples"] if tuples else []),
            ],
            d,
            label=label,
            timeout=300,
        )

    def _bare_file(self, path: Path, *, validate: bool = False) -> RunResult:
        label = "bare-file-validate" if validate else "bare-file"
        d = self._dir(label)
        return self._run_peer(
            [
                sys.executable,
                str(PEERS / "bare_file.py"),
                str(path),
                "--result",
                str(d / "marks.json"),
                *(["--validate"] if validate else []),
            ],
            d,
            label=label,
            timeout=300,
        )

    def _quix(self, label: str, topic: str, count: int, mode: str = "sliding") -> RunResult:
        window_ms = str(int(self.plan.window * 1000))
        return self._stateful_peer(
            label,
            "quix_agg.py",
            topic,
            ["--count", str(count), "--mode", mode, "--window-ms", window_ms],
        )

    def _faust(self, label: str, topic: str, count: int, mode: str) -> RunResult:
        return self._stateful_peer(
            label,
            "faust_agg.py",
            topic,
            [
                *("--count", str(count), "--partitions", str(self.plan.partitions)),
                *("--mode", mode, "--window", str(self.plan.window)),
                *("--data-start", START.replace("Z", "+00:00")),
            ],
        )

    def _bytewax(self, label: str, topic: str, count: int | None = None) -> RunResult:
        """Bytewax on ``topic``, or on its first ``count`` readings (count ÷ partitions of
        each partition)."""
        return self._stateful_peer(
            label,
            "bytewax_agg.py",
            topic,
            [
                *("--window", str(self.plan.window)),
                *(["--count", str(count)] if count is not None else []),
            ],
        )

    def _stateful_peer(self, label: str, script: str, topic: str, args: list[str]) -> RunResult:
        """A peer script in the peers' venv reading ``topic``, with a state directory of
        its own that is removed after the run."""
        d = self._dir(label)
        assert self.peers.python is not None
        result = self._run_peer(
            [
                self.peers.python,
                str(PEERS / script),
                *self._kafka_args(topic),
                *("--state-dir", str(d / "state")),
                *args,
                *("--result", str(d / "marks.json")),
            ],
            d,
            label=label,
            timeout=1800,
        )
        shutil.rmtree(d / "state", ignore_errors=True)
        return result

    def _spark(self, label: str, topic: str, key: str) -> RunResult:
        d = self._dir(label)
        result = self._run_peer(
            self._spark_argv(d, topic, key, mode="aggregate"),
            d,
            label=label,
            timeout=900,
            env=spark_env(),
            sample_tree=True,
        )
        shutil.rmtree(d / "spark", ignore_errors=True)
        return result

    def _spark_argv(self, d: Path, topic: str, key: str, *, mode: str) -> list[str]:
        assert self.peers.python is not None and self.peers.connector is not None
        return [
            self.peers.python,
            str(PEERS / "spark_agg.py"),
            f"--mode={mode}",
            "--bootstrap-servers",
            self.broker.bootstrap,
            "--topic",
            topic,
            "--key",
            key,
            "--packages",
            self.peers.connector,
            "--ivy-dir",
            self.peers.ivy_dir,
            "--work-dir",
            str(d / "spark"),
            "--result",
            str(d / "marks.json"),
        ]

    def _run_peer(
        self, argv: list[str], d: Path, *, label: str, timeout: float, **options: Any
    ) -> RunResult:
        """Run one measured process whose log and result file go to ``d``."""
        result = run(
            argv,
            label=label,
            log=d / "stderr.log",
            result_file=d / "marks.json",
            timeout=timeout,
            **options,
        )
        self._say(result)
        return result

    def _say(self, result: RunResult) -> None:
        rate = result.steady_rate()
        parts = [f"  {result.label}: {result.wall:.1f} s"]
        if rate:
            parts.append(f"{rate:,.0f} readings/s")
        parts.append(f"peak RSS {result.peak_rss_bytes / MiB:,.0f} MiB")
        if not result.ok:
            parts.append(f"FAILED ({result.failure()})")
        self.log(", ".join(parts))

    def _simulate(
        self, out: Path, *, devices: int, count: int, period: float = 1.0, seed: int | None = None
    ) -> float:
        """Write a log file with `iotmon simulate`; returns the wall time."""
        out.unlink(missing_ok=True)
        started = time.monotonic()
        self._check(
            [
                IOTMON,
                "simulate",
                "--devices",
                str(devices),
                "--count",
                str(count),
                "--seed",
                str(seed if seed is not None else self.plan.seed),
                "--start",
                START,
                "--period",
                str(period),
                "--output",
                str(out),
                "--quiet",
            ]
        )
        return time.monotonic() - started

    def _produce(self, path: Path, topic: str) -> float:
        started = time.monotonic()
        self._check(
            [
                IOTMON,
                "produce",
                str(path),
                "--bootstrap-servers",
                self.broker.bootstrap,
                "--topic",
                topic,
                "--partitions",
                str(self.plan.partitions),
                "--quiet",
            ]
        )
        self.broker.remember(topic)
        return time.monotonic() - started

    def _check(self, argv: list[str]) -> None:
        import subprocess

        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stderr.strip()[-500:]}")

    def _topic_from(self, name: str, *, devices: int, count: int, period: float) -> str:
        topic = f"bench-{self.run_id}-{name}"
        path = self.work / f"{name}.txt"
        self._simulate(path, devices=devices, count=count, period=period)
        self._produce(path, topic)
        path.unlink()
        return topic

    # -- data: simulate and produce -----------------------------------------------------

    def data(self) -> None:
        """`iotmon simulate` to a file and `iotmon produce` to Kafka, timed; leaves the
        1M-reading topics and the 2M-line file the other scenarios read."""
        plan = self.plan
        self.log(f"data: simulate {plan.readings:,} readings x{plan.reps}, produce x{plan.reps}")
        simulate: list[float | None] = []
        produce: list[float | None] = []
        source = self.work / "readings-1m.txt"
        for rep in range(plan.reps):
            out = source if rep == 0 else self.work / "readings-1m-again.txt"
            wall = self._simulate(out, devices=plan.devices, count=plan.readings)
            simulate.append(plan.readings / wall)
            self.log(f"  simulate → file: {wall:.1f} s, {plan.readings / wall:,.0f} lines/s")
            if rep:
                out.unlink()
        for rep in range(plan.reps):
            topic = f"bench-{self.run_id}-r1m-{rep}"
            wall = self._produce(source, topic)
            produce.append(plan.readings / wall)
            self.topics_1m.append(topic)
            self.log(f"  produce → {topic}: {wall:.1f} s, {plan.readings / wall:,.0f} lines/s")
        source.unlink()
        self.file_2m = self.work / "readings-2m.txt"
        self._simulate(
            self.file_2m, devices=plan.devices, count=plan.file_lines, seed=plan.seed + 1
        )
        self.results["data"] = {
            "readings": plan.readings,
            "devices": plan.devices,
            "partitions": plan.partitions,
            "simulate_lines_per_s": _summary(simulate),
            "produce_lines_per_s": _summary(produce),
        }

    def _need_data(self) -> None:
        if not self.topics_1m:
            source = self.work / "readings-1m.txt"
            self._simulate(source, devices=self.plan.devices, count=self.plan.readings)
            topic = f"bench-{self.run_id}-r1m-0"
            self._produce(source, topic)
            source.unlink()
            self.topics_1m.append(topic)
        if self.file_2m is None:
            self.file_2m = self.work / "readings-2m.txt"
            self._simulate(
                self.file_2m,
                devices=self.plan.devices,
                count=self.plan.file_lines,
                seed=self.plan.seed + 1,
            )

    # -- throughput from Kafka ---------------------------------------------------------

    def throughput(self) -> None:
        plan = self.plan
        self._need_data()
        self.log(f"throughput from Kafka: {plan.readings:,} readings, x{plan.reps} interleaved")
        runs: dict[str, list[RunResult]] = {
            "iotmon": [],
            "bare": [],
            "bare_parse": [],
            "bare_tuples": [],
            "quix_sliding": [],
            "quix_running": [],
            "spark": [],
            "faust_hopping": [],
            "faust_running": [],
            "bytewax": [],
            **{b.label: [] for b in self.baselines},
        }
        for rep in range(plan.reps):
            topic = self.topics_1m[rep % len(self.topics_1m)]
            self.log(f" round {rep + 1}/{plan.reps} ({topic})")
            for name, python in self._iotmons(rep):
                result = self._iotmon_kafka(f"{name}-kafka", topic, python=python)
                self._validate_iotmon(result, plan.readings)
                runs[name].append(result)
            runs["bare"].append(self._bare_kafka(topic, plan.readings))
            runs["bare_parse"].append(self._bare_kafka(topic, plan.readings, parse=True))
            runs["bare_tuples"].append(self._bare_kafka(topic, plan.readings, tuples=True))
            if self._has("quix"):
                if rep < plan.quix_sliding_reps:
                    n = plan.quix_sliding_readings
                    result = self._quix("quix-sliding", topic, n, "sliding")
                    runs["quix_sliding"].append(result)
                    self._check_count(result, n)
                    if not result.ok:
                        self._disable("quix", result)
                if self._has("quix"):
                    result = self._quix("quix-running", topic, plan.quix_readings, "running")
                    runs["quix_running"].append(result)
                    self._check_count(result, plan.quix_readings)
            if self._has("spark"):
                result = self._spark("spark", topic, "sensor")
                runs["spark"].append(result)
                if not result.ok or result.marks.get("count") != plan.readings:
                    self._disable("spark", result)
            self._python_peers(rep, topic, runs)
        base = runs["iotmon"]
        systems: dict[str, Any] = {}
        for name, results in runs.items():
            if not results:
                continue
            good = [r for r in results if r.ok]
            entry: dict[str, Any] = {
                "runs": len(results),
                "failed": [r.failure() for r in results if not r.ok],
                "readings": results[0].marks.get("count"),
                **self._run_summary(
                    name, results, rate=RunResult.steady_rate, whole_rate=_whole_rate
                ),
            }
            if name != "iotmon":
                entry["iotmon_over_peer"] = _summary(_paired_ratios(base, results))
                # Whole runs (process start → exit), round by round: the peer's time ÷ iotmon's.
                entry["iotmon_over_peer_wall"] = _summary(_paired_wall_ratios(base, results))
            if name in ("bare_parse", "bare_tuples"):
                entry["over_bare"] = _summary(_paired_ratios(results, runs["bare"]))
            if name == "spark":
                entry["batches"] = [r.marks.get("batches") for r in good]
                entry["groups"] = [r.marks.get("groups") for r in good]
            systems[name] = entry
        self._compare(
            "throughput", "readings/s", runs, RunResult.steady_rate, higher_is_better=True
        )
        self._compare("throughput", "whole run", runs, _wall, higher_is_better=False)
        self.results["throughput"] = {
            "readings": plan.readings,
            "devices": plan.devices,
            "partitions": plan.partitions,
            "quix_readings": plan.quix_readings,
            "quix_sliding_readings": plan.quix_sliding_readings,
            "faust_readings": plan.faust_readings,
            "faust_running_readings": plan.faust_running_readings,
            "bytewax_readings": plan.bytewax_readings,
            "systems": systems,
        }

    def _python_peers(self, rep: int, topic: str, runs: dict[str, list[RunResult]]) -> None:
        """Round ``rep`` of faust-streaming (on prefixes of the topic) and Bytewax."""
        plan = self.plan
        for mode, n in (("hopping", plan.faust_readings), ("running", plan.faust_running_readings)):
            if self._has("faust") and rep < plan.faust_reps:
                result = self._faust(f"faust-{mode}", topic, n, mode)
                runs[f"faust_{mode}"].append(result)
                self._check_count(result, n)
                if not result.ok:
                    self._disable("faust", result)
        if self._has("bytewax") and rep < plan.bytewax_reps:
            n = plan.bytewax_readings
            result = self._bytewax("bytewax", topic, n if n < plan.readings else None)
            runs["bytewax"].append(result)
            self._check_count(result, min(n, plan.readings))
            if result.marks.get("late"):
                self.notes.append(
                    f"{result.label}: {result.marks['late']} late window entries (a reading "
                    "after the watermark counts once per window it missed; left out of the "
                    "window means)"
                )
            if not result.ok:
                self._disable("bytewax", result)

    def _run_summary(
        self, name: str, results: list[RunResult], **extra: Callable[[RunResult], float | None]
    ) -> dict[str, Any]:
        """Medians [min–max] over the successful runs of system ``name``: start-up, wall
        time, peak RSS (PySpark: also when its session was ready) and each of ``extra``."""
        measures: dict[str, Callable[[RunResult], float | None]] = {
            **extra,
            "startup_s": lambda r: self._first_seen(name, r),
            "wall_s": lambda r: r.wall,
            "peak_rss_bytes": lambda r: r.peak_rss_bytes,
        }
        if name == "spark":
            measures["session_s"] = lambda r: r.since_spawn("session")
        good = [r for r in results if r.ok]
        return {key: _summary([measure(r) for r in good]) for key, measure in measures.items()}

    @staticmethod
    def _first_seen(name: str, result: RunResult) -> float | None:
        if name == "spark":
            return result.since_spawn("last")  # one micro-batch: its end is the first output
        return result.startup()

    def _check_count(self, result: RunResult, expected: int) -> None:
        count = result.marks.get("count")
        if result.ok and count != expected:
            self.notes.append(f"{result.label}: processed {count} readings, expected {expected}")

    def _validate_iotmon(self, result: RunResult, expected: int) -> None:
        self._check_count(result, expected)
        stdout = result.log.with_name("stdout.json") if result.log else None
        if result.ok and stdout is not None and stdout.exists() and stdout.stat().st_size:
            with contextlib.suppress(ValueError):
                report = orjson.loads(stdout.read_bytes())
                if report.get("readings") != expected:
                    self.notes.append(
                        f"{result.label}: --json says {report.get('readings')} readings, "
                        f"expected {expected}"
                    )

    # -- file path ----------------------------------------------------------------------

    def file(self) -> None:
        plan = self.plan
        self._need_data()
        assert self.file_2m is not None
        self.log(f"file path: {plan.file_lines:,} lines, x{plan.reps} interleaved")
        runs: dict[str, list[RunResult]] = {"iotmon": [], **{b.label: [] for b in self.baselines}}
        iotmon = runs["iotmon"]
        bare: list[RunResult] = []
        validated: list[RunResult] = []
        for rep in range(plan.reps):
            self.log(f" round {rep + 1}/{plan.reps}")
            for name, python in self._iotmons(rep):
                result = self._iotmon_file(f"{name}-file", self.file_2m, python=python)
                self._validate_iotmon(result, plan.file_lines)
                runs[name].append(result)
            bare.append(self._bare_file(self.file_2m))
            validated.append(self._bare_file(self.file_2m, validate=True))

        def system(name: str, results: list[RunResult]) -> dict[str, Any]:
            return self._run_summary(name, results, rate=RunResult.steady_rate)

        self._compare("file", "lines/s", runs, RunResult.steady_rate, higher_is_better=True)
        self._compare("file", "whole run", runs, _wall, higher_is_better=False)
        self.results["file"] = {
            "lines": plan.file_lines,
            "iotmon": system("iotmon", iotmon),
            **{b.label: system(b.label, runs[b.label]) for b in self.baselines},
            "bare": system("bare", bare),
            "bare_validated": system("bare_validated", validated),
            "iotmon_over_bare": _summary(_paired_ratios(iotmon, bare)),
            "validated_over_bare": _summary(_paired_ratios(validated, bare)),
            "iotmon_over_bare_wall": _summary(_paired_wall_ratios(iotmon, bare)),
        }

    # -- start-up ----------------------------------------------------------------------

    def startup(self) -> None:
        """Process start → first reading processed, on a topic of 30 readings."""
        plan = self.plan
        tiny_topic = self._topic_from("tiny", devices=1, count=30, period=10.0)
        self.log(f"start-up: process start → first reading processed, x{plan.reps} interleaved")
        runs: dict[str, list[RunResult]] = {
            "iotmon": [],
            **{b.label: [] for b in self.baselines},
            "quix": [],
            "spark": [],
        }
        # Untimed: the broker's first consumer group creates __consumer_offsets (50
        # partitions), which would otherwise be charged to whichever system starts first.
        for name, python in self._iotmons(0):
            self._iotmon_kafka(f"{name}-warm-up", tiny_topic, python=python)
        for rep in range(plan.reps):
            self.log(f" round {rep + 1}/{plan.reps}")
            for name, python in self._iotmons(rep):
                runs[name].append(self._iotmon_kafka(f"{name}-startup", tiny_topic, python=python))
            if self._has("quix"):
                result = self._quix("quix-startup", tiny_topic, 30, "sliding")
                runs["quix"].append(result)
                if not result.ok:
                    self._disable("quix", result)
            if self._has("spark"):
                result = self._spark("spark-startup", tiny_topic, "id_equipamento")
                runs["spark"].append(result)
                if not result.ok:
                    self._disable("spark", result)
        self._compare(
            "startup", "start → first reading", runs, RunResult.startup, higher_is_better=False
        )
        self.results["startup"] = {
            name: self._run_summary(name, results) for name, results in runs.items() if results
        }

    # -- memory ------------------------------------------------------------------------

    def memory(self) -> None:
        plan = self.plan
        per = plan.memory_readings_per_device
        self.log(
            f"memory: iotmon --input at {', '.join(f'{n:,}' for n in plan.memory_devices)} "
            f"devices; over Kafka at {plan.peer_memory_devices:,} devices"
        )
        # iotmon over files: reading a file buffers 1 MiB at most, so a tiny baseline file is
        # a fair zero point for any fleet size.
        files = {0: self.work / "mem-base.txt"}
        self._simulate(files[0], devices=1, count=30, period=plan.memory_period)
        for n in plan.memory_devices:
            files[n] = self.work / f"mem-{n}.txt"
            self._simulate(files[n], devices=n, count=n * per, period=plan.memory_period)
        by_size: dict[int, list[RunResult]] = {n: [] for n in files}
        for _ in range(plan.memory_reps):
            for n, path in files.items():
                by_size[n].append(self._iotmon_file(f"iotmon-mem-{n}", path, json_out=False))
        for path in files.values():
            path.unlink()
        iotmon_file: dict[str, Any] = {"points": {}}
        for n in plan.memory_devices:
            iotmon_file["points"][str(n)] = _memory_point(by_size[n], by_size[0], n)

        # Every system over Kafka at the same fleet size. Kafka consumers buffer fetched
        # records per partition, so the zero point is a topic with as many readings spread
        # over all partitions by a few devices: the difference is then per-device state,
        # not buffering.
        n = plan.peer_memory_devices
        few = plan.zero_point_devices
        fleet = self._topic_from("mem-fleet", devices=n, count=n * per, period=plan.memory_period)
        single = self._topic_from("mem-few", devices=few, count=n * per, period=plan.memory_period)
        kafka: dict[str, Any] = {}
        systems: list[tuple[str, Callable[[str], RunResult]]] = [
            ("iotmon", lambda t: self._iotmon_kafka("iotmon-mem-kafka", t, json_out=False)),
        ]
        if self._has("quix"):
            systems.append(("quix", lambda t: self._quix("quix-mem", t, n * per, "sliding")))
        if self._has("bytewax"):
            systems.append(("bytewax", lambda t: self._bytewax("bytewax-mem", t)))
        if self._has("spark") and plan.spark_memory:
            systems.append(("spark", lambda t: self._spark("spark-mem", t, "id_equipamento")))
        results: dict[tuple[str, str], list[RunResult]] = {}
        for _ in range(plan.memory_reps):
            for name, runner in systems:
                for which, topic in (("single", single), ("fleet", fleet)):
                    results.setdefault((name, which), []).append(runner(topic))
        for name, _runner in systems:
            kafka[name] = _memory_point(
                results[(name, "fleet")], results[(name, "single")], n, zero_devices=few
            )
        self.results["memory"] = {
            "readings_per_device": per,
            "period_s": plan.memory_period,
            "window_s": plan.window,
            "iotmon_file": iotmon_file,
            "kafka_devices": n,
            "kafka_zero_point_devices": few,
            "kafka": kafka,
        }

    # -- alert latency -----------------------------------------------------------------

    def latency(self) -> None:
        plan = self.plan
        out: dict[str, Any] = {
            "alerts": plan.alerts,
            "interval_s": plan.alert_interval,
            "background_rate": plan.background_rate,
        }
        self.log(
            f"alert latency: {plan.alerts} alerts, one every {plan.alert_interval * 1000:.0f}"
            f" ms, over {plan.background_rate:,} readings/s of normal traffic"
        )
        if not self.baselines:
            out["iotmon"] = asyncio.run(self._latency("iotmon"))
        else:
            # Against a baseline: interleaved rounds like the other scenarios, so that the
            # comparison has a spread to judge it by; the table shows the first round's.
            rounds: dict[str, list[dict[str, Any]]] = {}
            for rep in range(plan.reps):
                self.log(f" round {rep + 1}/{plan.reps}")
                for name, _python in self._iotmons(rep):
                    iotmon = next((b.iotmon for b in self.baselines if b.label == name), IOTMON)
                    rounds.setdefault(name, []).append(
                        asyncio.run(self._latency(name, iotmon=iotmon))
                    )
            out.update({name: found[0] for name, found in rounds.items()})
            out["rounds"] = rounds
            for b in self.baselines:
                for measure in ("p50_s", "p99_s"):
                    self.results["baseline"]["comparisons"].append(
                        {
                            "scenario": "latency",
                            "measure": measure.removesuffix("_s"),
                            "against": b.label,
                            **against_baseline(
                                [r.get(measure) for r in rounds["iotmon"]],
                                [r.get(measure) for r in rounds[b.label]],
                                higher_is_better=False,
                            ),
                        }
                    )
        # With a changelog (the default where iotmon has one) notifications wait for the
        # checkpoint that records them as announced; without it they go out at once.
        if plan.latency_variants:
            out["iotmon_no_changelog"] = asyncio.run(
                self._latency("iotmon", extra=["--no-changelog"])
            )
        if plan.spark_latency and self._has("spark"):
            out["spark"] = asyncio.run(self._latency("spark"))
            out["spark_poll_s"] = plan.spark_poll
        self.results["latency"] = out

    async def _latency(
        self, system: str, extra: tuple[str, ...] | list[str] = (), iotmon: str = IOTMON
    ) -> dict[str, Any]:
        """Alert latency of ``system``: "spark", or an iotmon whose command is ``iotmon``."""
        from aiokafka import AIOKafkaProducer

        plan = self.plan
        label = f"latency-{system}{''.join(extra).replace('--', '-')}"
        # A topic per run: a repeated run must not read the previous run's alerts.
        topic = await self.broker.create_topic(
            f"bench-{self.run_id}-{label.replace('@', '-')}-{uuid.uuid4().hex[:6]}",
            plan.partitions,
        )
        d = self._dir(label)
        with SmtpSink() as sink:
            if system != "spark":
                args = [
                    "--no-live",
                    *self._kafka_args(topic),
                    "--state-dir",
                    str(d / "state"),
                    "--for",
                    "0",
                    "--group-wait",
                    "0",
                    "--group-interval",
                    "0.001",
                    "--allowed-lateness",
                    "0",
                    "--smtp-host",
                    "127.0.0.1",
                    "--smtp-port",
                    str(sink.port),
                    "--smtp-security",
                    "none",
                    "--mail-to",
                    "ops@example.com",
                    *extra,
                ]
                argv = [iotmon, "consume", *self._common(args)]
                env = None
                ready_timeout = 60.0
            else:
                argv = [
                    *self._spark_argv(d, topic, "sensor", mode="alerts"),
                    "--poll",
                    str(plan.spark_poll),
                    "--smtp-host",
                    "127.0.0.1",
                    "--smtp-port",
                    str(sink.port),
                ]
                env = spark_env()
                ready_timeout = 300.0
            producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=0)
            await producer.start()
            stop_background = asyncio.Event()
            background = asyncio.create_task(self._background(producer, topic, stop_background))
            with (d / "stderr.log").open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdout=log, stderr=log, env=env, start_new_session=True
                )
                try:
                    result = await self._alerts(producer, topic, sink, ready_timeout)
                finally:
                    stop_background.set()
                    await background
                    await producer.stop()
                    await _terminate(proc)
        result["args"] = list(extra)
        if result.get("error"):
            self.log(f"  {label}: {result['error']} (log {d / 'stderr.log'})")
        else:
            self.log(
                f"  {label}: {result['delivered']}/{plan.alerts} alerts, "
                f"p50 {result['p50_s'] * 1000:,.0f} ms, p99 {result['p99_s'] * 1000:,.0f} ms"
            )
        shutil.rmtree(d / "state", ignore_errors=True)
        shutil.rmtree(d / "spark", ignore_errors=True)
        return result

    async def _alerts(
        self, producer: Any, topic: str, sink: SmtpSink, ready_timeout: float
    ) -> dict[str, Any]:
        plan = self.plan
        warmup = "bench-warmup-0"
        await producer.send_and_wait(topic, _reading(warmup, warmup, 90.0), key=warmup.encode())
        if not await sink.wait_for([warmup], within=ready_timeout):
            return {"error": f"no email for the warm-up alert within {ready_timeout:.0f} s"}
        sent: dict[str, float] = {}
        for i in range(plan.alerts):
            token = f"bench-alert-{i:05d}"
            value = _reading(token, token, 90.0)
            sent[token] = time.monotonic()
            await producer.send_and_wait(topic, value, key=token.encode())
            await asyncio.sleep(plan.alert_interval)
        await sink.wait_for(list(sent), within=max(30.0, 3 * plan.spark_poll))
        # In sending order, so a backlog building up shows as a rising series in the JSON.
        latencies = [
            arrived - sent[token] for token in sent if (arrived := sink.arrived(token)) is not None
        ]
        if not latencies:
            return {"error": "no alert email arrived", "delivered": 0}
        return {
            "delivered": len(latencies),
            "emails": sink.messages,
            "p50_s": percentile(latencies, 50),
            "p90_s": percentile(latencies, 90),
            "p99_s": percentile(latencies, 99),
            "max_s": max(latencies),
            "min_s": min(latencies),
            "samples_ms": [round(x * 1000, 1) for x in latencies],
        }

    async def _background(self, producer: Any, topic: str, stop: asyncio.Event) -> None:
        """Normal readings (20-60 °C, sensor labels 01-50) from 600 devices at the plan's
        rate, in 20-ms ticks, so every partition's event time keeps moving."""
        rng = random.Random(self.plan.seed)
        per_tick = max(1, self.plan.background_rate // 50)
        i = 0
        next_tick = time.monotonic()
        while not stop.is_set():
            for _ in range(per_tick):
                device = f"bench-bg-{i % 600:03d}"
                sensor = f"sensor{i % 50 + 1:02d}"
                value = _reading(device, sensor, round(rng.uniform(20.0, 60.0), 1))
                await producer.send(topic, value, key=device.encode())
                i += 1
            next_tick += 0.02
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_tick - time.monotonic()))


def _reading(device: str, sensor: str, temperature: float) -> bytes:
    """A reading in the seed's layout, event time now."""
    return format_line(
        id_sensor=f"Sensor-{device}",
        id_equipamento=device,
        sensor=sensor,
        event_us=time.time_ns() // 1000,
        temperature=temperature,
    )


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # a JVM left behind by the driver


def _memory_point(
    fleet: list[RunResult], zero: list[RunResult], devices: int, *, zero_devices: int = 1
) -> dict[str, Any]:
    """Peak RSS at ``devices`` and per device over the zero point's (a run with
    ``zero_devices``); for iotmon also the RSS after the last reading (state held, before the
    final checkpoint and report)."""
    devices -= zero_devices
    peak = summarize([r.peak_rss_bytes for r in fleet if r.ok])
    base = summarize([r.peak_rss_bytes for r in zero if r.ok])
    held = summarize([r.mark("rss_last_batch") for r in fleet if r.ok])
    held_base = summarize([r.mark("rss_last_batch") for r in zero if r.ok])
    return {
        "peak_rss_bytes": peak.to_json() if peak else None,
        "baseline_peak_rss_bytes": base.to_json() if base else None,
        "bytes_per_device": (peak.median - base.median) / devices if peak and base else None,
        "held_rss_bytes": held.to_json() if held else None,
        "held_bytes_per_device": (
            (held.median - held_base.median) / devices if held and held_base else None
        ),
    }


def _whole_rate(result: RunResult) -> float | None:
    """Readings over the whole run: process start → exit (imports, start-up, shutdown)."""
    count = result.marks.get("count")
    return count / result.wall if isinstance(count, int) and result.wall > 0 else None


def _paired_wall_ratios(base: list[RunResult], peer: list[RunResult]) -> list[float | None]:
    """The peer's whole-run time over iotmon's, round by round (higher: iotmon faster)."""
    return [p.wall / i.wall for i, p in zip(base, peer, strict=False) if i.ok and p.ok]


def _paired_ratios(base: list[RunResult], peer: list[RunResult]) -> list[float | None]:
    """iotmon's steady rate over the peer's, round by round (same minute of machine noise)."""
    ratios: list[float | None] = []
    for mine, theirs in zip(base, peer, strict=False):
        a, b = mine.steady_rate(), theirs.steady_rate()
        if mine.ok and theirs.ok and a and b:
            ratios.append(a / b)
    return ratios


def _wall(result: RunResult) -> float:
    """Process start to exit: what the whole-run targets compare."""
    return result.wall
