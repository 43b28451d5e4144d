"""Property tests: DeviceStats agrees with a brute-force model of the documented rules."""

from __future__ import annotations

import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from iotmon.stats import DeviceStats, StatsTable, WindowSpec

values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def specs(draw: st.DrawFn) -> WindowSpec:
    pane_us = draw(st.integers(1, 7))
    return WindowSpec(
        window_us=pane_us * draw(st.integers(1, 6)),
        pane_us=pane_us,
        lateness_us=draw(st.integers(0, 40)),
    )


@st.composite
def event_times(draw: st.DrawFn, spec: WindowSpec, size: int) -> list[int]:
    """A clock that mostly creeps forward, sometimes jumps past the window, and readings
    that lag it by anything from nothing to well past the lateness and window bounds."""
    p, w = spec.pane_us, spec.window_us
    clock = draw(st.integers(-50, 50))  # negative times exercise floor division
    times = []
    for _ in range(size):
        clock += draw(st.one_of(st.integers(0, 2 * p), st.integers(0, 3 * w)))
        lag = draw(st.one_of(st.just(0), st.integers(0, spec.lateness_us + w + 2 * p)))
        times.append(clock - lag)
    return times


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[WindowSpec, list[tuple[int, float]]]:
    spec = draw(specs())
    vals = draw(st.lists(values, min_size=1, max_size=100))
    return spec, list(zip(draw(event_times(spec, len(vals))), vals, strict=True))


class Model:
    """The rules of iotmon.stats, implemented in the most obvious way."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.all: list[float] = []
        self.kept: list[tuple[int, float]] = []  # non-late readings
        self.head_us: int | None = None

    def add(self, value: float, event_us: int) -> bool:
        p, n = self.spec.pane_us, self.spec.panes
        head = self.head_us
        late = head is not None and (
            event_us < head - self.spec.lateness_us or event_us // p <= head // p - n
        )
        self.all.append(value)
        if not late:
            self.kept.append((event_us, value))
        self.head_us = event_us if head is None else max(head, event_us)
        return not late

    def window(self) -> list[float]:
        assert self.head_us is not None
        p, n = self.spec.pane_us, self.spec.panes
        h = self.head_us // p
        lo, hi = (h - n + 1) * p, (h + 1) * p
        return [v for t, v in self.kept if lo <= t < hi]


def close(a: float, b: float) -> bool:
    # Absolute slack for means near zero, where relative error is meaningless.
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(scenarios())
def test_matches_brute_force(scenario: tuple[WindowSpec, list[tuple[int, float]]]) -> None:
    spec, readings = scenario
    dev = DeviceStats(spec)
    model = Model(spec)
    for event_us, value in readings:
        assert dev.add(value, event_us) == model.add(value, event_us)
        window = model.window()
        assert dev.window_count == len(window)
        if window:
            assert dev.window_mean is not None
            assert close(dev.window_mean, math.fsum(window) / len(window))
        else:
            assert dev.window_mean is None
        assert dev.count == len(model.all)
        assert close(dev.mean, math.fsum(model.all) / len(model.all))
        assert (dev.min, dev.max, dev.last) == (min(model.all), max(model.all), value)
        assert dev.head_us == model.head_us
        assert dev.last_event_us == event_us


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    scenario=scenarios(),
    keys=st.lists(st.sampled_from("abc"), min_size=100, max_size=100),
    cut=st.integers(0, 100),
)
def test_snapshot_resume_is_exact(
    scenario: tuple[WindowSpec, list[tuple[int, float]]], keys: list[str], cut: int
) -> None:
    spec, readings = scenario
    table = StatsTable(spec)
    for key, (event_us, value) in zip(keys, readings[:cut], strict=False):
        table.add(key, value, event_us)
    resumed = StatsTable.from_state(spec, orjson.loads(orjson.dumps(table.to_state())))
    for key, (event_us, value) in zip(keys[cut:], readings[cut:], strict=False):
        a = table.add(key, value, event_us)
        b = resumed.add(key, value, event_us)
        assert (a.window_mean, a.window_count, a.mean) == (b.window_mean, b.window_count, b.mean)
    assert resumed.to_state() == table.to_state()
    assert resumed.late == table.late


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), min_size=1))
def test_running_mean_is_compensated(xs: list[float]) -> None:
    dev = DeviceStats(WindowSpec())
    for x in xs:
        dev.add(x, 0)
    exact = math.fsum(xs) / len(xs)
    # Neumaier is accurate to ~eps * |sum| plus a second-order term in sum(|x|).
    assert abs(dev.mean - exact) <= 1e-15 * abs(exact) + 1e-24 * math.fsum(map(abs, xs))
