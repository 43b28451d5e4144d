"""Pieces every command shares: options that read ``IOTMON_*`` variables, the ``--config``
file, logging setup, and turning library errors into one clear line and an exit code."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
import typer
from rich.markup import escape

from iotmon.config import ConfigError, ConfigFile, env_var, load_config_file, register_options
from iotmon.display import printable

__all__ = [
    "CONFIG_OPTION",
    "config_of",
    "fail",
    "opt",
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
        raise typer.BadParameter(str(exc), param_hint="--config") from None
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
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


class _TextFormatter(logging.Formatter):
    """One line per record, whatever the message quotes: device ids and input text in a
    message are escaped, so they cannot move the cursor or forge log lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message, limit=None)
        return super().formatMessage(record)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
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


@contextmanager
def user_errors() -> Iterator[None]:
    """Library errors caused by the user's input or environment become one line, exit 2."""
    from iotmon.state.statedir import CheckpointError

    try:
        yield
    except (ValueError, ConfigError, CheckpointError, ConnectionError, LookupError) as exc:
        raise fail(str(exc)) from None
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
