"""iotmon: a real-time monitor for equipment temperature streams.

The library behind the ``iotmon`` command. A :class:`Pipeline` reads raw JSON lines (from
Kafka, a log file, stdin or any async iterable), keeps per-device running and sliding
window means, and sends debounced, grouped alert digests through a notifier::

    import iotmon

    settings = iotmon.Settings(
        source=iotmon.SourceSettings(input="examples/dados_sensores.txt", once=True),
        parse=iotmon.ParseSettings(key_field="sensor"),
        alerts=iotmon.AlertSettings(metric="running", for_seconds=0),
    )
    report = iotmon.run_once_sync(settings)            # or: await Pipeline(settings).run_once()
    print(report.above(settings.alerts.threshold, metric="running"))

Errors iotmon raises on purpose derive from :class:`IotmonError`.

Everything listed in ``__all__`` is the supported API; other modules may change.
"""

from typing import TYPE_CHECKING, Any

from iotmon._version import __version__

if TYPE_CHECKING:
    from iotmon.alerts import AlertSettings, RuleOverride
    from iotmon.api import run_once_sync, run_sync
    from iotmon.engine.pipeline import Pipeline
    from iotmon.errors import ConfigError, IotmonError
    from iotmon.kafka.settings import KafkaSettings
    from iotmon.notify import (
        DeviceReport,
        Digest,
        EmailSettings,
        Notification,
        Notifier,
        PermanentDeliveryError,
        SmtpSettings,
        TransientDeliveryError,
    )
    from iotmon.parse import ParseSettings
    from iotmon.report import AlertRecord, DeviceSummary, Report
    from iotmon.settings import Settings, SourceSettings
    from iotmon.sources import LineIterableSource, Source
    from iotmon.stats import WindowSpec

# Imported on first use, so that `import iotmon.stats` (or a file-only run) does not pay for
# aiokafka and aiosmtplib.
_HOME = {
    "AlertSettings": "iotmon.alerts",
    "RuleOverride": "iotmon.alerts",
    "run_once_sync": "iotmon.api",
    "run_sync": "iotmon.api",
    "Pipeline": "iotmon.engine.pipeline",
    "ConfigError": "iotmon.errors",
    "IotmonError": "iotmon.errors",
    "KafkaSettings": "iotmon.kafka.settings",
    "DeviceReport": "iotmon.notify",
    "Digest": "iotmon.notify",
    "EmailSettings": "iotmon.notify",
    "Notification": "iotmon.notify",
    "Notifier": "iotmon.notify",
    "PermanentDeliveryError": "iotmon.notify",
    "SmtpSettings": "iotmon.notify",
    "TransientDeliveryError": "iotmon.notify",
    "ParseSettings": "iotmon.parse",
    "AlertRecord": "iotmon.report",
    "DeviceSummary": "iotmon.report",
    "Report": "iotmon.report",
    "Settings": "iotmon.settings",
    "SourceSettings": "iotmon.settings",
    "LineIterableSource": "iotmon.sources",
    "Source": "iotmon.sources",
    "WindowSpec": "iotmon.stats",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'iotmon' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "AlertRecord",
    "AlertSettings",
    "ConfigError",
    "DeviceReport",
    "DeviceSummary",
    "Digest",
    "EmailSettings",
    "IotmonError",
    "KafkaSettings",
    "LineIterableSource",
    "Notification",
    "Notifier",
    "ParseSettings",
    "PermanentDeliveryError",
    "Pipeline",
    "Report",
    "RuleOverride",
    "Settings",
    "SmtpSettings",
    "Source",
    "SourceSettings",
    "TransientDeliveryError",
    "WindowSpec",
    "__version__",
    "run_once_sync",
    "run_sync",
]
