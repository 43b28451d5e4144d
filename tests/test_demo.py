"""`iotmon demo`: the overheating devices (and only they) fire, and their alerts arrive as
email at the demo's own SMTP server — in memory, through a real Kafka broker, and in-process
through :func:`iotmon.tools.demo.run_demo` with the .eml outbox."""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from iotmon.tools.demo import DemoOptions, demo_fleet, run_demo
from iotmon.tools.demo_inbox import ReceivedEmail
from tests.helpers import PATIENCE_S, iotmon


@dataclass(frozen=True)
class Summary:
    read: int
    rejected: int
    fired: set[str]
    emails: int
    topic: str | None


def parse_summary(stdout: str) -> Summary:
    def field(pattern: str) -> str:
        found = re.search(pattern, stdout, re.MULTILINE)
        assert found, f"{pattern!r} not in the demo's output:\n{stdout[-3000:]}"
        return found.group(1)

    fired = field(r"^fired \(\d+\): (.*)$")
    topic = re.search(r"through Kafka topic (\S+)", stdout)
    return Summary(
        read=int(field(r"^readings: (\d+) read")),
        rejected=int(field(r"^readings: .* (\d+) rejected")),
        fired=set() if fired == "none" else set(fired.split(", ")),
        emails=int(field(r"^emails received \([^)]*\): (\d+)")),
        topic=topic.group(1) if topic else None,
    )


def ground_truth(lines: int, options: DemoOptions | None = None) -> tuple[set[str], set[str]]:
    """(designed overheaters, devices that only spiked) in the first ``lines`` readings.

    The fleet and the values are the same whatever the start time, so replaying the same
    number of lines gives exactly what the demo streamed.
    """
    readings = demo_fleet(options or DemoOptions()).readings(start_us=0)
    for _ in islice(readings, lines):
        pass
    devices = readings.manifest()["devices"]
    overheaters = {d["id_equipamento"] for d in devices if d["overheat"] is not None}
    spikers = {
        d["id_equipamento"] for d in devices if d["overheat"] is None and d["spikes"]["count"]
    }
    return overheaters, spikers


def check_demo_output(stdout: str, stderr: str) -> Summary:
    summary = parse_summary(stdout)
    overheaters, spikers = ground_truth(summary.read)
    assert len(overheaters) == 20  # 10 % of 200
    assert spikers, "the scenario should contain spikes that must not fire"
    assert summary.fired, "no device fired"
    assert summary.fired <= overheaters, summary.fired - overheaters
    assert not summary.fired & spikers
    assert summary.rejected > 0  # the malformed lines were caught, not ignored
    assert summary.emails >= 1
    subjects = re.findall(r"^Subject: (.+)$", stdout, re.MULTILINE)
    assert len(subjects) == summary.emails
    assert all(s.startswith("[iotmon] ") for s in subjects), subjects
    # Each email is framed and shows its body, which names the devices it is about.
    assert "EMAIL #1 " in stdout
    for device in summary.fired:
        assert device in stdout.split("demo summary")[0], device
    # After the first email the demo silences a device that email named: no later email
    # lists it, and they say a device is silenced.
    silenced = re.search(r"^silenced after the first email: (\S+)$", stdout, re.MULTILINE)
    assert silenced and silenced.group(1) != "none", stdout[-3000:]
    device = silenced.group(1)
    mails = re.findall(r"^(EMAIL #\d+ .*?)^={78}$", stdout, re.MULTILINE | re.DOTALL)
    assert len(mails) == summary.emails
    assert device in mails[0]
    assert all(device not in mail for mail in mails[1:])
    assert all(re.search(r"^\d+ devices? silenced: ", mail, re.M) for mail in mails[1:])
    assert len(mails) > 1, "a demo of 20 s sends several digests"
    # Not a terminal: plain status lines on stderr, no live view escape codes.
    assert "read=" in stderr and "\x1b[" not in stderr
    return summary


@pytest.mark.slow
def test_demo_fires_the_overheating_devices_only(tmp_path: Path) -> None:
    result = iotmon("demo", "--duration", "20", timeout=180, cwd=tmp_path)
    check_demo_output(result.stdout.decode(), result.stderr.decode())
    # Nothing is left behind in the working directory (state went to a temporary dir).
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_demo_through_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = iotmon(
        "demo", "--kafka", "--bootstrap-servers", kafka_bootstrap, "--duration", "20",
        timeout=240, cwd=tmp_path,
    )  # fmt: skip
    summary = check_demo_output(result.stdout.decode(), result.stderr.decode())
    assert summary.topic is not None and summary.topic.startswith("iotmon-demo-")
    asyncio.run(_assert_topics_deleted(kafka_bootstrap, [summary.topic, f"{summary.topic}.dlq"]))


async def _assert_topics_deleted(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Deletion completes asynchronously on the broker and Kafka offers nothing to await:
        # poll its metadata until it says so.
        async with asyncio.timeout(PATIENCE_S):
            while set(topics) & set(await admin.list_topics()):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


def test_demo_with_unreachable_kafka_says_what_to_do() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Bound but not listening: connections are refused at once.
    result = iotmon(
        "demo", "--kafka", "--bootstrap-servers", f"127.0.0.1:{port}", "--duration", "5",
        check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "make kafka-up" in err and f"127.0.0.1:{port}" in err
    assert "Traceback" not in err


async def test_run_demo_in_process_with_the_outbox(tmp_path: Path) -> None:
    stop = asyncio.Event()
    arrived: list[ReceivedEmail] = []

    def on_email(email: ReceivedEmail) -> None:
        arrived.append(email)
        stop.set()  # the first email is enough; the stream then ends and drains

    options = DemoOptions(
        speed=60.0, outbox=tmp_path / "outbox", state_dir=tmp_path / "state", status_interval=3600
    )
    result = await run_demo(options, stop=stop, on_email=on_email)

    assert result.emails and list(result.emails) == arrived
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == len(result.emails)
    assert result.smtp_address is None and result.topic is None
    overheaters, spikers = ground_truth(result.report.readings, options)
    assert set(result.overheaters) == overheaters
    assert result.fired and set(result.fired) <= overheaters
    assert result.unexpected == ()
    assert not set(result.fired) & spikers
    # Every firing device is in an email.
    mailed = "\n".join(e.body for e in result.emails)
    assert all(device in mailed for device in result.fired)
    # The state dir was kept: its dead letters hold exactly the rejected lines.
    assert result.state_kept and (tmp_path / "state" / "alerts.jsonl").exists()
    dead = sum(
        len(path.read_bytes().splitlines()) for path in (tmp_path / "state").glob("*.dlq.jsonl")
    )
    assert dead == result.report.rejected > 0


def test_invalid_options_are_one_line() -> None:
    result = iotmon("demo", "--lang", "fr", "--duration", "1", check=False, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "lang" in lines[0]


async def test_run_demo_refuses_a_used_state_dir(tmp_path: Path) -> None:
    (tmp_path / "process.json").write_text("{}")
    with pytest.raises(ValueError, match="state-dir"):
        await run_demo(DemoOptions(state_dir=tmp_path, duration=1))
