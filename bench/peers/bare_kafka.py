"""The Kafka client's ceiling: an aiokafka ``getmany`` loop that only counts messages
(with ``--parse``, it also decodes every value with ``orjson.loads``: the ceiling of any
consumer of JSON readings; with ``--tuples``, it gets the ``(offset, key, value)`` tuples
iotmon's Kafka source gets instead of aiokafka's ``ConsumerRecord``).

It uses the consumer settings iotmon's Kafka source uses (fetch sizes, batch size,
read_committed, manual commits, a fresh consumer group), so the gap between the two is
what iotmon does per reading, not a difference in client tuning.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import orjson
from aiokafka import AIOKafkaConsumer


async def consume(args: argparse.Namespace) -> dict[str, float | int | None]:
    started = time.monotonic()
    options = {}
    if args.tuples:
        from iotmon.kafka.messages import LEAN_OPTIONS

        options = LEAN_OPTIONS
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        isolation_level="read_committed",
        **options,
    )
    await consumer.start()
    count = 0
    first: float | None = None
    first_count = 0
    last: float | None = None
    loads = orjson.loads
    try:
        while count < args.count:
            records = await consumer.getmany(timeout_ms=100, max_records=20_000)
            for messages in records.values():
                count += len(messages)
                if args.parse:
                    for message in messages:
                        loads(message.value)
            if records:
                last = time.monotonic()
                if first is None:
                    first, first_count = last, count
    finally:
        await consumer.stop()
    return {
        "started": started,
        "first": first,
        "first_count": first_count,
        "last": last,
        "count": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, required=True, help="stop after this many")
    parser.add_argument("--result", required=True)
    parser.add_argument("--parse", action="store_true", help="orjson.loads every value")
    parser.add_argument(
        "--tuples", action="store_true", help="messages as iotmon's source gets them"
    )
    args = parser.parse_args()
    result = asyncio.run(consume(args))
    with open(args.result, "w", encoding="utf-8") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
