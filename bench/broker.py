"""The bench's Kafka broker (dev/kafka/kafka.sh on its own port) and topic housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from iotmon.kafka.admin import ensure_topic

__all__ = ["BENCH_KAFKA_PORT", "Broker"]

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "dev" / "kafka" / "kafka.sh"
# Away from a dev broker (9092) and the test suite's (39092).
BENCH_KAFKA_PORT = 39492


class Broker:
    """Either an external broker (``--bootstrap-servers``, left alone apart from deleting the
    bench's topics) or a fresh one the bench starts and stops itself."""

    def __init__(
        self, external: str | None, log: Callable[[str], None], *, port: int = BENCH_KAFKA_PORT
    ) -> None:
        self.external = external
        self.port = port
        self.bootstrap = external or f"127.0.0.1:{port}"
        self._log = log
        self._started = False
        self._topics: list[str] = []

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _kafka_sh(self, command: str, timeout: float) -> None:
        env = {**os.environ, "KAFKA_PORT": str(self.port)}
        subprocess.run(
            [str(KAFKA_SH), command],
            env=env,
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        if self.external:
            return
        # A clean data directory every time: earlier runs' topics (and Quix changelogs) would
        # otherwise pile up on disk and slow the broker's start.
        self._log(f"starting the bench broker on {self.bootstrap} (dev/kafka/kafka.sh)")
        self._kafka_sh("reset", timeout=120)
        self._started = True
        try:
            self._kafka_sh("up", timeout=600)
        except subprocess.CalledProcessError:
            # The bench ports are inside Linux's ephemeral range: a client socket of another
            # program can hold one for a moment ("Address already in use"). One more try.
            self._log("the broker did not start; trying once more in 10 s")
            time.sleep(10)
            self._kafka_sh("reset", timeout=120)
            self._kafka_sh("up", timeout=600)

    def stop(self) -> None:
        if self._started:
            self._log("stopping the bench broker and wiping its data")
            self._kafka_sh("reset", timeout=120)  # `down`, then delete this port's data
            self._started = False
        elif self.external and self._topics:
            with contextlib.suppress(Exception):
                asyncio.run(self._delete(self._topics))

    async def create_topic(self, name: str, partitions: int = 6) -> str:
        await ensure_topic(self.bootstrap, name, partitions=partitions)
        self._topics.append(name)
        return name

    def remember(self, name: str) -> str:
        """A topic created by someone else (iotmon produce) that the bench should clean up."""
        self._topics.append(name)
        return name

    async def _delete(self, names: list[str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(names)
        finally:
            await admin.close()

    async def delete_matching(self, part: str) -> None:
        """Delete every topic whose name contains ``part``: a run's topics including those
        iotmon made for it (dead letters, changelogs)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if part in t]
        finally:
            await admin.close()
        if names:
            await self._delete(names)
