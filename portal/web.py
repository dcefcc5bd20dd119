"""Request helpers shared by the portal's routes: the app state, the signed-in session, CSRF
checks, strict JSON, templates and the errors shown to the browser (never a stack trace)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from portal.auth import SESSION_COOKIE, AuthPolicy, Session, load_session, tokens_match

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class PortalConfig:
    """How one portal instance runs: its schema, auth policy and the MLflow UI to link to."""

    pg_schema: str = "public"
    policy: AuthPolicy = AuthPolicy()
    live: bool = True
    slow_facts_interval: float = 10.0


class PortalError(Exception):
    """An error shown to the user as a page (or JSON under /api) with this HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class LoginRequired(Exception):
    """No live session: pages redirect to /login, other requests get 401."""


def state(request: Request):
    return request.app.state.portal


def _strict(value: Any) -> Any:
    """JSON-ready value: NaN and infinities become null, times ISO-8601, decimals floats."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return _strict(float(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_strict(v) for v in value]
    return value


def strict_json_text(content: Any) -> str:
    return json.dumps(_strict(content), allow_nan=False, separators=(",", ":"))


class StrictJSONResponse(Response):
    """application/json that a strict parser accepts (no NaN, no Infinity)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return strict_json_text(content).encode()


def templates() -> Jinja2Templates:
    jinja = Jinja2Templates(directory=str(TEMPLATES_DIR))
    jinja.env.autoescape = True
    jinja.env.filters["score"] = lambda v: "-" if v is None else f"{v:.3f}"
    jinja.env.filters["money"] = lambda v: "-" if v is None else f"{v:,.2f}"
    jinja.env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    jinja.env.filters["secs"] = lambda v: "n/a" if v is None else f"{v:.2f} s"
    jinja.env.filters["when"] = lambda v: "-" if v is None else f"{v:%Y-%m-%d %H:%M:%S}"
    return jinja


def session_of(request: Request) -> Session:
    """The signed-in session (sync routes); LoginRequired when there is none."""
    portal = state(request)
    with portal.pool.connection() as conn:
        session = load_session(conn, request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired()
    return session


async def session_of_async(request: Request) -> Session:
    return await run_in_threadpool(session_of, request)


def check_csrf(session: Session, form) -> None:
    """403 unless the form's csrf_token is the session's."""
    if not tokens_match(session.csrf_token, form.get("csrf_token")):
        raise PortalError(403, "the form's CSRF token is missing or wrong; reload the page and try again")


def render(request: Request, name: str, context: dict[str, Any], status: int = 200,
           session: Session | None = None) -> Response:
    portal = state(request)
    return portal.templates.TemplateResponse(
        request, name, {"session": session, "mlflow_ui": portal.settings.mlflow_tracking_uri.rstrip("/"),
                        **context}, status_code=status)


def form_text(form, name: str, max_length: int = 4096) -> str:
    """A text field of a submitted form ('' when absent); 400 when it is not text or too long."""
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PortalError(400, f"{name}: expected a text field")
    if len(value) > max_length:
        raise PortalError(400, f"{name}: at most {max_length} characters")
    if "\x00" in value:
        raise PortalError(400, f"{name}: must not contain NUL characters")
    return value
