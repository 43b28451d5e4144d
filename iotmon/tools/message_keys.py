"""Message keys for reading lines: which device a line belongs to, even when it is damaged.

A key is the string (or number) at a dotted field path of the JSON line; a line that is not
valid JSON falls back to the first complete ``"field":"value"`` pair, so a damaged reading is
still keyed to its device's partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

__all__ = ["DEFAULT_KEY_FIELD", "extract_key", "key_from", "scan_string_field"]

DEFAULT_KEY_FIELD: Final = "id_equipamento"


def scan_string_field(line: bytes, name: bytes) -> bytes | None:
    # Best effort for lines that are not valid JSON (e.g. truncated): the first
    # `"name": "value"` pair whose value is a complete string without escapes.
    pos = line.find(b'"' + name + b'"')
    if pos < 0:
        return None
    i = pos + len(name) + 2
    rest = line[i : i + 8].lstrip()
    if not rest.startswith(b":"):
        return None
    i = line.index(b":", i) + 1
    while i < len(line) and line[i] in b" \t":
        i += 1
    if i >= len(line) or line[i] != 0x22:  # '"'
        return None
    end = line.find(b'"', i + 1)
    if end < 0:
        return None
    value = line[i + 1 : end]
    return value if value and b"\\" not in value else None


def key_from(obj: Any, path: Sequence[str]) -> bytes | None:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    if isinstance(obj, str):
        return obj.encode() if obj else None
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        return str(obj).encode()
    return None


def extract_key(line: bytes, field: str) -> bytes | None:
    """The message key for a line: the string (or number) at dotted path ``field``.

    Valid JSON is looked up exactly; for a line that is not valid JSON the first complete
    ``"<last path part>":"<value>"`` pair is used, so that a damaged reading still goes to its
    device's partition. ``None`` when there is nothing usable.
    """
    path = field.split(".")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return scan_string_field(line, path[-1].encode())
    return key_from(obj, path)
