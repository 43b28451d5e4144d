"""Address checks shared by alert rules (recipients, webhooks) and the notification settings.

A webhook is named by a *reference*: ``env:NAME`` (the URL is in that environment
variable), ``file:PATH`` (the first line of that file) or the URL itself. Webhook URLs carry
their credential in the path or query (Slack, Teams), so they are treated like passwords:
what is stored (checkpoints, the outbox) and shown (logs, status) is the destination's id,
:func:`webhook_id`, a hash of the reference, or :func:`redact_url`, scheme and host only.
"""

from __future__ import annotations

import hashlib
from typing import Final
from urllib.parse import urlsplit

from iotmon.errors import ConfigError

__all__ = ["check_address", "check_webhook_ref", "redact_url", "webhook_id"]

_REF_PREFIXES: Final = ("env:", "file:", "http://", "https://")


def check_address(option: str, address: str) -> None:
    """Reject what could smuggle extra headers or SMTP commands in through an address."""
    if not address or any(ch in address for ch in "\r\n\0") or "@" not in address:
        raise ConfigError(f"{option}: {address!r} is not an email address")


def check_webhook_ref(option: str, ref: str) -> None:
    """A webhook reference must say where its URL is; the message never shows the URL."""
    if not ref.startswith(_REF_PREFIXES) or any(ch in ref for ch in "\r\n\0 "):
        shown = ref if ref.startswith(("env:", "file:")) else redact_url(ref)
        raise ConfigError(
            f"{option}: {shown!r} is not a webhook reference; use env:NAME (the URL in that "
            "environment variable), file:PATH (the URL on the file's first line) or an "
            "http(s):// URL"
        )


def webhook_id(ref: str) -> str:
    """The destination's id: short, stable across restarts, safe to store and log (a hash
    of the reference, so a URL's secret cannot be read back from it)."""
    return hashlib.sha256(ref.encode("utf-8")).hexdigest()[:12]


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/XXXX`` → ``https://hooks.slack.com/…``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if not parts.scheme or not host:
        return "<unparsable URL>"
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    return shown + ("/…" if (parts.path not in ("", "/") or parts.query) else "/")
