"""Delivery against a real in-process SMTP server (aiosmtpd): outages, crashes, replies,
STARTTLS + AUTH, and the whole alerter from readings to a received email.

The servers are conftest's ``smtp_server`` / ``smtp_server_auth_tls``; only the outage test
runs its own, because it must start a server later on a port chosen beforehand. Nothing
here sleeps: tests wait on the server receiving messages, on the notifier reporting a
failed attempt, or on ``flush``. Backoff is shortened to milliseconds.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import socket
import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from iotmon.alerts import Alerter, AlertSettings
from iotmon.notify import (
    DeliverySettings,
    DeliveryWorker,
    DeviceReport,
    Digest,
    EmailSettings,
    EmlNotifier,
    Notification,
    Notifier,
    Outbox,
    SmtpNotifier,
    SmtpSettings,
    SmtpTlsRequiredError,
    build_notifier,
    render_email,
)
from iotmon.stats import StatsTable, WindowSpec
from tests.conftest import AUTH_WITHOUT_TLS
from tests.helpers import DIGEST_HEADERS, PATIENCE_S, WiredAlerter

S = 1_000_000
T0 = 1_678_882_537 * S
FAST = DeliverySettings(initial_backoff=0.02, max_backoff=0.1, jitter=0.5)
EMAIL = EmailSettings(mail_from="iotmon@plant.example", mail_to=("ops@plant.example",))


def notification(n: int, device: str | None = None) -> Notification:
    digest = Digest(
        digest_id=f"{n:032x}",
        kind="change",
        slot_us=T0 + n * S,
        recipients=(),
        metric="window",
        firing=(
            DeviceReport(
                device=device or f"sensor{n:02d}",
                value=80.0,
                window_mean=80.0,
                running_mean=79.0,
                max=90.0,
                threshold=75.0,
                clear_below=73.0,
                since_us=T0,
                last_seen_us=T0,
            ),
        ),
    )
    return Notification(message=render_email(digest, settings=EMAIL), digest=digest)


def smtp_to(server: Any, **options: Any) -> SmtpNotifier:
    """An SMTP notifier for a conftest ``SMTPCapture`` (or any object with host/port)."""
    return SmtpNotifier(SmtpSettings(host=server.host, port=server.port, timeout=5.0, **options))


class Watched:
    """Wraps a notifier to report each failed attempt: lets a test await a failure."""

    def __init__(self, inner: Notifier) -> None:
        self.inner = inner
        self.failures: asyncio.Queue[BaseException] = asyncio.Queue()

    async def __call__(self, notification: Notification) -> None:
        try:
            await self.inner(notification)
        except Exception as exc:
            self.failures.put_nowait(exc)
            raise

    async def next_failure(self) -> BaseException:
        return await asyncio.wait_for(self.failures.get(), timeout=PATIENCE_S)


# -- outages and crashes -------------------------------------------------------------------


class LateSink:
    """Minimal aiosmtpd handler for a server started mid-test: collects raw messages."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._changed:
            self.raw.append(bytes(envelope.original_content))
            self._changed.notify_all()
        return "250 OK"

    # The wait runs in a thread (the server lives in its own), out of asyncio.timeout's reach.
    async def wait_for(self, count: int, timeout: float = PATIENCE_S) -> list[bytes]:  # noqa: ASYNC109
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: len(self.raw) >= count, timeout)

        assert await asyncio.to_thread(wait), f"expected {count} messages, got {len(self.raw)}"
        return self.raw


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_server_down_then_up_delivers_every_notification_exactly_once(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there yet: connection refused
    notifier = Watched(SmtpNotifier(SmtpSettings(host="127.0.0.1", port=port, timeout=5.0)))
    outbox = Outbox(tmp_path)
    worker = DeliveryWorker(outbox, notifier, settings=FAST)
    await worker.start()
    for n in range(3):
        outbox.put(notification(n))
    worker.wake()
    assert f"127.0.0.1:{port}" in str(await notifier.next_failure())
    await notifier.next_failure()  # it keeps trying, with backoff

    sink = LateSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, server_hostname="late")
    controller.start()
    try:
        assert await worker.flush(timeout=PATIENCE_S)
        received = await sink.wait_for(3)
        ids = [str(message_from_bytes(raw, policy=default)["Message-ID"]) for raw in received]
        assert sorted(ids) == sorted(notification(n).message_id for n in range(3))
        stats = worker.stats()
        assert stats.sent == 3 and stats.retried >= 2 and stats.queued == 0
    finally:
        await worker.aclose()
        controller.stop()
    assert len(sink.raw) == 3


