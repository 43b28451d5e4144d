"""FileSource on its own: lines and resume positions across read-chunk boundaries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotmon.sources import files
from iotmon.sources.base import Batch, Position


async def _read_all(path: Path) -> list[Batch]:
    source = files.FileSource(path)

    async def on_assign(names: list[str]) -> dict[str, Position | None]:
        return {}

    async def on_revoke(names: list[str]) -> None:
        return None

    await source.open(on_assign=on_assign, on_revoke=on_revoke)
    try:
        return [batch async for batch in source.batches() if batch is not None]
    finally:
        await source.close()


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    terminated=st.booleans(),
    chunk=st.integers(min_value=1, max_value=20),
)
def test_lines_and_offsets_do_not_depend_on_the_read_size(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], terminated: bool, chunk: int
) -> None:
    data = b"\n".join(lines) + (b"\n" if terminated and lines else b"")
    path = tmp_path_factory.mktemp("src") / "log.txt"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "CHUNK_BYTES", chunk)
        batches = asyncio.run(_read_all(path))

    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert [line for batch in batches for line in batch.lines] == expected
    assert [n for batch in batches for n in batch.positions] == list(range(1, len(expected) + 1))
    # Each batch ends where its last line (and its newline, if any) ends in the file.
    consumed = 0
    for batch in batches:
        consumed += sum(len(line) + 1 for line in batch.lines)
        assert batch.end["offset"] == min(consumed, len(data))
        assert batch.end["line"] == batch.positions[-1]
