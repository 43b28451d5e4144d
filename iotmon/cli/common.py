"""Pieces every command shares: options that read ``IOTMON_*`` variables, the ``--config``
file, logging setup, and turning library errors into one clear line and an exit code."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
import typer
from rich.markup import escape

from iotmon.config import ConfigFile, env_var, load_config_file, register_options
from iotmon.display import printable
from iotmon.errors import (
    ConfigError,
    IotmonError,
    KafkaUnavailableError,
    KafkaUnreachableError,
)

__all__ = [
    "CONFIG_OPTION",
    "config_of",
    "describe",
    "exit_code",
    "fail",
    "in_cli_terms",
    "opt",
    "option_flags",
    "plain",
    "run_async",
    "setup_logging",
    "user_errors",
]

T = TypeVar("T")


def plain(text: str) -> str:
    """Help text shown as written: typer renders help as Rich markup, where ``[default: …]``
    is a style tag and vanishes."""
    return escape(text)


def opt(default: Any, *flags: str, help: str, **kwargs: Any) -> Any:
    """A typer option that also reads ``IOTMON_<FLAG>`` from the environment."""
    return typer.Option(default, *flags, envvar=env_var(flags[0]), help=plain(help), **kwargs)


def _load_config(ctx: typer.Context, param: Any, value: Path | None) -> Path | None:
    if ctx.resilient_parsing:
        return value
    command = ctx.command
    # A file key is the option's flag (`for`, `from`, `mail-to`) or its Python name
    # (`for_`, `start_from`); both map to the parameter click fills in.
    names: dict[str, str] = {}
    for p in command.params:
        if not p.name:
            continue
        names[p.name] = p.name
        for flag in p.opts:
            if flag.startswith("--"):
                names[flag[2:].split("/")[0].replace("-", "_")] = p.name
    register_options(names)
    try:
        config = load_config_file(value)
        found = config.defaults_for(command.name or "", names)
    except ConfigError as exc:
        raise typer.BadParameter(
            f"{in_cli_terms(str(exc))}; see `iotmon {command.name} --help`", param_hint="--config"
        ) from None
    defaults = {names[key]: found_value for key, found_value in found.items()}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta["iotmon.config"] = config
    return value


CONFIG_OPTION: Any = typer.Option(
    None,
    "--config",
    envvar=env_var("config"),
    is_eager=True,
    callback=_load_config,
    help="TOML file with option defaults and per-device alert overrides (flags and "
    "IOTMON_* variables take precedence).",
)


def config_of(ctx: typer.Context) -> ConfigFile:
    config = ctx.meta.get("iotmon.config")
    return config if isinstance(config, ConfigFile) else ConfigFile(None, {})


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": in_cli_terms(record.getMessage()),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


class _TextFormatter(logging.Formatter):
    """One line per record, whatever the message quotes: device ids and input text in a
    message are escaped, so they cannot move the cursor or forge log lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(in_cli_terms(record.message), limit=None)
        return super().formatMessage(record)


