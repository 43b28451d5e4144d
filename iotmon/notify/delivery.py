"""The delivery worker: drains the outbox in the background, retrying with backoff.

It runs as its own asyncio task, so a slow or dead SMTP server never stalls the stream
consumer; the consumer only writes to the outbox (durably) and calls :meth:`wake`.
Each destination (email, every webhook) is drained on its own, concurrently, oldest entry
first, so an SMTP outage does not hold back a webhook, nor the reverse. A failure that is
not permanent schedules that entry again after an exponential, jittered backoff — longer if
the receiver asked for it (``Retry-After``: ``retry_after`` on the error, honoured up to
``max_backoff``); a :class:`~iotmon.notify.errors.PermanentDeliveryError` moves it to
``failed/``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from iotmon.aio import stop_task
from iotmon.notify.errors import (
    DeliverySetupError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from iotmon.notify.model import Notifier, WebhookPoster
from iotmon.notify.outbox import Outbox, OutboxEntry
from iotmon.notify.settings import DeliverySettings

__all__ = ["DeliveryStats", "DeliveryWorker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryStats:
    """Counters of this process's delivery task, plus the outbox depth, at one moment."""

    sent: int = 0
    retried: int = 0
    """Attempts that failed and were scheduled again."""
    failed: int = 0
    """Notifications given up on (permanent errors)."""
    queued: int = 0
    """Notifications in the outbox waiting for delivery (from earlier runs too)."""
    last_error: str | None = None
    """The latest delivery error, cleared by the next successful delivery."""


class DeliveryWorker:
    def __init__(
        self,
        outbox: Outbox,
        notifier: Notifier,
        *,
        settings: DeliverySettings | None = None,
        rng: random.Random | None = None,
        webhooks: WebhookPoster | None = None,
        hold: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """``notifier`` delivers email entries, ``webhooks`` webhook entries. ``hold`` is
        awaited with the digest id before a webhook post (the engine's commit gate; email
        goes through it as ``notifier``)."""
        self.outbox = outbox
        self.notifier = notifier
        self.webhooks = webhooks
        self._hold = hold
        self.settings = settings or DeliverySettings()
        self._sent = 0
        self._retried = 0
        self._failed = 0
        self._last_error: str | None = None
        self._rng = rng or random.Random()
        self._attempts: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def stats(self) -> DeliveryStats:
        return DeliveryStats(
            sent=self._sent,
            retried=self._retried,
            failed=self._failed,
            queued=len(self.outbox),
            last_error=self._last_error,
        )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="iotmon-delivery")

    def wake(self) -> None:
        """Something was queued: look at the outbox now. Cheap, callable from sync code."""
        self._wakeup.set()

    # A plain number rather than asyncio.timeout(): it maps one to one onto --flush-timeout.
    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds until nothing is pending; True if nothing is.

        Backoff still applies: a notification that keeps failing is retried on its schedule
        within the timeout and stays queued after it.
        """
        if not len(self.outbox):
            return True
        if self._task is None:
            await self.start()
        self.wake()
        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(lambda: not len(self.outbox))
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # One drain task per destination with due entries: a destination that hangs until
        # its timeout delays only its own entries.
        drains: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                self._wakeup.clear()
                now = loop.time()
                for entry in self.outbox.pending():
                    destination = entry.destination
                    if destination in drains or self._retry_at.get(entry.entry_id, 0.0) > now:
                        continue
                    drains[destination] = asyncio.create_task(
                        self._drain(destination), name=f"iotmon-delivery-{destination}"
                    )
                idle = [e for e in self.outbox.pending() if e.destination not in drains]
                next_at = min((self._retry_at.get(e.entry_id, 0.0) for e in idle), default=None)
                delay = None if next_at is None else max(0.0, next_at - loop.time())
                wakeup = asyncio.ensure_future(self._wakeup.wait())
                try:
                    await asyncio.wait(
                        [wakeup, *drains.values()],
                        timeout=delay,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    wakeup.cancel()
                failed = False
                for destination, task in list(drains.items()):
                    if task.done():
                        del drains[destination]
                        if isinstance(task.exception(), OSError):
                            failed = True
                            # The outbox itself failed (disk full, permissions). Keep the
                            # task alive: dying would silently stop every later notification.
                            log.error(
                                "outbox bookkeeping failed; trying again shortly",
                                exc_info=task.exception(),
                            )
                async with self._progress:
                    self._progress.notify_all()
                if failed:
                    await asyncio.sleep(self.settings.initial_backoff)
        finally:
            for task in drains.values():
                task.cancel()
            await asyncio.gather(*drains.values(), return_exceptions=True)

    async def _drain(self, destination: str) -> None:
        """One destination's due entries, in queue order."""
        now = asyncio.get_running_loop().time()
        for entry in self.outbox.pending():
            if entry.destination == destination and self._retry_at.get(entry.entry_id, 0.0) <= now:
                await self._attempt(entry)

    async def _deliver(self, entry: OutboxEntry) -> None:
        if entry.is_email:
            await self.notifier(entry.notification())
            return
        if self.webhooks is None:
            raise DeliverySetupError(
                f"notification {entry.entry_id} is for a webhook, and no webhook is "
                "configured; set `webhook_url` again, or move the entry out of the "
                "outbox's pending/ folder",
                setting="webhook_url",
            )
        if self._hold is not None:
            await self._hold(entry.digest_id)
        await self.webhooks(entry.webhook_post())

    async def _attempt(self, entry: OutboxEntry) -> None:
        digest_id = entry.entry_id
        try:
            async with asyncio.timeout(self.settings.attempt_timeout):
                await self._deliver(entry)
        except PermanentDeliveryError as exc:
            self.outbox.mark_failed(digest_id, str(exc))
            self._forget(digest_id)
            self._failed += 1
            self._last_error = str(exc)
            log.error(
                "notification %s failed permanently and will not be retried (kept in %s): %s",
                digest_id,
                self.outbox.directory / "failed",
                exc,
            )
        except Exception as exc:
            attempts = self._attempts.get(digest_id, 0) + 1
            self._attempts[digest_id] = attempts
            delay = self._backoff(attempts)
            if isinstance(exc, TransientDeliveryError) and exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, self.settings.max_backoff))
            self._retry_at[digest_id] = asyncio.get_running_loop().time() + delay
            self._retried += 1
            self._last_error = str(exc) or type(exc).__name__
            # A wrong password or a missing TLS needs a person; the rest usually heals itself.
            level = logging.ERROR if isinstance(exc, DeliverySetupError) else logging.WARNING
            log.log(
                level,
                "notification %s not delivered (attempt %d), retrying in %.1f s: %s",
                digest_id,
                attempts,
                delay,
                self._last_error,
            )
        else:
            self.outbox.mark_sent(digest_id)
            self._forget(digest_id)
            self._sent += 1
            self._last_error = None

    def _backoff(self, attempts: int) -> float:
        settings = self.settings
        base: float = min(
            settings.max_backoff, settings.initial_backoff * 2.0 ** min(attempts - 1, 60)
        )
        return base * (1.0 - settings.jitter * self._rng.random())

    def _forget(self, digest_id: str) -> None:
        self._attempts.pop(digest_id, None)
        self._retry_at.pop(digest_id, None)
