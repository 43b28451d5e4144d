"""Email address checks shared by alert rules (recipients) and the mail settings."""

from __future__ import annotations

from iotmon.errors import ConfigError

__all__ = ["check_address"]


def check_address(option: str, address: str) -> None:
    """Reject what could smuggle extra headers or SMTP commands in through an address."""
    if not address or any(ch in address for ch in "\r\n\0") or "@" not in address:
        raise ConfigError(f"{option}: {address!r} is not an email address")
