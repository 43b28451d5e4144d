"""The per-device view of reports: read from the statistics tables, merged across
partitions, ranked without summarising every device."""

from __future__ import annotations

import io
import random

import pytest
from rich.console import Console

from iotmon.report import DeviceSummaries, DeviceSummary, Report
from iotmon.stats import StatsTable, WindowSpec
from iotmon.views.console import device_table

S = 1_000_000
T0 = 1_700_000_000 * S


def tables() -> list[StatsTable]:
    rng = random.Random(7)
    spec = WindowSpec.from_seconds()
    parts = [StatsTable(spec) for _ in range(3)]
    for i in range(300):
        part = parts[i % 3]
        for j in range(5):
            part.add(f"dev-{i:03d}", rng.uniform(20, 100), T0 + j * 7 * S)
    # Unkeyed input: one device in two partitions.
    parts[0].add("split", 90.0, T0)
    parts[1].add("split", 70.0, T0 + S)
    return parts


def test_the_view_reads_merges_and_orders_like_a_copy() -> None:
    parts = tables()
    view = DeviceSummaries(p.devices for p in parts)
    assert len(view) == 301
    assert list(view) == sorted(view)
    assert "split" in view and "nope" not in view
    split = view["split"]
    assert split.count == 2 and split.mean == pytest.approx(80.0)
    assert split == DeviceSummary.merged(
        [DeviceSummary.of(parts[0].devices["split"]), DeviceSummary.of(parts[1].devices["split"])]
    )
    assert view.copy() == {k: view[k] for k in sorted(view)}
    with pytest.raises(KeyError):
        view["nope"]


@pytest.mark.parametrize("split", [True, False])
def test_json_written_from_the_view_is_the_json_of_each_summary(split: bool) -> None:
    parts = tables()
    if not split:
        del parts[1].devices["split"]
    view = DeviceSummaries(p.devices for p in parts)
    by_summary = {key: summary.to_json() for key, summary in view.copy().items()}
    written = Report.build(
        counters=[], devices=view, alert_states={}, alerts=[], partitions={}
    ).to_json()["devices"]
    assert list(written) == sorted(by_summary)
    assert written == by_summary
    assert written["split"]["count"] == (2 if split else 1)


def test_top_ranks_like_sorting_every_summary() -> None:
    view = DeviceSummaries(p.devices for p in tables())
    ranked = view.top(10, key=lambda d: d.window_mean or 0.0)
    by_sorting = sorted(view.items(), key=lambda kv: kv[1].window_mean or 0.0, reverse=True)
    assert ranked == by_sorting[:10]


def test_the_live_table_shows_the_same_rows_from_a_view_and_from_a_copy() -> None:
    view = DeviceSummaries(p.devices for p in tables())

    def render(devices: DeviceSummaries | dict[str, DeviceSummary]) -> str:
        report = Report.build(
            counters=[], devices=devices, alert_states={}, alerts=[], partitions={}
        )
        out = io.StringIO()
        Console(file=out, width=200).print(device_table(report, threshold=75.0))
        return out.getvalue()

    assert render(view) == render(view.copy())
