"""What importing the pure parts of iotmon loads: no Kafka client, no SMTP client."""

from __future__ import annotations

import subprocess
import sys


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
