"""Notifications: render alert digests as email, queue them durably, deliver them.

- :mod:`~iotmon.notify.model` — :class:`Notification` (a digest + its rendered email) and
  the :data:`Notifier` type any channel implements; the :class:`Digest` itself (what to
  tell) is the alerting side's (:mod:`iotmon.alerts.model`).
- :mod:`~iotmon.notify.notifications` — :class:`Notifications`: digests in, rendered,
  queued and delivered.
- :mod:`~iotmon.notify.message` — rendering (English or the original's Portuguese), from
  :mod:`~iotmon.notify.layout` by :mod:`~iotmon.notify.text`, :mod:`~iotmon.notify.html`
  and :mod:`~iotmon.notify.words`.
- :mod:`~iotmon.notify.outbox` — the durable queue in the state directory.
- :mod:`~iotmon.notify.delivery` — the background worker that retries with backoff.
- :mod:`~iotmon.notify.smtp` / :mod:`~iotmon.notify.eml` — the two built-in email channels.
- :mod:`~iotmon.notify.webhook` — webhook receivers (aiohttp), with bodies from
  :mod:`~iotmon.notify.webhook_payloads` (iotmon's JSON, Slack, Teams).
- :mod:`~iotmon.notify.errors` — what a notifier raises to get a retry or give up.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iotmon.notify.delivery import DeliveryStats, DeliveryWorker
from iotmon.notify.eml import EmlNotifier
from iotmon.notify.errors import (
    DeliveryError,
    DeliverySetupError,
    PermanentDeliveryError,
    SmtpAuthenticationError,
    SmtpSetupError,
    SmtpTlsRequiredError,
    TransientDeliveryError,
    WebhookSetupError,
)
from iotmon.notify.message import message_id_for, render_email
from iotmon.notify.model import (
    DeviceReport,
    Digest,
    DigestKind,
    Metric,
    Notification,
    Notifier,
    WebhookPost,
    WebhookPoster,
)
from iotmon.notify.notifications import Notifications
from iotmon.notify.outbox import Outbox, OutboxEntry, OutboxError
from iotmon.notify.settings import (
    DEFAULT_TIMEZONE,
    LANGUAGES,
    PASSWORD_ENV,
    SMTP_SECURITIES,
    WEBHOOK_FORMATS,
    DeliverySettings,
    EmailSettings,
    Language,
    SmtpSecurity,
    SmtpSettings,
    WebhookDestination,
    WebhookFormat,
    WebhookSettings,
    read_smtp_password,
    resolve_webhook,
)

if TYPE_CHECKING:
    from iotmon.notify.smtp import SmtpNotifier
    from iotmon.notify.webhook import WebhookNotifier


def __getattr__(name: str) -> Any:
    # aiosmtplib is loaded only when SMTP is used, aiohttp only with webhooks.
    if name == "SmtpNotifier":
        from iotmon.notify.smtp import SmtpNotifier

        return SmtpNotifier
    if name == "WebhookNotifier":
        from iotmon.notify.webhook import WebhookNotifier

        return WebhookNotifier
    raise AttributeError(f"module 'iotmon.notify' has no attribute {name!r}")


__all__ = [
    "DEFAULT_TIMEZONE",
    "LANGUAGES",
    "PASSWORD_ENV",
    "SMTP_SECURITIES",
    "WEBHOOK_FORMATS",
    "DeliveryError",
    "DeliverySettings",
    "DeliverySetupError",
    "DeliveryStats",
    "DeliveryWorker",
    "DeviceReport",
    "Digest",
    "DigestKind",
    "EmailSettings",
    "EmlNotifier",
    "Language",
    "Metric",
    "Notification",
    "Notifications",
    "Notifier",
    "Outbox",
    "OutboxEntry",
    "OutboxError",
    "PermanentDeliveryError",
    "SmtpAuthenticationError",
    "SmtpNotifier",
    "SmtpSecurity",
    "SmtpSettings",
    "SmtpSetupError",
    "SmtpTlsRequiredError",
    "TransientDeliveryError",
    "WebhookDestination",
    "WebhookFormat",
    "WebhookNotifier",
    "WebhookPost",
    "WebhookPoster",
    "WebhookSettings",
    "WebhookSetupError",
    "build_notifier",
    "message_id_for",
    "read_smtp_password",
    "render_email",
    "resolve_webhook",
]


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def build_notifier(
    settings: EmailSettings, *, echo: Callable[[str], None] | None = _to_stderr
) -> Notifier:
    """The channel the settings describe: SMTP when ``smtp`` is set, else ``.eml`` files in
    ``eml_dir`` with a one-line summary per notification passed to ``echo`` (stderr by
    default; None for the log only)."""
    if settings.smtp is not None:
        from iotmon.notify.smtp import SmtpNotifier

        return SmtpNotifier(settings.smtp)
    return EmlNotifier(settings.eml_dir, echo=echo)
