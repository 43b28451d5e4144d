"""`iotmon produce`: load txt log files (or stdin) into a Kafka topic, one message per line."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from iotmon.cli import app
from iotmon.cli.common import describe, opt
from iotmon.kafka.settings import COMPRESSIONS, DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_TOPIC
from iotmon.tools.message_keys import DEFAULT_KEY_FIELD
from iotmon.views.progress import Progress

if TYPE_CHECKING:
    from iotmon.tools.produce import ProduceStats


@app.command("produce")
def produce(
    files: Annotated[list[str], typer.Argument(metavar="FILE", help="Log files; '-' is stdin.")],
    bootstrap_servers: str = opt(
        DEFAULT_BOOTSTRAP_SERVERS, "--bootstrap-servers", help="Kafka bootstrap HOST:PORT."
    ),
    topic: str = opt(DEFAULT_TOPIC, "--topic", help="Topic to produce to."),
    key_field: str = opt(
        DEFAULT_KEY_FIELD,
        "--key-field",
        help="Dotted JSON field used as message key ('' for no keys). Lines without it are "
        "sent without a key.",
    ),
    partitions: int = typer.Option(
        6, "--partitions", min=1, help="Partitions when the topic has to be created."
    ),
    create_topic: bool = typer.Option(
        True, "--create-topic/--no-create-topic", help="Create the topic if it is missing."
    ),
    acks: str = opt("all", "--acks", help="1 or all."),
    compression: str = opt(
        "none",
        "--compression",
        help=f"Batch compression: {'|'.join(COMPRESSIONS)} (lz4/zstd/snappy need cramjam).",
    ),
    linger_ms: int = typer.Option(30, "--linger-ms", min=0, help="Batching delay."),
    batch_size: int = typer.Option(
        512 * 1024, "--batch-size", min=1024, help="Maximum record batch size in bytes."
    ),
    skip_invalid: bool = typer.Option(
        False,
        "--skip-invalid",
        help="Drop lines that are not a JSON object instead of sending them (by default the "
        "consumer's dead-letter handling judges them).",
    ),
    rate: float | None = typer.Option(
        None, "--rate", min=0.001, help="Lines per second (default: as fast as possible)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr."),
) -> None:
    """Load JSON-lines files into a Kafka topic, keyed by a field (id_equipamento)."""
    # Imported here, not at the top: registering this command must not load aiokafka for
    # every other one (a file-mode `consume` never needs it).
    from aiokafka.errors import KafkaError

    from iotmon.kafka.admin import KafkaUnavailableError, quiet_aiokafka
    from iotmon.tools.produce import ProduceError, ProducerSettings, produce_files

    try:
        settings = ProducerSettings(
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            key_field=key_field or None,
            acks=acks,
            compression=compression,
            linger_ms=linger_ms,
            max_batch_size=batch_size,
            partitions=partitions,
            create_topic=create_topic,
            skip_invalid=skip_invalid,
            rate=rate,
        )
    except ProduceError as exc:
        raise typer.BadParameter(describe(exc)) from exc

    progress = Progress(f"produce → {topic}@{bootstrap_servers}", enabled=not quiet)
    stats: ProduceStats | None = None
    code = 0
    try:
        with quiet_aiokafka():
            stats = asyncio.run(
                produce_files(files, settings, progress=progress, stdin=sys.stdin.buffer)
            )
    except KeyboardInterrupt:
        code = 130
    except (KafkaUnavailableError, ProduceError) as exc:
        typer.echo(f"iotmon produce: error: {describe(exc)}", err=True)
        code = 1
    except KafkaError as exc:
        typer.echo(
            f"iotmon produce: error: Kafka failed: {exc!r} — check the broker at "
            f"{bootstrap_servers} (its log) and retry",
            err=True,
        )
        code = 1
    finally:
        progress.close(summary=code == 130)
    if stats is not None and not quiet:
        typer.echo(
            f"produce: {stats.sent:,} lines → {topic}@{bootstrap_servers} in "
            f"{stats.elapsed:.2f} s ({stats.rate:,.0f} lines/s); {stats.keyless:,} without key, "
            f"{stats.skipped_invalid:,} invalid skipped, {stats.skipped_empty:,} empty skipped",
            err=True,
        )
    if code:
        raise typer.Exit(code)
