"""A digest as a webhook body: iotmon's own JSON, a Slack message or a Teams message card.

- ``json``: the versioned schema ``iotmon.digest.v1`` (README, "Webhooks"), meant for
  programs. Device ids are as received (JSON escapes them); at most :data:`MAX_JSON_LISTED`
  devices are listed and ``unlisted`` counts the rest per section.
- ``slack``: an incoming-webhook message, ``{"text": fallback, "blocks": [...]}`` in Block
  Kit: a ``header`` (plain text, at most 150 characters), ``context`` and ``section``
  blocks of ``mrkdwn`` (at most 3000 characters each), at most 50 blocks.
- ``teams``: a legacy ``MessageCard`` (Teams incoming webhooks and Workflows take it): a
  title, a summary and one section of facts (device → figures) per state.

Slack and Teams show what the email shows, with the email's wording (``--lang``) and times
(``--timezone``): the same :class:`~iotmon.notify.layout.Layout`, so the same devices are
listed (new first, then the hottest) and the rest counted. Device ids there are
:func:`~iotmon.display.printable` and escaped for the markup, so an id cannot add a link, a
mention or formatting.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from iotmon.notify.layout import Layout, Row, Section, select
from iotmon.notify.model import DeviceReport, Digest
from iotmon.notify.settings import Language, WebhookFormat
from iotmon.notify.words import Words, words_for

__all__ = [
    "JSON_SCHEMA",
    "MAX_JSON_LISTED",
    "WebhookFormat",
    "render_webhook",
]

JSON_SCHEMA: Final = "iotmon.digest.v1"
MAX_JSON_LISTED: Final = 1000
"""Devices listed in a ``json`` body (about 300 bytes each); the rest are counted."""

# Slack's documented limits (api.slack.com/reference/block-kit/blocks).
SLACK_MAX_BLOCKS: Final = 50
SLACK_MAX_HEADER: Final = 150
SLACK_MAX_TEXT: Final = 3000
# Teams refuses webhook bodies above about 28 KB; leave room for the card around the facts.
TEAMS_MAX_FACT_BYTES: Final = 20_000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECTIONS: Final[tuple[Section, ...]] = ("firing", "resolved", "stale", "recovered")
_COLOURS: Final = {
    "firing": "C62828",
    "stale": "EF6C00",
    "resolved": "2E7D32",
    "reminder": "C62828",
}
# What can start formatting or a link in a card's markdown (HTML is escaped separately).
_TEAMS_SPECIAL: Final = re.compile(r"([\\`*_\[\]~])")


def render_webhook(
    digest: Digest, *, format: WebhookFormat, lang: Language, timezone: str
) -> bytes:
    """The body to POST for ``digest`` (UTF-8 JSON); ``lang`` and ``timezone`` as the
    email's (``json`` has neither: its times are UTC)."""
    if format == "json":
        return orjson.dumps(json_payload(digest))
    layout = Layout.of(digest, words_for(lang), timezone=timezone)
    if format == "slack":
        return orjson.dumps(slack_payload(layout))
    return orjson.dumps(teams_payload(layout))


# -- json ---------------------------------------------------------------------------------


def json_payload(digest: Digest) -> dict[str, Any]:
    listed, unlisted = select(digest, MAX_JSON_LISTED)
    shown = dict(listed)
    doc: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "digest_id": digest.digest_id,
        "kind": digest.kind,
        "slot": _iso(digest.slot_us),
        "slot_us": digest.slot_us,
        "metric": digest.metric,
        "stale_after": digest.stale_after,
        "silenced": digest.silenced,
    }
    for section in _SECTIONS:
        doc[section] = [_device(report) for report in shown.get(section, [])]
    doc["unlisted"] = {section: unlisted.get(section, 0) for section in _SECTIONS}
    return doc


def _device(report: DeviceReport) -> dict[str, Any]:
    return {
        "device": report.device,
        "value": report.value,
        "window_mean": report.window_mean,
        "running_mean": report.running_mean,
        "max": report.max,
        "threshold": report.threshold,
        "clear_below": report.clear_below,
        "since": _iso(report.since_us),
        "since_us": report.since_us,
        "last_seen": None if report.last_seen_us is None else _iso(report.last_seen_us),
        "last_seen_us": report.last_seen_us,
        "new": report.new,
    }


