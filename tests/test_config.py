"""`iotmon config show` and configuration layering: defaults < TOML file < IOTMON_* < flags,
one clear line (exit 2) for bad input, secrets masked, per-device overrides reaching the
alert settings."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from iotmon.alerts import RuleBook, RuleOverride
from iotmon.cli import app
from iotmon.cli.config_cmd import config_app
from iotmon.cli.consume import consume_settings

runner = CliRunner()
# `config` on an app of its own: the tests must not change the real one (whose option
# reference the README is checked against); it resolves values through the real `consume`.
cli = typer.Typer()
cli.add_typer(config_app, name="config")


@pytest.fixture(autouse=True)
def _no_iotmon_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own IOTMON_* settings must not leak into the expected values.
    for name in list(os.environ):
        if name.startswith("IOTMON_"):
            monkeypatch.delenv(name)


def show(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(cli, ["config", "show", *args], env=env)


def show_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = show("--json", *args, env=env)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write(
        tmp_path / "iotmon.toml",
        'threshold = 70.0\nmail-to = ["file@example.com"]\nstate-dir = "/from/file"\n'
        '[consume]\ngroup = "from-file"\n',
    )


def test_defaults_without_file_env_or_flags() -> None:
    doc = show_json()
    assert doc["config_file"] is None
    assert doc["options"]["threshold"] == 75.0
    assert doc["options"]["mail-to"] == []
    assert doc["options"]["state-dir"] == ".iotmon-state"
    assert set(doc["sources"].values()) == {"default"}


def test_file_beats_defaults(config_file: Path) -> None:
    doc = show_json("--config", str(config_file))
    assert doc["config_file"] == str(config_file)
    options, sources = doc["options"], doc["sources"]
    assert options["threshold"] == 70.0
    assert options["mail-to"] == ["file@example.com"]
    assert options["state-dir"] == "/from/file"
    assert options["group"] == "from-file"  # from the [consume] table
    assert sources["threshold"] == sources["group"] == "config file"
    assert sources["metric"] == "default"


def test_environment_beats_file(config_file: Path) -> None:
    env = {
        "IOTMON_THRESHOLD": "72.5",
        "IOTMON_MAIL_TO": "env1@example.com env2@example.com",
        "IOTMON_STATE_DIR": "/from/env",
    }
    doc = show_json("--config", str(config_file), env=env)
    options, sources = doc["options"], doc["sources"]
    assert options["threshold"] == 72.5
    assert options["mail-to"] == ["env1@example.com", "env2@example.com"]
    assert options["state-dir"] == "/from/env"
    assert sources["threshold"] == sources["mail-to"] == sources["state-dir"] == "environment"


@pytest.mark.parametrize(
    ("variable", "option"), [("IOTMON_LIVE", "live"), ("IOTMON_CHANGELOG", "changelog")]
)
def test_on_off_flags_read_their_plain_variable(variable: str, option: str) -> None:
    """``--live/--no-live`` reads ``IOTMON_LIVE`` (it once read ``IOTMON_LIVE/__NO_LIVE``)."""
    doc = show_json(env={variable: "false"})
    assert doc["options"][option] is False
    assert doc["sources"][option] == "environment"


def test_flags_beat_environment_and_file(config_file: Path) -> None:
    env = {"IOTMON_THRESHOLD": "72.5", "IOTMON_MAIL_TO": "env@example.com"}
    doc = show_json(
        "--config", str(config_file),
        "--threshold", "80",
        "--mail-to", "a@example.com", "--mail-to", "b@example.com",
        "--state-dir=/from/flag",
        env=env,
    )  # fmt: skip
    options, sources = doc["options"], doc["sources"]
    assert options["threshold"] == 80.0
    assert options["mail-to"] == ["a@example.com", "b@example.com"]
    assert options["state-dir"] == "/from/flag"
    assert sources["threshold"] == sources["mail-to"] == sources["state-dir"] == "flag"


def test_config_file_from_the_environment(config_file: Path) -> None:
    doc = show_json(env={"IOTMON_CONFIG": str(config_file)})
    assert doc["options"]["threshold"] == 70.0


def test_toml_output_is_valid_toml_with_the_same_values(config_file: Path) -> None:
    env = {"IOTMON_THRESHOLD": "72.5"}
    result = show("--config", str(config_file), "--once", env=env)
    assert result.exit_code == 0, result.output
    parsed = tomllib.loads(result.stdout)
    doc = show_json("--config", str(config_file), "--once", env=env)
    expected = {k: v for k, v in doc["options"].items() if v is not None}
    assert parsed == expected
    assert "# environment IOTMON_THRESHOLD" in result.stdout
    assert "# input = (not set)" in result.stdout


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_unknown_option_in_the_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "threshold = 80\nthreshhold = 90\n")
    line = one_error_line(show("--config", str(path)))
    assert "threshhold" in line and str(path) in line


def test_unknown_option_in_a_command_table(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[consume]\nsmtp-hots = 'mail'\n")
    line = one_error_line(show("--config", str(path)))
    assert "smtp-hots" in line


def test_invalid_choice_flag_is_one_line_naming_the_option() -> None:
    line = one_error_line(show("--metric", "median"))
    assert "metric" in line and "median" in line


def test_invalid_number_in_the_file_names_file_and_option(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", 'threshold = "hot"\n')
    line = one_error_line(show("--config", str(path)))
    assert "threshold" in line and "hot" in line and str(path) in line


def test_invalid_environment_value_names_the_variable() -> None:
    line = one_error_line(show(env={"IOTMON_THRESHOLD": "hot"}))
    assert "IOTMON_THRESHOLD" in line


def test_invalid_address_is_one_line() -> None:
    line = one_error_line(show("--mail-to", "not-an-address"))
    assert "mail-to" in line


def test_unknown_flag_is_one_line() -> None:
    line = one_error_line(show("--no-such-option"))
    assert "--no-such-option" in line


@pytest.mark.parametrize("as_json", [False, True])
def test_smtp_password_is_masked(as_json: bool) -> None:
    env = {"IOTMON_SMTP_PASSWORD": "hunter2-secret", "IOTMON_SMTP_HOST": "smtp.example.com"}
    result = show(*(["--json"] if as_json else []), "--smtp-user", "alerts", env=env)
    assert result.exit_code == 0, result.output
    assert "hunter2-secret" not in result.output
    if as_json:
        doc = json.loads(result.stdout)
        assert doc["options"]["smtp-password"] == "***"
        assert doc["sources"]["smtp-password"] == "environment"
        assert doc["options"]["smtp-user"] == "alerts"
    else:
        assert 'smtp-password = "***"  # environment IOTMON_SMTP_PASSWORD' in result.stdout


def test_no_password_shows_as_unset() -> None:
    doc = show_json()
    assert doc["options"]["smtp-password"] is None


OVERRIDES = """\
threshold = 75.0

