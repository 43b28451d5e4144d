"""The parser: the seed format exactly as it is, every rejection reason, and fuzzed input."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotmon import parse
from iotmon.parse import (
    MAX_EVENT_US,
    MIN_EVENT_US,
    ParseSettings,
    Reading,
    ReadingParser,
    Reason,
    Rejection,
    format_event_time,
    parse_event_time,
)
from tests.helpers import SEED_FILE

SEED_LINE = (
    b'{"id_sensor":"Sensor-1503-762GK","id_equipamento":"Equipament-0323XH-762GK",'
    b'"sensor":"sensor16", "data_evento":"2023-03-15T12:15:37.166944Z", '
    b'"padrao":{"formato":"iot:leitura:sensor:temp", "leitura":{"temperatura":73.3}}}'
)


def reading(**overrides: object) -> bytes:
    doc: dict[str, object] = orjson.loads(SEED_LINE)
    doc.update(overrides)
    return orjson.dumps(doc)


def test_seed_line_is_accepted_exactly() -> None:
    parsed = ReadingParser().parse(SEED_LINE)
    assert parsed == (
        "Equipament-0323XH-762GK",
        73.3,
        parse_event_time("2023-03-15T12:15:37.166944+00:00"),
    )


def test_group_by_sensor_label_like_the_original_notebook() -> None:
    parsed = ReadingParser(ParseSettings(key_field="sensor")).parse(SEED_LINE)
    assert isinstance(parsed, tuple) and parsed[0] == "sensor16"


def test_event_time_round_trips_through_the_seed_layout() -> None:
    event_us = parse_event_time("2023-03-15T12:15:37.166944Z")
    assert format_event_time(event_us) == "2023-03-15T12:15:37.166944Z"
    assert event_us % 1_000_000 == 166944


def test_written_times_match_strftime_while_seconds_are_remembered() -> None:
    """format_event_time keeps the text of the seconds it wrote (and forgets them all past
    a limit): every time it writes must still be exactly strftime's."""
    rng = random.Random(3)
    starts = [rng.randrange(0, 253_402_300_799) for _ in range(50)]
    near = [start + step for start in starts for step in (0, 1, 59, 60, 3_599, 86_400)]
    for _ in range(3):
        for second in near + [rng.randrange(0, 253_402_300_799) for _ in range(5_000)]:
            fraction = rng.randrange(1_000_000)
            expected = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            assert format_event_time(second * 1_000_000 + fraction) == f"{expected}{fraction:06d}Z"
    assert len(parse._second_texts) <= parse._SECOND_TEXTS_CACHE_LIMIT


def test_fast_and_slow_timestamp_paths_agree() -> None:
    parser = ReadingParser()
    for stamp in ["2023-03-15T12:15:37.000001Z", "2023-03-15T12:15:37.999999Z"]:
        fast = parser.parse(reading(data_evento=stamp))
        assert isinstance(fast, tuple)
        assert fast[2] == parse_event_time(stamp)
    offset = parser.parse(reading(data_evento="2023-03-15T09:15:37.166944-03:00"))
    assert isinstance(offset, tuple)
    assert offset[2] == parse_event_time("2023-03-15T12:15:37.166944Z")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", Reason.INVALID_JSON),
        (b'{"id_equipamento": "x", "padrao": ', Reason.INVALID_JSON),
        (SEED_LINE.replace(b"73.3", b"NaN"), Reason.INVALID_JSON),
        (SEED_LINE.replace(b"73.3", b"1e999"), Reason.NOT_FINITE),
        (b"[1, 2]", Reason.NOT_OBJECT),
        (b'"text"', Reason.NOT_OBJECT),
        (reading(id_equipamento=None), Reason.WRONG_TYPE),
        (reading(id_equipamento=7), Reason.WRONG_TYPE),
        (reading(id_equipamento=""), Reason.BAD_KEY),
        (reading(id_equipamento="x" * 257), Reason.BAD_KEY),
        (reading(padrao={"leitura": {}}), Reason.MISSING_FIELD),
        (reading(padrao="flat"), Reason.MISSING_FIELD),
        (reading(padrao={"leitura": {"temperatura": "73.3"}}), Reason.WRONG_TYPE),
        (reading(padrao={"leitura": {"temperatura": True}}), Reason.WRONG_TYPE),
        (reading(padrao={"leitura": {"temperatura": 900.0}}), Reason.OUT_OF_RANGE),
        (reading(padrao={"leitura": {"temperatura": -51}}), Reason.OUT_OF_RANGE),
        (reading(data_evento="yesterday"), Reason.BAD_TIMESTAMP),
        (reading(data_evento="2023-13-15T12:15:37.166944Z"), Reason.BAD_TIMESTAMP),
        (reading(data_evento="2023-03-15T12:15:37.16694xZ"), Reason.BAD_TIMESTAMP),
        (reading(data_evento=1678882537), Reason.WRONG_TYPE),
        (b'{"padrao":{"leitura":{"temperatura":1}}}', Reason.MISSING_FIELD),
    ],
)
def test_rejections_name_the_reason(line: bytes, reason: Reason) -> None:
    result = ReadingParser().parse(line)
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert result.detail


