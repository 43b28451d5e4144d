"""`iotmon simulate`: the seed's byte layout, a stable deterministic fleet, and behaviour that
matches the manifest (the ground truth the pipeline tests compare against)."""

from __future__ import annotations

import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from iotmon.cli import app
from iotmon.parse import format_event_time, parse_event_time
from iotmon.tools.fleet import BAD_KINDS, BASELINE_MAX, Fleet, _unique_suffixes, plan_horizon
from iotmon.tools.readings import Readings, format_line
from iotmon.tools.simulate import SimulateSettings, build_readings, write_lines
from tests.helpers import SEED_FILE

SEED_LINE = (
    b'{"id_sensor":"Sensor-1503-762GK","id_equipamento":"Equipament-0323XH-762GK",'
    b'"sensor":"sensor16", "data_evento":"2023-03-15T12:15:37.166944Z", '
    b'"padrao":{"formato":"iot:leitura:sensor:temp", "leitura":{"temperatura":73.3}}}'
)
# The seed's exact layout: no space after the first two commas, one after the others.
LINE_RE = re.compile(
    rb'^\{"id_sensor":"Sensor-1503-(\d{3}[A-Z]{2,})","id_equipamento":"Equipament-0323XH-\1",'
    rb'"sensor":"sensor(0[1-9]|[1-4]\d|50)", '
    rb'"data_evento":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", '
    rb'"padrao":\{"formato":"iot:leitura:sensor:temp", "leitura":\{"temperatura":-?\d+\.\d\}\}\}$'
)
START = "2026-01-01T00:00:00Z"
START_US = parse_event_time(START)


def run_cli(*args: str) -> tuple[bytes, str]:
    result = CliRunner().invoke(app, ["simulate", *args])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes, result.stderr


def strict(line: bytes) -> dict[str, Any]:
    """Parse like a strict consumer would; returns the reading or raises ValueError."""
    obj = orjson.loads(line)  # rejects truncated JSON and the NaN literal
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    temp = obj["padrao"]["leitura"]["temperatura"]  # KeyError on missing/wrong nesting
    if not isinstance(temp, float | int) or isinstance(temp, bool) or not math.isfinite(temp):
        raise ValueError(f"temperatura {temp!r}")
    for name in ("id_equipamento", "sensor", "data_evento"):
        if not isinstance(obj[name], str):
            raise ValueError(name)
    return obj


