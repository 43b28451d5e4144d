"""Bytewax doing iotmon's aggregation: KafkaSource → parse → key by device → ``stateful_map``
(running sum/count, the running mean) → ``fold_window`` with an ``EventClock`` on
``data_evento`` and a ``SlidingWindower`` of 300 s every 10 s (sum/count → the window mean)
→ a sink that drops what it gets.

Runs in the peers' own virtualenv (`.cache/bench-peers/venv`), never the project's.

Bounded run: ``KafkaSource(tail=False)`` stops each partition at the end offset it finds at
start-up, and the flow ends when all of them have; every window still open is then closed
and emitted. With ``--count N`` each partition stops after its first N / partitions
messages instead (the bench's prefix of the topic). One worker (``-w 1``, Bytewax's
default; the measurement is per process, like iotmon's). The last item that reaches the
sink (or the running mean step) ends the measurement.

Durability: Bytewax's recovery is opt-in; this run turns it on, with one SQLite recovery
partition in ``--state-dir`` (``bytewax.recovery.init_db_dir``) and a snapshot of every
step's state (running means, open windows, clock, Kafka offsets) at the end of each
10-s epoch (the default ``epoch_interval``). The snapshots are local files, not replicated
like a changelog topic; Kafka offsets live only in them (Bytewax does not commit a consumer
group's offsets).

What Bytewax cannot do the way iotmon does:

- the window operators emit a window's value when the window *closes* (the watermark passes
  its end), not a current value per reading: "the mean of the last 300 s" is available every
  10 s per device, each reading lands in 30 overlapping windows (one accumulator each);
- the running mean is one ``stateful_map`` step that must emit one item per reading (here it
  passes the reading on to the window step).

Event time: the watermark of each device (Bytewax's clocks are per key) is its latest
``data_evento`` minus ``--lateness`` (30 s, iotmon's default allowed lateness). An
``EventClock`` also moves the watermark forward with the system time since the device's
latest reading, so on a replay a device whose next reading is processed more than 30 s of
wall time later is late: in a first run of the whole 1,000,000-reading topic nearly half the
readings were dropped as late. The clock's "system time" is therefore pinned
(``now_getter``) and no window close is scheduled on the system clock (``to_system_utc`` →
None): as in iotmon, only readings move the watermark (0 late readings then). Readings
after the watermark go to the window operator's ``late`` stream, which is counted (``late``
in the result file, once per window the reading missed).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPLAY_NOW = datetime(2020, 1, 1, tzinfo=UTC)
"""The "system time" of the event clock: fixed, so only readings move the watermark."""


def main() -> None:
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True, help="the flow's name (no group commits)")
    parser.add_argument("--state-dir", required=True, help="recovery partitions go here")
    parser.add_argument(
        "--count",
        type=int,
        help="read only the first count / partitions readings of each partition",
    )
    parser.add_argument("--window", type=float, default=300.0, help="seconds")
    parser.add_argument("--step", type=float, default=10.0, help="seconds")
    parser.add_argument("--lateness", type=float, default=30.0, help="seconds")
    parser.add_argument("--result", required=True)
    args = parser.parse_args()

    import bytewax.operators as op
    from bytewax._bytewax import cli_main
    from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import StatefulSourcePartition
    from bytewax.operators.windowing import EventClock, SlidingWindower, fold_window
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.recovery import RecoveryConfig, init_db_dir

    marks: dict[str, Any] = {"started": started, "first": None, "first_count": 1, "last": None}
    counters = {"count": 0, "windows": 0, "late": 0}

    class Drop(StatelessSinkPartition[Any]):
        def __init__(self, counter: str) -> None:
            self.counter = counter

        def write_batch(self, items: list[Any]) -> None:
            counters[self.counter] += len(items)
            marks["last"] = time.monotonic()

    class DropSink(DynamicSink[Any]):
        def __init__(self, counter: str) -> None:
            self.counter = counter

        def build(self, step_id: str, worker_index: int, worker_count: int) -> Drop:
            return Drop(self.counter)

    def parse(message: KafkaSourceMessage[bytes, bytes]) -> tuple[float, datetime]:
        reading = json.loads(message.value)
        return (
            reading["padrao"]["leitura"]["temperatura"],
            datetime.fromisoformat(reading["data_evento"]),
        )

    def device(message: KafkaSourceMessage[bytes, bytes]) -> str:
        return message.key.decode()

    def running_mean(
        state: tuple[float, int] | None, reading: tuple[float, datetime]
    ) -> tuple[tuple[float, int], tuple[float, datetime]]:
        total, count = state if state is not None else (0.0, 0)
        total += reading[0]
        count += 1
        counters["count"] += 1
        now = time.monotonic()
        if marks["first"] is None:
            marks["first"] = now
        marks["last"] = now
        marks["mean"] = total / count
        return (total, count), reading

    def add(acc: list[float], reading: tuple[float, datetime]) -> list[float]:
        acc[0] += reading[0]
        acc[1] += 1
        return acc

    def merge(a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1]]

    class PrefixPartition(StatefulSourcePartition[Any, Any]):
        """A Kafka partition that ends after ``limit`` messages (a prefix of the topic:
        Bytewax has no stop-at-offset of its own)."""

        def __init__(self, inner: StatefulSourcePartition[Any, Any], limit: int) -> None:
            self.inner = inner
            self.left = limit

        def next_batch(self) -> list[Any]:
            if self.left <= 0:
                raise StopIteration
            batch = self.inner.next_batch()[: self.left]
            self.left -= len(batch)
            return batch

        def next_awake(self) -> datetime | None:
            return self.inner.next_awake()

        def snapshot(self) -> Any:
            return self.inner.snapshot()

        def close(self) -> None:
            self.inner.close()

    class PrefixSource(KafkaSource):
        def __init__(self, per_partition: int, **options: Any) -> None:
            super().__init__(**options)
            self.per_partition = per_partition

        def build_part(self, step_id: str, for_part: str, resume_state: Any) -> Any:
            inner = super().build_part(step_id, for_part, resume_state)
            return PrefixPartition(inner, self.per_partition)

    flow = Dataflow(args.group)
    options: dict[str, Any] = {
        "brokers": [args.bootstrap_servers],
        "topics": [args.topic],
        "tail": False,
        "batch_size": 1000,
    }
    source = KafkaSource(**options)
    if args.count is not None:
        partitions = len(source.list_parts())
        source = PrefixSource(-(-args.count // partitions), **options)
    messages = op.input("kafka", flow, source)
    keyed = op.key_on("device", messages, device)
    readings = op.map_value("parse", keyed, parse)
    passed = op.stateful_map("running_mean", readings, running_mean)
    windows = fold_window(
        "window_mean",
        passed,
        EventClock(
            lambda reading: reading[1],
            wait_for_system_duration=timedelta(seconds=args.lateness),
            # Event time only, like iotmon: the watermark does not creep forward with the
            # system clock (on a replay that makes a device whose partition waits its turn
            # late), and no window close is scheduled on the system clock.
            now_getter=lambda: REPLAY_NOW,
            to_system_utc=lambda _close: None,
        ),
        SlidingWindower(
            length=timedelta(seconds=args.window),
            offset=timedelta(seconds=args.step),
            align_to=datetime(2020, 1, 1, tzinfo=UTC),
        ),
        lambda: [0.0, 0.0],
        add,
        merge,
    )
    means = op.map_value("mean", windows.down, lambda id_acc: id_acc[1][0] / id_acc[1][1])
    op.output("windows_out", means, DropSink("windows"))
    op.output("late_out", windows.late, DropSink("late"))

    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    init_db_dir(state, 1)
    cli_main(flow, workers_per_process=1, recovery_config=RecoveryConfig(state))
    marks.update(counters)
    marks["exiting"] = time.monotonic()
    with open(args.result, "w", encoding="utf-8") as out:
        json.dump(marks, out)


if __name__ == "__main__":
    main()
