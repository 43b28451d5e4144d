"""What an email shows, computed once for its plain-text and HTML parts.

Both parts have one layout, in both languages: a headline saying what changed (firing,
resolved, stale, reminder: the :data:`Mood`), one context line naming the time zone
(``--timezone``) once, then a section per state with its devices hottest first (at most
:data:`MAX_LISTED`, the rest counted), new ones badged, and each device's trend over the
window (:mod:`iotmon.notify.trend`) with the change over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal, TypeAlias
from zoneinfo import ZoneInfo

from iotmon.display import printable
from iotmon.notify.model import DeviceReport, Digest
from iotmon.notify.settings import zone
from iotmon.notify.trend import Trend

if TYPE_CHECKING:
    from iotmon.notify.words import Words

Section: TypeAlias = Literal["firing", "resolved", "stale", "recovered"]
_SECTIONS: Final[tuple[Section, ...]] = ("firing", "resolved", "stale", "recovered")
# Sections that also list devices from earlier digests, so "new" tells something there.
_CARRIED_OVER: Final[frozenset[Section]] = frozenset({"firing", "stale"})

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Mood: TypeAlias = Literal["firing", "resolved", "stale", "reminder"]
"""What the headline is about, and so its colour."""

MAX_LISTED: Final = 100
"""Devices listed per email, new ones first, then the hottest; the rest are counted. A
plant-wide event (a cooling failure: thousands of devices at once) still makes an email a
mail server takes and a person reads; ``iotmon status`` lists every device."""
MAX_IMAGES: Final = 10
"""Trend charts drawn per email, new devices first, then the hottest; the plain-text part
has every device's. Each image is a MIME part to build, store and send, and rendering runs
on the data path: 30 per digest tripled alert latency while 200 devices fired."""


@dataclass(frozen=True, slots=True)
class Row:
    """One listed device."""

    report: DeviceReport
    device: str
    """The id as shown: escaped by :func:`printable`, never raw."""
    new: bool
    trend: Trend | None
    cid: str | None
    """Content-ID of the trend's PNG (HTML part)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """The email's content for one digest: its sections and rows, and how times read."""

    digest: Digest
    words: Words
    zone: ZoneInfo
    as_of_us: int
    """The time the figures are as of: the digest's slot, or a later last reading."""
    mood: Mood
    sections: tuple[tuple[Section, tuple[Row, ...]], ...]
    unlisted: dict[Section, int]
    """Devices of a section left out of the tables (:data:`MAX_LISTED`): the coolest."""

    @classmethod
    def of(cls, digest: Digest, words: Words, *, timezone: str) -> Layout:
        listed, unlisted = select(digest, MAX_LISTED)
        trends = {
            id(report): Trend.of(report.trend, pane_s=report.pane_s, threshold=report.threshold)
            for _, shown in listed
            for report in shown
        }
        drawn = _listed(
            [r for _, shown in listed for r in shown if trends[id(r)] is not None], MAX_IMAGES
        )
        numbers = {id(r): n for n, r in enumerate((r for _, shown in listed for r in shown), 1)}
        charts = {id(r): f"t{numbers[id(r)]}.{digest.digest_id[:16]}@iotmon" for r in drawn}
        sections = tuple(
            (
                section,
                tuple(
                    Row(
                        report=report,
                        device=printable(report.device),
                        new=report.new and section in _CARRIED_OVER,
                        trend=trends[id(report)],
                        cid=charts.get(id(report)),
                    )
                    for report in shown
                ),
            )
            for section, shown in listed
        )
        seen = [r.last_seen_us for r in _all_reports(digest) if r.last_seen_us is not None]
        return cls(
            digest=digest,
            words=words,
            zone=zone(timezone),
            as_of_us=max([digest.slot_us, *seen]),
            mood=_mood(digest),
            sections=sections,
            unlisted=unlisted,
        )

    def count(self, section: Section, rows: Sequence[Row]) -> int:
        return len(rows) + self.unlisted.get(section, 0)

    def capped(self) -> bool:
        """Some trends are not drawn in the HTML part (:data:`MAX_IMAGES`)."""
        return any(row.trend is not None and row.cid is None for row in self.rows())

    def rows(self) -> list[Row]:
        return [row for _, rows in self.sections for row in rows]

    def time(self, at_us: int | None) -> str:
        """Date and time in the email's zone, which is named once, in :meth:`as_of`."""
        if at_us is None:
            return "–"
        moment = (_EPOCH + timedelta(microseconds=at_us)).astimezone(self.zone)
        return moment.strftime(self.words.time_format)

    def as_of(self) -> str:
        """The reference time with its zone, e.g. ``2023-03-15 09:16:47 America/Sao_Paulo
        (UTC-03:00)``."""
        moment = (_EPOCH + timedelta(microseconds=self.as_of_us)).astimezone(self.zone)
        name = str(self.zone.key)
        if name == "UTC":
            return f"{moment.strftime(self.words.time_format)} UTC"
        offset = moment.strftime("%z")
        return f"{moment.strftime(self.words.time_format)} {name} (UTC{offset[:3]}:{offset[3:]})"

    def ago(self, at_us: int | None) -> str:
        if at_us is None:
            return "–"
        return self.words.ago(max(0, self.as_of_us - at_us) / 1e6)

    def window_s(self) -> float | None:
        return next((r.trend.window_s for r in self.rows() if r.trend), None)

    def point_s(self) -> float | None:
        return next((r.trend.window_s / len(r.trend.points) for r in self.rows() if r.trend), None)


def select(
    digest: Digest, room: int
) -> tuple[list[tuple[Section, list[DeviceReport]]], dict[Section, int]]:
    """The devices a rendering of ``digest`` lists when it has ``room`` for that many: each
    non-empty section with its chosen devices (new first, then the hottest, shown hottest
    first), and per section how many were left out."""
    listed: list[tuple[Section, list[DeviceReport]]] = []
    unlisted: dict[Section, int] = {}
    for section in _SECTIONS:
        reports = sorted(_reports(digest, section), key=hottest_first)
        shown = _listed(reports, room)
        room -= len(shown)
        if len(shown) < len(reports):
            unlisted[section] = len(reports) - len(shown)
        if reports:
            listed.append((section, shown))
    return listed, unlisted


def _listed(reports: Sequence[DeviceReport], room: int) -> list[DeviceReport]:
    """At most ``room`` of ``reports`` (hottest first), in that order: the new ones before
    the rest, since what changed is what a digest is for."""
    if len(reports) <= room:
        return list(reports)
    chosen = {id(r) for r in sorted(reports, key=lambda r: not r.new)[: max(0, room)]}
    return [r for r in reports if id(r) in chosen]


def hottest_first(report: DeviceReport) -> tuple[bool, float, str]:
    value = report.value
    known = value is not None and value == value
    return (not known, -(value or 0.0) if known else 0.0, report.device)


def _mood(digest: Digest) -> Mood:
    if digest.kind == "reminder":
        return "reminder"
    if any(r.new for r in digest.firing):
        return "firing"
    if any(r.new for r in digest.stale):
        return "stale"
    if digest.resolved or digest.recovered:
        return "resolved"
    return "firing" if digest.firing else "stale"


def _reports(digest: Digest, section: Section) -> tuple[DeviceReport, ...]:
    if section == "firing":
        return digest.firing
    if section == "resolved":
        return digest.resolved
    if section == "stale":
        return digest.stale
    return digest.recovered


def _all_reports(digest: Digest) -> list[DeviceReport]:
    return [r for section in _SECTIONS for r in _reports(digest, section)]
