"""The demo's own mailbox: a local SMTP server (or the .eml outbox) feeding an inbox.

Every email the demo prints really went over SMTP: aiosmtpd's protocol is served on the demo's
event loop on 127.0.0.1 (port 0), and each message it accepts lands in an :class:`Inbox`,
which tells the demo (``on_email``) as it arrives.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from iotmon.notify import EmlNotifier, Notification

__all__ = ["Inbox", "ReceivedEmail", "RecordingEml", "start_smtp_server"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedEmail:
    """One email as the demo's SMTP server (or its outbox) received it."""

    subject: str
    body: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    after_s: float
    """Wall seconds from the start of the stream to its arrival."""


class Inbox:
    def __init__(self, on_email: Callable[[ReceivedEmail], None] | None) -> None:
        self.emails: list[ReceivedEmail] = []
        self.started = time.monotonic()
        self._on_email = on_email

    def add(self, message: EmailMessage, *, mail_from: str, rcpt_tos: tuple[str, ...]) -> None:
        body_part = message.get_body(preferencelist=("plain",))
        body = body_part.get_content() if isinstance(body_part, EmailMessage) else ""
        received = ReceivedEmail(
            subject=str(message.get("Subject", "")),
            body=body.rstrip("\n"),
            mail_from=mail_from,
            rcpt_tos=rcpt_tos,
            after_s=time.monotonic() - self.started,
        )
        self.emails.append(received)
        if self._on_email is not None:
            self._on_email(received)


class _SmtpHandler:
    """aiosmtpd handler: accept every message and hand it to the inbox."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._inbox.add(
            message, mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos)
        )
        return "250 OK: received by the iotmon demo"


async def start_smtp_server(inbox: Inbox) -> asyncio.Server:
    # aiosmtpd's SMTP protocol served on this loop (what its Controller does in a thread):
    # no thread, no port race (port 0), and emails reach the inbox on the demo's own loop.
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    handler = _SmtpHandler(inbox)
    # Quiet: aiosmtpd logs every connection at INFO.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return await loop.create_server(
        lambda: SMTP(handler, hostname="iotmon-demo", enable_SMTPUTF8=True, loop=loop),
        host="127.0.0.1",
        port=0,
    )


class RecordingEml:
    """The .eml channel, plus a copy of each written email for the demo's inbox."""

    def __init__(self, eml: EmlNotifier, inbox: Inbox) -> None:
        self._eml = eml
        self._inbox = inbox

    async def __call__(self, notification: Notification) -> None:
        await self._eml(notification)
        message = notification.message
        self._inbox.add(
            message,
            mail_from=str(message.get("From", "")),
            rcpt_tos=tuple(str(message.get("To", "")).split(", ")),
        )
