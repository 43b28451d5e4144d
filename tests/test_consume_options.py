"""Every option of `iotmon consume`, exercised through the real CLI.

``ROWS`` is the table: for each option, the run that uses it and what must be observably
different because of it (in the ``--json`` report, a dead-letter file, an email, a metric,
the state dir, stderr). Options are grouped into few runs; each run is one test that checks
all of its rows. ``test_every_option_has_a_row`` enumerates the options from the typer
command itself, so a new option fails the suite until it has a row here.

Most runs read one small hand-made file (``readings``): every device has one job, so that
each option's effect shows on one device (see ``_temperatures``).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer.main

from iotmon.cli import app
from tests.conftest import SMTP_PASSWORD, SMTP_USER, SMTPCapture
from tests.helpers import (
    drop_topics,
    free_port,
    iotmon,
    metric,
    reading_line,
    scrape_until,
    spawn,
    stop,
)
from tests.webhook_server import WebhookServer

T0 = datetime(2026, 1, 1, tzinfo=UTC)
END_S = 600


def _temperatures(t: int) -> list[tuple[str, float]]:
    """Each device's reading at second ``t`` (every 10 s from 0 to 600)."""
    found = [
        ("HOT", 80.0),  # fires with the defaults
        ("WARM", 72.0),  # only above a lower --threshold
        ("RAMP", 20 + t / 20),  # its window mean depends on --window and --pane
        ("COOL", 110.0 if t <= 300 else 50.0),  # all-time mean hot, recent window not
        ("DRIFT", 80.0 if t < 300 else 73.5),  # settles between threshold-2 and threshold
        ("LATE", 60.0),  # plus one reading 45 s late at the end
    ]
    if t <= 200:
        found.append(("GONE", 60.0))  # falls silent: stale with --stale-after
    if t == 300:
        found.append(("OUT", 150.0))  # valid by default, not with --valid-range 0..100
    return found


def _line(device: str, t: float, temperature: float) -> bytes:
    return reading_line(device, T0 + timedelta(seconds=t), temperature)


def readings() -> bytes:
    lines = [
        _line(device, t, temp) for t in range(0, END_S + 1, 10) for device, temp in _temperatures(t)
    ]
    lines.append(_line("LATE", END_S - 45, 90.0))
    lines.append(b"not json")
    return b"\n".join(lines) + b"\n"


# -- what a run leaves behind -----------------------------------------------------------------


@dataclass
class Run:
    dir: Path
    returncode: int
    stdout: bytes
    stderr: bytes
    mails: list[Any] = field(default_factory=list)
    seen: dict[str, Any] = field(default_factory=dict)
    """What the run observed while it ran (scrapes, timings, Kafka offsets)."""

    @property
    def report(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self.stdout)
        return doc

    @property
    def state(self) -> Path:
        return self.dir / "state"

    def final_states(self) -> dict[str, str]:
        """Each device's last alert transition in the report."""
        return {a["device"]: a["state"] for a in self.report["alerts"]}

    def first(self, device: str, state: str) -> str:
        return next(
            a["at"] for a in self.report["alerts"] if a["device"] == device and a["state"] == state
        )

    def emails(self) -> list[tuple[str, EmailMessage]]:
        """The .eml files of --outbox: (event time from the name, message), oldest first."""
        found = []
        for path in sorted((self.dir / "eml").glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append((path.name.split("-")[0], message))
        return found

    def digest_times(self) -> list[float]:
        return [
            (datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) - T0).total_seconds()
            for stamp, _ in self.emails()
        ]


class Context:
    """Where a run writes, and the fixtures it may ask for."""

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest, data: Path) -> None:
        self.tmp_path = tmp_path
        self.request = request
        self.data = data

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)


def file_args(ctx: Context, *extra: str) -> list[str]:
    return [
        "consume",
        *("--input", str(ctx.data), "--once", "--json", "--no-live"),
        *("--state-dir", str(ctx.tmp_path / "state"), "--outbox", str(ctx.tmp_path / "eml")),
        *extra,
    ]


