"""`iotmon silence` against a running file-input consumer (`consume --input --follow`), with a
real SMTP server: a silence added while it runs holds back that device's mail at once, an
expired one (by hand or by wall time) lets it through again, marked as not new."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import orjson

from tests.conftest import SMTPCapture
from tests.helpers import (
    PATIENCE_S,
    free_port,
    iotmon,
    metric,
    reading_line,
    scrape_until,
    spawn,
    stop,
)


def reading(device: str, temperature: float, now: float) -> bytes:
    return reading_line(device, datetime.fromtimestamp(now, UTC), temperature) + b"\n"


def append(path: Path, *devices: str) -> None:
    # Event time = wall time: the stream clock follows it, and moves on with it when idle.
    # One time for all: the devices land in one digest.
    now = time.time()
    with path.open("ab") as out:
        for device in devices:
            out.write(reading(device, 80.0, now))


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def status_of(state: Path) -> dict[str, list[str]]:
    doc: dict[str, list[str]] = orjson.loads(
        iotmon("status", "--state-dir", str(state), "--json").stdout
    )
    return doc


def listed(text: str) -> set[str]:
    return {word for word in text.split() if word.startswith("Equip-")}


def test_silence_holds_back_a_running_consumers_mail_until_it_is_expired(
    tmp_path: Path, smtp_server: SMTPCapture
) -> None:
    data, state, port = tmp_path / "readings.txt", tmp_path / "state", free_port()
    where = ("--input", str(data), "--state-dir", str(state))
    append(data, "Equip-A1", "Equip-B1")
    proc = spawn(
        "consume",
        *where,
        "--follow",
        *("--checkpoint-interval", "0.5"),
        *("--for", "0", "--group-wait", "0", "--group-interval", "2"),
        *("--window", "10", "--pane", "1", "--allowed-lateness", "1"),
        *("--smtp-host", smtp_server.host, "--smtp-port", str(smtp_server.port)),
        *("--smtp-security", "none", "--mail-to", "ops@example.com"),
        *("--no-live", "--metrics-port", str(port)),
    )
    try:
        [first] = smtp_server.wait_for_sync(1)
        assert listed(text_of(first.message)) == {"Equip-A1", "Equip-B1"}

        # Every device of plant A: the one firing now and one that fires while silenced.
        added = iotmon("silence", "add", "Equip-A*", "--for", "1h", "--by", "ops", *where)
        silence_id = added.stdout.decode().strip()
        scrape_until(
            proc, port, lambda s: metric(s, "iotmon_silenced_devices") == 1, timeout=PATIENCE_S
        )
        append(data, "Equip-A2", "Equip-C1")
        [_, second] = smtp_server.wait_for_sync(2)
        text = text_of(second.message)
        assert listed(text) == {"Equip-B1", "Equip-C1"}
        assert "2 devices silenced" in text
        assert "A2" not in str(second.message["Subject"])
        log = [orjson.loads(line) for line in (state / "alerts.jsonl").read_bytes().splitlines()]
        assert {"device": "Equip-A2", "state": "firing", "silenced": True}.items() <= next(
            entry.items() for entry in log if entry["device"] == "Equip-A2"
        )
        # `iotmon status` reads the checkpoints, written every half second here.
        deadline = time.monotonic() + PATIENCE_S
        while (silenced := status_of(state)["silenced"]) != ["Equip-A1", "Equip-A2"]:
            assert time.monotonic() < deadline, silenced
            time.sleep(0.2)

        [shown] = orjson.loads(iotmon("silence", "list", "--json", *where).stdout)
        assert (shown["id"], shown["state"], shown["created_by"]) == (silence_id, "active", "ops")
        assert iotmon("silence", "expire", silence_id, *where).returncode == 0
        # Nothing new happens to A1 and A2: the lifted silence alone makes them told again,
        # as still firing — they fired before this digest.
        [*_, third] = smtp_server.wait_for_sync(3)
        text = text_of(third.message)
        assert {"Equip-A1", "Equip-A2"} <= listed(text)
        assert "silenced" not in text
        assert "new" not in text.splitlines()[0]  # the headline: all still firing

        # Expiry by wall time: a short silence over B1 ends by itself.
        iotmon("silence", "add", "Equip-B1", "--for", "3s", *where)
        scrape_until(
            proc, port, lambda s: metric(s, "iotmon_silenced_devices") == 1, timeout=PATIENCE_S
        )
        scrape_until(
            proc, port, lambda s: metric(s, "iotmon_silenced_devices") == 0, timeout=PATIENCE_S
        )
        append(data, "Equip-D1")
        [*_, fourth] = smtp_server.wait_for_sync(4)
        assert {"Equip-B1", "Equip-D1"} <= listed(text_of(fourth.message))
    finally:
        stop(proc)


def test_silence_commands_say_what_to_do(tmp_path: Path) -> None:
    where = ("--input", "x", "--state-dir", str(tmp_path / "state"))
    result = iotmon("silence", "add", "Equip-*", *where, check=False)
    assert result.returncode == 2
    assert "--for" in result.stderr.decode() and "--until" in result.stderr.decode()
    result = iotmon("silence", "add", "Equip-*", "--for", "soon", *where, check=False)
    assert "--for: 'soon' is not a duration" in result.stderr.decode()
    result = iotmon("silence", "expire", "abc", *where, check=False)
    assert result.returncode == 2
    assert "`iotmon silence list` shows" in result.stderr.decode()
    assert iotmon("silence", "list", *where).stdout.decode().strip() == "no silences"


def test_silence_until_a_time_is_listed_with_its_end_its_author_and_its_comment(
    tmp_path: Path,
) -> None:
    where = ("--input", "-", "--state-dir", str(tmp_path / "state"))
    added = iotmon(
        "silence",
        "add",
        "Equip-\x1b[31m*",
        *("--until", "2999-01-02T03:04:05+01:00"),
        *("--comment", "pump swap"),
        *("--by", "night shift"),
        *where,
    )
    silence_id = added.stdout.decode().strip()
    [shown] = orjson.loads(iotmon("silence", "list", "--json", *where).stdout)
    assert shown["id"] == silence_id
    assert shown["ends_at"].startswith("2999-01-02T02:04:05")
    assert (shown["state"], shown["comment"], shown["created_by"]) == (
        "active",
        "pump swap",
        "night shift",
    )
    wide = {**os.environ, "COLUMNS": "200"}
    table = iotmon("silence", "list", *where, env=wide).stdout.decode()
    assert silence_id in table and "pump swap" in table and "2999-01-02 02:04:05Z" in table
    # The pattern is someone's input: shown, never interpreted by the terminal.
    assert "\x1b" not in table
    result = iotmon("silence", "add", "Equip-*", "--until", "yesterday", *where, check=False)
    assert result.returncode == 2 and "--until" in result.stderr.decode()
