"""Post queued digests to webhook receivers with aiohttp, sorting answers into retry or give up.

Delivered: any 2xx. Retried (:class:`TransientDeliveryError`): 408, 429 and 5xx answers,
connection errors and timeouts; a ``Retry-After`` (seconds or an HTTP date) becomes the
error's ``retry_after``, which the delivery worker honours. Given up
(:class:`PermanentDeliveryError`, the entry goes to ``failed/``): any other 4xx, and
redirects (not followed: the body would go somewhere the operator did not name).

Every request carries ``Idempotency-Key: <entry id>`` — the same on every attempt of an
entry, after a restart too — so a receiver that deduplicates drops the resend after a
crash between its 2xx and the outbox's bookkeeping. The URL is a secret: errors and logs
name the destination by id and scheme://host only, and exceptions from aiohttp (whose text
may include the URL) are never shown whole.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import TYPE_CHECKING, Final

import aiohttp

from iotmon._version import __version__
from iotmon.display import printable
from iotmon.notify.errors import PermanentDeliveryError, TransientDeliveryError, WebhookSetupError
from iotmon.notify.model import WebhookPost
from iotmon.notify.settings import WebhookSettings

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["WebhookNotifier", "retry_after_seconds"]

_RETRIED: Final = frozenset({408, 429})
_BODY_SHOWN: Final = 200


class WebhookNotifier:
    """A :data:`~iotmon.notify.model.WebhookPoster` over one aiohttp session (made on first
    use, in the running loop; :meth:`aclose` closes it)."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.settings!r})"

    async def __call__(self, post: WebhookPost) -> None:
        destination = self.settings.destination(post.destination)
        if destination is None:
            raise WebhookSetupError(
                f"webhook destination {post.destination} of notification {post.entry_id} is "
                "no longer configured (a `webhook_url` or an override's webhooks was removed); "
                "configure it again, or move the entry out of the outbox's pending/ folder",
                setting="webhook_url",
            )
        where = f"webhook {destination.shown} ({destination.id})"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": post.entry_id,
            "X-Iotmon-Digest": post.digest.digest_id,
            "User-Agent": f"iotmon/{__version__}",
        }
        try:
            async with (
                asyncio.timeout(self.settings.timeout),
                self._client().post(
                    destination.url, data=post.body, headers=headers, allow_redirects=False
                ) as response,
            ):
                status = response.status
                if 200 <= status < 300:
                    return
                head = await response.content.read(_BODY_SHOWN)
                detail = printable(head.decode(errors="replace"))
                retry_after = retry_after_seconds(response.headers)
        except TimeoutError as exc:
            raise TransientDeliveryError(
                f"{where} did not answer within {self.settings.timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            # Not str(exc): some aiohttp errors quote the URL, token and all.
            cause = getattr(exc, "os_error", None)
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else ""
            raise TransientDeliveryError(
                f"cannot deliver to {where}: {type(exc).__name__}"
                + (f" ({reason})" if reason else "")
            ) from None
        text = f"{where} answered {status}" + (f": {detail}" if detail else "")
        if status in _RETRIED or status >= 500:
            raise TransientDeliveryError(text, retry_after=retry_after)
        if 300 <= status < 400:
            raise PermanentDeliveryError(
                f"{text} (a redirect, not followed: set the URL it points to)",
                setting="webhook_url",
            )
        raise PermanentDeliveryError(text, setting="webhook_url")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The ``Retry-After`` header in seconds from now (RFC 9110: a number of seconds or an
    HTTP date); None when absent or unreadable."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
