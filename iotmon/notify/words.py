"""What an email says, in English or Portuguese, and how it writes figures and durations.

``pt-BR`` keeps the original system's subject (``Atenção! N sensores com possíveis
problemas.``), opening line and sign-off, so the people who read those emails recognise
them; the body has the same layout as the English one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from iotmon.display import printable
from iotmon.notify.layout import hottest_first
from iotmon.notify.model import DeviceReport, Digest
from iotmon.notify.trend import Trend

if TYPE_CHECKING:
    from iotmon.notify.layout import Layout, Section
    from iotmon.notify.settings import Language

# A subject about one device names it, cut to this many characters if longer.
_SUBJECT_DEVICE_CHARS: Final = 60
# Otherwise it names the hottest device when the whole line stays this short (ids are cut in
# the middle to make it fit, but not below _SUBJECT_MIN_ID characters).
_SUBJECT_BUDGET: Final = 90
_SUBJECT_MIN_ID: Final = 12


def number(value: float | None) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.1f}"


def _degrees(value: float) -> str:
    # 80.0 -> "80", 80.5 -> "80.5": thresholds are written as people set them.
    return f"{value:g}"


def _common(values: Sequence[float]) -> float | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return word if count == 1 else (plural or word + "s")


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600, 1):g} h"
    return f"{round(seconds / 86400, 1):g} d"


def _shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters: ids of one plant share their
    prefix and differ at the end, so both ends are kept."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 3
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


class Words:
    """An email's wording in one language: :func:`words_for` picks it."""

    lang: str
    time_format: str
    unit: str
    new_mark: str
    device_col: str
    window_col: str
    running_col: str
    max_col: str
    trend_col: str
    seen_col: str
    signature: tuple[str, ...]

    def subject(self, layout: Layout) -> str:
        raise NotImplementedError

    def headline(self, layout: Layout) -> str:
        """``LABEL — details``; the HTML part colours the label."""
        raise NotImplementedError

    def intro(self, digest: Digest) -> str:
        raise NotImplementedError

    def as_of(self, layout: Layout) -> str:
        raise NotImplementedError

    def legend(self, window_s: float, point_s: float) -> str:
        raise NotImplementedError

    def html_legend(self, window_s: float, point_s: float) -> str:
        raise NotImplementedError

    def title(self, section: Section, digest: Digest) -> str:
        raise NotImplementedError

    def since(self, section: Section) -> str:
        raise NotImplementedError

    def ago(self, seconds: float) -> str:
        raise NotImplementedError

    def change(self, trend: Trend) -> str:
        raise NotImplementedError

    def capped(self, images: int) -> str:
        raise NotImplementedError

    def unlisted(self, count: int) -> str:
        raise NotImplementedError

    def silenced(self, count: int) -> str:
        """The line saying ``count`` devices are left out because they are silenced."""
        raise NotImplementedError

    def value(self, value: float | None) -> str:
        return f"{number(value)} {self.unit}"

    def _hottest(
        self,
        base: str,
        firing: Sequence[DeviceReport],
        template: str,
        single: str,
        *,
        rest: str = "",
    ) -> str:
        """``base``, the hottest firing device and its value when they fit, then ``rest``."""
        known = sorted((r for r in firing if r.value is not None), key=hottest_first)
        if not known:
            return base + rest
        hottest = known[0]
        value = self.value(hottest.value)
        if len(firing) == 1:
            # The one device is the news: named whatever the length (printable cuts it).
            shown = printable(hottest.device, limit=_SUBJECT_DEVICE_CHARS)
            return base + single.format(device=shown, value=value) + rest
        shown = printable(hottest.device)
        room = _SUBJECT_BUDGET - len(base + template.format(device="", value=value) + rest)
        if room < min(_SUBJECT_MIN_ID, len(shown)):
            return base + rest
        return base + template.format(device=_shorten(shown, room), value=value) + rest


