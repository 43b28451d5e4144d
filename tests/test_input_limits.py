"""Hostile input through the real CLI: lines too long to hold (``--max-line-bytes``,
reason ``too_long``) from stdin, files and Kafka; event times no UTC date can hold; and
``--valid-range`` bounds that are not plain numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import given, settings
from hypothesis import strategies as st

from iotmon.sources.base import OVERSIZED_PREFIX_BYTES, OversizedLine
from iotmon.sources.files import LineSplitter
from tests.conftest import MakeTopic
from tests.helpers import consume_json, iotmon
from tests.test_consume_kafka import read_topic

MiB = 1 << 20


def reading(device: str, second: int, temperature: float = 20.0, stamp: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "id_equipamento": device,
            "data_evento": stamp or f"2023-03-15T12:00:{second:02d}.000000Z",
            "padrao": {"leitura": {"temperatura": temperature}},
        }
    )


def huge_line(size: int) -> bytes:
    head = b'{"id_equipamento":"BIG","padding":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def dead_letters(state: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(line)
        for f in sorted(state.glob("*.dlq.jsonl"))
        for line in f.read_bytes().splitlines()
    ]


# -- --max-line-bytes -------------------------------------------------------------------


def test_stdin_pipe_with_a_20_mib_line_rejects_it_and_counts_the_rest(tmp_path: Path) -> None:
    state = tmp_path / "state"
    data = b"\n".join([reading("A", 1), reading("A", 2), huge_line(20 * MiB), reading("A", 3)])
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "iotmon", "consume", "--input", "-", "--once", "--json"),
            *("--no-live", "--state-dir", str(state)),
        ],
        input=data + b"\n",
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    report = orjson.loads(proc.stdout)
    assert (report["readings"], report["accepted"]) == (4, 3)
    assert report["rejected_by_reason"] == {"too_long": 1}
    [letter] = dead_letters(state)
    assert letter["reason"] == "too_long"
    assert letter["position"] == 3
    assert str(20 * MiB) in letter["detail"]
    assert letter["raw"].encode() == huge_line(20 * MiB)[:OVERSIZED_PREFIX_BYTES]


def test_a_50_mb_line_in_a_file_is_never_held_whole(tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    with data.open("wb") as out:
        out.write(reading("A", 1) + b"\n")
        out.write(huge_line(50_000_000) + b"\n")
        out.write(reading("A", 2) + b"\n")
        # Unterminated last line: too long as well.
        out.write(huge_line(3 * MiB))
    # A fresh parent whose only child is iotmon: RUSAGE_CHILDREN is then iotmon's peak.
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    state = tmp_path / "state"
    result = subprocess.run(
        [
            *(sys.executable, "-c", probe, sys.executable, "-m", "iotmon", "consume"),
            *("--input", str(data), "--once", "--no-live", "--state-dir", str(state)),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    peak_mb = int(result.stdout) / 1024  # ru_maxrss is in KiB on Linux
    # About 50 MB is the interpreter and its imports; holding the line would add 50-250 MB.
    assert peak_mb < 120, f"peak RSS {peak_mb:.0f} MB"
    letters = dead_letters(state)
    assert [(d["reason"], d["position"]) for d in letters] == [("too_long", 2), ("too_long", 4)]
    assert str(50_000_000) in letters[0]["detail"]
    again = consume_json("--input", str(data), "--state-dir", str(tmp_path / "again"))
    assert (again["readings"], again["accepted"]) == (4, 2)
    assert again["rejected_by_reason"] == {"too_long": 2}


def test_max_line_bytes_is_configurable(tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_bytes(reading("A", 1) + b"\n" + huge_line(5000) + b"\n" + reading("A", 2) + b"\n")
    default = consume_json("--input", str(data), "--state-dir", str(tmp_path / "a"))
    # Under the default limit it is an ordinary line: parsed, and missing a temperature.
    assert default["rejected_by_reason"] == {"missing_field": 1}
    small = consume_json(
        "--input", str(data), "--state-dir", str(tmp_path / "b"), "--max-line-bytes", "4096"
    )
    assert small["rejected_by_reason"] == {"too_long": 1}
    assert small["accepted"] == 2
    bad = iotmon("consume", "--input", str(data), "--once", "--max-line-bytes", "0", check=False)
    assert bad.returncode == 2
    assert b"max-line-bytes" in bad.stderr


async def test_kafka_message_over_the_limit_is_dead_lettered_as_too_long(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = await make_topic(partitions=1)
    big = huge_line(10_000)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for value in (reading("A", 1), big, reading("A", 2)):
            await producer.send_and_wait(topic, value, key=b"A")
    finally:
        await producer.stop()
    report = consume_json(
        *("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--group", "too-long"),
        *("--state-dir", str(tmp_path / "state"), "--max-line-bytes", "4096"),
    )
    assert (report["readings"], report["accepted"]) == (3, 2)
    assert report["rejected_by_reason"] == {"too_long": 1}
    [record] = await read_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    headers = dict(record.headers)
    assert headers["iotmon.reason"] == b"too_long"
    assert headers["iotmon.source.offset"] == b"1"
    assert b"10000" in headers["iotmon.detail"]
    assert record.value == big[:OVERSIZED_PREFIX_BYTES]


@settings(max_examples=300, derandomize=True)
@given(
    st.lists(st.integers(min_value=0, max_value=40), max_size=12),
    st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=8),
    st.booleans(),
)
def test_splitter_cuts_like_splitlines_whatever_the_chunks(
    lengths: list[int], cuts: list[int], terminated: bool
) -> None:
    limit = 10
    lines = [bytes([97 + i % 26]) * n for i, n in enumerate(lengths)]
    stream = b"\n".join(lines) + (b"\n" if terminated and lines else b"")
    splitter = LineSplitter(limit)
    got: list[bytes] = []
    consumed = 0
    at = 0
    step = 0
    while at < len(stream):
        size = cuts[step % len(cuts)]
        out, used, oversized, joined = splitter.cut(stream[at : at + size])
        assert oversized == any(type(line) is OversizedLine for line in out)
        # The lines as read, for the decode worker: exactly what a join would give.
        if out and not oversized:
            assert joined is not None and bytes(joined) == b"\n".join(out)
        else:
            assert joined is None
        got += out
        consumed += used
        at += size
        step += 1
    out, used, _ = splitter.finish()
    got += out
    consumed += used
    assert consumed == len(stream)
    want = lines if terminated or not lines or lines[-1] else lines[:-1]
    assert len(got) == len(want)
    for line, expected in zip(got, want, strict=True):
        if len(expected) > limit:
            assert type(line) is OversizedLine
            assert line.length == len(expected)
            assert bytes(line) == expected[:OVERSIZED_PREFIX_BYTES]
        else:
            assert type(line) is bytes and line == expected


# -- event times no UTC date can hold -------------------------------------------------

POISON = [
    b'{"id_equipamento":"HOT","data_evento":"9999-12-31T23:59:59-12:00",'
    b'"padrao":{"leitura":{"temperatura":90.0}}}',
    b'{"id_equipamento":"HOT","data_evento":"0001-01-01T00:00:00+14:00",'
    b'"padrao":{"leitura":{"temperatura":90.0}}}',
]


def test_event_times_beyond_utc_dates_are_rejected_on_every_start(tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_bytes(b"\n".join([reading("A", 1), *POISON, reading("A", 2)]) + b"\n")
    state = tmp_path / "state"
    for _ in range(2):
        report = consume_json("--input", str(data), "--state-dir", str(state), "--for", "0")
        assert report["rejected_by_reason"] == {"bad_timestamp": 2}
        assert report["accepted"] == 2
    letters = dead_letters(state)
    assert [(d["reason"], d["position"]) for d in letters] == [
        ("bad_timestamp", 2),
        ("bad_timestamp", 3),
    ]


# -- --valid-range ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("valid_range", "accepted"),
    [("-50..inf", 2), ("-1e999..200", 1), ("-inf..+inf", 2), ("-50..200", 1)],
)
def test_infinite_valid_range_bounds_are_accepted(
    tmp_path: Path, valid_range: str, accepted: int
) -> None:
    data = tmp_path / "in.txt"
    data.write_bytes(reading("A", 1) + b"\n" + reading("A", 2, temperature=900.0) + b"\n")
    report = consume_json(
        "--input", str(data), "--state-dir", str(tmp_path / "s"), f"--valid-range={valid_range}"
    )
    assert report["accepted"] == accepted
    assert report["readings"] == 2


def test_nan_valid_range_bound_is_refused_clearly(tmp_path: Path) -> None:
    result = iotmon(
        "consume", "--input", str(tmp_path / "x"), "--once", "--valid-range=nan..200", check=False
    )
    assert result.returncode == 2
    assert b"valid-range" in result.stderr
