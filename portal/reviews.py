"""An analyst's review of an alert: confirm fraud, false positive, or escalate, with a note.

Writes (one transaction, the alert row locked): for confirm / false positive, exactly what
``monitoring.feedback.review_alert`` writes (fraud_alerts status, reviewed_by, reviewed_at,
notes; the label with source ``analyst``; audit_log ``alert_reviewed``); for an escalation,
the alert's status ``escalated`` with the reviewer, time and note, and an ``alert_reviewed``
audit row, but no label (nobody decided yet).

Idempotent: the form carries the alert's state when it was shown; a second submission of the
same form (a double click) finds the state changed to what it asked for and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from fraudops.records import insert_audit
from monitoring.feedback import REVIEW_STATUSES, review_alert

ESCALATED = "escalated"
DECISIONS = (*REVIEW_STATUSES, ESCALATED)  # confirmed, false_positive, escalated
MAX_NOTE_LENGTH = 2000
AUDIT_EVENT = "alert_reviewed"  # the event monitoring.feedback writes


class ReviewRefused(ValueError):
    """A review that cannot be applied; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReviewOutcome:
    applied: bool  # False: the same review was already recorded (nothing written)
    status: str
    message: str


def alert_state(status: str, reviewed_at) -> str:
    """The token a review form carries: the alert's status and review time when it was shown."""
    return f"{status}|{reviewed_at.isoformat() if reviewed_at else ''}"


def check_review_input(decision: str, note: str | None) -> str | None:
    """The cleaned note; ReviewRefused (400) naming the field when the input is malformed."""
    if decision not in DECISIONS:
        raise ReviewRefused(f"decision={decision!r} must be one of {', '.join(DECISIONS)}", 400)
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE_LENGTH:
        raise ReviewRefused(f"note: at most {MAX_NOTE_LENGTH} characters", 400)
    return note


def apply_review(conn, transaction_id: str, decision: str, note: str | None, reviewer: str,
                 shown_state: str) -> ReviewOutcome:
    """Apply the review unless the alert changed since the form was shown.

    Raises:
        ReviewRefused: 400 bad input, 404 no such alert, 409 someone else reviewed it meanwhile.
    """
    note = check_review_input(decision, note)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT alert_status, reviewed_at, reviewed_by FROM fraud_alerts "
                        "WHERE transaction_id = %s FOR UPDATE", (transaction_id,))
            row = cur.fetchone()
        if row is None:
            raise ReviewRefused(f"no fraud alert for transaction {transaction_id!r}", 404)
        status, reviewed_at, reviewed_by = row
        if alert_state(status, reviewed_at) != shown_state:
            conn.rollback()
            if status == decision:
                return ReviewOutcome(False, status, f"already recorded: {status} by {reviewed_by}")
            raise ReviewRefused(f"the alert changed meanwhile (now {status} by {reviewed_by or 'nobody'}); "
                                "reload it and review again", 409)
        if decision == ESCALATED:
            _escalate(conn, transaction_id, note, reviewer, status)
        else:
            review_alert(conn, transaction_id, decision, reviewer, note)  # commits
    except BaseException:
        conn.rollback()
        raise
    return ReviewOutcome(True, decision, f"recorded: {decision}")


def _escalate(conn, transaction_id: str, note: str | None, reviewer: str, previous: str) -> None:
    with conn.cursor() as cur:
        cur.execute("UPDATE fraud_alerts SET alert_status = %s, reviewed_by = %s, reviewed_at = now(), notes = %s "
                    "WHERE transaction_id = %s", (ESCALATED, reviewer, note, transaction_id))
    insert_audit(conn, AUDIT_EVENT, reviewer, {"transaction_id": transaction_id, "status": ESCALATED,
                                               "previous_status": previous, "note": note})
    conn.commit()
