"""Helpers for using iotmon from plain Python and from notebooks.

Inside a running event loop (Jupyter, an async app) await the pipeline directly::

    report = await Pipeline(settings).run_once()

From synchronous code, :func:`run_sync` runs a coroutine to completion, also when the
calling thread already has a running loop (it then uses a private loop in a worker thread,
because one thread cannot run two loops).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, Coroutine
from typing import Any, TypeVar

from iotmon.engine.pipeline import Pipeline
from iotmon.notify import Notifier
from iotmon.report import Report
from iotmon.settings import Settings
from iotmon.sources.base import Source

__all__ = ["run_once_sync", "run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            outcome["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=worker, name="iotmon-run-sync")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def run_once_sync(
    settings: Settings,
    *,
    source: Source | AsyncIterable[bytes | str] | None = None,
    notifier: Notifier | None = None,
) -> Report:
    """Process what the source holds now and return the final report (blocking)."""

    async def once() -> Report:
        async with Pipeline(settings, source=source, notifier=notifier) as pipeline:
            return await pipeline.run_once()

    return run_sync(once())
