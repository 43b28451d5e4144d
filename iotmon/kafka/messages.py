"""Fetched messages as ``(offset, key, value)`` tuples, for the Kafka source's consumer.

aiokafka turns every fetched message into a ``ConsumerRecord``: a dataclass of eleven
fields, with a tuple of the message's headers. iotmon reads three of them. Building those
objects is ~0.9 µs of the ~2.3 µs a message costs a bare ``getmany`` loop on a backlog
(1,000,000 readings: 2.2–2.5 s with them, 1.25–1.4 s with tuples). So the consumer
:class:`~iotmon.kafka.source.KafkaSource` makes gets tuples instead.

How, with aiokafka's public API offering no such option: ``PartitionRecords._consumer_record``
(which builds one message) is wrapped once, and the wrapper returns a tuple only for a
consumer created with :data:`LEAN_OPTIONS` — its key deserializer is a marker. Every other
consumer (changelog, silences, tools, a user's own in the same process) gets its
``ConsumerRecord`` as before, from aiokafka's own code.

Whatever happens to aiokafka's internals, nothing is lost: if the wrapper cannot be
installed, or a batch still comes back as ``ConsumerRecord``, :func:`as_messages` turns it
into tuples (a speed loss, never a wrong reading). ``tests/test_kafka_messages.py`` fails
when the installed aiokafka no longer takes the wrapper, so an upgrade that loses it is seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

__all__ = ["LEAN_OPTIONS", "Message", "as_messages", "lean_installed"]

log = logging.getLogger(__name__)

Message: TypeAlias = tuple[int, bytes | None, bytes | None]
"""A fetched message: its offset, key and value (None for a tombstone)."""

OFFSET: Final = 0
KEY: Final = 1


def _lean_keys(key: bytes | None) -> bytes | None:
    """The marker: keys as they are (what aiokafka gives without a deserializer)."""
    return key


LEAN_OPTIONS: Final[dict[str, Any]] = {"key_deserializer": _lean_keys}
"""Consumer options asking for messages as tuples (merged into ``AIOKafkaConsumer(...)``)."""


def _install() -> bool:
    from aiokafka.consumer import fetcher

    records = getattr(fetcher, "PartitionRecords", None)
    build: Callable[..., Any] | None = getattr(records, "_consumer_record", None)
    init = getattr(records, "__init__", None)
    names = getattr(getattr(init, "__code__", None), "co_names", ())
    if records is None or build is None or "_key_deserializer" not in names:
        log.debug("aiokafka's PartitionRecords changed: Kafka messages are read as records")
        return False
    if getattr(build, "__module__", None) == __name__:
        # This module imported again (a reload): wrap aiokafka's own method anew, for the
        # new marker.
        build = build.__wrapped__  # type: ignore[attr-defined]

    def _consumer_record(self: Any, tp: Any, record: Any) -> Any:
        if self._key_deserializer is _lean_keys:
            return (record.offset, record.key, record.value)
        return build(self, tp, record)

    _consumer_record.__wrapped__ = build  # type: ignore[attr-defined]
    records._consumer_record = _consumer_record
    return True


lean_installed: Final = _install()
"""Whether the Kafka source's consumer gets tuples straight from aiokafka."""


def as_messages(fetched: Sequence[Any]) -> Sequence[Message]:
    """``fetched`` as tuples: as it is when aiokafka built tuples, else converted."""
    if not fetched or type(fetched[0]) is tuple:
        return fetched
    return [(m.offset, m.key, m.value) for m in fetched]
