"""Dashboard and models routes.

Reads PostgreSQL through portal.dashboard, the registry through portal.registry_view (the
dashboard uses the background snapshot; the models page asks MLflow, with the runs' metrics),
and the promotion decisions in audit_log.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from portal import charts, queries
from portal.dashboard import dashboard_numbers
from portal.registry_view import read_registry
from portal.web import StrictJSONResponse, render, session_of, state

router = APIRouter()
PROMOTION_EVENTS = ("model_promotion", "model_switch")


DASHBOARD_TTL_SECONDS = 2.0  # one computation serves every open dashboard (they refresh every 5 s)


def _numbers(request: Request) -> dict:
    portal = state(request)

    def compute():
        with portal.pool.connection() as conn:
            return dashboard_numbers(conn)

    return portal.cache.get("dashboard", DASHBOARD_TTL_SECONDS, compute)


def _charts(numbers: dict, snapshot) -> dict:
    series = numbers["throughput_series"]
    latency = numbers["latency_series"]
    events = [(e["created_at"], f"v{(e['details'] or {}).get('to_version', '?')} scoring")
              for e in numbers["model_events"] if e["event_type"] == "model_switch"]
    if snapshot.registry is not None:
        events += [(v.created_at, f"v{v.version} registered") for v in snapshot.registry.versions[:8]]
    return {
        "throughput": charts.line_chart(
            {"transactions/min": [(r["minute"], r["transactions"]) for r in series],
             "alerts/min": [(r["minute"], r["alerts"]) for r in series]}, "throughput per minute"),
        "latency": charts.line_chart(
            {name: [(r["minute"], r["seconds"]) for r in latency if r["metric_name"] == metric]
             for name, metric in (("p50", "latency_p50_seconds"), ("p95", "latency_p95_seconds"))},
            "end-to-end latency (per-minute mean of the micro-batches)", " s"),
        "countries": charts.bar_chart([(r["country"], r["alerts"]) for r in numbers["alerts_by_country"]],
                                      "alerts by country, last 24 h"),
        "timeline": charts.timeline(events, "model versions"),
    }


def _dashboard_context(request: Request) -> dict:
    numbers = _numbers(request)
    snapshot = state(request).slow_facts.snapshot
    return {"n": numbers, "facts": snapshot, "charts": _charts(numbers, snapshot)}


@router.get("/dashboard")
def dashboard_page(request: Request) -> Response:
    session = session_of(request)
    return render(request, "dashboard.html", _dashboard_context(request), session=session)


@router.get("/dashboard/panel")
def dashboard_panel(request: Request) -> Response:
    """The dashboard's body alone (the page refreshes it every few seconds)."""
    session = session_of(request)
    return render(request, "_dashboard_panel.html", _dashboard_context(request), session=session)


@router.get("/api/dashboard")
def dashboard_json(request: Request) -> Response:
    session_of(request)
    numbers = _numbers(request)
    snapshot = state(request).slow_facts.snapshot
    registry = snapshot.registry
    return StrictJSONResponse({
        **numbers,
        "services": [{"name": s.name, "up": s.up, "running": s.running, "detail": s.detail}
                     for s in snapshot.services],
        "production_version": registry.production if registry else None,
        "checked_at": snapshot.checked_at,
    })


@router.get("/models")
def models_page(request: Request) -> Response:
    session = session_of(request)
    portal = state(request)
    registry = read_registry(portal.settings)
    with portal.pool.connection() as conn:
        decisions = queries.audit_events(conn, PROMOTION_EVENTS, limit=30)
    return render(request, "models.html", {"registry": registry, "decisions": decisions}, session=session)
