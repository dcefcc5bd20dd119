"""Dashboard, models and champion-vs-challenger routes.

Reads PostgreSQL through portal.dashboard, the registry through portal.registry_view (the
dashboard uses the background snapshot; the models page asks MLflow, with the runs' metrics),
the promotion decisions in audit_log, and the live comparison of champion and challenger
through portal.challenger_view (monitoring.challenger's figures).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from portal import charts, queries
from portal.challenger_view import ChallengerPanel, challenger_panel
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


def _challenger_chart(panel: ChallengerPanel):
    """Average precision of both over the recorded comparisons of the current pair (else all)."""
    rows = [r for r in panel.history if (r["champion_version"], r["challenger_version"]) ==
            (panel.champion_version, panel.challenger_version)] or panel.history
    rows = sorted(rows, key=lambda r: r["recorded_at"])
    return charts.line_chart(
        {"champion AP": [(r["recorded_at"], r["champion_average_precision"]) for r in rows],
         "challenger AP": [(r["recorded_at"], r["challenger_average_precision"]) for r in rows]},
        "live average precision of the recorded comparisons")


def _panel(request: Request) -> ChallengerPanel:
    portal = state(request)
    with portal.pool.connection() as conn:
        return challenger_panel(portal.settings, conn)


@router.get("/challenger")
def challenger_page(request: Request) -> Response:
    session = session_of(request)
    panel = _panel(request)
    return render(request, "challenger.html", {"panel": panel, "chart": _challenger_chart(panel)}, session=session)


@router.get("/api/challenger")
def challenger_json(request: Request) -> Response:
    session_of(request)
    return StrictJSONResponse(_panel(request).as_json())
