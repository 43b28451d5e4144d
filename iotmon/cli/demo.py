"""`iotmon demo`."""

from __future__ import annotations

import typer

from iotmon.cli import app


@app.command("demo")
def demo() -> None:
    """Not implemented yet."""
    typer.echo("iotmon demo: not implemented yet", err=True)
    raise typer.Exit(2)
