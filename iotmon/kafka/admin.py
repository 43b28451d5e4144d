"""Small Kafka administration helpers shared by the producer and consumer commands.

aiokafka is imported where it is used: the commands import this module for its error and
``quiet_aiokafka``, and must not load Kafka's client for a file-only run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from aiokafka.admin import AIOKafkaAdminClient

from iotmon.errors import ConfigError, KafkaUnavailableError, KafkaUnreachableError

__all__ = [
    "MAX_REQUEST_BYTES",
    "KafkaUnavailableError",
    "KafkaUnreachableError",
    "ensure_topic",
    "quiet_aiokafka",
    "topic_config",
]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 1 << 20
"""``max_request_size`` of iotmon's producers (aiokafka's default, written out): the bound a
dead letter is cut to fit, so producer and bound never disagree."""


@contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """Silence aiokafka's own logging for a command that reports errors itself.

    aiokafka logs e.g. "Unable connect to ..." at ERROR before raising; the command's error
    says what to do instead. Left alone if the application gave the logger a level.
    """
    logger = logging.getLogger("aiokafka")
    if logger.level != logging.NOTSET:
        yield
        return
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)


async def ensure_topic(
    bootstrap: str,
    topic: str,
    *,
    partitions: int,
    config: dict[str, str] | None = None,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists, then wait until every
    partition has a leader (a fresh topic briefly has none, which makes first sends and
    consumer assignment flaky).

    An existing topic is left as it is, even with a different partition count (a warning is
    logged): repartitioning would move keys between partitions under running consumers.

    Raises :class:`KafkaUnavailableError` if the broker cannot be reached or refuses to
    create the topic.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaConnectionError, KafkaError

    if partitions < 1:
        raise ConfigError(f"partitions: must be >= 1, got {partitions}", setting="partitions")
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(1000, int(timeout_s * 1000)),
        client_id="iotmon-admin",
    )
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        await _close_quietly(admin)
        raise KafkaUnreachableError(bootstrap) from exc
    try:
        await _create_if_missing(admin, topic, partitions, config or {}, replication_factor)
        await _wait_for_leaders(admin, topic, timeout_s)
    except KafkaConnectionError as exc:
        raise KafkaUnreachableError(bootstrap) from exc
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"Kafka at {bootstrap} could not create topic {topic!r}: {exc} — check the broker "
            "log, or create the topic yourself (with kafka-topics.sh)"
        ) from exc
    finally:
        await _close_quietly(admin)


async def _create_if_missing(
    admin: AIOKafkaAdminClient,
    topic: str,
    partitions: int,
    config: dict[str, str],
    replication_factor: int,
) -> None:
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    # Listing all topics, not describing this one: a metadata request naming a missing topic
    # makes a broker with auto.create.topics.enable create it with its default partitions.
    if topic in await admin.list_topics():
        have = len(await partitions_of(admin, topic))
        if have and have != partitions:
            log.warning(
                "topic %s already exists with %d partitions (wanted %d); left unchanged",
                topic,
                have,
                partitions,
            )
        return
    response = await admin.create_topics(
        [NewTopic(topic, partitions, replication_factor, topic_configs=config)]
    )
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if name != topic or code in (0, TopicAlreadyExistsError.errno):
            continue
        message = entry[2] if len(entry) > 2 and entry[2] else ""
        raise for_code(code)(f"create topic {topic}: {message}".rstrip(": "))


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        found = _find(await admin.describe_topics([topic]), topic)
        parts = (found or {}).get("partitions") or []
        ready = all(p.get("leader", -1) >= 0 and not p.get("error_code") for p in parts)
        if found and not found.get("error_code") and parts and ready:
            return
        if time.monotonic() >= deadline:
            raise KafkaUnavailableError(
                f"topic {topic!r} has no leader for all partitions after {timeout_s:.0f} s — "
                "is the broker healthy? (check its log)"
            )
        await asyncio.sleep(0.1)


async def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    """``topic``'s effective configuration (broker defaults included)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="iotmon-admin")
    await admin.start()
    try:
        response = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await _close_quietly(admin)
    config: dict[str, str] = {}
    for resp in response:
        for resource in resp.resources:
            for entry in resource[4]:
                config[entry[0]] = entry[1]
    return config


async def partitions_of(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    """The partition numbers of ``topic``, in order; empty while it has none (or is not
    there: describe a topic only once it is listed, see :func:`_create_if_missing`)."""
    found = _find(await admin.describe_topics([topic]), topic) or {}
    return sorted(int(p["partition"]) for p in found.get("partitions") or [])


def _find(described: list[Any], topic: str) -> dict[str, Any] | None:
    for entry in described:
        if isinstance(entry, dict) and entry.get("topic") == topic:
            return entry
    return None


async def _close_quietly(admin: AIOKafkaAdminClient) -> None:
    try:
        await admin.close()
    except Exception:  # closing must not mask the real error
        log.debug("closing the Kafka admin client failed", exc_info=True)