def _iso(at_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=at_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- slack --------------------------------------------------------------------------------


def slack_payload(layout: Layout) -> dict[str, Any]:
    words = layout.words
    subject = words.subject(layout)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(subject, SLACK_MAX_HEADER)}},
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": _cut(slack_escape(words.as_of(layout)), SLACK_MAX_TEXT)}
            ],
        },
    ]
    # One block is kept for the count of what did not fit.
    room = SLACK_MAX_BLOCKS - 1
    left_out = 0
    for section, rows in layout.sections:
        count = layout.count(section, rows)
        title = f"*{slack_escape(words.title(section, layout.digest))}* ({count})"
        lines = [_slack_line(layout, section, row) for row in rows]
        for text in _chunks(title, lines, SLACK_MAX_TEXT):
            if len(blocks) >= room:
                left_out += text.count("\n•")
                continue
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        left_out += layout.unlisted.get(section, 0)
    # The closing context block (kept room for above) says what the lists do not show.
    notes = [words.unlisted(left_out)] if left_out else []
    if layout.digest.silenced:
        notes.append(words.silenced(layout.digest.silenced))
    if notes:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": slack_escape(n)} for n in notes],
            }
        )
    return {"text": _cut(subject, SLACK_MAX_TEXT), "blocks": blocks}


def slack_escape(text: str) -> str:
    """Slack's three control characters; with them escaped, ``<!channel>`` or
    ``<https://x|click>`` in a device id is shown, not acted on."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_line(layout: Layout, section: Section, row: Row) -> str:
    words = layout.words
    new = f" _{words.new_mark}_" if row.new else ""
    since = f"{words.since(section)} {layout.time(row.report.since_us)}"
    # In backticks, so Slack formats nothing in the id; a backtick in it would end them.
    device = row.device.replace("`", "'")
    return slack_escape(f"• `{device}` {words.value(row.report.value)} — {since}") + new


def _chunks(title: str, lines: list[str], limit: int) -> list[str]:
    """``title`` and ``lines`` as texts of at most ``limit`` characters, lines kept whole
    (a line is far below the limit: device ids are cut at 200 characters)."""
    texts: list[str] = []
    current = title
    for line in lines:
        if len(current) + 1 + len(line) > limit:
            texts.append(current)
            current = ""
        current = f"{current}\n{line}" if current else f"\n{line}"
    texts.append(current)
    return texts


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- teams --------------------------------------------------------------------------------


def teams_payload(layout: Layout) -> dict[str, Any]:
    words = layout.words
    subject = words.subject(layout)
    sections: list[dict[str, Any]] = []
    budget = TEAMS_MAX_FACT_BYTES
    left_out = 0
    for section, rows in layout.sections:
        facts: list[dict[str, str]] = []
        for row in rows:
            fact = _teams_fact(layout, words, section, row)
            size = len(orjson.dumps(fact))
            if size > budget:
                left_out += 1
                continue
            budget -= size
            facts.append(fact)
        left_out += layout.unlisted.get(section, 0)
        title = f"{words.title(section, layout.digest)} ({layout.count(section, rows)})"
        sections.append({"activityTitle": teams_escape(title), "facts": facts})
    text = teams_escape(words.as_of(layout))
    if left_out:
        text += "\n\n" + teams_escape(words.unlisted(left_out))
    if layout.digest.silenced:
        text += "\n\n" + teams_escape(words.silenced(layout.digest.silenced))
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        # Plain text (notifications, previews): the subject as the email has it.
        "summary": subject,
        "themeColor": _COLOURS[layout.mood],
        "title": teams_escape(subject),
        "text": text,
        "sections": sections,
    }


def teams_escape(text: str) -> str:
    """Markdown and HTML in a card's text are rendered; escaped, a device id such as
    ``[x](https://evil)`` or ``<b>`` is shown as typed."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _TEAMS_SPECIAL.sub(r"\\\1", escaped)


def _teams_fact(layout: Layout, words: Words, section: Section, row: Row) -> dict[str, str]:
    new = f" ({words.new_mark})" if row.new else ""
    since = f"{words.since(section)} {layout.time(row.report.since_us)}"
    return {
        "name": teams_escape(row.device + new),
        "value": teams_escape(f"{words.value(row.report.value)} — {since}"),
    }
