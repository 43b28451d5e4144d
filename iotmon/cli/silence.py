"""`iotmon silence add|list|expire`: hold back notifications about devices for a while.

Silences live where the consumer keeps its state, decided as `iotmon consume` decides it:
with ``--input`` (a file or stdin) in ``--state-dir``; otherwise in the Kafka group's
silences topic at ``--bootstrap-servers``. The same flags, ``IOTMON_*`` variables, reach
the same consumers.

Registered on the root app by ``iotmon.cli._register()``.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import typer
from rich.console import Console
from rich.table import Table

from iotmon.alerts.silences import (
    Silence,
    SilenceStore,
    new_silence,
    parse_duration,
    parse_time,
)
from iotmon.cli.common import opt, run_async, user_errors
from iotmon.display import printable
from iotmon.kafka.admin import quiet_aiokafka
from iotmon.settings import Settings

__all__ = ["silence_app"]

silence_app = typer.Typer(
    name="silence",
    help="Hold back notifications about devices for a while (their alerts keep running).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DEFAULTS: Final = Settings()
_KAFKA: Final = _DEFAULTS.source.kafka
WHERE = "Where the consumer keeps its silences"


def _where() -> dict[str, Any]:
    return {
        "input": opt(
            None,
            "--input",
            help="The consumer reads a file or stdin (its --input): silences are kept in "
            "--state-dir. Without it: in the Kafka group's topic iotmon-<group>-silences.",
            rich_help_panel=WHERE,
        ),
        "state_dir": opt(
            _DEFAULTS.state_dir,
            "--state-dir",
            help="The consumer's state directory (with --input).",
            rich_help_panel=WHERE,
        ),
        "bootstrap_servers": opt(
            _KAFKA.bootstrap_servers,
            "--bootstrap-servers",
            help="Kafka brokers, HOST:PORT[,HOST:PORT].",
            rich_help_panel=WHERE,
        ),
        "group": opt(_KAFKA.group, "--group", help="Kafka consumer group.", rich_help_panel=WHERE),
    }


_OPTIONS: Final = _where()


def _store(
    *, input: str | None, state_dir: Path, bootstrap_servers: str, group: str
) -> SilenceStore:
    if input is not None:
        from iotmon.state.silences import FileSilenceStore

        return FileSilenceStore(state_dir, clock=time.time)
    from iotmon.kafka.silences import KafkaSilenceStore, silences_topic

    return KafkaSilenceStore(
        bootstrap_servers=bootstrap_servers, topic=silences_topic(group), clock=time.time
    )


@silence_app.command("add")
def add(
    pattern: str = typer.Argument(
        ..., help="Glob on the device key, as in per-device rules (quote it: 'Sensor-17*')."
    ),
    for_: str | None = typer.Option(
        None, "--for", help="How long: 90s, 15m, 2h, 1d, 1h30m (or --until)."
    ),
    until: str | None = typer.Option(
        None, "--until", help="Until this time, ISO 8601 (UTC unless it has an offset)."
    ),
    comment: str = typer.Option("", "--comment", help="Why (shown by `silence list`)."),
    by: str = typer.Option("", "--by", help="Who asked for it."),
    input: str | None = _OPTIONS["input"],
    state_dir: Path = _OPTIONS["state_dir"],
    bootstrap_servers: str = _OPTIONS["bootstrap_servers"],
    group: str = _OPTIONS["group"],
) -> None:
    """Silence the devices matching PATTERN now, for --for or until --until; prints its id."""
    with user_errors(), quiet_aiokafka():
        silence = new_silence(
            pattern=pattern,
            duration=None if for_ is None else parse_duration(for_),
            until=None if until is None else parse_time(until),
            comment=comment,
            created_by=by,
            now=time.time(),
        )
        store = _store(
            input=input, state_dir=state_dir, bootstrap_servers=bootstrap_servers, group=group
        )
        run_async(store.add(silence))
    typer.echo(silence.id)


@silence_app.command("list")
def list_(
    json_output: bool = typer.Option(False, "--json", help="Print them as JSON on stdout."),
    input: str | None = _OPTIONS["input"],
    state_dir: Path = _OPTIONS["state_dir"],
    bootstrap_servers: str = _OPTIONS["bootstrap_servers"],
    group: str = _OPTIONS["group"],
) -> None:
    """Show the silences, with whether each is active now."""
    with user_errors(), quiet_aiokafka():
        store = _store(
            input=input, state_dir=state_dir, bootstrap_servers=bootstrap_servers, group=group
        )
        silences = run_async(store.read())
    now = time.time()
    if json_output:
        docs = [{**s.to_json(), "state": s.state(now)} for s in silences]
        sys.stdout.buffer.write(orjson.dumps(docs, option=orjson.OPT_INDENT_2) + b"\n")
        return
    if not silences:
        typer.echo("no silences")
        return
    table = Table("id", "pattern", "state", "ends", "by", "comment")
    for s in silences:
        table.add_row(
            s.id,
            printable(s.pattern),
            s.state(now),
            _shown(s.ends_at),
            printable(s.created_by),
            printable(s.comment),
        )
    Console().print(table)


@silence_app.command("expire")
def expire(
    silence_id: str = typer.Argument(..., help="The id `silence add` printed (a prefix will do)."),
    input: str | None = _OPTIONS["input"],
    state_dir: Path = _OPTIONS["state_dir"],
    bootstrap_servers: str = _OPTIONS["bootstrap_servers"],
    group: str = _OPTIONS["group"],
) -> None:
    """End a silence now: notifications about its devices resume."""
    with user_errors(), quiet_aiokafka():
        store = _store(
            input=input, state_dir=state_dir, bootstrap_servers=bootstrap_servers, group=group
        )
        found: Silence = run_async(store.expire(silence_id))
    typer.echo(f"expired {found.id} ({printable(found.pattern)})")


def _shown(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
