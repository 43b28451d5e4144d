"""`iotmon repartition`: copy a topic into another one keyed by device."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import typer

from iotmon.cli import app
from iotmon.cli.common import describe, opt, plain
from iotmon.kafka.settings import DEFAULT_BOOTSTRAP_SERVERS
from iotmon.tools.message_keys import DEFAULT_KEY_FIELD
from iotmon.views.progress import Progress

if TYPE_CHECKING:
    from iotmon.tools.repartition import RepartitionSettings, RepartitionStats


@app.command("repartition")
def repartition_command(
    from_topic: str = typer.Option(..., "--from-topic", help="Topic to read (e.g. unkeyed)."),
    to_topic: str = typer.Option(..., "--to-topic", help="Topic to write, keyed by device."),
    key_field: str = opt(
        DEFAULT_KEY_FIELD, "--key-field", help="Dotted JSON field that identifies a device."
    ),
    partitions: int = typer.Option(
        6, "--partitions", min=1, help="Partitions of --to-topic when it has to be created."
    ),
    bootstrap_servers: str = opt(
        DEFAULT_BOOTSTRAP_SERVERS, "--bootstrap-servers", help="Kafka bootstrap HOST:PORT."
    ),
    group: str = typer.Option(
        "",
        "--group",
        help=plain(
            "Consumer group that keeps this copy's progress "
            "[default: iotmon-repartition-<from>-<to>]."
        ),
    ),
    once: bool = typer.Option(
        False, "--once", help="Stop at the end of --from-topic as it is now (else follow it)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr."),
) -> None:
    """Copy a topic into another one keyed by device, so each device is in one partition.

    At-least-once: after a crash the copy resumes from its last commit and may repeat a few
    seconds of messages in --to-topic. Let it finish (--once) before consuming the copy.
    """
    # Imported here, not at the top: registering this command must not load aiokafka for
    # every other one (a file-mode `consume` never needs it).
    from aiokafka.errors import KafkaError

    from iotmon.kafka.admin import KafkaUnavailableError, quiet_aiokafka
    from iotmon.tools.produce import ProduceError
    from iotmon.tools.repartition import RepartitionError, RepartitionSettings

    try:
        settings = RepartitionSettings(
            bootstrap_servers=bootstrap_servers,
            from_topic=from_topic,
            to_topic=to_topic,
            key_field=key_field,
            partitions=partitions,
            group=group or None,
            once=once,
        )
    except RepartitionError as exc:
        raise typer.BadParameter(describe(exc)) from exc
    progress = Progress(f"repartition {from_topic} → {to_topic}", enabled=not quiet)
    code = 0
    stats: RepartitionStats | None = None
    try:
        with quiet_aiokafka():
            stats = asyncio.run(_run(settings, progress))
    except (KafkaUnavailableError, RepartitionError, ProduceError) as exc:
        typer.echo(f"iotmon repartition: error: {describe(exc)}", err=True)
        code = 1
    except KafkaError as exc:
        typer.echo(
            f"iotmon repartition: error: Kafka failed: {exc!r} — check the broker at "
            f"{bootstrap_servers} and run it again (it resumes from its last commit)",
            err=True,
        )
        code = 1
    finally:
        progress.close(summary=False)
    if stats is not None and stats.produced is not None and not quiet:
        produced = stats.produced
        typer.echo(
            f"repartition: {stats.read:,} messages from {from_topic} → {produced.sent:,} to "
            f"{to_topic} in {stats.elapsed:.2f} s; {produced.keyless:,} without a "
            f"{key_field!r} field (spread round-robin), {produced.skipped_empty:,} empty skipped",
            err=True,
        )
    if code:
        raise typer.Exit(code)


async def _run(settings: RepartitionSettings, progress: Progress) -> RepartitionStats:
    from iotmon.tools.repartition import repartition

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await repartition(settings, progress=progress, stop=stop)
