"""An in-process SMTP server (aiosmtpd, 127.0.0.1) that notes when each alert arrived.

It runs on its own thread and event loop, so the moment a message is accepted is not
delayed by the producer sharing the bench's loop. Every ``bench-alert-NNNNN`` /
``bench-warmup-N`` token found in a message's text is stamped with ``time.monotonic()``
the first time it appears (later digests or polls that repeat it do not count).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["TOKEN", "SmtpSink"]

TOKEN = re.compile(r"bench-(?:alert-\d{5}|warmup-\d+)")


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        accepted = time.monotonic()
        self._sink._record(accepted, _text_of(envelope.content))
        return "250 OK: queued"


def _text_of(content: bytes) -> str:
    message = email.message_from_bytes(content, policy=email.policy.default)
    parts = [str(message.get("Subject", ""))]
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            parts.append(part.get_content())
    return "\n".join(parts)


class _EphemeralPortController(Controller):
    """Binds port 0 and learns the real port (no free-port race)."""

    def _trigger_server(self) -> None:
        if self.port == 0:
            assert isinstance(self.server, asyncio.Server)
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpSink:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.messages = 0
        self._lock = threading.Lock()
        self._controller = _EphemeralPortController(
            _Handler(self),
            hostname="127.0.0.1",
            port=0,
            server_hostname="bench-smtp",  # no socket.getfqdn(): slow DNS in sandboxes
            ready_timeout=10.0,
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def _record(self, at: float, text: str) -> None:
        with self._lock:
            self.messages += 1
            for token in TOKEN.findall(text):
                self.arrivals.setdefault(token, at)

    def arrived(self, token: str) -> float | None:
        with self._lock:
            return self.arrivals.get(token)

    async def wait_for(self, tokens: list[str], *, within: float) -> bool:
        """True once every token has arrived; False after ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self._lock:
                if all(t in self.arrivals for t in tokens):
                    return True
            await asyncio.sleep(0.02)
        return False
