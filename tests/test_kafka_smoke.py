"""Smoke tests for the shared fixtures: a real Kafka round-trip and the test SMTP servers."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from typing import TYPE_CHECKING

import aiosmtplib
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

if TYPE_CHECKING:
    from conftest import MakeTopic, SMTPCapture

# ---------------------------------------------------------------------------------------- Kafka


async def test_kafka_keyed_round_trip(kafka_bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b'{"device":"d1","temp":21.5}', key=b"d1")
    finally:
        await producer.stop()
    assert 0 <= meta.partition < 3

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert record.key == b"d1"
    assert record.value == b'{"device":"d1","temp":21.5}'
    assert (record.partition, record.offset) == (meta.partition, meta.offset)


async def test_kafka_transactions_work(kafka_bootstrap: str, make_topic: MakeTopic) -> None:
    """The broker is configured for transactions on a single node (RF 1 txn log)."""
    topic = await make_topic(partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"smoke-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"committed", key=b"k")
        await producer.begin_transaction()
        await producer.send(topic, b"aborted", key=b"k")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"last", key=b"k")
    finally:
        await producer.stop()

    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, isolation_level="read_committed", group_id=None
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values = [(await consumer.getone()).value for _ in range(2)]
    finally:
        await consumer.stop()
    assert values == [b"committed", b"last"]


# ----------------------------------------------------------------------------------------- SMTP


def _mail(subject: str = "overheat d1") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "iotmon@example.test"
    msg["To"] = "ops@example.test"
    msg["Subject"] = subject
    msg.set_content("device d1 is at 91.2 C")
    return msg


async def test_smtp_plain_receives(smtp_server: SMTPCapture) -> None:
    await aiosmtplib.send(_mail(), hostname=smtp_server.host, port=smtp_server.port)
    (got,) = await smtp_server.wait_for(1)
    assert got.mail_from == "iotmon@example.test"
    assert got.rcpt_tos == ("ops@example.test",)
    assert got.message["Subject"] == "overheat d1"
    assert got.message.get_content().strip() == "device d1 is at 91.2 C"
    assert b"Subject: overheat d1" in got.raw
    assert (got.auth_user, got.tls) == (None, False)


async def test_smtp_auth_starttls_receives(smtp_server_auth_tls: SMTPCapture) -> None:
    smtp = smtp_server_auth_tls
    await aiosmtplib.send(
        _mail(),
        hostname=smtp.host,
        port=smtp.port,
        start_tls=True,
        tls_context=smtp.client_tls_context(),
        username=smtp.username,
        password=smtp.password,
    )
    (got,) = await smtp.wait_for(1)
    assert (got.auth_user, got.tls) == (smtp.username, True)
    assert got.message["Subject"] == "overheat d1"


async def test_smtp_wrong_password_rejected(smtp_server_auth_tls: SMTPCapture) -> None:
    smtp = smtp_server_auth_tls
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as exc_info:
        await aiosmtplib.send(
            _mail(),
            hostname=smtp.host,
            port=smtp.port,
            start_tls=True,
            tls_context=smtp.client_tls_context(),
            username=smtp.username,
            password="wrong",
        )
    assert exc_info.value.code == 535
    assert smtp.messages == []


async def test_smtp_requires_starttls(smtp_server_auth_tls: SMTPCapture) -> None:
    smtp = smtp_server_auth_tls
    with pytest.raises(aiosmtplib.SMTPException):
        await aiosmtplib.send(_mail(), hostname=smtp.host, port=smtp.port, start_tls=False)
    assert smtp.messages == []


async def test_smtp_injected_failures_then_success(smtp_server: SMTPCapture) -> None:
    smtp_server.fail_next(2, 451)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPDataError) as exc_info:
            await aiosmtplib.send(_mail(), hostname=smtp_server.host, port=smtp_server.port)
        assert exc_info.value.code == 451
    smtp_server.fail_next(1, 550, stage="rcpt")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await aiosmtplib.send(_mail(), hostname=smtp_server.host, port=smtp_server.port)
    await aiosmtplib.send(
        _mail("third time lucky"), hostname=smtp_server.host, port=smtp_server.port
    )
    (got,) = await smtp_server.wait_for(1)
    assert got.message["Subject"] == "third time lucky"
    assert smtp_server.rejections == [("data", 451), ("data", 451), ("rcpt", 550)]
