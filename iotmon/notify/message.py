"""Render a :class:`~iotmon.notify.model.Digest` as an email an operator reads at a glance.

Both parts have one layout, in both languages: a headline saying what changed (coloured in
HTML: firing, resolved, stale, reminder), one context line naming the time zone
(``--timezone``) once, then a section per state with its devices hottest first, new ones
badged, figures right-aligned with their units in the header, and each device's trend over
the window (:mod:`iotmon.notify.trend`) with the change over it. The plain-text part tells
the whole story alone, in aligned columns under 100 characters; the HTML part uses inline
styles and tables only, its trend images inline PNGs (``multipart/related``), no SVG,
scripts or remote images.

Device ids come from the input stream and are untrusted. They never reach a header or the
HTML raw: :func:`iotmon.display.printable` shows control and format characters (CR, LF,
NUL, bidi overrides …) as ``\\xNN``/``\\uNNNN`` escapes and cuts long ids, the HTML gets
every value escaped, and the Subject is encoded here, whole, as RFC 2047 encoded-words
(see :class:`_Subject`): the email package never parses it, so an id that looks like an
encoded-word (``=?utf-8?q?x=0D=0ABcc:...?=``) stays literal text instead of being decoded
into a line break. The HTML is quoted-printable, the text base64 (its sparklines are
multi-byte characters).

``pt-BR`` keeps the original system's subject (``Atenção! N sensores com possíveis
problemas.``), opening line and sign-off, so the people who read those emails recognise
them; the body has the same layout as the English one.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr
from typing import Final, Literal, TypeAlias
from zoneinfo import ZoneInfo

from iotmon.display import printable
from iotmon.notify.model import DeviceReport, Digest
from iotmon.notify.settings import EmailSettings, zone
from iotmon.notify.trend import Trend

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
    """The digest as a multipart/alternative email addressed to its recipients: plain text,
    and HTML with each device's trend as an inline PNG (multipart/related)."""
    words = _PORTUGUESE if settings.lang == "pt-BR" else _ENGLISH
    layout = _Layout.of(digest, words, timezone=settings.timezone)
    recipients = digest.recipients or settings.mail_to
    message = EmailMessage(policy=SMTP)
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
    message.set_content(_plain(layout), cte="base64")
    message.add_alternative(_html(layout), subtype="html", cte="quoted-printable")
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


# -- what the email shows, computed once for both parts -----------------------------------

Mood: TypeAlias = Literal["firing", "resolved", "stale", "reminder"]
"""What the headline is about, and so its colour."""


@dataclass(frozen=True, slots=True)
class _Row:
    report: DeviceReport
    device: str
    """The id as shown: escaped by :func:`printable`, never raw."""
    new: bool
    trend: Trend | None
    cid: str | None
    """Content-ID of the trend's PNG (HTML part)."""


@dataclass(frozen=True, slots=True)
class _Layout:
    digest: Digest
    words: _Words
    zone: ZoneInfo
    as_of_us: int
    """The time the figures are as of: the digest's slot, or a later last reading."""
    mood: Mood
    sections: tuple[tuple[Section, tuple[_Row, ...]], ...]

    @classmethod
    def of(cls, digest: Digest, words: _Words, *, timezone: str) -> _Layout:
        sections = []
        n = images = 0
        for section in _SECTIONS:
            reports = sorted(_reports(digest, section), key=_hottest_first)
            rows = []
            for report in reports:
                trend = Trend.of(report.trend, pane_s=report.pane_s, threshold=report.threshold)
                n += 1
                cid = None
                if trend is not None and images < _MAX_IMAGES:
                    images += 1
                    cid = f"t{n}.{digest.digest_id[:16]}@iotmon"
                rows.append(
                    _Row(
                        report=report,
                        device=printable(report.device),
                        new=report.new and section in _CARRIED_OVER,
                        trend=trend,
                        cid=cid,
                    )
                )
            if rows:
                sections.append((section, tuple(rows)))
        seen = [r.last_seen_us for r in _all_reports(digest) if r.last_seen_us is not None]
        return cls(
            digest=digest,
            words=words,
            zone=zone(timezone),
            as_of_us=max([digest.slot_us, *seen]),
            mood=_mood(digest),
            sections=tuple(sections),
        )

    def capped(self) -> bool:
        """Some trends are not drawn in the HTML part (:data:`_MAX_IMAGES`)."""
        return any(row.trend is not None and row.cid is None for row in self.rows())

    def rows(self) -> list[_Row]:
        return [row for _, rows in self.sections for row in rows]

    def time(self, at_us: int | None) -> str:
        """Date and time in the email's zone, which is named once, in :meth:`as_of`."""
        if at_us is None:
            return "–"
        moment = (_EPOCH + timedelta(microseconds=at_us)).astimezone(self.zone)
        return moment.strftime(self.words.time_format)

    def as_of(self) -> str:
        """The reference time with its zone, e.g. ``2023-03-15 09:16:47 America/Sao_Paulo
        (UTC-03:00)``."""
        moment = (_EPOCH + timedelta(microseconds=self.as_of_us)).astimezone(self.zone)
        name = str(self.zone.key)
        if name == "UTC":
            return f"{moment.strftime(self.words.time_format)} UTC"
        offset = moment.strftime("%z")
        return f"{moment.strftime(self.words.time_format)} {name} (UTC{offset[:3]}:{offset[3:]})"

    def ago(self, at_us: int | None) -> str:
        if at_us is None:
            return "–"
        return self.words.ago(max(0, self.as_of_us - at_us) / 1e6)

    def window_s(self) -> float | None:
        return next((r.trend.window_s for r in self.rows() if r.trend), None)

    def point_s(self) -> float | None:
        return next((r.trend.window_s / len(r.trend.points) for r in self.rows() if r.trend), None)


