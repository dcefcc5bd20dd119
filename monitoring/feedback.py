"""Analyst feedback: list the pending fraud alerts, then confirm them or mark them false positives.

Reads:  PostgreSQL ``<pg-schema>``.fraud_alerts (and transactions, to tell an unknown transaction
        from one without an alert).
Writes: in ONE transaction: the alert's alert_status, reviewed_by, reviewed_at, notes; a label
        (source ``analyst``, is_fraud = confirmed) that replaces an earlier analyst label of the same
        transaction; an audit_log row ``alert_reviewed``. Labels feed the merchant risk of the
        streaming job, the monitoring metrics and pipelines.retrain.

Run:
    python -m monitoring.feedback list [--limit 50]
    python -m monitoring.feedback review TXN_... --status confirmed --reviewer alice --note "customer confirmed"
    python -m monitoring.feedback review TXN_... --status false_positive --reviewer bob
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from fraudops.contract.tables import ALERT_STATUSES
from monitoring.storage import connect_schema, insert_audit, read_frame

REVIEW_STATUSES = tuple(s for s in ALERT_STATUSES if s != "pending")  # confirmed, false_positive
LABEL_SOURCE = "analyst"
LIST_COLUMNS = ["transaction_id", "user_id", "amount", "currency", "merchant", "country", "transaction_time",
                "fraud_score", "model_version", "detection_time"]


class ReviewError(ValueError):
    """A review that cannot be applied (the message names the argument)."""


@dataclass(frozen=True)
class Review:
    """An applied review."""

    transaction_id: str
    status: str
    previous_status: str
    reviewed_by: str
    reviewed_at: datetime
    is_fraud: bool


def pending_alerts(conn, limit: int = 50) -> pd.DataFrame:
    """The oldest ``limit`` pending alerts (highest score first within a detection time)."""
    columns = ", ".join(LIST_COLUMNS)
    return read_frame(conn, f"""
        SELECT {columns} FROM fraud_alerts WHERE alert_status = 'pending'
        ORDER BY detection_time, fraud_score DESC, transaction_id LIMIT %(limit)s""", {"limit": limit})


def check_review(transaction_id: str, status: str, reviewer: str) -> None:
    """Raise ReviewError naming the argument when the review is malformed."""
    if not (transaction_id or "").strip():
        raise ReviewError("transaction_id must not be empty")
    if status not in REVIEW_STATUSES:
        raise ReviewError(f"status={status!r} must be one of {', '.join(REVIEW_STATUSES)}")
    if not (reviewer or "").strip():
        raise ReviewError("reviewer must not be empty")


def _lock_alert(cur, transaction_id: str) -> str:
    """The alert's current status (row locked); ReviewError naming transaction_id when there is none."""
    cur.execute("SELECT alert_status FROM fraud_alerts WHERE transaction_id = %s FOR UPDATE", (transaction_id,))
    row = cur.fetchone()
    if row is not None:
        return row[0]
    cur.execute("SELECT 1 FROM transactions WHERE transaction_id = %s", (transaction_id,))
    if cur.fetchone() is None:
        raise ReviewError(f"transaction_id={transaction_id!r} is not a known transaction")
    raise ReviewError(f"transaction_id={transaction_id!r} has no fraud alert to review")


def review_alert(conn, transaction_id: str, status: str, reviewer: str, note: str | None = None) -> Review:
    """Set the alert's review and write the analyst label, in one transaction.

    Reviewing an alert again replaces the earlier review and analyst label.

    Raises:
        ReviewError: unknown transaction, no alert, bad status or empty reviewer (named).
    """
    check_review(transaction_id, status, reviewer)
    try:
        with conn.cursor() as cur:
            previous = _lock_alert(cur, transaction_id)
            cur.execute(
                "UPDATE fraud_alerts SET alert_status = %s, reviewed_by = %s, reviewed_at = now(), notes = %s "
                "WHERE transaction_id = %s RETURNING reviewed_at",
                (status, reviewer.strip(), note, transaction_id))
            reviewed_at = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO labels (transaction_id, is_fraud, source, labeled_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (transaction_id, source) DO UPDATE SET is_fraud = EXCLUDED.is_fraud, "
                "labeled_at = EXCLUDED.labeled_at",
                (transaction_id, status == "confirmed", LABEL_SOURCE, reviewed_at))
        insert_audit(conn, "alert_reviewed", reviewer.strip(),
                     {"transaction_id": transaction_id, "status": status, "previous_status": previous, "note": note})
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return Review(transaction_id, status, previous, reviewer.strip(), reviewed_at, status == "confirmed")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m monitoring.feedback`` (list, review)."""
    from fraudops.cli import HelpFormatter, add_command

    p = argparse.ArgumentParser(prog="python -m monitoring.feedback", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter,
                                epilog="commands:\n" + __doc__.split("Run:\n", 1)[1].rstrip())
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--pg-schema", default="public", help="PostgreSQL schema of fraud_alerts and labels")
    commands = p.add_subparsers(dest="command", required=True)
    listing = add_command(commands, "list", help="pending alerts, oldest first", parents=[common])
    listing.add_argument("--limit", type=int, default=50, help="most alerts listed")
    review = add_command(commands, "review", help="confirm an alert or mark it a false positive", parents=[common])
    review.add_argument("transaction_id", help="the alerted transaction")
    review.add_argument("--status", required=True, choices=REVIEW_STATUSES, help="the review's outcome")
    review.add_argument("--reviewer", required=True, help="who reviewed it")
    review.add_argument("--note", default=None, help="free text kept with the review (default: none)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from fraudops.settings import load_settings

    args = build_parser().parse_args(argv)
    try:
        conn = connect_schema(load_settings(), args.pg_schema)
    except (ValueError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "list":
            alerts = pending_alerts(conn, args.limit)
            print(alerts.to_string(index=False) if not alerts.empty else "no pending alerts")
            return 0
        done = review_alert(conn, args.transaction_id, args.status, args.reviewer, args.note)
        print(f"{done.transaction_id}: {done.previous_status} -> {done.status} by {done.reviewed_by}; "
              f"label is_fraud={done.is_fraud} (source {LABEL_SOURCE})")
        return 0
    except ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
