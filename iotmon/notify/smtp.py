"""Deliver notifications over SMTP with aiosmtplib, sorting failures into retry or give up.

Retried (:class:`TransientDeliveryError`): refused or dropped connections, timeouts, TLS
handshake failures, 4xx replies, a refused login (:class:`SmtpAuthenticationError`) and a
login iotmon will not make over an unencrypted connection (:class:`SmtpTlsRequiredError`:
``auto`` mode and no STARTTLS offered; only ``none`` sends a password in clear text). Those
two need a person, and their messages say what to fix. Given up
(:class:`PermanentDeliveryError`): any other 5xx reply, or a notification with no
recipients. When the server accepts some recipients
and refuses others, the message counts as delivered — retrying would send it twice to the
ones that got it — and the refusals are logged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from email.utils import getaddresses, parseaddr

import aiosmtplib

from iotmon.notify.errors import (
    PermanentDeliveryError,
    SmtpAuthenticationError,
    SmtpTlsRequiredError,
    TransientDeliveryError,
)
from iotmon.notify.model import Notification
from iotmon.notify.settings import PASSWORD_ENV, SmtpSettings

__all__ = ["SmtpNotifier"]

log = logging.getLogger(__name__)


class SmtpNotifier:
    """A :data:`~iotmon.notify.model.Notifier` that sends each notification in its own
    SMTP session (digests are rare; a kept-open connection would mostly be a stale one)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._tls_context = _tls_context(settings)
        if settings.security == "none" and settings.user is not None:
            log.warning(
                "`smtp_security` none: the SMTP password for %r goes over the network in "
                "clear text; use starttls or ssl unless the server is on a trusted link",
                settings.user,
            )

    def __repr__(self) -> str:
        return f"SmtpNotifier({self.settings!r})"

    async def __call__(self, notification: Notification) -> None:
        settings = self.settings
        headers = notification.headers
        sender = parseaddr(str(headers.get("From", "")))[1]
        recipients = [
            address
            for _, address in getaddresses([str(v) for v in headers.get_all("To", [])])
            if address
        ]
        if not recipients:
            raise PermanentDeliveryError(
                f"notification {notification.message_id} has no recipients: set `mail_to` "
                "(or recipients in the matching override)",
                setting="mail_to",
            )
        security = settings.security
        where = f"{settings.host}:{settings.port or 'default port'}"
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=security == "ssl",
            start_tls={"auto": None, "none": False, "starttls": True, "ssl": False}[security],
            validate_certs=settings.verify_tls,
            tls_context=self._tls_context,
            timeout=settings.timeout,
        )
        try:
            async with asyncio.timeout(settings.timeout), client:
                # Connected, and upgraded if the mode asks for it or (auto) the server offers
                # it. The login comes after, so the password can be withheld on a plain line.
                if settings.user is not None:
                    if client.get_transport_info("sslcontext") is None and security != "none":
                        raise SmtpTlsRequiredError(
                            f"SMTP server {where} offers no STARTTLS, so logging in as "
                            f"{settings.user!r} would send the password in clear text (an "
                            "attacker on the path can hide STARTTLS, too); nothing was sent. "
                            "Enable TLS on the server, use `smtp_security` ssl (port 465), or "
                            "accept clear text with `smtp_security` none; the notification "
                            "stays queued",
                            setting="smtp_security",
                        )
                    await client.login(settings.user, settings.password or "")
                errors = await _send(client, notification, sender, recipients)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SmtpAuthenticationError(
                f"SMTP server {where} refused the login for user {settings.user!r} "
                f"({exc.code} {exc.message}): check `smtp_user` and set the password in "
                f"{PASSWORD_ENV} or `smtp_password_file`; the notification stays queued",
                setting=("smtp_user", "smtp_password_file"),
            ) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if all(400 <= code < 500 for code in codes):
                raise TransientDeliveryError(
                    f"SMTP server {where} deferred every recipient: {detail}"
                ) from exc
            raise PermanentDeliveryError(
                f"SMTP server {where} refused every recipient: {detail}"
            ) from exc
        except aiosmtplib.SMTPConnectResponseError as exc:
            # A refusing greeting (421, 554 "no service here") says nothing about this
            # notification; keep it for when the server (or the setting) is fixed.
            raise TransientDeliveryError(
                f"SMTP server {where} refused the connection: {exc.code} {exc.message}"
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            text = f"SMTP server {where} replied {exc.code} {exc.message}"
            if 500 <= exc.code < 600:
                raise PermanentDeliveryError(text) from exc
            raise TransientDeliveryError(text) from exc
        except aiosmtplib.SMTPNotSupported as exc:
            # e.g. --smtp-security starttls against a server without STARTTLS: a setting
            # to fix, after which the queued notification should still go out.
            raise TransientDeliveryError(f"SMTP server {where}: {exc.message}") from exc
        except TimeoutError as exc:
            raise TransientDeliveryError(
                f"SMTP server {where} did not answer within {settings.timeout:g} s "
                "(a slow or unreachable server; raise `smtp_timeout` if it is just slow)",
                setting="smtp_timeout",
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientDeliveryError(
                f"cannot deliver to SMTP server {where}: {type(exc).__name__}: {exc}"
            ) from exc
        for recipient, response in errors.items():
            log.warning(
                "SMTP server %s refused recipient %s of %s: %s %s",
                where,
                recipient,
                notification.message_id,
                response.code,
                response.message,
            )


async def _send(
    client: aiosmtplib.SMTP, notification: Notification, sender: str, recipients: list[str]
) -> dict[str, aiosmtplib.SMTPResponse]:
    """Send the stored bytes as they are where ``send_message`` would send the same (it
    parses nothing, so a digest email goes out milliseconds sooner): all ASCII, so neither
    SMTPUTF8 nor a 7-bit re-encoding applies, and no Bcc to strip. Otherwise, and for a
    notification not read from the outbox, ``send_message``."""
    raw = notification.raw
    headers = notification.headers
    if (
        raw is None
        or not raw.isascii()
        or not (sender + "".join(recipients)).isascii()
        or "Bcc" in headers
        or "Resent-Bcc" in headers
    ):
        errors, _ = await client.send_message(
            notification.message, sender=sender, recipients=recipients
        )
        return errors
    # All ASCII, so 7-bit: no BODY=8BITMIME to declare.
    errors, _ = await client.sendmail(sender, recipients, raw)
    return errors


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    if settings.ca_file is None:
        return None
    context = ssl.create_default_context(cafile=str(settings.ca_file))
    if not settings.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
