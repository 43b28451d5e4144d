"""What can go wrong while handing a notification over, sorted by what the outbox does next.

Anything that is not a :class:`PermanentDeliveryError` leaves the notification queued and
is retried with backoff, so an exception a custom notifier did not anticipate errs on the
side of delivering late rather than never.
"""

from __future__ import annotations

__all__ = [
    "DeliveryError",
    "PermanentDeliveryError",
    "SmtpAuthenticationError",
    "TransientDeliveryError",
]


class DeliveryError(Exception):
    """Base class of the delivery errors iotmon raises itself."""


class TransientDeliveryError(DeliveryError):
    """Worth trying again later (server down, timeout, 4xx reply): the notification stays queued."""


class PermanentDeliveryError(DeliveryError):
    """Will fail the same way every time (5xx reply, no recipients): the notification is marked
    failed, kept on disk for inspection, and not retried."""


class SmtpAuthenticationError(TransientDeliveryError):
    """The SMTP server refused the login.

    Transient on purpose: the server said 5xx, but the fix is on our side (a password set
    in the environment and a restart), and nothing about the notification itself is wrong,
    so it stays queued instead of being thrown away.
    """
