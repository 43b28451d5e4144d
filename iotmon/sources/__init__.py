"""Where readings come from: Kafka, files, stdin or any async iterable of lines."""

from iotmon.sources.base import Batch, Position, Source
from iotmon.sources.files import FileSource, LineIterableSource
from iotmon.sources.kafka import KafkaSettings, KafkaSource

__all__ = [
    "Batch",
    "FileSource",
    "KafkaSettings",
    "KafkaSource",
    "LineIterableSource",
    "Position",
    "Source",
]
