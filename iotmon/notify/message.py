"""Render a :class:`~iotmon.notify.model.Digest` as an email: the MIME message, its headers.

What the email shows is computed once (:mod:`~iotmon.notify.layout`) and written twice: a
plain-text part (:mod:`~iotmon.notify.text`) and an HTML part whose trend images are inline
PNGs (:mod:`~iotmon.notify.html`, ``multipart/related``), in English or the original
system's Portuguese (:mod:`~iotmon.notify.words`).

Device ids come from the input stream and are untrusted. They never reach a header or the
HTML raw: :func:`iotmon.display.printable` shows control and format characters (CR, LF,
NUL, bidi overrides …) as ``\\xNN``/``\\uNNNN`` escapes and cuts long ids, the HTML gets
every value escaped, and the Subject is encoded here, whole, as RFC 2047 encoded-words
(see :class:`_Subject`): the email package never parses it, so an id that looks like an
encoded-word (``=?utf-8?q?x=0D=0ABcc:...?=``) stays literal text instead of being decoded
into a line break. The HTML is quoted-printable, the text base64 (its sparklines are
multi-byte characters).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, parseaddr
from typing import Final

from iotmon.notify.html import render_html
from iotmon.notify.layout import Layout
from iotmon.notify.model import Digest
from iotmon.notify.policy import EMAIL_POLICY
from iotmon.notify.settings import EmailSettings
from iotmon.notify.text import render_text
from iotmon.notify.words import words_for

__all__ = ["message_id_for", "render_email"]

_DOMAIN: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
# Encoded lines stay below the SMTP policy's 78 columns, so parsing the stored message again
# (for a notifier that asks for the message, or a send that cannot take the stored bytes
# as they are) and sending it never refolds the header, which would decode it first.
_SUBJECT_LINE: Final = 74


class _Subject(str):
    """A Subject the email package stores as it is and writes as we encode it.

    A plain string set as a header goes through the policy's header factory, which decodes
    RFC 2047 encoded-words found in it and may write the decoded CR LF back out raw
    (CVE-2024-6923 and its relatives). A value with a matching ``name`` and a ``fold``
    method skips that parser. The string itself is the readable subject, so
    ``message["Subject"]`` shows it as usual.
    """

    name = "Subject"

    def fold(self, *, policy: Policy) -> str:
        # The whole subject in utf-8 encoded-words: "=?" and "?=" in a device id end up
        # inside our own encoded-word, as literal text.
        header = Header(str(self), charset="utf-8", header_name=self.name)
        encoded = header.encode(linesep=policy.linesep, maxlinelen=_SUBJECT_LINE)
        return f"{self.name}: {encoded}{policy.linesep}"


def message_id_for(digest: Digest, *, mail_from: str) -> str:
    """``<digest_id@domain>``: stable per digest, so receivers can spot a re-send as well."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2]
    if not _DOMAIN.fullmatch(domain):
        domain = "iotmon.invalid"
    return f"<{digest.digest_id}@{domain}>"


def render_email(
    digest: Digest, *, settings: EmailSettings, now: datetime | None = None
) -> EmailMessage:
    """The digest as a multipart/alternative email addressed to its recipients: plain text,
    and HTML with each device's trend as an inline PNG (multipart/related)."""
    words = words_for(settings.lang)
    layout = Layout.of(digest, words, timezone=settings.timezone)
    recipients = digest.recipients or settings.mail_to
    message = EmailMessage(policy=EMAIL_POLICY)
    message["Subject"] = _Subject(words.subject(layout))
    message["From"] = settings.mail_from
    if recipients:
        message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id_for(digest, mail_from=settings.mail_from)
    # RFC 3834: tells auto-responders not to answer, so out-of-office replies cannot loop.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Iotmon-Digest"] = digest.digest_id
    # base64 rather than quoted-printable for the text: its sparklines are multi-byte
    # characters, three times their size as quoted-printable.
    message.set_content(render_text(layout), cte="base64")
    message.add_alternative(render_html(layout), subtype="html", cte="quoted-printable")
    images = [(row.cid, row.trend.png()) for row in layout.rows() if row.cid and row.trend]
    if images:
        html_part = message.get_body(preferencelist=("html",))
        assert isinstance(html_part, EmailMessage)
        for cid, png in images:
            html_part.add_related(
                png, maintype="image", subtype="png", cid=f"<{cid}>", disposition="inline"
            )
        for part in html_part.iter_parts():
            # Only the top level needs one; each image would repeat it.
            del part["MIME-Version"]
    return message