def _hottest_first(report: DeviceReport) -> tuple[bool, float, str]:
    value = report.value
    known = value is not None and value == value
    return (not known, -(value or 0.0) if known else 0.0, report.device)


def _mood(digest: Digest) -> Mood:
    if digest.kind == "reminder":
        return "reminder"
    if any(r.new for r in digest.firing):
        return "firing"
    if any(r.new for r in digest.stale):
        return "stale"
    if digest.resolved or digest.recovered:
        return "resolved"
    return "firing" if digest.firing else "stale"


def _reports(digest: Digest, section: Section) -> tuple[DeviceReport, ...]:
    if section == "firing":
        return digest.firing
    if section == "resolved":
        return digest.resolved
    if section == "stale":
        return digest.stale
    return digest.recovered


def _all_reports(digest: Digest) -> list[DeviceReport]:
    return [r for section in _SECTIONS for r in _reports(digest, section)]


# -- formatting helpers ------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.1f}"


def _degrees(value: float) -> str:
    # 75.0 -> "75", 75.5 -> "75.5": thresholds are written as people set them.
    return f"{value:g}"


def _common(values: Sequence[float]) -> float | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return word if count == 1 else (plural or word + "s")


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600, 1):g} h"
    return f"{round(seconds / 86400, 1):g} d"


def _shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters: ids of one plant share their
    prefix and differ at the end, so both ends are kept."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 3
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


def _e(text: str) -> str:
    return html.escape(text, quote=True)


# -- the plain-text part -----------------------------------------------------------------

_LINE: Final = 99
"""The plain text stays within this many columns, whatever the device ids."""
_GAP: Final = "  "


def _plain(layout: _Layout) -> str:
    words = layout.words
    digest = layout.digest
    lines = [words.headline(layout), "", words.intro(digest), words.as_of(layout)]
    window_s, point_s = layout.window_s(), layout.point_s()
    if window_s is not None and point_s is not None:
        lines.append(words.legend(window_s, point_s))
    lines.append("")
    for section, rows in layout.sections:
        lines.append(f"{words.title(section, digest)} ({len(rows)})")
        lines += _plain_table(layout, section, rows)
        lines.append("")
    lines += list(words.signature)
    return "\n".join(lines) + "\n"


