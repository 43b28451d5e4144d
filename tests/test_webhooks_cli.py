"""Webhooks through the real CLI (`iotmon consume` as a subprocess) against a real HTTP
server: Teams cards from a file run, per-device routing from the config file, secrets kept
out of logs and the state dir, an outage plus a SIGKILL with no loss and no duplicate, and
a Kafka run.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import PATIENCE_S, drop_topics, iotmon, reading_line, spawn
from tests.test_webhook_payloads import validate_json, validate_teams
from tests.webhook_server import WebhookServer

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "B0/s3cr3t-t0ken"
HOT = [f"HOT{k}" for k in range(5)]
"""HOT<k> is cool until 20·k s, then hot: one firing digest each (``--for 0``)."""


def _line(device: str, t: float, temperature: float) -> bytes:
    return reading_line(device, T0 + timedelta(seconds=t), temperature)


def readings(path: Path, *, until: int = 600) -> Path:
    lines = []
    for t in range(0, until + 1, 5):
        for k, device in enumerate(HOT):
            lines.append(_line(device, t, 95.0 if t >= 20 * k else 60.0))
        lines.append(_line("COOL", t, 50.0))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def consume_args(data: Path, state: Path, *extra: str) -> list[str]:
    return [
        "consume",
        *("--input", str(data), "--no-live", "--state-dir", str(state)),
        *("--outbox", str(state.parent / f"{state.name}-eml"), "--for", "0"),
        *("--group-wait", "0", "--group-interval", "1", "--window", "10", "--pane", "5"),
        *extra,
    ]


def test_teams_cards_from_a_file_run_keep_the_url_secret(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    data = readings(tmp_path / "readings.txt")
    state = tmp_path / "state"
    url = webhook_server.url(f"/webhookb2/{SECRET}")
    result = iotmon(
        *consume_args(data, state, "--once", "--json", "--log-level", "debug"),
        *("--webhook-url", "env:TEAMS_URL", "--webhook-format", "teams"),
        env={**os.environ, "TEAMS_URL": url},
    )
    got = webhook_server.received
    assert {r.path for r in got} == {f"/webhookb2/{SECRET}"}
    cards = [r.json() for r in got]
    for card in cards:
        validate_teams(card)
    fired = {
        fact["name"].removesuffix(" (new)")
        for card in cards
        for section in card["sections"]
        for fact in section["facts"]
    }
    assert fired == set(HOT)
    assert len({r.key for r in got}) == len(got), "one post per digest"
    # The secret is nowhere but in the request line: not in the logs, the report, the state.
    assert SECRET not in result.stderr.decode() and SECRET not in result.stdout.decode()
    for path in state.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    status = iotmon("status", "--state-dir", str(state))
    assert SECRET not in status.stdout.decode() + status.stderr.decode()
    shown = iotmon(
        "config",
        "show",
        *("--webhook-url", url),
        env={**os.environ, "TEAMS_URL": url},
        check=False,
    )
    assert SECRET not in shown.stdout.decode() + shown.stderr.decode()


def test_overrides_route_devices_to_their_own_webhook(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    data = readings(tmp_path / "readings.txt")
    config = tmp_path / "iotmon.toml"
    config.write_text(
        '[[overrides]]\nmatch = "HOT[34]"\nwebhooks = ["env:LINE3_URL"]\n', encoding="utf-8"
    )
    iotmon(
        *consume_args(data, tmp_path / "state", "--once", "--json", "--config", str(config)),
        *("--webhook-url", "env:DEFAULT_URL"),
        env={
            **os.environ,
            "DEFAULT_URL": webhook_server.url("/default"),
            "LINE3_URL": webhook_server.url("/line3"),
        },
    )
    devices: dict[str, set[str]] = {"/default": set(), "/line3": set()}
    for request in webhook_server.received:
        doc = request.json()
        validate_json(doc)
        devices[request.path] |= {d["device"] for d in doc["firing"]}
    assert devices == {"/default": {"HOT0", "HOT1", "HOT2"}, "/line3": {"HOT3", "HOT4"}}


def test_a_missing_url_variable_is_a_clear_error(tmp_path: Path) -> None:
    data = readings(tmp_path / "readings.txt", until=10)
    result = iotmon(
        *consume_args(data, tmp_path / "state", "--once"),
        *("--webhook-url", "env:IOTMON_TEST_NO_SUCH_VAR"),
        check=False,
    )
    assert result.returncode != 0
    assert "IOTMON_TEST_NO_SUCH_VAR is not set" in result.stderr.decode()


def newest_checkpoint(state: Path) -> float:
    return max((p.stat().st_mtime for p in state.glob("partitions/*.json")), default=0.0)


def test_an_outage_and_a_sigkill_lose_nothing_and_post_nothing_twice(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    data = readings(tmp_path / "readings.txt")
    env = {**os.environ, "HOOK_URL": webhook_server.url("/reference")}
    hook = ("--webhook-url", "env:HOOK_URL")
    # What an undisturbed run posts.
    iotmon(*consume_args(data, tmp_path / "reference", "--once", *hook), env=env)
    want = sorted(r.json()["digest_id"] for r in webhook_server.received)
    assert len(want) >= len(HOT)

    # The receiver is down while a follower queues every digest; then it is killed.
    webhook_server.answer(503, {"Retry-After": "0"})
    env["HOOK_URL"] = webhook_server.url("/hook")
    state = tmp_path / "state"
    proc = spawn(
        *consume_args(data, state, "--follow", "--checkpoint-interval", "0.2", *hook), env=env
    )
    try:
        webhook_server.wait_for(
            lambda got: len({r.key for r in got if r.path == "/hook"}) == len(want)
        )
        # Killed after a checkpoint that covers the digests: the restart does not regenerate
        # them, so only the outbox can deliver them.
        queued_at = time.time()
        deadline = time.monotonic() + PATIENCE_S
        while newest_checkpoint(state) <= queued_at:
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert len(list((state / "notifications" / "pending").glob("*-*.json"))) == len(want)

    # Back up; a restart delivers what was queued, each digest once, with its key.
    webhook_server.answer(200)
    iotmon(*consume_args(data, state, "--once", *hook), env=env)
    hook_requests = [r for r in webhook_server.received if r.path == "/hook"]
    delivered = [r for r in hook_requests if r.status == 200]
    counts = Counter(r.json()["digest_id"] for r in delivered)
    assert sorted(counts) == want, "no digest lost"
    assert set(counts.values()) == {1}, f"no digest posted twice: {counts}"
    refused = {r.key: r.body for r in hook_requests if r.status == 503}
    assert {r.key: r.body for r in delivered} == refused, "a resend is the same key and body"


@pytest.mark.kafka
async def test_kafka_input_posts_to_a_webhook(
    tmp_path: Path, webhook_server: WebhookServer, kafka_bootstrap: str, make_topic: object
) -> None:
    topic = await make_topic(partitions=2)  # type: ignore[operator]
    data = readings(tmp_path / "readings.txt")
    iotmon("produce", str(data), "--bootstrap-servers", kafka_bootstrap, "--topic", topic)
    group = f"webhooks-{topic}"
    try:
        # With the changelog (the default), posts wait for the checkpoint that covers them.
        iotmon(
            "consume",
            *("--bootstrap-servers", kafka_bootstrap, "--topic", topic),
            *("--group", group, "--once", "--json", "--no-live"),
            *("--state-dir", str(tmp_path / "state"), "--outbox", str(tmp_path / "eml")),
            *("--for", "0", "--group-wait", "0", "--group-interval", "1"),
            *("--window", "10", "--pane", "5"),
            *("--webhook-url", "env:HOOK_URL", "--webhook-format", "json"),
            env={**os.environ, "HOOK_URL": webhook_server.url("/kafka")},
        )
    finally:
        await drop_topics(kafka_bootstrap, [f"iotmon-{group}-changelog", f"{topic}.dlq"])
    fired = set()
    for request in webhook_server.received:
        doc = request.json()
        validate_json(doc)
        fired |= {d["device"] for d in doc["firing"] if d["new"]}
    assert fired == set(HOT)
    assert len({r.key for r in webhook_server.received}) == len(webhook_server.received)
