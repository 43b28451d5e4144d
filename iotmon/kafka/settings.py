"""How to reach Kafka and what to read there (no aiokafka import: file-only runs skip it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, get_args

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_BOOTSTRAP_SERVERS",
    "DEFAULT_TOPIC",
    "START_FROM",
    "KafkaSettings",
    "StartFrom",
]

DEFAULT_BOOTSTRAP_SERVERS: Final = "127.0.0.1:9092"
DEFAULT_TOPIC: Final = "sensoresInfos"
StartFrom: TypeAlias = Literal["earliest", "latest"]
START_FROM: Final[tuple[StartFrom, ...]] = get_args(StartFrom)
# Record-batch compressions a producer can ask for (lz4, zstd and snappy need cramjam).
COMPRESSIONS: Final = ("none", "gzip", "lz4", "zstd", "snappy")


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaSettings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    topics: tuple[str, ...] = (DEFAULT_TOPIC,)
    group: str = "iotmon"
    start_from: StartFrom = "earliest"
    max_records: int = 20_000
    fetch_max_bytes: int = 64 * 1024 * 1024
    client_options: dict[str, Any] = field(default_factory=dict)
    changelog: bool = True
    """Keep each partition's state in a compacted changelog topic too, so any instance of
    the group can take a partition over (off: the local state dir is the only copy)."""
    changelog_topic: str | None = None
    """Default ``iotmon-<group>-changelog``."""
    instance_id: str | None = None
    """Names this instance in the group (transactional id); default: a random id kept in the
    state dir, so a restarted instance fences its own earlier incarnation."""

    @property
    def changelog_topic_name(self) -> str:
        return self.changelog_topic or f"iotmon-{self.group}-changelog"
