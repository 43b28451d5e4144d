"""`iotmon status`: what a state directory's checkpoints hold."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import typer
from rich.console import Console

from iotmon.alerts.rules import DEFAULT_THRESHOLD
from iotmon.cli import app
from iotmon.cli.common import opt, user_errors
from iotmon.settings import Settings
from iotmon.views.console import device_table
from iotmon.views.status import read_status, silenced_in


@app.command("status")
def status(
    state_dir: Path = opt(
        Settings().state_dir, "--state-dir", help="The consumer's state directory."
    ),
    json_output: bool = opt(False, "--json", help="Print the stats as JSON on stdout."),
    threshold: float = opt(
        DEFAULT_THRESHOLD, "--threshold", help="Highlight devices above this, °C."
    ),
    top: int = opt(15, "--top", help="How many devices the table shows."),
) -> None:
    """Print the per-device stats and alert states held in a state directory's checkpoints."""
    with user_errors():
        report = read_status(state_dir)
        silenced = silenced_in(state_dir, report.alert_states)
    if json_output:
        doc = report.to_json()
        doc["alert_states"] = report.alert_states
        doc["partitions"] = report.partitions
        doc["silenced"] = silenced
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        return
    console = Console()
    console.print(device_table(report, threshold=threshold, limit=top, silenced=set(silenced)))
    typer.echo(
        f"readings={report.readings} accepted={report.accepted} rejected={report.rejected} "
        f"late={report.late} devices={len(report.devices)} partitions={len(report.partitions)} "
        f"silenced={len(silenced)}"
    )
