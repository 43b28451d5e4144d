"""One root for iotmon's errors, library messages in the library's terms, and the command
line's mapping of both: an :class:`IotmonError` is one line naming the flag, a bug keeps
its traceback."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import iotmon
from iotmon.errors import (
    ConfigError,
    InputNotFoundError,
    IotmonError,
    KafkaUnavailableError,
    KafkaUnreachableError,
    TopicNotFoundError,
)
from iotmon.settings import Settings, SourceSettings
from tests.helpers import iotmon as run_iotmon

PACKAGE = Path(iotmon.__file__).parent


def _iotmon_modules() -> list[str]:
    names = ["iotmon"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="iotmon."):
        if info.name != "iotmon.__main__":
            names.append(info.name)
    return names


def _error_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _iotmon_modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("iotmon"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_error_class_in_iotmon_is_an_iotmon_error() -> None:
    classes = _error_classes()
    # The walk really sees the library's errors, wherever they are defined.
    for expected in (
        "iotmon.errors.ConfigError",
        "iotmon.state.statedir.CheckpointError",
        "iotmon.kafka.changelog_records.ChangelogError",
        "iotmon.notify.outbox.OutboxError",
        "iotmon.notify.errors.DeliveryError",
        "iotmon.notify.errors.SmtpTlsRequiredError",
        "iotmon.tools.produce.ProduceError",
        "iotmon.tools.repartition.RepartitionError",
    ):
        assert expected in classes, sorted(classes)
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, IotmonError))
    assert outside == []


def test_errors_are_also_the_builtin_they_describe() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(KafkaUnreachableError, ConnectionError)
    assert issubclass(KafkaUnreachableError, KafkaUnavailableError)
    assert issubclass(TopicNotFoundError, LookupError)
    assert issubclass(InputNotFoundError, FileNotFoundError)


def test_the_root_is_exported_lazily() -> None:
    assert "IotmonError" in iotmon.__all__ and "ConfigError" in iotmon.__all__
    assert iotmon.IotmonError is IotmonError
    assert iotmon.ConfigError is ConfigError


def test_setting_errors_name_their_settings() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(max_future=0)
    assert caught.value.settings == ("max_future",)
    with pytest.raises(ConfigError) as caught:
        SourceSettings(follow=True)
    assert caught.value.settings == ("follow", "input")
    assert "`input`" in str(caught.value) and "--" not in str(caught.value)


# ---------------------------------------------------------------- library messages


# Files another branch is rewording (the pipeline split); remove them from here once merged.
# Command lines of their own: argparse declarations and a browser's flags, not messages.
_OWN_COMMAND_LINE: frozenset[str] = frozenset({"notify/preview.py"})
_FLAG = re.compile(r"--[a-z]")
_MAKE = re.compile(r"\bmake [a-z]+-[a-z]+")


def _message_strings(path: Path) -> list[tuple[int, str]]:
    """String literals that are not docstrings (comments are not in the tree at all)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_library_messages_name_no_flag_and_no_make_target() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("cli/") or relative in _OWN_COMMAND_LINE:
            continue
        for line, text in _message_strings(path):
            if _FLAG.search(text) or _MAKE.search(text):
                offenders.append(f"iotmon/{relative}:{line}: {text!r}")
    assert offenders == []


# ---------------------------------------------------------------- the command line


def _run_script(body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import typer
        from iotmon.cli.common import user_errors
        from iotmon.errors import ConfigError, IotmonError, KafkaUnreachableError

        app = typer.Typer(pretty_exceptions_enable=False)

        @app.command()
        def main(kind: str) -> None:
            with user_errors():
        """
    ) + textwrap.indent(textwrap.dedent(body), " " * 8)
    script += "\napp()\n"
    return subprocess.run(
        [sys.executable, "-c", script, "go"], capture_output=True, text=True, timeout=60
    )


def test_an_iotmon_error_is_one_line_in_cli_terms_exit_2() -> None:
    result = _run_script(
        """
        raise IotmonError(
            "/srv/state is in use; give this one its own `state_dir`", setting="state_dir"
        )
        """
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "iotmon: /srv/state is in use; give this one its own --state-dir"
    ]


def test_a_leading_setting_becomes_the_flag() -> None:
    result = _run_script('raise ConfigError("max-future: must be more than 0")')
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "iotmon: --max-future: must be more than 0"


def test_an_unreachable_broker_gets_the_cli_advice_exit_1() -> None:
    result = _run_script('raise KafkaUnreachableError("127.0.0.1:1")')
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "--bootstrap-servers" in line and "make kafka-up" in line


@pytest.mark.parametrize("bug", ["KeyError('partition')", "ValueError('bad state')"])
def test_a_bug_is_a_traceback_not_a_user_error(bug: str) -> None:
    result = _run_script(f"raise {bug}")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and bug.split("(")[0] in result.stderr
    assert "iotmon: " not in result.stderr


def test_consume_names_the_flag_of_a_missing_input(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    result = run_iotmon(
        "consume",
        *("--input", str(missing), "--once", "--no-live", "--state-dir", str(tmp_path / "s")),
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert str(missing) in lines[0] and "--input" in lines[0] and "`" not in lines[0]


def test_consume_refuses_follow_without_input_naming_both_flags(tmp_path: Path) -> None:
    result = run_iotmon(
        "consume", "--follow", "--no-live", "--state-dir", str(tmp_path / "s"), check=False
    )
    assert result.returncode == 2
    message = result.stderr.decode().strip()
    assert message == "iotmon: --follow: needs --input PATH (a file to tail)"
