"""Unit tests for iotmon.blocks: a block parses into columns only when every line is a plain
reading, and then into exactly what the per-line parser gives for each line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotmon.blocks import BlockParser
from iotmon.parse import MAX_KEY_LENGTH, ParseSettings, ReadingParser, canonical_event_us
from tests.test_batch_invariance import KEY_FIELDS, hostile, reading

T0 = datetime(2023, 3, 15, 12, 15, 37, 166944, tzinfo=UTC)
STAMP = "2023-03-15T12:15:37.166944Z"


def block(key_field: str = "id_equipamento", n: int = 40) -> list[bytes]:
    """``n`` readings of three devices within one hour, floats and ints, in and out of order."""
    return [
        reading(
            key_field,
            f"dev-{i % 3}",
            T0 + timedelta(seconds=(i * 7) % 31, microseconds=i),
            70.5 + i / 7 if i % 4 else 60 + i,
        )
        for i in range(n)
    ]


def with_doc(lines: list[bytes], index: int, **changes: Any) -> list[bytes]:
    """``lines`` with line ``index`` re-encoded after top-level ``changes``."""
    doc = orjson.loads(lines[index])
    doc.update(changes)
    return [*lines[:index], orjson.dumps(doc), *lines[index + 1 :]]


def with_temperature(lines: list[bytes], index: int, value: Any) -> list[bytes]:
    return with_doc(lines, index, padrao={"leitura": {"temperatura": value}})


@pytest.mark.parametrize("key_field", KEY_FIELDS)
def test_a_clean_block_gives_what_the_line_parser_gives(key_field: str) -> None:
    lines = block(key_field)
    columns = BlockParser(ParseSettings(key_field=key_field)).columns(lines)
    assert columns is not None
    parse = ReadingParser(ParseSettings(key_field=key_field)).parse
    expected = [parse(line) for line in lines]
    assert all(type(r) is tuple for r in expected)
    assert columns.keys == [key for key, _, _ in expected]
    assert [float(v) for v in columns.values] == [value for _, value, _ in expected]
    # Ints stay ints (the caller converts): a float in a column is a float in the line.
    assert [type(v) for v in columns.values] == [
        type(orjson.loads(line)["padrao"]["leitura"]["temperatura"]) for line in lines
    ]
    assert [canonical_event_us(s) for s in columns.stamps] == [us for _, _, us in expected]
    assert columns.latest_us == max(us for _, _, us in expected)


def test_a_single_line_block_and_the_seed_line() -> None:
    seed = (
        b'{"id_sensor":"Sensor-1503-762GK","id_equipamento":"Equipament-0323XH-762GK",'
        b'"sensor":"sensor16", "data_evento":"2023-03-15T12:15:37.166944Z", "padrao":'
        b'{"formato":"iot:leitura:sensor:temp", "leitura":{"temperatura":73.3}}}'
    )
    columns = BlockParser(ParseSettings()).columns([seed])
    assert columns is not None
    assert (columns.keys, columns.values, columns.stamps) == (
        ["Equipament-0323XH-762GK"],
        [73.3],
        [STAMP],
    )
    assert columns.latest_us == ReadingParser().parse(seed)[2]  # type: ignore[index]


def test_bools_pass_as_values_for_the_caller_to_refuse() -> None:
    """``min``/``max`` accept bools; the fast lane checks each value's type."""
    columns = BlockParser(ParseSettings()).columns(with_temperature(block(), 3, True))
    assert columns is not None and columns.values[3] is True


def raw_temperature(index: int, text: bytes) -> list[bytes]:
    """A block whose line ``index`` has ``text`` as its temperature, verbatim."""
    lines = with_temperature(block(), index, 0)
    lines[index] = lines[index].replace(b'"temperatura":0}', b'"temperatura":' + text + b"}")
    assert text in lines[index]
    return lines


def bad_stamp(stamp: str) -> list[bytes]:
    return with_doc(block(), 5, data_evento=stamp)