async def test_crash_between_persisting_and_sending_delivers_once(
    tmp_path: Path, smtp_server: Any
) -> None:
    # "Process" 1 persists the notification and dies before its delivery task runs.
    crashed = Outbox(tmp_path)
    crashed.put(notification(1))
    del crashed

    # "Process" 2 finds it and sends it.
    worker = DeliveryWorker(Outbox(tmp_path), smtp_to(smtp_server), settings=FAST)
    await worker.start()
    assert await worker.flush(timeout=PATIENCE_S)
    await worker.aclose()
    [received] = await smtp_server.wait_for(1)
    assert received.message["Message-ID"] == notification(1).message_id

    # "Process" 3: nothing left to send, and the same digest regenerated is not queued.
    outbox = Outbox(tmp_path)
    worker = DeliveryWorker(outbox, smtp_to(smtp_server), settings=FAST)
    await worker.start()
    assert not outbox.put(notification(1))
    assert await worker.flush(timeout=PATIENCE_S)
    await worker.aclose()
    assert len(smtp_server.messages) == 1


async def test_5xx_reply_marks_failed_keeps_it_and_does_not_retry(
    tmp_path: Path, smtp_server: Any
) -> None:
    smtp_server.fail_next(1, 554, text="5.7.1 Message rejected")
    outbox = Outbox(tmp_path)
    worker = DeliveryWorker(outbox, smtp_to(smtp_server), settings=FAST)
    await worker.start()
    outbox.put(notification(1))
    outbox.put(notification(2))
    assert await worker.flush(timeout=PATIENCE_S)  # nothing left to wait for
    await worker.aclose()

    # One attempt each: the refused one was not retried.
    assert smtp_server.rejections == [("data", 554)]
    assert [m.message["Message-ID"] for m in smtp_server.messages] == [notification(2).message_id]
    stats = worker.stats()
    assert (stats.failed, stats.sent, stats.retried) == (1, 1, 0)
    assert outbox.state_of(notification(1).digest.digest_id) == "failed"
    kept = (tmp_path / "failed" / f"{1:032x}.json").read_text()
    assert "554" in kept and "Message rejected" in kept
    assert Outbox(tmp_path).pending() == []


async def test_4xx_reply_is_retried_then_delivered(tmp_path: Path, smtp_server: Any) -> None:
    smtp_server.fail_next(2, 451)
    outbox = Outbox(tmp_path)
    notifier = Watched(smtp_to(smtp_server))
    worker = DeliveryWorker(outbox, notifier, settings=FAST)
    await worker.start()
    outbox.put(notification(1))
    worker.wake()
    assert "451" in str(await notifier.next_failure())
    assert await worker.flush(timeout=PATIENCE_S)
    await worker.aclose()
    [received] = await smtp_server.wait_for(1)
    assert received.message["Message-ID"] == notification(1).message_id
    assert smtp_server.rejections == [("data", 451), ("data", 451)]
    assert (worker.stats().retried, worker.stats().sent) == (2, 1)


async def test_4xx_on_the_recipient_is_retried_too(tmp_path: Path, smtp_server: Any) -> None:
    smtp_server.fail_next(1, 450, stage="rcpt")
    outbox = Outbox(tmp_path)
    worker = DeliveryWorker(outbox, smtp_to(smtp_server), settings=FAST)
    await worker.start()
    outbox.put(notification(1))
    assert await worker.flush(timeout=PATIENCE_S)
    await worker.aclose()
    assert len(await smtp_server.wait_for(1)) == 1
    assert worker.stats().retried == 1


# -- TLS and authentication ---------------------------------------------------------------


async def test_starttls_and_auth_against_a_verified_certificate(smtp_server_auth_tls: Any) -> None:
    server = smtp_server_auth_tls
    notifier = smtp_to(
        server,
        security="starttls",
        user=server.username,
        password=server.password,
        ca_file=server.cafile,
    )
    await notifier(notification(1))
    [received] = await server.wait_for(1)
    assert received.tls and received.auth_user == server.username
    assert received.rcpt_tos == ("ops@plant.example",)


async def test_auto_security_upgrades_when_the_server_offers_starttls(
    smtp_server_auth_tls: Any,
) -> None:
    server = smtp_server_auth_tls
    notifier = smtp_to(
        server, user=server.username, password=server.password, ca_file=server.cafile
    )
    await notifier(notification(1))
    [received] = await server.wait_for(1)
    assert received.tls


