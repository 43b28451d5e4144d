"""From digests to delivered notifications: render each digest the alerter hands over as
email and as a webhook body per destination, put each in the durable outbox, wake the
delivery task.

:class:`Notifications` is the alerter's :data:`~iotmon.alerts.alerter.DigestSink`. Putting
a digest in the outbox is synchronous and fsynced before the delivery task is woken (never
the other way round), so a checkpoint taken after it finds it queued.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from iotmon.alerts.model import Digest
from iotmon.notify.delivery import DeliveryStats, DeliveryWorker
from iotmon.notify.message import render_email
from iotmon.notify.model import Notification, Notifier
from iotmon.notify.outbox import Outbox
from iotmon.notify.settings import EmailSettings, WebhookSettings

if TYPE_CHECKING:
    from iotmon.notify.webhook import WebhookNotifier

__all__ = ["Notifications"]

log = logging.getLogger(__name__)


class Notifications:
    """``email`` says how digests are rendered (sender, default recipients, language) and
    how hard delivery retries; ``notifier`` delivers them. The outbox lives in
    ``directory`` (``<state_dir>/notifications``). With ``webhooks`` set, each digest is
    also queued once per webhook destination (its rule's own, else the defaults), posted
    after ``hold(digest_id)`` returns (the engine's commit gate)."""

    def __init__(
        self,
        *,
        email: EmailSettings,
        notifier: Notifier,
        directory: Path,
        webhooks: WebhookSettings | None = None,
        hold: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.email = email
        self.webhooks = webhooks if webhooks is not None else WebhookSettings()
        delivery = email.delivery
        self.outbox = Outbox(directory, sent_retention=delivery.sent_retention)
        self._poster: WebhookNotifier | None = None
        if self.webhooks.known or self.webhooks.default or _webhooks_queued(self.outbox):
            # aiohttp is loaded only when a webhook is configured or still queued.
            from iotmon.notify.webhook import WebhookNotifier

            self._poster = WebhookNotifier(self.webhooks)
        self.delivery = DeliveryWorker(
            self.outbox, notifier, settings=delivery, webhooks=self._poster, hold=hold
        )

    def __call__(self, digests: Sequence[Digest]) -> None:
        queued = False
        for digest in digests:
            message = render_email(digest, settings=self.email)
            if self.outbox.put(Notification(message=message, digest=digest)):
                queued = True
                log.info("queued notification %s: %s", digest.digest_id, message["Subject"])
            queued = self._queue_webhooks(digest) or queued
        if queued:
            self.delivery.wake()

    def _queue_webhooks(self, digest: Digest) -> bool:
        settings = self.webhooks
        destinations = settings.ids_for(digest.webhooks)
        if not destinations:
            return False
        from iotmon.notify.webhook_payloads import render_webhook

        body = render_webhook(
            digest, format=settings.format, lang=self.email.lang, timezone=self.email.timezone
        )
        queued = False
        for destination in destinations:
            if self.outbox.put_webhook(digest, destination=destination, body=body):
                queued = True
                log.info(
                    "queued webhook notification %s for destination %s",
                    digest.digest_id,
                    destination,
                )
        return queued

    def __len__(self) -> int:
        """Notifications in the outbox still waiting for delivery."""
        return len(self.outbox)

    async def start(self) -> None:
        """Start delivering; notifications left undelivered by an earlier run go first."""
        await self.delivery.start()

    # Seconds rather than asyncio.timeout(): --flush-timeout maps onto it one to one.
    async def flush(self, timeout: float = 30.0) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` s for the outbox to empty. True when nothing is left to
        wait for: everything was delivered or given up as permanently failed (see
        :meth:`stats`). What is still undelivered stays queued on disk for the next start."""
        return await self.delivery.flush(timeout)

    def stats(self) -> DeliveryStats:
        """Sent / retried / failed counters and the outbox depth, for status and metrics."""
        return self.delivery.stats()

    async def aclose(self) -> None:
        await self.delivery.aclose()
        if self._poster is not None:
            await self._poster.aclose()


def _webhooks_queued(outbox: Outbox) -> bool:
    return any(not entry.is_email for entry in outbox.pending())