[[overrides]]
match = "Equipament-0323XH-1*"
threshold = 70.0
clear_below = 67.0
for = 30
recipients = ["line1@example.com"]

[[overrides]]
match = "Equipament-0323XH-9*"
recipients = "line9@example.com"
"""


def test_overrides_reach_the_alert_settings(tmp_path: Path) -> None:
    path = write(tmp_path / "overrides.toml", OVERRIDES)
    # Through consume's real option parsing, exactly as `iotmon consume --config` does.
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    ctx = root.commands["consume"].make_context("consume", ["--config", str(path)])
    settings = consume_settings(ctx)
    assert settings.alerts.overrides == (
        RuleOverride(
            match="Equipament-0323XH-1*",
            threshold=70.0,
            clear_below=67.0,
            for_seconds=30.0,
            recipients=("line1@example.com",),
        ),
        RuleOverride(match="Equipament-0323XH-9*", recipients=("line9@example.com",)),
    )
    # The first matching glob decides; other devices keep the global rule.
    book = RuleBook(settings.alerts)
    assert book.rule_for("Equipament-0323XH-123AB").threshold == 70.0
    assert book.rule_for("Equipament-0323XH-523AB").threshold == 75.0


def test_overrides_are_shown(tmp_path: Path) -> None:
    path = write(tmp_path / "overrides.toml", OVERRIDES)
    doc = show_json("--config", str(path))
    assert [o["match"] for o in doc["overrides"]] == [
        "Equipament-0323XH-1*",
        "Equipament-0323XH-9*",
    ]
    result = show("--config", str(path))
    assert tomllib.loads(result.stdout)["overrides"][0]["for"] == 30


def test_bad_override_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", '[[overrides]]\nmatch = "E*"\nthreshhold = 70\n')
    line = one_error_line(show("--config", str(path)))
    assert "threshhold" in line and "E*" in line


def test_file_keys_may_be_the_flag_names_that_are_python_keywords(tmp_path: Path) -> None:
    path = write(tmp_path / "k.toml", 'for = 5.0\nfrom = "latest"\n[consume]\nclear-below = 70\n')
    options = show_json("--config", str(path))["options"]
    assert (options["for"], options["from"], options["clear-below"]) == (5.0, "latest", 70.0)