def _plain_table(layout: _Layout, section: Section, rows: Sequence[_Row]) -> list[str]:
    words = layout.words
    figures = [
        (
            _number(r.report.window_mean),
            _number(r.report.running_mean),
            _number(r.report.max),
            layout.time(r.report.since_us),
            layout.ago(r.report.last_seen_us),
        )
        for r in rows
    ]
    heads = (
        words.window_col,
        words.running_col,
        words.max_col,
        words.since(section),
        words.seen_col,
    )
    widths = [max(len(h), *(len(f[i]) for f in figures)) for i, h in enumerate(heads)]
    badge = len(words.new_mark)
    fixed = 2 + len(_GAP) + badge + sum(len(_GAP) + w for w in widths)
    device_w = min(max(len(words.device_col), *(len(r.device) for r in rows)), _LINE - fixed)

    def line(device: str, mark: str, cells: Sequence[str]) -> str:
        out = f"  {device:<{device_w}}{_GAP}{mark:<{badge}}"
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            # Figures right-aligned; the since column (a date) left-aligned.
            out += _GAP + (f"{cell:<{width}}" if i == 3 else f"{cell:>{width}}")
        return out.rstrip()

    lines = [line(words.device_col, "", heads)]
    for row, cells in zip(rows, figures, strict=True):
        device = row.device
        if len(device) > device_w:
            # Too long for the column: the id on lines of its own, then its figures.
            step = _LINE - 2
            lines += [f"  {device[i : i + step]}" for i in range(0, len(device), step)]
            device = ""
        lines.append(line(device, words.new_mark if row.new else "", cells))
        if row.trend is not None:
            change = words.change(row.trend)
            lines.append(f"    {row.trend.text()}  {change}".rstrip())
    return lines


# -- the HTML part -----------------------------------------------------------------------

# Inline styles and attributes only, and tables for layout: what Gmail, Outlook and Apple
# Mail all render. Kept short, since they repeat on every row.
_MOOD_COLOURS: Final[dict[Mood, str]] = {
    "firing": "#c62828",
    "resolved": "#2e7d32",
    "stale": "#5f6b7a",
    "reminder": "#d84315",
}
_SECTION_COLOURS: Final[dict[Section, str]] = {
    "firing": "#c62828",
    "resolved": "#2e7d32",
    "stale": "#5f6b7a",
    "recovered": "#1565c0",
}
_RISING: Final = "#c62828"
_FALLING: Final = "#2e7d32"
_MUTED: Final = "#5f6b7a"
_ID_CHUNK: Final = 32
_MAX_IMAGES: Final = 30
"""Trend images per email, for the hottest devices: keeps a digest of 100 devices under
100 KB. The plain-text part has every device's trend."""


def _html(layout: _Layout) -> str:
    words = layout.words
    digest = layout.digest
    colour = _MOOD_COLOURS[layout.mood]
    label, _, details = words.headline(layout).partition(" — ")
    context = [words.as_of(layout)]
    window_s, point_s = layout.window_s(), layout.point_s()
    if window_s is not None and point_s is not None:
        context.append(words.html_legend(window_s, point_s))
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{words.lang}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width"></head>',
        '<body style="margin:0;padding:16px;background:#f1f3f5">',
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0"'
        ' style="max-width:860px;margin:0 auto;background:#ffffff;border:1px solid #d0d5db;'
        "font-family:'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px;color:#1f2328\">",
        f'<tr><td style="background:{colour};color:#ffffff;padding:12px 16px;font-size:17px">'
        f"<b>{_e(label)}</b>" + (f" — {_e(details)}" if details else "") + "</td></tr>",
        f'<tr><td style="padding:14px 16px 2px;font-size:15px">{_e(words.intro(digest))}</td></tr>',
        f'<tr><td style="padding:2px 16px 6px;color:{_MUTED};font-size:13px">'
        + "<br>".join(_e(c) for c in context)
        + "</td></tr>",
    ]
    for section, rows in layout.sections:
        parts += _html_section(layout, section, rows)
    parts += _capped_note(layout)
    parts.append(
        f'<tr><td style="padding:18px 16px 14px;color:{_MUTED};font-size:12px">'
        + "<br>".join(_e(line) for line in words.signature if line.strip() != "--")
        + "</td></tr>"
    )
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"


