"""Where readings come from: files, stdin or any async iterable of lines (Kafka: iotmon.kafka)."""

from iotmon.sources.base import Batch, Position, Source
from iotmon.sources.files import FileSource, LineIterableSource

__all__ = ["Batch", "FileSource", "LineIterableSource", "Position", "Source"]
