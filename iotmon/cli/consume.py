"""`iotmon consume`: run the stream processor."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from pathlib import Path
from typing import Any, Final, Protocol

import orjson
import typer

from iotmon.cli import app
from iotmon.cli.common import CONFIG_OPTION, config_of, fail, opt, setup_logging, user_errors
from iotmon.config import build_settings
from iotmon.notify import SmtpSettings
from iotmon.settings import DEFAULT_METRICS_HOST, Settings
from iotmon.sources.base import OVERSIZED_PREFIX_BYTES

SOURCE = "Source"
PARSING = "Parsing"
STATS = "Statistics and state"
SCALE = "Several instances (Kafka)"
ALERTS = "Alerts"
EMAIL = "Email"
WEBHOOKS = "Webhooks"
OUTPUT = "Output"

# Option defaults are the library's: read off default settings objects, never restated.
_DEFAULTS: Final = Settings()
_KAFKA: Final = _DEFAULTS.source.kafka
_PARSE: Final = _DEFAULTS.parse
_ALERTS: Final = _DEFAULTS.alerts
_EMAIL: Final = _DEFAULTS.email
_WEBHOOKS: Final = _DEFAULTS.webhooks
_SMTP: Final = SmtpSettings(host="localhost")
_US: Final = 1_000_000
_CHECK_ONLY: Final = "iotmon.consume.check_only"
_SETTINGS: Final = "iotmon.consume.settings"


@app.command("consume")
def consume(
    ctx: typer.Context,
    config: Path | None = CONFIG_OPTION,
    bootstrap_servers: str = opt(
        _KAFKA.bootstrap_servers,
        "--bootstrap-servers",
        help="Kafka brokers, HOST:PORT[,HOST:PORT].",
        rich_help_panel=SOURCE,
    ),
    topic: list[str] = opt(
        list(_KAFKA.topics), "--topic", help="Topic to read (repeatable).", rich_help_panel=SOURCE
    ),
    group: str = opt(_KAFKA.group, "--group", help="Kafka consumer group.", rich_help_panel=SOURCE),
    start_from: str = opt(
        _KAFKA.start_from,
        "--from",
        help="Where a group with no committed offsets starts: earliest|latest.",
        rich_help_panel=SOURCE,
    ),
    input: str | None = opt(
        None,
        "--input",
        help="Read a txt log file instead of Kafka ('-' for stdin).",
        rich_help_panel=SOURCE,
    ),
    follow: bool = opt(
        False,
        "--follow",
        help="Keep reading what is appended to --input, like tail -F.",
        rich_help_panel=SOURCE,
    ),
    once: bool = opt(
        False,
        "--once",
        help="Process what is there now, flush alerts, print the final stats and exit.",
        rich_help_panel=SOURCE,
    ),
    max_line_bytes: int = opt(
        _DEFAULTS.source.max_line_bytes,
        "--max-line-bytes",
        help="Longest line or Kafka message taken as a reading; longer ones are dead-lettered "
        f"as too_long with their first {OVERSIZED_PREFIX_BYTES} bytes and their length.",
        rich_help_panel=SOURCE,
    ),
    key: str = opt(
        _PARSE.key_field,
        "--key",
        help="Field that identifies a device (dotted path); "
        "'sensor' groups like the original notebook.",
        rich_help_panel=PARSING,
    ),
    temperature_field: str = opt(
        _PARSE.temperature_field,
        "--temperature-field",
        help="Dotted path of the temperature in °C.",
        rich_help_panel=PARSING,
    ),
    time_field: str = opt(
        _PARSE.time_field,
        "--time-field",
        help="Dotted path of the ISO-8601 event time.",
        rich_help_panel=PARSING,
    ),
    valid_range: str = opt(
        f"{_PARSE.valid_min:g}..{_PARSE.valid_max:g}",
        "--valid-range",
        help="Accepted temperatures, MIN..MAX °C; others are dead-lettered.",
        rich_help_panel=PARSING,
    ),
    max_future: float = opt(
        _DEFAULTS.max_future,
        "--max-future",
        help="Seconds a reading's event time may be ahead of wall time and of its partition's "
        "latest readings; further ahead it is dead-lettered as future_time.",
        rich_help_panel=PARSING,
    ),
    window: float = opt(
        _DEFAULTS.window.window_us / _US,
        "--window",
        help="Sliding event-time window, seconds.",
        rich_help_panel=STATS,
    ),
    pane: float = opt(
        _DEFAULTS.window.pane_us / _US,
        "--pane",
        help="Window pane (granularity), seconds; divides --window.",
        rich_help_panel=STATS,
    ),
    allowed_lateness: float = opt(
        _DEFAULTS.window.lateness_us / _US,
        "--allowed-lateness",
        help="How late (s) an out-of-order reading may be and still land in its window pane.",
        rich_help_panel=STATS,
    ),
    state_dir: Path = opt(
        _DEFAULTS.state_dir,
        "--state-dir",
        help="Checkpoints, dead letters, outbox.",
        rich_help_panel=STATS,
    ),
    checkpoint_interval: float = opt(
        _DEFAULTS.checkpoint_interval,
        "--checkpoint-interval",
        help="Seconds between checkpoints.",
        rich_help_panel=STATS,
    ),
    decode_worker: bool = opt(
        _DEFAULTS.decode_worker,
        "--decode-worker/--no-decode-worker",
        help="Decode large batches (a replay, a Kafka backlog) in a second process while this "
        "one applies them; used only where more than one CPU core is available. Turn it off "
        "where a container is limited to one core's worth of CPU.",
        rich_help_panel=STATS,
    ),
    guarantee: str = opt(
        _DEFAULTS.guarantee,
        "--guarantee",
        help="at-least-once|exactly-once. Stats are exact with both (the position is stored "
        "with the state); exactly-once also commits changelog, dead letters and offsets in one "
        "Kafka transaction.",
        rich_help_panel=SCALE,
    ),
    changelog: bool = opt(
        _KAFKA.changelog,
        "--changelog/--no-changelog",
        help="Keep partition state in a compacted Kafka topic too, so instances of a --group "
        "can take partitions over without a shared disk (off: --state-dir is the only copy).",
        rich_help_panel=SCALE,
    ),
    changelog_topic: str = opt(
        "",
        "--changelog-topic",
        help="Changelog topic [default: iotmon-<group>-changelog].",
        rich_help_panel=SCALE,
    ),
    instance_id: str = opt(
        "",
        "--instance-id",
        help="This instance's name in the group (transactional id) [default: random, kept in "
        "--state-dir].",
        rich_help_panel=SCALE,
    ),
    threshold: float = opt(
        _ALERTS.threshold,
        "--threshold",
        help="Alert when the metric is above this, °C.",
        rich_help_panel=ALERTS,
    ),
    metric: str = opt(
        _ALERTS.metric,
        "--metric",
        help="window (sliding mean) or running (all-time mean).",
        rich_help_panel=ALERTS,
    ),
    for_: float = opt(
        _ALERTS.for_seconds,
        "--for",
        help="Seconds above the threshold before a device fires (0: at once).",
        rich_help_panel=ALERTS,
    ),
    clear_below: float | None = opt(
        None,
        "--clear-below",
        help="A firing device resolves below this [default: threshold - 2].",
        rich_help_panel=ALERTS,
    ),
    stale_after: float | None = opt(
        None,
        "--stale-after",
        help="Alert when a device has not reported for this many seconds [default: off].",
        rich_help_panel=ALERTS,
    ),
    group_wait: float = opt(
        _ALERTS.group_wait,
        "--group-wait",
        help="Wait before the first digest, to group devices.",
        rich_help_panel=ALERTS,
    ),
    group_interval: float = opt(
        _ALERTS.group_interval,
        "--group-interval",
        help="At most one digest per this many seconds.",
        rich_help_panel=ALERTS,
    ),
    repeat_interval: float = opt(
        _ALERTS.repeat_interval,
        "--repeat-interval",
        help="Remind while anything fires, every this many seconds.",
        rich_help_panel=ALERTS,
    ),
    alerts_log: Path | None = opt(
        None,
        "--alerts-log",
        help="JSON-lines log of alert transitions [default: in the state dir].",
        rich_help_panel=ALERTS,
    ),
    lang: str = opt(
        _EMAIL.lang, "--lang", help="Email language: en or pt-BR.", rich_help_panel=EMAIL
    ),
    timezone: str = opt(
        _EMAIL.timezone,
        "--timezone",
        help="Time zone of the times in emails (IANA name, e.g. America/Sao_Paulo).",
        rich_help_panel=EMAIL,
    ),
    smtp_host: str | None = opt(
        None,
        "--smtp-host",
        help="SMTP server; without it emails are written to --outbox.",
        rich_help_panel=EMAIL,
    ),
    smtp_port: int | None = opt(None, "--smtp-port", help="SMTP port.", rich_help_panel=EMAIL),
    smtp_security: str = opt(
        _SMTP.security,
        "--smtp-security",
        help="none|starttls|ssl; auto = STARTTLS when offered, and no login without TLS.",
        rich_help_panel=EMAIL,
    ),
    smtp_user: str | None = opt(
        None,
        "--smtp-user",
        help="SMTP login (password from IOTMON_SMTP_PASSWORD or --smtp-password-file).",
        rich_help_panel=EMAIL,
    ),
    smtp_password_file: Path | None = opt(
        None,
        "--smtp-password-file",
        help="File whose first line is the SMTP password.",
        rich_help_panel=EMAIL,
    ),
    smtp_timeout: float = opt(
        _SMTP.timeout,
        "--smtp-timeout",
        help="Overall timeout of one send, seconds.",
        rich_help_panel=EMAIL,
    ),
    mail_from: str = opt(
        _EMAIL.mail_from, "--mail-from", help="Sender address.", rich_help_panel=EMAIL
    ),
    mail_to: list[str] = opt(
        list(_EMAIL.mail_to), "--mail-to", help="Recipient (repeatable).", rich_help_panel=EMAIL
    ),
    outbox: Path = opt(
        _EMAIL.eml_dir,
        "--outbox",
        help="Folder for .eml files when there is no --smtp-host.",
        rich_help_panel=EMAIL,
    ),
    flush_timeout: float = opt(
        _DEFAULTS.flush_timeout,
        "--flush-timeout",
        help="On exit, wait this long for queued emails and webhook posts.",
        rich_help_panel=EMAIL,
    ),
    webhook_url: list[str] = opt(
        [],
        "--webhook-url",
        help="Also post every digest here (repeatable): env:NAME (the URL is in that variable) "
        "or file:PATH (on the file's first line) — webhook URLs hold a token, keep them off "
        "the command line; a plain http(s):// URL works for hooks without one.",
        rich_help_panel=WEBHOOKS,
    ),
    webhook_format: str = opt(
        _WEBHOOKS.format,
        "--webhook-format",
        help="json (iotmon.digest.v1), slack (incoming-webhook message) or teams (message card).",
        rich_help_panel=WEBHOOKS,
    ),
    json_output: bool = opt(
        False,
        "--json",
        help="With --once: print the final stats as JSON on stdout.",
        rich_help_panel=OUTPUT,
    ),
    live: bool = opt(
        True,
        "--live/--no-live",
        help="Live table on a terminal; plain periodic lines otherwise.",
        rich_help_panel=OUTPUT,
    ),
    status_interval: float = opt(
        10.0,
        "--status-interval",
        help="Seconds between status lines when not live.",
        rich_help_panel=OUTPUT,
    ),
    metrics_port: int | None = opt(
        None,
        "--metrics-port",
        help="Serve Prometheus metrics on this port [default: off].",
        rich_help_panel=OUTPUT,
    ),
    metrics_host: str = opt(
        DEFAULT_METRICS_HOST,
        "--metrics-host",
        help="Address for --metrics-port.",
        rich_help_panel=OUTPUT,
    ),
    log_level: str = opt(
        "info", "--log-level", help="debug|info|warning|error.", rich_help_panel=OUTPUT
    ),
    log_format: str = opt("text", "--log-format", help="text|json.", rich_help_panel=OUTPUT),
) -> None:
    """Compute per-device running and sliding averages and alert on overheating devices."""
    with user_errors():
        settings = build_settings(
            config_of(ctx),
            bootstrap_servers=bootstrap_servers,
            topics=topic,
            group=group,
            start_from=start_from,
            input=input,
            follow=follow,
            once=once,
            max_line_bytes=max_line_bytes,
            key_field=key,
            temperature_field=temperature_field,
            time_field=time_field,
            valid_range=valid_range,
            max_future=max_future,
            window=window,
            pane=pane,
            lateness=allowed_lateness,
            state_dir=state_dir,
            checkpoint_interval=checkpoint_interval,
            decode_worker=decode_worker,
            guarantee=guarantee,
            changelog=changelog,
            changelog_topic=changelog_topic,
            instance_id=instance_id,
            threshold=threshold,
            metric=metric,
            for_seconds=for_,
            clear_below=clear_below,
            stale_after=stale_after,
            group_wait=group_wait,
            group_interval=group_interval,
            repeat_interval=repeat_interval,
            alerts_log=alerts_log,
            lang=lang,
            timezone=timezone,
            smtp_host=smtp_host,
            smtp_port=smtp_port,
            smtp_security=smtp_security,
            smtp_user=smtp_user,
            smtp_password_file=smtp_password_file,
            smtp_timeout=smtp_timeout,
            mail_from=mail_from,
            mail_to=mail_to,
            outbox=outbox,
            flush_timeout=flush_timeout,
            webhook_urls=webhook_url,
            webhook_format=webhook_format,
        )
    if ctx.meta.get(_CHECK_ONLY):
        ctx.meta[_SETTINGS] = settings
        return
    if json_output and not once:
        raise fail("--json prints the final stats, so it needs --once")
    setup_logging(log_level, log_format)
    with user_errors():
        report = asyncio.run(
            _run(
                settings,
                live=live and sys.stderr.isatty(),
                status_interval=status_interval,
                metrics=(metrics_host, metrics_port) if metrics_port else None,
                threshold=threshold,
            )
        )
    if json_output:
        sys.stdout.buffer.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2))
        sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()


class _Command(Protocol):
    def invoke(self, ctx: Any, /) -> Any: ...


class ParsedConsume(Protocol):
    """What ``make_context`` returns for the `consume` command (click's Context)."""

    @property
    def meta(self) -> dict[str, Any]: ...

    @property
    def command(self) -> _Command: ...


def consume_settings(ctx: ParsedConsume) -> Settings:
    """The :class:`Settings` `iotmon consume` runs with, for its parsed arguments: its own
    code builds and checks them (a bad value raises :class:`typer.Exit` after one line),
    then it returns instead of running."""
    ctx.meta[_CHECK_ONLY] = True
    ctx.command.invoke(ctx)
    settings = ctx.meta[_SETTINGS]
    assert isinstance(settings, Settings)
    return settings


def _collect_less_often() -> None:
    """Readings are decoded into a few short-lived objects each, with no cycles among them;
    at the default thresholds the cycle collector runs every few hundred readings, and its
    older generations walk every device's state again and again (a fifth of a replay's
    time, measured). Leave what start-up built out of it, and collect young objects less
    often, but not so rarely that one collection shows in alert latency: 5,000 costs
    about a millisecond (50,000 added 20 ms to the p99 of `make bench`'s latency run)."""
    gc.freeze()
    gc.set_threshold(5_000, 10, 10)


async def _run(
    settings: Settings,
    *,
    live: bool,
    status_interval: float,
    metrics: tuple[str, int] | None,
    threshold: float,
) -> Any:
    from iotmon.engine.pipeline import Pipeline
    from iotmon.views.console import StatusPrinter

    pipeline = Pipeline(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, pipeline.stop)
    printer = StatusPrinter(pipeline, live=live, interval=status_interval, threshold=threshold)
    stop_metrics = None
    if metrics is not None:
        from iotmon.views.metrics import serve_metrics

        # Before open(): a busy port fails before this instance joins its group, and the
        # healthcheck is answered while partitions are restored.
        stop_metrics = serve_metrics(pipeline, host=metrics[0], port=metrics[1])
    try:
        async with pipeline, printer:
            _collect_less_often()
            report = await pipeline.run()
    finally:
        if stop_metrics is not None:
            stop_metrics()
    printer.final(report)
    return report
