"""What a notification is about (:class:`Digest`) and what a notifier receives: a
:class:`Notification` (email) or a :class:`WebhookPost`.

The digest is the structured content; the email is one rendering of it. Both travel
together in a :class:`Notification`, so a custom notifier can post the structured data
somewhere else or forward the email as is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from typing import TypeAlias

# Defined with the alerting side, which decides what a digest says; re-exported here.
from iotmon.alerts.model import DeviceReport, Digest, DigestKind, Metric
from iotmon.notify.policy import EMAIL_POLICY

__all__ = [
    "DeviceReport",
    "Digest",
    "DigestKind",
    "Metric",
    "Notification",
    "Notifier",
    "WebhookPost",
    "WebhookPoster",
]


class Notification:
    """What a :data:`Notifier` is handed: the rendered email and the digest it renders.

    One read back from the outbox also has the email's bytes as stored (``raw``): what goes
    out, byte for byte. Its :attr:`message` is then parsed only if asked for, and
    :attr:`headers` parses the headers alone: parsing a digest email whole takes
    milliseconds, on the data path, and sending it needs its addresses only.
    """

    __slots__ = ("_headers", "_message", "digest", "raw")

    def __init__(
        self, *, digest: Digest, message: EmailMessage | None = None, raw: bytes | None = None
    ) -> None:
        if message is None and raw is None:
            raise ValueError("a Notification needs its message or its raw bytes")
        self.digest = digest
        self.raw = raw
        self._message = message
        self._headers: Message | None = None

    def __repr__(self) -> str:
        return f"Notification(digest_id={self.digest.digest_id!r}, raw={self.raw is not None})"

    @property
    def message(self) -> EmailMessage:
        """The email (parsed from ``raw`` the first time it is asked for)."""
        if self._message is None:
            assert self.raw is not None
            parsed = BytesParser(policy=EMAIL_POLICY).parsebytes(self.raw)
            assert isinstance(parsed, EmailMessage)
            self._message = parsed
        return self._message

    @property
    def headers(self) -> Message:
        """The email's headers (the message itself once it is parsed)."""
        if self._message is not None:
            return self._message
        if self._headers is None:
            assert self.raw is not None
            self._headers = BytesHeaderParser(policy=EMAIL_POLICY).parsebytes(self.raw)
        return self._headers

    @property
    def message_id(self) -> str:
        return str(self.headers["Message-ID"])

    def as_bytes(self) -> bytes:
        """The email as it goes out: ``raw`` when known, else rendered from :attr:`message`."""
        return self.raw if self.raw is not None else self.message.as_bytes()


Notifier: TypeAlias = Callable[[Notification], Awaitable[None]]
"""Delivers one notification. Return normally once it is delivered; raise
:class:`~iotmon.notify.errors.PermanentDeliveryError` to give up on it, anything else to
have it retried later. It may be called again for the same notification after a crash, so
a notifier that can deduplicate should use :attr:`Notification.message_id`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookPost:
    """What a :data:`WebhookPoster` is handed: one digest's body for one destination."""

    entry_id: str
    """The outbox entry's id, derived from the digest and the destination: the same on
    every attempt, so it is the ``Idempotency-Key`` receivers deduplicate by."""
    destination: str
    """The destination's id (:func:`iotmon.addresses.webhook_id`), never its URL."""
    digest: Digest
    body: bytes
    """The rendered JSON, exactly as queued."""


WebhookPoster: TypeAlias = Callable[[WebhookPost], Awaitable[None]]
"""Delivers one webhook post; raises like a :data:`Notifier`."""
