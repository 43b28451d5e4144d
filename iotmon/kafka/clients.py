"""Stopping aiokafka clients when the broker may be gone."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

__all__ = ["stop_client"]

log = logging.getLogger(__name__)


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer, *, what: str) -> None:
    """Stop ``client`` (``what`` names it in the log), even with its broker unreachable.

    With the broker gone, aiokafka's ``stop()`` can end in ``CancelledError``: its fetcher
    and group coordinator give up their pending requests that way. That is the client not
    closing cleanly, not a cancel of this task, and it must not cut a shutdown short (a
    SIGTERM during a broker outage ended in a traceback and exit code 1). A cancel of this
    task still goes on up."""
    try:
        await asyncio.shield(client.stop())
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning(
            "%s stopped without finishing its last requests to Kafka (is the broker down?)",
            what,
        )
