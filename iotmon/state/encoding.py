"""JSON documents too big to build at once: checkpoints of a million devices.

``orjson.dumps(state)`` needs the whole state as Python objects first — a list and a dozen
floats per device, several times the size of the state itself — and then the bytes on
top. :func:`encode_document` instead encodes a :class:`Chunked` member a few thousand
items at a time and returns the document as a list of fragments, so a checkpoint costs
about its encoded size in memory, not that plus the objects. ``b"".join(fragments)`` is
exactly what ``orjson.dumps`` would have produced with the member as a dict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeAlias

import orjson

__all__ = [
    "Chunked",
    "Fragments",
    "encode_document",
    "fragments_of",
    "rechunk",
    "sha256_of",
    "size_of",
]

Fragments: TypeAlias = Sequence[bytes]
"""A document as consecutive pieces of its bytes."""

_CHUNK_ITEMS = 4096


@dataclass(frozen=True, slots=True)
class Chunked:
    """A JSON object member given as lazily produced ``(key, JSON-able value)`` pairs."""

    items: Iterable[tuple[str, Any]]


def encode_document(
    doc: Mapping[str, Any], *, write: Callable[[bytes], object] | None = None
) -> list[bytes]:
    """Encode ``doc`` (which may contain :class:`Chunked` members, in nested dicts too).
    With ``write`` each fragment goes there as soon as it is made (and nothing is returned),
    so not even the encoded document is held in memory."""
    out: list[bytes] = []
    _encode(doc, write or out.append)
    return out


def fragments_of(payload: bytes | Fragments) -> Fragments:
    return (payload,) if isinstance(payload, bytes) else payload


def size_of(payload: bytes | Fragments) -> int:
    return sum(map(len, fragments_of(payload)))


def sha256_of(payload: bytes | Fragments) -> str:
    digest = hashlib.sha256()
    for fragment in fragments_of(payload):
        digest.update(fragment)
    return digest.hexdigest()


def rechunk(payload: bytes | Fragments, size: int) -> Iterator[bytes]:
    """The payload cut into pieces of ``size`` bytes (the last one shorter; one empty piece
    for an empty payload)."""
    pending = bytearray()
    produced = False
    for fragment in fragments_of(payload):
        pending += fragment
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
            produced = True
    if pending or not produced:
        yield bytes(pending)


def _encode(value: Any, out: Callable[[bytes], object]) -> None:
    if isinstance(value, Chunked):
        _encode_chunked(value, out)
    elif isinstance(value, dict) and _has_chunked(value):
        out(b"{")
        for i, (key, member) in enumerate(value.items()):
            if i:
                out(b",")
            out(orjson.dumps(key))
            out(b":")
            _encode(member, out)
        out(b"}")
    else:
        out(orjson.dumps(value))


def _encode_chunked(value: Chunked, out: Callable[[bytes], object]) -> None:
    out(b"{")
    items = iter(value.items)
    first = True
    while batch := dict(islice(items, _CHUNK_ITEMS)):
        if not first:
            out(b",")
        # The batch's own braces stripped: its members go into the one enclosing object.
        out(orjson.dumps(batch)[1:-1])
        first = False
    out(b"}")


def _has_chunked(value: dict[Any, Any]) -> bool:
    return any(
        isinstance(member, Chunked) or (isinstance(member, dict) and _has_chunked(member))
        for member in value.values()
    )
