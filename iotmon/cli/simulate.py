"""`iotmon simulate`: a stable fleet of temperature sensors, in the seed's JSON-lines format."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import IO

import orjson
import typer

from iotmon.cli import app
from iotmon.cli.common import describe, opt
from iotmon.errors import ConfigError
from iotmon.kafka.settings import COMPRESSIONS, DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_TOPIC
from iotmon.parse import parse_event_time
from iotmon.tools.fleet import DEFAULT_BEHAVIOUR
from iotmon.tools.readings import Readings
from iotmon.tools.simulate import SimulateSettings, build_readings, write_lines
from iotmon.views.progress import Progress

_KAFKA = "Kafka output (used when --bootstrap-servers or --topic is given)"
_BEHAVIOUR = "Behaviour"


def _parse_start(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_event_time(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--start") from exc


@app.command("simulate")
def simulate(
    devices: int = typer.Option(50, "--devices", min=1, help="Number of devices in the fleet."),
    count: int | None = typer.Option(
        None, "--count", min=0, help="Total lines to emit (default: until --duration or Ctrl-C)."
    ),
    duration: float | None = typer.Option(
        None,
        "--duration",
        min=0,
        help="Seconds of event time to cover (wall time without --start).",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Random seed; same seed + options = byte-identical output."
    ),
    start: str | None = typer.Option(
        None,
        "--start",
        help="Event time of the first reading (ISO 8601). Switches to simulated time: "
        "output is generated as fast as possible. Without it, event time is the wall clock.",
    ),
    period: float = typer.Option(
        1.0,
        "--period",
        min=0.000001,
        help="Seconds of event time between a device's readings (with --start).",
    ),
    rate: float | None = typer.Option(
        None, "--rate", min=0.001, help="Lines per wall-clock second (default: unlimited)."
    ),
    overheat_fraction: float = typer.Option(
        DEFAULT_BEHAVIOUR.overheat_fraction,
        "--overheat-fraction",
        min=0.0,
        max=1.0,
        rich_help_panel=_BEHAVIOUR,
        help="Share of devices that ramp up to --overheat-to and stay there.",
    ),
    overheat_to: float = typer.Option(
        DEFAULT_BEHAVIOUR.overheat_to,
        "--overheat-to",
        rich_help_panel=_BEHAVIOUR,
        help="Overheat level in °C.",
    ),
    spike_rate: float = typer.Option(
        DEFAULT_BEHAVIOUR.spike_rate,
        "--spike-rate",
        min=0.0,
        max=1.0,
        rich_help_panel=_BEHAVIOUR,
        help="Probability that a reading is a one-off outlier (150-199 °C).",
    ),
    bad_rate: float = typer.Option(
        DEFAULT_BEHAVIOUR.bad_rate,
        "--bad-rate",
        min=0.0,
        max=1.0,
        rich_help_panel=_BEHAVIOUR,
        help="Probability that a line is malformed (truncated, wrong type, missing field, NaN, "
        "wrong nesting).",
    ),
    late_rate: float = typer.Option(
        DEFAULT_BEHAVIOUR.late_rate,
        "--late-rate",
        min=0.0,
        max=1.0,
        rich_help_panel=_BEHAVIOUR,
        help="Probability that a reading's event time lags (out of order).",
    ),
    late_by: float = typer.Option(
        DEFAULT_BEHAVIOUR.late_by,
        "--late-by",
        min=0.0,
        rich_help_panel=_BEHAVIOUR,
        help="Maximum lag of a late reading, in seconds (drawn from 0.5-1 x this).",
    ),
    dropout_fraction: float = typer.Option(
        DEFAULT_BEHAVIOUR.dropout_fraction,
        "--dropout-fraction",
        min=0.0,
        max=1.0,
        rich_help_panel=_BEHAVIOUR,
        help="Share of devices that go silent part-way.",
    ),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Append to this txt log file instead of stdout."
    ),
    manifest: str | None = typer.Option(
        None, "--manifest", help="Write the fleet's ground truth here (JSON)."
    ),
    # Unlike the other Kafka options these two read no IOTMON_* variable: they switch the
    # output to Kafka, and an exported IOTMON_BOOTSTRAP_SERVERS must not hijack stdout.
    bootstrap_servers: str | None = typer.Option(
        None,
        "--bootstrap-servers",
        rich_help_panel=_KAFKA,
        help=f"Produce to Kafka at HOST:PORT (default {DEFAULT_BOOTSTRAP_SERVERS} when --topic "
        "is given).",
    ),
    topic: str | None = typer.Option(
        None, "--topic", rich_help_panel=_KAFKA, help=f"Kafka topic (default {DEFAULT_TOPIC})."
    ),
    compression: str = opt(
        "none",
        "--compression",
        rich_help_panel=_KAFKA,
        help=f"Batch compression: {'|'.join(COMPRESSIONS)} (lz4/zstd/snappy need cramjam).",
    ),
    acks: str = opt("all", "--acks", rich_help_panel=_KAFKA, help="1 or all."),
    linger_ms: int = typer.Option(
        30, "--linger-ms", min=0, rich_help_panel=_KAFKA, help="Batching delay."
    ),
    partitions: int = typer.Option(
        6, "--partitions", min=1, rich_help_panel=_KAFKA, help="Partitions if the topic is new."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr."),
) -> None:
    """Emit readings from a stable, deterministic fleet in the seed's JSON-lines format.

    Output: stdout, a txt log (--output, appended) or Kafka keyed by id_equipamento.

    --manifest records which devices overheat, spike, send bad lines or drop out, and when.
    """
    # Imported here, not at the top: registering this command must not load aiokafka for
    # every other one (a file-mode `consume` never needs it).
    from aiokafka.errors import KafkaError

    from iotmon.kafka.admin import KafkaUnavailableError, quiet_aiokafka
    from iotmon.tools.produce import ProduceError, ProducerSettings, produce_lines

    to_kafka = bootstrap_servers is not None or topic is not None
    if to_kafka and output is not None:
        raise typer.BadParameter("use either --output or Kafka, not both", param_hint="--output")
    settings = SimulateSettings(
        devices=devices,
        count=count,
        duration=duration,
        seed=seed,
        start_us=_parse_start(start),
        period=period,
        rate=rate,
        overheat_fraction=overheat_fraction,
        overheat_to=overheat_to,
        spike_rate=spike_rate,
        bad_rate=bad_rate,
        late_rate=late_rate,
        late_by=late_by,
        dropout_fraction=dropout_fraction,
    )
    try:
        kafka = (
            ProducerSettings(
                bootstrap_servers=bootstrap_servers or DEFAULT_BOOTSTRAP_SERVERS,
                topic=topic or DEFAULT_TOPIC,
                compression=compression,
                acks=acks,
                linger_ms=linger_ms,
                partitions=partitions,
                rate=rate,
                client_id="iotmon-simulate",
            )
            if to_kafka
            else None
        )
        readings = build_readings(settings)
    except (ConfigError, ProduceError) as exc:
        raise typer.BadParameter(describe(exc)) from exc

    if seed is None and not quiet:
        typer.echo(f"simulate: seed {readings.fleet.seed}", err=True)
    if kafka is not None:
        where = f"{kafka.topic}@{kafka.bootstrap_servers}"
    else:
        where = str(output) if output is not None else "stdout"
    # stdout carries the data; progress only when it goes somewhere else.
    progress = Progress(f"simulate → {where}", total=count, enabled=not quiet and where != "stdout")
    code = 0
    try:
        if kafka is not None:
            with quiet_aiokafka():
                asyncio.run(produce_lines(readings, kafka, progress=progress))
        elif output is not None:
            with open(output, "ab") as out:
                write_lines(readings, out, rate=rate, progress=progress)
        else:
            write_lines(readings, sys.stdout.buffer, rate=rate, progress=progress)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        _silence_stdout()
    except (KafkaUnavailableError, ProduceError) as exc:
        typer.echo(f"iotmon simulate: error: {describe(exc)}", err=True)
        code = 1
    except KafkaError as exc:
        typer.echo(f"iotmon simulate: error: Kafka failed: {exc!r} — check the broker", err=True)
        code = 1
    except OSError as exc:
        typer.echo(f"iotmon simulate: error: cannot write to {where}: {exc}", err=True)
        code = 1
    finally:
        progress.close(summary=code != 1)
        if manifest is not None:
            _write_manifest(manifest, readings)
    if code:
        raise typer.Exit(code)


def _write_manifest(path: str, readings: Readings) -> None:
    data = orjson.dumps(readings.manifest(), option=orjson.OPT_INDENT_2) + b"\n"
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        typer.echo(
            f"iotmon simulate: error: cannot write manifest {path}: {exc.strerror}", err=True
        )
        raise typer.Exit(1) from exc


def _silence_stdout() -> None:
    # The reader went away (`| head`): point stdout at /dev/null so the interpreter's final
    # flush does not print a BrokenPipeError traceback.
    stream: IO[bytes] = sys.stdout.buffer
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
