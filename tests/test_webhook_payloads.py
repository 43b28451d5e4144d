"""Webhook bodies validated against the shapes the receivers document.

Slack (api.slack.com/reference/block-kit/blocks, /messaging/webhooks): a message is
``{"text", "blocks"}``; at most 50 blocks; a ``header`` block's text is ``plain_text`` of at
most 150 characters; ``section`` text and ``context`` elements are ``mrkdwn``/``plain_text``
objects, a section's text at most 3000 characters; ``&``, ``<``, ``>`` must be escaped in
mrkdwn (they start links and mentions). Teams (learn.microsoft.com, "Legacy actionable
message card reference"): ``@type`` MessageCard, ``@context`` https://schema.org/extensions,
``summary`` or ``text`` required, ``themeColor`` a hex colour, ``sections`` of ``facts``
(name/value strings); webhook bodies up to about 28 KB.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from iotmon.notify import DeviceReport, Digest
from iotmon.notify.layout import hottest_first
from iotmon.notify.webhook_payloads import JSON_SCHEMA, MAX_JSON_LISTED
from iotmon.notify.webhook_payloads import render_webhook as _render

S = 1_000_000
T0 = 1_678_882_537 * S
HOSTILE = (
    "<!channel> <https://evil.example|click> &amp; [x](https://evil.example) "
    "<b>bold</b> *star* _under_ `tick` \r\nInjected: yes \u202e"
)


def render_webhook(
    digest: Digest, *, format: Any, lang: Any = "en", timezone: str = "UTC"
) -> bytes:
    return _render(digest, format=format, lang=lang, timezone=timezone)


def report(device: str, value: float, *, new: bool = True) -> DeviceReport:
    return DeviceReport(
        device=device,
        value=value,
        window_mean=value,
        running_mean=value - 1,
        max=value + 5,
        threshold=75.0,
        clear_below=73.0,
        since_us=T0,
        last_seen_us=T0 + 3 * S,
        new=new,
    )


def digest(firing: int = 2, *, device: str | None = None, resolved: int = 0) -> Digest:
    return Digest(
        digest_id="ab" * 16,
        kind="change",
        slot_us=T0 + 10 * S,
        recipients=(),
        metric="window",
        firing=tuple(
            report(device or f"sensor{n:05d}", 76.0 + n % 97, new=n % 3 == 0) for n in range(firing)
        ),
        resolved=tuple(report(f"cool{n}", 70.0) for n in range(resolved)),
        silenced=4,
    )


# -- validators of the documented shapes ----------------------------------------------------


def _text_object(obj: Any, *, types: tuple[str, ...], limit: int) -> str:
    assert isinstance(obj, dict) and obj.get("type") in types, obj
    text = obj["text"]
    assert isinstance(text, str) and 1 <= len(text) <= limit, (len(text), text[:80])
    return text


def _unescaped_mrkdwn(text: str) -> None:
    # After escaping, the only & starts an entity, and no < or > is left.
    assert "<" not in text and ">" not in text, text
    assert not re.search(r"&(?!amp;|lt;|gt;)", text), text


def validate_slack(doc: Any) -> list[str]:
    """The message's mrkdwn texts, after checking the Block Kit constraints."""
    assert set(doc) == {"text", "blocks"}
    assert isinstance(doc["text"], str) and doc["text"]
    blocks = doc["blocks"]
    assert isinstance(blocks, list) and 1 <= len(blocks) <= 50
    texts = []
    for block in blocks:
        kind = block["type"]
        assert kind in ("header", "section", "context", "divider"), block
        if kind == "header":
            _text_object(block["text"], types=("plain_text",), limit=150)
        elif kind == "section":
            texts.append(_text_object(block["text"], types=("mrkdwn",), limit=3000))
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
            texts += [_text_object(e, types=("mrkdwn",), limit=3000) for e in block["elements"]]
    for text in texts:
        _unescaped_mrkdwn(text)
    return texts


def validate_teams(doc: Any) -> list[dict[str, str]]:
    """The card's facts, after checking the MessageCard shape."""
    assert doc["@type"] == "MessageCard"
    assert doc["@context"] == "https://schema.org/extensions"
    assert isinstance(doc["summary"], str) and doc["summary"]
    assert re.fullmatch(r"[0-9A-Fa-f]{6}", doc["themeColor"])
    assert isinstance(doc["title"], str)
    facts = []
    for section in doc["sections"]:
        assert isinstance(section["activityTitle"], str)
        for fact in section["facts"]:
            assert set(fact) == {"name", "value"}
            assert all(isinstance(v, str) and v for v in fact.values())
            facts.append(fact)
    assert len(orjson.dumps(doc)) <= 28_000
    return facts


