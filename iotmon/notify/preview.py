"""Sample digests, and a picture of how their email looks in a browser.

The samples are the cases the golden tests pin (tests/test_email_golden.py): one device that
starts firing, a mixed digest (new, still firing, resolved, stale), a reminder. Their
figures are made up but deterministic (a seeded generator), so a rendering is the same on
every run.

``python -m iotmon.notify.preview docs/email.png`` renders the mixed digest's HTML part to a
PNG with headless Chromium (``make email-preview``); the inline trend images are turned into
``data:`` URIs for the browser, which knows nothing of ``cid:`` links.
"""

from __future__ import annotations

import argparse
import base64
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Final

from iotmon.alerts.rules import DEFAULT_THRESHOLD
from iotmon.notify.message import render_email
from iotmon.notify.model import DeviceReport, Digest
from iotmon.notify.settings import DEFAULT_TIMEZONE, LANGUAGES, EmailSettings, Language

__all__ = ["SAMPLES", "browser", "preview_html", "sample", "screenshot"]

S: Final = 1_000_000
NOW_US: Final = 1_678_882_600 * S  # 2023-03-15 12:16:40 UTC
PANE_S: Final = 10.0
PANES: Final = 30
THRESHOLD: Final = DEFAULT_THRESHOLD
SAMPLES: Final = ("one-new", "mixed", "reminder")
_BROWSERS: Final = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _trend(
    seed: int, start: float, end: float, *, noise: float = 0.4, gap: int = 0
) -> list[float | None]:
    """Pane means drifting from ``start`` to ``end``; ``gap`` panes at the end without
    readings (a device gone quiet)."""
    rng = random.Random(seed)
    means: list[float | None] = []
    for i in range(PANES):
        if i >= PANES - gap:
            means.append(None)
        else:
            means.append(
                round(start + (end - start) * i / (PANES - 1) + rng.uniform(-noise, noise), 2)
            )
    return means


def _report(
    device: str,
    means: list[float | None],
    *,
    since_s: float,
    new: bool,
    seen_s: float = 2.0,
    running_offset: float = -6.0,
) -> DeviceReport:
    known = [m for m in means if m is not None]
    window = round(sum(known[-6:]) / len(known[-6:]), 2)
    return DeviceReport(
        device=device,
        value=window,
        window_mean=window,
        running_mean=round(window + running_offset, 2),
        max=round(max(known) + 1.7, 2),
        threshold=THRESHOLD,
        clear_below=THRESHOLD - 2,
        since_us=NOW_US - round(since_s * S),
        last_seen_us=NOW_US - round(seen_s * S),
        new=new,
        trend=tuple(means),
        pane_s=PANE_S,
    )


def sample(name: str) -> Digest:
    """One of :data:`SAMPLES`."""
    hot = _report("Equipament-0323XH-746LM", _trend(1, 80.4, 88.9), since_s=173, new=True)
    one_new = Digest(
        digest_id="5a3c0e9d2b7f41c6a8e0d1f2b3c4d5e6",
        kind="change",
        slot_us=NOW_US,
        recipients=(),
        metric="window",
        firing=(hot,),
    )
    if name == "one-new":
        return one_new
    firing = (
        hot,
        _report("Equipament-1187QB-220TR", _trend(2, 73.1, 77.9), since_s=41, new=True),
        _report(
            "Equipament-0551KD-903MM", _trend(3, 81.0, 80.2, noise=0.8), since_s=2410, new=False
        ),
        _report(
            "Equipament-0323XH-118LM", _trend(4, 78.5, 79.6), since_s=1320, new=False, seen_s=7
        ),
    )
    if name == "reminder":
        return replace(
            one_new,
            digest_id="9e8d7c6b5a4f43e2b1c0d9e8f7a6b5c4",
            kind="reminder",
            firing=tuple(replace(r, new=False, since_us=r.since_us - 4 * 3600 * S) for r in firing),
        )
    if name == "mixed":
        return replace(
            one_new,
            digest_id="c0ffee00d15ea5e0b1a2c3d4e5f60718",
            firing=firing,
            resolved=(
                _report(
                    "Equipament-0912AA-347PX",
                    _trend(5, 77.8, 71.2),
                    since_s=25,
                    new=True,
                    running_offset=-3.0,
                ),
            ),
            stale=(
                _report(
                    "Equipament-0440ZC-611KB",
                    _trend(6, 69.0, 70.5, gap=12),
                    since_s=120,
                    seen_s=120,
                    new=True,
                    running_offset=-1.0,
                ),
            ),
            stale_after=90.0,
        )
    raise ValueError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")


def preview_html(message: EmailMessage) -> str:
    """The HTML part of ``message`` with its ``cid:`` images inlined as ``data:`` URIs."""
    body = message.get_body(preferencelist=("html",))
    assert body is not None
    text = str(body.get_content())
    for part in message.walk():
        cid = part["Content-ID"]
        if cid is None:
            continue
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        text = text.replace(f"cid:{str(cid).strip('<>')}", uri)
    return text


def browser() -> str | None:
    """A headless-capable Chromium on PATH, if any."""
    return next((found for name in _BROWSERS if (found := shutil.which(name))), None)


def screenshot(html: str, out: Path, *, width: int = 900, height: int = 900) -> None:
    """Render ``html`` to the PNG ``out`` with headless Chromium."""
    chromium = browser()
    if chromium is None:
        raise RuntimeError(
            "no Chromium found; install it (Debian: apt-get install -y chromium) or skip "
            "the preview"
        )
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "email.html"
        page.write_text(html, encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={tmp}/profile",
                f"--window-size={width},{height}",
                f"--screenshot={out.resolve()}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--sample", default="mixed", choices=SAMPLES)
    parser.add_argument("--lang", default="en", choices=LANGUAGES)
    parser.add_argument("--timezone", default=DEFAULT_TIMEZONE)
    parser.add_argument("--width", type=int, default=900)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--html", type=Path, help="also write the HTML shown")
    args = parser.parse_args(argv)
    lang: Language = "pt-BR" if args.lang == "pt-BR" else "en"
    settings = EmailSettings(
        mail_from="iotmon@plant.example",
        mail_to=("ops@plant.example",),
        lang=lang,
        timezone=args.timezone,
    )
    message = render_email(sample(args.sample), settings=settings)
    html = preview_html(message)
    if args.html is not None:
        args.html.write_text(html, encoding="utf-8")
    try:
        screenshot(html, args.out, width=args.width, height=args.height)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"email preview: {exc}", file=sys.stderr)
        return 1
    print(f"email preview written to {args.out} ({message['Subject']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
