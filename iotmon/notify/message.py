"""Render a :class:`~iotmon.notify.model.Digest` as an email: plain text plus an HTML table.

Device ids come from the input stream and are untrusted. They never reach a header or the
HTML raw: :func:`iotmon.display.printable` shows control and format characters (CR, LF,
NUL, bidi overrides …) as ``\\xNN``/``\\uNNNN`` escapes and cuts long ids, the HTML gets
every value escaped, and the Subject is encoded here, whole, as RFC 2047 encoded-words
(see :class:`_Subject`): the email package never parses it, so an id that looks like an
encoded-word (``=?utf-8?q?x=0D=0ABcc:...?=``) stays literal text instead of being decoded
into a line break. The body is quoted-printable.

``pt-BR`` keeps the wording of the system iotmon replaces (subject ``Atenção! N sensores
com possíveis problemas.``, lines ``sensor50 - Temperatura Média: 80.04ºC``, the data
department's sign-off), so the people who read those emails recognise them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr
from typing import Final, Literal, TypeAlias

from iotmon.display import printable
from iotmon.notify.model import DeviceReport, Digest
from iotmon.notify.settings import EmailSettings

__all__ = ["message_id_for", "render_email"]

Section: TypeAlias = Literal["firing", "resolved", "stale", "recovered"]
_SECTIONS: Final[tuple[Section, ...]] = ("firing", "resolved", "stale", "recovered")
# Sections that also list devices from earlier digests, so "new" tells something there.
_CARRIED_OVER: Final[frozenset[Section]] = frozenset({"firing", "stale"})

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SUBJECT_DEVICE_CHARS: Final = 60
_DOMAIN: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
# Encoded lines stay below the SMTP policy's 78 columns, so parsing the stored message again
# (the outbox does) and sending it never refolds the header, which would decode it first.
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
    """The digest as a multipart/alternative email addressed to its recipients."""
    words = _PORTUGUESE if settings.lang == "pt-BR" else _ENGLISH
    recipients = digest.recipients or settings.mail_to
    message = EmailMessage(policy=SMTP)
    message["Subject"] = _Subject(words.subject(digest))
    message["From"] = settings.mail_from
    if recipients:
        message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id_for(digest, mail_from=settings.mail_from)
    # RFC 3834: tells auto-responders not to answer, so out-of-office replies cannot loop.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Iotmon-Digest"] = digest.digest_id
    message.set_content(words.plain(digest), cte="quoted-printable")
    message.add_alternative(_html(digest, words), subtype="html", cte="quoted-printable")
    return message


# -- formatting helpers ------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.2f}"


def _degrees(value: float) -> str:
    # 80.0 -> "80", 80.5 -> "80.5": the original wrote thresholds as whole degrees.
    return f"{value:g}"


def _common(values: Sequence[float]) -> float | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _time(at_us: int | None, *, pt: bool) -> str:
    if at_us is None:
        return "–"
    moment = _EPOCH + timedelta(microseconds=at_us)
    return moment.strftime("%d/%m/%Y %H:%M:%S UTC" if pt else "%Y-%m-%d %H:%M:%S UTC")


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return word if count == 1 else (plural or word + "s")


def _reports(digest: Digest, section: Section) -> tuple[DeviceReport, ...]:
    if section == "firing":
        return digest.firing
    if section == "resolved":
        return digest.resolved
    if section == "stale":
        return digest.stale
    return digest.recovered


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html(digest: Digest, words: _Words) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head>',
        '<body style="font-family: sans-serif">',
        f"<p>{_e(words.intro(digest))}</p>",
    ]
    lead = words.html_lead(digest)
    if lead:
        parts.append("<p>" + "<br>\n".join(_e(line) for line in lead) + "</p>")
    for section in _SECTIONS:
        reports = _reports(digest, section)
        if not reports:
            continue
        parts.append(f"<h3>{_e(words.title(section, digest))}</h3>")
        parts.append(
            '<table border="1" cellspacing="0" cellpadding="4" style="border-collapse: collapse">'
        )
        head = (*words.columns[:4], words.since(section), words.columns[4])
        parts.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
        for report in reports:
            device = printable(report.device)
            if report.new and section in _CARRIED_OVER:
                device = f"{device} ({words.new_mark})"
            cells = (
                device,
                _number(report.window_mean),
                _number(report.running_mean),
                _number(report.max),
                _time(report.since_us, pt=words.pt),
                _time(report.last_seen_us, pt=words.pt),
            )
            parts.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append("<p>" + "<br>".join(_e(line) for line in words.signature) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- languages ---------------------------------------------------------------------------


class _Words:
    pt: bool
    columns: tuple[str, str, str, str, str]
    """Device, window mean, running mean, max, last seen (the "since" column varies)."""
    new_mark: str
    signature: tuple[str, ...]

    def subject(self, digest: Digest) -> str:
        raise NotImplementedError

    def intro(self, digest: Digest) -> str:
        raise NotImplementedError

    def title(self, section: Section, digest: Digest) -> str:
        raise NotImplementedError

    def since(self, section: Section) -> str:
        raise NotImplementedError

    def plain(self, digest: Digest) -> str:
        raise NotImplementedError

    def html_lead(self, digest: Digest) -> list[str]:
        return []


class _English(_Words):
    pt = False
    columns = ("Device", "Window mean (°C)", "Running mean (°C)", "Max (°C)", "Last seen")
    new_mark = "new"
    signature = ("-- ", "iotmon")

    def subject(self, digest: Digest) -> str:
        parts: list[str] = []
        if digest.firing:
            count = len(digest.firing)
            threshold = _common([r.threshold for r in digest.firing])
            above = f"above {threshold:.1f} °C" if threshold is not None else "above threshold"
            text = f"{count} {_plural(count, 'device')} {above}"
            if count == 1:
                text += f": {printable(digest.firing[0].device, limit=_SUBJECT_DEVICE_CHARS)}"
            parts.append(text)
        if digest.resolved:
            count = len(digest.resolved)
            if parts:
                parts.append(f"{count} resolved")
            else:
                text = f"resolved: {count} {_plural(count, 'device')} back to normal"
                if count == 1:
                    device = printable(digest.resolved[0].device, limit=_SUBJECT_DEVICE_CHARS)
                    text += f": {device}"
                parts.append(text)
        if digest.stale:
            count = len(digest.stale)
            parts.append(f"{count} stale" if parts else f"{count} {_plural(count, 'device')} stale")
        if digest.recovered and not parts:
            count = len(digest.recovered)
            parts.append(f"{count} {_plural(count, 'device')} reporting again")
        prefix = "[iotmon] reminder: " if digest.kind == "reminder" else "[iotmon] "
        return prefix + ", ".join(parts)

    def intro(self, digest: Digest) -> str:
        metric = "window mean" if digest.metric == "window" else "running mean"
        if not digest.firing:
            return f"No device is above its threshold now ({metric})."
        count = len(digest.firing)
        threshold = _common([r.threshold for r in digest.firing])
        limit = f"{threshold:.1f} °C" if threshold is not None else "its threshold"
        verb = "is" if count == 1 else "are"
        return f"{count} {_plural(count, 'device')} {verb} above {limit} ({metric})."

    def title(self, section: Section, digest: Digest) -> str:
        if section == "firing":
            return "Firing"
        if section == "resolved":
            return "Resolved"
        if section == "stale":
            if digest.stale_after:
                return f"Stale (no readings for more than {digest.stale_after:g} s)"
            return "Stale"
        return "Reporting again"

    def since(self, section: Section) -> str:
        return {
            "firing": "Firing since",
            "resolved": "Resolved at",
            "stale": "Stale since",
            "recovered": "Back since",
        }[section]

    def plain(self, digest: Digest) -> str:
        lines = [self.intro(digest), ""]
        for section in _SECTIONS:
            reports = _reports(digest, section)
            if not reports:
                continue
            lines.append(f"{self.title(section, digest)}:")
            since = self.since(section).lower()
            for r in reports:
                mark = " (new)" if r.new and section in _CARRIED_OVER else ""
                lines.append(
                    f"  {printable(r.device)}{mark}: window mean {_number(r.window_mean)} °C,"
                    f" running mean {_number(r.running_mean)} °C, max {_number(r.max)} °C,"
                    f" {since} {_time(r.since_us, pt=False)},"
                    f" last seen {_time(r.last_seen_us, pt=False)}"
                )
            lines.append("")
        lines += list(self.signature)
        return "\n".join(lines) + "\n"


class _Portuguese(_Words):
    pt = True
    columns = (
        "Sensor",
        "Média na janela (ºC)",
        "Média geral (ºC)",
        "Máxima (ºC)",
        "Última leitura",
    )
    new_mark = "novo"
    signature = ("Atenciosamente,", "", "Departamento de Dados.")

    def subject(self, digest: Digest) -> str:
        prefix = "Lembrete: " if digest.kind == "reminder" else ""
        if digest.firing:
            count = len(digest.firing)
            return f"{prefix}Atenção! {count} {_sensores(count)} com possíveis problemas."
        if digest.stale:
            count = len(digest.stale)
            return f"{prefix}Atenção! {count} {_sensores(count)} sem leituras."
        if digest.resolved:
            count = len(digest.resolved)
            back = "voltou" if count == 1 else "voltaram"
            return f"{prefix}Normalizado: {count} {_sensores(count)} {back} ao normal."
        count = len(digest.recovered)
        back = "voltou" if count == 1 else "voltaram"
        return f"{prefix}{count} {_sensores(count)} {back} a enviar leituras."

    def intro(self, digest: Digest) -> str:
        if not digest.firing:
            return "Nenhum sensor apresenta temperatura acima do limite no momento."
        threshold = _common([r.threshold for r in digest.firing])
        if threshold is None:
            return "Os seguintes sensores apresentam temperatura acima do limite configurado."
        return f"Os seguintes sensores apresentam temperatura acima de {_degrees(threshold)}ºC."

    def title(self, section: Section, digest: Digest) -> str:
        if section == "firing":
            return "Em alerta"
        if section == "resolved":
            clear = _common([r.clear_below for r in digest.resolved])
            below = f" (abaixo de {_degrees(clear)}ºC)" if clear is not None else ""
            return f"Os seguintes sensores voltaram ao normal{below}:"
        if section == "stale":
            silent = f" há mais de {digest.stale_after:g} s" if digest.stale_after else ""
            return f"Os seguintes sensores estão sem leituras{silent}:"
        return "Os seguintes sensores voltaram a enviar leituras:"

    def since(self, section: Section) -> str:
        return {
            "firing": "Em alerta desde",
            "resolved": "Normalizado em",
            "stale": "Inativo desde",
            "recovered": "De volta desde",
        }[section]

    def _firing_lines(self, digest: Digest) -> list[str]:
        common = _common([r.threshold for r in digest.firing])
        lines = []
        for r in digest.firing:
            line = f"{printable(r.device)} - Temperatura Média: {_number(r.value)}ºC"
            if common is None:
                line += f" (limite {_degrees(r.threshold)}ºC)"
            lines.append(line)
        return lines

    def html_lead(self, digest: Digest) -> list[str]:
        # The original's one line per sensor, above the detailed tables.
        return self._firing_lines(digest)

    def plain(self, digest: Digest) -> str:
        lines = [f"    {self.intro(digest)}", ""]
        if digest.firing:
            lines += [*self._firing_lines(digest), ""]
        for section in ("resolved", "recovered"):
            reports = _reports(digest, section)
            if reports:
                lines += [f"    {self.title(section, digest)}", ""]
                lines += [
                    f"{printable(r.device)} - Temperatura Média: {_number(r.value)}ºC"
                    for r in reports
                ]
                lines.append("")
        if digest.stale:
            lines += [f"    {self.title('stale', digest)}", ""]
            lines += [
                f"{printable(r.device)} - Última leitura: {_time(r.last_seen_us, pt=True)}"
                for r in digest.stale
            ]
            lines.append("")
        lines += [f"    {line}" if line else "" for line in self.signature]
        return "\n".join(lines) + "\n"


def _sensores(count: int) -> str:
    return _plural(count, "sensor", "sensores")


_ENGLISH: Final = _English()
_PORTUGUESE: Final = _Portuguese()