class _RetriedKafkaErrors(logging.Filter):
    """aiokafka logs some errors at ERROR that it then retries by itself: the group
    coordinator of a broker that has just started is not available until the broker has
    created its offsets topic, so the first start of ``compose up`` printed an ERROR line
    for a run that went on fine. Shown as a warning that says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno >= logging.ERROR
            and record.name.startswith("aiokafka")
            and isinstance(record.args, tuple)
            and any(getattr(arg, "retriable", False) is True for arg in record.args)
        ):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = f"{record.msg} (retrying; if this goes on, check the Kafka broker)"
        return True


_REPEATS_EVERY_S: Final = 30.0
_REPEATS_KEPT: Final = 256


class _RepeatedKafkaLogs(logging.Filter):
    """While a broker is down, aiokafka logs the same few lines every time it retries: over
    200 a second were measured. Each distinct line is shown once per ``every_s`` seconds;
    the next time it shows, it says how many were held back meanwhile."""

    def __init__(self, every_s: float = _REPEATS_EVERY_S) -> None:
        super().__init__()
        self._every_s = every_s
        self._shown: dict[str, tuple[float, int]] = {}
        """Each line: when it was last shown, and how many like it were held back since."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka"):
            return True
        try:
            line = f"{record.levelno} {record.name} {record.getMessage()}"
        except Exception:  # the formatter reports a record it cannot format
            return True
        shown = self._shown.get(line)
        if shown is not None and record.created - shown[0] < self._every_s:
            self._shown[line] = (shown[0], shown[1] + 1)
            return False
        if shown is not None and shown[1]:
            record.msg = (
                f"{record.msg} ({shown[1]:,} more like this in the last {self._every_s:.0f} s)"
            )
        if len(self._shown) >= _REPEATS_KEPT:
            self._shown.clear()
        self._shown[line] = (record.created, 0)
        return True


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RetriedKafkaErrors())
    handler.addFilter(_RepeatedKafkaLogs())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level.upper())
    except ValueError:
        raise typer.BadParameter(
            f"{level!r} is not a level (debug, info, warning, error)", param_hint="--log-level"
        ) from None
    # aiokafka logs every retry at WARNING/ERROR; our own messages say what to do instead.
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.ERROR))


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"iotmon: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


# Settings the library names differently from the option that sets them.
_SETTING_OPTIONS: Final = {
    "key_field": "key",
    "topics": "topic",
    "lateness": "allowed_lateness",
    "for_seconds": "for",
    "start_from": "from",
}
_NAMED_SETTING: Final = re.compile(r"`([a-z][a-z0-9_]*)`")


@cache
def option_flags() -> dict[str, str]:
    """Setting name → the flag that sets it, from every command's typer options:
    ``state_dir`` → ``--state-dir``, ``no_changelog`` → ``--no-changelog``."""
    from iotmon.cli import app

    root = typer.main.get_command(app)
    commands = getattr(root, "commands", {})
    flags: dict[str, str] = {}
    for command in commands.values():
        for sub in [command, *getattr(command, "commands", {}).values()]:
            for param in sub.params:
                names = [*param.opts, *getattr(param, "secondary_opts", ())]
                long = [flag for flag in names if flag.startswith("--")]
                for flag in long:
                    flags.setdefault(flag[2:].replace("-", "_"), flag)
                if param.name and long:
                    flags.setdefault(param.name, long[0])
    for setting, option in _SETTING_OPTIONS.items():
        if option in flags:
            flags.setdefault(setting, flags[option])
    return flags


def in_cli_terms(text: str, settings: tuple[str, ...] = ()) -> str:
    """A library message as the command line says it: each setting it names in backquotes
    (```state_dir```) or as its leading ``state-dir:`` becomes the flag (``--state-dir``)."""
    if not settings and "`" not in text:
        return text
    flags = option_flags()
    for setting in settings:
        flag = flags.get(setting)
        leading = setting.replace("_", "-") + ":"
        if flag is not None and text.startswith(leading):
            text = flag + text[len(leading) - 1 :]
    if "`" in text:
        text = _NAMED_SETTING.sub(lambda m: flags.get(m[1], m[0]), text)
    return text


def describe(exc: IotmonError) -> str:
    """One line for ``exc``, in the command line's terms, with the command line's advice."""
    text = in_cli_terms(str(exc), exc.settings)
    if isinstance(exc, KafkaUnreachableError):
        text += "; for a local development broker: `make kafka-up`"
    return text


def exit_code(exc: IotmonError) -> int:
    """2 for what the user asked for (a setting, a state dir), 1 for what the world did
    (an unreachable broker)."""
    return 1 if isinstance(exc, KafkaUnavailableError) else 2


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors iotmon raises on purpose become one line and an exit code.

    :class:`IotmonError` says what to do; an ``OSError`` (a file, a socket, a full disk) is
    the environment's, and its own text names the file. Anything else — a ``KeyError``, a
    ``TypeError`` — is a bug in iotmon and keeps its traceback.
    """
    try:
        yield
    except IotmonError as exc:
        raise fail(describe(exc), exit_code(exc)) from None
    except OSError as exc:
        raise fail(in_cli_terms(str(exc))) from None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
