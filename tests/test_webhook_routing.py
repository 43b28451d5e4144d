"""Per-device webhooks: override parsing, digest groups and identity, state (pure logic)."""

from __future__ import annotations

import dataclasses
import hashlib

import orjson
import pytest

from iotmon.addresses import redact_url, webhook_id
from iotmon.alerts import AlertSettings, RuleBook, RuleOverride
from iotmon.errors import ConfigError
from tests.test_digest import T0, change, due, scheduler


def test_an_override_names_its_webhooks_by_reference_and_rules_carry_only_ids() -> None:
    override = RuleOverride.from_mapping(
        {"match": "line3-*", "webhooks": ["env:LINE3", "file:/run/secrets/hook", "env:LINE3"]}
    )
    book = RuleBook(AlertSettings(overrides=(override,)))
    rule = book.rule_for("line3-oven")
    assert rule.webhooks == tuple(
        sorted({webhook_id("env:LINE3"), webhook_id("file:/run/secrets/hook")})
    )
    assert book.rule_for("line4-oven").webhooks == ()
    assert RuleOverride.from_mapping({"match": "x", "webhooks": "env:ONE"}).webhooks == ("env:ONE",)


@pytest.mark.parametrize(
    "webhooks",
    [[], ["ftp://host/x"], ["LINE3"], [3], "https://hooks.example/a b"],
)
def test_a_bad_webhook_reference_is_refused_without_showing_the_url(webhooks: object) -> None:
    with pytest.raises(ConfigError, match="webhook") as caught:
        RuleOverride.from_mapping({"match": "x", "webhooks": webhooks})
    assert "/a b" not in str(caught.value)


def test_redacted_urls_keep_scheme_and_host_only() -> None:
    assert redact_url("https://hooks.slack.com/services/T0/B0/xyz") == "https://hooks.slack.com/…"
    assert redact_url("http://user:pw@127.0.0.1:8080/?token=x") == "http://127.0.0.1:8080/…"
    assert redact_url("https://example.com") == "https://example.com/"
    assert redact_url("not a url") == "<unparsable URL>"


def test_devices_with_their_own_webhooks_get_their_own_digest() -> None:
    s = scheduler()
    s.add(change("room", "firing", 0))
    s.add(dataclasses.replace(change("oven", "firing", 0), webhooks=("abc123abc123",)))
    digests = due(s, 10)
    assert {d.webhooks: [r.device for r in d.firing] for d in digests} == {
        (): ["room"],
        ("abc123abc123",): ["oven"],
    }
    assert len({d.digest_id for d in digests}) == 2


def test_the_id_of_a_digest_without_own_webhooks_is_what_it_always_was() -> None:
    # Outboxes and checkpoints of older versions hold these ids: they must not move.
    s = scheduler()
    s.add(change("room", "firing", 0))
    [digest] = due(s, 10)
    slot = T0 + 10 * 1_000_000
    old = orjson.dumps([1, "change", slot, [], [["room", "firing", T0]]])
    assert digest.digest_id == hashlib.sha256(old).hexdigest()[:32]


def test_webhook_groups_survive_the_state_round_trip() -> None:
    s = scheduler()
    s.add(dataclasses.replace(change("oven", "firing", 0), webhooks=("abc123abc123",)))
    saved = orjson.loads(orjson.dumps(s.to_state()))
    restored = scheduler()
    restored.restore(saved)
    [digest] = due(restored, 10)
    assert digest.webhooks == ("abc123abc123",)
    assert [r.device for r in digest.firing] == ["oven"]


def test_a_state_written_before_webhooks_is_restored() -> None:
    s = scheduler()
    s.add(change("room", "firing", 0))
    state = s.to_state()
    for group in state["groups"]:
        del group["webhooks"]
        assert all(len(row) == 11 for row in group["queued"])
    restored = scheduler()
    restored.restore(state)
    [digest] = due(restored, 10)
    assert digest.webhooks == () and [r.device for r in digest.firing] == ["room"]
