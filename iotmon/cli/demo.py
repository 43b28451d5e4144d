"""`iotmon demo`: a simulated fleet streamed in time-lapse, with a local SMTP server."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from iotmon.cli import app
from iotmon.cli.common import in_cli_terms, opt, plain, setup_logging, user_errors
from iotmon.errors import ConfigError
from iotmon.kafka.settings import DEFAULT_BOOTSTRAP_SERVERS
from iotmon.notify import LANGUAGES, Language

if TYPE_CHECKING:
    from iotmon.tools.demo import DemoOptions
    from iotmon.tools.demo_inbox import ReceivedEmail

_FLEET = "Fleet"
_OUTPUT = "Output"


@app.command("demo")
def demo(
    devices: int = typer.Option(200, "--devices", min=1, help="Devices in the simulated fleet."),
    seed: int = typer.Option(20230315, "--seed", help="Fleet seed (same seed, same fleet)."),
    speed: float = typer.Option(
        20.0, "--speed", min=0.001, help="Time-lapse: seconds of event time per wall second."
    ),
    duration: float | None = typer.Option(
        None,
        "--duration",
        min=0.001,
        help=plain("Stop after this many wall seconds [default: Ctrl-C]."),
    ),
    overheat_fraction: float = typer.Option(
        0.1,
        "--overheat-fraction",
        min=0.0,
        max=1.0,
        rich_help_panel=_FLEET,
        help="Share of devices designed to overheat.",
    ),
    spike_rate: float = typer.Option(
        0.002,
        "--spike-rate",
        min=0.0,
        max=1.0,
        rich_help_panel=_FLEET,
        help="Probability of a one-off 150-199 °C reading (must not fire).",
    ),
    bad_rate: float = typer.Option(
        0.002,
        "--bad-rate",
        min=0.0,
        max=1.0,
        rich_help_panel=_FLEET,
        help="Probability of a malformed line (dead-lettered).",
    ),
    kafka: bool = typer.Option(
        False,
        "--kafka",
        help="Stream through a Kafka broker (a fresh topic) instead of in memory.",
    ),
    # The one option an exported IOTMON_* variable should steer: it points at the same broker
    # `consume` uses. The others stay demo-local, so a production IOTMON_STATE_DIR or
    # IOTMON_OUTBOX can never be written to by a demo.
    bootstrap_servers: str = opt(
        DEFAULT_BOOTSTRAP_SERVERS, "--bootstrap-servers", help="Kafka brokers for --kafka."
    ),
    keep_topic: bool = typer.Option(
        False, "--keep-topic", help="With --kafka: keep the demo topic afterwards."
    ),
    outbox: Path | None = typer.Option(
        None, "--outbox", help="Write .eml files here instead of mailing the demo's SMTP server."
    ),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help=plain(
            "Keep checkpoints, dead letters and the alerts log here "
            "[default: a temporary directory, removed at the end]."
        ),
    ),
    mail_to: list[str] = typer.Option(
        ["ops@example.com"], "--mail-to", help="Recipient (repeatable)."
    ),
    lang: str = typer.Option("en", "--lang", help="Email language: en or pt-BR."),
    live: bool = typer.Option(
        True,
        "--live/--no-live",
        rich_help_panel=_OUTPUT,
        help="Live table on a terminal; plain status lines otherwise.",
    ),
    status_interval: float = typer.Option(
        2.0,
        "--status-interval",
        min=0.001,
        rich_help_panel=_OUTPUT,
        help="Seconds between status lines when not live.",
    ),
    log_level: str = typer.Option(
        "warning", "--log-level", rich_help_panel=_OUTPUT, help="debug|info|warning|error."
    ),
) -> None:
    """See iotmon work in ~30 s: a simulated fleet in time-lapse, live averages, and alert
    emails delivered to a local SMTP server (printed here). No Kafka or mail server needed.

    Event time starts now and runs --speed times faster than the clock; the alert settings
    are demo-sized (60-s window, fire after 30 s above the usual threshold, 5-s group
    wait, event time).
    """
    from iotmon.tools.demo import DemoOptions

    setup_logging(log_level)
    if logging.getLogger().level > logging.DEBUG:
        # aiokafka logs each connection retry and metadata miss at ERROR; the demo reports
        # what went wrong itself (e.g. an unreachable broker, with what to do about it).
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with user_errors():
        if lang not in LANGUAGES:
            raise ConfigError(f"lang: must be en or pt-BR, got {lang!r}")
        language: Language = "pt-BR" if lang == "pt-BR" else "en"
        options = DemoOptions(
            devices=devices,
            seed=seed,
            speed=speed,
            duration=duration,
            overheat_fraction=overheat_fraction,
            spike_rate=spike_rate,
            bad_rate=bad_rate,
            kafka=kafka,
            bootstrap_servers=bootstrap_servers,
            keep_topic=keep_topic,
            outbox=outbox,
            state_dir=state_dir,
            mail_to=tuple(mail_to),
            lang=language,
            live=live and sys.stderr.isatty(),
            status_interval=status_interval,
        )
        try:
            asyncio.run(_main(options))
        except asyncio.CancelledError:
            # A second Ctrl-C: the user did not want to wait for the final flush.
            raise typer.Exit(130) from None


async def _main(options: DemoOptions) -> None:
    from iotmon.tools.demo import run_demo
    from iotmon.tools.demo_console import format_email, format_summary

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    count = 0

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()
            return
        stop.set()
        _out("stopping: finishing what was streamed and sending due alerts (Ctrl-C again to quit)")

    def on_email(received: ReceivedEmail) -> None:
        nonlocal count
        count += 1
        _out(format_email(received, count))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    if options.duration is None:
        _out("iotmon demo: press Ctrl-C to stop")
    result = await run_demo(options, stop=stop, on_email=on_email, echo=_out)
    _out(in_cli_terms(format_summary(result)))


def _out(text: str) -> None:
    # print(), not a captured stream: a live view swaps sys.stdout for a proxy that keeps the
    # text above the table.
    print(text, flush=True)