def classify(line: bytes) -> str:
    """Which malformation a simulated line has ("ok" for a valid reading)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "nan" if b":NaN}" in line else "truncated"
    padrao = obj.get("padrao", {})
    if "leitura" not in padrao and "temperatura" in padrao:
        return "wrong_nesting"
    if any(k not in obj for k in ("id_equipamento", "sensor", "data_evento")):
        return "missing_field"
    if "temperatura" not in padrao["leitura"]:
        return "missing_field"
    temp = padrao["leitura"]["temperatura"]
    if isinstance(temp, str):
        return "wrong_type"
    strict(line)
    return "ok"


def by_device(lines: Iterable[bytes]) -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for line in lines:
        obj = strict(line)
        out[obj["id_equipamento"]].append(
            (obj["data_evento"], obj["padrao"]["leitura"]["temperatura"])
        )
    return out


# ----------------------------------------------------------------------------------- format


def test_format_line_reproduces_the_seed_byte_for_byte() -> None:
    line = format_line(
        id_sensor="Sensor-1503-762GK",
        id_equipamento="Equipament-0323XH-762GK",
        sensor="sensor16",
        event_us=parse_event_time("2023-03-15T12:15:37.166944Z"),
        temperature=73.3,
    )
    assert line == SEED_LINE


def test_layout_regex_matches_every_seed_line() -> None:
    # Guards the regex itself: what the simulator is checked against is what the seed is.
    lines = SEED_FILE.read_bytes().splitlines()
    assert len(lines) == 10_000
    assert all(LINE_RE.match(line) for line in lines)


def test_event_time_round_trip() -> None:
    for text in (
        "2023-03-15T12:15:37.166944Z",
        "1970-01-01T00:00:00.000000Z",
        "2026-12-31T23:59:59.999999Z",
    ):
        assert format_event_time(parse_event_time(text)) == text
    assert parse_event_time("2026-01-01T01:00:00+01:00") == START_US
    assert parse_event_time("2026-01-01T00:00:00") == START_US
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_event_time("yesterday")


# ---------------------------------------------------------------------------------- the CLI

REQUIRED = [
    "--devices",
    "200",
    "--count",
    "20000",
    "--seed",
    "7",
    "--start",
    START,
    "--late-rate",
    "0",
]


def test_cli_required_run_is_valid_stable_and_deterministic() -> None:
    out, _ = run_cli(*REQUIRED)
    lines = out.splitlines()
    assert len(lines) == 20_000
    assert out.endswith(b"\n")
    assert all(LINE_RE.match(line) for line in lines)
    readings = [strict(line) for line in lines]
    assert len({r["id_equipamento"] for r in readings}) == 200
    pairs = {(r["id_equipamento"], r["id_sensor"], r["sensor"]) for r in readings}
    assert len(pairs) == 200, "each device keeps one id_sensor and one label"
    times = [r["data_evento"] for r in readings]
    assert times == sorted(times)  # fixed-width ISO: string order is time order
    assert times[0] == "2026-01-01T00:00:00.000000Z"
    # 100 readings per device at one per second, interleaved 5 ms apart.
    assert times[1] == "2026-01-01T00:00:00.005000Z"
    assert times[-1] == "2026-01-01T00:01:39.995000Z"
    again, _ = run_cli(*REQUIRED)
    assert again == out


def test_rate_and_output_target_do_not_change_the_bytes(tmp_path: Path) -> None:
    args = ["--devices", "20", "--count", "300", "--seed", "3", "--start", START]
    out, _ = run_cli(*args)
    path = tmp_path / "log.txt"
    t0 = time.monotonic()
    run_cli(*args, "--rate", "1500", "--output", str(path), "--quiet")
    assert time.monotonic() - t0 >= 0.15  # 300 lines at 1500/s
    assert path.read_bytes() == out
    run_cli(*args, "--output", str(path), "--quiet")
    assert path.read_bytes() == out + out, "--output appends like the seed's generator"


def test_different_seeds_differ() -> None:
    a, _ = run_cli("--devices", "10", "--count", "50", "--seed", "1", "--start", START)
    b, _ = run_cli("--devices", "10", "--count", "50", "--seed", "2", "--start", START)
    assert a != b


def test_wall_clock_mode_stamps_now() -> None:
    before = format_event_time(time.time_ns() // 1000)
    out, _ = run_cli("--devices", "5", "--count", "50", "--seed", "1")
    after = format_event_time(time.time_ns() // 1000)
    times = [strict(line)["data_evento"] for line in out.splitlines()]
    assert len(times) == 50
    assert before <= min(times) and max(times) <= after


def test_duration_bounds_simulated_time() -> None:
    out, _ = run_cli("--devices", "10", "--duration", "30", "--seed", "1", "--start", START)
    times = [strict(line)["data_evento"] for line in out.splitlines()]
    assert len(times) == 300
    assert max(times) < "2026-01-01T00:00:30"


def test_manifest_is_written_and_describes_the_fleet(tmp_path: Path) -> None:
    manifest = tmp_path / "fleet.json"
    out, _ = run_cli(*REQUIRED, "--manifest", str(manifest))
    doc = orjson.loads(manifest.read_bytes())
    assert doc["seed"] == 7 and doc["mode"] == "simulated"
    assert doc["totals"]["lines"] == 20_000
    assert doc["totals"]["overheating_devices"] == 20
    assert len(doc["devices"]) == 200
    ids = {strict(line)["id_equipamento"] for line in out.splitlines()}
    assert {d["id_equipamento"] for d in doc["devices"]} == ids
    assert sum(d["lines"] for d in doc["devices"]) == 20_000


def test_bad_options_are_usage_errors() -> None:
    result = CliRunner().invoke(app, ["simulate", "--start", "soon", "--count", "1"])
    assert result.exit_code == 2
    assert "ISO-8601" in result.output
    result = CliRunner().invoke(
        app, ["simulate", "--count", "1", "--output", "x.txt", "--topic", "t"]
    )
    assert result.exit_code == 2


def test_unreachable_kafka_says_what_to_do() -> None:
    result = CliRunner().invoke(
        app, ["simulate", "--count", "10", "--bootstrap-servers", "127.0.0.1:1", "--quiet"]
    )
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr
    assert "make kafka-up" in result.stderr


# ------------------------------------------------------------------------ the fleet model


def run(readings: Readings) -> list[bytes]:
    return list(readings)


def test_ids_are_unique_and_seed_style() -> None:
    fleet = Fleet.create(devices=5000, seed=11)
    ids = [d.id_equipamento for d in fleet.devices]
    assert len(set(ids)) == 5000
    for d in fleet.devices:
        assert re.fullmatch(r"Equipament-0323XH-\d{3}[A-Z]{2}", d.id_equipamento)
        assert d.id_sensor == "Sensor-1503-" + d.id_equipamento.rsplit("-", 1)[1]
        assert re.fullmatch(r"sensor(0[1-9]|[1-4]\d|50)", d.sensor)


def test_ids_extend_beyond_the_five_character_space() -> None:
    # 3 digits + 2 letters = 676,000 ids; the rest get a third letter, still unique.
    suffixes = _unique_suffixes(random.Random(1), 676_000 + 500)
    assert len(set(suffixes)) == len(suffixes)
    assert all(re.fullmatch(r"\d{3}[A-Z]{2}", s) for s in suffixes[:676_000])
    assert all(re.fullmatch(r"\d{3}[A-Z]{3}", s) for s in suffixes[676_000:])


def test_fleet_is_deterministic_and_replayable() -> None:
    a = Fleet.create(devices=50, seed=5, spike_rate=0.01, bad_rate=0.01, late_rate=0.01)
    b = Fleet.create(devices=50, seed=5, spike_rate=0.01, bad_rate=0.01, late_rate=0.01)
    assert a == b
    first = run(a.readings(count=2000, start_us=START_US))
    assert run(a.readings(count=2000, start_us=START_US)) == first
    assert run(b.readings(count=2000, start_us=START_US)) == first


def test_baselines_respect_the_cap() -> None:
    fleet = Fleet.create(devices=3000, seed=1)
    assert all(0 <= d.baseline <= BASELINE_MAX for d in fleet.devices)
    # The cap is a fold, not a clamp: no pile-up at exactly the maximum.
    assert sum(d.baseline == BASELINE_MAX for d in fleet.devices) < 5


def test_overheat_spike_and_normal_behaviour_match_the_manifest() -> None:
    fleet = Fleet.create(
        devices=100,
        seed=42,
        overheat_fraction=0.2,
        overheat_to=85.0,
        spike_rate=0.003,
        horizon_s=2000.0,
    )
    readings = fleet.readings(count=100 * 400, start_us=START_US, period=5.0)
    lines = run(readings)
    manifest = readings.manifest()
    series = by_device(lines)
    devices = {d["id_equipamento"]: d for d in manifest["devices"]}
    assert len(series) == 100
    hot = [d for d in devices.values() if d["overheat"]]
    assert len(hot) == 20

    spike_times = {(i, t) for i, d in devices.items() for t in d["spikes"]["times"]}
    assert manifest["totals"]["spikes"] > 0
    assert len(spike_times) == manifest["totals"]["spikes"]  # few enough to list them all
    for dev_id, points in series.items():
        dev = devices[dev_id]
        assert len(points) == dev["lines"] == 400
        spikes = [(t, v) for t, v in points if (dev_id, t) in spike_times]
        normal = [(t, v) for t, v in points if (dev_id, t) not in spike_times]
        assert len(spikes) == dev["spikes"]["count"]
        assert all(150.0 <= v <= 199.0 for _, v in spikes)
        # A spike is one reading: the device's next reading is back to its own level.
        for (t, _), (t_next, v_next) in pairwise(points):
            if (dev_id, t) in spike_times and (dev_id, t_next) not in spike_times:
                assert v_next < 100.0
        if dev["overheat"]:
            ov = dev["overheat"]
            assert ov["start"] < ov["ramp_end"] < "2026-01-01T00:33:20"
            assert ov["level"] > 85.0
            before = [v for t, v in normal if t < ov["start"]]
            after = [v for t, v in normal if t >= ov["ramp_end"]]
            assert before and max(before) < 75.0
            # Crosses overheat-to and stays there until the end of the run.
            assert len(after) >= 100
            assert all(v > 85.0 for v in after)
            assert abs(sum(after) / len(after) - ov["level"]) < 0.2
        else:
            values = [v for _, v in normal]
            assert max(values) < 75.0
            assert sum(v for _, v in points) / len(points) < 75.0
            assert abs(sum(values) / len(values) - dev["baseline"]) < 3.0


def test_bad_lines_are_malformed_in_each_declared_way() -> None:
    fleet = Fleet.create(devices=40, seed=9, bad_rate=0.05)
    readings = fleet.readings(count=20_000, start_us=START_US)
    lines = run(readings)
    manifest = readings.manifest()
    kinds: dict[str, int] = defaultdict(int)
    for line in lines:
        kind = classify(line)
        kinds[kind] += 1
        if kind != "ok":
            with pytest.raises((ValueError, KeyError, TypeError)):
                strict(line)
    bad = manifest["totals"]["bad_kinds"]
    assert set(bad) == set(BAD_KINDS)
    assert all(n > 50 for n in bad.values()), bad
    assert {k: kinds[k] for k in BAD_KINDS} == bad
    assert kinds["ok"] == 20_000 - manifest["totals"]["bad"]
    assert sum(d["bad"] for d in manifest["devices"]) == manifest["totals"]["bad"]


def test_late_readings_are_out_of_order_but_bounded() -> None:
    fleet = Fleet.create(devices=20, seed=4, late_rate=0.05, late_by=10.0)
    readings = fleet.readings(count=4000, start_us=START_US)
    times = [parse_event_time(strict(line)["data_evento"]) for line in readings]
    late = readings.manifest()["totals"]["late"]
    assert 100 < late < 300
    steps_back = sum(1 for a, b in pairwise(times) if b < a)
    assert steps_back > 50
    for i, t in enumerate(times):
        slot = START_US + (i // 20) * 1_000_000 + (i % 20) * 50_000
        assert slot - 10_000_000 <= t <= slot


def test_dropouts_go_silent_for_good() -> None:
    fleet = Fleet.create(devices=50, seed=8, dropout_fraction=0.2, horizon_s=300.0)
    readings = fleet.readings(duration=300.0, start_us=START_US)
    series = by_device(readings)
    manifest = readings.manifest()
    gone = {d["id_equipamento"]: d["dropout"] for d in manifest["devices"] if d["dropout"]}
    assert len(gone) == 10
    assert not any(d["overheat"] for d in manifest["devices"] if d["dropout"])
    for dev_id, points in series.items():
        last = points[-1][0]
        if dev_id in gone:
            assert last < gone[dev_id]
            assert last >= format_event_time(parse_event_time(gone[dev_id]) - 1_000_000)
        else:
            assert last >= "2026-01-01T00:04:59"


def test_everyone_dropping_out_ends_the_run() -> None:
    fleet = Fleet.create(devices=5, seed=1, dropout_fraction=1.0, horizon_s=100.0)
    lines = run(fleet.readings(start_us=START_US))  # no count, no duration: must still end
    assert 0 < len(lines) < 5 * 100


def test_plan_horizon() -> None:
    common: dict[str, Any] = {"devices": 200, "period": 1.0, "rate": None}
    assert plan_horizon(count=20_000, duration=None, simulated=True, **common) == 100.0
    assert plan_horizon(count=20_000, duration=50.0, simulated=True, **common) == 50.0
    assert plan_horizon(count=None, duration=None, simulated=True, **common) == 600.0
    common["rate"] = 100.0
    assert plan_horizon(count=1000, duration=None, simulated=False, **common) == 10.0


def test_build_readings_and_write_lines(tmp_path: Path) -> None:
    settings = SimulateSettings(devices=10, count=100, seed=1, start_us=START_US)
    path = tmp_path / "out.txt"
    with path.open("wb") as out:
        assert write_lines(build_readings(settings), out) == 100
    assert path.read_bytes() == b"".join(line + b"\n" for line in build_readings(settings))