def validate_json(doc: Any) -> None:
    assert doc["schema"] == JSON_SCHEMA
    assert isinstance(doc["digest_id"], str) and doc["kind"] in ("change", "reminder")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", doc["slot"])
    assert isinstance(doc["silenced"], int)
    for section in ("firing", "resolved", "stale", "recovered"):
        for device in doc[section]:
            assert set(device) == {
                *("device", "value", "window_mean", "running_mean", "max", "threshold"),
                *("clear_below", "since", "since_us", "last_seen", "last_seen_us", "new"),
            }
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", device["since"])
        assert isinstance(doc["unlisted"][section], int)


# -- the tests -------------------------------------------------------------------------------


def test_json_carries_the_documented_schema_with_times_in_utc_and_microseconds() -> None:
    doc = orjson.loads(render_webhook(digest(2, resolved=1), format="json"))
    validate_json(doc)
    assert doc["slot"] == "2023-03-15T12:15:47.000000Z"
    assert doc["slot_us"] == T0 + 10 * S
    assert doc["silenced"] == 4
    assert [d["device"] for d in doc["firing"]] == ["sensor00001", "sensor00000"]
    hottest = doc["firing"][0]
    assert hottest["value"] == 77.0 and hottest["max"] == 82.0 and hottest["new"] is False
    assert hottest["since"] == "2023-03-15T12:15:37.000000Z"
    assert hottest["last_seen"] == "2023-03-15T12:15:40.000000Z"
    assert [d["device"] for d in doc["resolved"]] == ["cool0"]
    assert doc["unlisted"] == {"firing": 0, "resolved": 0, "stale": 0, "recovered": 0}


@pytest.mark.parametrize("lang", ["en", "pt-BR"])
def test_slack_message_is_valid_block_kit(lang: Any) -> None:
    doc = orjson.loads(render_webhook(digest(3, resolved=1), format="slack", lang=lang))
    texts = validate_slack(doc)
    body = "\n".join(texts)
    for device in ("sensor00000", "sensor00001", "sensor00002", "cool0"):
        assert device in body
    assert doc["blocks"][0]["type"] == "header"
    silenced = {"en": "4 devices silenced", "pt-BR": "4 sensores silenciados"}[lang]
    assert silenced in doc["blocks"][-1]["elements"][-1]["text"]


def test_teams_card_is_a_valid_message_card() -> None:
    doc = orjson.loads(
        render_webhook(digest(3, resolved=1), format="teams", timezone="America/Sao_Paulo")
    )
    facts = validate_teams(doc)
    assert len(facts) == 4
    assert doc["themeColor"] == "C62828"
    assert "America/Sao\\_Paulo" in doc["text"], "times are in --timezone, named once"
    assert "4 devices silenced" in doc["text"]


def test_a_hostile_device_id_cannot_inject_links_mentions_or_markup() -> None:
    one = digest(1, device=HOSTILE)
    slack = orjson.loads(render_webhook(one, format="slack"))
    texts = validate_slack(slack)
    joined = "\n".join(texts)
    assert "<!channel>" not in joined and "&lt;!channel&gt;" in joined
    assert "\r" not in joined and "\u202e" not in joined, "control characters are escaped"
    assert "\n" not in slack["blocks"][0]["text"]["text"]

    teams = orjson.loads(render_webhook(one, format="teams"))
    [fact] = validate_teams(teams)
    name = fact["name"]
    assert "<b>" not in name and "&lt;b&gt;" in name
    assert "[x](" not in name and "\\[x\\](" in name, "no markdown link survives"
    assert "*star*" not in name and "\\*star\\*" in name
    assert "\r" not in name and "\n" not in name

    doc = orjson.loads(render_webhook(one, format="json"))
    assert doc["firing"][0]["device"] == HOSTILE, "json keeps the id exactly, JSON-escaped"


@pytest.mark.parametrize("fmt", ["slack", "teams", "json"])
def test_fifty_thousand_devices_list_the_hottest_and_count_the_rest(fmt: Any) -> None:
    big = digest(50_000)
    body = render_webhook(big, format=fmt)
    doc = orjson.loads(body)
    # As in the email: new devices first, the hottest of them at the top.
    hottest = min((r for r in big.firing if r.new), key=hottest_first).device
    if fmt == "json":
        validate_json(doc)
        assert len(doc["firing"]) == MAX_JSON_LISTED
        assert doc["unlisted"]["firing"] == 50_000 - MAX_JSON_LISTED
        assert len(body) < 1_000_000
        return
    if fmt == "slack":
        texts = validate_slack(doc)
        listed = sum(text.count("\n•") for text in texts)
        assert f"{50_000 - listed:,} more" in texts[-2], texts[-2]
        assert "4 devices silenced" in texts[-1]
        assert any(hottest in text for text in texts)
    else:
        facts = validate_teams(doc)
        assert f"{50_000 - len(facts):,} more" in doc["text"]
        assert any(hottest in fact["name"] for fact in facts)