def test_valid_range_is_configurable() -> None:
    parser = ReadingParser(ParseSettings(valid_min=0, valid_max=80))
    assert isinstance(parser.parse(SEED_LINE), tuple)
    hot = parser.parse(reading(padrao={"leitura": {"temperatura": 81}}))
    assert isinstance(hot, Rejection) and hot.reason is Reason.OUT_OF_RANGE


def test_bad_settings_name_the_option() -> None:
    with pytest.raises(ValueError, match="valid-range"):
        ParseSettings(valid_min=10, valid_max=0)
    with pytest.raises(ValueError, match="key-field"):
        ParseSettings(key_field="a..b")


def test_whole_seed_sample_parses() -> None:
    parser = ReadingParser()
    lines = SEED_FILE.read_bytes().splitlines()
    results = [parser.parse(line) for line in lines]
    assert len(results) == 10_000
    assert all(isinstance(r, tuple) for r in results)


def _check(result: Reading | Rejection) -> None:
    if isinstance(result, Rejection):
        assert isinstance(result.reason, Reason)
        return
    key, value, event_us = result
    assert isinstance(key, str) and 0 < len(key) <= 256
    assert -50.0 <= value <= 200.0
    assert isinstance(event_us, int)


@settings(max_examples=400, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(raw: bytes) -> None:
    _check(ReadingParser().parse(raw))


@settings(max_examples=400, derandomize=True)
@given(st.integers(min_value=0, max_value=len(SEED_LINE)), st.binary(max_size=8), st.booleans())
def test_truncated_and_mutated_seed_lines_never_crash(cut: int, noise: bytes, insert: bool) -> None:
    line = SEED_LINE[:cut] + noise + SEED_LINE[cut:] if insert else SEED_LINE[:cut] + noise
    _check(ReadingParser().parse(line))


@settings(max_examples=600, derandomize=True)
@given(
    st.integers(min_value=0, max_value=len(SEED_LINE)),
    st.sampled_from([b"", b"1", b"x", b"\\u00e9", b'"', b"-", b" ", b"9e9", b"null", b"\x00"]),
    st.integers(min_value=0, max_value=len(SEED_LINE)),
)
def test_fast_path_agrees_with_the_strict_parser(cut: int, noise: bytes, end: int) -> None:
    line = SEED_LINE[:cut] + noise + SEED_LINE[max(cut, end) :]
    parser = ReadingParser()
    assert parser.parse(line) == parser.parse_strictly(line)


@pytest.mark.parametrize(
    "settings_",
    [ParseSettings(), ParseSettings(key_field="sensor", valid_min=0, valid_max=80)],
)
def test_fast_path_agrees_on_the_whole_seed_sample(settings_: ParseSettings) -> None:
    parser = ReadingParser(settings_)
    for line in SEED_FILE.read_bytes().splitlines():
        assert parser.parse(line) == parser.parse_strictly(line)


@pytest.mark.parametrize(
    "stamp",
    ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-00:01"],
)
def test_event_time_outside_the_years_1_to_9999_utc_is_a_bad_timestamp(stamp: str) -> None:
    result = ReadingParser().parse(reading(data_evento=stamp))
    assert isinstance(result, Rejection)
    assert result.reason is Reason.BAD_TIMESTAMP
    with pytest.raises(ValueError, match="years 1 to 9999"):
        parse_event_time(stamp)


def test_the_extreme_event_times_utc_can_hold_are_still_timestamps() -> None:
    assert parse_event_time("9999-12-31T23:59:59.999999Z") == MAX_EVENT_US
    assert parse_event_time("0001-01-01T00:00:00Z") == MIN_EVENT_US


@pytest.mark.parametrize(
    ("low", "high"), [(float("-inf"), 200.0), (-50.0, float("inf")), (float("-inf"), float("inf"))]
)
def test_infinite_valid_range_bounds_are_values(low: float, high: float) -> None:
    parser = ReadingParser(ParseSettings(valid_min=low, valid_max=high))
    assert isinstance(parser.parse(SEED_LINE), tuple)
    hot = reading(padrao={"leitura": {"temperatura": 1e300}})
    assert parser.parse(hot) == parser.parse_strictly(hot)
    assert isinstance(parser.parse(hot), tuple) is (high == float("inf"))


def test_field_names_are_values_not_source() -> None:
    """A field name that would be code if it were pasted into the fast path's source."""
    name = "k']; import os; x = doc['"
    parser = ReadingParser(ParseSettings(key_field=name))
    line = orjson.dumps(
        {
            name: "E-1",
            "data_evento": "2023-03-15T12:15:37.166944Z",
            "padrao": {"leitura": {"temperatura": 73.3}},
        }
    )
    assert parser.parse(line) == parser.parse_strictly(line)
    assert parser.parse(line)[0] == "E-1"  # type: ignore[index]
