"""Alert routes: the queue (HTML, JSON, live stream), an alert's detail, and its review.

Reads fraud_alerts, transactions, labels, audit_log; a review writes through portal.reviews.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from portal import metrics, queries
from portal.filters import AlertFilters, Cursor, FilterError, parse_filters
from portal.reviews import DECISIONS, ReviewRefused, alert_state, apply_review
from portal.web import (
    PortalError,
    StrictJSONResponse,
    check_csrf,
    form_text,
    render,
    session_of,
    session_of_async,
    state,
)

router = APIRouter()
log = logging.getLogger("portal.reviews")
MAX_TRANSACTION_ID = 128
KEEPALIVE_SECONDS = 15.0


def _filters(request: Request) -> AlertFilters:
    try:
        return parse_filters(request.query_params)
    except FilterError as exc:
        raise PortalError(400, str(exc)) from None


def _queue(request: Request, filters: AlertFilters) -> dict:
    with state(request).pool.connection() as conn:
        rows, more = queries.alert_queue(conn, filters)
        counts = queries.queue_counts(conn)
        choices = state(request).cache.get("filter_choices", 60.0, lambda: queries.filter_choices(conn))
    older = None
    if more and rows:
        older = filters.query_string(before=Cursor(rows[-1]["detection_time"], rows[-1]["alert_id"]))
    return {"rows": rows, "counts": counts, "choices": choices, "older": older}


@router.get("/")
def home(request: Request) -> Response:
    session_of(request)
    return RedirectResponse("/alerts", status_code=303)


@router.get("/alerts")
def alert_queue_page(request: Request) -> Response:
    session = session_of(request)
    filters = _filters(request)
    page = _queue(request, filters)
    return render(request, "alerts.html", {"filters": filters, "first_page": filters.before is None,
                                           "stream_query": filters.query_string(limit=filters.limit), **page},
                  session=session)


@router.get("/api/alerts")
def alert_queue_json(request: Request) -> Response:
    session_of(request)
    filters = _filters(request)
    page = _queue(request, filters)
    return StrictJSONResponse({"alerts": page["rows"], "counts": page["counts"],
                               "older": f"/api/alerts?{page['older']}" if page["older"] else None})


@router.get("/alerts/stream")
async def alert_stream(request: Request) -> Response:
    """Server-sent events: one ``alert`` event (the queue row's HTML and ids) per new matching alert."""
    await session_of_async(request)
    filters = _filters(request)
    live = state(request).live
    if live is None:
        raise PortalError(404, "the live queue is switched off in this portal")
    subscriber = live.subscribe(filters)

    async def events():
        try:
            yield "retry: 2000\n\n"
            while not subscriber.overflowed:
                try:
                    data = await asyncio.wait_for(subscriber.queue.get(), timeout=KEEPALIVE_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected():
                        break
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: alert\ndata: {data}\n\n"
        finally:
            live.unsubscribe(subscriber)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def render_live_row(templates, row: dict) -> str:
    """The event text of a live alert: JSON with its ids and the queue row's HTML."""
    html = templates.get_template("_alert_row.html").render(row=row, live=True)
    return json.dumps({"alert_id": row["alert_id"], "transaction_id": row["transaction_id"], "html": html})


def known_shape(transaction_id: str) -> bool:
    """Whether the id could be a transaction id (bounded, printable): anything else is a 404 at once."""
    return 0 < len(transaction_id) <= MAX_TRANSACTION_ID and transaction_id.isprintable()


def _detail(request: Request, transaction_id: str) -> dict:
    if not known_shape(transaction_id):
        raise PortalError(404, "no fraud alert for this transaction id")
    with state(request).pool.connection() as conn:
        detail = queries.alert_detail(conn, transaction_id)
        if detail is None:
            raise PortalError(404, f"no fraud alert for transaction {transaction_id!r}")
        detail["recent"] = queries.user_recent_transactions(conn, detail["alert"]["user_id"])
    alert = detail["alert"]
    detail["state"] = alert_state(alert["alert_status"], alert["reviewed_at"])
    return detail


@router.get("/alerts/{transaction_id}")
def alert_page(request: Request, transaction_id: str) -> Response:
    session = session_of(request)
    detail = _detail(request, transaction_id)
    result = request.query_params.get("result")
    return render(request, "alert.html", {**detail, "decisions": DECISIONS,
                                          "result": result if result in ("recorded", "already") else None},
                  session=session)


@router.get("/api/alerts/{transaction_id}")
def alert_json(request: Request, transaction_id: str) -> Response:
    session_of(request)
    return StrictJSONResponse(_detail(request, transaction_id))


@router.post("/alerts/{transaction_id}/review")
async def review(request: Request, transaction_id: str) -> Response:
    session = await session_of_async(request)
    form = await request.form()
    check_csrf(session, form)
    if not session.user.can_review:
        raise PortalError(403, f"{session.user.name} is a viewer: only analysts review alerts")
    decision, note = form_text(form, "decision", 32), form_text(form, "note", 4000)
    shown = form_text(form, "state", 128)
    if not known_shape(transaction_id):
        raise PortalError(404, "no fraud alert for this transaction id")

    def write():
        with state(request).pool.connection() as conn:
            return apply_review(conn, transaction_id, decision, note, session.user.name, shown)

    try:
        outcome = await run_in_threadpool(write)
    except ReviewRefused as exc:
        raise PortalError(exc.status, str(exc)) from None
    result = "recorded" if outcome.applied else "already"
    metrics.REVIEWS.labels(decision=decision, result=result).inc()
    log.info("review %s of %s by %s: %s", decision, transaction_id, session.user.name, result,
             extra={"transaction_id": transaction_id, "status": result})
    return RedirectResponse(f"/alerts/{_quote(transaction_id)}?result={result}", status_code=303)


def _quote(text: str) -> str:
    return quote(text, safe="")
