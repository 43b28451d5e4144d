"""The one sanitiser for untrusted text shown to people (device ids): what it lets through,
that it tells ids apart, and that text logs go through it."""

from __future__ import annotations

import codecs
import logging
import unicodedata

import pytest
from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError
from hypothesis import given, settings
from hypothesis import strategies as st

from iotmon.cli.common import setup_logging
from iotmon.display import DEVICE_CHARS, printable

UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
# Every code point, lone surrogates included: ids are whatever the input decoded to.
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()))


def unescape(shown: str) -> str:
    """Undo printable() (uncut): its escapes are exactly Python's unicode_escape ones."""
    return codecs.decode(shown.encode("ascii", "backslashreplace"), "unicode_escape")


@pytest.mark.parametrize(
    ("device", "shown"),
    [
        ("sensor50", "sensor50"),
        ("Equipament-0323XH-762GK", "Equipament-0323XH-762GK"),
        ("é ñ 温度", "é ñ 温度"),
        ("\x1b]0;PWNED\x07\x1b[2J", r"\x1b]0;PWNED\x07\x1b[2J"),
        ("fake\nforged\r", r"fake\x0aforged\x0d"),
        ("\x9b2J\x7f", r"\x9b2J\x7f"),  # C1 CSI and DEL
        ("a\u202eb\u2066c\u200bd", r"a\u202eb\u2066c\u200bd"),  # bidi, isolate, zero width
        ("line\u2028para\u2029", r"line\u2028para\u2029"),
        ("tag\U000e0041", r"tag\U000e0041"),
        ("a\\x1b", r"a\\x1b"),  # a literal backslash is not an escape
        ("[bold red]x[/]", "[bold red]x[/]"),  # markup is the caller's business (rich Text)
    ],
)
def test_unsafe_characters_become_visible_escapes(device: str, shown: str) -> None:
    assert printable(device) == shown


@settings(max_examples=500, derandomize=True, deadline=None)
@given(ANY_TEXT)
def test_output_never_holds_a_control_format_or_separator_character(text: str) -> None:
    for limit in (DEVICE_CHARS, None):
        assert not {unicodedata.category(ch) for ch in printable(text, limit=limit)} & UNSAFE


@settings(max_examples=500, derandomize=True, deadline=None)
@given(ANY_TEXT)
def test_uncut_output_can_be_read_back_so_different_ids_look_different(text: str) -> None:
    assert unescape(printable(text, limit=None)) == text


@settings(max_examples=300, derandomize=True, deadline=None)
@given(ANY_TEXT, ANY_TEXT, ANY_TEXT)
def test_different_ids_show_differently_even_when_cut(prefix: str, x: str, y: str) -> None:
    # A shared prefix, so that cut ids differ only in what was cut off.
    a, b = prefix + x, prefix + y
    if a != b:
        assert printable(a, limit=12) != printable(b, limit=12)


def test_long_ids_are_cut_to_the_limit_and_keep_a_tag_of_the_whole() -> None:
    base = "x" * 5000
    shown = printable(base + "1")
    assert len(shown) == DEVICE_CHARS
    assert shown.startswith("x" * 100) and "…#" in shown
    assert printable(base + "2") != shown
    assert printable("y" * DEVICE_CHARS) == "y" * DEVICE_CHARS


def test_text_logs_show_hostile_text_on_one_inert_line(capfd: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    setup_logging("info", "text")
    try:
        logging.getLogger("iotmon.test").warning(
            "device %s is odd", "x\x1b]0;PWNED\x07\nFORGED 2026-01-01 ERROR fake\u202e"
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert not {unicodedata.category(ch) for ch in err.rstrip("\n")} & UNSAFE
    assert r"device x\x1b]0;PWNED\x07\x0aFORGED 2026-01-01 ERROR fake\u202e is odd" in err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_error_aiokafka_retries_by_itself_shows_as_a_warning(
    fmt: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A broker that has just started has no group coordinator until its offsets topic
    exists: aiokafka logs that at ERROR and retries. A fatal error stays an error."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    setup_logging("info", fmt)
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    try:
        coordinator.error(
            "Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError()
        )
        coordinator.error("Group Coordinator Request failed: %s", GroupAuthorizationFailedError())
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    retried, fatal = capfd.readouterr().err.splitlines()
    assert "GroupCoordinatorNotAvailableError" in retried and "check the Kafka broker" in retried
    assert ("WARNING" in retried) if fmt == "text" else ('"level":"warning"' in retried)
    assert "GroupAuthorizationFailedError" in fatal and "retrying" not in fatal
    assert ("ERROR" in fatal) if fmt == "text" else ('"level":"error"' in fatal)


def test_a_line_aiokafka_repeats_shows_once_per_half_minute(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """While a broker is down aiokafka logs the same lines on every retry (over 200 a
    second): each shows once per 30 s, then with how many were held back. iotmon's own
    lines are never held back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    setup_logging("info", "text")

    def from_aiokafka(message: str, at: float) -> logging.LogRecord:
        fields = {"name": "aiokafka", "levelno": logging.ERROR, "levelname": "ERROR"}
        return logging.makeLogRecord({**fields, "msg": message, "args": (), "created": at})

    try:
        handler = root.handlers[0]
        for i in range(200):
            handler.handle(from_aiokafka("Unable connect to node with id 1", 1000.0 + i / 10))
        handler.handle(from_aiokafka("Unable to update metadata from [1]", 1010.0))
        handler.handle(from_aiokafka("Unable connect to node with id 1", 1031.0))
        for _ in range(2):
            logging.getLogger("iotmon.test").error("the same line of iotmon's")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = capfd.readouterr().err.splitlines()
    connect = [line for line in lines if "Unable connect" in line]
    assert len(connect) == 2
    assert "more like this" not in connect[0]
    assert connect[1].endswith("(199 more like this in the last 30 s)")
    assert sum("Unable to update metadata" in line for line in lines) == 1
    assert sum("the same line of iotmon's" in line for line in lines) == 2
