"""The email policy iotmon builds and parses its messages with: the standard library's
``SMTP`` policy (CRLF line ends, RFC 5322 headers), with header classes made once.

The standard header factory makes a new class each time it makes a header (one
``type(...)`` call per header set or parsed, ~15 µs), and a digest email has over a hundred
headers across its parts. Rendering runs on the data path, where it adds to alert latency.
The classes are the same as the standard ones make, so the messages are too.
"""

from __future__ import annotations

from email.headerregistry import BaseHeader, HeaderRegistry
from email.policy import SMTP
from typing import Final

__all__ = ["EMAIL_POLICY"]


class _HeaderRegistry(HeaderRegistry):
    """:class:`~email.headerregistry.HeaderRegistry` with each header name's class kept."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


EMAIL_POLICY: Final = SMTP.clone(header_factory=_HeaderRegistry())
