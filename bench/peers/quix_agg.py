"""Quix Streams doing iotmon's aggregation: per-device running mean in state plus a
300-second sliding-window mean, keyed by the Kafka message key (id_equipamento, as
`iotmon produce`/`simulate` write it, so no group_by is needed).

Runs in the peers' own virtualenv (`.cache/bench-peers/venv`), never the project's.

Quix Streams' Application.run() does not stop at the end of a topic, so this stops it from
the per-message callback once ``--count`` messages have been processed; the time of that
message is the end of the measurement (the Application still commits and closes after).

Event time comes from ``data_evento`` (a timestamp extractor), like iotmon's window; the
defaults of a fresh Application are kept otherwise (changelog topics on, commit every 5 s).

Modes: ``sliding`` = running mean + sliding window mean (the same work as iotmon);
``running`` = running mean only (Quix's per-message cost without windows).
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--mode", choices=("sliding", "running"), default="sliding")
    parser.add_argument("--window-ms", type=int, default=300_000)
    parser.add_argument("--idle-timeout", type=float, default=30.0)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()

    from quixstreams import Application, State

    marks: dict[str, Any] = {"started": started, "first": None, "first_count": 1, "last": None}
    processed = [0]
    app: Application

    def on_processed(topic: str, partition: int, offset: int) -> None:
        processed[0] += 1
        now = time.monotonic()
        if marks["first"] is None:
            marks["first"] = now
        if processed[0] >= args.count and marks["last"] is None:
            marks["last"] = now
            app.stop()

    app = Application(
        broker_address=args.bootstrap_servers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel=logging.WARNING,
        on_message_processed=on_processed,
    )

    def event_time_ms(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        return int(datetime.fromisoformat(value["data_evento"]).timestamp() * 1000)

    topic = app.topic(args.topic, value_deserializer="json", timestamp_extractor=event_time_ms)
    sdf = app.dataframe(topic)

    def running_mean(value: dict[str, Any], state: State) -> float:
        temperature: float = value["padrao"]["leitura"]["temperatura"]
        total = state.get("sum", 0.0) + temperature
        count = state.get("count", 0) + 1
        state.set("sum", total)
        state.set("count", count)
        state.set("mean", total / count)
        return temperature

    sdf = sdf.apply(running_mean, stateful=True)
    if args.mode == "sliding":
        sdf = sdf.sliding_window(duration_ms=args.window_ms).mean().current()

    app.run(timeout=args.idle_timeout)
    marks["count"] = processed[0]
    marks["exiting"] = time.monotonic()
    with open(args.result, "w", encoding="utf-8") as out:
        json.dump(marks, out)


if __name__ == "__main__":
    main()
