"""Configuration layering: built-in defaults < TOML file (``--config``) < ``IOTMON_<OPTION>``
environment variables < command-line flags.

The TOML file uses the command-line option names (``threshold = 80``, ``mail-to = [...]``,
dashes or underscores), either at the top level (shared by every command) or in a table
named after a command (``[consume]``). Per-device alert rules are a list of tables:

    [[overrides]]
    match = "Equipament-0323XH-*"
    threshold = 70.0
    recipients = ["line3@example.com"]
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from iotmon.settings import Settings

__all__ = [
    "ENV_PREFIX",
    "SECRET_OPTIONS",
    "ConfigError",
    "ConfigFile",
    "build_settings",
    "env_var",
    "load_config_file",
    "mask_secrets",
]

ENV_PREFIX: Final = "IOTMON_"
SECRET_OPTIONS: Final = frozenset({"smtp_password", "smtp_password_file"})
_TABLES: Final = frozenset({"overrides"})


class ConfigError(ValueError):
    """A configuration problem, worded as one line that names the option."""


def env_var(option: str) -> str:
    """``--smtp-host`` → ``IOTMON_SMTP_HOST``; ``--live/--no-live`` → ``IOTMON_LIVE``."""
    return ENV_PREFIX + option.split("/")[0].lstrip("-").replace("-", "_").upper()


def _normalise(key: str) -> str:
    return key.replace("-", "_")


class ConfigFile:
    """A parsed TOML config: option defaults per command, and per-device alert overrides."""

    def __init__(self, path: Path | None, data: Mapping[str, Any]) -> None:
        self.path = path
        self._data = data

    @property
    def overrides(self) -> list[dict[str, Any]]:
        raw = self._data.get("overrides", [])
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            raise ConfigError(f"{self.path}: overrides must be a list of tables ([[overrides]])")
        return [{_normalise(k): v for k, v in item.items()} for item in raw]

    def defaults_for(self, command: str, known: Iterable[str]) -> dict[str, Any]:
        """Values for ``command``'s options; unknown names are an error, not silently ignored."""
        known_names = set(known)
        values: dict[str, Any] = {}
        commands = {"consume", "simulate", "produce", "demo", "status", "config"}
        for key, value in self._data.items():
            name = _normalise(key)
            if isinstance(value, dict) or name in _TABLES:
                continue
            if name in known_names:
                values[name] = value
            elif not _known_anywhere(name):
                raise ConfigError(f"{self.path}: unknown option {key!r}")
        section = self._data.get(command, {})
        if isinstance(section, dict):
            for key, value in section.items():
                name = _normalise(key)
                if name not in known_names:
                    raise ConfigError(
                        f"{self.path}: [{command}] has no option {key!r}; "
                        f"see `iotmon {command} --help`"
                    )
                values[name] = value
        for key in self._data:
            if isinstance(self._data[key], dict) and key not in commands:
                raise ConfigError(f"{self.path}: unknown table [{key}]")
        return values


_ALL_OPTIONS: set[str] = set()


def register_options(names: Iterable[str]) -> None:
    """Commands register their option names so a shared top-level key can be validated."""
    _ALL_OPTIONS.update(names)


def _known_anywhere(name: str) -> bool:
    return name in _ALL_OPTIONS


def load_config_file(path: Path | None) -> ConfigFile:
    if path is None:
        env_path = os.environ.get(env_var("config"))
        path = Path(env_path) if env_path else None
    if path is None:
        return ConfigFile(None, {})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config: {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path} is not valid TOML ({exc})") from None
    return ConfigFile(path, data)


def mask_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: ("***" if key in SECRET_OPTIONS and value else value) for key, value in values.items()
    }


def _valid_range(text: str) -> tuple[float, float]:
    low, sep, high = str(text).partition("..")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        raise ConfigError(f"valid-range: {text!r} is not MIN..MAX, e.g. -50..200") from None


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{option}: must be one of {', '.join(allowed)}, got {value!r}")
    return value


def build_settings(
    values: Mapping[str, Any],
    config: ConfigFile | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Option values (already layered: defaults < file < env < flags) to :class:`Settings`."""
    from iotmon.alerts import AlertSettings, RuleOverride
    from iotmon.kafka.settings import KafkaSettings
    from iotmon.notify import EmailSettings, SmtpSettings, read_smtp_password
    from iotmon.parse import ParseSettings
    from iotmon.settings import GUARANTEES, Settings, SourceSettings
    from iotmon.stats import WindowSpec

    v = dict(values)
    config = config or ConfigFile(None, {})
    environ = os.environ if environ is None else environ
    try:
        low, high = _valid_range(v["valid_range"])
        smtp = None
        if v.get("smtp_host"):
            smtp = SmtpSettings(
                host=v["smtp_host"],
                port=v.get("smtp_port"),
                security=_choice(  # type: ignore[arg-type]
                    "smtp-security", v["smtp_security"], ("auto", "none", "starttls", "ssl")
                ),
                user=v.get("smtp_user"),
                password=read_smtp_password(
                    environ=environ, password_file=v.get("smtp_password_file")
                ),
                timeout=float(v["smtp_timeout"]),
            )
        threshold = float(v["threshold"])
        return Settings(
            source=SourceSettings(
                input=v.get("input"),
                follow=bool(v["follow"]),
                once=bool(v["once"]),
                max_line_bytes=int(v["max_line_bytes"]),
                kafka=KafkaSettings(
                    bootstrap_servers=v["bootstrap_servers"],
                    topics=tuple(v["topic"]) or ("sensoresInfos",),
                    group=v["group"],
                    start_from=_choice(  # type: ignore[arg-type]
                        "from", v["start_from"], ("earliest", "latest")
                    ),
                    changelog=bool(v.get("changelog", True)),
                    changelog_topic=v.get("changelog_topic") or None,
                    instance_id=v.get("instance_id") or None,
                ),
            ),
            parse=ParseSettings(
                key_field=v["key"],
                temperature_field=v["temperature_field"],
                time_field=v["time_field"],
                valid_min=low,
                valid_max=high,
            ),
            window=WindowSpec.from_seconds(
                window=float(v["window"]),
                pane=float(v["pane"]),
                lateness=float(v["allowed_lateness"]),
            ),
            state_dir=Path(v["state_dir"]),
            checkpoint_interval=float(v["checkpoint_interval"]),
            alerts=AlertSettings(
                threshold=threshold,
                metric=_choice("metric", v["metric"], ("window", "running")),  # type: ignore[arg-type]
                for_seconds=float(v["for_"]),
                clear_below=None if v.get("clear_below") is None else float(v["clear_below"]),
                stale_after=None if v.get("stale_after") is None else float(v["stale_after"]),
                group_wait=float(v["group_wait"]),
                group_interval=float(v["group_interval"]),
                repeat_interval=float(v["repeat_interval"]),
                overrides=tuple(RuleOverride.from_mapping(o) for o in config.overrides),
            ),
            alerts_log=v.get("alerts_log"),
            email=EmailSettings(
                mail_from=v["mail_from"],
                mail_to=tuple(v["mail_to"]),
                lang=_choice("lang", v["lang"], ("en", "pt-BR")),  # type: ignore[arg-type]
                timezone=v["timezone"],
                smtp=smtp,
                eml_dir=Path(v["outbox"]),
            ),
            flush_timeout=float(v["flush_timeout"]),
            max_future=float(v["max_future"]),
            guarantee=_choice(  # type: ignore[arg-type]
                "guarantee",
                v.get("guarantee", "at-least-once"),
                GUARANTEES,
            ),
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
