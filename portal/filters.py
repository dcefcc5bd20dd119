"""The alert queue's filters and paging cursor, parsed from query parameters (or refused with a message).

Pure functions, no I/O. portal.queries turns a parsed :class:`AlertFilters` into a WHERE clause
made of constant SQL fragments and query parameters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlencode

from fraudops.contract.tables import DECISIONS

QUEUE_STATUSES = ("pending", "confirmed", "false_positive", "escalated")
# the decision filter: the decision service's answer (fraud_alerts.decision), or "stream": no
# decision (NULL), the transaction was alerted by the streaming job alone
STREAM_ONLY = "stream"
DECISION_FILTERS = (*DECISIONS, STREAM_ONLY)
COUNTRY = re.compile(r"^[A-Z]{2}$")
MODEL_VERSION = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class FilterError(ValueError):
    """A malformed filter (the message names the parameter); the portal answers 400."""


@dataclass(frozen=True)
class Cursor:
    """Keyset position: the last row of the previous page (newest first)."""

    detection_time: datetime
    alert_id: int

    def text(self) -> str:
        return f"{self.detection_time.isoformat()}_{self.alert_id}"


@dataclass(frozen=True)
class AlertFilters:
    status: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    country: str | None = None
    model_version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    decision: str | None = None  # one of DECISION_FILTERS
    before: Cursor | None = None
    limit: int = DEFAULT_PAGE_SIZE

    def query_string(self, **changes) -> str:
        """The filters as a query string (``before`` and ``limit`` included when set), e.g. for paging links."""
        values = replace(self, **changes)
        params = {"status": values.status, "min_score": values.min_score, "max_score": values.max_score,
                  "country": values.country, "model_version": values.model_version,
                  "since": values.since.isoformat() if values.since else None,
                  "until": values.until.isoformat() if values.until else None,
                  "decision": values.decision,
                  "before": values.before.text() if values.before else None,
                  "limit": values.limit if values.limit != DEFAULT_PAGE_SIZE else None}
        return urlencode({k: v for k, v in params.items() if v not in (None, "")})

    def matches(self, alert: Mapping) -> bool:
        """Whether a live alert (a queue row as a dict) passes these filters (paging aside)."""
        checks = [
            self.status is None or alert.get("alert_status") == self.status,
            self.min_score is None or (alert.get("fraud_score") or 0.0) >= self.min_score,
            self.max_score is None or (alert.get("fraud_score") or 0.0) <= self.max_score,
            self.country is None or alert.get("country") == self.country,
            self.model_version is None or alert.get("model_version") == self.model_version,
            self.since is None or alert["detection_time"] >= self.since,
            self.until is None or alert["detection_time"] < self.until,
            self.decision is None or (alert.get("decision") or STREAM_ONLY) == self.decision,
        ]
        return all(checks)


def parse_time(text: str, name: str) -> datetime:
    """ISO-8601 date or date-time; naive means UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise FilterError(f"{name}={text!r} is not an ISO-8601 time such as 2026-01-31T12:00") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _score(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FilterError(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise FilterError(f"{name}={text!r} must be between 0 and 1")
    return value


def parse_cursor(text: str) -> Cursor:
    time_text, _, id_text = text.rpartition("_")
    if not id_text.isdigit() or not time_text:
        raise FilterError(f"before={text!r} is not a paging cursor of this queue")
    return Cursor(parse_time(time_text, "before"), int(id_text))


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise FilterError(f"limit={text!r} must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(text)


def parse_filters(params: Mapping[str, str]) -> AlertFilters:
    """Parse the queue's query parameters; empty values mean "no filter".

    Raises:
        FilterError: naming the first malformed parameter.
    """
    def value(name: str) -> str | None:
        raw = params.get(name)
        return raw.strip() if raw is not None and raw.strip() != "" else None

    status, country, version = value("status"), value("country"), value("model_version")
    decision = value("decision")
    if status is not None and status not in QUEUE_STATUSES:
        raise FilterError(f"status={status!r} must be one of {', '.join(QUEUE_STATUSES)}")
    if decision is not None and decision not in DECISION_FILTERS:
        raise FilterError(f"decision={decision!r} must be one of {', '.join(DECISION_FILTERS)} "
                          f"({STREAM_ONLY}: alerted by the stream alone, no decision)")
    if country is not None:
        country = country.upper()
        if not COUNTRY.match(country):
            raise FilterError(f"country={params.get('country')!r} is not a two-letter country code")
    if version is not None and not MODEL_VERSION.match(version):
        raise FilterError(f"model_version={version!r}: up to 64 letters, digits, '.', '_' or '-'")
    filters = AlertFilters(
        status=status, country=country, model_version=version, decision=decision,
        min_score=_score(value("min_score"), "min_score") if value("min_score") else None,
        max_score=_score(value("max_score"), "max_score") if value("max_score") else None,
        since=parse_time(value("since"), "since") if value("since") else None,
        until=parse_time(value("until"), "until") if value("until") else None,
        before=parse_cursor(value("before")) if value("before") else None,
        limit=_limit(value("limit")) if value("limit") else DEFAULT_PAGE_SIZE)
    if filters.min_score is not None and filters.max_score is not None and filters.min_score > filters.max_score:
        raise FilterError("min_score must not exceed max_score")
    if filters.since and filters.until and filters.since >= filters.until:
        raise FilterError("since must be earlier than until")
    return filters