def _html_section(layout: _Layout, section: Section, rows: Sequence[_Row]) -> list[str]:
    words = layout.words
    colour = _SECTION_COLOURS[section]
    metric = layout.digest.metric
    # Fixed widths but the device's, so the columns of all sections line up.
    heads = [
        (words.device_col, "left", ""),
        (words.window_col, "right", "66"),
        (words.running_col, "right", "74"),
        (words.max_col, "right", "56"),
        (words.trend_col, "left", "124"),
        (words.since(section), "left", "136"),
        (words.seen_col, "right", "72"),
    ]
    out = [
        f'<tr><td style="padding:16px 16px 4px;font-size:15px;font-weight:bold;color:{colour}">'
        f"{_e(words.title(section, layout.digest))} ({len(rows)})</td></tr>",
        '<tr><td style="padding:0 10px">',
        '<table width="100%" cellpadding="6" cellspacing="0"'
        ' style="border-collapse:collapse;font-variant-numeric:tabular-nums">',
        f'<tr style="color:{_MUTED};font-size:12px;white-space:nowrap;'
        f'border-bottom:2px solid {colour}">'
        + "".join(
            f'<th align="{align}"' + (f' width="{width}"' if width else "") + f">{_e(h)}</th>"
            for h, align, width in heads
        )
        + "</tr>",
    ]
    for i, row in enumerate(rows):
        r = row.report
        # The badge first, where the eye scans down the column; a normal id never wraps.
        device = _breakable(row.device)
        if row.new:
            device = (
                f'<b style="background:{colour};color:#fff;font-size:11px;padding:1px 5px">'
                f"{_e(words.new_mark)}</b> {device}"
            )
        nowrap = " nowrap" if len(row.device) <= _ID_CHUNK else ""
        window, running = _number(r.window_mean), _number(r.running_mean)
        if metric == "window":
            window = f"<b>{window}</b>"
        else:
            running = f"<b>{running}</b>"
        trend = "–"
        if row.trend is not None:
            change = words.change(row.trend)
            trend = ""
            if row.cid is not None:
                width, height = row.trend.size()
                trend = f'<img src="cid:{row.cid}" width="{width}" height="{height}" alt=""><br>'
            if change:
                tint = _change_colour(row.trend.change)
                trend += f'<span style="font-size:12px;color:{tint}">{_e(change)}</span>'
        out.append(
            # Banded rows rather than a border per cell: shorter, and Outlook shows them.
            ('<tr bgcolor="#f6f7f9">' if i % 2 else "<tr>") + f"<td{nowrap}>{device}</td>"
            f'<td align="right">{window}</td><td align="right">{running}</td>'
            f'<td align="right">{_number(r.max)}</td><td nowrap>{trend}</td>'
            f"<td nowrap>{_e(layout.time(r.since_us))}</td>"
            f'<td align="right" nowrap>{_e(layout.ago(r.last_seen_us))}</td></tr>'
        )
    out += ["</table>", "</td></tr>"]
    return out


def _capped_note(layout: _Layout) -> list[str]:
    if not layout.capped():
        return []
    return [
        f'<tr><td style="padding:8px 16px 0;color:{_MUTED};font-size:12px">'
        f"{_e(layout.words.capped(_MAX_IMAGES))}</td></tr>"
    ]


def _breakable(device: str) -> str:
    """The id escaped, with a line-break opportunity every :data:`_ID_CHUNK` characters of
    a long one: a table cell never breaks a normal id, and a hostile one cannot widen it."""
    chunks = [device[i : i + _ID_CHUNK] for i in range(0, len(device), _ID_CHUNK)]
    return "<wbr>".join(_e(chunk) for chunk in chunks)


def _change_colour(change: float | None) -> str:
    if change is None or abs(change) < 0.05:
        return _MUTED
    return _RISING if change > 0 else _FALLING


# -- languages ---------------------------------------------------------------------------

# The subject names the hottest device when the whole line stays this short (ids are cut in
# the middle to make it fit, but not below _SUBJECT_MIN_ID characters).
_SUBJECT_BUDGET: Final = 90
_SUBJECT_MIN_ID: Final = 12


class _Words:
    lang: str
    time_format: str
    unit: str
    new_mark: str
    device_col: str
    window_col: str
    running_col: str
    max_col: str
    trend_col: str
    seen_col: str
    signature: tuple[str, ...]

    def subject(self, layout: _Layout) -> str:
        raise NotImplementedError

    def headline(self, layout: _Layout) -> str:
        """``LABEL — details``; the HTML part colours the label."""
        raise NotImplementedError

    def intro(self, digest: Digest) -> str:
        raise NotImplementedError

    def as_of(self, layout: _Layout) -> str:
        raise NotImplementedError

    def legend(self, window_s: float, point_s: float) -> str:
        raise NotImplementedError

    def html_legend(self, window_s: float, point_s: float) -> str:
        raise NotImplementedError

    def title(self, section: Section, digest: Digest) -> str:
        raise NotImplementedError

    def since(self, section: Section) -> str:
        raise NotImplementedError

    def ago(self, seconds: float) -> str:
        raise NotImplementedError

    def change(self, trend: Trend) -> str:
        raise NotImplementedError

    def capped(self, images: int) -> str:
        raise NotImplementedError

    def value(self, value: float | None) -> str:
        return f"{_number(value)} {self.unit}"

    def _hottest(
        self,
        base: str,
        firing: Sequence[DeviceReport],
        template: str,
        single: str,
        *,
        rest: str = "",
    ) -> str:
        """``base``, the hottest firing device and its value when they fit, then ``rest``."""
        known = sorted((r for r in firing if r.value is not None), key=_hottest_first)
        if not known:
            return base + rest
        hottest = known[0]
        value = self.value(hottest.value)
        if len(firing) == 1:
            # The one device is the news: named whatever the length (printable cuts it).
            shown = printable(hottest.device, limit=_SUBJECT_DEVICE_CHARS)
            return base + single.format(device=shown, value=value) + rest
        shown = printable(hottest.device)
        room = _SUBJECT_BUDGET - len(base + template.format(device="", value=value) + rest)
        if room < min(_SUBJECT_MIN_ID, len(shown)):
            return base + rest
        return base + template.format(device=_shorten(shown, room), value=value) + rest


