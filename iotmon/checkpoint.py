"""Durable checkpoints: one file per partition, plus one for process-wide alert state.

Each partition file holds that partition's statistics, alert states, unannounced alert
changes, counters and the source position they include, written atomically (write to a
temporary file, fsync, rename, fsync the directory), so after a crash a partition is always
either at its previous checkpoint or at its new one — never in between. Files carry a format
name and version; anything else found there is an error, never a silent reset.

With Kafka input the same payloads also go to the group's changelog topic
(:mod:`iotmon.changelog`), which is the copy that counts: these files are then a cache
that saves downloading a checkpoint this instance already holds.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
from pathlib import Path
from typing import IO, Any, Final

import orjson

from iotmon.encoding import Fragments, encode_document, fragments_of

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "StagedFile",
    "StateDir",
    "decode_partition",
    "partition_filename",
]


FORMAT: Final = "iotmon-checkpoint"
VERSION: Final = 1


class CheckpointError(RuntimeError):
    """A state file that cannot be used; the message says what to do about it."""


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


def _read(path: Path, *, kind: str) -> dict[str, Any]:
    return _decode(path.read_bytes(), origin=str(path), kind=kind)


def _decode(payload: bytes, *, origin: str, kind: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(
            f"{origin} is corrupt ({exc}); move it away to start that {kind} from scratch, "
            "or point --state-dir at another folder"
        ) from exc
    if type(doc) is not dict or doc.get("format") != FORMAT:
        raise CheckpointError(
            f"{origin} is not an iotmon checkpoint; point --state-dir at a folder that only "
            "iotmon writes to"
        )
    version = doc.get("version")
    if version != VERSION:
        raise CheckpointError(
            f"{origin} has checkpoint format version {version!r}, this iotmon reads version "
            f"{VERSION}; use the iotmon release that wrote it, or start with a fresh --state-dir"
        )
    return doc


def decode_partition(
    partition: str, payload: bytes, *, origin: str, hint: str = ""
) -> dict[str, Any]:
    """A partition checkpoint (a local file or a changelog record), checked: format,
    version and that it is ``partition``'s; ``hint`` is appended to the error saying not."""
    doc = _decode(payload, origin=origin, kind="partition")
    if doc.get("partition") != partition:
        raise CheckpointError(
            f"{origin} belongs to partition {doc.get('partition')!r}, not {partition!r}{hint}"
        )
    return doc


def _partition_document(partition: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "partition": partition, **body}


class StateDir:
    """The ``--state-dir`` folder: partition checkpoints, alert state, DLQ files, outbox.

    Holding it takes an exclusive lock, because two processes writing the same checkpoints
    would each silently undo the other's progress.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.partitions_dir = root / "partitions"
        self._lock: IO[bytes] | None = None

    def open(self) -> None:
        self.partitions_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.root / "LOCK").open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise CheckpointError(
                f"{self.root} is in use by another iotmon process; stop it first or give this "
                "one its own --state-dir"
            ) from None
        self._lock = lock

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def partition_path(self, partition: str) -> Path:
        return self.partitions_dir / f"{partition_filename(partition)}.json"

    def load_partition(self, partition: str) -> dict[str, Any] | None:
        path = self.partition_path(partition)
        if not path.exists():
            return None
        return decode_partition(
            partition,
            path.read_bytes(),
            origin=str(path),
            hint="; remove it or use another --state-dir",
        )

    def partitions(self) -> list[dict[str, Any]]:
        if not self.partitions_dir.exists():
            return []
        return [
            _read(path, kind="partition") for path in sorted(self.partitions_dir.glob("*.json"))
        ]

    def encode_partition(self, partition: str, body: dict[str, Any]) -> list[bytes]:
        """Serialise now (in the event loop, so the snapshot is consistent); ``body`` may
        hold :class:`~iotmon.encoding.Chunked` members."""
        return encode_document(_partition_document(partition, body))

    def stage_partition(self, partition: str, body: dict[str, Any]) -> StagedFile:
        """:meth:`encode_partition` straight into a temporary file beside the checkpoint, so
        the encoded state is never held in memory: the state dir is the only copy (file
        input, or Kafka without a changelog). Synchronous, like the encoding it replaces;
        :meth:`StagedFile.commit` then makes it durable and puts it in place."""
        path = self.partition_path(partition)
        tmp = _temporary(path)
        with tmp.open("wb") as handle:
            encode_document(_partition_document(partition, body), write=handle.write)
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

    def load_process(self) -> dict[str, Any] | None:
        if not self.process_path.exists():
            return None
        return _read(self.process_path, kind="process")

    def write_process(self, body: dict[str, Any]) -> None:
        payload = orjson.dumps({"format": FORMAT, "version": VERSION, **body})
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
