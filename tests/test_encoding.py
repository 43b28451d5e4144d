"""Checkpoint documents encoded a chunk of devices at a time are byte for byte what one
``orjson.dumps`` of the whole state would give."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from iotmon.state.encoding import Chunked, encode_document, rechunk, sha256_of

rows = st.dictionaries(
    st.text(max_size=12),
    st.lists(
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.none()),
        max_size=4,
    ),
    max_size=9000,
)


@given(stats=rows, alerts=rows)
def test_chunked_members_encode_like_plain_dicts(
    stats: dict[str, Any], alerts: dict[str, Any]
) -> None:
    header = {"format": "x", "position": {"offset": 3}}

    def document() -> dict[str, Any]:
        return {
            **header,
            "stats": {"late": 1, "devices": Chunked(iter(stats.items()))},
            "alerts": {"version": 1, "devices": Chunked(iter(alerts.items()))},
        }

    plain = {
        **header,
        "stats": {"late": 1, "devices": stats},
        "alerts": {"version": 1, "devices": alerts},
    }
    assert b"".join(encode_document(document())) == orjson.dumps(plain)
    written = io.BytesIO()
    assert encode_document(document(), write=written.write) == []
    assert written.getvalue() == orjson.dumps(plain)


def test_a_document_without_chunked_members_is_one_fragment() -> None:
    assert encode_document({"a": [1, 2.5]}) == [b'{"a":[1,2.5]}']


@given(pieces=st.lists(st.binary(max_size=40), max_size=20), size=st.integers(1, 33))
def test_rechunk_cuts_fragments_into_fixed_pieces(pieces: list[bytes], size: int) -> None:
    whole = b"".join(pieces)
    chunks = list(rechunk(pieces, size))
    assert b"".join(chunks) == whole
    assert all(len(c) == size for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= size or chunks == [b""]
    assert chunks == list(rechunk(whole, size))
    assert sha256_of(pieces) == hashlib.sha256(whole).hexdigest()
