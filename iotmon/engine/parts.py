"""Building the parts a :class:`~iotmon.engine.pipeline.Pipeline` runs on, as its settings
say: a file or stdin here, Kafka through :func:`iotmon.kafka.wiring.open_kafka_parts`
(imported only then, so file-only runs never load aiokafka)."""

from __future__ import annotations

from collections.abc import AsyncIterable

from iotmon.alerts.silences import Silences, SilenceWatch
from iotmon.engine.ports import Parts, SourceCommitter
from iotmon.settings import Settings, SourceSettings
from iotmon.sources.base import Source
from iotmon.sources.files import FileSource, LineIterableSource, stdin_lines
from iotmon.state.deadletters import DeadLetters, FileDeadLetters
from iotmon.state.statedir import StateDir

__all__ = ["as_source", "open_parts", "silence_watch"]


async def open_parts(
    settings: Settings,
    state_dir: StateDir,
    *,
    source: Source | None = None,
    dead_letters: DeadLetters | None = None,
) -> Parts:
    """The source (not opened yet: it needs the engine's rebalance hooks), its dead-letter
    sink and its commit side. ``source`` and ``dead_letters`` replace the configured ones."""
    if _reads_kafka(settings, source):
        from iotmon.kafka.wiring import open_kafka_parts

        return await open_kafka_parts(settings, state_dir, dead_letters=dead_letters)
    source = source or _line_source(settings.source)
    sink = dead_letters or FileDeadLetters(settings.state_dir)
    return Parts(source, sink, SourceCommitter(source))


def silence_watch(
    settings: Settings, silences: Silences, *, source: Source | None = None
) -> SilenceWatch:
    """What keeps ``silences`` current: the group's silences topic with Kafka input, the
    state directory's silences file otherwise (``source`` as for :func:`open_parts`)."""
    if _reads_kafka(settings, source):
        from iotmon.kafka.silences import KafkaSilenceWatch, silences_topic

        settings_kafka = settings.source.kafka
        return KafkaSilenceWatch(
            bootstrap_servers=settings_kafka.bootstrap_servers,
            topic=silences_topic(settings_kafka.group),
            silences=silences,
        )
    from iotmon.state.silences import FileSilenceWatch

    return FileSilenceWatch(settings.state_dir, silences=silences)


def as_source(
    candidate: Source | AsyncIterable[bytes | str] | None, max_line_bytes: int
) -> Source | None:
    """Any async iterable of raw lines is a source."""
    if candidate is None or isinstance(candidate, Source):
        return candidate
    return LineIterableSource(candidate, max_line_bytes=max_line_bytes)


def _line_source(settings: SourceSettings) -> Source:
    limit = settings.max_line_bytes
    if settings.input == "-":
        return LineIterableSource(stdin_lines(limit), name="stdin", max_line_bytes=limit)
    return FileSource(settings.input_path, follow=settings.follow, max_line_bytes=limit)


def _reads_kafka(settings: Settings, source: Source | None) -> bool:
    """Kafka is the input unless a source is given from Python or the settings name one."""
    return source is None and settings.source.input is None
