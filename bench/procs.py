"""Running one measured process: wall times, peak memory, the peer's own timing marks.

Every system under test runs as its own process, started here. What is recorded:

- ``spawn``/``exited``: ``time.monotonic()`` just before the fork and when ``wait4`` returned.
  Peers write their own marks (first reading processed, last reading processed) with
  ``time.monotonic()`` too; on Linux that is CLOCK_MONOTONIC, shared by all processes, so
  the bench can subtract one from the other.
- peak RSS: ``ru_maxrss`` of the child from ``wait4`` (exact, kernel-kept), and for process
  trees (PySpark's driver starts a JVM) the sum of the tree's RSS sampled every 100 ms.
  Sampling costs a little CPU, so it is only switched on where a tree is expected.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunResult", "run"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(slots=True)
class RunResult:
    label: str
    returncode: int
    spawn: float
    exited: float
    maxrss_bytes: int
    tree_peak_bytes: int | None
    marks: dict[str, Any] = field(default_factory=dict)
    """What the process wrote to its result file (empty if it wrote none)."""
    log: Path | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def wall(self) -> float:
        return self.exited - self.spawn

    @property
    def peak_rss_bytes(self) -> int:
        return max(self.maxrss_bytes, self.tree_peak_bytes or 0)

    def mark(self, name: str) -> float | None:
        value = self.marks.get(name)
        return float(value) if isinstance(value, int | float) else None

    def since_spawn(self, mark: str) -> float | None:
        """Seconds from process start to the time mark ``mark`` the process wrote."""
        value = self.mark(mark)
        return None if value is None else value - self.spawn

    def startup(self) -> float | None:
        """Process start to the first reading processed, seconds."""
        return self.since_spawn("first")

    def steady_rate(self) -> float | None:
        """Readings per second from the first processed batch to the last one, not counting
        the readings of that first batch (their processing time is before ``first``)."""
        first, last = self.mark("first"), self.mark("last")
        count, first_count = self.marks.get("count"), self.marks.get("first_count", 0)
        if first is None or last is None or not isinstance(count, int) or last <= first:
            return None
        return (count - int(first_count)) / (last - first)

    def failure(self) -> str:
        """One line saying why the run does not count, from the tail of its log."""
        what = "timed out" if self.timed_out else f"exit code {self.returncode}"
        tail = ""
        if self.log is not None and self.log.exists():
            lines = [
                line.strip()
                for line in self.log.read_text(errors="replace").splitlines()
                if line.strip()
            ]
            if lines:
                tail = f": {lines[-1][:200]}"
        return f"{self.label} {what}{tail}"


def run(
    argv: Sequence[str],
    *,
    label: str,
    log: Path,
    timeout: float,
    result_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: Path | None = None,
    sample_tree: bool = False,
) -> RunResult:
    """Run ``argv`` to completion (or ``timeout``), in its own process group so a timeout
    can stop the whole tree. stderr (and stdout unless ``stdout`` is given) go to ``log``."""
    if result_file is not None:
        result_file.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(log.open("wb"))
        out = stack.enter_context(stdout.open("wb")) if stdout is not None else err
        spawn = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        waited: dict[str, Any] = {}

        def wait() -> None:
            _, status, usage = os.wait4(proc.pid, 0)
            waited["exited"] = time.monotonic()
            waited["status"] = status
            waited["maxrss"] = usage.ru_maxrss * 1024  # KiB on Linux
            finished.set()

        finished = threading.Event()
        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        sampler = None
        peak = [0]
        if sample_tree:
            sampler = threading.Thread(
                target=_sample_tree, args=(proc.pid, finished, peak), daemon=True
            )
            sampler.start()
        try:
            timed_out = not finished.wait(timeout)
        except BaseException:
            # Ctrl-C on the bench: take the measured process (and its JVM) down with it.
            _stop_group(proc.pid, finished)
            raise
        if timed_out:
            _stop_group(proc.pid, finished)
        waiter.join()
        if sampler is not None:
            sampler.join()
        # wait4 reaped it; tell Popen so it does not try again.
        proc.returncode = os.waitstatus_to_exitcode(waited["status"])
        # Whatever the child left behind in its group (a JVM whose driver died) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    marks: dict[str, Any] = {}
    if result_file is not None and result_file.exists():
        with contextlib.suppress(ValueError):
            marks = json.loads(result_file.read_text())
    return RunResult(
        label=label,
        returncode=proc.returncode,
        spawn=spawn,
        exited=waited["exited"],
        maxrss_bytes=int(waited["maxrss"]),
        tree_peak_bytes=peak[0] if sample_tree else None,
        marks=marks,
        log=log,
        timed_out=timed_out,
    )


def _stop_group(pgid: int, finished: threading.Event) -> None:
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        if finished.wait(grace):
            return


def _sample_tree(root: int, finished: threading.Event, peak: list[int]) -> None:
    while not finished.is_set():
        peak[0] = max(peak[0], tree_rss_bytes(root))
        finished.wait(0.1)


def tree_rss_bytes(root: int) -> int:
    """Sum of the resident set sizes of ``root`` and all its descendants (Linux /proc)."""
    total = 0
    todo = [root]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * _PAGE
            # A child can be forked by any thread (the JVM's are), so ask every task.
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", "rb") as children:
                    todo.extend(int(child) for child in children.read().split())
        except (OSError, ValueError, IndexError):
            continue  # exited between listing and reading
    return total
