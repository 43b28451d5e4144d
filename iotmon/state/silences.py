"""Silences of a file-input consumer: ``silences.json`` in its state directory.

`iotmon silence add` must work while the consumer runs, and the consumer holds the state
directory's lock for its whole run, so silences do not take that lock: writers replace the
file atomically (temporary file, fsync, rename) and serialise among themselves on a lock
file of their own; the consumer only reads, re-reading the file when it changes (polled
about once a second, so a silence reaches it within seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import orjson

from iotmon.aio import stop_task
from iotmon.alerts.silences import (
    Clock,
    Silence,
    SilenceError,
    Silences,
    ended_ids,
    find,
)
from iotmon.state.statedir import StagedFile

__all__ = ["FILENAME", "POLL_SECONDS", "FileSilenceStore", "FileSilenceWatch"]

log = logging.getLogger(__name__)

FILENAME: Final = "silences.json"
POLL_SECONDS: Final = 1.0
_FORMAT: Final = "iotmon-silences"
_VERSION: Final = 1


class FileSilenceStore:
    """The silences of the state directory ``root``."""

    def __init__(self, root: Path, *, clock: Clock) -> None:
        self.root = root
        self.path = root / FILENAME
        self._clock = clock

    async def read(self) -> list[Silence]:
        return self.load()

    def load(self) -> list[Silence]:
        try:
            payload = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            doc = orjson.loads(payload)
            if doc.get("format") != _FORMAT or doc.get("version") != _VERSION:
                raise ValueError(f"not a version {_VERSION} {_FORMAT} document")
            return [Silence.from_json(entry) for entry in doc["silences"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SilenceError(
                f"{self.path} cannot be read ({exc}); fix or delete it (it only holds "
                "silences: `iotmon silence add` them again)",
                setting="state_dir",
            ) from None

    async def add(self, silence: Silence) -> None:
        with self._writing() as silences:
            silences.append(silence)

    async def expire(self, silence_id: str) -> Silence:
        with self._writing() as silences:
            found = find(silences, silence_id)
            silences.remove(found)
        return found

    @contextlib.contextmanager
    def _writing(self) -> Iterator[list[Silence]]:
        # A silence may come before the consumer's first start.
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f".{FILENAME}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # Writers only (two `silence add` at once must not lose one); the consumer never
            # takes it, and the state directory's own lock is not involved.
            fcntl.flock(fd, fcntl.LOCK_EX)
            silences = self.load()
            yield silences
            ended = set(ended_ids(silences, self._clock()))
            kept = [s.to_json() for s in silences if s.id not in ended]
            doc = {"format": _FORMAT, "version": _VERSION, "silences": kept}
            tmp = self.path.with_name(f".{FILENAME}.tmp")
            tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
            StagedFile(tmp, self.path).commit()
        finally:
            os.close(fd)


class FileSilenceWatch:
    """Keeps :attr:`silences` equal to the file's content, re-reading it when it changes."""

    def __init__(
        self, root: Path, *, silences: Silences, poll_seconds: float = POLL_SECONDS
    ) -> None:
        self.silences = silences
        self._store = FileSilenceStore(root, clock=silences.clock)
        self._poll = poll_seconds
        self._seen: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.refresh()
        self._task = asyncio.create_task(self._follow(), name="iotmon-silences")

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when it did."""
        try:
            st = os.stat(self._store.path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = (0, 0, 0)
        if seen == self._seen:
            return False
        try:
            self.silences.replace(self._store.load())
        except SilenceError as exc:
            # The consumer goes on with the silences it had: a broken file must not stop
            # monitoring, nor silently lift every silence.
            log.error("%s; keeping the silences read before", exc)
        self._seen = seen
        return True

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            self.refresh()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
