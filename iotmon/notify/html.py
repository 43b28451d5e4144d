"""The HTML part of an email: inline styles and tables only, each device's trend an inline
PNG (``multipart/related``, attached by :mod:`~iotmon.notify.message`); no SVG, scripts or
remote images, and every value escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Final

from iotmon.notify.layout import MAX_IMAGES, Layout, Mood, Row, Section
from iotmon.notify.words import number

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


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def render_html(layout: Layout) -> str:
    words = layout.words
    digest = layout.digest
    colour = _MOOD_COLOURS[layout.mood]
    label, _, details = words.headline(layout).partition(" — ")
    context = [words.as_of(layout)]
    if digest.silenced:
        context.append(words.silenced(digest.silenced))
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


def _html_section(layout: Layout, section: Section, rows: Sequence[Row]) -> list[str]:
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
        f"{_e(words.title(section, layout.digest))} ({layout.count(section, rows)})</td></tr>",
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
        window, running = number(r.window_mean), number(r.running_mean)
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
            f'<td align="right">{number(r.max)}</td><td nowrap>{trend}</td>'
            f"<td nowrap>{_e(layout.time(r.since_us))}</td>"
            f'<td align="right" nowrap>{_e(layout.ago(r.last_seen_us))}</td></tr>'
        )
    if unlisted := layout.unlisted.get(section):
        out.append(
            f'<tr><td colspan="{len(heads)}" style="color:{_MUTED};font-size:12px">'
            f"{_e(words.unlisted(unlisted))}</td></tr>"
        )
    out += ["</table>", "</td></tr>"]
    return out


def _capped_note(layout: Layout) -> list[str]:
    if not layout.capped():
        return []
    return [
        f'<tr><td style="padding:8px 16px 0;color:{_MUTED};font-size:12px">'
        f"{_e(layout.words.capped(MAX_IMAGES))}</td></tr>"
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
