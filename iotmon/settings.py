"""The settings objects the library runs on; the CLI and config files only fill them in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeAlias

from iotmon.alerts import AlertSettings
from iotmon.engine.horizon import DEFAULT_MAX_FUTURE_SECONDS, LONGEST_MAX_FUTURE_SECONDS
from iotmon.errors import ConfigError
from iotmon.kafka.settings import KafkaSettings
from iotmon.notify import EmailSettings, WebhookSettings
from iotmon.parse import ParseSettings
from iotmon.sources.base import DEFAULT_MAX_LINE_BYTES
from iotmon.stats import WindowSpec

__all__ = ["DEFAULT_METRICS_HOST", "GUARANTEES", "Guarantee", "Settings", "SourceSettings"]

DEFAULT_METRICS_HOST: Final = "127.0.0.1"
"""Loopback: metrics reach another machine only when the operator says so."""

Guarantee: TypeAlias = Literal["at-least-once", "exactly-once"]
"""How Kafka input is acknowledged. Both give exact statistics, because every partition's
state carries the position it includes. ``exactly-once`` also makes the changelog records,
the dead letters and the offset commits of a checkpoint one Kafka transaction, so the dead
letter topic and the committed offsets never run ahead of, or behind, the state."""

GUARANTEES: tuple[Guarantee, ...] = ("at-least-once", "exactly-once")


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSettings:
    """Where readings come from: Kafka (``input=None``), a file path, or ``"-"`` for stdin."""

    input: str | None = None
    follow: bool = False
    once: bool = False
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    """Longer lines (Kafka message values) are rejected as ``too_long``, never held whole."""

    def __post_init__(self) -> None:
        if not self.max_line_bytes >= 1:
            raise ConfigError("max-line-bytes: must be a positive number of bytes")
        if self.follow and self.input in (None, "-"):
            raise ConfigError(
                "follow: needs `input` PATH (a file to tail)", setting=("follow", "input")
            )
        if self.follow and self.once:
            raise ConfigError(
                "once: `once` and `follow` contradict each other; pick one",
                setting=("once", "follow"),
            )

    @property
    def input_path(self) -> Path:
        assert self.input is not None and self.input != "-"
        return Path(self.input)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    source: SourceSettings = field(default_factory=SourceSettings)
    parse: ParseSettings = field(default_factory=ParseSettings)
    window: WindowSpec = field(default_factory=WindowSpec.from_seconds)
    state_dir: Path = Path(".iotmon-state")
    checkpoint_interval: float = 5.0
    alerts: AlertSettings = field(default_factory=AlertSettings)
    alerts_log: Path | None = None
    """Transitions as JSON lines; default ``<state_dir>/alerts.jsonl``."""
    email: EmailSettings = field(default_factory=EmailSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    flush_timeout: float = 30.0
    guarantee: Guarantee = "at-least-once"
    max_future: float = DEFAULT_MAX_FUTURE_SECONDS
    """Seconds a reading may be ahead of its partition's stream and of wall time; see
    :mod:`iotmon.engine.horizon`."""
    decode_worker: bool = True
    """Decode large batches in a second process while this one applies them (on machines
    with more than one core); see :mod:`iotmon.engine.decoder`."""

    def __post_init__(self) -> None:
        if not 0 < self.max_future <= LONGEST_MAX_FUTURE_SECONDS:
            raise ConfigError(
                f"max-future: must be more than 0 and at most {LONGEST_MAX_FUTURE_SECONDS:.0f} "
                f"seconds (100 years), got {self.max_future}"
            )
        if not self.checkpoint_interval > 0:
            raise ConfigError("checkpoint-interval: must be a positive number of seconds")
        if self.flush_timeout < 0:
            raise ConfigError("flush-timeout: must be zero or a positive number of seconds")
        if self.guarantee not in GUARANTEES:
            raise ConfigError(
                f"guarantee: must be one of {', '.join(GUARANTEES)}, got {self.guarantee!r}"
            )
        if self.guarantee == "exactly-once":
            if self.source.input is not None:
                raise ConfigError(
                    "guarantee: exactly-once is about Kafka input (transactions); file and "
                    "stdin input are checkpointed exactly already — drop `guarantee`"
                )
            if not self.source.kafka.changelog:
                raise ConfigError(
                    "guarantee: exactly-once commits through the changelog topic's "
                    "transactions, so it needs `changelog`",
                    setting=("guarantee", "changelog"),
                )
