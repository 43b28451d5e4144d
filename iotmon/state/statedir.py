"""Durable checkpoints: one file per partition, plus one for process-wide alert state.

Each partition file holds that partition's statistics, alert states, unannounced alert
changes, counters and the source position they include, written atomically (write to a
temporary file, fsync, rename, fsync the directory), so after a crash a partition is always
either at its previous checkpoint or at its new one — never in between. Files carry a format
name and version; anything else found there is an error, never a silent reset.

Each document ends with the SHA-256 of itself without that last member (``"sha256"``), so
a checkpoint edited or damaged after iotmon wrote it is refused instead of restored
silently; checking costs one hash over the bytes already read, no re-encoding. Version 1
documents (before the checksum) are still read, with a warning, and rewritten as version 2
at the next checkpoint.

With Kafka input the same payloads also go to the group's changelog topic
(:mod:`iotmon.kafka.changelog`), which is the copy that counts: these files are then a cache
that saves downloading a checkpoint this instance already holds.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final

import orjson

from iotmon.errors import IotmonError
from iotmon.state.documents import (
    DocumentError,
    PartitionDocument,
    ProcessDocument,
    decode_partition_body,
    decode_process_body,
    partition_body,
    process_body,
)
from iotmon.state.encoding import Fragments, encode_document, fragments_of

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "StagedFile",
    "StateDir",
    "decode_partition",
    "partition_filename",
]


log = logging.getLogger(__name__)

FORMAT: Final = "iotmon-checkpoint"
VERSION: Final = 2
_UNSEALED_VERSION: Final = 1
"""Written before checkpoints carried a checksum: still read, so an upgrade strands nobody."""
_SEAL_HEAD: Final = b',"sha256":"'
_SEAL_BYTES: Final = len(_SEAL_HEAD) + 64 + len(b'"}')


class CheckpointError(IotmonError, RuntimeError):
    """A state file that cannot be used; the message says what to do about it."""

    def __init__(self, message: str, *, setting: str | tuple[str, ...] = "state_dir") -> None:
        super().__init__(message, setting=setting)


def partition_filename(partition: str) -> str:
    """A readable, collision-free file name for a partition name (``file:/a/b`` …)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in partition)
    digest = hashlib.sha256(partition.encode()).hexdigest()[:8]
    return f"{cleaned.strip('._')[-80:] or 'partition'}-{digest}"


def _write_atomically(path: Path, payload: bytes | Fragments, *, durable: bool = True) -> None:
    tmp = _temporary(path)
    with tmp.open("wb") as handle:
        handle.writelines(fragments_of(payload))
    if durable:
        StagedFile(tmp, path).commit()
    else:
        os.replace(tmp, path)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


class StagedFile:
    """A file written next to its target but neither durable nor in place yet."""

    def __init__(self, tmp: Path, target: Path) -> None:
        self._tmp = tmp
        self._target = target

    def commit(self) -> None:
        """fsync it, rename it over the target, fsync the directory (blocking: run it in a
        thread)."""
        _fsync(self._tmp)
        os.replace(self._tmp, self._target)
        _fsync(self._target.parent)


