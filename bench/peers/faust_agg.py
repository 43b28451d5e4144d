"""faust-streaming doing iotmon's aggregation: per-device running mean in a Table plus a
300-second mean from a hopping window (300 s long, every 10 s) Table, both keyed by device
(id_equipamento, the Kafka message key as `iotmon produce`/`simulate` write it, so the tables
are co-partitioned with the topic and no repartition is needed).

Runs in the peers' own virtualenv (`.cache/bench-peers/venv`), never the project's.

Durable like iotmon with its changelog: both tables keep faust's default changelog topics
(``<group>-<table>-changelog``), the in-memory store (``memory://``; on restart faust
rebuilds a table from its changelog) and at-least-once processing with offsets committed
every 2.8 s (faust's default). The web server is off (``web_enabled=False``): nothing
listens. The topic is read from the earliest offset.

Event time comes from ``data_evento``: the readings are a ``faust.Record`` with
``isodates=True`` and the window table is ``relative_to_field(Reading.data_evento)``. The
mean of "the last 300 s" is the hopping window that ends within 10 s after the reading
(``window.earliest(ts)``: faust's ``.current()`` is the window that *starts* at the reading
and uses the Kafka record's timestamp whatever the relativity).

Two things faust cannot do the way iotmon does, and what this does instead:

- faust expires windows by the wall clock (``time.time()`` against the window's end), not by
  event time: with replayed readings of last January every window would be stale at once and
  dropped by the next cleanup. ``expires`` is set to what covers the data's age
  (``--data-start``) plus two windows, so the expiry bookkeeping is paid and nothing is lost.
- a hopping window keeps one value per (device, window): a reading updates 30 windows, and
  every update is one changelog record (iotmon keeps 30 ring panes per device and writes
  checkpoints, not one record per update).

Modes: ``hopping`` = running mean + hopping window mean (the same work as iotmon);
``running`` = running mean only (faust's per-message cost without windows). The window
Table is declared in both modes (an unused changelog topic in ``running``).

A faust Worker does not stop at the end of a topic, so the agent stops it once ``--count``
readings are processed; that reading ends the measurement (the worker still commits and
closes after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime
from typing import Any


def main() -> None:
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--count", type=int, required=True, help="stop after this many")
    parser.add_argument("--partitions", type=int, required=True, help="of --topic")
    parser.add_argument("--mode", choices=("hopping", "running"), default="hopping")
    parser.add_argument("--window", type=float, default=300.0, help="seconds")
    parser.add_argument("--step", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--data-start",
        default="2026-01-01T00:00:00+00:00",
        help="event time of the oldest reading (sets the wall-clock expiry, see above)",
    )
    parser.add_argument("--result", required=True)
    args = parser.parse_args()

    import faust

    marks: dict[str, Any] = {"started": started, "first": None, "first_count": 1, "last": None}
    processed = [0]
    stopping: list[asyncio.Future[None]] = []
    age = time.time() - datetime.fromisoformat(args.data_start).timestamp()

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap_servers}",
        store="memory://",
        datadir=args.state_dir,
        topic_partitions=args.partitions,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
    )

    class Reading(faust.Record, isodates=True, serializer="json"):
        id_sensor: str
        id_equipamento: str
        sensor: str
        data_evento: datetime
        padrao: dict[str, Any]

    def zero() -> list[float]:
        return [0.0, 0.0]

    def add(current: list[float], temperature: float) -> list[float]:
        return [current[0] + temperature, current[1] + 1]

    topic = app.topic(args.topic, value_type=Reading)
    running = app.Table("running", default=zero)
    windows = (
        app.Table("window", default=zero)
        .hopping(args.window, args.step, expires=age + 2 * args.window)
        .relative_to_field(Reading.data_evento)
    )
    hopping = windows.table.window
    with_window = args.mode == "hopping"
    assert hopping is not None
    worker = faust.Worker(app, loglevel=logging.WARNING, quiet=True)

    @app.agent(topic)
    async def aggregate(readings: Any) -> None:
        async for reading in readings:
            temperature: float = reading.padrao["leitura"]["temperatura"]
            device = reading.id_equipamento
            total, count = running[device]
            running[device] = [total + temperature, count + 1]
            marks["mean"] = (total + temperature) / (count + 1)
            if with_window:
                in_window = windows[device]
                in_window.apply(add, temperature)
                # The window ending within one step after the reading: its last 300 s.
                total, count = in_window[hopping.earliest(reading.data_evento.timestamp())]
                marks["window_mean"] = total / count
            processed[0] += 1
            now = time.monotonic()
            if marks["first"] is None:
                marks["first"] = now
            if processed[0] == args.count:
                marks["last"] = now
                # Not awaited here: stopping the worker cancels this agent.
                stopping.append(asyncio.ensure_future(worker.stop()))

    # The worker ends with SystemExit(0) once stopped; the result file is still to write.
    with contextlib.suppress(SystemExit):
        worker.execute_from_commandline()
    marks["count"] = processed[0]
    marks["exiting"] = time.monotonic()
    with open(args.result, "w", encoding="utf-8") as out:
        json.dump(marks, out)


if __name__ == "__main__":
    main()
