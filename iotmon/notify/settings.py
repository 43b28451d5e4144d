"""Settings of the notification side: who gets mail and webhooks, how they are delivered,
how hard to retry.

Filled in by the config layer from the CLI, the environment and the TOML file. The SMTP
password is never a command-line option: :func:`read_smtp_password` takes it from
``IOTMON_SMTP_PASSWORD`` or a file, and :class:`SmtpSettings` never shows it in its repr.
Webhook URLs are secrets too (the token is in the path): :func:`resolve_webhook` reads
them from ``env:NAME`` or ``file:PATH`` references, and :class:`WebhookDestination` shows
only scheme and host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Final, Literal, TypeAlias, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from iotmon.addresses import check_address, check_webhook_ref, redact_url, webhook_id
from iotmon.errors import ConfigError

__all__ = [
    "DEFAULT_TIMEZONE",
    "LANGUAGES",
    "PASSWORD_ENV",
    "SMTP_SECURITIES",
    "WEBHOOK_FORMATS",
    "DeliverySettings",
    "EmailSettings",
    "Language",
    "SmtpSecurity",
    "SmtpSettings",
    "WebhookDestination",
    "WebhookFormat",
    "WebhookSettings",
    "read_smtp_password",
    "resolve_webhook",
]

PASSWORD_ENV = "IOTMON_SMTP_PASSWORD"
DEFAULT_TIMEZONE: Final = "UTC"
"""The zone email timestamps are shown in (``--timezone``)."""

SmtpSecurity: TypeAlias = Literal["auto", "none", "starttls", "ssl"]
SMTP_SECURITIES: Final[tuple[SmtpSecurity, ...]] = get_args(SmtpSecurity)
Language: TypeAlias = Literal["en", "pt-BR"]
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)
WebhookFormat: TypeAlias = Literal["json", "slack", "teams"]
WEBHOOK_FORMATS: Final[tuple[WebhookFormat, ...]] = get_args(WebhookFormat)


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """How to reach the SMTP server.

    ``security="auto"`` upgrades with STARTTLS when the server offers it and goes on in the
    clear when it does not — but never logs in on a clear connection: with a ``user`` set
    and no STARTTLS offered (or stripped by someone on the path) delivery fails with
    :class:`~iotmon.notify.errors.SmtpTlsRequiredError` and the notification stays queued.
    ``"starttls"`` insists on STARTTLS; ``"ssl"`` is implicit TLS (port 465); ``"none"``
    never encrypts, and is the only mode that sends a password in clear text.
    ``port=None`` picks the usual port for the mode.
    ``timeout`` bounds one whole send (connect, TLS, login, transfer).
    """

    host: str
    port: int | None = None
    security: SmtpSecurity = "auto"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ca_file: Path | None = None
    """Extra CA bundle to trust (a private relay's own CA)."""
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("smtp-host: must not be empty")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"smtp-port: must be 1..65535, got {self.port}")
        if self.security not in SMTP_SECURITIES:
            raise ConfigError(
                f"smtp-security: must be none, starttls or ssl, got {self.security!r}"
            )
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(
                f"smtp-timeout: must be a positive number of seconds, got {self.timeout}"
            )

    def __repr__(self) -> str:
        # Settings get logged and printed in tracebacks; the password must never be.
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "password":
                shown.append(f"password={'***' if value is not None else None}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"SmtpSettings({', '.join(shown)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverySettings:
    """Retry policy of the delivery worker.

    The n-th consecutive failure of a notification waits ``initial_backoff * 2**(n-1)``
    seconds, capped at ``max_backoff``, then shortened by a random fraction of up to
    ``jitter`` so several processes recovering from the same outage do not retry in step.
    ``attempt_timeout`` bounds one call of any notifier, custom ones included.
    """

    initial_backoff: float = 1.0
    max_backoff: float = 300.0
    jitter: float = 0.5
    attempt_timeout: float = 120.0
    sent_retention: float = 7 * 24 * 3600.0
    """How long the ids of sent notifications are remembered, to recognise a replay."""

    def __post_init__(self) -> None:
        for name in ("initial_backoff", "max_backoff", "attempt_timeout", "sent_retention"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: must be a positive number of seconds, got {value}")
        if self.max_backoff < self.initial_backoff:
            raise ConfigError("max_backoff: must not be below initial_backoff")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"jitter: must be in [0, 1), got {self.jitter}")


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailSettings:
    """Who the digests are from and to, in which language, and by which channel.

    With ``smtp=None`` notifications are written as ``.eml`` files to ``eml_dir``.
    Per-device recipients come from the alert rules; ``mail_to`` is for every device no
    rule gives its own recipients.
    """

    mail_from: str = "iotmon@localhost"
    mail_to: tuple[str, ...] = ()
    lang: Language = "en"
    timezone: str = DEFAULT_TIMEZONE
    """IANA zone name (``America/Sao_Paulo``) the email shows times in; named once in it."""
    smtp: SmtpSettings | None = None
    eml_dir: Path = Path("outbox")
    delivery: DeliverySettings = field(default_factory=DeliverySettings)

    def __post_init__(self) -> None:
        if self.lang not in LANGUAGES:
            raise ConfigError(f"lang: must be en or pt-BR, got {self.lang!r}")
        zone(self.timezone)
        check_address("mail-from", self.mail_from)
        for address in self.mail_to:
            check_address("mail-to", address)


def zone(name: str) -> ZoneInfo:
    """The time zone called ``name``; :class:`ConfigError` naming the setting when there is
    none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"timezone: unknown time zone {name!r}; use an IANA name such as UTC, "
            "Europe/Lisbon or America/Sao_Paulo (the tzdata package provides them)"
        ) from None


def read_smtp_password(
    *, environ: Mapping[str, str], password_file: Path | None = None
) -> str | None:
    """The SMTP password from ``--smtp-password-file`` (first line) or ``IOTMON_SMTP_PASSWORD``.

    The file wins when both are given: it is the more deliberate of the two.
    """
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"smtp-password-file: cannot read {password_file}: {exc}") from exc
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise ConfigError(f"smtp-password-file: {password_file} is empty")
        return lines[0]
    return environ.get(PASSWORD_ENV) or None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookDestination:
    """One webhook receiver: the reference it was configured by and the URL it resolves
    to. Its :attr:`id` is what the outbox and the digests store; :attr:`shown` is what logs
    and errors print."""

    ref: str = field(repr=False)
    url: str = field(repr=False)

    @property
    def id(self) -> str:
        return webhook_id(self.ref)

    @property
    def shown(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"WebhookDestination(id={self.id!r}, url={self.shown!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    """Where digests are posted besides email, and in which format.

    ``default`` receives every digest whose devices' rule names no webhooks of its own;
    ``known`` holds every destination a digest may name (the defaults and those of the
    per-device overrides), resolved at startup so a missing variable is reported then.
    ``timeout`` bounds one POST (connect, send, answer).
    """

    default: tuple[WebhookDestination, ...] = ()
    known: tuple[WebhookDestination, ...] = ()
    format: WebhookFormat = "json"
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.format not in WEBHOOK_FORMATS:
            raise ConfigError(f"webhook-format: must be json, slack or teams, got {self.format!r}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(
                f"webhook timeout: must be a positive number of seconds, got {self.timeout}"
            )

    def destination(self, destination_id: str) -> WebhookDestination | None:
        for destination in (*self.default, *self.known):
            if destination.id == destination_id:
                return destination
        return None

    def ids_for(self, override_ids: tuple[str, ...]) -> tuple[str, ...]:
        """The destinations of a digest: its rule's own, else the defaults."""
        if override_ids:
            return override_ids
        return tuple(dict.fromkeys(d.id for d in self.default))


def resolve_webhook(option: str, ref: str, *, environ: Mapping[str, str]) -> WebhookDestination:
    """``env:NAME`` → that variable; ``file:PATH`` → the file's first line; a URL as is.
    ConfigError naming ``option`` and never the URL (scheme and host at most)."""
    check_webhook_ref(option, ref)
    if ref.startswith("env:"):
        name = ref[4:]
        url = environ.get(name, "").strip()
        if not url:
            raise ConfigError(
                f"{option}: {ref!r}: the environment variable {name} is not set; export the "
                "webhook URL in it"
            )
    elif ref.startswith("file:"):
        path = Path(ref[5:]).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{option}: {ref!r}: cannot read the file: {exc.strerror}") from None
        url = lines[0].strip() if lines else ""
        if not url:
            raise ConfigError(f"{option}: {ref!r}: the file is empty; put the URL on line 1")
    else:
        url = ref
    if not url.startswith(("http://", "https://")) or redact_url(url) == "<unparsable URL>":
        raise ConfigError(
            f"{option}: {ref if not ref.startswith('http') else redact_url(ref)!r} does not "
            "hold an http(s):// URL with a host"
        )
    return WebhookDestination(ref=ref, url=url)
