"""How the demo looks in a terminal: the live status while it runs, each email as it
arrives, and the end-of-run summary compared with the fleet's ground truth."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

from iotmon.views.console import StatusPrinter

if TYPE_CHECKING:
    from iotmon.engine.pipeline import Pipeline
    from iotmon.tools.demo import DemoOptions, DemoResult
    from iotmon.tools.demo_inbox import ReceivedEmail

__all__ = ["format_email", "format_summary", "status_printer"]


@contextlib.asynccontextmanager
async def status_printer(options: DemoOptions, pipeline: Pipeline) -> AsyncIterator[StatusPrinter]:
    printer = StatusPrinter(
        pipeline, live=options.live, interval=options.status_interval, threshold=options.threshold
    )
    async with printer:
        yield printer


_RULE: Final = "=" * 78


def format_email(received: ReceivedEmail, number: int) -> str:
    """An email as the demo prints it: framed, subject first, then the plain-text body."""
    head = (
        f"EMAIL #{number}  received {received.after_s:.1f} s after the start  "
        f"from {received.mail_from} to {', '.join(received.rcpt_tos)}"
    )
    return "\n".join([_RULE, head, f"Subject: {received.subject}", "-" * 78, received.body, _RULE])


def format_summary(result: DemoResult) -> str:
    """The end-of-run summary: what was streamed, who fired vs the ground truth, emails."""
    report = result.report
    reasons = ", ".join(f"{k} {v}" for k, v in report.rejected_by_reason.items()) or "none"
    spikers_fired = sorted(set(result.spikers) & set(result.fired))
    if result.emails:
        first = result.first_email_after
        emails = f"{len(result.emails)}, the first {first:.1f} s after the start"
    else:
        emails = "0 (a longer run gives the overheaters time to ramp up: try `duration` 40)"
    via = f"SMTP server {result.smtp_address}" if result.smtp_address else "outbox (.eml files)"
    lines = [
        _RULE,
        "demo summary",
        f"streamed: {result.elapsed_s:.1f} s of wall time = {result.event_span_s:.0f} s of "
        f"event time" + (f" through Kafka topic {result.topic}" if result.topic else ""),
        f"readings: {report.readings} read, {report.accepted} accepted, "
        f"{report.rejected} rejected (by reason: {reasons})",
        f"devices: {len(report.devices)} tracked",
        f"overheating devices (ground truth): {len(result.overheaters)}",
        f"fired ({len(result.fired)}): {', '.join(result.fired) or 'none'}",
        f"overheaters not fired yet ({len(result.not_fired)}): "
        f"{', '.join(result.not_fired) or 'none'}",
        f"fired but not designed to overheat ({len(result.unexpected)}): "
        f"{', '.join(result.unexpected) or 'none'}",
        f"spiking devices that fired: {len(spikers_fired)} of {len(result.spikers)}",
        f"emails received ({via}): {emails}",
        f"silenced after the first email: {result.silenced or 'none'}",
    ]
    if result.state_kept:
        lines.append(f"state (checkpoints, dead letters, alerts log): {result.state_dir}")
    lines.append(_RULE)
    return "\n".join(lines)
