"""`iotmon consume` on files and stdin: exact means, dead letters, restarts, signals."""

from __future__ import annotations

import math
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from tests.helpers import (
    PATIENCE_S,
    SEED_FILE,
    assert_same_stats,
    consume_json,
    iotmon,
    kill_repeatedly,
    simulate_file,
    spawn,
)


def direct_means(path: Path, key: str) -> dict[str, tuple[int, float]]:
    values: dict[str, list[float]] = defaultdict(list)
    for line in path.read_bytes().splitlines():
        doc = orjson.loads(line)
        values[doc[key]].append(float(doc["padrao"]["leitura"]["temperatura"]))
    return {k: (len(v), math.fsum(v) / len(v)) for k, v in values.items()}


def test_seed_file_by_sensor_matches_a_direct_computation(tmp_path: Path) -> None:
    report = consume_json(
        "--input", str(SEED_FILE), "--key", "sensor", "--state-dir", str(tmp_path / "state")
    )
    expected = direct_means(SEED_FILE, "sensor")
    assert len(report["devices"]) == 50 == len(expected)
    assert report["readings"] == report["accepted"] == 10_000
    for sensor, (count, mean) in expected.items():
        device = report["devices"][sensor]
        assert device["count"] == count
        assert math.isclose(device["mean"], mean, rel_tol=0, abs_tol=1e-9)


def test_stdin_gives_the_same_stats_as_the_file(tmp_path: Path) -> None:
    from_file = consume_json(
        "--input", str(SEED_FILE), "--key", "sensor", "--state-dir", str(tmp_path / "a")
    )
    with SEED_FILE.open("rb") as stdin:
        result = iotmon(
            "consume",
            "--input",
            "-",
            "--key",
            "sensor",
            "--once",
            "--json",
            "--no-live",
            "--state-dir",
            str(tmp_path / "b"),
            stdin=stdin,
        )
    assert_same_stats(orjson.loads(result.stdout), from_file)


def test_every_line_is_accounted_for_and_rejects_are_dead_lettered(tmp_path: Path) -> None:
    data = simulate_file(
        tmp_path / "bad.txt",
        "--devices",
        "100",
        "--count",
        "20000",
        "--seed",
        "3",
        "--bad-rate",
        "0.05",
    )
    state = tmp_path / "state"
    report = consume_json("--input", str(data), "--state-dir", str(state))
    lines = data.read_bytes().splitlines()
    assert report["readings"] == len(lines) == 20_000
    assert report["readings"] == report["accepted"] + report["rejected"]
    assert 500 < report["rejected"] < 1500
    (dlq,) = state.glob("*.dlq.jsonl")
    records = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    assert len(records) == report["rejected"]
    reasons: dict[str, int] = defaultdict(int)
    for record in records:
        reasons[record["reason"]] += 1
        raw = record["raw"].encode()
        assert lines[record["position"] - 1] == raw, "DLQ keeps the exact line and its number"
    assert dict(reasons) == report["rejected_by_reason"]
    assert {"invalid_json", "wrong_type", "missing_field"} <= reasons.keys()


def test_sigkill_at_any_moment_then_restart_gives_exact_stats(tmp_path: Path) -> None:
    data = simulate_file(
        tmp_path / "million.txt",
        "--devices",
        "2000",
        "--count",
        "1000000",
        "--seed",
        "11",
        "--bad-rate",
        "0.001",
        "--late-rate",
        "0.01",
        "--late-by",
        "20",
        "--spike-rate",
        "0.001",
    )
    reference = consume_json("--input", str(data), "--state-dir", str(tmp_path / "reference"))

    state = tmp_path / "killed"
    args = [
        "consume",
        "--input",
        str(data),
        "--once",
        "--json",
        "--no-live",
        "--state-dir",
        str(state),
        "--checkpoint-interval",
        "0.1",
    ]
    kill_repeatedly(args, state_dir=state, kills=5)
    resumed = consume_json("--input", str(data), "--state-dir", str(state))
    assert_same_stats(resumed, reference)
    (dlq,) = state.glob("*.dlq.jsonl")
    assert len(dlq.read_bytes().splitlines()) == reference["rejected"], "no duplicate DLQ lines"


def test_sigterm_checkpoints_and_exits_zero_quickly(tmp_path: Path) -> None:
    data = tmp_path / "live.txt"
    data.write_bytes(SEED_FILE.read_bytes())
    state = tmp_path / "state"
    proc = spawn(
        "consume", "--input", str(data), "--follow", "--no-live", "--state-dir", str(state)
    )
    deadline = time.monotonic() + PATIENCE_S
    while not list(state.glob("partitions/*.json")):
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.wait(timeout=PATIENCE_S) == 0
    assert time.monotonic() - started < 5
    status = iotmon("status", "--state-dir", str(state), "--json")
    assert orjson.loads(status.stdout)["readings"] == 10_000


def test_corrupt_checkpoint_is_a_clear_error_not_a_reset(tmp_path: Path) -> None:
    state = tmp_path / "state"
    consume_json("--input", str(SEED_FILE), "--state-dir", str(state))
    (checkpoint,) = state.glob("partitions/*.json")
    checkpoint.write_bytes(b'{"format": "iotmon-checkpoint", "version": 1, "partition"')
    result = iotmon(
        "consume", "--input", str(SEED_FILE), "--once", "--state-dir", str(state), check=False
    )
    assert result.returncode == 2
    assert b"corrupt" in result.stderr and b"state-dir" in result.stderr
    checkpoint.write_bytes(b'{"hello": "world"}')
    result = iotmon(
        "consume", "--input", str(SEED_FILE), "--once", "--state-dir", str(state), check=False
    )
    assert result.returncode == 2 and b"not an iotmon checkpoint" in result.stderr


def test_a_second_process_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "live.txt"
    data.write_bytes(SEED_FILE.read_bytes())
    state = tmp_path / "state"
    first = spawn(
        "consume", "--input", str(data), "--follow", "--no-live", "--state-dir", str(state)
    )
    try:
        deadline = time.monotonic() + PATIENCE_S
        while not (state / "LOCK").exists() or not list(state.glob("partitions/*.json")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = iotmon(
            "consume", "--input", str(data), "--once", "--state-dir", str(state), check=False
        )
        assert second.returncode == 2 and b"in use by another iotmon process" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=PATIENCE_S)


@pytest.mark.parametrize("bad", ["--valid-range=10", "--window=7", "--metric=median"])
def test_invalid_options_give_one_clear_line(tmp_path: Path, bad: str) -> None:
    result = iotmon(
        "consume",
        "--input",
        str(SEED_FILE),
        "--once",
        "--state-dir",
        str(tmp_path),
        bad,
        check=False,
    )
    assert result.returncode == 2
    option = bad.split("=")[0].lstrip("-")
    assert option.encode() in result.stderr
    assert b"Traceback" not in result.stderr


def test_resume_after_clean_restart_does_not_double_count(tmp_path: Path) -> None:
    state = tmp_path / "state"
    data = tmp_path / "grow.txt"
    lines = SEED_FILE.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join(lines[:4000]))
    consume_json("--input", str(data), "--state-dir", str(state))
    with data.open("ab") as handle:
        handle.write(b"".join(lines[4000:]))
    second = consume_json("--input", str(data), "--state-dir", str(state))
    whole = consume_json("--input", str(SEED_FILE), "--state-dir", str(tmp_path / "whole"))
    assert_same_stats(second, whole)
    assert os.path.exists(state / "process.json")