async def test_wrong_password_is_a_clear_error_and_the_notification_stays_queued(
    tmp_path: Path, smtp_server_auth_tls: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = smtp_server_auth_tls
    notifier = Watched(
        smtp_to(
            server,
            security="starttls",
            user=server.username,
            password="not-the-password",
            ca_file=server.cafile,
        )
    )
    outbox = Outbox(tmp_path)
    worker = DeliveryWorker(outbox, notifier, settings=FAST)
    await worker.start()
    outbox.put(notification(1))
    worker.wake()
    error = str(await notifier.next_failure())
    await worker.aclose()

    assert f"refused the login for user {server.username!r}" in error
    assert "IOTMON_SMTP_PASSWORD" in error and "`smtp_user`" in error
    assert "not-the-password" not in error  # the password itself is never shown
    assert [e.digest_id for e in Outbox(tmp_path).pending()] == [f"{1:032x}"]
    assert server.messages == []
    assert any("IOTMON_SMTP_PASSWORD" in r.getMessage() for r in caplog.records)
    stats = worker.stats()
    assert stats.queued == 1 and stats.failed == 0
    assert stats.last_error is not None and "IOTMON_SMTP_PASSWORD" in stats.last_error


@AUTH_WITHOUT_TLS
async def test_auto_security_never_sends_the_password_without_tls(
    tmp_path: Path, smtp_server_auth_plain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A server (or a man in the middle that stripped it) offering AUTH but no STARTTLS.
    server = smtp_server_auth_plain
    notifier = Watched(smtp_to(server, user=server.username, password=server.password))
    outbox = Outbox(tmp_path)
    worker = DeliveryWorker(outbox, notifier, settings=FAST)
    await worker.start()
    outbox.put(notification(1))
    worker.wake()
    error = await notifier.next_failure()
    await notifier.next_failure()  # retried, and withheld again
    await worker.aclose()

    assert isinstance(error, SmtpTlsRequiredError)
    assert "offers no STARTTLS" in str(error) and "`smtp_security` none" in str(error)
    assert error.settings == ("smtp_security",)
    assert server.password not in str(error)
    assert server.logins == []  # the password never left the process
    assert server.messages == []
    # Not lost: still queued for when TLS (or an explicit --smtp-security none) is set up.
    assert [e.digest_id for e in Outbox(tmp_path).pending()] == [f"{1:032x}"]
    assert Outbox(tmp_path).failed_count() == 0
    assert any(
        r.levelno == logging.ERROR and "offers no STARTTLS" in r.getMessage()
        for r in caplog.records
    )


@AUTH_WITHOUT_TLS
async def test_security_none_sends_the_password_in_clear_text_as_asked_with_a_warning(
    smtp_server_auth_plain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = smtp_server_auth_plain
    notifier = smtp_to(server, security="none", user=server.username, password=server.password)
    assert any(
        r.levelno == logging.WARNING and "clear text" in r.getMessage() for r in caplog.records
    )
    await notifier(notification(1))
    [received] = await server.wait_for(1)
    assert not received.tls and received.auth_user == server.username
    assert server.logins == [(server.username, server.password)]


def test_smtp_settings_repr_masks_the_password() -> None:
    settings = SmtpSettings(host="smtp.example", user="u", password="hunter2")
    assert "hunter2" not in repr(settings)
    assert "password=***" in repr(settings)
    assert "hunter2" not in repr(SmtpNotifier(settings))
    assert "password=None" in repr(SmtpSettings(host="smtp.example"))


async def test_a_queued_email_goes_out_byte_for_byte_as_the_outbox_stored_it(
    tmp_path: Path, smtp_server: Any
) -> None:
    outbox = Outbox(tmp_path)
    assert outbox.put(notification(1))
    [entry] = Outbox(tmp_path).pending()
    await smtp_to(smtp_server)(entry.notification())
    [received] = await smtp_server.wait_for(1)
    assert received.raw == entry.raw
    assert (received.mail_from, received.rcpt_tos) == (
        "iotmon@plant.example",
        ("ops@plant.example",),
    )
    # Stored bytes the email package would write differently (it trims the spaces after
    # "Subject:"): what arrives is what was stored, so it was not parsed and written again.
    raw = (
        b"From: iotmon@plant.example\r\nTo: ops@plant.example\r\n"
        b"Message-ID: <2@plant.example>\r\nSubject:   spaced\r\n\r\nbody\r\n"
    )
    await smtp_to(smtp_server)(Notification(digest=notification(2).digest, raw=raw))
    [_, received] = await smtp_server.wait_for(2)
    assert received.raw == raw


async def test_stored_bytes_with_a_bcc_go_through_the_generator_which_strips_it(
    smtp_server: Any,
) -> None:
    # Not what iotmon renders, but a stored email is sent as is only when that is what
    # send_message would have sent.
    raw = (
        b"From: iotmon@plant.example\r\nTo: ops@plant.example\r\nBcc: eve@evil.example\r\n"
        b"Message-ID: <1@plant.example>\r\nSubject: s\r\n\r\nbody\r\n"
    )
    await smtp_to(smtp_server)(Notification(digest=notification(1).digest, raw=raw))
    [received] = await smtp_server.wait_for(1)
    assert received.rcpt_tos == ("ops@plant.example",)
    assert received.message["Bcc"] is None and b"eve@" not in received.raw


# -- untrusted device ids on the wire ------------------------------------------------------


async def test_hostile_device_id_does_not_add_recipients_or_headers(smtp_server: Any) -> None:
    await smtp_to(smtp_server)(notification(1, device="evil\r\nBcc: x@y\x00<script>é"))
    [received] = await smtp_server.wait_for(1)
    assert received.rcpt_tos == ("ops@plant.example",)
    assert received.message["Bcc"] is None
    assert "\n" not in str(received.message["Subject"])
    assert b"\x00" not in received.raw


# Ids that are RFC 2047 encoded-words: the email package used to decode them when the subject
# was set, so their CR LF became header lines (X-Evil, Bcc) or ended the header block.
ENCODED_WORD_IDS = [
    ("=?utf-8?q?x=0D=0AX-Evil:_1?= tail", "=?utf-8?q?x=0D=0AX-Evil:_1?= tail"),
    ("=?utf-8?q?x=0D=0ABcc:_eve@evil.example?=", "=?utf-8?q?x=0D=0ABcc:_eve@evil.example?="),
    ("=?utf-8?q?x=0A=0A?=To-in-the-body", "=?utf-8?q?x=0A=0A?=To-in-the-body"),
    ("=?utf-8?b?eA0KWC1FdmlsOiAx?=", "=?utf-8?b?eA0KWC1FdmlsOiAx?="),  # "x\r\nX-Evil: 1"
    ("=?utf-8?q?=E2=80=AEgnp.exe?=", "=?utf-8?q?=E2=80=AEgnp.exe?="),  # an encoded U+202E
    ("\u202egnp.exe\r\nBcc: eve@evil.example", r"\u202egnp.exe\x0d\x0aBcc: eve@evil.example"),
    ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),
]


def assert_well_formed(raw: bytes, shown: str) -> None:
    """``raw`` is one digest about one device, displayed as ``shown``, with nothing added."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"^(x-evil|bcc)\s*:", raw, re.IGNORECASE | re.MULTILINE)
    # Short lines: nothing downstream refolds (and so decodes) the subject again.
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    parsed = message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    assert sorted(parsed.keys()) == DIGEST_HEADERS
    assert parsed["To"] == "ops@plant.example"
    assert parsed["Subject"] == f"[iotmon] 1 device above 75 °C: {shown} 80.0 °C"
    assert "\u202e" not in parsed["Subject"]
    plain = parsed.get_body(preferencelist=("plain",))
    markup = parsed.get_body(preferencelist=("html",))
    assert plain is not None and markup is not None
    # The id starts its row (or, too long for the column, a line of its own).
    assert any(line.startswith(f"  {shown}") for line in plain.get_content().splitlines())
    cell = re.escape(html.escape(shown))
    assert re.search(f"<td( nowrap)?>{cell}</td>", markup.get_content().replace("<wbr>", ""))
    assert "<img" not in markup.get_content()


async def test_encoded_word_ids_stay_literal_in_the_outbox_and_its_eml_files(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "state")
    worker = DeliveryWorker(outbox, EmlNotifier(tmp_path / "eml", echo=None), settings=FAST)
    for n, (device, _) in enumerate(ENCODED_WORD_IDS):
        assert outbox.put(notification(n, device=device))
    assert await worker.flush(timeout=10)
    await worker.aclose()
    assert outbox.failed_count() == 0
    for n, (_, shown) in enumerate(ENCODED_WORD_IDS):
        assert outbox.state_of(f"{n:032x}") == "sent"
        [eml] = (tmp_path / "eml").glob(f"*-{n:032x}.eml")
        assert_well_formed(eml.read_bytes(), shown)


async def test_encoded_word_ids_reach_the_smtp_server_as_literal_text(
    tmp_path: Path, smtp_server: Any
) -> None:
    outbox = Outbox(tmp_path)
    worker = DeliveryWorker(outbox, smtp_to(smtp_server), settings=FAST)
    for n, (device, _) in enumerate(ENCODED_WORD_IDS):
        assert outbox.put(notification(n, device=device))
    assert await worker.flush(timeout=10)
    await worker.aclose()
    assert outbox.failed_count() == 0 and worker.stats().sent == len(ENCODED_WORD_IDS)
    received = {
        str(mail.message["X-Iotmon-Digest"]): mail
        for mail in await smtp_server.wait_for(len(ENCODED_WORD_IDS))
    }
    for n, (_, shown) in enumerate(ENCODED_WORD_IDS):
        mail = received[f"{n:032x}"]
        assert mail.rcpt_tos == ("ops@plant.example",)
        assert_well_formed(mail.raw, shown)


# -- the whole path: readings → alerter → outbox → SMTP ------------------------------------


async def test_alerter_sends_one_digest_through_smtp_and_a_replay_sends_nothing_new(
    tmp_path: Path, smtp_server: Any
) -> None:
    settings = AlertSettings()
    spec = WindowSpec.from_seconds()

    def feed(alerter: Alerter, tracker: Any, table: StatsTable, start_s: int, end_s: int) -> None:
        for t in range(start_s, end_s, 5):
            tracker.observe("sensor50", table.add("sensor50", 80.0, T0 + t * S))
            alerter.tick(T0 + (t - 30) * S)  # the stream clock: latest event - lateness

    # Run 1: checkpoint after 30 s of readings; the device then fires, the digest goes out.
    alerter = WiredAlerter(
        settings=settings, email=EMAIL, notifier=smtp_to(smtp_server), state_dir=tmp_path
    )
    tracker = alerter.tracker("sensoresInfos:0")
    table = StatsTable(spec)
    await alerter.start()
    feed(alerter, tracker, table, 0, 30)
    checkpoint = (alerter.to_state(), tracker.to_state(), table.to_state())
    feed(alerter, tracker, table, 30, 600)
    assert await alerter.flush(timeout=PATIENCE_S)
    [received] = await smtp_server.wait_for(1)
    assert received.message["Subject"] == "[iotmon] 1 device above 75 °C: sensor50 80.0 °C"
    assert received.rcpt_tos == ("ops@plant.example",)
    await alerter.aclose()  # then the process "crashes": no newer checkpoint

    # Run 2: restore the checkpoint and replay from there: the same digest is regenerated,
    # recognised by its id, and not sent again.
    again = WiredAlerter(
        settings=settings, email=EMAIL, notifier=smtp_to(smtp_server), state_dir=tmp_path
    )
    again.restore(checkpoint[0])
    tracker = again.tracker("sensoresInfos:0", state=checkpoint[1])
    table = StatsTable.from_state(spec, checkpoint[2])
    await again.start()
    feed(again, tracker, table, 30, 600)
    assert [t.state for t in again.transitions] == ["firing"]
    assert await again.flush(timeout=PATIENCE_S)
    await again.aclose()
    assert len(smtp_server.messages) == 1
    # The alerts log is append-only: the replayed firing is logged a second time.
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [line.count('"firing"') for line in lines] == [0, 1, 1]


# -- without SMTP: .eml files --------------------------------------------------------------


async def test_without_smtp_notifications_become_eml_files(tmp_path: Path) -> None:
    lines: list[str] = []
    notifier = build_notifier(EmailSettings(eml_dir=tmp_path / "outbox"), echo=lines.append)
    assert isinstance(notifier, EmlNotifier)
    sent = notification(1)
    await notifier(sent)
    await notifier(sent)  # delivered twice after a crash: still one file
    [path] = (tmp_path / "outbox").glob("*.eml")
    assert message_from_bytes(path.read_bytes(), policy=default)["Message-ID"] == sent.message_id
    assert len(lines) == 2 and str(path) in lines[0] and "1 device above 75 °C" in lines[0]
