"""The durable outbox on a real directory: persistence, dedupe, crash leftovers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from iotmon.notify import (
    EmailSettings,
    Notification,
    Outbox,
    OutboxError,
    render_email,
)
from tests.helpers import sample_digest

S = 1_000_000
T0 = 1_678_882_537 * S
SETTINGS = EmailSettings(mail_from="iotmon@plant.example", mail_to=("ops@plant.example",))


def notification(n: int) -> Notification:
    digest = sample_digest(n)
    return Notification(message=render_email(digest, settings=SETTINGS), digest=digest)


def test_a_queued_notification_survives_a_restart_byte_for_byte(tmp_path: Path) -> None:
    first = notification(1)
    assert Outbox(tmp_path).put(first)

    reopened = Outbox(tmp_path)
    [entry] = reopened.pending()
    assert entry.digest == first.digest
    assert entry.raw == first.message.as_bytes()
    restored = entry.notification()
    assert restored.message_id == first.message_id
    assert restored.message["Subject"] == first.message["Subject"]


def test_queue_order_is_kept_across_a_restart(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    # Ids in descending order, so neither id nor a coarse clock could give this order.
    for n in (9, 3, 7, 1):
        outbox.put(notification(n))
    assert [e.digest.slot_us for e in Outbox(tmp_path).pending()] == [
        T0 + n * S for n in (9, 3, 7, 1)
    ]


def test_notifications_queued_after_a_mark_are_discarded_for_good(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    for n in (1, 2, 3):
        outbox.put(notification(n))
    mark = outbox.pending()[0].seq
    assert outbox.discard_after(mark) == [notification(n).digest.digest_id for n in (2, 3)]
    kept = [notification(1).digest.digest_id]
    assert [e.digest_id for e in outbox.pending()] == kept
    assert [e.digest_id for e in Outbox(tmp_path).pending()] == kept
    # Discarded, not delivered: the partitions' owner may queue the same digest again.
    assert outbox.state_of(notification(2).digest.digest_id) is None


def test_a_known_digest_is_not_queued_again_pending_sent_or_failed(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    assert outbox.put(notification(1))
    assert not outbox.put(notification(1))
    assert outbox.state_of(f"{1:032x}") == "pending"

    outbox.mark_sent(f"{1:032x}")
    assert outbox.state_of(f"{1:032x}") == "sent"
    assert not outbox.put(notification(1))

    assert outbox.put(notification(2))
    outbox.mark_failed(f"{2:032x}", "550 mailbox unavailable")
    assert not outbox.put(notification(2))
    assert len(outbox) == 0

    reopened = Outbox(tmp_path)
    assert reopened.pending() == []
    assert not reopened.put(notification(1))
    assert not reopened.put(notification(2))
    assert reopened.failed_count() == 1
    failed = (tmp_path / "failed" / f"{2:032x}.json").read_text()
    assert "550 mailbox unavailable" in failed


def test_crash_leftovers_are_resolved_on_open(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.put(notification(1))
    outbox.put(notification(2))
    # Crash during a write, before its rename: a stray temporary file.
    (tmp_path / "tmp" / f"{3:032x}.json").write_bytes(b'{"trunc')
    # Crash during mark_sent, after the copy into sent/ but before pending/ was cleaned.
    shutil.copy(tmp_path / "pending" / f"{1:032x}.json", tmp_path / "sent" / f"{1:032x}.json")

    reopened = Outbox(tmp_path)
    assert [e.digest_id for e in reopened.pending()] == [f"{2:032x}"]
    assert reopened.state_of(f"{1:032x}") == "sent"
    assert list((tmp_path / "tmp").iterdir()) == []
    assert reopened.put(notification(3))


def test_sent_ids_are_forgotten_after_the_retention(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, sent_retention=3600)
    outbox.put(notification(1))
    outbox.mark_sent(f"{1:032x}")
    sent = tmp_path / "sent" / f"{1:032x}.json"
    old = sent.stat().st_mtime - 7200
    os.utime(sent, (old, old))
    assert Outbox(tmp_path, sent_retention=3600).put(notification(1))


def test_a_corrupt_record_is_an_error_naming_the_file(tmp_path: Path) -> None:
    Outbox(tmp_path).put(notification(1))
    path = tmp_path / "pending" / f"{1:032x}.json"
    path.write_bytes(b"not json")
    with pytest.raises(OutboxError, match=str(path)):
        Outbox(tmp_path)
