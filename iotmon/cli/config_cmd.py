"""`iotmon config show`: the configuration `iotmon consume` would run with, and where each
value came from (default < TOML file < IOTMON_* variable < flag), secrets masked.

The values are resolved by `consume`'s own option declarations (the click command behind it
parses the arguments), so this view cannot drift from what `consume` does, and the same
settings validation runs, so a bad value is reported here exactly as `consume` reports it.

Registered on the root app by ``iotmon.cli._register()``:
``app.add_typer(config_cmd.config_app, name="config")``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import typer
from typer.core import TyperGroup

from iotmon.cli import app
from iotmon.cli.common import fail, user_errors
from iotmon.cli.consume import consume_settings
from iotmon.config import ConfigFile, mask_secrets
from iotmon.notify import PASSWORD_ENV

__all__ = ["EffectiveConfig", "config_app", "effective_config", "to_json", "to_toml"]

config_app = typer.Typer(
    name="config",
    help="Inspect the configuration iotmon runs with.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_SOURCES: Final = {
    "DEFAULT": "default",
    "DEFAULT_MAP": "config file",
    "ENVIRONMENT": "environment",
    "COMMANDLINE": "flag",
    "PROMPT": "prompt",
}
# Recent typer releases bundle their own copy of click, older ones use the click package;
# either way bad arguments raise a subclass of a class named ClickException.
_CLICK_ERROR: Final[type[Exception]] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    """Option values by display name (the flag without dashes), in `consume --help` order."""

    values: dict[str, Any]
    sources: dict[str, str]
    """default, config file, environment or flag."""
    env_vars: dict[str, str]
    config_file: Path | None
    overrides: list[dict[str, Any]]


def effective_config(args: Sequence[str]) -> EffectiveConfig:
    """Resolve ``consume ARGS`` (and the IOTMON_* environment) like `iotmon consume` does,
    and validate the result.

    Raises :class:`typer.Exit` (after printing one line naming the option) for arguments or
    values `consume` would refuse.
    """
    environ = os.environ
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    consume = root.commands["consume"]
    try:
        ctx = consume.make_context("consume", list(args))
    except _CLICK_ERROR as exc:
        raise fail(_click_message(exc, args), int(getattr(exc, "exit_code", 2))) from None
    with ctx:
        params = {k: v for k, v in ctx.params.items() if k != "config"}
        # What consume's --config callback loaded (config_of() wants typer's Context type).
        loaded = ctx.meta.get("iotmon.config")
        config = loaded if isinstance(loaded, ConfigFile) else ConfigFile(None, {})
        # consume's own code builds and checks the settings, so both refuse the same values.
        consume_settings(ctx)
        with user_errors():
            # An override's webhooks may be URLs with their token: masked like the option.
            overrides = [
                {
                    k: mask_secrets({"webhook_url": v})["webhook_url"] if k == "webhooks" else v
                    for k, v in o.items()
                }
                for o in config.overrides
            ]
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        env_vars: dict[str, str] = {}
        for param in consume.params:
            name = param.name
            if name is None or name == "config" or name not in params:
                continue
            display = _display_name(param.opts)
            values[display] = params[name]
            source = ctx.get_parameter_source(name)
            sources[display] = _SOURCES.get(source.name, source.name.lower()) if source else "?"
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                env_vars[display] = envvar
            if name == "smtp_password_file":
                # The password itself is no option: build_settings reads it from the
                # environment. Show whether it is set, never what it is.
                secret = environ.get(PASSWORD_ENV) or None
                values["smtp-password"] = secret
                sources["smtp-password"] = "environment" if secret else "default"
                env_vars["smtp-password"] = PASSWORD_ENV
    masked = mask_secrets({k.replace("-", "_"): v for k, v in values.items()})
    values = {k: masked[k.replace("-", "_")] for k in values}
    return EffectiveConfig(
        values=values,
        sources=sources,
        env_vars=env_vars,
        config_file=config.path,
        overrides=overrides,
    )


def _click_message(exc: Exception, args: Sequence[str]) -> str:
    format_message = getattr(exc, "format_message", None)
    message = str(format_message() if callable(format_message) else exc)
    # click blames a bad value from the config file on the option's environment variable
    # ("Invalid value for '--threshold' (env var: 'IOTMON_THRESHOLD')"); name the file
    # instead when neither the variable nor the flag supplied it.
    param, ctx = getattr(exc, "param", None), getattr(exc, "ctx", None)
    name = getattr(param, "name", None)
    defaults = getattr(ctx, "default_map", None) or {}
    loaded = getattr(ctx, "meta", {}).get("iotmon.config")
    if name is None or name not in defaults or not isinstance(loaded, ConfigFile):
        return message
    opts: Sequence[str] = getattr(param, "opts", ())
    envvar = getattr(param, "envvar", None)
    from_env = isinstance(envvar, str) and envvar in os.environ
    from_flag = any(a == o or a.startswith(o + "=") for a in args for o in opts)
    if from_env or from_flag:
        return message
    detail = str(getattr(exc, "message", message))
    return f"{loaded.path}: {_display_name(opts)} = {defaults[name]!r}: {detail}"


def _display_name(opts: Sequence[str]) -> str:
    # The first long flag is what users type and what the TOML file documents (`for`,
    # `from`), not the Python parameter name (`for_`, `start_from`).
    flag = next((o for o in opts if o.startswith("--")), opts[0])
    return flag.lstrip("-").split("/")[0]


@config_app.command(
    "show",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
def show(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of TOML."),
) -> None:
    """Print the effective configuration of `iotmon consume`.

    Takes every `consume` option (--config FILE, --threshold, --mail-to, ...); values are
    layered like `consume` does: defaults < config file < IOTMON_* variables < flags.
    Secrets are masked. Exit code 2 with one line naming the option if a value is invalid.
    """
    config = effective_config(ctx.args)
    typer.echo(to_json(config) if json_output else to_toml(config), nl=False)


def to_json(config: EffectiveConfig) -> str:
    doc = {
        "config_file": None if config.config_file is None else str(config.config_file),
        "options": {k: _jsonable(v) for k, v in config.values.items()},
        "sources": config.sources,
        "overrides": config.overrides,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_toml(config: EffectiveConfig) -> str:
    """TOML a `--config` file accepts; unset options as comments, sources as comments."""
    where = str(config.config_file) if config.config_file is not None else "none"
    lines = [
        "# iotmon consume: effective configuration",
        "# (defaults < config file < IOTMON_* environment variables < flags)",
        f"# config file: {where}",
        "",
    ]
    for key, value in config.values.items():
        source = config.sources.get(key, "?")
        note = source
        if source == "environment" and key in config.env_vars:
            note = f"environment {config.env_vars[key]}"
        if value is None:
            lines.append(f"# {key} = (not set)")
        else:
            lines.append(f"{key} = {_toml_value(value)}  # {note}")
    for override in config.overrides:
        lines += ["", "[[overrides]]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in override.items()]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _toml_key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "")
    return key if bare.isascii() and bare.isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        # JSON string escapes (\", \\, \n, \uXXXX) are all valid in a TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
