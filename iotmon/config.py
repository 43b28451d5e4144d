"""Configuration layering: built-in defaults < TOML file (``--config``) < ``IOTMON_<OPTION>``
environment variables < command-line flags.

The TOML file uses the command-line option names (``threshold = 80``, ``mail-to = [...]``,
dashes or underscores), either at the top level (shared by every command) or in a table
named after a command (``[consume]``). Per-device alert rules are a list of tables:

    [[overrides]]
    match = "Equipament-0323XH-*"
    threshold = 70.0
    recipients = ["line3@example.com"]
    webhooks = ["env:LINE3_TEAMS_URL"]
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from iotmon.errors import ConfigError

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
URL_OPTIONS: Final = frozenset({"webhook_url"})
"""Options whose values may be URLs with a secret in them: shown as scheme://host only."""
_TABLES: Final = frozenset({"overrides"})
_C = TypeVar("_C", bound=str)


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
                    raise ConfigError(f"{self.path}: [{command}] has no option {key!r}")
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
        raise ConfigError(f"config: {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML ({exc})") from None
    return ConfigFile(path, data)


def mask_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    masked = {
        key: ("***" if key in SECRET_OPTIONS and value else value) for key, value in values.items()
    }
    for key in URL_OPTIONS & masked.keys():
        refs = masked[key]
        if isinstance(refs, list | tuple):
            masked[key] = [_shown_ref(str(ref)) for ref in refs]
        elif isinstance(refs, str):
            masked[key] = _shown_ref(refs)
    return masked


def _shown_ref(ref: str) -> str:
    from iotmon.addresses import redact_url

    return ref if ref.startswith(("env:", "file:")) else redact_url(ref)


def _valid_range(text: str) -> tuple[float, float]:
    low, sep, high = str(text).partition("..")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        raise ConfigError(f"valid-range: {text!r} is not MIN..MAX, e.g. -50..200") from None


def _choice(option: str, value: str, allowed: tuple[_C, ...]) -> _C:
    for choice in allowed:
        if value == choice:
            return choice
    raise ConfigError(f"{option}: must be one of {', '.join(allowed)}, got {value!r}")


def build_settings(
    config: ConfigFile | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    bootstrap_servers: str,
    topics: Sequence[str],
    group: str,
    start_from: str,
    input: str | None,
    follow: bool,
    once: bool,
    max_line_bytes: int,
    key_field: str,
    temperature_field: str,
    time_field: str,
    valid_range: str,
    max_future: float,
    window: float,
    pane: float,
    lateness: float,
    state_dir: Path,
    checkpoint_interval: float,
    decode_worker: bool,
    guarantee: str,
    changelog: bool,
    changelog_topic: str | None,
    instance_id: str | None,
    threshold: float,
    metric: str,
    for_seconds: float,
    clear_below: float | None,
    stale_after: float | None,
    group_wait: float,
    group_interval: float,
    repeat_interval: float,
    alerts_log: Path | None,
    lang: str,
    timezone: str,
    smtp_host: str | None,
    smtp_port: int | None,
    smtp_security: str,
    smtp_user: str | None,
    smtp_password_file: Path | None,
    smtp_timeout: float,
    mail_from: str,
    mail_to: Sequence[str],
    outbox: Path,
    flush_timeout: float,
    webhook_urls: Sequence[str],
    webhook_format: str,
) -> Settings:
    """Option values (already layered: defaults < file < env < flags) to :class:`Settings`.

    Takes the values as a front end holds them (``valid_range`` as ``"MIN..MAX"``, choices
    as strings) and checks them; the per-device overrides come from ``config``, the SMTP
    password from ``environ`` or ``smtp_password_file``, webhook URLs from the ``env:NAME``
    and ``file:PATH`` references in ``webhook_urls`` and the overrides. Raises
    :class:`ConfigError`.
    """
    from iotmon.alerts import AlertSettings, RuleOverride
    from iotmon.alerts.model import METRICS
    from iotmon.kafka.settings import START_FROM, KafkaSettings
    from iotmon.notify import (
        LANGUAGES,
        SMTP_SECURITIES,
        WEBHOOK_FORMATS,
        EmailSettings,
        SmtpSettings,
        WebhookSettings,
        read_smtp_password,
        resolve_webhook,
    )
    from iotmon.parse import ParseSettings
    from iotmon.settings import GUARANTEES, Settings, SourceSettings
    from iotmon.stats import WindowSpec

    config = config or ConfigFile(None, {})
    environ = os.environ if environ is None else environ
    low, high = _valid_range(valid_range)
    smtp = None
    if smtp_host:
        smtp = SmtpSettings(
            host=smtp_host,
            port=smtp_port,
            security=_choice("smtp-security", smtp_security, SMTP_SECURITIES),
            user=smtp_user,
            password=read_smtp_password(environ=environ, password_file=smtp_password_file),
            timeout=smtp_timeout,
        )
    overrides = tuple(RuleOverride.from_mapping(o) for o in config.overrides)
    override_refs = [ref for o in overrides for ref in o.webhooks or ()]
    webhooks = WebhookSettings(
        default=tuple(
            resolve_webhook("webhook-url", ref, environ=environ)
            for ref in dict.fromkeys(webhook_urls)
        ),
        known=tuple(
            resolve_webhook("override webhooks", ref, environ=environ)
            for ref in dict.fromkeys(override_refs)
        ),
        format=_choice("webhook-format", webhook_format, WEBHOOK_FORMATS),
    )
    return Settings(
        source=SourceSettings(
            input=input,
            follow=follow,
            once=once,
            max_line_bytes=max_line_bytes,
            kafka=KafkaSettings(
                bootstrap_servers=bootstrap_servers,
                topics=tuple(topics) or KafkaSettings().topics,
                group=group,
                start_from=_choice("from", start_from, START_FROM),
                changelog=changelog,
                changelog_topic=changelog_topic or None,
                instance_id=instance_id or None,
            ),
        ),
        parse=ParseSettings(
            key_field=key_field,
            temperature_field=temperature_field,
            time_field=time_field,
            valid_min=low,
            valid_max=high,
        ),
        window=WindowSpec.from_seconds(window=window, pane=pane, lateness=lateness),
        state_dir=state_dir,
        checkpoint_interval=checkpoint_interval,
        alerts=AlertSettings(
            threshold=threshold,
            metric=_choice("metric", metric, METRICS),
            for_seconds=for_seconds,
            clear_below=clear_below,
            stale_after=stale_after,
            group_wait=group_wait,
            group_interval=group_interval,
            repeat_interval=repeat_interval,
            overrides=overrides,
        ),
        alerts_log=alerts_log,
        email=EmailSettings(
            mail_from=mail_from,
            mail_to=tuple(mail_to),
            lang=_choice("lang", lang, LANGUAGES),
            timezone=timezone,
            smtp=smtp,
            eml_dir=outbox,
        ),
        webhooks=webhooks,
        flush_timeout=flush_timeout,
        max_future=max_future,
        decode_worker=decode_worker,
        guarantee=_choice("guarantee", guarantee, GUARANTEES),
    )