BAD_BLOCKS = {
    "invalid JSON": [*block()[:7], b"{not json", *block()[8:]],
    "a non-object": [*block()[:7], b"[1, 2, 3]", *block()[8:]],
    "a JSON string": [*block()[:7], b'"2023-03-15T12:15:37.166944Z"', *block()[8:]],
    "missing key": [
        *block()[:7],
        orjson.dumps({k: v for k, v in orjson.loads(block()[7]).items() if k != "id_equipamento"}),
    ],
    "missing time": [
        *block()[:7],
        orjson.dumps({k: v for k, v in orjson.loads(block()[7]).items() if k != "data_evento"}),
    ],
    "missing temperature": with_doc(block(), 7, padrao={"leitura": {}}),
    "leitura not an object": with_doc(block(), 7, padrao={"leitura": [73.0]}),
    "a number as key": with_doc(block(), 7, id_equipamento=17),
    "null key": with_doc(block(), 7, id_equipamento=None),
    "a list as key": with_doc(block(), 7, id_equipamento=["dev-0"]),
    "a string value": with_temperature(block(), 7, "73.0"),
    "a null value": with_temperature(block(), 7, None),
    "an object value": with_temperature(block(), 7, {"c": 73.0}),
    "a value above the range": with_temperature(block(), 7, 200.5),
    "a value below the range": with_temperature(block(), 7, -50.001),
    "an int above the range": with_temperature(block(), 7, 2**62),
    "an int beyond 64 bits": raw_temperature(7, b"1" + b"0" * 30),
    "an infinite value": raw_temperature(7, b"1e400"),
    "NaN": raw_temperature(7, b"NaN"),
    "a number as time": with_doc(block(), 7, data_evento=1678882537),
    "time too short": bad_stamp(STAMP[:-2] + "Z"),
    "time too long": bad_stamp(STAMP[:-1] + "1Z"),
    "space instead of T": bad_stamp(STAMP.replace("T", " ")),
    "non-ASCII digit": bad_stamp(STAMP.replace("37.", "3\u0667.")),
    "non-ASCII digit in the fraction": bad_stamp(STAMP.replace("944Z", "94\u0664Z")),
    "minute 60": bad_stamp(STAMP.replace(":15:", ":60:")),
    "second 60": bad_stamp(STAMP.replace(":37.", ":60.")),
    "second 99": bad_stamp(STAMP.replace(":37.", ":99.")),
    "month 13": bad_stamp(STAMP.replace("-03-", "-13-")),
    "month 00": bad_stamp(STAMP.replace("-03-", "-00-")),
    "day 32": bad_stamp(STAMP.replace("-15T", "-32T")),
    "30 February": bad_stamp(STAMP.replace("-03-15", "-02-30")),
    "hour 24": bad_stamp(STAMP.replace("T12", "T24")),
    "an offset": bad_stamp("2023-03-15T12:15:37+01:00"),
    "an offset, 27 characters long": bad_stamp("2023-03-15T12:15:37.1+01:00"),
    "an offset with a fraction": bad_stamp("2023-03-15T12:15:37.16+01:00"),
    "no fraction": bad_stamp("2023-03-15T12:15:37Z"),
    "lowercase z": bad_stamp(STAMP.replace("Z", "z")),
    "comma before the fraction": bad_stamp(STAMP.replace(".", ",")),
    "a sign in the fraction": bad_stamp(STAMP.replace("166944", "-16694")),
    "another hour": bad_stamp(STAMP.replace("T12", "T13")),
    "another day, same hour": bad_stamp(STAMP.replace("-15T", "-16T")),
}


@pytest.mark.parametrize("lines", BAD_BLOCKS.values(), ids=BAD_BLOCKS.keys())
def test_a_block_with_a_line_that_is_not_a_plain_reading_is_refused(lines: list[bytes]) -> None:
    assert BlockParser(ParseSettings()).columns(lines) is None
    # Without that line the block is fine: what was refused is that line.
    assert BlockParser(ParseSettings()).columns(block()) is not None


def test_stamps_across_an_hour_boundary_are_refused_even_when_valid() -> None:
    before = reading("sensor", "dev-0", datetime(2023, 3, 15, 12, 59, 59, 999999, tzinfo=UTC), 70)
    after = reading("sensor", "dev-0", datetime(2023, 3, 15, 13, 0, tzinfo=UTC), 70)
    parser = BlockParser(ParseSettings(key_field="sensor"))
    assert parser.columns([before, after]) is None
    assert parser.columns([before, before]) is not None
    assert parser.columns([after, after]) is not None
    # Midnight, and the end of a year.
    for late, early in (
        (datetime(2023, 3, 15, 23, 59, 59, tzinfo=UTC), datetime(2023, 3, 16, tzinfo=UTC)),
        (datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)),
    ):
        lines = [reading("sensor", "d", late, 70), reading("sensor", "d", early, 70)]
        assert parser.columns(lines) is None


