"""The demo through a real Kafka broker: its topics, a paced producer, and a consumer
pipeline that is stopped once it has read everything produced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from iotmon.engine.pipeline import Pipeline
from iotmon.tools.demo_console import status_printer
from iotmon.tools.timelapse import paced_chunks

if TYPE_CHECKING:
    from iotmon.notify import Notifier
    from iotmon.report import Report
    from iotmon.settings import Settings
    from iotmon.tools.demo import DemoOptions
    from iotmon.tools.readings import Readings

__all__ = ["create_topics", "delete_topics", "run_through_kafka"]

log = logging.getLogger(__name__)

_CATCH_UP_TIMEOUT_S: Final = 30.0


async def run_through_kafka(
    options: DemoOptions,
    settings: Settings,
    readings: Readings,
    stop: asyncio.Event,
    notifier: Notifier | None,
    topic: str,
    *,
    on_pipeline: Callable[[Pipeline], None] | None = None,
) -> Report:
    from iotmon.tools.produce import KafkaLoader, ProducerSettings

    producer = ProducerSettings(
        bootstrap_servers=options.bootstrap_servers,
        topic=topic,
        partitions=options.partitions,
        create_topic=False,
        linger_ms=20,
        client_id="iotmon-demo",
    )
    pipeline = Pipeline(settings, notifier=notifier)
    if on_pipeline is not None:
        on_pipeline(pipeline)
    caught_up = asyncio.Event()
    sent = -1

    def check(p: Pipeline) -> None:
        if sent >= 0 and p.counters()[0] >= sent:
            caught_up.set()

    pipeline.on_progress(check)

    async def produce() -> None:
        nonlocal sent
        async with KafkaLoader(producer) as loader:
            async for chunk in paced_chunks(readings, speed=options.speed, stop=stop):
                await loader.send(chunk)
        sent = loader.stats.sent
        check(pipeline)

    async with pipeline, status_printer(options, pipeline) as printer:
        run = asyncio.create_task(pipeline.run(), name="iotmon-demo-pipeline")
        feed = asyncio.create_task(produce(), name="iotmon-demo-producer")
        try:
            await asyncio.wait({run, feed}, return_when=asyncio.FIRST_COMPLETED)
            if feed.done():
                feed.result()  # a producer error ends the demo with that error
                # A consumer never sees the end of a topic: wait until it has read what was
                # produced, so the summary covers the whole stream.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(caught_up.wait(), _CATCH_UP_TIMEOUT_S)
            pipeline.stop()
            report = await run
        finally:
            for task in (run, feed):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        # stop() does not drain (a stopped consumer may be resumed); the demo is over, so
        # send what is still waiting for its group slot, and record that in the checkpoint.
        await pipeline.flush(timeout=settings.flush_timeout, drain=True)
        await pipeline.checkpoint()
        report = pipeline.snapshot()
    printer.final(report)
    return report


async def create_topics(options: DemoOptions, topics: list[str]) -> None:
    from iotmon.kafka.admin import ensure_topic

    for topic in topics:
        await ensure_topic(
            options.bootstrap_servers, topic, partitions=options.partitions, timeout_s=15.0
        )


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    # Best effort: a topic left behind is harmless, an error here would hide the summary.
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    except Exception as exc:
        log.warning("could not delete the demo topic(s) %s: %s", ", ".join(topics), exc)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
