"""Alert settings validation and per-device rule resolution (pure logic)."""

from __future__ import annotations

import pytest

from iotmon.alerts import AlertSettings, RuleBook, RuleOverride


def test_defaults_follow_the_issue() -> None:
    settings = AlertSettings()
    assert settings.threshold == 75.0
    assert settings.metric == "window"
    assert settings.for_seconds == 60.0
    assert settings.effective_clear_below == 73.0
    assert settings.stale_after is None
    assert (settings.group_wait, settings.group_interval) == (10.0, 60.0)
    assert settings.repeat_interval == 4 * 3600.0


def test_default_rule_is_the_global_settings_in_microseconds() -> None:
    rule = RuleBook(AlertSettings(for_seconds=0.3)).rule_for("sensor01")
    assert rule.threshold == 75.0
    assert rule.clear_below == 73.0
    assert rule.for_us == 300_000  # not 299_999: seconds are rounded, not truncated
    assert rule.recipients == ()


def test_first_matching_override_wins() -> None:
    settings = AlertSettings(
        overrides=(
            RuleOverride(match="freezer-*", threshold=-10.0, clear_below=-15.0),
            RuleOverride(match="*-01", threshold=99.0),
            RuleOverride(match="freezer-01", threshold=0.0),
        )
    )
    book = RuleBook(settings)
    assert book.rule_for("freezer-01").threshold == -10.0
    assert book.rule_for("freezer-01").clear_below == -15.0
    assert book.rule_for("oven-01").threshold == 99.0
    assert book.rule_for("oven-02").threshold == 75.0


def test_override_without_clear_below_keeps_the_global_gap() -> None:
    settings = AlertSettings(
        threshold=75.0, clear_below=70.0, overrides=(RuleOverride(match="oven*", threshold=90.0),)
    )
    assert RuleBook(settings).rule_for("oven1").clear_below == 85.0


def test_override_recipients_and_for() -> None:
    settings = AlertSettings(
        overrides=(
            RuleOverride(
                match="lab-*", for_seconds=0, recipients=("b@example.com", "a@example.com")
            ),
        )
    )
    rule = RuleBook(settings).rule_for("lab-7")
    assert rule.for_us == 0
    # Sorted: the recipient set is the digest group key, so order must not split groups.
    assert rule.recipients == ("a@example.com", "b@example.com")


def test_glob_is_case_sensitive() -> None:
    settings = AlertSettings(overrides=(RuleOverride(match="Sensor*", threshold=10.0),))
    assert RuleBook(settings).rule_for("sensor1").threshold == 75.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clear_below": 80.0}, "clear-below"),
        ({"threshold": float("nan")}, "threshold"),
        ({"for_seconds": -1.0}, "for"),
        ({"group_interval": 0.0}, "group-interval"),
        ({"stale_after": 0.0}, "stale-after"),
        ({"metric": "median"}, "metric"),
        ({"overrides": (RuleOverride(match="x", threshold=50.0, clear_below=60.0),)}, "'x'"),
    ],
)
def test_bad_settings_are_refused_with_the_option_named(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AlertSettings(**kwargs)  # type: ignore[arg-type]


def test_bad_override_recipient_is_refused() -> None:
    with pytest.raises(ValueError, match="recipients"):
        RuleOverride(match="x", recipients=("ops@example.com\r\nBcc: x@y",))
    with pytest.raises(ValueError, match="recipients"):
        RuleOverride(match="x", recipients=())


def test_override_from_a_config_file_table() -> None:
    override = RuleOverride.from_mapping(
        {"match": "oven-*", "threshold": 90, "for": 30, "recipients": "oven@example.com"}
    )
    assert override == RuleOverride(
        match="oven-*", threshold=90.0, for_seconds=30.0, recipients=("oven@example.com",)
    )
    with pytest.raises(ValueError, match=r"unknown key.*treshold"):
        RuleOverride.from_mapping({"match": "x", "treshold": 90})
    with pytest.raises(ValueError, match="threshold must be a number"):
        RuleOverride.from_mapping({"match": "x", "threshold": "hot"})
    with pytest.raises(ValueError, match="match"):
        RuleOverride.from_mapping({"threshold": 90})
