"""The decode worker (iotmon.engine.decoder): whatever it answers, and however it fails,
the columns of every block are exactly what this process's BlockParser gives; and
`iotmon consume` gives the same output with it and without it."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from iotmon.blocks import BLOCK_LINES, BlockParser, Columns
from iotmon.engine.decoder import WORKER_MIN_LINES, BlockDecoder
from iotmon.parse import ParseSettings
from tests.helpers import iotmon
from tests.test_batch_invariance import KEY_FIELDS, MAX_LINE_BYTES, hostile, reading

T0 = datetime(2023, 3, 15, 12, 0, 0, tzinfo=UTC)
# Values whose doubles a careless transport would change: the sign of zero, a subnormal,
# the last bits of a long fraction, ints and floats that compare equal.
VALUES: list[float | int] = [73.3, -0.0, 0.0, 5e-324, 0.1 + 0.2, 199.99999999999997, -50, 21, 21.0]
DEVICES = [
    "dev-0",
    "Equip <b>HOT</b>\r\nBcc: x@evil",
    "b\u00e9\u00e9p \u2603",
    'q"\\u0000',
    "x" * 256,
]


def big_batch(key_field: str = "id_equipamento", n: int = 6 * BLOCK_LINES + 100) -> list[bytes]:
    """``n`` readings in one hour, with every hostile kind in some blocks and not in others."""
    lines = [
        reading(
            key_field,
            DEVICES[i % len(DEVICES)],
            T0 + timedelta(seconds=i % 3000, microseconds=i),
            VALUES[i % len(VALUES)],
        )
        for i in range(n)
    ]
    # Hostile lines (but the too-long one, which a source caps before decoding) in the
    # second and the fifth block.
    bad = [line for line in hostile(key_field, T0) if len(line) <= MAX_LINE_BYTES]
    for block in (1, 4):
        start = block * BLOCK_LINES + 7
        lines[start : start + len(bad)] = bad
    return lines


def exact(columns: Columns | None) -> Any:
    """Columns with each value's type and bits, so that -0.0 differs from 0.0 and 21 from
    21.0."""
    if columns is None:
        return None
    values = [(type(v).__name__, v.hex() if type(v) is float else v) for v in columns.values]
    return columns.keys, values, columns.stamps, columns.latest_us


def here(lines: list[bytes], key_field: str = "id_equipamento") -> list[Any]:
    parser = BlockParser(ParseSettings(key_field=key_field))
    return [
        exact(parser.columns(lines[start : start + BLOCK_LINES]))
        for start in range(0, len(lines), BLOCK_LINES)
    ]


def decoded(decoder: BlockDecoder, lines: list[bytes], **kwargs: Any) -> list[Any]:
    return [exact(columns) for columns in decoder.columns(lines, **kwargs)]


@pytest.fixture
def decoder() -> Iterator[BlockDecoder]:
    decoder = BlockDecoder(ParseSettings(), worker=True)
    if not decoder.start_worker(wait=60):
        pytest.fail("the decode worker did not start (this test needs two CPU cores)")
    yield decoder
    decoder.close()


@pytest.mark.parametrize("key_field", KEY_FIELDS)
def test_the_worker_answers_what_this_process_would(key_field: str) -> None:
    lines = big_batch(key_field)
    want = here(lines, key_field)
    # The test is only worth something if blocks of each kind are there.
    assert None in want and any(block is not None for block in want)
    decoder = BlockDecoder(ParseSettings(key_field=key_field), worker=True)
    try:
        assert decoder.start_worker(wait=60)
        pid = decoder.worker_pid
        for _ in range(3):
            assert decoded(decoder, lines) == want
            assert decoded(decoder, lines, joined=b"\n".join(lines)) == want
            assert decoded(decoder, lines, joined=memoryview(b"\n".join(lines))) == want
        assert decoder.worker_pid == pid
    finally:
        decoder.close()


def test_a_line_holding_a_newline_is_decoded_here(decoder: BlockDecoder) -> None:
    lines = big_batch()
    lines[BLOCK_LINES + 3] = orjson.dumps(orjson.loads(lines[3]), option=orjson.OPT_INDENT_2)
    assert b"\n" in lines[BLOCK_LINES + 3]
    pid = decoder.worker_pid
    assert decoded(decoder, lines) == here(lines)
    # Not a failure: the worker goes on with the next batch.
    assert decoder.worker_pid == pid
    assert decoded(decoder, big_batch()) == here(big_batch())


def test_a_killed_worker_loses_nothing(
    decoder: BlockDecoder, caplog: pytest.LogCaptureFixture
) -> None:
    lines = big_batch()
    want = here(lines)
    pid = decoder.worker_pid
    assert pid is not None
    with caplog.at_level(logging.WARNING, logger="iotmon.engine.decoder"):
        # Killed after the first block of a batch: what it had answered by then is used,
        # the rest is decoded here (on this batch or, if it had answered all, the next).
        blocks = decoder.columns(lines)
        got = [exact(next(blocks))]
        os.kill(pid, signal.SIGKILL)
        got += [exact(columns) for columns in blocks]
        assert got == want
        assert decoded(decoder, lines) == want
    assert caplog.text.count("the decode worker stopped") == 1
    assert "loses nothing" in caplog.text
    # And from then on everything is decoded here, without a new worker.
    assert decoded(decoder, lines) == want
    assert decoder.worker_pid is None
    assert not decoder.start_worker(wait=1)


def test_a_worker_killed_while_this_process_waits_loses_nothing(
    decoder: BlockDecoder, caplog: pytest.LogCaptureFixture
) -> None:
    lines = big_batch()
    pid = decoder.worker_pid
    assert pid is not None
    # Stopped, it answers nothing: the batch waits for its first answer until the kill.
    os.kill(pid, signal.SIGSTOP)
    killer = threading.Timer(0.2, os.kill, (pid, signal.SIGKILL))
    killer.start()
    with caplog.at_level(logging.WARNING, logger="iotmon.engine.decoder"):
        assert decoded(decoder, lines) == here(lines)
    killer.join()
    assert caplog.text.count("the decode worker stopped") == 1
    assert decoder.worker_pid is None


@pytest.mark.parametrize("interpreter", ["not executable", "exits at once"])
def test_a_worker_that_cannot_start_leaves_decoding_here(
    interpreter: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nexit 3\n")
    if interpreter == "exits at once":
        python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    decoder = BlockDecoder(ParseSettings(), worker=True)
    lines = big_batch()
    with caplog.at_level(logging.WARNING, logger="iotmon.engine.decoder"):
        assert not decoder.start_worker(wait=60)
        assert decoded(decoder, lines) == here(lines)
    assert caplog.text.count("the decode worker stopped") == 1
    assert decoder.worker_pid is None


def test_a_batch_left_midway_does_not_shift_the_next(decoder: BlockDecoder) -> None:
    lines = big_batch()
    blocks = decoder.columns(lines)
    next(blocks)
    blocks.close()
    other = big_batch("sensor")
    assert decoded(decoder, other) == here(other)


def test_batches_sent_ahead_come_back_as_asked_for(decoder: BlockDecoder) -> None:
    a, b, c = big_batch(), big_batch("sensor"), big_batch(n=3 * BLOCK_LINES)
    c[2 * BLOCK_LINES + 5] = orjson.dumps(orjson.loads(c[5]), option=orjson.OPT_INDENT_2)
    decoder.send_ahead(a)
    decoder.send_ahead(b, joined=b"\n".join(b))
    decoder.send_ahead(c)
    assert decoded(decoder, a) == here(a)
    assert decoded(decoder, b) == here(b)
    assert decoded(decoder, c) == here(c)
    # Sent ahead but never asked for (the run stopped before it): its answers are dropped
    # when a later batch is asked for; one asked for without being sent is decoded here.
    decoder.send_ahead(a)
    decoder.send_ahead(b)
    assert decoded(decoder, b) == here(b)
    assert decoded(decoder, c) == here(c)
    assert decoded(decoder, a) == here(a)
    assert decoder.worker_pid is not None


def test_a_worker_killed_with_batches_sent_ahead_loses_nothing(
    decoder: BlockDecoder, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = big_batch(), big_batch("sensor"), big_batch(n=3 * BLOCK_LINES)
    decoder.send_ahead(a)
    decoder.send_ahead(b)
    pid = decoder.worker_pid
    assert pid is not None
    with caplog.at_level(logging.WARNING, logger="iotmon.engine.decoder"):
        os.kill(pid, signal.SIGKILL)
        # Whatever it had answered before it died is used; the rest is decoded here.
        assert decoded(decoder, a) == here(a)
        assert decoded(decoder, b) == here(b)
        assert decoded(decoder, c) == here(c)
    assert caplog.text.count("the decode worker stopped") == 1
    assert decoder.worker_pid is None


def test_small_batches_and_a_worker_turned_off_stay_in_this_process() -> None:
    small = big_batch(n=WORKER_MIN_LINES - 1)
    on = BlockDecoder(ParseSettings(), worker=True)
    off = BlockDecoder(ParseSettings(), worker=False)
    try:
        assert decoded(on, small) == here(small)
        assert on.worker_pid is None
        assert not on.start_worker(wait=0) or on.worker_pid is not None
        lines = big_batch()
        assert decoded(off, lines) == here(lines)
        assert not off.start_worker(wait=1)
        assert off.worker_pid is None
    finally:
        on.close()
        off.close()


def test_the_worker_sees_no_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTMON_SMTP_PASSWORD", "s3cret-smtp")
    monkeypatch.setenv("TEAMS_URL", "https://example.invalid/s3cret-hook")
    decoder = BlockDecoder(ParseSettings(), worker=True)
    try:
        assert decoder.start_worker(wait=60)
        environ = Path(f"/proc/{decoder.worker_pid}/environ").read_bytes()
        assert b"s3cret" not in environ
        lines = big_batch()
        assert decoded(decoder, lines) == here(lines)
    finally:
        decoder.close()


def test_close_stops_the_worker(decoder: BlockDecoder) -> None:
    pid = decoder.worker_pid
    assert pid is not None
    decoder.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert decoder.worker_pid is None


# -- through the command line ----------------------------------------------------------


def _log_with_an_overheating_device(path: Path) -> Path:
    """20,000 readings of 20 devices over 2,000 s, one of them at 95 °C, and hostile lines
    every 1,000 lines."""
    lines = []
    bad = [line for line in hostile("id_equipamento", T0) if len(line) <= MAX_LINE_BYTES]
    for i in range(20_000):
        device = f"Equipament-{i % 20:02d}"
        value = 95.0 if i % 20 == 0 else 40.0 + (i % 7) / 10
        lines.append(reading("id_equipamento", device, T0 + timedelta(milliseconds=100 * i), value))
        if i % 1_000 == 999:
            lines += bad
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("turned_off", ["--no-decode-worker", "IOTMON_DECODE_WORKER=false"])
def test_consume_gives_the_same_with_and_without_the_worker(
    tmp_path: Path, turned_off: str
) -> None:
    log = _log_with_an_overheating_device(tmp_path / "sensors.txt")
    runs: dict[str, tuple[dict[str, Any], str, list[Path]]] = {}
    for name in ("worker", "here"):
        state = tmp_path / name
        args = [
            "consume",
            *("--input", str(log), "--once", "--json", "--no-live", "--log-level", "debug"),
            *("--state-dir", str(state), "--outbox", str(state / "outbox")),
            *("--threshold", "80", "--for", "0", "--group-wait", "0"),
        ]
        env = dict(os.environ)
        if name == "here":
            if turned_off.startswith("--"):
                args.append(turned_off)
            else:
                variable, value = turned_off.split("=")
                env[variable] = value
        result = iotmon(*args, env=env)
        emails = sorted((state / "outbox").glob("*.eml"))
        runs[name] = (orjson.loads(result.stdout), result.stderr.decode(), emails)
    (with_worker, worker_log, worker_emails), (without, here_log, here_emails) = (
        runs["worker"],
        runs["here"],
    )
    assert "decode worker started" in worker_log
    assert "decode worker started" not in here_log
    assert "the decode worker stopped" not in worker_log
    assert with_worker == without
    assert with_worker["rejected"] == 20 * len(hostile("id_equipamento", T0)) - 20
    # The alert still fires, once, for the one hot device.
    assert len(worker_emails) == len(here_emails) == 1
    assert b"Equipament-00" in worker_emails[0].read_bytes()