class _English(_Words):
    lang = "en"
    time_format = "%Y-%m-%d %H:%M:%S"
    unit = "°C"
    new_mark = "new"
    device_col = "Device"
    window_col = "Window °C"
    running_col = "Running °C"
    max_col = "Max °C"
    trend_col = "Trend"
    seen_col = "Last seen"
    signature = ("-- ", "iotmon")

    def subject(self, layout: _Layout) -> str:
        digest = layout.digest
        parts: list[str] = []
        if digest.firing:
            count = len(digest.firing)
            threshold = _common([r.threshold for r in digest.firing])
            above = (
                f"above {_degrees(threshold)} °C" if threshold is not None else "above threshold"
            )
            parts.append(f"{count} {_plural(count, 'device')} {above}")
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
        if not digest.firing:
            return prefix + ", ".join(parts)
        # The hottest device right after the firing count, the other counts after it.
        rest = "".join(f", {part}" for part in parts[1:])
        return self._hottest(
            prefix + parts[0],
            digest.firing,
            " — hottest {device} {value}",
            ": {device} {value}",
            rest=rest,
        )

    def headline(self, layout: _Layout) -> str:
        digest = layout.digest
        new = sum(1 for r in digest.firing if r.new)
        details = []
        if new:
            details.append(f"{new} new")
        if len(digest.firing) > new:
            details.append(f"{len(digest.firing) - new} still firing")
        if digest.resolved:
            details.append(f"{len(digest.resolved)} resolved")
        if digest.stale:
            details.append(f"{len(digest.stale)} stale")
        if digest.recovered:
            details.append(f"{len(digest.recovered)} reporting again")
        return f"{layout.mood.upper()} — {', '.join(details)}"

    def intro(self, digest: Digest) -> str:
        metric = "window mean" if digest.metric == "window" else "running mean"
        if not digest.firing:
            return f"No device is above its threshold now ({metric})."
        count = len(digest.firing)
        threshold = _common([r.threshold for r in digest.firing])
        limit = f"{_degrees(threshold)} °C" if threshold is not None else "its threshold"
        verb = "is" if count == 1 else "are"
        return f"{count} {_plural(count, 'device')} {verb} above {limit} ({metric})."

    def as_of(self, layout: _Layout) -> str:
        return f"As of {layout.as_of()}; times below are in that zone."

    def legend(self, window_s: float, point_s: float) -> str:
        return (
            f"Trend: mean of every {_span(point_s)} over the last {_span(window_s)};"
            " ▅▆▇█ = above the threshold."
        )

    def html_legend(self, window_s: float, point_s: float) -> str:
        return (
            f"Trend: mean of every {_span(point_s)} over the last {_span(window_s)};"
            " the dashed line is the threshold."
        )

    def title(self, section: Section, digest: Digest) -> str:
        if section == "firing":
            return "Firing"
        if section == "resolved":
            return "Resolved"
        if section == "stale":
            if digest.stale_after:
                return f"Stale — no readings for more than {digest.stale_after:g} s"
            return "Stale"
        return "Reporting again"

    def since(self, section: Section) -> str:
        return {
            "firing": "Firing since",
            "resolved": "Resolved at",
            "stale": "Stale since",
            "recovered": "Back since",
        }[section]

    def ago(self, seconds: float) -> str:
        return "now" if seconds < 1 else f"{_span(seconds)} ago"

    def change(self, trend: Trend) -> str:
        if trend.change is None:
            return ""
        return f"{trend.change:+.1f} °C in {_span(trend.change_s)}"

    def capped(self, images: int) -> str:
        return f"Trend charts of the first {images} devices; the plain-text part has them all."


