"""iotmon: a real-time monitor for equipment temperature streams.

The library behind the ``iotmon`` command. A :class:`Pipeline` reads raw JSON lines (from
Kafka, a log file, stdin or any async iterable), keeps per-device running and sliding
window means, and sends debounced, grouped alert digests through a notifier::

    import iotmon

    settings = iotmon.Settings(
        source=iotmon.SourceSettings(input="examples/dados_sensores.txt", once=True),
        parse=iotmon.ParseSettings(key_field="sensor"),
        alerts=iotmon.AlertSettings(threshold=75.0, metric="running", for_seconds=0),
    )
    report = iotmon.run_once_sync(settings)            # or: await Pipeline(settings).run_once()
    print(report.above(75.0, metric="running"))

Everything listed in ``__all__`` is the supported API; other modules may change.
"""

from iotmon._version import __version__
from iotmon.alerts import AlertSettings, RuleOverride
from iotmon.api import run_once_sync, run_sync
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
from iotmon.pipeline import Pipeline
from iotmon.report import AlertRecord, DeviceSummary, Report
from iotmon.settings import Settings, SourceSettings
from iotmon.sources import KafkaSettings, LineIterableSource, Source
from iotmon.stats import WindowSpec

__all__ = [
    "AlertRecord",
    "AlertSettings",
    "DeviceReport",
    "DeviceSummary",
    "Digest",
    "EmailSettings",
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