class _English(Words):
    lang = "en"
    time_format = "%Y-%m-%d %H:%M:%S"
    unit = "°C"
    new_mark = "new"
    device_col = "Device"
    window_col = "Window °C"
    running_col = "Running °C"
    max_col = "Max °C"
    trend_col = "Trend"
    seen_col = "Last seen"
    signature = ("-- ", "iotmon")

    def subject(self, layout: Layout) -> str:
        digest = layout.digest
        parts: list[str] = []
        if digest.firing:
            count = len(digest.firing)
            threshold = _common([r.threshold for r in digest.firing])
            above = (
                f"above {_degrees(threshold)} °C" if threshold is not None else "above threshold"
            )
            parts.append(f"{count} {_plural(count, 'device')} {above}")
        if digest.resolved:
            count = len(digest.resolved)
            if parts:
                parts.append(f"{count} resolved")
            else:
                text = f"resolved: {count} {_plural(count, 'device')} back to normal"
                if count == 1:
                    device = printable(digest.resolved[0].device, limit=_SUBJECT_DEVICE_CHARS)
                    text += f": {device}"
                parts.append(text)
        if digest.stale:
            count = len(digest.stale)
            parts.append(f"{count} stale" if parts else f"{count} {_plural(count, 'device')} stale")
        if digest.recovered and not parts:
            count = len(digest.recovered)
            parts.append(f"{count} {_plural(count, 'device')} reporting again")
        prefix = "[iotmon] reminder: " if digest.kind == "reminder" else "[iotmon] "
        if not digest.firing:
            return prefix + ", ".join(parts)
        # The hottest device right after the firing count, the other counts after it.
        rest = "".join(f", {part}" for part in parts[1:])
        return self._hottest(
            prefix + parts[0],
            digest.firing,
            " — hottest {device} {value}",
            ": {device} {value}",
            rest=rest,
        )

    def headline(self, layout: Layout) -> str:
        digest = layout.digest
        new = sum(1 for r in digest.firing if r.new)
        details = []
        if new:
            details.append(f"{new} new")
        if len(digest.firing) > new:
            details.append(f"{len(digest.firing) - new} still firing")
        if digest.resolved:
            details.append(f"{len(digest.resolved)} resolved")
        if digest.stale:
            details.append(f"{len(digest.stale)} stale")
        if digest.recovered:
            details.append(f"{len(digest.recovered)} reporting again")
        return f"{layout.mood.upper()} — {', '.join(details)}"

    def intro(self, digest: Digest) -> str:
        metric = "window mean" if digest.metric == "window" else "running mean"
        if not digest.firing:
            return f"No device is above its threshold now ({metric})."
        count = len(digest.firing)
        threshold = _common([r.threshold for r in digest.firing])
        limit = f"{_degrees(threshold)} °C" if threshold is not None else "its threshold"
        verb = "is" if count == 1 else "are"
        return f"{count} {_plural(count, 'device')} {verb} above {limit} ({metric})."

    def as_of(self, layout: Layout) -> str:
        return f"As of {layout.as_of()}; times below are in that zone."

    def legend(self, window_s: float, point_s: float) -> str:
        return (
            f"Trend: mean of every {_span(point_s)} over the last {_span(window_s)};"
            " ▅▆▇█ = above the threshold."
        )

    def html_legend(self, window_s: float, point_s: float) -> str:
        return (
            f"Trend: mean of every {_span(point_s)} over the last {_span(window_s)};"
            " the dashed line is the threshold."
        )

    def title(self, section: Section, digest: Digest) -> str:
        if section == "firing":
            return "Firing"
        if section == "resolved":
            return "Resolved"
        if section == "stale":
            if digest.stale_after:
                return f"Stale — no readings for more than {digest.stale_after:g} s"
            return "Stale"
        return "Reporting again"

    def since(self, section: Section) -> str:
        return {
            "firing": "Firing since",
            "resolved": "Resolved at",
            "stale": "Stale since",
            "recovered": "Back since",
        }[section]

    def ago(self, seconds: float) -> str:
        return "now" if seconds < 1 else f"{_span(seconds)} ago"

    def change(self, trend: Trend) -> str:
        if trend.change is None:
            return ""
        return f"{trend.change:+.1f} °C in {_span(trend.change_s)}"

    def capped(self, images: int) -> str:
        return (
            f"Trend charts of {images} devices, new ones first; the plain-text part has them all."
        )

    def unlisted(self, count: int) -> str:
        return f"… and {count:,} more, cooler than those above (`iotmon status` lists them all)"

    def silenced(self, count: int) -> str:
        return (
            f"{count:,} {_plural(count, 'device')} silenced: not listed here, still watched "
            "(`iotmon silence list`)."
        )