def test_every_hostile_line_is_refused() -> None:
    """The lines of each rejection reason the property tests use, one per block (those the
    per-line parser rejects for their key or time too)."""
    parser = BlockParser(ParseSettings())
    refused = {line for line in hostile("id_equipamento", T0) if parser.columns([line]) is None}
    kept = set(hostile("id_equipamento", T0)) - refused
    # A blank key and a time years ahead are plain readings here: the caller judges them.
    assert {orjson.loads(line)["id_equipamento"] for line in kept} == {"   ", "x"}
    assert len(kept) == 2


def test_event_times_whose_lengths_only_add_up_are_refused() -> None:
    """The event times are checked joined: one too long beside one too short, or one holding
    a newline (JSON allows it, escaped), must not pass for two good ones."""
    parser = BlockParser(ParseSettings())
    cases = [
        (STAMP + "0", STAMP[:-1]),
        (STAMP[:-1], "Z" + STAMP),
        (STAMP + "\n" + STAMP[:-1], STAMP[:-1]),
        (STAMP + "\n" + STAMP, ""),
    ]
    for first, second in cases:
        lines = with_doc(with_doc(block()[:2], 0, data_evento=first), 1, data_evento=second)
        assert parser.columns(lines) is None, (first, second)


def test_a_leap_day_is_a_real_date_and_29_february_2023_is_not() -> None:
    parser = BlockParser(ParseSettings())
    assert parser.columns(with_doc(block()[:1], 0, data_evento="2024-02-29T12:00:00.000000Z"))
    assert not parser.columns(with_doc(block()[:1], 0, data_evento="2023-02-29T12:00:00.000000Z"))


# -- the fast path is never more permissive than the strict parser -----------------------

CHARSET = '0123456789-:.TZ +Ÿ٣x"{}[],e'


def mutate(line: bytes, data: st.DataObject) -> bytes:
    """One random change: a character replaced, inserted or removed (in the whole line or
    in its event time), or a field replaced by a random JSON value."""
    text = line.decode()
    how = data.draw(st.sampled_from(("replace", "insert", "delete", "stamp", "field")))
    if how == "field":
        doc = orjson.loads(line)
        field = data.draw(st.sampled_from(("id_equipamento", "data_evento", "padrao")))
        doc[field] = data.draw(
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-100, 300),
                st.floats(-100, 300, allow_nan=False),
                st.text(max_size=30),
                st.just({"leitura": {"temperatura": data.draw(st.floats(-60, 210))}}),
            )
        )
        return orjson.dumps(doc)
    if how == "stamp":
        start = text.index("2023-")
        position = data.draw(st.integers(start, start + 26))
        char = data.draw(st.sampled_from(CHARSET))
        return (text[:position] + char + text[position + 1 :]).encode()
    position = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.sampled_from(CHARSET))
    if how == "replace":
        text = text[:position] + char + text[position + 1 :]
    elif how == "insert":
        text = text[:position] + char + text[position:]
    else:
        text = text[:position] + text[position + 1 :]
    return text.encode()


@settings(max_examples=400, deadline=None)
@given(data=st.data(), key_field=st.sampled_from(KEY_FIELDS))
def test_columns_never_accept_what_the_line_parser_rejects(
    data: st.DataObject, key_field: str
) -> None:
    lines = block(key_field, n=8)
    index = data.draw(st.integers(0, len(lines) - 1))
    lines[index] = mutate(lines[index], data)
    columns = BlockParser(ParseSettings(key_field=key_field)).columns(lines)
    if columns is None:
        return
    parser = ReadingParser(ParseSettings(key_field=key_field))
    for line, key, value, stamp in zip(
        lines, columns.keys, columns.values, columns.stamps, strict=True
    ):
        if type(value) is bool or not key or key.isspace() or len(key) > MAX_KEY_LENGTH:
            continue  # the fast lane sends these to the per-line parser
        for parse in (parser.parse, parser.parse_strictly):
            parsed = parse(line)
            assert type(parsed) is tuple, (line, parsed)
            assert parsed == (key, float(value), canonical_event_us(stamp))
