"""The root of iotmon's errors, and the ones every part of it shares.

Every error iotmon raises on purpose is an :class:`IotmonError`, so an application can tell
"iotmon refused, and says why" from a bug with one ``except``. Where a builtin describes the
condition too, the class also derives from it (:class:`ConfigError` is a ``ValueError``, an
unreachable Kafka broker a ``ConnectionError``), so code written against the builtin keeps
working.

Messages speak the library's language: a setting is named by its option name in backquotes
(```state_dir```, ```smtp_user``` — the ``Settings`` field, the TOML key and the
``IOTMON_*`` variable), and :attr:`IotmonError.settings` lists the settings that fix it. A
front end translates them into its own terms: the command line shows ``--state-dir``.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "ConfigError",
    "InputNotFoundError",
    "IotmonError",
    "KafkaUnavailableError",
    "KafkaUnreachableError",
    "TopicNotFoundError",
]

_LEADING_NAME: Final = re.compile(r"([a-z][a-z_-]*): ")


class IotmonError(Exception):
    """Something iotmon cannot do, for a reason a person can fix; the message says how.

    ``setting`` names the setting(s) involved (option names with underscores, such as
    ``"state_dir"`` or ``"no_changelog"``), for front ends that want to point at their own
    spelling of them."""

    settings: tuple[str, ...]

    def __init__(self, message: str, *, setting: str | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.settings = (setting,) if isinstance(setting, str) else tuple(setting)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(IotmonError, ValueError):
    """A setting's value is invalid, worded as one line that starts with the setting
    (``"max-future: must be ..."``); without ``setting``, that leading name is the setting."""

    def __init__(self, message: str, *, setting: str | tuple[str, ...] = ()) -> None:
        if not setting:
            leading = _LEADING_NAME.match(message)
            setting = leading[1].replace("-", "_") if leading else ()
        super().__init__(message, setting=setting)


class KafkaUnavailableError(IotmonError, RuntimeError):
    """Kafka could not be reached or refused the request; the message says what to do."""


class KafkaUnreachableError(KafkaUnavailableError, ConnectionError):
    """No broker answered at ``bootstrap_servers``."""

    def __init__(self, bootstrap_servers: str, detail: str = "") -> None:
        super().__init__(
            f"cannot reach Kafka at {bootstrap_servers}{f' ({detail})' if detail else ''} — "
            "start a broker there or point `bootstrap_servers` at one (HOST:PORT)",
            setting="bootstrap_servers",
        )
        self.bootstrap_servers = bootstrap_servers


class TopicNotFoundError(IotmonError, LookupError):
    """A topic iotmon needs to read does not exist."""


class InputNotFoundError(IotmonError, FileNotFoundError):
    """The input file does not exist."""
