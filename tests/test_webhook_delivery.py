"""Webhook delivery through the outbox against a real HTTP server (aiohttp.web, recording
every request) and a real SMTP server: answers sorted into delivered / retried / failed,
Retry-After, one independent entry per destination, outboxes of older versions, secrets.

Nothing sleeps: tests wait for the server to receive requests or for ``flush``. Backoff is
shortened to milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from iotmon.addresses import webhook_id
from iotmon.config import mask_secrets
from iotmon.errors import ConfigError
from iotmon.notify import (
    DeliverySettings,
    Digest,
    EmailSettings,
    Notifications,
    Notifier,
    Outbox,
    SmtpNotifier,
    SmtpSettings,
    WebhookSettings,
    render_email,
    resolve_webhook,
)
from iotmon.notify.model import Notification
from iotmon.notify.webhook import retry_after_seconds
from tests.conftest import SMTPCapture
from tests.helpers import PATIENCE_S, free_port, sample_digest
from tests.webhook_server import WebhookServer

S = 1_000_000
T0 = 1_678_882_537 * S
FAST = DeliverySettings(initial_backoff=0.02, max_backoff=0.1, jitter=0.5)
EMAIL = EmailSettings(
    mail_from="iotmon@plant.example", mail_to=("ops@plant.example",), delivery=FAST
)
SECRET = "T000/B000/s3cr3t-t0ken"


def digest(n: int, *, webhooks: tuple[str, ...] = ()) -> Digest:
    return dataclasses.replace(sample_digest(n), webhooks=webhooks)


def hooks(*urls: str, fmt: str = "json", known: tuple[str, ...] = ()) -> WebhookSettings:
    env = {f"HOOK{i}": url for i, url in enumerate((*urls, *known))}
    refs = [f"env:HOOK{i}" for i in range(len(urls) + len(known))]
    return WebhookSettings(
        default=tuple(resolve_webhook("webhook-url", r, environ=env) for r in refs[: len(urls)]),
        known=tuple(
            resolve_webhook("override webhooks", r, environ=env) for r in refs[len(urls) :]
        ),
        format=fmt,  # type: ignore[arg-type]
    )


async def unreachable_email(notification: Notification) -> None:
    raise ConnectionRefusedError("no SMTP here")


async def hanging_email(notification: Notification) -> None:
    """An SMTP server that accepts the connection and never answers."""
    await asyncio.Event().wait()


async def no_email(notification: Notification) -> None:
    """Email entries count as delivered at once (these tests are about webhooks)."""


def notifications(
    tmp_path: Path,
    webhooks: WebhookSettings,
    *,
    notifier: Notifier = no_email,
    hold: Callable[[str], Awaitable[None]] | None = None,
) -> Notifications:
    return Notifications(
        email=EMAIL,
        notifier=notifier,
        directory=tmp_path / "outbox",
        webhooks=webhooks,
        hold=hold,
    )


@contextlib.asynccontextmanager
async def started(sink: Notifications) -> AsyncIterator[Notifications]:
    """``sink`` delivering for the duration of the block."""
    await sink.start()
    try:
        yield sink
    finally:
        await sink.aclose()


async def test_a_digest_is_posted_with_its_idempotency_key(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    sink = notifications(tmp_path, hooks(webhook_server.url()))
    async with started(sink):
        sink([digest(1)])
        assert await sink.flush(PATIENCE_S)
    [request] = webhook_server.received
    entry_id = f"{1:032x}-{webhook_id('env:HOOK0')}"
    assert request.key == entry_id
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.headers["X-Iotmon-Digest"] == f"{1:032x}"
    assert request.json()["schema"] == "iotmon.digest.v1"
    outbox = Outbox(tmp_path / "outbox")
    assert outbox.state_of(entry_id) == "sent"
    assert outbox.state_of(f"{1:032x}") == "sent", "the email entry is its own"


async def test_an_outage_is_ridden_out_and_each_digest_arrives_once(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    webhook_server.answer(503)
    sink = notifications(tmp_path, hooks(webhook_server.url()))
    async with started(sink):
        sink([digest(1), digest(2)])
        await asyncio.to_thread(
            webhook_server.wait_for, lambda got: len({r.key for r in got}) == 2 and len(got) >= 6
        )
        assert sink.stats().retried >= 4
        webhook_server.answer(200)
        assert await sink.flush(PATIENCE_S)
    delivered = webhook_server.delivered()
    assert sorted(r.json()["digest_id"] for r in delivered) == [f"{1:032x}", f"{2:032x}"]
    retried_keys = {r.key for r in webhook_server.received if r.status == 503}
    assert retried_keys == {r.key for r in delivered}, "every resend carries the same key"


@pytest.mark.parametrize("status", [408, 429, 500, 502])
async def test_retryable_answers_are_retried(
    tmp_path: Path, webhook_server: WebhookServer, status: int
) -> None:
    webhook_server.answers = [(status, {})]
    sink = notifications(tmp_path, hooks(webhook_server.url()))
    async with started(sink):
        sink([digest(1)])
        assert await sink.flush(PATIENCE_S)
    assert [r.status for r in webhook_server.received] == [status, 200]
    assert sink.stats().failed == 0


@pytest.mark.parametrize("status", [400, 401, 404, 413])
async def test_other_client_errors_go_to_failed(
    tmp_path: Path, webhook_server: WebhookServer, status: int
) -> None:
    webhook_server.answer(status)
    sink = notifications(tmp_path, hooks(webhook_server.url()))
    async with started(sink):
        sink([digest(1)])
        assert await sink.flush(PATIENCE_S)
    assert len(webhook_server.received) == 1, "not retried"
    entry_id = f"{1:032x}-{webhook_id('env:HOOK0')}"
    assert Outbox(tmp_path / "outbox").state_of(entry_id) == "failed"
    failed = orjson.loads((tmp_path / "outbox" / "failed" / f"{entry_id}.json").read_bytes())
    assert f"answered {status}" in failed["error"]


async def test_retry_after_is_honoured(tmp_path: Path, webhook_server: WebhookServer) -> None:
    # Backoff alone would retry after at most 0.1 s; the receiver asks for 1 s.
    webhook_server.answers = [(429, {"Retry-After": "1"})]
    slow_cap = DeliverySettings(initial_backoff=0.02, max_backoff=5.0, jitter=0.0)
    sink = Notifications(
        email=EmailSettings(delivery=slow_cap),
        notifier=no_email,
        directory=tmp_path / "outbox",
        webhooks=hooks(webhook_server.url()),
    )
    async with started(sink):
        sink([digest(1)])
        assert await sink.flush(PATIENCE_S)
    first, second = webhook_server.received
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds({"Retry-After": "120"}) == 120.0
    now = 1_700_000_000.0
    date = "Tue, 14 Nov 2023 22:13:27 GMT"  # now + 7 s
    assert retry_after_seconds({"Retry-After": date}, now=now) == pytest.approx(7.0)
    assert retry_after_seconds({"Retry-After": "Tue, 14 Nov 2000 22:14:20 GMT"}, now=now) == 0.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


async def test_a_dead_receiver_is_retried_until_it_comes_up(tmp_path: Path) -> None:
    port = free_port()
    sink = notifications(tmp_path, hooks(f"http://127.0.0.1:{port}/hook"))
    async with started(sink):
        sink([digest(1)])
        assert not await sink.flush(0.3)
        assert "cannot deliver to webhook http://127.0.0.1" in (sink.stats().last_error or "")
    assert len(Outbox(tmp_path / "outbox")) == 1, "still queued for the next start"


@pytest.mark.parametrize("email", [unreachable_email, hanging_email])
async def test_an_smtp_outage_does_not_hold_back_the_webhook(
    tmp_path: Path, webhook_server: WebhookServer, email: Notifier
) -> None:
    sink = notifications(tmp_path, hooks(webhook_server.url()), notifier=email)
    async with started(sink):
        sink([digest(1)])
        await asyncio.to_thread(webhook_server.wait_for, lambda got: len(got) == 1)
        # Queued while the email of the first digest is still being tried.
        sink([digest(2)])
        await asyncio.to_thread(webhook_server.wait_for, lambda got: len(got) == 2)
        assert not await sink.flush(0.2)
    outbox = Outbox(tmp_path / "outbox")
    assert [e.entry_id for e in outbox.pending()] == [f"{1:032x}", f"{2:032x}"]


async def test_a_webhook_outage_does_not_hold_back_email(
    tmp_path: Path, webhook_server: WebhookServer, smtp_server: SMTPCapture
) -> None:
    webhook_server.answer(503)
    smtp = SmtpNotifier(SmtpSettings(host=smtp_server.host, port=smtp_server.port, timeout=5))
    sink = notifications(tmp_path, hooks(webhook_server.url()), notifier=smtp)
    async with started(sink):
        sink([digest(1), digest(2)])
        await asyncio.to_thread(smtp_server.wait_for_sync, 2)
        assert not await sink.flush(0.5)
    assert len(smtp_server.messages) == 2
    assert {e.destination for e in Outbox(tmp_path / "outbox").pending()} == {
        webhook_id("env:HOOK0")
    }


async def test_each_destination_gets_its_own_entry_and_overrides_replace_the_defaults(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    line3 = webhook_id("env:HOOK2")
    settings = hooks(
        webhook_server.url("/a"), webhook_server.url("/b"), known=(webhook_server.url("/c"),)
    )
    sink = notifications(tmp_path, settings)
    async with started(sink):
        sink([digest(1), digest(2, webhooks=(line3,))])
        assert await sink.flush(PATIENCE_S)
    got = sorted((r.path, r.json()["digest_id"]) for r in webhook_server.received)
    assert got == [("/a", f"{1:032x}"), ("/b", f"{1:032x}"), ("/c", f"{2:032x}")]


async def test_a_replayed_digest_is_not_posted_again(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    for _ in range(2):
        sink = notifications(tmp_path, hooks(webhook_server.url()))
        await sink.start()
        try:
            sink([digest(1)])
            assert await sink.flush(PATIENCE_S)
        finally:
            await sink.aclose()
    assert len(webhook_server.received) == 1


async def test_an_outbox_left_by_an_older_version_is_still_delivered(
    tmp_path: Path, webhook_server: WebhookServer, smtp_server: SMTPCapture
) -> None:
    # The record exactly as versions before webhooks wrote it (no "silenced", no "webhooks",
    # no entry_id/destination).
    d = digest(7)
    raw = render_email(d, settings=EMAIL).as_bytes()
    old = d.to_json()
    del old["silenced"], old["webhooks"]
    pending = tmp_path / "outbox" / "pending"
    pending.mkdir(parents=True)
    record = {
        "version": 1,
        "digest_id": d.digest_id,
        "created_at": 1.0,
        "seq": 1,
        "digest": old,
        "message": base64.b64encode(raw).decode(),
    }
    (pending / f"{d.digest_id}.json").write_bytes(orjson.dumps(record))
    smtp = SmtpNotifier(SmtpSettings(host=smtp_server.host, port=smtp_server.port, timeout=5))
    sink = notifications(tmp_path, hooks(webhook_server.url()), notifier=smtp)
    async with started(sink):
        assert await sink.flush(PATIENCE_S)
    [mail] = smtp_server.messages
    assert d.digest_id in str(mail)
    assert webhook_server.received == [], "an old entry is an email, nothing else"


async def test_the_secret_url_is_stored_and_logged_nowhere(
    tmp_path: Path, webhook_server: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_url = webhook_server.url(f"/services/{SECRET}") + "?token=qu3ry-s3cr3t"
    webhook_server.answers = [(503, {}), (400, {})]
    env = {"TEAMS_URL": secret_url}
    settings = WebhookSettings(
        default=(resolve_webhook("webhook-url", "env:TEAMS_URL", environ=env),)
    )
    assert SECRET not in repr(settings)
    sink = notifications(tmp_path, settings)
    async with started(sink):
        sink([digest(1)])
        assert await sink.flush(PATIENCE_S)
    assert webhook_server.received[0].path == f"/services/{SECRET}", "it was really used"
    stats = sink.stats()
    for text in (caplog.text, repr(stats), str(stats.last_error)):
        assert SECRET not in text and "qu3ry-s3cr3t" not in text
    assert f"webhook http://127.0.0.1:{webhook_server.port}/…" in caplog.text
    for path in (tmp_path / "outbox").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and b"qu3ry" not in data, path
    shown = mask_secrets({"webhook_url": [secret_url, "env:TEAMS_URL"]})["webhook_url"]
    assert shown == [f"http://127.0.0.1:{webhook_server.port}/…", "env:TEAMS_URL"]


def test_a_missing_variable_or_file_is_a_config_error_without_the_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TEAMS_URL is not set"):
        resolve_webhook("webhook-url", "env:TEAMS_URL", environ={})
    with pytest.raises(ConfigError, match="cannot read the file"):
        resolve_webhook("webhook-url", f"file:{tmp_path}/nope", environ={})
    with pytest.raises(ConfigError) as caught:
        resolve_webhook("webhook-url", f"ftp://hooks.example/{SECRET}", environ={})
    assert SECRET not in str(caught.value)
    url_file = tmp_path / "url"
    url_file.write_text(f"https://hooks.example/{SECRET}\n")
    assert resolve_webhook("webhook-url", f"file:{url_file}", environ={}).url.endswith(SECRET)


async def test_a_webhook_waits_for_the_commit_gate(
    tmp_path: Path, webhook_server: WebhookServer
) -> None:
    released = asyncio.Event()
    held: list[str] = []

    async def hold(digest_id: str) -> None:
        held.append(digest_id)
        await released.wait()

    sink = notifications(tmp_path, hooks(webhook_server.url()), hold=hold)
    async with started(sink):
        sink([digest(1)])
        assert not await sink.flush(0.2)
        assert webhook_server.received == [] and held == [f"{1:032x}"]
        released.set()
        assert await sink.flush(PATIENCE_S)
    assert len(webhook_server.received) == 1


async def test_an_entry_whose_destination_was_removed_stays_queued_with_an_error(
    tmp_path: Path, webhook_server: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    webhook_server.answer(503)
    sink = notifications(tmp_path, hooks(webhook_server.url()))
    async with started(sink):
        sink([digest(1)])
        await asyncio.to_thread(webhook_server.wait_for, lambda got: len(got) >= 1)
    # Restarted without any --webhook-url: the queued post is not thrown away.
    restarted = notifications(tmp_path, WebhookSettings())
    async with started(restarted):
        assert not await restarted.flush(0.3)
    assert "no longer configured" in (restarted.stats().last_error or "")
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert len(Outbox(tmp_path / "outbox")) == 1
