"""Poison pills: hostile lines and messages through every source, each run followed by a real
overheating device whose alert must still be mailed.

For file, stdin and Kafka input alike: the process exits 0, every line or message is accounted
for (``readings == accepted + rejected``, one dead letter per rejection), the hot device's
digest reaches a real SMTP server as a well-formed email, and a restart from the state the run
left behind succeeds with the same statistics.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import ReceivedMail, SMTPCapture
from tests.helpers import iotmon

START = datetime(2026, 1, 1, tzinfo=UTC)
HOT = "Equipament-HOT-0001"
WARM = "Equipament-WARM-0002"
BIG = 17 * 1024 * 1024
"""Over asyncio's 16 MiB stream limit and far over any sane reading."""


def _at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reading(device: str, temperature: Any, at: str) -> bytes:
    return orjson.dumps(
        {
            "id_equipamento": device,
            "data_evento": at,
            "padrao": {
                "formato": "iot:leitura:sensor:temp",
                "leitura": {"temperatura": temperature},
            },
        }
    )


def _raw(device_json: str, temperature: str, at_json: str) -> bytes:
    """A reading spelled by hand, for what orjson.dumps would never write."""
    return (
        f'{{"id_equipamento":{device_json},"data_evento":{at_json},'
        f'"padrao":{{"leitura":{{"temperatura":{temperature}}}}}}}'
    ).encode()


def hostile_lines() -> Iterator[bytes]:
    """What a broken or malicious producer can put on one line (no raw LF inside)."""
    t0 = f'"{_at(0)}"'
    # Event times outside datetime's range once the offset is applied, or from the far future.
    yield reading("HOT-RANGE", 90.0, "9999-12-31T23:59:59-12:00")
    yield reading("HOT-RANGE", 90.0, "0001-01-01T00:00:00+14:00")
    yield reading(HOT, 20.0, "9999-12-31T00:00:00Z")  # must not silence HOT
    yield reading(WARM, 90.0, "9000-01-01T00:00:00Z")  # must not make WARM fire forever
    # Timestamps that are not times.
    for at in ("2026-02-30T00:00:00Z", "2026-01-01T25:00:00Z", "2026-01-01T23:59:60Z",
               "2026-01-01", "", "now", "2026-01-01T00:00:00.1234567890123456789Z",
               "+002026-01-01T00:00:00Z", "2026-01-01T00:00:00+99:00"):  # fmt: skip
        yield reading("BAD-TIME", 50.0, at)
    yield _raw('"BAD-TIME"', "50.0", "1767225600")
    # Temperatures that are not temperatures.
    for temperature in ("1e999", "-1e999", "NaN", "Infinity", "true", "null", '"hot"', "[90]",
                        "{}", "1" + "0" * 400, "0x10", "9" * 30):  # fmt: skip
        yield _raw('"BAD-TEMP"', temperature, t0)
    # Device ids that attack what shows them: mail headers, terminals, markup, HTML.
    yield reading("=?utf-8?q?x=0D=0AX-Evil:_1?= tail", 50.0, _at(0))
    yield reading("=?utf-8?q?=0A=0ABcc:_victim@example.com?=", 50.0, _at(0))
    yield reading("\u001b]0;PWNED\u0007\u001b[2J", 50.0, _at(0))
    yield reading("row\r\nforged | 99.9 | firing", 50.0, _at(0))
    yield reading("[bold red]x[/] <script>alert(1)</script>", 50.0, _at(0))
    yield reading("\u202eevil\u202c", 50.0, _at(0))
    yield reading("", 50.0, _at(0))
    yield reading("x" * 100_000, 50.0, _at(0))
    yield _raw("123", "50.0", t0)
    yield _raw('{"a":1}', "50.0", t0)
    # Not JSON, not an object, not UTF-8, not one document.
    yield b""
    yield b"   \t "
    yield b"\r"
    yield b"\x00\x00\x00"
    yield b"\xff\xfe\xfd not utf-8 \xc3\x28"
    yield b"\xef\xbb\xbf" + reading("BOM", 50.0, _at(0))
    yield b"[" * 100_000 + b"]" * 100_000
    yield b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    yield b"[1, 2, 3]"
    yield b'"a string"'
    yield b"null"
    yield reading("TWO", 50.0, _at(0)) + b" " + reading("TWO", 50.0, _at(1))
    yield reading("TRUNC", 50.0, _at(0))[:-7]
    yield b'{"id_equipamento":"DUP","id_equipamento":"DUP2","data_evento":' + t0.encode() + b"}"
    yield b'{"id_equipamento":"ESC\\ud800","data_evento":' + t0.encode() + b"}"
    # Too long to keep whole: over the stdin stream limit and over any Kafka message default.
    yield b'{"id_equipamento":"' + b"A" * BIG + b'"}'


def overheating_device() -> Iterator[bytes]:
    """HOT at 95 °C for 15 minutes, WARM at 60 °C beside it; then both go quiet."""
    for second in range(0, 900, 5):
        yield reading(HOT, 95.0, _at(second))
        yield reading(WARM, 60.0, _at(second))


def stream() -> list[bytes]:
    hostile = list(hostile_lines())
    hot = list(overheating_device())
    # Hostile lines before, among and after the valid ones: none may stop what follows.
    return hostile[:20] + hot[:60] + hostile[20:] + hot[60:] + hostile[:5]


ALERT_ARGS = (
    *("--threshold", "75", "--for", "30", "--window", "60", "--pane", "5"),
    *("--group-wait", "0", "--group-interval", "30"),
)


