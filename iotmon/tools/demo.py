"""``iotmon demo``: the whole job in half a minute, with nothing installed but Python.

A seeded simulated fleet is streamed in *time-lapse* (event time runs ``speed`` × wall time,
starting now) through a real :class:`~iotmon.engine.pipeline.Pipeline` — or through a Kafka broker
with ``kafka=True`` — and the alert digests go to a local SMTP server the demo runs itself,
so every email that is printed really went over SMTP. Alert settings are tuned so that the
overheating devices fire within seconds of wall time, while one-off spikes (a single 150+ °C
reading moves a 60-s mean by a couple of degrees) and malformed lines must not fire.

The fleet's manifest is the ground truth the result is compared with: which devices were
designed to overheat, and which only spiked. The demo's mailbox is
:mod:`iotmon.tools.demo_inbox`, its terminal output :mod:`iotmon.tools.demo_console`, its
Kafka variant :mod:`iotmon.tools.demo_kafka`.

After the first email the demo silences one of the devices it names, as a person would with
`iotmon silence add` (through the same store: the state directory's file, or the group's
silences topic), so the next digests leave that device out and say so.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from iotmon.alerts import AlertSettings
from iotmon.alerts.rules import DEFAULT_THRESHOLD
from iotmon.alerts.silences import Silence, Silences, SilenceStore, new_silence
from iotmon.engine.horizon import LONGEST_MAX_FUTURE_SECONDS
from iotmon.engine.pipeline import Pipeline
from iotmon.errors import ConfigError
from iotmon.kafka.settings import DEFAULT_BOOTSTRAP_SERVERS, KafkaSettings
from iotmon.notify import EmailSettings, EmlNotifier, Language, Notifier, SmtpSettings
from iotmon.report import Report
from iotmon.settings import Settings, SourceSettings
from iotmon.sources.files import LineIterableSource
from iotmon.state.deadletters import FileDeadLetters
from iotmon.stats import WindowSpec
from iotmon.tools.demo_console import status_printer
from iotmon.tools.demo_inbox import Inbox, ReceivedEmail, RecordingEml, start_smtp_server
from iotmon.tools.demo_kafka import create_topics, delete_topics, run_through_kafka
from iotmon.tools.fleet import Fleet
from iotmon.tools.readings import Readings, wall_clock_us
from iotmon.tools.timelapse import lines_of, paced_chunks

__all__ = ["DemoOptions", "DemoResult", "demo_fleet", "demo_settings", "run_demo"]

_US: Final = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What the demo streams and how. Durations of the alerting and window settings are in
    event time (at ``speed`` 20, 30 s of event time pass in 1.5 s of wall time);
    ``duration`` is wall time (``None``: until :func:`run_demo`'s ``stop`` is set)."""

    devices: int = 200
    seed: int = 20230315
    overheat_fraction: float = 0.1
    spike_rate: float = 0.002
    bad_rate: float = 0.002
    horizon_s: float = 300.0
    period: float = 1.0
    speed: float = 20.0
    duration: float | None = None
    # Pipeline and alerting, tuned to fire fast.
    window: float = 60.0
    pane: float = 5.0
    lateness: float = 5.0
    threshold: float = DEFAULT_THRESHOLD
    for_seconds: float = 30.0
    group_wait: float = 5.0
    group_interval: float = 30.0
    repeat_interval: float = 3600.0
    # Where things go.
    kafka: bool = False
    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    partitions: int = 3
    keep_topic: bool = False
    outbox: Path | None = None
    """Write ``.eml`` files here instead of sending to the demo's SMTP server."""
    state_dir: Path | None = None
    """Kept after the run; ``None``: a temporary directory, removed at the end."""
    mail_from: str = "iotmon-demo@localhost"
    mail_to: tuple[str, ...] = ("ops@example.com",)
    lang: Language = "en"
    live: bool = False
    status_interval: float = 2.0
    flush_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ConfigError(f"devices: must be >= 1, got {self.devices}")
        if not self.speed > 0:
            raise ConfigError(f"speed: must be > 0, got {self.speed}")
        if self.duration is not None and not self.duration > 0:
            raise ConfigError(f"duration: must be > 0 seconds, got {self.duration}")
        if not self.status_interval > 0:
            raise ConfigError(f"status-interval: must be > 0 seconds, got {self.status_interval}")
        if self.partitions < 1:
            raise ConfigError(f"partitions: must be >= 1, got {self.partitions}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    report: Report
    fired: tuple[str, ...]
    """Devices that went to ``firing`` at least once, sorted."""
    overheaters: tuple[str, ...]
    """Devices the manifest says were designed to overheat."""
    spikers: tuple[str, ...]
    """Devices that sent at least one spike and were not designed to overheat."""
    emails: tuple[ReceivedEmail, ...]
    elapsed_s: float
    event_span_s: float
    """Event time covered by the lines streamed."""
    smtp_address: str | None
    topic: str | None
    state_dir: Path
    state_kept: bool
    manifest: dict[str, Any] = field(repr=False)
    silenced: str | None = None
    """The device silenced after the first email (None: no email named one)."""

    @property
    def unexpected(self) -> tuple[str, ...]:
        """Devices that fired although they were not designed to overheat."""
        hot = set(self.overheaters)
        return tuple(d for d in self.fired if d not in hot)

    @property
    def not_fired(self) -> tuple[str, ...]:
        """Overheaters that have not fired (yet: a short run may end before their ramp)."""
        fired = set(self.fired)
        return tuple(d for d in self.overheaters if d not in fired)

    @property
    def first_email_after(self) -> float | None:
        return self.emails[0].after_s if self.emails else None


def demo_fleet(options: DemoOptions) -> Fleet:
    """The demo's fleet (the same for the same options, so a test can recompute it)."""
    return Fleet.create(
        devices=options.devices,
        seed=options.seed,
        overheat_fraction=options.overheat_fraction,
        spike_rate=options.spike_rate,
        bad_rate=options.bad_rate,
        horizon_s=options.horizon_s,
    )


def demo_settings(
    options: DemoOptions,
    *,
    state_dir: Path,
    smtp: SmtpSettings | None = None,
    topic: str | None = None,
) -> Settings:
    """Pipeline settings of the demo: Kafka source settings when ``topic`` is given."""
    source = SourceSettings()
    if topic is not None:
        source = SourceSettings(
            kafka=KafkaSettings(
                bootstrap_servers=options.bootstrap_servers,
                topics=(topic,),
                group=topic,
                start_from="earliest",
            )
        )
    return Settings(
        source=source,
        window=WindowSpec.from_seconds(
            window=options.window, pane=options.pane, lateness=options.lateness
        ),
        state_dir=state_dir,
        alerts=AlertSettings(
            threshold=options.threshold,
            metric="window",
            for_seconds=options.for_seconds,
            group_wait=options.group_wait,
            group_interval=options.group_interval,
            repeat_interval=options.repeat_interval,
        ),
        email=EmailSettings(
            mail_from=options.mail_from,
            mail_to=options.mail_to,
            lang=options.lang,
            smtp=smtp,
            eml_dir=options.outbox or state_dir / "outbox",
        ),
        flush_timeout=options.flush_timeout,
        # A time-lapse runs ahead of wall time by design: only the bound against each
        # partition's own stream applies.
        max_future=LONGEST_MAX_FUTURE_SECONDS,
    )


async def run_demo(
    options: DemoOptions,
    *,
    stop: asyncio.Event | None = None,
    on_email: Callable[[ReceivedEmail], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo until ``options.duration`` elapses or ``stop`` is set, then let the
    pipeline finish what was streamed, deliver what is due, and compare with the manifest.

    ``on_email`` is called (on the event loop) for every email as it arrives; ``echo`` gets
    one-line progress notes (where the SMTP server listens, the Kafka topic, ...).
    """
    say = echo or (lambda _line: None)
    stop = stop or asyncio.Event()
    if options.state_dir is not None and _non_empty(options.state_dir):
        # A checkpoint from an earlier demo would resume a stream that no longer exists
        # (and skip as many lines of the new one).
        raise ConfigError(
            f"state-dir: {options.state_dir} is not empty; the demo needs a new or empty "
            "directory (or leave `state_dir` out for a temporary one)"
        )
    state_kept = options.state_dir is not None
    state_dir = options.state_dir or Path(tempfile.mkdtemp(prefix="iotmon-demo-"))
    fleet = demo_fleet(options)
    silencer = _Silencer([d.id_equipamento for d in fleet.devices], say)
    inbox = Inbox(silencer.on_email(on_email))
    start_us = wall_clock_us()
    readings = fleet.readings(start_us=start_us, period=options.period)
    hot = sum(1 for d in fleet.devices if d.overheats)
    say(
        f"fleet: {options.devices} devices (seed {options.seed}), {hot} designed to overheat, "
        f"spike rate {options.spike_rate:g}, bad-line rate {options.bad_rate:g}; "
        f"time-lapse {options.speed:g}x (1 s of wall time = {options.speed:g} s of event time)"
    )
    smtp_server: asyncio.Server | None = None
    smtp_address: str | None = None
    topic: str | None = None
    deadline: asyncio.TimerHandle | None = None
    try:
        smtp: SmtpSettings | None = None
        if options.outbox is None:
            smtp_server = await start_smtp_server(inbox)
            host, port = smtp_server.sockets[0].getsockname()[:2]
            smtp_address = f"{host}:{port}"
            smtp = SmtpSettings(host=host, port=port, security="none", timeout=10.0)
            to = ", ".join(options.mail_to)
            say(f"SMTP server listening on {smtp_address}; alerts are mailed to {to}")
        else:
            say(f"emails are written as .eml files to {options.outbox}")
        if options.kafka:
            name = f"iotmon-demo-{secrets.token_hex(4)}"
            # The dead-letter topic too: a broker without topic auto-creation would refuse
            # the malformed lines the demo sends on purpose.
            await create_topics(options, [name, f"{name}.dlq"])
            topic = name
            say(f"streaming through Kafka at {options.bootstrap_servers}, topic {topic}")
        settings = demo_settings(options, state_dir=state_dir, smtp=smtp, topic=topic)
        silencer.store = _silence_store(settings, kafka=topic is not None)
        notifier: Notifier | None = None
        if options.outbox is not None:
            notifier = RecordingEml(EmlNotifier(options.outbox), inbox)
        inbox.started = time.monotonic()
        if options.duration is not None:
            deadline = asyncio.get_running_loop().call_later(options.duration, stop.set)
        if topic is None:
            report = await _run_local(
                options, settings, readings, stop, notifier, on_pipeline=silencer.watch
            )
        else:
            report = await run_through_kafka(
                options, settings, readings, stop, notifier, topic, on_pipeline=silencer.watch
            )
        # run() returned after delivery was confirmed (or flush_timeout passed), and the
        # server hands a message to the inbox before it answers 250: all emails are in.
        elapsed = time.monotonic() - inbox.started
        await silencer.done()
    finally:
        if deadline is not None:
            deadline.cancel()
        if smtp_server is not None:
            smtp_server.close()
            await smtp_server.wait_closed()
        if topic is not None and not options.keep_topic:
            await delete_topics(
                options.bootstrap_servers, [topic, f"{topic}.dlq", _silences_topic(topic)]
            )
        if not state_kept:
            shutil.rmtree(state_dir, ignore_errors=True)
    manifest = readings.manifest()
    overheaters = tuple(
        sorted(d["id_equipamento"] for d in manifest["devices"] if d["overheat"] is not None)
    )
    spikers = tuple(
        sorted(
            d["id_equipamento"]
            for d in manifest["devices"]
            if d["overheat"] is None and d["spikes"]["count"] > 0
        )
    )
    fired = tuple(sorted({a.device for a in report.alerts if a.state == "firing"}))
    first, last = readings.first_event_us, readings.last_event_us
    return DemoResult(
        report=report,
        fired=fired,
        overheaters=overheaters,
        spikers=spikers,
        emails=tuple(inbox.emails),
        elapsed_s=elapsed,
        event_span_s=0.0 if first is None or last is None else (last - first) / _US,
        smtp_address=smtp_address,
        topic=topic,
        state_dir=state_dir,
        state_kept=state_kept,
        manifest=manifest,
        silenced=silencer.device,
    )


class _Silencer:
    """Silences the first known device named in the first email, for the rest of the demo."""

    def __init__(self, devices: list[str], say: Callable[[str], None]) -> None:
        self._devices = devices
        self._say = say
        self.store: SilenceStore | None = None
        self.device: str | None = None
        self._live: Silences | None = None
        self._task: asyncio.Task[None] | None = None

    def watch(self, pipeline: Pipeline) -> None:
        self._live = pipeline.silences

    def on_email(
        self, then: Callable[[ReceivedEmail], None] | None
    ) -> Callable[[ReceivedEmail], None]:
        def arrived(email: ReceivedEmail) -> None:
            if then is not None:
                then(email)
            if self.device is None and self.store is not None:
                named = [d for d in self._devices if d in email.body]
                if named:
                    self.device = named[0]
                    silence = new_silence(
                        pattern=named[0],
                        duration=3600,
                        comment="the demo: being repaired",
                        created_by="iotmon demo",
                        now=time.time(),
                    )
                    # Known to the pipeline at once (it runs on this loop), so the very next
                    # digest leaves the device out; the store's watcher reads the same one.
                    if self._live is not None:
                        self._live.put(silence)
                    self._task = asyncio.get_running_loop().create_task(self._add(silence))

        return arrived

    async def _add(self, silence: Silence) -> None:
        assert self.store is not None
        await self.store.add(silence)
        device = silence.pattern
        self._say(
            f"silenced {device} for 1 h, as `iotmon silence add` does: the next digests "
            "leave it out and count it"
        )

    async def done(self) -> None:
        if self._task is not None:
            await self._task


def _silence_store(settings: Settings, *, kafka: bool) -> SilenceStore:
    if kafka:
        from iotmon.kafka.silences import KafkaSilenceStore, silences_topic

        return KafkaSilenceStore(
            bootstrap_servers=settings.source.kafka.bootstrap_servers,
            topic=silences_topic(settings.source.kafka.group),
            clock=time.time,
        )
    from iotmon.state.silences import FileSilenceStore

    return FileSilenceStore(settings.state_dir, clock=time.time)


def _silences_topic(group: str) -> str:
    from iotmon.kafka.silences import silences_topic

    return silences_topic(group)


def _non_empty(path: Path) -> bool:
    try:
        return any(path.iterdir())
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return True


async def _run_local(
    options: DemoOptions,
    settings: Settings,
    readings: Readings,
    stop: asyncio.Event,
    notifier: Notifier | None,
    *,
    on_pipeline: Callable[[Pipeline], None],
) -> Report:
    source = LineIterableSource(
        lines_of(paced_chunks(readings, speed=options.speed, stop=stop)), name="demo"
    )
    pipeline = Pipeline(
        settings,
        source=source,
        notifier=notifier,
        dead_letters=FileDeadLetters(settings.state_dir),
    )
    on_pipeline(pipeline)
    # The stream ending (stop or duration) ends run(): it then drains the pending digests
    # and waits for their delivery, so the last alerts of a short demo are still sent.
    async with pipeline, status_printer(options, pipeline) as printer:
        report = await pipeline.run()
    printer.final(report)
    return report
