"""The state dir through the CLI: dead letters exactly once across crashes and deleted
checkpoints, a lock that `rm LOCK` cannot bypass, and checkpoints that refuse hand edits."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from tests.conftest import MakeTopic
from tests.helpers import SEED_FILE, assert_same_stats, consume_json, drop_topics, iotmon, spawn

# Each over Python's 8 KiB write buffer, so every dead letter reaches the file as it is put:
# a crash before the first checkpoint leaves them all behind.
INVALID = [b'{"id_sensor": "broken-%d", "padding": "' % i + b"x" * 9000 for i in range(5)]


def _input_with_invalid_lines(path: Path) -> Path:
    lines = SEED_FILE.read_bytes().splitlines()[:1000]
    for i, bad in enumerate(INVALID):
        lines.insert(100 + 150 * i, bad)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _dead_letters(state: Path) -> list[bytes]:
    (dlq,) = state.glob("*.dlq.jsonl")
    return [orjson.loads(line)["raw"].encode() for line in dlq.read_bytes().splitlines()]


def _wait_for(condition: Callable[[], object], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"exited before {what}: {proc.communicate()[1].decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within 60 s")
        time.sleep(0.02)


def test_dead_letters_once_after_a_crash_before_the_first_checkpoint(tmp_path: Path) -> None:
    data = _input_with_invalid_lines(tmp_path / "in.txt")
    state = tmp_path / "state"
    proc = spawn(
        *("consume", "--input", str(data), "--follow", "--no-live"),
        *("--state-dir", str(state), "--checkpoint-interval", "3600"),
    )

    def all_dead_letters_written() -> bool:
        files = list(state.glob("*.dlq.jsonl"))
        return bool(files) and files[0].read_bytes().count(b"\n") == len(INVALID)

    _wait_for(all_dead_letters_written, proc, "dead letters")
    assert not list(state.glob("partitions/*.json")), "killed before the first checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.communicate()

    report = consume_json("--input", str(data), "--state-dir", str(state))
    assert report["rejected"] == len(INVALID)
    assert sorted(_dead_letters(state)) == sorted(INVALID), "each invalid line exactly once"


def test_dead_letters_once_after_the_partition_checkpoint_is_deleted(tmp_path: Path) -> None:
    data = _input_with_invalid_lines(tmp_path / "in.txt")
    state = tmp_path / "state"
    consume_json("--input", str(data), "--state-dir", str(state))
    assert sorted(_dead_letters(state)) == sorted(INVALID)
    (checkpoint,) = state.glob("partitions/*.json")
    checkpoint.unlink()
    report = consume_json("--input", str(data), "--state-dir", str(state))
    assert report["readings"] == 1000 + len(INVALID), "read again from the start"
    assert sorted(_dead_letters(state)) == sorted(INVALID), "each invalid line exactly once"


def test_removing_the_lock_file_does_not_let_a_second_consumer_in(tmp_path: Path) -> None:
    data = _input_with_invalid_lines(tmp_path / "in.txt")
    state = tmp_path / "state"
    first = spawn(
        *("consume", "--input", str(data), "--follow", "--no-live"),
        *("--state-dir", str(state), "--checkpoint-interval", "0.1"),
    )
    try:
        _wait_for(lambda: list(state.glob("partitions/*.json")), first, "first checkpoint")
        (state / "LOCK").unlink()
        second = iotmon(
            "consume", "--input", str(data), "--once", "--state-dir", str(state), check=False
        )
        assert second.returncode == 2
        message = second.stderr.decode().strip()
        assert len(message.splitlines()) == 1, message
        assert "in use by another iotmon process" in message
        assert "--state-dir" in message and str(state) in message
        assert first.poll() is None, "the first consumer keeps running"
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        first.communicate()
    assert sorted(_dead_letters(state)) == sorted(INVALID), "one writer of the dead letters"


def _one_line_error(state: Path) -> str:
    result = iotmon(
        "consume", "--input", str(SEED_FILE), "--once", "--state-dir", str(state), check=False
    )
    assert result.returncode == 2, result.stderr.decode()[-2000:]
    message: str = result.stderr.decode().strip()
    assert len(message.splitlines()) == 1, message
    assert "Traceback" not in message
    return message


def test_a_hand_edited_count_is_refused_naming_the_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    consume_json("--input", str(SEED_FILE), "--state-dir", str(state))
    (checkpoint,) = state.glob("partitions/*.json")
    payload = checkpoint.read_bytes()
    assert payload.count(b'"read":10000') == 1
    checkpoint.write_bytes(payload.replace(b'"read":10000', b'"read":10001'))
    message = _one_line_error(state)
    assert str(checkpoint) in message and "checksum" in message
    assert "delete it" in message


def test_a_hand_edited_alert_state_is_refused_naming_the_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    consume_json("--input", str(SEED_FILE), "--state-dir", str(state))
    process = state / "process.json"
    doc = orjson.loads(process.read_bytes())
    payload = process.read_bytes()
    clock = b'"clock_us":%d' % doc["clock_us"]
    process.write_bytes(payload.replace(clock, b'"clock_us":%d' % (doc["clock_us"] + 1)))
    message = _one_line_error(state)
    assert str(process) in message and "checksum" in message


def _as_legacy(path: Path, **changes: object) -> None:
    """Rewrite a checkpoint as an iotmon from before checksums would have written it."""
    doc = orjson.loads(path.read_bytes())
    del doc["sha256"]
    doc["version"] = 1
    doc["position"].update(changes)
    path.write_bytes(orjson.dumps(doc))


def test_a_checkpoint_offset_that_is_not_a_number_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    consume_json("--input", str(SEED_FILE), "--state-dir", str(state))
    (checkpoint,) = state.glob("partitions/*.json")
    _as_legacy(checkpoint, offset="abc")
    message = _one_line_error(state)
    assert str(checkpoint) in message
    assert "position.offset must be a whole number" in message and "'abc'" in message


def test_checkpoints_from_before_checksums_are_still_restored(tmp_path: Path) -> None:
    state = tmp_path / "state"
    data = tmp_path / "grow.txt"
    lines = SEED_FILE.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join(lines[:4000]))
    consume_json("--input", str(data), "--state-dir", str(state))
    (checkpoint,) = state.glob("partitions/*.json")
    _as_legacy(checkpoint)
    with data.open("ab") as handle:
        handle.write(b"".join(lines[4000:]))
    result = iotmon(
        *("consume", "--input", str(data), "--once", "--json", "--no-live"),
        *("--state-dir", str(state)),
    )
    assert b"no checksum" in result.stderr
    whole = consume_json("--input", str(SEED_FILE), "--state-dir", str(tmp_path / "whole"))
    assert_same_stats(orjson.loads(result.stdout), whole)
    rewritten = orjson.loads(checkpoint.read_bytes())
    assert rewritten["version"] == 2 and len(rewritten["sha256"]) == 64


async def test_a_hand_edited_changelog_cache_is_ignored_for_the_changelog_copy(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = await make_topic(partitions=1)
    iotmon("produce", str(SEED_FILE), "--bootstrap-servers", kafka_bootstrap, "--topic", topic)
    state = tmp_path / "state"
    args = [
        *("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--group", "edited"),
        *("--state-dir", str(state)),
    ]
    try:
        first = consume_json(*args)
        assert first["readings"] == 10_000
        (cache,) = state.glob("partitions/*.json")
        payload = cache.read_bytes()
        assert payload.count(b'"read":10000') == 1
        cache.write_bytes(payload.replace(b'"read":10000', b'"read":10001'))
        result = iotmon("consume", "--once", "--json", "--no-live", *args)
        assert b"ignoring the cached checkpoint" in result.stderr
        assert b"checksum" in result.stderr
        assert orjson.loads(result.stdout)["readings"] == 10_000, "the changelog's count"
    finally:
        await drop_topics(kafka_bootstrap, ["iotmon-edited-changelog"])