def mail_args(smtp: SMTPCapture) -> list[str]:
    return [
        *("--smtp-host", smtp.host, "--smtp-port", str(smtp.port), "--smtp-security", "none"),
        *("--mail-to", "ops@example.com", "--mail-from", "iotmon@example.com"),
    ]


def assert_hot_device_mailed(smtp: SMTPCapture) -> None:
    received = smtp.wait_for_sync(1, timeout=120)
    assert any(_mentions(mail, HOT) for mail in received), "the hot device's digest was not mailed"
    for mail in received:
        message = email.message_from_bytes(mail.raw, policy=email.policy.default)
        names = {name.lower() for name in message}
        assert "x-evil" not in names and "bcc" not in names, names
        assert message["To"] == "ops@example.com"
        assert "\u202e" not in str(message["Subject"])


def _mentions(mail: ReceivedMail, device: str) -> bool:
    message = email.message_from_bytes(mail.raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",))
    return body is not None and device in body.get_content()


def assert_accounted(report: dict[str, Any], lines: int, dead_letters: int) -> None:
    assert report["readings"] == lines
    assert report["readings"] == report["accepted"] + report["rejected"]
    assert sum(report["rejected_by_reason"].values()) == report["rejected"] == dead_letters
    hot = report["devices"][HOT]
    assert hot["count"] == 180 and hot["max"] == 95.0, "the far-future reading is not HOT's"
    assert report["devices"][WARM]["max"] == 60.0, "the far-future reading is not WARM's"
    states = {alert["device"]: alert["state"] for alert in report["alerts"]}
    assert states.get(HOT) == "firing"
    assert states.get(WARM) != "firing"


def consume(*args: str, **kwargs: Any) -> dict[str, Any]:
    result = iotmon("consume", "--once", "--json", "--no-live", *ALERT_ARGS, *args, **kwargs)
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


def _dlq_lines(state: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in state.glob("*.dlq.jsonl"))


@pytest.mark.slow
def test_poison_pills_from_a_file(tmp_path: Path, smtp_server: SMTPCapture) -> None:
    lines = stream()
    data = tmp_path / "poison.txt"
    data.write_bytes(b"\n".join(lines) + b"\n")
    state = tmp_path / "state"
    report = consume("--input", str(data), "--state-dir", str(state), *mail_args(smtp_server))
    assert_accounted(report, len(lines), _dlq_lines(state))
    assert_hot_device_mailed(smtp_server)

    again = consume("--input", str(data), "--state-dir", str(state), *mail_args(smtp_server))
    assert again["devices"] == report["devices"]
    assert _dlq_lines(state) == report["rejected"], "dead letters are kept exactly once"


@pytest.mark.slow
def test_poison_pills_from_stdin(tmp_path: Path, smtp_server: SMTPCapture) -> None:
    lines = stream()
    state = tmp_path / "state"
    report = consume(
        *("--input", "-", "--state-dir", str(state)),
        *mail_args(smtp_server),
        input=b"\n".join(lines) + b"\n",
    )
    assert_accounted(report, len(lines), _dlq_lines(state))
    assert_hot_device_mailed(smtp_server)

    again = consume(
        *("--input", "-", "--state-dir", str(state)), *mail_args(smtp_server), input=b""
    )
    assert again["devices"] == report["devices"]


AIOKAFKA_RECORDS = (
    "-c",
    "import iotmon.kafka.messages\n"
    "from aiokafka.consumer.fetcher import PartitionRecords as records\n"
    "records._consumer_record = records._consumer_record.__wrapped__\n"
    "from iotmon.cli import main\n"
    "main()",
)


async def _big_message_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=2,
                    replication_factor=1,
                    topic_configs={"max.message.bytes": str(64 * 1024 * 1024)},
                )
            ]
        )
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=64 * 1024 * 1024, linger_ms=5
    )
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, key=_key_of(value))
        await producer.flush()
    finally:
        await producer.stop()


def _key_of(value: bytes | None) -> bytes:
    """Valid readings keyed by device, so each device's readings stay in order."""
    return b"hot" if value is not None and HOT.encode() in value[:200] else b"other"


async def _count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = consumer.assignment() or set()
        while not partitions:
            await consumer.getmany(timeout_ms=200)
            partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        return sum(ends.values())
    finally:
        await consumer.stop()


@pytest.mark.slow
@pytest.mark.parametrize("records", ["tuples", "aiokafka"])
async def test_poison_pills_from_kafka(
    kafka_bootstrap: str, tmp_path: Path, smtp_server: SMTPCapture, records: str
) -> None:
    """``aiokafka``: as if an aiokafka upgrade had bypassed iotmon's lean messages (see
    :mod:`iotmon.kafka.messages`), so the source gets aiokafka's own records."""
    topic = f"iotmon-poison-{uuid.uuid4().hex[:8]}"
    await _big_message_topic(kafka_bootstrap, topic)
    # Kafka carries what a line cannot: values with raw line feeds inside, and a message
    # with no value at all (a tombstone).
    values: list[bytes | None] = [
        *stream(),
        reading("LF\nX-Evil: 1\n\nbody", 50.0, _at(0)),
        b"a\nb\r\nc",
        None,
    ]
    await _produce(kafka_bootstrap, topic, values)
    state = tmp_path / "state"
    args = (
        *("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--group", "poison"),
        *("--state-dir", str(state), "--no-changelog"),
        *mail_args(smtp_server),
    )
    how: dict[str, Any] = {"entry": AIOKAFKA_RECORDS} if records == "aiokafka" else {}
    report = consume(*args, **how)
    assert_accounted(report, len(values), await _count(kafka_bootstrap, f"{topic}.dlq"))
    assert_hot_device_mailed(smtp_server)

    again = consume(*args)
    assert again["devices"] == report["devices"]