def run_cli(ctx: Context, args: list[str], **kwargs: Any) -> Run:
    result = iotmon(*args, **kwargs)
    return Run(ctx.tmp_path, result.returncode, result.stdout, result.stderr)


def file_run(*extra: str) -> Callable[[Context], Run]:
    """A ``--once --json`` run over :func:`readings` with ``extra`` options."""
    return lambda ctx: run_cli(ctx, file_args(ctx, *extra))


# -- runs that need more than a file ------------------------------------------------------------


def smtp_run(ctx: Context) -> Run:
    smtp: SMTPCapture = ctx.fixture("smtp_server")
    args = file_args(
        ctx,
        *("--smtp-host", smtp.host, "--smtp-port", str(smtp.port), "--smtp-security", "none"),
        *("--mail-from", "monitor@plant.example", "--mail-to", "a@plant.example"),
        *("--mail-to", "b@plant.example"),
    )
    run = run_cli(ctx, args)
    run.mails = smtp.messages  # --once flushed them before it exited
    return run


def smtp_tls_run(ctx: Context) -> Run:
    smtp: SMTPCapture = ctx.fixture("smtp_server_auth_tls")
    password = ctx.tmp_path / "smtp-password"
    password.write_text(SMTP_PASSWORD + "\n", encoding="utf-8")
    args = file_args(
        ctx,
        *("--smtp-host", "localhost", "--smtp-port", str(smtp.port)),
        *("--smtp-security", "starttls", "--smtp-user", SMTP_USER),
        *("--smtp-password-file", str(password), "--mail-to", "ops@plant.example"),
    )
    # The test server's certificate is signed by a throw-away CA: trusted through OpenSSL's
    # standard variable, as an operator would for a private CA.
    env = {**os.environ, "SSL_CERT_FILE": str(smtp.cafile)}
    run = run_cli(ctx, args, env=env)
    run.mails = smtp.messages
    return run


def silent_smtp_run(ctx: Context) -> Run:
    """An SMTP server that accepts connections and never greets."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        started = time.monotonic()
        run = run_cli(
            ctx,
            file_args(
                ctx,
                *("--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--smtp-security", "none"),
                *("--mail-to", "ops@plant.example", "--smtp-timeout", "0.5"),
                *("--flush-timeout", "2"),
            ),
        )
        run.seen["seconds"] = time.monotonic() - started
    return run


def webhook_run(ctx: Context) -> Run:
    """Two webhooks, one from the environment and one from a file, as Teams cards."""
    server: WebhookServer = ctx.fixture("webhook_server")
    url_file = ctx.tmp_path / "hook-url"
    url_file.write_text(server.url("/from-file") + "\n", encoding="utf-8")
    args = file_args(
        ctx,
        *("--webhook-url", "env:IOTMON_TEST_HOOK", "--webhook-url", f"file:{url_file}"),
        *("--webhook-format", "teams"),
    )
    run = run_cli(ctx, args, env={**os.environ, "IOTMON_TEST_HOOK": server.url("/from-env")})
    run.seen["posts"] = server.received  # --once flushed them before it exited
    return run


def config_run(ctx: Context) -> Run:
    config = ctx.tmp_path / "iotmon.toml"
    config.write_text("[consume]\nthreshold = 70\n", encoding="utf-8")
    return run_cli(ctx, file_args(ctx, "--config", str(config)))


def follow_run(ctx: Context) -> Run:
    """``--follow`` with fast checkpoints and status lines, metrics on another loopback
    address; the file grows while it runs."""
    data = ctx.tmp_path / "growing.txt"
    lines = readings().splitlines(keepends=True)
    data.write_bytes(b"".join(lines[:100]))
    port = free_port()
    proc = spawn(
        "consume",
        *(
            "--input",
            str(data),
            "--follow",
            "--no-live",
            "--state-dir",
            str(ctx.tmp_path / "state"),
        ),
        *("--outbox", str(ctx.tmp_path / "eml"), "--checkpoint-interval", "0.2"),
        *("--status-interval", "0.2", "--metrics-port", str(port), "--metrics-host", "127.0.0.2"),
    )
    seen: dict[str, Any] = {}
    try:
        first = scrape_until(proc, port, lambda s: read(s) == 100, host="127.0.0.2")
        with data.open("ab") as handle:
            handle.write(b"".join(lines[100:]))
        # Past the end of the file and well into the run: checkpoints keep coming.
        later = scrape_until(
            proc,
            port,
            lambda s: read(s) == len(lines) and metric(s, "iotmon_uptime_seconds") > 1.5,
            host="127.0.0.2",
        )
        seen.update(first=first, later=later, alive=proc.poll() is None)
        with socket.socket() as probe:
            seen["on_127.0.0.1"] = probe.connect_ex(("127.0.0.1", port)) == 0
    finally:
        out, err = stop(proc) if proc.poll() is None else proc.communicate()
    return Run(ctx.tmp_path, proc.returncode, out, err, seen=seen)


def read(samples: Any) -> float:
    return metric(samples, "iotmon_readings_read_total")


def on_a_terminal(ctx: Context, *extra: str) -> bytes:
    """stderr of a --follow run on a pseudo-terminal, stopped once it has drawn a while."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "iotmon", "consume", "--input", str(ctx.data), "--follow", *extra],
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
        cwd=ctx.tmp_path,
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 30
    # Enough of the screen to tell a live table from status lines.
    while b"HOT" not in output and b"read=" not in output and time.monotonic() < deadline:
        try:
            output += os.read(controller, 65536)
        except OSError:
            break
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    os.close(controller)
    return output


