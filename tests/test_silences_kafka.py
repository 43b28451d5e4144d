"""Silences with Kafka input: two running instances of one group, a real broker and a real
SMTP server. A silence added with `iotmon silence add` reaches both within seconds (no
restart), expiring it lets their mail through again, and a restarted group keeps it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from iotmon.alerts.silences import Silences
from iotmon.kafka.silences import KafkaSilenceWatch
from tests.conftest import MakeTopic, ReceivedMail, SMTPCapture
from tests.helpers import (
    PATIENCE_S,
    free_port,
    group_args,
    iotmon,
    labelled,
    metric,
    scrape_until,
    spawn,
    stop,
)
from tests.test_silences_cli import listed, reading, text_of

# Partition of each device: the silence covers one device on each, so each instance holds one.
PARTITION = {
    "Equip-A1": 0,
    "Equip-B1": 0,
    "Equip-F1": 0,
    "Equip-G1": 0,
    "Equip-A2": 1,
    "Equip-C1": 1,
}


def produce(bootstrap: str, topic: str, *devices: str, at: float) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for device in devices:
                await producer.send_and_wait(
                    topic,
                    reading(device, 80.0, at),
                    key=device.encode(),
                    partition=PARTITION[device],
                )
        finally:
            await producer.stop()

    asyncio.run(send())


def mail_where(
    smtp: SMTPCapture, after: int, found: Callable[[ReceivedMail], bool]
) -> ReceivedMail:
    """The first message from index ``after`` on that satisfies ``found``."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        for mail in smtp.messages[after:]:
            if found(mail):
                return mail
        assert time.monotonic() < deadline, [text_of(m.message) for m in smtp.messages[after:]]
        smtp.wait_for_sync(len(smtp.messages) + 1, timeout=max(0.1, deadline - time.monotonic()))


def test_a_silence_reaches_both_running_instances_and_survives_their_restart(
    tmp_path: Path, kafka_bootstrap: str, make_topic: MakeTopic, smtp_server: SMTPCapture
) -> None:
    topic = asyncio.run(make_topic(partitions=2))
    group = f"silences-{uuid.uuid4().hex[:8]}"
    where = ("--bootstrap-servers", kafka_bootstrap, "--group", group)
    ports = [free_port(), free_port()]

    def start(index: int) -> Popen[bytes]:
        return spawn(
            "consume",
            *group_args(kafka_bootstrap, topic, group, tmp_path / f"state{index}"),
            *("--checkpoint-interval", "0.5", "--for", "0"),
            *("--group-wait", "1", "--group-interval", "2"),
            *("--window", "10", "--pane", "1", "--allowed-lateness", "1"),
            *("--smtp-host", smtp_server.host, "--smtp-port", str(smtp_server.port)),
            *("--smtp-security", "none", "--mail-to", "ops@example.com"),
            *("--no-live", "--status-interval", "3600", "--metrics-port", str(ports[index])),
        )

    def one_partition_each(procs: list[Popen[bytes]]) -> None:
        for proc, port in zip(procs, ports, strict=True):
            scrape_until(
                proc,
                port,
                lambda s: len(labelled(s, "iotmon_partition_lag", "partition")) == 1,
                timeout=PATIENCE_S,
            )

    def silenced_on_both(count: int) -> None:
        for proc, port in zip(procs, ports, strict=True):
            scrape_until(
                proc,
                port,
                lambda s: metric(s, "iotmon_silenced_devices") == count,
                timeout=PATIENCE_S,
            )

    procs = [start(0), start(1)]
    try:
        one_partition_each(procs)
        added = iotmon("silence", "add", "Equip-A*", "--for", "1h", "--comment", "repair", *where)
        silence_id = added.stdout.decode().strip()
        # Readings 5 s of event time after the silence was added: by the time any digest
        # about them is due, both instances must know it — no restart, no waiting on our side.
        mark = len(smtp_server.messages)
        produce(
            kafka_bootstrap,
            topic,
            "Equip-A1",
            "Equip-B1",
            "Equip-A2",
            "Equip-C1",
            at=time.time() + 5,
        )
        for told in ("Equip-B1", "Equip-C1"):
            mail = mail_where(smtp_server, mark, lambda m, d=told: d in listed(text_of(m.message)))
            assert "1 device silenced" in text_of(mail.message)
        silenced_on_both(1)
        assert not any(
            {"Equip-A1", "Equip-A2"} & listed(text_of(m.message))
            for m in smtp_server.messages[mark:]
        )

        # Expired: each instance tells about its silenced device at its next digest.
        mark = len(smtp_server.messages)
        iotmon("silence", "expire", silence_id, *where)
        for device in ("Equip-A1", "Equip-A2"):
            mail = mail_where(
                smtp_server, mark, lambda m, d=device: d in listed(text_of(m.message))
            )
            assert "silenced" not in text_of(mail.message)
        silenced_on_both(0)

        # A silence added now is still there after both instances restart.
        iotmon("silence", "add", "Equip-F*", "--for", "1h", *where)
        for proc in procs:
            stop(proc)
        procs = [start(0), start(1)]
        one_partition_each(procs)
        mark = len(smtp_server.messages)
        produce(kafka_bootstrap, topic, "Equip-F1", "Equip-G1", at=time.time())
        mail = mail_where(smtp_server, mark, lambda m: "Equip-G1" in listed(text_of(m.message)))
        assert "Equip-F1" not in listed(text_of(mail.message))
        assert "1 device silenced" in text_of(mail.message)
        [shown] = [s for s in list_json(where) if s["pattern"] == "Equip-F*"]
        assert shown["state"] == "active"
        # `iotmon status` reads only the state directories; the consumers copy the silences
        # they know into their checkpoints.
        deadline = time.monotonic() + PATIENCE_S
        while (silenced := status_silenced(tmp_path / "state0", tmp_path / "state1")) != {
            "Equip-F1"
        }:
            assert time.monotonic() < deadline, silenced
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop(proc)


def status_silenced(*state_dirs: Path) -> set[str]:
    found: set[str] = set()
    for state_dir in state_dirs:
        doc = orjson.loads(iotmon("status", "--state-dir", str(state_dir), "--json").stdout)
        found.update(doc["silenced"])
    return found


def list_json(where: tuple[str, ...]) -> list[dict[str, str]]:
    docs: list[dict[str, str]] = orjson.loads(iotmon("silence", "list", "--json", *where).stdout)
    return docs


async def test_a_consumer_that_cannot_read_the_silences_topic_runs_without_silences(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A name Kafka refuses stands for a broker that does not let iotmon create the topic.
    watch = KafkaSilenceWatch(
        bootstrap_servers=kafka_bootstrap, topic="no such topic!", silences=Silences()
    )
    with caplog.at_level(logging.ERROR, logger="iotmon.kafka.silences"):
        await watch.start()
    try:
        assert "running without silences" in caplog.text
        assert not watch.silences.silenced("Equip-A1")
    finally:
        await watch.aclose()
