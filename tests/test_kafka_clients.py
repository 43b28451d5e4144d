"""Stopping aiokafka clients when the broker is gone (iotmon.kafka.clients).

A SIGTERM during a broker outage was checked by hand against a real broker, stopped under a
running ``iotmon consume`` (the suite's shared broker cannot be stopped under other tests):
exit code 0 within 2 s, and these warnings. Here, the logic: a client whose ``stop()`` ends
in CancelledError, as aiokafka's does then, and a cancel of the caller itself."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from iotmon.kafka.clients import stop_client


class _Client:
    def __init__(self, *, gone: bool, takes: float = 0.0) -> None:
        self.gone = gone
        self.takes = takes
        self.stopped = asyncio.Event()

    async def stop(self) -> None:
        await asyncio.sleep(self.takes)
        self.stopped.set()
        if self.gone:
            raise asyncio.CancelledError


async def test_a_client_that_gives_up_its_requests_is_stopped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _Client(gone=True)
    with caplog.at_level(logging.WARNING, logger="iotmon.kafka.clients"):
        await stop_client(cast(Any, client), what="the Kafka consumer")
    assert client.stopped.is_set()
    assert "the Kafka consumer stopped without finishing" in caplog.text


async def test_a_client_that_stops_cleanly_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    client = _Client(gone=False)
    with caplog.at_level(logging.WARNING, logger="iotmon.kafka.clients"):
        await stop_client(cast(Any, client), what="the Kafka consumer")
    assert client.stopped.is_set() and not caplog.text


async def test_a_cancel_of_the_caller_still_cancels_it_and_the_stop_goes_on() -> None:
    client = _Client(gone=False, takes=0.05)
    task = asyncio.create_task(stop_client(cast(Any, client), what="the Kafka consumer"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(client.stopped.wait(), timeout=5)
