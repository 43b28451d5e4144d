"""What can go wrong while handing a notification over, sorted by what the outbox does next.

Anything that is not a :class:`PermanentDeliveryError` leaves the notification queued and
is retried with backoff, so an exception a custom notifier did not anticipate errs on the
side of delivering late rather than never.
"""

from __future__ import annotations

from iotmon.errors import IotmonError

__all__ = [
    "DeliveryError",
    "DeliverySetupError",
    "PermanentDeliveryError",
    "SmtpAuthenticationError",
    "SmtpSetupError",
    "SmtpTlsRequiredError",
    "TransientDeliveryError",
    "WebhookSetupError",
]


class DeliveryError(IotmonError):
    """Base class of the delivery errors iotmon raises itself."""


class TransientDeliveryError(DeliveryError):
    """Worth trying again later (server down, timeout, 4xx reply): the notification stays queued.

    ``retry_after``: the receiver asked not to be tried again for that many seconds (an
    HTTP ``Retry-After``); the delivery worker waits at least that long, up to its
    ``max_backoff``.
    """

    def __init__(
        self,
        message: str,
        *,
        setting: str | tuple[str, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, setting=setting)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Will fail the same way every time (5xx reply, no recipients): the notification is marked
    failed, kept on disk for inspection, and not retried."""


class DeliverySetupError(TransientDeliveryError):
    """Delivery cannot work until a person changes a setting (or the server).

    Transient on purpose: nothing about the notification itself is wrong, so it stays
    queued for when the setting is fixed and the process restarted, instead of being thrown
    away. The delivery worker logs these as errors, not warnings.
    """


class SmtpSetupError(DeliverySetupError):
    """An SMTP setting (or the server) must change before mail can go out."""


class WebhookSetupError(DeliverySetupError):
    """A webhook setting must change: the destination a queued notification names is no
    longer configured, or the receiver refuses our credentials."""


class SmtpAuthenticationError(SmtpSetupError):
    """The SMTP server refused the login (a 5xx, but the fix is a password on our side)."""


class SmtpTlsRequiredError(SmtpSetupError):
    """A login was configured but the connection is not encrypted, so iotmon did not send
    the password: with ``security="auto"`` the server offered no STARTTLS, which is
    also what an attacker who strips it from the server's reply makes it look like."""
