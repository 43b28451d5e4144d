"""The README's option reference is generated from the CLI and must match it."""

from __future__ import annotations

from pathlib import Path

from iotmon.cli.reference import END, START, render_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_option_reference_is_in_sync_with_the_cli() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == render_reference().strip(), "run `make docs`"


def test_quick_start_names_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in quick and "make test" in quick
