"""The `iotmon` command line: parses options into settings and calls the library."""

from __future__ import annotations

import typer

from iotmon._version import __version__

app = typer.Typer(
    name="iotmon",
    help="Real-time monitor for equipment temperature streams (Kafka, log files or stdin).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"iotmon {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Show the version and exit.",
    ),
) -> None:
    """iotmon: per-device running and sliding temperature averages, with debounced email alerts."""


def _register() -> None:
    # Each command lives in its own module; importing it registers it on `app`.
    from iotmon.cli import (  # noqa: F401
        config_cmd,
        consume,
        demo,
        produce,
        repartition,
        silence,
        simulate,
        status,
    )

    app.add_typer(config_cmd.config_app, name="config")
    app.add_typer(silence.silence_app, name="silence")


_register()


def main() -> None:
    app()
