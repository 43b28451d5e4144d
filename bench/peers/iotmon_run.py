"""Run the real ``iotmon`` command line, recording when readings were processed.

Usage: ``python bench/peers/iotmon_run.py RESULT.json consume --once ...``

Everything after RESULT.json is handed to the ``iotmon`` command's entry point unchanged, so
the bench times the same code path a user runs. The only addition is a wrapper around
``Pipeline.apply`` (once per batch of up to 20,000 readings, so its cost is negligible) that
notes the time of the first and the last batch; the bench needs those to tell start-up from
processing. The bench also runs this file with the interpreter of an older revision's
virtualenv (``--baseline``), so it finds what it wraps by the installed package's entry point
and module names rather than by today's layout.
It also notes the RSS after the last batch (before the final checkpoint and report), which
next to the peak RSS tells the state held from the transient cost of snapshotting it.
At exit the marks go to RESULT.json; times are ``time.monotonic()`` values, comparable
across processes on Linux (CLOCK_MONOTONIC).
"""

from __future__ import annotations

import atexit
import importlib
import itertools
import json
import os
import pkgutil
import sys
import time
from importlib import metadata
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

    pipeline_class = _pipeline_class()
    original_apply = pipeline_class.apply

    def apply(self: Any, batch: Any) -> None:
        original_apply(self, batch)
        now = time.monotonic()
        readings[0] += len(batch.lines)
        if marks["first"] is None:
            marks["first"] = now
            marks["first_count"] = readings[0]
        marks["last"] = now
        marks["rss_last_batch"] = _rss_bytes()

    pipeline_class.apply = apply

    def write() -> None:
        marks["count"] = readings[0]
        marks["exiting"] = time.monotonic()
        with open(result_path, "w", encoding="utf-8") as out:
            json.dump(marks, out)

    atexit.register(write)
    sys.argv = ["iotmon", *args]
    (script,) = metadata.entry_points(group="console_scripts", name="iotmon")
    script.load()()


def _pipeline_class() -> Any:
    """The class whose ``apply`` takes each batch: ``Pipeline`` of ``iotmon.engine.pipeline``
    (``iotmon.pipeline`` before the engine had its package), or of a module named
    ``pipeline`` anywhere in the package."""
    import iotmon

    # Lazily: walking the package imports every subpackage, which would weigh on start-up.
    names = itertools.chain(
        ["iotmon.engine.pipeline", "iotmon.pipeline"],
        (
            found.name
            for found in pkgutil.walk_packages(iotmon.__path__, "iotmon.")
            if found.name.rsplit(".", 1)[-1] == "pipeline"
        ),
    )
    for name in names:
        try:
            cls = getattr(importlib.import_module(name), "Pipeline", None)
        except ImportError:
            continue
        if cls is not None and hasattr(cls, "apply"):
            return cls
    raise SystemExit(
        "bench: this iotmon has no pipeline.Pipeline with an apply method; update "
        "bench/peers/iotmon_run.py to wrap whatever takes each batch now"
    )


if __name__ == "__main__":
    main()