def _fsync(path: Path) -> None:
    """fsync a file or a directory by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path, *, kind: str) -> dict[str, object]:
    return _decode(path.read_bytes(), origin=str(path), kind=kind)


def _remedy(kind: str) -> str:
    if kind == "partition":
        return (
            "delete it to rebuild that partition from its source (with Kafka the changelog "
            "restores it), or restore the file from a backup"
        )
    return "delete it to start the alert state afresh, or restore the file from a backup"


def _decode(payload: bytes, *, origin: str, kind: str) -> dict[str, object]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(
            f"{origin} is corrupt ({exc}); move it away to start that {kind} from scratch, "
            "or point `state_dir` at another folder"
        ) from exc
    if type(doc) is not dict or doc.get("format") != FORMAT:
        raise CheckpointError(
            f"{origin} is not an iotmon checkpoint; point `state_dir` at a folder that only "
            "iotmon writes to"
        )
    version = doc.get("version")
    if version == _UNSEALED_VERSION:
        return doc
    if version != VERSION:
        raise CheckpointError(
            f"{origin} has checkpoint format version {version!r}, this iotmon reads versions "
            f"{_UNSEALED_VERSION} and {VERSION}; use the iotmon release that wrote it, or start "
            "with a fresh `state_dir`"
        )
    if not _seal_matches(payload, doc.pop("sha256", None)):
        raise CheckpointError(
            f"{origin} does not match its checksum (changed after iotmon wrote it); "
            + _remedy(kind)
        )
    return doc


def _accept_unsealed(doc: dict[str, object], *, origin: str) -> None:
    """Said once the document has passed every other check (an error is the only line)."""
    if doc.get("version") == _UNSEALED_VERSION:
        log.warning(
            "%s has no checksum (written by an older iotmon); using it, the next checkpoint "
            "rewrites it with one",
            origin,
        )


def _seal_matches(payload: bytes, recorded: object) -> bool:
    """Whether ``payload`` ends with the seal :class:`_Sealer` writes, holding the SHA-256 of
    the document without it."""
    if not isinstance(recorded, str) or len(payload) <= _SEAL_BYTES:
        return False
    body = memoryview(payload)[:-_SEAL_BYTES]
    if payload[-_SEAL_BYTES:] != _SEAL_HEAD + recorded.encode() + b'"}':
        return False
    digest = hashlib.sha256(body)
    digest.update(b"}")
    return digest.hexdigest() == recorded


class _Sealer:
    """Passes a document's fragments on, holding back the closing brace, which
    :meth:`close` replaces with ``,"sha256":"<hex>"}`` — the hash of everything passed."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._digest = hashlib.sha256()
        self._held = b""

    def __call__(self, fragment: bytes) -> None:
        if not fragment:
            return
        if self._held:
            self._write(self._held)
        self._digest.update(fragment)
        self._held = fragment

    def close(self) -> None:
        assert self._held.endswith(b"}"), "a JSON object"
        seal = _SEAL_HEAD + self._digest.hexdigest().encode() + b'"}'
        self._write(self._held[:-1] + seal)


def _encode_sealed(
    doc: dict[str, object], *, write: Callable[[bytes], object] | None = None
) -> list[bytes]:
    out: list[bytes] = []
    sealer = _Sealer(write or out.append)
    encode_document(doc, write=sealer)
    sealer.close()
    return out


def decode_partition(
    partition: str, payload: bytes, *, origin: str, hint: str = ""
) -> PartitionDocument:
    """A partition checkpoint (a local file or a changelog record), checked: format,
    version, checksum, field types and that it is ``partition``'s; ``hint`` is appended to
    the error saying not."""
    raw = _decode(payload, origin=origin, kind="partition")
    if raw.get("partition") != partition:
        raise CheckpointError(
            f"{origin} belongs to partition {raw.get('partition')!r}, not {partition!r}{hint}"
        )
    return _typed_partition(raw, origin=origin)


def _typed_partition(raw: dict[str, object], *, origin: str) -> PartitionDocument:
    """The fields a restore turns into numbers are checked up front: a wrong type is a
    clear error naming the file and field, not a bare ``int()`` failure half-way through."""
    try:
        doc = decode_partition_body(raw)
    except ValueError as exc:  # DocumentError, or a malformed change row
        raise CheckpointError(f"{origin}: {exc}; " + _remedy("partition")) from exc
    _accept_unsealed(raw, origin=origin)
    return doc


def _envelope(partition: str, body: dict[str, object]) -> dict[str, object]:
    return {"format": FORMAT, "version": VERSION, "partition": partition, **body}


