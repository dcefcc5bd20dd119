"""The analyst portal's FastAPI application (server-rendered pages, one small vendored script).

Reads/writes: PostgreSQL ``<pg-schema>`` (alerts, transactions, labels, audit_log,
monitoring_metrics; portal_users, portal_sessions, portal_login_attempts), the MLflow registry,
and the services' health checks. Serves 127.0.0.1:PORTAL_PORT (8050).

Run: ``make portal`` or ``python -m portal serve [--port 8050] [--pg-schema public]``.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from portal import metrics, routes_alerts, routes_auth, routes_insights, routes_rules
from portal.cache import TTLCache
from portal.dashboard import SlowFacts
from portal.db import ConnectionPool
from portal.live import LiveAlerts
from portal.web import (
    STATIC_DIR,
    LoginRequired,
    PortalConfig,
    PortalError,
    StrictJSONResponse,
    render,
    templates,
)

log = logging.getLogger("portal")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@dataclass
class PortalState:
    settings: object
    config: PortalConfig
    pool: ConnectionPool
    templates: object
    live: LiveAlerts | None
    slow_facts: SlowFacts
    cache: TTLCache


def create_app(settings, config: PortalConfig | None = None) -> FastAPI:
    """The portal for ``settings`` (connections) and ``config`` (schema, auth policy)."""
    config = config or PortalConfig()
    jinja = templates()
    pool = ConnectionPool(settings, config.pg_schema)
    live = LiveAlerts(settings, config.pg_schema,
                      lambda row: routes_alerts.render_live_row(jinja, row)) if config.live else None
    portal = PortalState(settings, config, pool, jinja, live, SlowFacts(settings, config.slow_facts_interval),
                         TTLCache())

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if live is not None:
            live.start()
        portal.slow_facts.start()
        try:
            yield
        finally:
            portal.slow_facts.stop()
            if live is not None:
                live.stop()
            pool.close()

    # FastAPI's OpenTelemetry hooks (asked on every request) off: the portal exports its own
    # Prometheus metrics (portal.metrics)
    app = FastAPI(title="fraud-detection-mlops analyst portal", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None, telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.portal = portal
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    for module in (routes_auth, routes_alerts, routes_insights, routes_rules):
        app.include_router(module.router)
    _install_error_pages(app)

    app.add_middleware(UnexpectedErrors)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(metrics.RequestMetrics)  # outermost: counts every answer, errors included
    return app


class UnexpectedErrors:
    """Pure ASGI middleware: any unhandled error becomes a 500 page naming a reference, never a trace.

    (A handler for Exception would run in Starlette's outermost middleware, which re-raises and
    makes the server drop the connection.)
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # logged with its trace; the browser gets a reference
            reference = uuid.uuid4().hex[:12]
            log.error("error %s on %s %s", reference, scope.get("method"), scope.get("path"), exc_info=exc)
            if started:
                raise
            request = Request(scope, receive)
            response = _error(request, 500, f"internal error (reference {reference}); the details are in the "
                                            "portal's log")
            await response(scope, receive, send)


class SecurityHeaders:
    """Pure ASGI middleware (safe for event streams): security headers, no caching of pages."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def _error(request: Request, status: int, message: str) -> Response:
    if _wants_json(request) or request.url.path == "/alerts/stream":
        return StrictJSONResponse({"error": message, "status": status}, status_code=status)
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def _install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired):
        if request.method == "GET" and not _wants_json(request) and request.url.path != "/alerts/stream":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return _error(request, 401, "log in first")

    @app.exception_handler(PortalError)
    async def portal_error(request: Request, exc: PortalError):
        return _error(request, exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = {404: "no such page", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        return _error(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        return _error(request, 400, "malformed request: " + "; ".join(str(e.get("msg")) for e in exc.errors())[:300])

    @app.exception_handler(ConnectionError)
    async def database_down(request: Request, exc: ConnectionError):
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _error(request, 503, "PostgreSQL is unavailable; try again shortly")

    @app.exception_handler(TimeoutError)
    async def busy(request: Request, exc: TimeoutError):
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _error(request, 503, "the portal is busy; try again shortly")

