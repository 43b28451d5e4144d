"""Device ids chosen by an attacker, through the real CLI: the email `iotmon consume` sends,
its final table and the `iotmon status` table show them inert, never as terminal control
sequences, forged rows, extra headers or rich markup."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any

import orjson

from tests.helpers import DIGEST_HEADERS, iotmon

HOT = 90.0
TERMINAL_IDS = {
    "\x1b]0;PWNED\x07\x1b[2J": r"\x1b]0;PWNED\x07\x1b[2J",  # retitle, clear the screen
    "\x9b2Jc1-csi": r"\x9b2Jc1-csi",  # the same, as a one-byte C1 CSI
    "fake\nFORGED-ROW   99.99": r"fake\x0aFORGED-ROW   99.99",
    "ok\rOVERWRITE": r"ok\x0dOVERWRITE",
    "[bold red]markup[/]": "[bold red]markup[/]",
    "a\u202eb": r"a\u202eb",
}
# Wide enough that rich never cuts an id, so the shown forms can be looked for whole.
WIDE = {**os.environ, "COLUMNS": "200"}


def readings(path: Path, devices: list[str], *, minutes: int = 40) -> Path:
    """Every device at HOT °C once a minute, in the seed format, keyed by id_equipamento."""
    with path.open("wb") as out:
        for minute in range(minutes):
            for device in devices:
                reading = {
                    "id_sensor": "Sensor-1503-762GK",
                    "id_equipamento": device,
                    "sensor": "sensor16",
                    "data_evento": f"2023-03-15T12:{minute:02d}:00.000000Z",
                    "padrao": {
                        "formato": "iot:leitura:sensor:temp",
                        "leitura": {"temperatura": HOT},
                    },
                }
                out.write(orjson.dumps(reading) + b"\n")
    return path


def assert_inert(output: bytes) -> None:
    text = output.decode("utf-8")
    # Line ends are the only control characters left; rich adds no colour off a terminal.
    unsafe = {ch for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf")}
    assert not unsafe, f"control or format characters reached the output: {unsafe!r}"
    # The forged row only ever shows up as part of the escaped id.
    assert text.count("FORGED-ROW") == text.count(r"fake\x0aFORGED-ROW")
    assert text.count("OVERWRITE") == text.count(r"ok\x0dOVERWRITE")


def test_consume_final_table_and_status_show_hostile_ids_escaped(tmp_path: Path) -> None:
    data = readings(tmp_path / "hostile.jsonl", [*TERMINAL_IDS, "plain-sensor"])
    state = tmp_path / "state"
    consumed = iotmon(
        *("consume", "--input", str(data), "--once", "--no-live", "--state-dir", str(state)),
        *("--outbox", str(tmp_path / "eml"), "--for", "0", "--group-wait", "0"),
        env=WIDE,
    )
    status = iotmon("status", "--state-dir", str(state), "--top", "20", env=WIDE)
    for output in (consumed.stderr, consumed.stdout, status.stdout, status.stderr):
        assert_inert(output)
    for output in (consumed.stderr, status.stdout):
        table = output.decode()
        for shown in TERMINAL_IDS.values():
            assert shown in table
        assert "plain-sensor" in table
    assert b"[bold red]markup[/]" in status.stdout  # shown, not read as rich markup


def test_consume_emails_a_hostile_id_as_literal_text(tmp_path: Path, smtp_server: Any) -> None:
    # Short enough to be shown whole in the subject.
    device = "=?utf-8?q?x=0D=0AX-Evil:_1=0D=0ABcc:_e@x?=\x1b]0;P\x07"
    shown = r"=?utf-8?q?x=0D=0AX-Evil:_1=0D=0ABcc:_e@x?=\x1b]0;P\x07"
    data = readings(tmp_path / "hostile.jsonl", [device])
    consumed = iotmon(
        *("consume", "--input", str(data), "--once", "--no-live"),
        *("--state-dir", str(tmp_path / "state"), "--for", "0", "--group-wait", "0"),
        *("--smtp-host", smtp_server.host, "--smtp-port", str(smtp_server.port)),
        *("--smtp-security", "none", "--mail-to", "ops@plant.example"),
        env=WIDE,
    )
    assert_inert(consumed.stderr)

    [mail] = smtp_server.wait_for_sync(1)
    assert mail.rcpt_tos == ("ops@plant.example",)
    assert sorted(mail.message.keys()) == DIGEST_HEADERS
    assert mail.message["To"] == "ops@plant.example"
    assert mail.message["Subject"].startswith(f"[iotmon] 1 device above 75 °C: {shown} ")
    plain = mail.message.get_body(preferencelist=("plain",))
    assert plain is not None
    # Too long for the device column: on a line of its own, its figures below.
    lines = plain.get_content().splitlines()
    row = lines.index(f"  {shown}")
    assert lines[row + 1].split()[0] == "new"
    assert not list((tmp_path / "state").glob("**/failed/*.json"))
