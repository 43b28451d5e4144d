"""Write notifications as ``.eml`` files, for runs without an SMTP server.

Any mail client opens them. The file name is derived from the digest, and an existing file
is left alone, so delivering the same notification twice writes one file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from iotmon.notify.model import Notification

__all__ = ["EmlNotifier"]

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EmlNotifier:
    """A :data:`~iotmon.notify.model.Notifier` writing ``<slot time>-<digest id>.eml`` files
    into ``directory`` and reporting each with a one-line summary (to the log, and to
    ``echo`` when given, e.g. a function printing to stderr)."""

    def __init__(self, directory: Path, *, echo: Callable[[str], None] | None = None) -> None:
        self.directory = directory
        self._echo = echo

    def __repr__(self) -> str:
        return f"EmlNotifier({str(self.directory)!r})"

    async def __call__(self, notification: Notification) -> None:
        digest = notification.digest
        slot = (_EPOCH + timedelta(microseconds=digest.slot_us)).strftime("%Y%m%dT%H%M%SZ")
        path = self.directory / f"{slot}-{digest.digest_id}.eml"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(notification.as_bytes())
            os.replace(tmp, path)
        subject = str(notification.headers["Subject"])
        summary = f"notification written to {path}: {subject}"
        log.info("%s", summary)
        if self._echo is not None:
            self._echo(summary)