class _Portuguese(Words):
    # The original's wording where it had one: the subject, the opening line, the sign-off.
    lang = "pt-BR"
    time_format = "%d/%m/%Y %H:%M:%S"
    unit = "ºC"
    new_mark = "novo"
    device_col = "Sensor"
    window_col = "Janela ºC"
    running_col = "Geral ºC"
    max_col = "Máx. ºC"
    trend_col = "Tendência"
    seen_col = "Última leitura"
    signature = ("Atenciosamente,", "", "Departamento de Dados.")

    def subject(self, layout: Layout) -> str:
        digest = layout.digest
        prefix = "Lembrete: " if digest.kind == "reminder" else ""
        if digest.firing:
            count = len(digest.firing)
            base = f"{prefix}Atenção! {count} {_sensores(count)} com possíveis problemas."
            return self._hottest(
                base, digest.firing, " Mais quente: {device} {value}", " {device}: {value}"
            )
        if digest.stale:
            count = len(digest.stale)
            return f"{prefix}Atenção! {count} {_sensores(count)} sem leituras."
        if digest.resolved:
            count = len(digest.resolved)
            back = "voltou" if count == 1 else "voltaram"
            return f"{prefix}Normalizado: {count} {_sensores(count)} {back} ao normal."
        count = len(digest.recovered)
        back = "voltou" if count == 1 else "voltaram"
        return f"{prefix}{count} {_sensores(count)} {back} a enviar leituras."

    def headline(self, layout: Layout) -> str:
        digest = layout.digest
        label = {
            "firing": "ALERTA",
            "resolved": "NORMALIZADO",
            "stale": "SEM LEITURAS",
            "reminder": "LEMBRETE",
        }[layout.mood]
        new = sum(1 for r in digest.firing if r.new)
        details = []
        if new:
            details.append(f"{new} {_plural(new, 'novo')}")
        if len(digest.firing) > new:
            details.append(f"{len(digest.firing) - new} ainda em alerta")
        if digest.resolved:
            count = len(digest.resolved)
            details.append(f"{count} {_plural(count, 'normalizado')}")
        if digest.stale:
            details.append(f"{len(digest.stale)} sem leituras")
        if digest.recovered:
            count = len(digest.recovered)
            details.append(f"{count} {'voltou' if count == 1 else 'voltaram'} a enviar leituras")
        return f"{label} — {', '.join(details)}"

    def intro(self, digest: Digest) -> str:
        if not digest.firing:
            return "Nenhum sensor apresenta temperatura acima do limite no momento."
        threshold = _common([r.threshold for r in digest.firing])
        if threshold is None:
            return "Os seguintes sensores apresentam temperatura acima do limite configurado."
        return f"Os seguintes sensores apresentam temperatura acima de {_degrees(threshold)}ºC."

    def as_of(self, layout: Layout) -> str:
        return f"Situação em {layout.as_of()}; horários abaixo neste fuso."

    def legend(self, window_s: float, point_s: float) -> str:
        return (
            f"Tendência: média a cada {_span(point_s)} nos últimos {_span(window_s)};"
            " ▅▆▇█ = acima do limite."
        )

    def html_legend(self, window_s: float, point_s: float) -> str:
        return (
            f"Tendência: média a cada {_span(point_s)} nos últimos {_span(window_s)};"
            " a linha tracejada é o limite."
        )

    def title(self, section: Section, digest: Digest) -> str:
        if section == "firing":
            return "Em alerta"
        if section == "resolved":
            clear = _common([r.clear_below for r in digest.resolved])
            below = f" (abaixo de {_degrees(clear)}ºC)" if clear is not None else ""
            return f"Voltaram ao normal{below}"
        if section == "stale":
            silent = f" há mais de {digest.stale_after:g} s" if digest.stale_after else ""
            return f"Sem leituras{silent}"
        return "Voltaram a enviar leituras"

    def since(self, section: Section) -> str:
        return {
            "firing": "Em alerta desde",
            "resolved": "Normalizado em",
            "stale": "Inativo desde",
            "recovered": "De volta desde",
        }[section]

    def ago(self, seconds: float) -> str:
        return "agora" if seconds < 1 else f"há {_span(seconds)}"

    def change(self, trend: Trend) -> str:
        if trend.change is None:
            return ""
        return f"{trend.change:+.1f} ºC em {_span(trend.change_s)}"

    def capped(self, images: int) -> str:
        return (
            f"Gráficos de tendência de {images} sensores, novos primeiro; "
            "a parte em texto tem todos."
        )

    def unlisted(self, count: int) -> str:
        more = f"{count:,}".replace(",", ".")
        return f"… e mais {more}, menos quentes que os acima (`iotmon status` lista todos)"

    def silenced(self, count: int) -> str:
        many = f"{count:,}".replace(",", ".")
        s = "" if count == 1 else "s"
        return (
            f"{many} {_sensores(count)} silenciado{s}: fora desta lista, ainda monitorado{s} "
            "(`iotmon silence list`)."
        )


def _sensores(count: int) -> str:
    return _plural(count, "sensor", "sensores")


_ENGLISH: Final = _English()
_PORTUGUESE: Final = _Portuguese()


def words_for(lang: Language) -> Words:
    """The wording for ``--lang``."""
    return _PORTUGUESE if lang == "pt-BR" else _ENGLISH
