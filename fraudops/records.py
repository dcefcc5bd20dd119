"""The one writer of the monitoring_metrics and audit_log tables (streaming job, monitoring
commands and pipelines all call these). Neither function commits: the caller decides, so a
metric or an audit row can share a transaction with other writes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fraudops.jsonutil import strict_dumps


@dataclass(frozen=True)
class MetricRow:
    """One monitoring_metrics row: a named value (None when undefined) with labels."""

    name: str
    value: float | None
    labels: Mapping[str, Any] = field(default_factory=dict)


def finite_or_none(value) -> float | None:
    """``value`` as a float, or None when it is missing, NaN or infinite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def insert_metric_rows(conn, source: str, rows: Iterable[MetricRow]) -> int:
    """Insert monitoring_metrics rows of ``source`` (one timestamp: the transaction's now())."""
    values = [(source, r.name, finite_or_none(r.value), strict_dumps(dict(r.labels), sort_keys=True))
              for r in rows]
    if not values:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO monitoring_metrics (source, metric_name, metric_value, labels) VALUES (%s, %s, %s, %s)",
            values,
        )
    return len(values)


def insert_audit(conn, event_type: str, actor: str, details: Mapping[str, Any]) -> int:
    """Insert one audit_log row; returns its audit_id."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO audit_log (event_type, actor, details) VALUES (%s, %s, %s) RETURNING audit_id",
            (event_type, actor, strict_dumps(dict(details), sort_keys=True)),
        )
        return int(cur.fetchone()[0])
