"""Rendering digests as email: wording (en, pt-BR), structure, and untrusted device ids."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest

from iotmon.notify import DeviceReport, Digest, EmailSettings, render_email
from iotmon.notify.model import DigestKind
from tests.helpers import DIGEST_HEADERS

S = 1_000_000
T0 = 1_678_882_537 * S
EVIL = "evil\r\nBcc: x@y\x00<script>é"


def report(device: str, value: float, *, threshold: float = 75.0, new: bool = True) -> DeviceReport:
    return DeviceReport(
        device=device,
        value=value,
        window_mean=value,
        running_mean=value - 0.5,
        max=value + 3,
        threshold=threshold,
        clear_below=threshold - 2,
        since_us=T0,
        last_seen_us=T0 + 60 * S,
        new=new,
    )


def digest(
    firing: tuple[DeviceReport, ...] = (),
    resolved: tuple[DeviceReport, ...] = (),
    stale: tuple[DeviceReport, ...] = (),
    *,
    kind: DigestKind = "change",
    recipients: tuple[str, ...] = (),
) -> Digest:
    return Digest(
        digest_id="0123456789abcdef0123456789abcdef",
        kind=kind,
        slot_us=T0 + 70 * S,
        recipients=recipients,
        metric="window",
        firing=firing,
        resolved=resolved,
        stale=stale,
        stale_after=300.0 if stale else None,
    )


EN = EmailSettings(mail_from="iotmon@plant.example", mail_to=("ops@plant.example",))
PT = EmailSettings(mail_from="iotmon@plant.example", mail_to=("ops@plant.example",), lang="pt-BR")
THREE = (report("sensor50", 80.04), report("sensor10", 87.33), report("sensor24", 81.49))


def parts(message: EmailMessage) -> tuple[str, str]:
    """(plain, html) after a round trip through bytes, as a receiver sees them."""
    parsed = message_from_bytes(message.as_bytes(), policy=default)
    assert isinstance(parsed, EmailMessage)
    plain = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    # Line ends normalised: the wire format is CRLF, the text is what matters here.
    return (
        str(plain.get_content()).replace("\r\n", "\n"),
        str(html.get_content()).replace("\r\n", "\n"),
    )


def test_english_subject_carries_the_count_and_threshold() -> None:
    message = render_email(digest(THREE), settings=EN)
    assert message["Subject"] == "[iotmon] 3 devices above 75 °C — hottest sensor10 87.3 °C"
    assert message["To"] == "ops@plant.example"
    assert message["Auto-Submitted"] == "auto-generated"


@pytest.mark.parametrize(
    ("built", "subject"),
    [
        (digest((report("sensor50", 80.0),)), "[iotmon] 1 device above 75 °C: sensor50 80.0 °C"),
        (
            digest(resolved=(report("a", 70.0), report("b", 70.0))),
            "[iotmon] resolved: 2 devices back to normal",
        ),
        (
            digest(THREE, resolved=(report("a", 70.0),)),
            "[iotmon] 3 devices above 75 °C — hottest sensor10 87.3 °C, 1 resolved",
        ),
        (digest(stale=(report("a", 70.0),)), "[iotmon] 1 device stale"),
        (
            digest(THREE, kind="reminder"),
            "[iotmon] reminder: 3 devices above 75 °C — hottest sensor10 87.3 °C",
        ),
        (
            digest((report("a", 80.0), report("b", 95.0, threshold=90.0))),
            "[iotmon] 2 devices above threshold — hottest b 95.0 °C",
        ),
    ],
)
def test_english_subject_variants(built: Digest, subject: str) -> None:
    assert render_email(built, settings=EN)["Subject"] == subject


def test_english_body_has_plain_and_html_table_with_all_columns() -> None:
    stale = (report("silent", 50.0),)
    resolved = (report("cooled", 72.0),)
    plain, html = parts(render_email(digest(THREE, resolved, stale), settings=EN))
    assert "3 devices are above 75 °C (window mean)." in plain
    # One aligned row per device, hottest first, the badge in its own column.
    assert "  sensor10  new       87.3        86.8    90.3  2023-03-15 12:15:37   10 s ago" in plain
    assert plain.index("sensor10") < plain.index("sensor24") < plain.index("sensor50")
    assert "As of 2023-03-15 12:16:47 UTC" in plain
    for column in ("Device", "Window °C", "Running °C", "Max °C", "Firing since", "Last seen"):
        assert f">{column}</th>" in html
    assert ">Resolved (1)</td>" in html
    assert ">Stale — no readings for more than 300 s (1)</td>" in html
    assert html.count("<table") == 4  # the frame and one per section


def test_portuguese_reproduces_the_original_wording() -> None:
    message = render_email(digest(THREE), settings=PT)
    assert message["Subject"] == (
        "Atenção! 3 sensores com possíveis problemas. Mais quente: sensor10 87.3 ºC"
    )
    plain, html = parts(message)
    assert "Os seguintes sensores apresentam temperatura acima de 75ºC." in plain
    assert (
        "  sensor10  novo       87.3      86.8     90.3  15/03/2023 12:15:37         há 10 s"
        in plain
    )
    assert plain.rstrip().endswith("Atenciosamente,\n\nDepartamento de Dados.")
    assert "Os seguintes sensores apresentam temperatura acima de 75ºC." in html
    assert "Departamento de Dados." in html


def test_portuguese_singular_and_resolved() -> None:
    one = render_email(digest((report("sensor15", 78.42),)), settings=PT)
    assert one["Subject"] == "Atenção! 1 sensor com possíveis problemas. sensor15: 78.4 ºC"
    resolved = render_email(digest(resolved=(report("sensor15", 72.0),)), settings=PT)
    assert resolved["Subject"] == "Normalizado: 1 sensor voltou ao normal."
    plain, _ = parts(resolved)
    assert "Voltaram ao normal (abaixo de 73ºC) (1)" in plain


def test_message_id_is_stable_per_digest_and_uses_the_sender_domain() -> None:
    first = render_email(digest(THREE), settings=EN)
    again = render_email(digest(THREE), settings=EN)
    assert (
        first["Message-ID"]
        == again["Message-ID"]
        == ("<0123456789abcdef0123456789abcdef@plant.example>")
    )


def test_override_recipients_replace_the_default_list() -> None:
    message = render_email(digest(THREE, recipients=("lab@plant.example",)), settings=EN)
    assert message["To"] == "lab@plant.example"


@pytest.mark.parametrize("settings", [EN, PT], ids=["en", "pt-BR"])
def test_hostile_device_id_cannot_inject_headers_or_html(settings: EmailSettings) -> None:
    message = render_email(
        digest((report(EVIL, 99.0),), resolved=(report(EVIL, 1.0),)), settings=settings
    )
    raw = message.as_bytes()
    assert b"\x00" not in raw
    assert b"\nBcc:" not in raw and b"\rBcc:" not in raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))

    parsed = message_from_bytes(raw, policy=default)
    assert parsed["Bcc"] is None
    assert sorted(parsed.keys()) == DIGEST_HEADERS
    if settings.lang == "en":
        # The id is in the subject, visibly escaped, on one line.
        assert str(parsed["Subject"]) == (
            r"[iotmon] 1 device above 75 °C: evil\x0d\x0aBcc: x@y\x00<script>é 99.0 °C, 1 resolved"
        )

    plain, html = parts(message)
    assert "\x00" not in plain and "\r" not in plain
    assert r"evil\x0d\x0aBcc: x@y\x00" in plain
    assert "<script>" not in html
    # <wbr>: where a browser may break a long id.
    assert r"evil\x0d\x0aBcc: x@y\x00&lt;script&gt;é" in html.replace("<wbr>", "")


def test_overlong_device_id_is_cut() -> None:
    message = render_email(digest((report("x" * 5000, 99.0),)), settings=EN)
    assert len(str(message["Subject"])) < 120
    plain, _ = parts(message)
    assert "x" * 5000 not in plain
