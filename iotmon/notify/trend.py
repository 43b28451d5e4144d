"""A device's trend in an alert email: the pane means of its window, as a sparkline.

Both parts of the email draw it on one scale: the threshold sits at half height, and the
values below and above it are scaled separately, each side spanning at least
:data:`MIN_SPAN` degrees (so a device 0.2 °C over its threshold does not look like it is
soaring); the lowest value sits a third of the way up the lower half. Whatever the device,
``▁▂▃▄`` in the plain text is at or below its threshold and ``▅▆▇█`` above it; the PNG of
the HTML part draws the threshold as a dashed line across the middle, a bar going above it
pale up to the line and red beyond. A window of more than :data:`MAX_POINTS` panes is
shown in buckets of consecutive panes (the mean of their means), aligned so the last bucket
ends with the newest pane.

The PNG is a small palette image made with Pillow, attached inline (``cid:``): mail
clients show those, unlike SVG, scripts or remote images.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["BLOCKS", "MAX_POINTS", "MIN_SPAN", "Trend"]

BLOCKS: Final = "▁▂▃▄▅▆▇█"
MAX_POINTS: Final = 30
MIN_SPAN: Final = 2.5
"""Degrees each side of the threshold spans at least."""

# PNG geometry, in CSS pixels; drawn at twice that for high-density screens.
BAR_PX: Final = 3
GAP_PX: Final = 1
HEIGHT_PX: Final = 24
_SCALE: Final = 2
# Palette: transparent background (dark-mode clients keep their own), bars at or below the
# threshold, the part of a bar up to the threshold when it goes above, the part above it,
# and the threshold line.
_PALETTE: Final = (255, 255, 255, 140, 149, 159, 240, 178, 172, 205, 38, 38, 31, 35, 40)
_CLEAR, _BELOW, _BASE, _ABOVE, _LINE = 0, 1, 2, 3, 4
_MIN_BAR_PX: Final = 3


@dataclass(frozen=True, slots=True)
class Trend:
    """The points to draw (None: no readings then) and the change over the window."""

    points: tuple[float | None, ...]
    threshold: float
    change: float | None
    """Newest pane mean minus the oldest one; None with fewer than two panes."""
    change_s: float
    """Seconds from the oldest pane with readings to the newest."""
    window_s: float

    @classmethod
    def of(cls, means: Sequence[float | None], *, pane_s: float, threshold: float) -> Trend | None:
        """The trend of a window's pane means (oldest first); None without any reading."""
        known = [i for i, m in enumerate(means) if m is not None]
        if not known or pane_s <= 0:
            return None
        first, last = known[0], known[-1]
        oldest, newest = means[first], means[last]
        assert oldest is not None and newest is not None
        return cls(
            points=_buckets(means),
            threshold=threshold,
            change=newest - oldest if last > first else None,
            change_s=(last - first) * pane_s,
            window_s=len(means) * pane_s,
        )

    def heights(self) -> list[float | None]:
        """Each point's height in [0, 1]; the threshold is at 0.5."""
        values = [p for p in self.points if p is not None]
        t = self.threshold
        # The lowest value a third of the way up the lower half, so a device well below
        # its threshold still shows its shape.
        below = max(t - min(values), MIN_SPAN) * 1.5
        above = max(max(values) - t, MIN_SPAN)
        out: list[float | None] = []
        for p in self.points:
            if p is None:
                out.append(None)
            elif p <= t:
                out.append(0.5 * max(0.0, p - (t - below)) / below)
            else:
                out.append(0.5 + 0.5 * min(1.0, (p - t) / above))
        return out

    def text(self) -> str:
        """Unicode blocks, one per point, a space where there were no readings."""
        half = len(BLOCKS) // 2
        chars = []
        for p, h in zip(self.points, self.heights(), strict=True):
            if p is None or h is None:
                chars.append(" ")
            elif p <= self.threshold:
                chars.append(BLOCKS[min(half - 1, int(h * 2 * half))])
            else:
                chars.append(BLOCKS[half + min(half - 1, int((h - 0.5) * 2 * half))])
        return "".join(chars)

    def png(self) -> bytes:
        """The sparkline as a PNG of :meth:`size` CSS pixels, at twice the resolution."""
        return _png_of(self.points, self.threshold)

    def _draw(self) -> bytes:
        # Imported here: only a digest with trends pays for Pillow, not every start-up.
        from PIL import Image, ImageDraw

        width, height = self.size()
        s = _SCALE
        image = Image.new("P", (width * s, height * s), _CLEAR)
        image.putpalette(_PALETTE)
        draw = ImageDraw.Draw(image)
        # One pixel of room above and below the bars, so the tallest still reads as a bar.
        top, bottom = s, height * s - s
        span = bottom - top
        middle = bottom - span // 2
        for i, (p, h) in enumerate(zip(self.points, self.heights(), strict=True)):
            if p is None or h is None:
                continue
            x = i * (BAR_PX + GAP_PX) * s
            right = x + BAR_PX * s - 1
            y = bottom - max(_MIN_BAR_PX * s, round(h * span))
            if p > self.threshold:
                # Pale up to the threshold, strong above it: the excess is what stands out.
                draw.rectangle((x, middle, right, bottom - 1), fill=_BASE)
                draw.rectangle((x, min(y, middle - s), right, middle - 1), fill=_ABOVE)
            else:
                draw.rectangle((x, y, right, bottom - 1), fill=_BELOW)
        # The threshold, dashed, over the bars.
        for x in range(0, width * s, 3 * s):
            draw.rectangle((x, middle - s // 2, x + 2 * s - 1, middle + s // 2 - 1), fill=_LINE)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True, transparency=_CLEAR)
        return out.getvalue()

    def size(self) -> tuple[int, int]:
        """(width, height) of the PNG in CSS pixels."""
        return len(self.points) * (BAR_PX + GAP_PX) - GAP_PX, HEIGHT_PX


@functools.lru_cache(maxsize=1024)
def _png_of(points: tuple[float | None, ...], threshold: float) -> bytes:
    """Drawn once per chart: a firing device is listed in digest after digest, and its
    chart only changes when a pane does, while drawing and compressing it is most of what
    rendering an email costs (on the data path, where it delays every alert behind it)."""
    chart = Trend(points=points, threshold=threshold, change=None, change_s=0.0, window_s=0.0)
    return chart._draw()


def _buckets(means: Sequence[float | None]) -> tuple[float | None, ...]:
    per = math.ceil(len(means) / MAX_POINTS)
    if per == 1:
        return tuple(means)
    points: list[float | None] = []
    # From the newest pane back, so the last bucket is whole and ends with it.
    for end in range(len(means), 0, -per):
        known = [m for m in means[max(0, end - per) : end] if m is not None]
        points.append(sum(known) / len(known) if known else None)
    return tuple(reversed(points))
