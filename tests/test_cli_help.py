"""`--help` shows each option's help as written: typer renders help texts as Rich markup,
where a bracketed ``[default: …]`` is taken for a style tag and silently dropped."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import typer.main

from iotmon.cli import app
from tests.helpers import iotmon

# What Rich would take for a tag: "[" then a letter, "#", "/" or "@" (rich.markup's RE_TAGS).
BRACKETED = re.compile(r"\[[A-Za-z#/@][^\[\]]*\]")


def commands() -> dict[str, Any]:
    """Every command line that has its own ``--help``: ``consume``, ``config show``, …"""
    root: Any = typer.main.get_command(app)
    found: dict[str, Any] = {}
    for name, command in root.commands.items():
        for sub, child in getattr(command, "commands", {}).items():
            found[f"{name} {sub}"] = child
        found[name] = command
    return found


def bracketed_phrases(command: Any) -> set[str]:
    phrases: set[str] = set()
    for param in command.params:
        if getattr(param, "help", None):
            # As written in the source: an escaped "\\[" (cli.common.plain) is a "[".
            phrases.update(BRACKETED.findall(param.help.replace("\\[", "[")))
    return phrases


def help_output(command_line: str) -> str:
    # Wide enough that Rich never wraps a phrase across table rows.
    env = {**os.environ, "COLUMNS": "1000", "TERMINAL_WIDTH": "1000", "NO_COLOR": "1"}
    result = iotmon(*command_line.split(), "--help", env=env)
    return " ".join(result.stdout.decode().split())


def test_consume_help_shows_bracketed_defaults() -> None:
    shown = help_output("consume")
    assert "Changelog topic [default: iotmon-<group>-changelog]." in shown
    assert "Serve Prometheus metrics on this port [default: off]." in shown
    assert "A firing device resolves below this [default: threshold - 2]." in shown
    for phrase in bracketed_phrases(commands()["consume"]):
        assert phrase in shown, phrase


@pytest.mark.parametrize(
    "command_line",
    sorted(
        name for name, cmd in commands().items() if name != "consume" and bracketed_phrases(cmd)
    ),
)
def test_other_commands_show_bracketed_help(command_line: str) -> None:
    shown = help_output(command_line)
    for phrase in bracketed_phrases(commands()[command_line]):
        assert phrase in shown, phrase