class _Portuguese(_Words):
    # The original's wording where it had one: the subject, the opening line, the sign-off.
    lang = "pt-BR"
    time_format = "%d/%m/%Y %H:%M:%S"
    unit = "ºC"
    new_mark = "novo"
    device_col = "Sensor"
    window_col = "Janela ºC"
    running_col = "Geral ºC"
    max_col = "Máx. ºC"
    trend_col = "Tendência"
    seen_col = "Última leitura"
    signature = ("Atenciosamente,", "", "Departamento de Dados.")

    def subject(self, layout: _Layout) -> str:
        digest = layout.digest
        prefix = "Lembrete: " if digest.kind == "reminder" else ""
        if digest.firing:
            count = len(digest.firing)
            base = f"{prefix}Atenção! {count} {_sensores(count)} com possíveis problemas."
            return self._hottest(
                base, digest.firing, " Mais quente: {device} {value}", " {device}: {value}"
            )
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

    def headline(self, layout: _Layout) -> str:
        digest = layout.digest
        label = {
            "firing": "ALERTA",
            "resolved": "NORMALIZADO",
            "stale": "SEM LEITURAS",
            "reminder": "LEMBRETE",
        }[layout.mood]
        new = sum(1 for r in digest.firing if r.new)
        details = []
        if new:
            details.append(f"{new} {_plural(new, 'novo')}")
        if len(digest.firing) > new:
            details.append(f"{len(digest.firing) - new} ainda em alerta")
        if digest.resolved:
            count = len(digest.resolved)
            details.append(f"{count} {_plural(count, 'normalizado')}")
        if digest.stale:
            details.append(f"{len(digest.stale)} sem leituras")
        if digest.recovered:
            count = len(digest.recovered)
            details.append(f"{count} {'voltou' if count == 1 else 'voltaram'} a enviar leituras")
        return f"{label} — {', '.join(details)}"

    def intro(self, digest: Digest) -> str:
        if not digest.firing:
            return "Nenhum sensor apresenta temperatura acima do limite no momento."
        threshold = _common([r.threshold for r in digest.firing])
        if threshold is None:
            return "Os seguintes sensores apresentam temperatura acima do limite configurado."
        return f"Os seguintes sensores apresentam temperatura acima de {_degrees(threshold)}ºC."

    def as_of(self, layout: _Layout) -> str:
        return f"Situação em {layout.as_of()}; horários abaixo neste fuso."

    def legend(self, window_s: float, point_s: float) -> str:
        return (
            f"Tendência: média a cada {_span(point_s)} nos últimos {_span(window_s)};"
            " ▅▆▇█ = acima do limite."
        )

    def html_legend(self, window_s: float, point_s: float) -> str:
        return (
            f"Tendência: média a cada {_span(point_s)} nos últimos {_span(window_s)};"
            " a linha tracejada é o limite."
        )

    def title(self, section: Section, digest: Digest) -> str:
        if section == "firing":
            return "Em alerta"
        if section == "resolved":
            clear = _common([r.clear_below for r in digest.resolved])
            below = f" (abaixo de {_degrees(clear)}ºC)" if clear is not None else ""
            return f"Voltaram ao normal{below}"
        if section == "stale":
            silent = f" há mais de {digest.stale_after:g} s" if digest.stale_after else ""
            return f"Sem leituras{silent}"
        return "Voltaram a enviar leituras"

    def since(self, section: Section) -> str:
        return {
            "firing": "Em alerta desde",
            "resolved": "Normalizado em",
            "stale": "Inativo desde",
            "recovered": "De volta desde",
        }[section]

    def ago(self, seconds: float) -> str:
        return "agora" if seconds < 1 else f"há {_span(seconds)}"

    def change(self, trend: Trend) -> str:
        if trend.change is None:
            return ""
        return f"{trend.change:+.1f} ºC em {_span(trend.change_s)}"

    def capped(self, images: int) -> str:
        return f"Gráficos de tendência dos {images} primeiros sensores; a parte em texto tem todos."


def _sensores(count: int) -> str:
    return _plural(count, "sensor", "sensores")


_ENGLISH: Final = _English()
_PORTUGUESE: Final = _Portuguese()