def kafka_run(ctx: Context) -> Run:
    bootstrap: str = ctx.fixture("kafka_bootstrap")
    tag = ctx.tmp_path.name[-12:].replace("_", "-")
    topics = [f"options-a-{tag}", f"options-b-{tag}"]
    lines = readings().splitlines(keepends=True)
    halves = [ctx.tmp_path / "a.txt", ctx.tmp_path / "b.txt"]
    halves[0].write_bytes(b"".join(lines[::2]))
    halves[1].write_bytes(b"".join(lines[1::2]))
    for topic, half in zip(topics, halves, strict=True):
        iotmon("produce", str(half), "--bootstrap-servers", bootstrap, "--topic", topic)
    group, changelog = f"options-{tag}", f"options-changelog-{tag}"
    try:
        run = run_cli(
            ctx,
            [
                "consume",
                *("--bootstrap-servers", bootstrap, "--topic", topics[0], "--topic", topics[1]),
                *("--group", group, "--changelog-topic", changelog, "--once", "--json"),
                *("--no-live", "--state-dir", str(ctx.tmp_path / "state")),
                *("--outbox", str(ctx.tmp_path / "eml")),
            ],
        )
        run.seen["committed"] = committed(bootstrap, group)
        run.seen["topics"] = topic_names(bootstrap)
        run.seen["changelog"] = changelog
        run.seen["lines"] = len(lines)
        run.seen["dlq_b"] = end_offset(bootstrap, f"{topics[1]}.dlq")
        run.seen["dlq_end"] = end_offset(bootstrap, f"{topics[0]}.dlq") + run.seen["dlq_b"]
        # Where a new group starts, and state kept only in the state dir.
        latest = run_cli(
            ctx,
            [
                "consume",
                *("--bootstrap-servers", bootstrap, "--topic", topics[0]),
                *("--group", f"{group}-latest", "--from", "latest", "--no-changelog"),
                *("--once", "--json", "--no-live", "--state-dir", str(ctx.tmp_path / "latest")),
                *("--outbox", str(ctx.tmp_path / "eml-latest")),
            ],
        )
        run.seen["latest"] = latest.report
        run.seen["latest_topics"] = topic_names(bootstrap)
        # Exactly-once: dead letters written in transactions, under a chosen instance name.
        eos = run_cli(
            ctx,
            [
                "consume",
                *("--bootstrap-servers", bootstrap, "--topic", topics[1]),
                *("--group", f"{group}-eos", "--guarantee", "exactly-once"),
                *("--instance-id", "line-3", "--once", "--json", "--no-live"),
                *("--state-dir", str(ctx.tmp_path / "eos"), "--outbox", str(ctx.tmp_path / "e")),
            ],
        )
        run.seen["eos"] = eos.report
        # What this run added to the dead-letter topic the first run wrote to too.
        run.seen["eos_dlq_end"] = end_offset(bootstrap, f"{topics[1]}.dlq") - run.seen["dlq_b"]
        run.seen["eos_state"] = ctx.tmp_path / "eos"
    finally:
        asyncio.run(
            drop_topics(
                bootstrap,
                [
                    *topics,
                    *(f"{t}.dlq" for t in topics),
                    changelog,
                    f"iotmon-{group}-eos-changelog",
                ],
            )
        )
    return run


