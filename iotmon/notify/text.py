"""The plain-text part of an email: it tells the whole story alone, in aligned columns
under 100 characters, each device's trend a line of sparkline characters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from iotmon.notify.layout import Layout, Row, Section
from iotmon.notify.words import number

_LINE: Final = 99
"""The plain text stays within this many columns, whatever the device ids."""
_GAP: Final = "  "


def render_text(layout: Layout) -> str:
    words = layout.words
    digest = layout.digest
    lines = [words.headline(layout), "", words.intro(digest), words.as_of(layout)]
    if digest.silenced:
        lines.append(words.silenced(digest.silenced))
    window_s, point_s = layout.window_s(), layout.point_s()
    if window_s is not None and point_s is not None:
        lines.append(words.legend(window_s, point_s))
    lines.append("")
    for section, rows in layout.sections:
        lines.append(f"{words.title(section, digest)} ({layout.count(section, rows)})")
        if rows:
            lines += _plain_table(layout, section, rows)
        if unlisted := layout.unlisted.get(section):
            lines.append(f"  {words.unlisted(unlisted)}")
        lines.append("")
    lines += list(words.signature)
    return "\n".join(lines) + "\n"


def _plain_table(layout: Layout, section: Section, rows: Sequence[Row]) -> list[str]:
    words = layout.words
    figures = [
        (
            number(r.report.window_mean),
            number(r.report.running_mean),
            number(r.report.max),
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
