"""Test helpers shared by several modules: running the real CLI and comparing final stats."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from iotmon.alerts import Alerter, AlertSettings
from iotmon.notify import DeviceReport, Digest, EmailSettings, Notifications, Notifier

# How long a test waits for an event (a mail, a record, a file) before calling the run broken.
# Generous on purpose: a loaded machine is slow, and a passing run never waits it out.
PATIENCE_S = 120.0

# The sample readings ship with the repository: a fresh clone needs nothing beside it.
SEED_FILE = Path(__file__).resolve().parents[1] / "examples" / "dados_sensores.txt"
START = "2026-01-01T00:00:00Z"
NOISY_FLEET = (
    *("--devices", "5000", "--seed", "5"),
    *("--bad-rate", "0.001", "--late-rate", "0.01", "--spike-rate", "0.001"),
)
"""`iotmon simulate` options for the big runs: 5,000 devices, some bad, late and spiky lines."""


def sample_digest(n: int) -> Digest:
    """Digest number ``n``: one device firing since 2023-03-15T12:15:37Z, with an id and a
    slot of its own."""
    start_us, second = 1_678_882_537_000_000, 1_000_000
    return Digest(
        digest_id=f"{n:032x}",
        kind="change",
        slot_us=start_us + n * second,
        recipients=(),
        metric="window",
        firing=(
            DeviceReport(
                device=f"sensor{n:02d}",
                value=80.0 + n,
                window_mean=80.0 + n,
                running_mean=79.0,
                max=90.0,
                threshold=75.0,
                clear_below=73.0,
                since_us=start_us,
                last_seen_us=start_us + n * second,
                new=True,
            ),
        ),
    )


def reading_line(device: str, at: datetime, temperature: float) -> bytes:
    """One reading in the seed's layout (no newline), from device ``device`` at ``at``."""
    return orjson.dumps(
        {
            "id_sensor": f"Sensor-{device}",
            "id_equipamento": device,
            "sensor": "sensor1",
            "data_evento": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "padrao": {
                "formato": "iot:leitura:sensor:temp",
                "leitura": {"temperatura": temperature},
            },
        }
    )


def fill_topic(bootstrap: str, topic: str, count: int) -> None:
    """``count`` readings of the :data:`NOISY_FLEET` into ``topic``, keyed by device."""
    iotmon(
        "simulate",
        *("--count", str(count), "--start", START, *NOISY_FLEET),
        *("--bootstrap-servers", bootstrap, "--topic", topic),
    )


def iotmon(
    *args: str,
    check: bool = True,
    timeout: float = 300,
    entry: Sequence[str] = ("-m", "iotmon"),
    **kwargs: Any,
) -> Any:
    """Run ``python -m iotmon ARGS`` to completion, capturing output (``entry``: what
    follows ``python`` instead of ``-m iotmon``)."""
    result = subprocess.run(
        [sys.executable, *entry, *args],
        capture_output=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"iotmon {' '.join(args)} exited {result.returncode}\n"
            f"stderr:\n{result.stderr.decode()[-4000:]}"
        )
    return result


