"""Kafka's parts for the engine, in one place: the source, its dead-letter sink and its
commit side (offsets alone, or the changelog), built as the settings say.

The engine imports this module only for Kafka input, so a file-only run never loads
aiokafka.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from iotmon.engine.ports import Parts
from iotmon.kafka.admin import MAX_REQUEST_BYTES, KafkaUnavailableError, KafkaUnreachableError
from iotmon.kafka.changelog import ChangelogError, KafkaChangelog
from iotmon.kafka.committer import ChangelogCommitter, OffsetCommitter
from iotmon.kafka.deadletters import KafkaDeadLetters
from iotmon.kafka.source import KafkaSource
from iotmon.settings import Settings
from iotmon.state.deadletters import DeadLetters
from iotmon.state.statedir import StateDir

__all__ = ["open_kafka_parts"]


async def open_kafka_parts(
    settings: Settings, state_dir: StateDir, *, dead_letters: DeadLetters | None = None
) -> Parts:
    """The parts, with the changelog and the dead-letter producer started; the source is
    opened by the engine (it needs the engine's rebalance hooks)."""
    kafka = settings.source.kafka
    source = KafkaSource(
        kafka, once=settings.source.once, max_line_bytes=settings.source.max_line_bytes
    )
    if not kafka.changelog:
        sink = dead_letters or await _own_dead_letters(kafka.bootstrap_servers)
        return Parts(source, sink, OffsetCommitter(source))
    changelog = await _open_changelog(settings, state_dir)
    try:
        # One producer for both: under exactly-once the dead letters must be part of the
        # checkpoint's transaction.
        sink = dead_letters or KafkaDeadLetters(
            changelog.producer,
            bootstrap_servers=kafka.bootstrap_servers,
            transactional=changelog.exactly_once,
        )
    except BaseException:
        await changelog.close()
        raise
    return Parts(source, sink, ChangelogCommitter(source, changelog))


async def _open_changelog(settings: Settings, state_dir: StateDir) -> KafkaChangelog:
    kafka = settings.source.kafka
    instance = kafka.instance_id or state_dir.instance_id()
    exactly_once = settings.guarantee == "exactly-once"
    changelog = KafkaChangelog(
        bootstrap_servers=kafka.bootstrap_servers,
        topic=kafka.changelog_topic_name,
        group=kafka.group,
        transactional_id=f"iotmon-{kafka.group}-{instance}" if exactly_once else None,
        client_id=f"iotmon-{instance}",
    )
    try:
        await changelog.open(input_topics=kafka.topics)
    except KafkaUnavailableError:
        raise
    except (KafkaError, ChangelogError) as exc:
        raise ChangelogError(
            f"cannot use the changelog topic {changelog.topic} on {kafka.bootstrap_servers} "
            f"({exc!r}) — check the broker, or turn `changelog` off to keep state only in "
            "the state directory (one instance per group then)",
            setting="changelog",
        ) from exc
    return changelog


async def _own_dead_letters(bootstrap: str) -> KafkaDeadLetters:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_request_size=MAX_REQUEST_BYTES
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise KafkaUnreachableError(bootstrap, f"for the dead-letter topic: {exc}") from exc
    return KafkaDeadLetters(producer, bootstrap_servers=bootstrap, owns_producer=True)
