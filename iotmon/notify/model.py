"""What a notification is about (:class:`Digest`) and what a notifier receives: a
:class:`Notification` (email) or a :class:`WebhookPost`.

The digest is the structured content; the email is one rendering of it. Both travel
together in a :class:`Notification`, so a custom notifier can post the structured data
somewhere else or forward the email as is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TypeAlias

# Defined with the alerting side, which decides what a digest says; re-exported here.
from iotmon.alerts.model import DeviceReport, Digest, DigestKind, Metric

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


@dataclass(frozen=True, slots=True)
class Notification:
    """What a :data:`Notifier` is handed: the rendered email and the digest it renders."""

    message: EmailMessage
    digest: Digest

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


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
