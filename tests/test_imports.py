"""What importing the pure parts of iotmon loads: no Kafka client, no SMTP client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.helpers import SEED_FILE, iotmon


def _loaded_after(statement: str) -> set[str]:
    code = f"{statement}; import sys; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_statistics_parsing_and_alerting_load_neither_kafka_nor_smtp() -> None:
    loaded = _loaded_after("import iotmon.stats, iotmon.parse, iotmon.alerts")
    assert not {m for m in loaded if m.split(".")[0] in ("aiokafka", "aiosmtplib")}
    assert "iotmon.notify" not in loaded, "alerting decides; it does not deliver"


def test_the_engine_loads_neither_kafka_nor_smtp_until_asked() -> None:
    loaded = _loaded_after("import iotmon.engine.pipeline")
    assert not {m for m in loaded if m.split(".")[0] in ("aiokafka", "aiosmtplib")}
    assert not {m for m in loaded if m.startswith("iotmon.kafka.") and m != "iotmon.kafka.settings"}


def test_a_file_mode_consume_loads_neither_kafka_nor_smtp_nor_http(tmp_path: Path) -> None:
    # As a user runs it: every command is registered at start-up, and none of them may drag
    # the Kafka, SMTP or HTTP client into a run that reads a file and sends no mail and
    # posts no webhook.
    readings = tmp_path / "readings.txt"
    readings.write_bytes(SEED_FILE.read_bytes()[:4096].rsplit(b"\n", 1)[0] + b"\n")
    result = iotmon(
        *("consume", "--input", str(readings), "--once", "--json", "--no-live"),
        *("--state-dir", str(tmp_path / "state")),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert orjson.loads(result.stdout)["accepted"] > 0, "the run really consumed the file"
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "iotmon.cli.produce" in imported, "the import trace covers the command modules"
    assert not {m for m in imported if m.split(".")[0] in ("aiokafka", "aiosmtplib", "aiohttp")}
