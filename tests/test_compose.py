"""compose.yaml and the Dockerfile, checked without a Docker engine: every service has what it
needs, every IOTMON_* variable is one the command it runs really reads (and its value is
valid for it), and the ports and addresses agree with each other and with the code."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.core import TyperGroup

from iotmon.cli import app
from iotmon.cli.consume import consume_settings
from iotmon.config import ENV_PREFIX
from iotmon.kafka.settings import DEFAULT_BOOTSTRAP_SERVERS as DEFAULT_BOOTSTRAP
from tests.conftest import MakeTopic, SMTPCapture
from tests.helpers import free_port, iotmon, metric, scrape_until, spawn

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
IOTMON_SERVICES = ("iotmon-simulate", "iotmon-consume")
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def commands() -> dict[str, Any]:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    return dict(root.commands)


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command(service: str) -> list[str]:
    cmd = SERVICES[service]["command"]
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def published(service: str) -> dict[int, tuple[str, int]]:
    """Container port → (host address, host port) of a service's ``ports``."""
    result: dict[int, tuple[str, int]] = {}
    for entry in SERVICES[service].get("ports", []):
        host, host_port, container = str(entry).rsplit(":", 2)
        result[int(container)] = (host, int(host_port))
    return result


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` → {NAME: (host, port)}."""
    result = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def flag_value(args: list[str], flag: str) -> str:
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag:
            return args[i + 1]
    raise AssertionError(f"{flag} not in {args}")


def seconds(duration: str) -> float:
    """A compose duration (``45s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_the_four_services_exist_and_have_an_image() -> None:
    assert set(SERVICES) == {"kafka", "mailpit", *IOTMON_SERVICES}
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_ports_are_published_on_loopback_only(service: str) -> None:
    for host, _ in published(service).values():
        assert host == "127.0.0.1", service


def test_images_are_pinned() -> None:
    kafka = SERVICES["kafka"]["image"]
    assert re.fullmatch(r"apache/kafka-native:(3\.9|4\.\d+)\.\d+", kafka), kafka
    assert re.fullmatch(r"axllent/mailpit:v\d+\.\d+(\.\d+)?", SERVICES["mailpit"]["image"])


def test_kafka_is_a_single_kraft_node() -> None:
    env = environment("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    found = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(found) == set(protocols)
    assert controller in found and controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    # The quorum is this node, on its controller listener.
    voter_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert voter_id == node
    assert voter == f"kafka:{found[controller][1]}"
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[name] == "1", name
    assert SERVICES["kafka"]["healthcheck"]["test"]


def test_kafka_addresses_agree_with_clients_and_the_host_default() -> None:
    env = environment("kafka")
    found = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    ports = published("kafka")
    internal = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    # Containers: the internal listener, advertised under the service name.
    host, port = advertised[internal]
    assert host == "kafka" and found[internal][1] == port
    in_network = f"{host}:{port}"
    assert environment("iotmon-consume")["IOTMON_BOOTSTRAP_SERVERS"] == in_network
    assert flag_value(command("iotmon-simulate"), "--bootstrap-servers") == in_network
    # The host: iotmon's default bootstrap (127.0.0.1:9092) reaches a listener advertised
    # as exactly that address.
    default_host, _, default_port = DEFAULT_BOOTSTRAP.rpartition(":")
    host_side = [
        n for n, address in advertised.items() if address == (default_host, int(default_port))
    ]
    assert len(host_side) == 1, advertised
    assert ports[found[host_side[0]][1]] == (default_host, int(default_port))
    # The healthcheck probes a port the broker listens on.
    probe = SERVICES["kafka"]["healthcheck"]["test"]
    assert str(found[internal][1]) in probe


def test_smtp_and_web_ports_agree_with_mailpit() -> None:
    env = environment("iotmon-consume")
    mailpit = published("mailpit")
    assert env["IOTMON_SMTP_HOST"] == "mailpit"
    assert int(env["IOTMON_SMTP_PORT"]) == 1025 and 1025 in mailpit
    assert env["IOTMON_SMTP_SECURITY"] == "none"  # Mailpit offers no TLS by default
    assert 8025 in mailpit  # web UI


def test_metrics_port_is_published_and_exposed() -> None:
    env = environment("iotmon-consume")
    port = int(env["IOTMON_METRICS_PORT"])
    assert env["IOTMON_METRICS_HOST"] == "0.0.0.0"  # reachable through the published port
    assert port in published("iotmon-consume")
    assert f"EXPOSE {port}" in DOCKERFILE
    assert str(port) in " ".join(SERVICES["iotmon-consume"]["healthcheck"]["test"])


def test_state_dir_is_a_named_volume() -> None:
    state_dir = environment("iotmon-consume")["IOTMON_STATE_DIR"]
    mounts = dict(str(v).split(":", 1) for v in SERVICES["iotmon-consume"]["volumes"])
    volume = next(name for name, target in mounts.items() if target == state_dir)
    assert volume in COMPOSE["volumes"]
    assert f"ENV IOTMON_STATE_DIR={state_dir}" in DOCKERFILE
    assert f"chown iotmon:iotmon {state_dir}" in DOCKERFILE


@pytest.mark.parametrize("service", IOTMON_SERVICES)
def test_iotmon_services_wait_for_a_healthy_broker(service: str) -> None:
    spec = SERVICES[service]
    assert spec["build"] == "."
    assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", IOTMON_SERVICES)
def test_every_iotmon_variable_is_read_by_the_command(service: str) -> None:
    args = command(service)
    cmd = commands()[args[0]]
    readable = {p.envvar for p in cmd.params if isinstance(getattr(p, "envvar", None), str)}
    named = {k for k in environment(service) if k.startswith(ENV_PREFIX)}
    assert named, service
    assert named <= readable, f"{service}: not options of `iotmon {args[0]}`: {named - readable}"


@pytest.mark.parametrize("service", IOTMON_SERVICES)
def test_command_and_environment_parse(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    env = environment(service)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = command(service)
    ctx = commands()[args[0]].make_context(args[0], args[1:])
    # Each variable arrived as the option's value, not as a default.
    for param in ctx.command.params:
        if getattr(param, "envvar", None) in env and param.name:
            source = ctx.get_parameter_source(param.name)
            assert source is not None and source.name == "ENVIRONMENT", param.name
    if args[0] == "consume":
        settings = consume_settings(ctx)  # the environment is set above
        assert settings.email.smtp is not None
        assert (settings.email.smtp.host, settings.email.smtp.port) == ("mailpit", 1025)
        assert settings.email.mail_to == tuple(env["IOTMON_MAIL_TO"].split())
        assert str(settings.state_dir) == env["IOTMON_STATE_DIR"]
        assert settings.source.kafka.topics == (env["IOTMON_TOPIC"],)


def test_simulator_and_consumer_use_the_same_topic() -> None:
    topic = environment("iotmon-consume")["IOTMON_TOPIC"]
    assert flag_value(command("iotmon-simulate"), "--topic") == topic
    # The broker's default partition count (for the implicitly created DLQ topic) matches.
    partitions = flag_value(command("iotmon-simulate"), "--partitions")
    assert environment("kafka")["KAFKA_NUM_PARTITIONS"] == partitions


def test_dockerfile_runs_iotmon_as_an_unprivileged_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.splitlines() if line.strip()]
    instructions = [line for line in lines if not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    assert any(re.search(r"\bpip install \.", line) for line in instructions)
    entrypoint = [line for line in instructions if line.startswith("ENTRYPOINT")]
    assert entrypoint == ['ENTRYPOINT ["iotmon"]']
    # The console script the entrypoint names is the package's.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["iotmon"] == "iotmon.cli:main"
    # Everything the image build copies in exists.
    for line in instructions:
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".cache", ".iotmon-state", "outbox"} <= ignored
    assert not {"iotmon", "pyproject.toml", "README.md"} & ignored


# -- the consumer service, run as compose.yaml configures it --------------------------------


def without_iotmon_variables() -> dict[str, str]:
    """This process's environment minus IOTMON_* (a developer's exports must not leak in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}


def simulator_args(bootstrap: str, topic: str, *, start: str, duration: float) -> list[str]:
    """The simulator service's command with this broker and topic. Its --rate paces 200
    lines per wall second; here the same fleet runs in simulated time from ``start``
    instead, so its overheating devices fire within seconds rather than minutes."""
    args = []
    for arg in command("iotmon-simulate"):
        flag = arg.split("=", 1)[0]
        if flag == "--rate":
            continue
        args.append(
            {"--bootstrap-servers": f"{flag}={bootstrap}", "--topic": f"{flag}={topic}"}.get(
                flag, arg
            )
        )
    return [*args, f"--start={start}", f"--duration={duration:g}"]


def healthcheck(port: int) -> list[str]:
    """The consumer's healthcheck command, run by this Python against ``port``."""
    test = [str(part) for part in SERVICES["iotmon-consume"]["healthcheck"]["test"]]
    assert test[:2] == ["CMD", "python"], test
    container_port = environment("iotmon-consume")["IOTMON_METRICS_PORT"]
    code = test[-1].replace(f":{container_port}/", f":{port}/")
    assert code != test[-1], "the healthcheck should request the metrics port"
    return [sys.executable, *test[2:-1], code]


async def test_consumer_service_starts_serves_mails_and_stops_as_configured(
    kafka_bootstrap: str,
    make_topic: MakeTopic,
    smtp_server: SMTPCapture,
    changelogs: list[str],
    tmp_path: Path,
) -> None:
    """compose.yaml's iotmon-consume environment, with only its addresses replaced: the
    hosts (Kafka, Mailpit, the metrics bind address: loopback in tests), the ports, the
    volume path and — the broker is shared by the whole test session — a fresh topic."""
    spec = SERVICES["iotmon-consume"]
    env = environment("iotmon-consume")
    partitions = int(flag_value(command("iotmon-simulate"), "--partitions"))
    topic = await make_topic(partitions=partitions)
    changelogs.append(env["IOTMON_GROUP"])
    port = free_port()
    replaced = {
        "IOTMON_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "IOTMON_TOPIC": topic,
        "IOTMON_SMTP_HOST": smtp_server.host,
        "IOTMON_SMTP_PORT": str(smtp_server.port),
        "IOTMON_METRICS_HOST": "127.0.0.1",
        "IOTMON_METRICS_PORT": str(port),
        "IOTMON_STATE_DIR": str(tmp_path / "state"),
    }
    assert replaced.keys() <= env.keys()
    proc = spawn(*command("iotmon-consume"), env={**without_iotmon_variables(), **env, **replaced})
    try:
        # Healthy within the healthcheck's own allowance, by the healthcheck's request.
        check = spec["healthcheck"]
        allowance = seconds(check["start_period"]) + seconds(check["interval"]) * check["retries"]
        deadline = time.monotonic() + allowance
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            probe = await asyncio.to_thread(
                subprocess.run, healthcheck(port), capture_output=True, timeout=30
            )
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, probe.stderr.decode()[-2000:]
            await asyncio.sleep(0.2)

        # The simulator service's fleet, 10 minutes of it ending now.
        duration = 600.0
        start = datetime.now(UTC) - timedelta(seconds=duration + 60)
        iotmon(
            *simulator_args(
                kafka_bootstrap,
                topic,
                start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                duration=duration,
            ),
            env={**without_iotmon_variables(), **environment("iotmon-simulate")},
        )
        (mail, *_) = await smtp_server.wait_for(1, timeout=120)
        assert mail.mail_from == env["IOTMON_MAIL_FROM"]
        assert set(mail.rcpt_tos) == set(env["IOTMON_MAIL_TO"].split())
        assert f"above {float(env['IOTMON_THRESHOLD']):g} °C" in str(mail.message["Subject"])

        # The server has the mail a moment before the client counts it as sent.
        samples = await asyncio.to_thread(
            scrape_until, proc, port, lambda s: metric(s, "iotmon_notifications_sent_total") >= 1
        )
        assert metric(samples, "iotmon_readings_read_total") > 0
        assert metric(samples, "iotmon_notifications_failed_total") == 0
    finally:
        # `docker compose stop`: SIGTERM, then SIGKILL after the stop_grace_period.
        grace = seconds(spec["stop_grace_period"])
        running = proc.poll() is None
        started = time.monotonic()
        if running:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, grace)
            except subprocess.TimeoutExpired:
                proc.kill()
        _, err = proc.communicate()
    assert running, f"exited by itself ({proc.returncode}): {err.decode()[-3000:]}"
    assert proc.returncode == 0, err.decode()[-3000:]
    assert time.monotonic() - started < grace