def _admin(bootstrap: str, job: Callable[[Any], Any]) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    async def main() -> Any:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return await job(admin)
        finally:
            await admin.close()

    return asyncio.run(main())


def committed(bootstrap: str, group: str) -> int:
    offsets = _admin(bootstrap, lambda admin: admin.list_consumer_group_offsets(group))
    return sum(meta.offset for meta in offsets.values())


def topic_names(bootstrap: str) -> set[str]:
    return set(_admin(bootstrap, lambda admin: admin.list_topics()))


def end_offset(bootstrap: str, topic: str) -> int:
    """The sum of ``topic``'s end offsets: records plus transaction markers."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    (meta,) = _admin(bootstrap, lambda admin: admin.describe_topics([topic]))
    if meta["error_code"] == 3:  # UNKNOWN_TOPIC_OR_PARTITION: nothing was ever written
        return 0
    partitions = [TopicPartition(topic, p["partition"]) for p in meta["partitions"]]
    assert partitions, meta

    async def main() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(partitions)
            return int(sum(ends.values()))
        finally:
            await consumer.stop()

    return asyncio.run(main())


def limits_run(ctx: Context) -> Run:
    """The readings plus one reading 2 h ahead of the rest and one 3 KB valid reading, read
    with lower/higher limits and (in ``seen["defaults"]``) with the defaults."""
    data = ctx.tmp_path / "limits.txt"
    long_reading = orjson.loads(_line("LONG", 0, 50.0)) | {"padding": "x" * 3000}
    data.write_bytes(
        readings() + _line("AHEAD", END_S + 7200, 50.0) + b"\n" + orjson.dumps(long_reading)
    )

    def args(name: str, *extra: str) -> list[str]:
        return [
            *("consume", "--input", str(data), "--once", "--json", "--no-live"),
            *("--state-dir", str(ctx.tmp_path / name), "--outbox", str(ctx.tmp_path / "eml")),
            *extra,
        ]

    run = run_cli(ctx, args("state", "--max-line-bytes", "2048", "--max-future", "10800"))
    run.seen["defaults"] = run_cli(ctx, args("defaults")).report
    return run


def decode_worker_run(ctx: Context) -> Run:
    """The readings ten times over (large batches), with and without the worker."""
    big = ctx.tmp_path / "big.txt"
    big.write_bytes(ctx.data.read_bytes() * 10)
    args = file_args(ctx, "--log-level", "debug")
    args[args.index("--input") + 1] = str(big)
    run = run_cli(ctx, [*args, "--decode-worker"])
    run.seen["without"] = run_cli(
        ctx, [*args, "--no-decode-worker", "--state-dir", str(ctx.tmp_path / "here")]
    )
    return run


def terminal_run(ctx: Context) -> Run:
    run = Run(ctx.tmp_path, 0, b"", b"")
    run.seen["live"] = on_a_terminal(ctx)
    run.seen["no-live"] = on_a_terminal(ctx, "--no-live", "--status-interval", "0.2")
    return run


RUNS: dict[str, Callable[[Context], Run]] = {
    "parse-and-stats": lambda ctx: run_cli(
        ctx,
        file_args(
            ctx,
            *("--valid-range", "0..100", "--window", "60", "--allowed-lateness", "60"),
            *("--alerts-log", str(ctx.tmp_path / "transitions.jsonl"), "--log-format", "json"),
        ),
    ),
    "pane": file_run("--window", "60", "--pane", "30"),
    "threshold": file_run("--threshold", "70"),
    "config": config_run,
    "clearing": file_run("--clear-below", "74", "--stale-after", "100"),
    "metric-and-for": file_run("--metric", "running", "--for", "0"),
    "group-wait": file_run("--group-wait", "200"),
    "group-interval": file_run("--group-interval", "400"),
    "repeat": file_run("--repeat-interval", "30"),
    "language": file_run(
        "--lang", "pt-BR", "--log-level", "warning", "--timezone", "America/Sao_Paulo"
    ),
    "fields": lambda ctx: run_cli(ctx, fields_args(ctx)),
    "smtp": smtp_run,
    "smtp-tls": smtp_tls_run,
    "silent-smtp": silent_smtp_run,
    "webhooks": webhook_run,
    "follow": follow_run,
    "terminal": terminal_run,
    "decode-worker": decode_worker_run,
    "limits": limits_run,
    "kafka": kafka_run,
}


def fields_args(ctx: Context) -> list[str]:
    args = file_args(ctx, "--key", "meta.device", "--temperature-field", "v", "--time-field", "at")
    args[args.index("--input") + 1] = str(reshaped(ctx))
    return args


def reshaped(ctx: Context) -> Path:
    """The readings with other field names: ``{"meta": {"device"}, "v", "at"}``."""
    path = ctx.tmp_path / "reshaped.txt"
    out = []
    for line in ctx.data.read_bytes().splitlines():
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        out.append(
            orjson.dumps(
                {
                    "meta": {"device": doc["id_equipamento"]},
                    "v": doc["padrao"]["leitura"]["temperatura"],
                    "at": doc["data_evento"],
                }
            )
        )
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


# -- the table --------------------------------------------------------------------------------

Check = Callable[[Run, Run], None]
"""``check(run, baseline)``: asserts what the option changed; ``baseline`` is the same
file read with the defaults (``--once --json --no-live --state-dir --outbox`` only)."""


@dataclass(frozen=True)
class Row:
    option: str
    run: str
    check: Check


def _dlq_lines(run: Run) -> list[dict[str, Any]]:
    return [
        orjson.loads(x) for p in run.state.glob("*.dlq.jsonl") for x in p.read_bytes().splitlines()
    ]


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def _json_log_records(stderr: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in stderr.splitlines() if x.startswith(b"{")]


ROWS: list[Row] = [
    # Baseline run (file input, the options every run needs).
    Row(
        "--input", "baseline", lambda r, b: _eq(r.report["readings"], len(readings().splitlines()))
    ),
    Row("--once", "baseline", lambda r, b: _eq(r.returncode, 0)),
    Row("--json", "baseline", lambda r, b: _eq(r.report["accepted"], r.report["readings"] - 1)),
    Row("--state-dir", "baseline", lambda r, b: _true(any(r.state.glob("partitions/*.json")))),
    Row("--outbox", "baseline", lambda r, b: _true(len(r.emails()) >= 1)),
    # Parsing and statistics.
    Row(
        "--valid-range",
        "parse-and-stats",
        lambda r, b: (
            _true(r.report["rejected_by_reason"].get("out_of_range", 0) > 0),
            _eq(b.report["rejected_by_reason"].get("out_of_range", 0), 0),
            _true(any(d["reason"] == "out_of_range" for d in _dlq_lines(r))),
        ),
    ),
    Row(
        "--max-line-bytes",
        "limits",
        lambda r, b: (
            _eq(r.report["rejected_by_reason"].get("too_long"), 1),
            _true("LONG" not in r.report["devices"]),
            _true("LONG" in r.seen["defaults"]["devices"]),
            _true(any(d["reason"] == "too_long" for d in _dlq_lines(r))),
        ),
    ),
    Row(
        "--max-future",
        "limits",
        lambda r, b: (
            _true("AHEAD" in r.report["devices"]),
            _true("AHEAD" not in r.seen["defaults"]["devices"]),
            _eq(r.seen["defaults"]["rejected_by_reason"].get("future_time"), 1),
        ),
    ),
    Row(
        "--window",
        "parse-and-stats",
        lambda r, b: _true(
            r.report["devices"]["RAMP"]["window_mean"] > b.report["devices"]["RAMP"]["window_mean"]
        ),
    ),
    Row(
        "--pane",
        "pane",
        lambda r, b: _true(
            r.report["devices"]["RAMP"]["window_mean"]
            != RESULTS["parse-and-stats"].report["devices"]["RAMP"]["window_mean"]
        ),
    ),
    Row(
        "--allowed-lateness",
        "parse-and-stats",
        lambda r, b: _eq((r.report["late"], b.report["late"]), (0, 1)),
    ),
    Row(
        "--alerts-log",
        "parse-and-stats",
        lambda r, b: (
            _true(len((r.dir / "transitions.jsonl").read_bytes().splitlines()) > 0),
            _true(not (r.state / "alerts.jsonl").exists()),
            _true((b.state / "alerts.jsonl").exists()),
        ),
    ),
    Row(
        "--log-format",
        "parse-and-stats",
        lambda r, b: (
            _true(any(rec["level"] == "info" for rec in _json_log_records(r.stderr))),
            _eq(_json_log_records(b.stderr), []),
        ),
    ),
    Row(
        "--key",
        "fields",
        lambda r, b: _eq(set(r.report["devices"]), set(b.report["devices"])),
    ),
    Row(
        "--temperature-field",
        "fields",
        lambda r, b: _eq(r.report["devices"]["HOT"]["mean"], b.report["devices"]["HOT"]["mean"]),
    ),
    Row(
        "--time-field",
        "fields",
        lambda r, b: _eq(
            r.report["devices"]["HOT"]["last_event"], b.report["devices"]["HOT"]["last_event"]
        ),
    ),
    # Alert rules.
    Row(
        "--threshold",
        "threshold",
        lambda r, b: (
            _eq(r.final_states().get("WARM"), "firing"),
            _eq(b.final_states().get("WARM"), None),
        ),
    ),
    Row("--config", "config", lambda r, b: _eq(r.final_states().get("WARM"), "firing")),
    Row(
        "--clear-below",
        "clearing",
        lambda r, b: _eq(
            (r.final_states()["DRIFT"], b.final_states()["DRIFT"]), ("resolved", "firing")
        ),
    ),
    Row(
        "--stale-after",
        "clearing",
        lambda r, b: _eq(
            (r.final_states().get("GONE"), b.final_states().get("GONE")), ("stale", None)
        ),
    ),
    Row(
        "--metric",
        "metric-and-for",
        lambda r, b: _eq(
            (r.final_states()["COOL"], b.final_states()["COOL"]), ("firing", "resolved")
        ),
    ),
    Row(
        "--for",
        "metric-and-for",
        lambda r, b: _eq(
            (r.first("HOT", "firing"), b.first("HOT", "firing")),
            ("2026-01-01T00:00:00.000000Z", "2026-01-01T00:01:00.000000Z"),
        ),
    ),
    Row(
        "--group-wait",
        "group-wait",
        lambda r, b: _true(r.digest_times()[0] >= b.digest_times()[0] + 150),
    ),
    Row(
        "--group-interval",
        "group-interval",
        lambda r, b: (
            _true(min(_gaps(r.digest_times())) >= 400),
            _true(min(_gaps(b.digest_times())) < 400),
        ),
    ),
    Row(
        "--repeat-interval",
        "repeat",
        lambda r, b: _true(len(r.digest_times()) > len(b.digest_times())),
    ),
    # Email.
    Row(
        "--lang",
        "language",
        lambda r, b: (
            _true("sensores" in str(r.emails()[0][1]["Subject"])),
            _true("devices above" in str(b.emails()[0][1]["Subject"])),
        ),
    ),
    Row(
        "--timezone",
        "language",
        lambda r, b: (
            # T0 is midnight UTC on 1 Jan 2026: 21:00 the day before in São Paulo (UTC-3).
            _true("America/Sao_Paulo (UTC-03:00)" in _plain(r.emails()[0][1])),
            _true("/12/2025 21:" in _plain(r.emails()[0][1])),
            _true("2026-01-01 00:" in _plain(b.emails()[0][1])),
            _true(" UTC;" in _plain(b.emails()[0][1])),
        ),
    ),
    Row(
        "--log-level",
        "language",
        lambda r, b: (_true(b" INFO " in b.stderr), _true(b" INFO " not in r.stderr)),
    ),
    Row(
        "--smtp-host",
        "smtp",
        lambda r, b: _true(len(r.mails) == len(b.emails()) and not r.emails()),
    ),
    Row("--smtp-port", "smtp", lambda r, b: _true(len(r.mails) >= 1)),
    Row("--mail-from", "smtp", lambda r, b: _eq(r.mails[0].mail_from, "monitor@plant.example")),
    Row(
        "--mail-to",
        "smtp",
        lambda r, b: _eq(set(r.mails[0].rcpt_tos), {"a@plant.example", "b@plant.example"}),
    ),
    Row("--smtp-security", "smtp-tls", lambda r, b: _true(r.mails and all(m.tls for m in r.mails))),
    Row(
        "--smtp-user",
        "smtp-tls",
        lambda r, b: _true(r.mails and all(m.auth_user == SMTP_USER for m in r.mails)),
    ),
    Row(
        "--smtp-password-file",
        "smtp-tls",
        lambda r, b: (
            _true(len(r.mails) == len(b.emails())),
            _true(SMTP_PASSWORD.encode() not in r.stderr),
        ),
    ),
    Row(
        "--smtp-timeout",
        "silent-smtp",
        lambda r, b: _true(b"did not answer within 0.5 s" in r.stderr),
    ),
    Row(
        "--flush-timeout",
        "silent-smtp",
        lambda r, b: (
            _true(r.seen["seconds"] < 20),
            _true(b"still undelivered after 2 s" in r.stderr),
        ),
    ),
    Row(
        "--webhook-url",
        "webhooks",
        lambda r, b: (
            _eq(
                sorted(p.path for p in r.seen["posts"]),
                sorted(["/from-env", "/from-file"] * len(r.emails())),
            ),
            _true(len(r.emails()) >= 1),
        ),
    ),
    Row(
        "--webhook-format",
        "webhooks",
        lambda r, b: _eq({p.json()["@type"] for p in r.seen["posts"]}, {"MessageCard"}),
    ),
    # Output and serving.
    Row(
        "--follow",
        "follow",
        lambda r, b: _true(r.seen["alive"] and read(r.seen["later"]) > read(r.seen["first"])),
    ),
    Row(
        "--metrics-port",
        "follow",
        lambda r, b: _true(read(r.seen["later"]) == len(readings().splitlines())),
    ),
    Row("--metrics-host", "follow", lambda r, b: _eq(r.seen["on_127.0.0.1"], False)),
    Row(
        "--checkpoint-interval",
        "follow",
        lambda r, b: _true(metric(r.seen["later"], "iotmon_checkpoint_age_seconds") < 1.0),
    ),
    Row(
        "--decode-worker",
        "decode-worker",
        lambda r, b: (
            _true(r.stderr.count(b"decode worker started") == 1),
            _true(b"decode worker started" not in r.seen["without"].stderr),
            _eq(r.report, r.seen["without"].report),
            _eq(r.report["readings"], 10 * len(readings().splitlines())),
        ),
    ),
    Row("--status-interval", "follow", lambda r, b: _true(r.stderr.count(b"read=") >= 3)),
    # Rich's live table hides the cursor; status lines do not.
    Row(
        "--live",
        "terminal",
        lambda r, b: (
            _true(b"\x1b[?25l" in r.seen["live"]),
            _true(b"\x1b[?25l" not in r.seen["no-live"] and b"read=" in r.seen["no-live"]),
        ),
    ),
    # Kafka input.
    Row("--bootstrap-servers", "kafka", lambda r, b: _eq(r.report["readings"], r.seen["lines"])),
    Row("--topic", "kafka", lambda r, b: _eq(r.report["readings"], b.report["readings"])),
    Row("--group", "kafka", lambda r, b: _eq(r.seen["committed"], r.seen["lines"])),
    Row("--changelog-topic", "kafka", lambda r, b: _true(r.seen["changelog"] in r.seen["topics"])),
    Row("--from", "kafka", lambda r, b: _eq(r.seen["latest"]["readings"], 0)),
    Row(
        "--changelog",
        "kafka",
        lambda r, b: _true(not any("latest-changelog" in t for t in r.seen["latest_topics"])),
    ),
    Row(
        "--guarantee",
        "kafka",
        # Transaction markers take offsets: more than one per dead letter, unlike the
        # at-least-once run's dead-letter topics.
        lambda r, b: (
            _true(r.seen["eos_dlq_end"] > r.seen["eos"]["rejected"] >= 1),
            _eq(r.seen["dlq_end"], r.report["rejected"]),
        ),
    ),
    Row(
        "--instance-id",
        "kafka",
        lambda r, b: (
            _true(not (r.seen["eos_state"] / "instance-id").exists()),
            _true((r.state / "instance-id").exists()),
        ),
    ),
]


def _eq(got: object, want: object) -> None:
    assert got == want, f"got {got!r}, want {want!r}"


def _true(value: object) -> None:
    assert value, value


RESULTS: dict[str, Run] = {}
"""Runs done so far in this session (the --pane row compares two runs)."""


def options_of_consume() -> set[str]:
    command: Any = typer.main.get_command(app)
    consume = command.commands["consume"]
    return {p.opts[0] for p in consume.params if p.param_type_name == "option"} - {"--help"}


def _plain(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_every_option_has_a_row() -> None:
    options = options_of_consume()
    rows = {row.option for row in ROWS}
    assert not options - rows, f"options without a row in ROWS: {sorted(options - rows)}"
    assert not rows - options, f"rows for options that do not exist: {sorted(rows - options)}"
    assert {row.run for row in ROWS} <= {*RUNS, "baseline"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("readings") / "readings.txt"
    path.write_bytes(readings())
    return path


@pytest.fixture(scope="module")
def baseline(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    ctx = Context(tmp_path_factory.mktemp("baseline"), None, data)  # type: ignore[arg-type]
    return run_cli(ctx, file_args(ctx))


def check_rows(name: str, run: Run, baseline: Run) -> None:
    failures = []
    for row in (r for r in ROWS if r.run == name):
        try:
            row.check(run, baseline)
        except (AssertionError, KeyError, IndexError, ValueError) as exc:
            failures.append(f"{row.option}: {type(exc).__name__}: {exc}")
    assert not failures, (
        f"run {name!r}:\n" + "\n".join(failures) + "\n" + run.stderr.decode()[-2000:]
    )


def test_baseline_run(baseline: Run) -> None:
    check_rows("baseline", baseline, baseline)


@pytest.mark.parametrize("name", list(RUNS))
def test_option_run(
    name: str, data: Path, baseline: Run, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if name == "pane" and "parse-and-stats" not in RESULTS:
        RESULTS["parse-and-stats"] = RUNS["parse-and-stats"](
            Context(tmp_path / "parse-and-stats", request, data)
        )
    run = RUNS[name](Context(tmp_path, request, data))
    RESULTS[name] = run
    check_rows(name, run, baseline)
