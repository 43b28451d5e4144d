"""Unkeyed input: `iotmon repartition` re-keys it by device, and `consume` warns when it sees
one device in two partitions. Real broker, real processes."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import iotmon
from iotmon.kafka.settings import KafkaSettings
from tests.conftest import MakeTopic
from tests.helpers import assert_same_stats, consume_json, group_args, simulate_file
from tests.helpers import iotmon as run_iotmon

DEVICES = 800


def repartition(*args: str) -> subprocess.CompletedProcess[bytes]:
    # Through the CLI module itself, so this works whether or not `iotmon.cli` registers it.
    code = "import iotmon.cli.repartition, iotmon.cli as cli; cli.main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "repartition", *args],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result


@pytest.fixture
async def readings(tmp_path: Path) -> Path:
    return simulate_file(
        tmp_path / "readings.txt",
        "--devices",
        str(DEVICES),
        "--count",
        "120000",
        "--seed",
        "11",
        "--bad-rate",
        "0.002",
        "--late-rate",
        "0.01",
    )


def produce(path: Path, bootstrap: str, topic: str, *options: str) -> None:
    run_iotmon("produce", str(path), "--bootstrap-servers", bootstrap, "--topic", topic, *options)


async def test_repartition_gives_the_stats_of_a_keyed_copy(
    kafka_bootstrap: str,
    make_topic: MakeTopic,
    readings: Path,
    tmp_path: Path,
    changelogs: list[str],
) -> None:
    unkeyed = await make_topic(partitions=3)
    keyed = await make_topic(partitions=6)
    copy = await make_topic(partitions=6)
    produce(readings, kafka_bootstrap, unkeyed, "--key-field", "")
    produce(readings, kafka_bootstrap, keyed)

    args = ["--from-topic", unkeyed, "--to-topic", copy, "--bootstrap-servers", kafka_bootstrap]
    result = repartition(*args, "--once")
    assert b"120,000 messages" in result.stderr

    changelogs.extend([f"copy-{copy}", f"keyed-{keyed}"])
    from_copy = consume_json(*group_args(kafka_bootstrap, copy, changelogs[0], tmp_path / "copy"))
    from_keyed = consume_json(
        *group_args(kafka_bootstrap, keyed, changelogs[1], tmp_path / "keyed")
    )
    assert from_keyed["readings"] == 120_000
    assert_same_stats(from_copy, from_keyed, arrival_order=False)

    # Run again: it resumes from its commit and finds nothing new to copy.
    again = repartition(*args, "--once")
    assert b" 0 messages" in again.stderr


async def test_consume_warns_once_per_device_seen_in_two_partitions(
    kafka_bootstrap: str,
    make_topic: MakeTopic,
    readings: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    changelogs: list[str],
) -> None:
    unkeyed = await make_topic(partitions=3)
    changelogs.extend([f"split-{unkeyed}", f"lib-{unkeyed}"])
    produce(readings, kafka_bootstrap, unkeyed, "--key-field", "")

    # The warning is written by a real `consume` process ...
    result = run_iotmon(
        "consume",
        "--once",
        "--no-live",
        *group_args(kafka_bootstrap, unkeyed, changelogs[0], tmp_path / "cli"),
    )
    warnings = [line for line in result.stderr.decode().splitlines() if "is in partitions" in line]
    assert warnings and len(warnings) == len({line.split()[5] for line in warnings})
    assert "iotmon repartition" in warnings[0]

    # ... and counted once per device (every device is in all three partitions here).
    settings = iotmon.Settings(
        source=iotmon.SourceSettings(
            once=True,
            kafka=KafkaSettings(
                bootstrap_servers=kafka_bootstrap, topics=(unkeyed,), group=changelogs[1]
            ),
        ),
        state_dir=tmp_path / "lib",
        email=iotmon.EmailSettings(eml_dir=tmp_path / "lib" / "eml"),
    )
    with caplog.at_level(logging.WARNING, logger="iotmon.engine.pipeline"):
        async with iotmon.Pipeline(settings) as pipeline:
            report = await pipeline.run_once()
    assert pipeline.split_devices == DEVICES == len(report.devices)
    named = [r for r in caplog.records if "is in partitions" in r.getMessage()]
    assert len(named) == len({r.args[0] for r in named if isinstance(r.args, tuple)}) == 10
