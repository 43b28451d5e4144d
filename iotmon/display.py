"""The one sanitiser for untrusted text shown to a person: device ids above all.

Device ids come from the input stream, so anyone who can write a reading chooses them. On
a terminal an ESC or OSC sequence retitles or clears the screen, a newline forges table rows
or log lines, a bidi override (U+202E) reverses what follows; in an email header a CR LF
starts a new header. :func:`printable` makes such text inert everywhere it is shown — the
console tables, ``iotmon status``, text logs and email — by writing every control, format
and separator character as a visible escape (``\\x1b``, ``\\u202e``, ``\\U000e0001``).
The backslash is escaped too (``\\\\``), so two different ids never look the same.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Final

__all__ = ["DEVICE_CHARS", "printable"]

DEVICE_CHARS: Final = 200
"""Where a shown device id is cut: longer ones are hostile or broken, and would wreck a
table or a subject line."""

# Control (C0, DEL, C1), format (bidi overrides and isolates, zero-width, tags), surrogate,
# private-use, unassigned, and the Unicode line/paragraph separators: everything that can
# move the cursor, end a line or hide and reorder the text around it.
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# A cut id ends in "…#" and 8 hex digits of a hash of the whole id, so ids that share a
# long prefix still show differently.
_HASH_HEX: Final = 8


def printable(text: str, *, limit: int | None = DEVICE_CHARS) -> str:
    """``text`` with unsafe characters escaped and, past ``limit`` characters, cut.

    The result holds no character of the categories Cc, Cf, Cs, Co, Cn, Zl or Zp, so it can
    go to a terminal, a log line or (encoded) a header as is. Different inputs give
    different results: escaping is reversible, and a cut one ends in a hash of the input.
    ``limit=None`` never cuts (for whole log messages).
    """
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
        else:
            out.append(ch)
    shown = "".join(out)
    if limit is None or len(shown) <= limit:
        return shown
    tag = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=_HASH_HEX // 2)
    suffix = f"…#{tag.hexdigest()}"
    return shown[: max(0, limit - len(suffix))] + suffix