def spawn(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "iotmon", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def consume_json(*args: str) -> dict[str, Any]:
    result = iotmon("consume", "--once", "--json", "--no-live", *args)
    doc: dict[str, Any] = orjson.loads(result.stdout)
    return doc


def simulate_file(path: Path, *args: str) -> Path:
    iotmon("simulate", "--start", START, "--output", str(path), *args)
    return path


def assert_same_stats(
    got: dict[str, Any], want: dict[str, Any], *, arrival_order: bool = True
) -> None:
    """Exactly the same counts; means equal to 1e-9. ``arrival_order=False`` leaves out
    ``last`` and ``last_event``: which reading arrived last when the two runs read the
    device's readings in different orders (unkeyed partitions)."""
    for field in ("readings", "accepted", "rejected", "late"):
        assert got[field] == want[field], field
    assert got["rejected_by_reason"] == want["rejected_by_reason"]
    assert got["devices"].keys() == want["devices"].keys()
    for key, device in want["devices"].items():
        other = got["devices"][key]
        assert other["count"] == device["count"], key
        for name in ("min", "max", "last", "last_event"):
            if arrival_order or name in ("min", "max"):
                assert other[name] == device[name], (key, name)
        assert math.isclose(other["mean"], device["mean"], rel_tol=0, abs_tol=1e-9), key
        if device["window_mean"] is None:
            assert other["window_mean"] is None, key
        else:
            assert math.isclose(
                other["window_mean"], device["window_mean"], rel_tol=0, abs_tol=1e-9
            ), key


def kill_repeatedly(
    args: list[str],
    *,
    state_dir: Path,
    kills: int,
    progress_file_glob: str = "partitions/*.json",
    seed: int = 1,
) -> list[float]:
    """Start ``iotmon ARGS``, SIGKILL it once a new checkpoint landed (plus a pseudo-random
    delay), ``kills`` times; returns how far each run got (checkpoint mtimes) for the log."""
    import random

    rng = random.Random(seed)
    seen: list[float] = []
    for _ in range(kills):
        before = _latest_mtime(state_dir, progress_file_glob)
        proc = spawn(*args)
        deadline = time.monotonic() + 120
        while _latest_mtime(state_dir, progress_file_glob) <= before:
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"finished before it could be killed: {err.decode()[-2000:]}")
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("no checkpoint within 120 s")
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.communicate()
        seen.append(_latest_mtime(state_dir, progress_file_glob))
    return seen


def _latest_mtime(state_dir: Path, pattern: str) -> float:
    times = [p.stat().st_mtime_ns for p in state_dir.glob(pattern)]
    return max(times, default=0) / 1e9


def group_args(bootstrap: str, topic: str, group: str, state: Path) -> list[str]:
    """``consume`` options for one member of consumer group ``group`` with its own state."""
    return [
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--state-dir",
        str(state),
        "--outbox",
        str(state / "eml"),
    ]


async def drop_topics(bootstrap: str, topics: list[str]) -> None:
    """Delete those of ``topics`` that exist (test clean-up)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""A ``/metrics`` scrape: (sample name, sorted labels) → value."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def labelled(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(key)[label]: v for (n, key), v in samples.items() if n == name}


def scrape_until(
    proc: subprocess.Popen[bytes],
    port: int,
    done: Callable[[Samples], bool],
    *,
    host: str = "127.0.0.1",
    timeout: float = 60,
) -> Samples:
    """Scrape ``proc``'s ``/metrics`` until ``done(samples)``; fails if the process exits
    (with its stderr) or the deadline passes. Connection refused means "not up yet"."""
    deadline = time.monotonic() + timeout
    last: Samples = {}
    while True:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} while scraped:\n{err.decode()[-3000:]}")
        try:
            last = scrape(port, host)
        except (ConnectionError, urllib.error.URLError):
            pass
        else:
            if done(last):
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics not as expected within {timeout} s: {last}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], *, timeout: float = 30) -> tuple[bytes, bytes]:
    """SIGTERM ``proc``; asserts it exits 0 within ``timeout`` s; returns (stdout, stderr)."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"still running {timeout} s after SIGTERM:\n{err.decode()[-3000:]}"
        ) from None
    assert proc.returncode == 0, err.decode()[-3000:]
    return out, err


class WiredAlerter(Alerter):
    """An :class:`Alerter` with its digests rendered, queued and delivered by
    :class:`Notifications`, as the pipeline wires the two (for tests of both together)."""

    def __init__(
        self, *, settings: AlertSettings, email: EmailSettings, notifier: Notifier, state_dir: Path
    ) -> None:
        self.notifications = Notifications(
            email=email, notifier=notifier, directory=state_dir / "notifications"
        )
        super().__init__(settings=settings, sink=self.notifications, state_dir=state_dir)
        self.outbox = self.notifications.outbox

    async def start(self) -> None:
        await self.notifications.start()

    async def flush(self, timeout: float = 30.0) -> bool:  # noqa: ASYNC109
        self.drain()
        return await self.notifications.flush(timeout)

    async def aclose(self) -> None:
        await self.notifications.aclose()
        self.close()


DIGEST_HEADERS = sorted(
    [
        "Subject",
        "From",
        "To",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "X-Iotmon-Digest",
        "MIME-Version",
        "Content-Type",
    ]
)
"""Every header a digest email has, and no other (sorted)."""
