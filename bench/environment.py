"""What the numbers were measured on (machine, versions), and the peers' own virtualenv.

The peers (Quix Streams, PySpark, faust-streaming, Bytewax) never enter the project's
dependencies: the first bench run creates ``.cache/bench-peers/venv`` with pip and installs
them there, then reuses it, adding a peer it lacks when a run wants it (``--refresh-peers``
rebuilds it to pick up new releases). The four resolve together in one venv (Python 3.11:
Quix Streams pins confluent-kafka, which Bytewax's Kafka extra accepts; faust-streaming
brings its own aiokafka), so they share it. Bytewax is installed from a wheel only
(``--only-binary``): pip must never try to build its Rust core here. PySpark needs its Kafka source,
``spark-sql-kafka-0-10``, from Maven Central in the *same* version; PyPI sometimes has a
PySpark release whose connector is not on Maven Central yet, so the newest PySpark whose
connector Maven can fetch is installed (and the choice is recorded in the results).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["PeerEnv", "ensure_peer_env", "java_home", "machine_info", "versions"]

REPO = Path(__file__).resolve().parents[1]
PEERS_DIR = REPO / ".cache" / "bench-peers"
_STAMP = ".bench-peers.json"
_STABLE = re.compile(r"^\d+\.\d+\.\d+$")

Log = Callable[[str], None]


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_bytes": ram,
        "os": f"{platform.system()} {platform.release()}",
    }


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def java_home() -> str | None:
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if java is None:
        return None
    return str(Path(java).resolve().parents[1])


def _java_version() -> str | None:
    java = shutil.which("java")
    if java is None:
        return None
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stderr or done.stdout
    # `openjdk version "17.0.15" 2025-04-15` → `OpenJDK 17.0.15`
    match = re.search(r'^(\w+) version "([^"]+)"', text, re.MULTILINE)
    if match:
        vendor = "OpenJDK" if match.group(1).lower() == "openjdk" else match.group(1)
        return f"{vendor} {match.group(2)}"
    lines = text.strip().splitlines()
    return lines[0] if lines else None


def _kafka_version() -> str | None:
    libs = REPO / ".cache" / "kafka" / "libs"
    jars = sorted(libs.glob("kafka_2.13-*.jar")) if libs.exists() else []
    for jar in jars:
        match = re.match(r"kafka_2\.13-(\d[\w.\-]*?)\.jar$", jar.name)
        if match and not match.group(1).endswith(("test", "sources")):
            return match.group(1)
    lock = REPO / "dev" / "kafka" / "jars.lock"
    if lock.exists():
        match = re.search(r"^org\.apache\.kafka:kafka_2\.13:(\S+) ", lock.read_text(), re.M)
        if match:
            return match.group(1)
    return None


def versions(peers: PeerEnv | None, *, external_broker: str | None) -> dict[str, Any]:
    kafka = _kafka_version()
    return {
        "python": platform.python_version(),
        "iotmon": _dist_version("iotmon"),
        "aiokafka": _dist_version("aiokafka"),
        "orjson": _dist_version("orjson"),
        "quixstreams": peers.quix if peers else None,
        "faust_streaming": peers.faust if peers else None,
        "bytewax": peers.bytewax if peers else None,
        "pyspark": peers.spark if peers else None,
        "spark_kafka_connector": peers.connector if peers else None,
        "kafka_broker": f"external broker {external_broker}" if external_broker else kafka,
        "java": _java_version(),
    }


@dataclass(slots=True)
class PeerEnv:
    python: str | None = None
    quix: str | None = None
    quix_error: str | None = None
    spark: str | None = None
    spark_error: str | None = None
    connector: str | None = None
    faust: str | None = None
    faust_error: str | None = None
    bytewax: str | None = None
    bytewax_error: str | None = None
    ivy_dir: str = str(PEERS_DIR / "ivy")


def ensure_peer_env(
    *,
    refresh: bool,
    log: Log,
    want_spark: bool,
    want_quix: bool,
    want_faust: bool = False,
    want_bytewax: bool = False,
) -> PeerEnv:
    """The peers' virtualenv, created (pip) on first use; never raises: a peer that cannot be
    installed is reported as unavailable with the reason. A peer the existing venv lacks is
    added to it; the others are kept as they are (no upgrade without ``refresh``)."""
    venv = PEERS_DIR / "venv"
    python = venv / "bin" / "python"
    stamp = venv / _STAMP
    env = None
    if not refresh and python.exists() and stamp.exists():
        try:
            env = PeerEnv(**json.loads(stamp.read_text()))
        except (TypeError, ValueError):
            env = None
    if env is None:
        env = PeerEnv()
    missing = {
        "quix": want_quix and not env.quix,
        "spark": want_spark and not env.spark,
        "faust": want_faust and not env.faust,
        "bytewax": want_bytewax and not env.bytewax,
    }
    if python.exists() and stamp.exists() and not refresh and not any(missing.values()):
        return env
    if refresh and venv.exists():
        shutil.rmtree(venv)
    if not python.exists():
        log(f"creating the peers' virtualenv {venv} (first run only; pip downloads ~400 MB)")
        PEERS_DIR.mkdir(parents=True, exist_ok=True)
        # sys.executable may itself be a venv's python; `-m venv` still bases the new venv on
        # the underlying interpreter.
        failed = _call([sys.executable, "-m", "venv", str(venv)], log, timeout=300)
        if failed is None:
            failed = _call([str(python), "-m", "pip", "install", "-q", "-U", "pip"], log, 600)
        if failed is not None:
            reason = f"could not create the peers' venv: {failed}"
            env.quix_error = env.spark_error = env.faust_error = env.bytewax_error = reason
            return env
    env.python = str(python)

    if missing["quix"]:
        failed = _call([str(python), "-m", "pip", "install", "-q", "-U", "quixstreams"], log, 900)
        env.quix = _peer_version(python, "quixstreams")
        env.quix_error = None if env.quix else f"pip could not install quixstreams: {failed}"
    if missing["spark"]:
        _install_spark(env, python, log)
    if missing["faust"]:
        log("installing faust-streaming into the peers' virtualenv")
        failed = _call(
            [str(python), "-m", "pip", "install", "-q", "-U", "faust-streaming"], log, 900
        )
        env.faust = _peer_version(python, "faust-streaming")
        env.faust_error = None if env.faust else f"pip could not install faust-streaming: {failed}"
    if missing["bytewax"]:
        log("installing bytewax[kafka] into the peers' virtualenv")
        failed = _call(
            [
                str(python),
                *("-m", "pip", "install", "-q", "-U", "--only-binary", "bytewax"),
                "bytewax[kafka]",
            ],
            log,
            900,
        )
        env.bytewax = _peer_version(python, "bytewax")
        env.bytewax_error = (
            None if env.bytewax else f"pip could not install a bytewax[kafka] wheel: {failed}"
        )
    stamp.write_text(json.dumps(asdict(env), indent=2))
    return env


def ensure_py_spy(log: Log) -> Path:
    """py-spy (the sampling profiler of ``python -m bench.profile``), pip-installed into its
    own virtualenv beside the peers' on first use; RuntimeError with pip's reason if not."""
    venv = PEERS_DIR / "tools"
    binary = venv / "bin" / "py-spy"
    if binary.exists():
        return binary
    log(f"installing py-spy into {venv} (first run only)")
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    failed = _call([sys.executable, "-m", "venv", str(venv)], log, timeout=300)
    if failed is None:
        failed = _call(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "py-spy"], log, 600
        )
    if failed is not None or not binary.exists():
        raise RuntimeError(f"could not install py-spy with pip: {failed or 'no binary'}")
    return binary


def _install_spark(env: PeerEnv, python: Path, log: Log) -> None:
    if java_home() is None:
        env.spark_error = "no Java found (PySpark needs a JDK 17+; set JAVA_HOME)"
        return
    candidates = _pip_versions(python, "pyspark")[:4]
    chosen = None
    if shutil.which("mvn") is None:
        chosen = candidates[0] if candidates else None
        log("mvn not found: installing the newest PySpark and leaving the connector to Ivy")
    else:
        for version in candidates:
            coordinate = _connector(version)
            log(f"checking Maven Central for {coordinate}")
            if _call(_mvn_get(coordinate), None, timeout=300) is None:
                chosen = version
                break
            log(f"{coordinate} is not on Maven Central; trying an older PySpark")
    spec = f"pyspark=={chosen}" if chosen else "pyspark"
    failed = _call([str(python), "-m", "pip", "install", "-q", spec], log, timeout=1800)
    env.spark = _peer_version(python, "pyspark")
    if env.spark is None:
        env.spark_error = f"pip could not install {spec}: {failed}"
        return
    env.connector = _connector(env.spark)
    log(f"resolving {env.connector} into {env.ivy_dir} (first run only)")
    work = PEERS_DIR / "resolve-work"
    failed = _call(
        [
            str(python),
            str(REPO / "bench" / "peers" / "spark_agg.py"),
            "--mode=resolve",
            f"--packages={env.connector}",
            f"--ivy-dir={env.ivy_dir}",
            f"--work-dir={work}",
            f"--result={work / 'resolve.json'}",
        ],
        log,
        timeout=900,
        env=spark_env(),
    )
    shutil.rmtree(work, ignore_errors=True)
    if failed is not None:
        env.spark_error = f"Spark could not start with {env.connector}: {failed}"


def spark_env() -> dict[str, str]:
    env = dict(os.environ)
    home = java_home()
    if home:
        env["JAVA_HOME"] = home
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["PYSPARK_PYTHON"] = str(PEERS_DIR / "venv" / "bin" / "python")
    return env


def _connector(pyspark_version: str) -> str:
    scala = "2.13" if int(pyspark_version.split(".")[0]) >= 4 else "2.12"
    return f"org.apache.spark:spark-sql-kafka-0-10_{scala}:{pyspark_version}"


def _mvn_get(coordinate: str) -> list[str]:
    return ["mvn", "-B", "-q", "dependency:get", f"-Dartifact={coordinate}", "-Dtransitive=false"]


def _pip_versions(python: Path, name: str) -> list[str]:
    """Released (non-preview) versions on PyPI, newest first, via ``pip index versions``."""
    try:
        done = subprocess.run(
            [str(python), "-m", "pip", "index", "versions", name],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    for line in done.stdout.splitlines():
        if line.strip().startswith("Available versions:"):
            listed = [v.strip() for v in line.split(":", 1)[1].split(",")]
            return [v for v in listed if _STABLE.match(v)]
    return []


def _peer_version(python: Path, name: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    try:
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _call(
    argv: list[str], log: Log | None, timeout: float, env: dict[str, str] | None = None
) -> str | None:
    """Run a setup command; None on success, else a one-line reason (logged if ``log``)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"{Path(argv[0]).name} timed out after {timeout:.0f} s"
    except OSError as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    reason = lines[-1].strip() if lines else f"exit code {done.returncode}"
    if log is not None:
        log(f"setup step failed: {' '.join(argv[:4])}…: {reason}")
    return reason[:300]
