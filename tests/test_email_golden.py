"""The alert email, pinned: golden files of its plain text and HTML, its trend images, its size.

The golden files in tests/golden/ are what the email says and how it is laid out, for the
sample digests of :mod:`iotmon.notify.preview`. After a deliberate change of the layout,
regenerate them and review the diff::

    UPDATE_GOLDEN=1 make pytest PYTEST_ARGS=tests/test_email_golden.py
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from PIL import Image

from iotmon.notify import DeviceReport, Digest, EmailSettings, Notification, Outbox, render_email
from iotmon.notify.preview import sample
from iotmon.notify.trend import BLOCKS, Trend

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
NOW = datetime(2023, 3, 15, 12, 17, tzinfo=UTC)
EN = EmailSettings(mail_from="iotmon@plant.example", mail_to=("ops@plant.example",))
PT = EmailSettings(
    mail_from="iotmon@plant.example",
    mail_to=("ops@plant.example",),
    lang="pt-BR",
    timezone="America/Sao_Paulo",
)
CASES = {
    "one-new": ("one-new", EN),
    "mixed": ("mixed", EN),
    "reminder": ("reminder", EN),
    "pt-BR": ("mixed", PT),
}


def received(message: EmailMessage) -> EmailMessage:
    """The message as a receiver (or the outbox, reading it back) parses it."""
    parsed = message_from_bytes(message.as_bytes(), policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def images(message: EmailMessage) -> dict[str, bytes]:
    """Content-ID (without brackets) → PNG bytes of the inline images."""
    found = {}
    for part in message.walk():
        if part.get_content_type() == "image/png":
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            found[str(part["Content-ID"]).strip("<>")] = data
    return found


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing; create it with UPDATE_GOLDEN=1 (see module doc)"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs; if that is intended, UPDATE_GOLDEN=1 and review"


@pytest.mark.parametrize("case", CASES)
def test_plain_text_matches_the_golden_file(case: str) -> None:
    name, settings = CASES[case]
    message = received(render_email(sample(name), settings=settings, now=NOW))
    plain = text_of(message, "plain")
    check_golden(f"email-{case}.txt", f"Subject: {message['Subject']}\n\n{plain}")
    assert all(len(line) < 100 for line in plain.splitlines())


@pytest.mark.parametrize("case", CASES)
def test_html_matches_the_golden_file(case: str) -> None:
    name, settings = CASES[case]
    message = received(render_email(sample(name), settings=settings, now=NOW))
    markup = text_of(message, "html")
    check_golden(f"email-{case}.html", markup)
    # Every trend image referenced is attached, and nothing else is loaded from anywhere.
    cids = re.findall(r'src="cid:([^"]+)"', markup)
    assert cids and sorted(cids) == sorted(images(message))
    assert not re.search(r"<(script|svg|link|style)\b|src=\"(?!cid:)", markup, re.IGNORECASE)


def test_the_subject_names_the_hottest_device_cut_to_fit() -> None:
    message = render_email(sample("mixed"), settings=EN, now=NOW)
    assert message["Subject"] == (
        "[iotmon] 4 devices above 75 °C — hottest Equipament-03…-746LM 88.0 °C, 1 resolved, 1 stale"
    )
    only_firing = sample("reminder")
    assert render_email(only_firing, settings=EN, now=NOW)["Subject"] == (
        "[iotmon] reminder: 4 devices above 75 °C — hottest Equipament-0323XH-746LM 88.0 °C"
    )


def test_mime_structure_survives_the_outbox(tmp_path: Path) -> None:
    digest = sample("mixed")
    message = render_email(digest, settings=EN, now=NOW)
    outbox = Outbox(tmp_path / "outbox")
    assert outbox.put(Notification(message=message, digest=digest))
    # Read back by a new process: the stored bytes parse to the same structure and are
    # sent as they were stored.
    [entry] = Outbox(tmp_path / "outbox").pending()
    again = entry.notification().message
    assert again.as_bytes() == message.as_bytes()
    assert entry.digest == digest
    structure = [part.get_content_type() for part in again.walk()]
    assert structure[:4] == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
    ]
    assert structure[4:] == ["image/png"] * 6
    assert images(again) == images(message)


def test_trend_images_draw_the_threshold_and_the_bars_above_it() -> None:
    message = received(render_email(sample("one-new"), settings=EN, now=NOW))
    markup = text_of(message, "html")
    [(cid, png)] = images(message).items()
    width, height = (int(v) for v in re.search(r'width="(\d+)" height="(\d+)"', markup).groups())
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    assert image.size == (2 * width, 2 * height)  # drawn for high-density screens
    middle = image.height - 2 - (image.height - 4) // 2
    line = [image.getpixel((x, middle - 1)) for x in range(image.width)]
    assert sum(1 for px in line if px[:3] == (31, 35, 40)) > image.width // 3  # dashed line
    # This device is above the threshold all window: strong red above the line.
    column = [image.getpixel((1, y)) for y in range(image.height)]
    assert (205, 38, 38, 255) in column[: middle - 2]
    assert cid in markup


def trend_report(device: str, means: list[float | None]) -> DeviceReport:
    value = next(m for m in reversed(means) if m is not None)
    return DeviceReport(
        device=device,
        value=value,
        window_mean=value,
        running_mean=value - 1,
        max=value + 1,
        threshold=75.0,
        clear_below=73.0,
        since_us=1_678_882_000_000_000,
        last_seen_us=1_678_882_590_000_000,
        new=True,
        trend=tuple(means),
        pane_s=10.0,
    )


def test_text_sparkline_puts_the_threshold_between_the_lower_and_upper_blocks() -> None:
    trend = Trend.of([70.0, 74.0, 75.0, 75.1, 80.0, None, 90.0], pane_s=10, threshold=75.0)
    assert trend is not None
    text = trend.text()
    assert len(text) == 7 and text[5] == " "
    assert all(ch in BLOCKS[:4] for ch in text[:3])  # at or below: ▁▂▃▄
    assert all(ch in BLOCKS[4:] for ch in text[3:5] + text[6])  # above: ▅▆▇█
    assert text[-1] == "█" and text[0] < text[1]
    assert (trend.change, trend.change_s) == (20.0, 60.0)


def test_a_long_window_is_shown_in_at_most_thirty_points() -> None:
    means = [75.0 + i / 100 for i in range(360)]  # 1 h of 10 s panes
    trend = Trend.of(means, pane_s=10, threshold=75.0)
    assert trend is not None
    assert len(trend.points) == 30 and len(trend.text()) == 30
    assert trend.points[-1] == pytest.approx(sum(means[-12:]) / 12)
    assert trend.window_s == 3600


def test_a_hundred_devices_stay_under_100_kb_and_the_text_tells_it_all() -> None:
    reports = tuple(
        trend_report(
            f"Equipament-{n:04d}XH-{n * 7 % 1000:03d}LM",
            [76.0 + (n % 13) + (i * (n % 5)) / 10 for i in range(30)],
        )
        for n in range(100)
    )
    digest = Digest(
        digest_id="a" * 32,
        kind="change",
        slot_us=1_678_882_600_000_000,
        recipients=(),
        metric="window",
        firing=reports,
    )
    raw = render_email(digest, settings=EN, now=NOW).as_bytes()
    assert len(raw) < 100_000, len(raw)
    plain = text_of(received(render_email(digest, settings=EN, now=NOW)), "plain")
    for report in reports:
        assert re.search(
            rf"^  {report.device}  new +{report.window_mean:.1f} +{report.running_mean:.1f} "
            rf"+{report.max:.1f}  2023-03-15 12:06:40 +10 s ago\n    [{BLOCKS}]{{30}}  ",
            plain,
            re.MULTILINE,
        ), report.device
    assert all(len(line) < 100 for line in plain.splitlines())


def test_a_plant_wide_event_lists_the_hottest_and_counts_the_rest() -> None:
    """50,000 devices firing at once (a cooling failure) made one 24 MB email, which mail
    servers refuse; it lists the 100 hottest, and says how many more there are."""
    firing = tuple(
        trend_report(f"Equipament-{n:05d}", [76.0 + n / 1000] * 30) for n in range(50_000)
    )
    resolved = (trend_report("Equipament-cool", [70.0] * 30),)
    digest = Digest(
        digest_id="c" * 32,
        kind="change",
        slot_us=1_678_882_600_000_000,
        recipients=(),
        metric="window",
        firing=firing,
        resolved=resolved,
    )
    message = received(render_email(digest, settings=EN, now=NOW))
    assert len(message.as_bytes()) < 150_000
    plain, html = text_of(message, "plain"), text_of(message, "html")
    assert "Firing (50000)" in plain and "Resolved (1)" in plain
    assert "… and 49,900 more, cooler than those above" in plain
    assert "… and 1 more, cooler than those above" in plain
    assert "Equipament-49999" in plain and "Equipament-49900" in plain
    assert "Equipament-49899" not in plain and "Equipament-cool" not in plain
    assert "… and 49,900 more" in html


def test_what_changed_is_listed_and_charted_first_however_cool() -> None:
    """150 devices still firing hotter than the one that just started: the new one is
    what the digest is about, so it is in the table and has its chart."""
    still = tuple(
        dataclasses.replace(trend_report(f"Equipament-{n:03d}", [90.0] * 30), new=False)
        for n in range(150)
    )
    fresh = trend_report("Equipament-new", [76.0] * 30)
    digest = Digest(
        digest_id="d" * 32,
        kind="change",
        slot_us=1_678_882_600_000_000,
        recipients=(),
        metric="window",
        firing=(*still, fresh),
    )
    message = received(render_email(digest, settings=EN, now=NOW))
    plain, html = text_of(message, "plain"), text_of(message, "html")
    assert "Firing (151)" in plain and "… and 51 more" in plain
    assert "Equipament-new" in plain
    # Its chart is drawn: the row links an image that is attached.
    row = html[html.index("Equipament-new") :]
    cid = row[row.index('src="cid:') + 9 : row.index('"', row.index('src="cid:') + 9)]
    attached = {p["Content-ID"].strip("<>") for p in message.walk() if p["Content-ID"]}
    assert cid in attached


def test_without_trends_the_email_has_no_images() -> None:
    bare = dataclasses.replace(trend_report("d", [80.0]), trend=(), pane_s=0.0)
    digest = Digest(
        digest_id="b" * 32, kind="change", slot_us=0, recipients=(), metric="window", firing=(bare,)
    )
    message = received(render_email(digest, settings=EN, now=NOW))
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    assert "<img" not in text_of(message, "html")
