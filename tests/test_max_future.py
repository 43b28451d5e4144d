"""Event times far ahead of the stream (``--max-future``, reason ``future_time``): one such
reading must never silence a device, keep it firing, or mark the other devices stale.

The streams are replays from 2023 read years later, as the seed's own data would be: the
bound has to work against the replayed stream, not only against wall time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from iotmon.engine.horizon import Horizon
from iotmon.parse import parse_event_time
from tests.conftest import SMTPCapture
from tests.helpers import consume_json, iotmon

T0 = datetime(2023, 3, 15, 12, 0, tzinfo=UTC)
S = 1_000_000
HOUR = 3600 * S


def reading(device: str, at: datetime | str, temperature: float) -> bytes:
    stamp = at if isinstance(at, str) else at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return orjson.dumps(
        {
            "id_equipamento": device,
            "data_evento": stamp,
            "padrao": {"leitura": {"temperatura": temperature}},
        }
    )


def every_5s(device: str, temperature: float, count: int, offset: float = 0.0) -> list[bytes]:
    return [
        reading(device, T0 + timedelta(seconds=5 * i + offset), temperature) for i in range(count)
    ]


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def dead_letters(state: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(line)
        for f in state.glob("*.dlq.jsonl")
        for line in f.read_bytes().splitlines()
    ]


def test_a_year_9999_reading_does_not_silence_the_device(
    tmp_path: Path, smtp_server: SMTPCapture
) -> None:
    data = write(
        tmp_path / "in.txt",
        [reading("X", "9999-12-31T00:00:00Z", 20.0), *every_5s("X", 95.0, 240)],
    )
    state = tmp_path / "state"
    report = consume_json(
        *("--input", str(data), "--state-dir", str(state)),
        *("--smtp-host", smtp_server.host, "--smtp-port", str(smtp_server.port)),
        *("--smtp-security", "none", "--mail-to", "ops@example.com"),
    )
    assert ("X", "firing") in {(a["device"], a["state"]) for a in report["alerts"]}
    assert report["late"] == 0
    assert report["devices"]["X"]["window_mean"] == 95.0
    assert report["rejected_by_reason"] == {"future_time": 1}
    [mail] = smtp_server.wait_for_sync(1, timeout=30)
    assert "X" in str(mail.message["Subject"])
    [letter] = dead_letters(state)
    assert letter["position"] == 1
    assert "ahead of wall time" in letter["detail"]


def test_a_year_9999_reading_does_not_keep_the_device_firing(tmp_path: Path) -> None:
    data = write(
        tmp_path / "in.txt",
        [reading("X", "9999-12-31T00:00:00Z", 90.0), *every_5s("X", 20.0, 240)],
    )
    report = consume_json(
        *("--input", str(data), "--state-dir", str(tmp_path / "state"), "--for", "0")
    )
    assert report["alerts"] == []
    assert report["devices"]["X"]["mean"] == 20.0
    assert report["rejected_by_reason"] == {"future_time": 1}


def test_a_reading_a_day_ahead_of_the_replay_does_not_mark_the_others_stale(
    tmp_path: Path,
) -> None:
    lines: list[bytes] = []
    for a, b in zip(every_5s("A", 20.0, 240), every_5s("B", 21.0, 240, offset=1), strict=True):
        lines += [a, b]
    # Within wall time (it is 2023 data), but a day ahead of the stream it sits in.
    lines.insert(200, reading("HOT", T0 + timedelta(days=1), 20.0))
    state = tmp_path / "state"
    report = consume_json(
        *("--input", str(write(tmp_path / "in.txt", lines))),
        *("--state-dir", str(state), "--stale-after", "60"),
    )
    assert report["alerts"] == []
    assert set(report["devices"]) == {"A", "B"}
    assert report["rejected_by_reason"] == {"future_time": 1}
    [letter] = dead_letters(state)
    assert letter["position"] == 201
    assert "ahead of the latest readings of its partition" in letter["detail"]


def test_a_gap_in_replayed_data_is_followed_after_one_reading(tmp_path: Path) -> None:
    """A night without readings is no poison: the second reading after it confirms the jump."""
    before = every_5s("A", 20.0, 10)
    after = [reading("A", T0 + timedelta(hours=8, seconds=5 * i), 30.0) for i in range(10)]
    report = consume_json(
        *("--input", str(write(tmp_path / "in.txt", before + after))),
        *("--state-dir", str(tmp_path / "state")),
    )
    assert report["rejected_by_reason"] == {"future_time": 1}
    assert report["devices"]["A"]["count"] == 19
    assert report["devices"]["A"]["last_event"] == "2023-03-15T20:00:45.000000Z"


def test_max_future_is_an_option_with_a_clear_error(tmp_path: Path) -> None:
    ahead = datetime.now(UTC) + timedelta(hours=3)
    data = write(tmp_path / "in.txt", [reading("X", ahead, 20.0)])
    default = consume_json("--input", str(data), "--state-dir", str(tmp_path / "a"))
    assert default["rejected_by_reason"] == {"future_time": 1}
    wider = consume_json(
        *("--input", str(data), "--state-dir", str(tmp_path / "b"), "--max-future", "86400")
    )
    assert wider["accepted"] == 1
    bad = iotmon("consume", "--input", str(data), "--once", "--max-future", "0", check=False)
    assert bad.returncode == 2
    assert b"max-future" in bad.stderr


# -- the bound itself -----------------------------------------------------------------

NOW = parse_event_time("2026-06-01T00:00:00Z")


def limit(horizon: Horizon, event_us: int, *, head: int, reference: int | None = None) -> int:
    ref = horizon.reference(head, NOW) if reference is None else reference
    return horizon.limit(event_us, head_us=head, reference_us=ref, now_us=NOW, ahead_us=HOUR)


def test_first_reading_is_bounded_by_wall_time_only() -> None:
    assert limit(Horizon(), NOW + HOUR + 1, head=0) == NOW + HOUR
    old = NOW - 1000 * HOUR
    # Accepted, and the bound from there on is the reading's own stream.
    assert limit(Horizon(), old, head=0) == old + HOUR


def test_replay_bound_follows_the_partition_clock() -> None:
    head = NOW - 1000 * HOUR
    horizon = Horizon(head_wall_us=NOW)
    assert horizon.reference(head, NOW) == head
    assert limit(horizon, head + HOUR, head=head) == head + HOUR
    assert limit(horizon, head + 2 * HOUR, head=head) == head + HOUR


def test_quiet_live_partition_is_welcome_back() -> None:
    """Live: a day without readings moves the clock on with wall time."""
    head = NOW - 24 * HOUR
    horizon = Horizon(head_wall_us=head)
    assert horizon.reference(head, NOW) == NOW
    assert limit(horizon, NOW, head=head) >= NOW
    # ...but never past wall time.
    assert limit(horizon, NOW + 2 * HOUR, head=head) == NOW + HOUR


def test_a_jump_is_taken_when_a_second_reading_confirms_it() -> None:
    head = NOW - 1000 * HOUR
    horizon = Horizon(head_wall_us=NOW)
    jump = head + 10 * HOUR
    assert limit(horizon, jump, head=head) < jump
    assert limit(horizon, jump + 5 * S, head=head) >= jump + 5 * S


def test_a_jump_is_not_confirmed_once_the_clock_moved_or_by_a_disagreeing_reading() -> None:
    head = NOW - 1000 * HOUR
    horizon = Horizon(head_wall_us=NOW)
    jump = head + 10 * HOUR
    assert limit(horizon, jump, head=head) < jump
    # The stream went on as before: the next far reading is a new suspect, not a confirmation.
    moved = head + S
    assert limit(horizon, jump, head=moved, reference=head) < jump
    assert limit(horizon, jump + 5 * HOUR, head=moved, reference=head) < jump + 5 * HOUR


def test_wall_time_is_never_confirmable() -> None:
    horizon = Horizon(head_wall_us=NOW)
    far = NOW + 100 * HOUR
    assert limit(horizon, far, head=NOW) == NOW + HOUR
    assert limit(horizon, far, head=NOW) == NOW + HOUR


def test_restored_state_without_wall_time_falls_back_to_wall_time() -> None:
    head = NOW - 1000 * HOUR
    assert Horizon().reference(head, NOW) == NOW
    assert Horizon().reference(0, NOW) == 0


@pytest.mark.parametrize("seconds", ["0", "-1", "nan", "inf", "1e12"])
def test_max_future_must_be_positive_and_bounded(seconds: str) -> None:
    from iotmon.settings import Settings

    with pytest.raises(ValueError, match="max-future"):
        Settings(max_future=float(seconds))
