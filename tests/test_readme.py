"""The README gets a newcomer started and links the rest; the option reference it links is
generated from the CLI and must match it."""

from __future__ import annotations

import re
from pathlib import Path

from iotmon.cli.reference import END, REFERENCE, START, render_reference

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_option_reference_is_in_sync_with_the_cli() -> None:
    text = (ROOT / REFERENCE).read_text(encoding="utf-8")
    section = text.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == render_reference().strip(), "run `make docs`"


def test_quick_start_names_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in quick and "make test" in quick


def test_readme_links_the_reference_and_the_benchmarks_and_every_link_resolves() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert {"docs/reference.md", "docs/benchmarks.md"} <= set(links)
    for docs in ("docs/reference.md", "docs/benchmarks.md"):
        page = (ROOT / docs).read_text(encoding="utf-8")
        links += [str(Path(docs).parent / link) for link in re.findall(r"\]\(([^)#:]+)", page)]
    missing = [link for link in links if not (ROOT / link).resolve().exists()]
    assert not missing, f"links to missing files: {missing}"