class StateDir:
    """The ``--state-dir`` folder: partition checkpoints, alert state, DLQ files, outbox.

    Holding it takes an exclusive lock, because two processes writing the same checkpoints
    would each silently undo the other's progress. The lock is on the directory itself, which
    cannot be deleted from under a running process as a lock file can (``rm LOCK``); the
    ``LOCK`` file is locked too, so an older iotmon, which locks only that, is kept out.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partitions_dir = root / "partitions"
        self._locks: list[int] = []

    def open(self) -> None:
        self.partitions_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY))
            self._lock(os.open(self.root / "LOCK", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
        except BaseException:
            self.close()
            raise

    def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointError(
                f"{self.root} is in use by another iotmon process; stop it first or give this "
                "one its own `state_dir`"
            ) from None
        self._locks.append(fd)

    def close(self) -> None:
        while self._locks:
            os.close(self._locks.pop())

    def partition_path(self, partition: str) -> Path:
        return self.partitions_dir / f"{partition_filename(partition)}.json"

    def load_partition(self, partition: str) -> PartitionDocument | None:
        path = self.partition_path(partition)
        if not path.exists():
            return None
        return decode_partition(
            partition,
            path.read_bytes(),
            origin=str(path),
            hint="; remove it or use another `state_dir`",
        )

    def partitions(self) -> list[PartitionDocument]:
        if not self.partitions_dir.exists():
            return []
        return [
            _typed_partition(_read(path, kind="partition"), origin=str(path))
            for path in sorted(self.partitions_dir.glob("*.json"))
        ]

    def encode_partition(self, doc: PartitionDocument) -> list[bytes]:
        """Serialise now (in the event loop, so the snapshot is consistent); ``doc`` may
        hold :class:`~iotmon.state.encoding.Chunked` members."""
        return _encode_sealed(_envelope(doc.partition, partition_body(doc)))

    def stage_partition(self, doc: PartitionDocument) -> StagedFile:
        """:meth:`encode_partition` straight into a temporary file beside the checkpoint, so
        the encoded state is never held in memory: the state dir is the only copy (file
        input, or Kafka without a changelog). Synchronous, like the encoding it replaces;
        :meth:`StagedFile.commit` then makes it durable and puts it in place."""
        path = self.partition_path(doc.partition)
        tmp = _temporary(path)
        with tmp.open("wb") as handle:
            _encode_sealed(_envelope(doc.partition, partition_body(doc)), write=handle.write)
        return StagedFile(tmp, path)

    def cache_partition(self, partition: str, payload: bytes | Fragments) -> None:
        """Keep a copy of a checkpoint whose durable copy is elsewhere (the changelog):
        atomic against a process crash, but not fsynced, so a power loss can leave it
        outdated or torn — which a restore then detects and ignores."""
        _write_atomically(self.partition_path(partition), payload, durable=False)

    def remove_partition(self, partition: str) -> None:
        self.partition_path(partition).unlink(missing_ok=True)

    @property
    def process_path(self) -> Path:
        return self.root / "process.json"

    def load_process(self) -> ProcessDocument | None:
        if not self.process_path.exists():
            return None
        origin = str(self.process_path)
        raw = _read(self.process_path, kind="process")
        try:
            doc = decode_process_body(raw)
        except DocumentError as exc:
            raise CheckpointError(f"{origin}: {exc}; " + _remedy("process")) from exc
        _accept_unsealed(raw, origin=origin)
        return doc

    def write_process(self, doc: ProcessDocument) -> None:
        payload = _encode_sealed({"format": FORMAT, "version": VERSION, **process_body(doc)})
        _write_atomically(self.process_path, payload)

    def instance_id(self) -> str:
        """A random id made on first use and kept here: names this instance in its consumer
        group (transactional id), the same after a restart with the same state dir."""
        path = self.root / "instance-id"
        try:
            existing = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            return existing
        made = uuid.uuid4().hex[:12]
        _write_atomically(path, made.encode("ascii") + b"\n")
        return made
