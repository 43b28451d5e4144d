"""From digests to delivered notifications: render each digest the alerter hands over as
email, put it in the durable outbox, wake the delivery task.

:class:`Notifications` is the alerter's :data:`~iotmon.alerts.alerter.DigestSink`. Putting
a digest in the outbox is synchronous and fsynced before the delivery task is woken (never
the other way round), so a checkpoint taken after it finds it queued.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from iotmon.alerts.model import Digest
from iotmon.notify.delivery import DeliveryStats, DeliveryWorker
from iotmon.notify.message import render_email
from iotmon.notify.model import Notification, Notifier
from iotmon.notify.outbox import Outbox
from iotmon.notify.settings import EmailSettings

__all__ = ["Notifications"]

log = logging.getLogger(__name__)


class Notifications:
    """``email`` says how digests are rendered (sender, default recipients, language) and
    how hard delivery retries; ``notifier`` delivers them. The outbox lives in
    ``directory`` (``<state_dir>/notifications``)."""

    def __init__(self, *, email: EmailSettings, notifier: Notifier, directory: Path) -> None:
        self.email = email
        delivery = email.delivery
        self.outbox = Outbox(directory, sent_retention=delivery.sent_retention)
        self.delivery = DeliveryWorker(self.outbox, notifier, settings=delivery)

    def __call__(self, digests: Sequence[Digest]) -> None:
        queued = False
        for digest in digests:
            message = render_email(digest, settings=self.email)
            if self.outbox.put(Notification(message=message, digest=digest)):
                queued = True
                log.info("queued notification %s: %s", digest.digest_id, message["Subject"])
        if queued:
            self.delivery.wake()

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
