"""Routes without a session: /healthz, /metrics (Prometheus) and /login; and /logout.

Reads/writes portal_users (password check), portal_sessions, portal_login_attempts.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from portal import metrics
from portal.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    create_session,
    end_session,
    login_refused,
    new_token,
    record_attempt,
    tokens_match,
)
from portal.users import USER_NAME, verify_password
from portal.web import StrictJSONResponse, check_csrf, form_text, render, session_of, state

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request) -> Response:
    """Liveness plus PostgreSQL; no login needed, reveals nothing else."""
    try:
        with state(request).pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        return StrictJSONResponse({"status": "ok"})
    except Exception:  # noqa: BLE001 - the body says what is wrong, never how
        return StrictJSONResponse({"status": "database unavailable"}, status_code=503)


@router.get("/metrics")
def prometheus_metrics() -> Response:
    """The portal's Prometheus metrics (portal.metrics); no login needed: counts only."""
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)


def safe_next(target: str | None) -> str:
    """A local path to go to after the login (anything else goes to the queue)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/alerts"


def _login_page(request: Request, message: str | None, status: int, next_path: str) -> Response:
    token = new_token()
    response = render(request, "login.html", {"message": message, "csrf_token": token, "next": next_path},
                      status=status)
    policy = state(request).config.policy
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=policy.secure_cookies, path="/login")
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request, None, 200, safe_next(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    next_path = safe_next(form_text(form, "next", 512))
    if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE), form_text(form, "csrf_token", 128)):
        return _login_page(request, "The login form expired; please try again.", 403, next_path)
    name, password = form_text(form, "name", 64).strip(), form_text(form, "password", 1024)
    if not name or not password:
        return _login_page(request, "Enter your user name and password.", 400, next_path)
    if not USER_NAME.match(name):  # cannot be a user: refused like a wrong password
        return _login_page(request, "Wrong user name or password.", 401, next_path)
    portal = state(request)
    client = request.client.host if request.client else "unknown"
    outcome = await run_in_threadpool(_check_login, portal, name, password, client)
    metrics.LOGINS.labels(outcome="throttled" if outcome == "throttled" else
                          "failure" if outcome is None else "success").inc()
    if outcome == "throttled":
        response = _login_page(request, "Too many failed logins: wait 15 minutes and try again.", 429, next_path)
        response.headers["Retry-After"] = str(int(portal.config.policy.failure_window.total_seconds()))
        return response
    if outcome is None:
        return _login_page(request, "Wrong user name or password.", 401, next_path)
    token, session = outcome
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(portal.config.policy.session_lifetime.total_seconds()),
                        expires=session.expires_at, httponly=True, samesite="strict",
                        secure=portal.config.policy.secure_cookies, path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _check_login(portal, name: str, password: str, client: str):
    """'throttled', None (wrong), or (cookie token, session)."""
    policy = portal.config.policy
    with portal.pool.connection() as conn:
        if login_refused(conn, name, client, policy):
            record_attempt(conn, name, client, False)
            return "throttled"
        user = verify_password(conn, name, password)
        record_attempt(conn, name, client, user is not None)
        return create_session(conn, user, policy) if user is not None else None


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await run_in_threadpool(session_of, request)
    form = await request.form()
    check_csrf(session, form)
    portal = state(request)

    def end():
        with portal.pool.connection() as conn:
            end_session(conn, request.cookies.get(SESSION_COOKIE))

    await run_in_threadpool(end)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

