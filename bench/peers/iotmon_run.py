"""Run the real ``iotmon`` command line, recording when readings were processed.

Usage: ``python bench/peers/iotmon_run.py RESULT.json consume --once ...``

Everything after RESULT.json is handed to ``iotmon.cli.main`` unchanged, so the bench times
the same code path a user runs. The only addition is a wrapper around ``Pipeline.apply``
(once per batch of up to 20,000 readings, so its cost is negligible) that notes the time of
the first and the last batch; the bench needs those to tell start-up from processing.
It also notes the RSS after the last batch (before the final checkpoint and report), which
next to the peak RSS tells the state held from the transient cost of snapshotting it.
At exit the marks go to RESULT.json; times are ``time.monotonic()`` values, comparable
across processes on Linux (CLOCK_MONOTONIC).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


def main() -> None:
    result_path, args = sys.argv[1], sys.argv[2:]
    started = time.monotonic()
    marks: dict[str, Any] = {"started": started, "first": None, "first_count": 0, "last": None}
    readings = [0]

    from iotmon import pipeline

    original_apply = pipeline.Pipeline.apply

    def apply(self: pipeline.Pipeline, batch: Any) -> None:
        original_apply(self, batch)
        now = time.monotonic()
        readings[0] += len(batch.lines)
        if marks["first"] is None:
            marks["first"] = now
            marks["first_count"] = readings[0]
        marks["last"] = now
        marks["rss_last_batch"] = _rss_bytes()

    pipeline.Pipeline.apply = apply  # type: ignore[method-assign]

    def write() -> None:
        marks["count"] = readings[0]
        marks["exiting"] = time.monotonic()
        with open(result_path, "w", encoding="utf-8") as out:
            json.dump(marks, out)

    atexit.register(write)
    sys.argv = ["iotmon", *args]
    from iotmon.cli import main as iotmon_main

    iotmon_main()


if __name__ == "__main__":
    main()
