"""Sessions, CSRF tokens and the login rate limit of the portal.

Reads/writes: ``<pg-schema>``.portal_sessions (the SHA-256 of each session token, its CSRF token,
its expiry) and portal_login_attempts (every attempt; failed ones are counted per user name and
per client address). The cookie holds the random session token only: HttpOnly, SameSite=Strict,
expiring with the session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from portal.users import User

SESSION_COOKIE = "portal_session"
LOGIN_CSRF_COOKIE = "portal_login_csrf"


@dataclass(frozen=True)
class AuthPolicy:
    """Session lifetime and login throttling.

    Attributes:
        session_lifetime: a session expires this long after the login.
        max_failed_logins: failed attempts on one user name within ``failure_window`` (since its
            last successful login) after which further attempts are refused.
        max_failed_per_client: the same per client address (many user names from one place).
        failure_window: how far back failures count.
        secure_cookies: send cookies over HTTPS only (set it behind a TLS proxy).
    """

    session_lifetime: timedelta = timedelta(hours=8)
    max_failed_logins: int = 10
    max_failed_per_client: int = 100
    failure_window: timedelta = timedelta(minutes=15)
    secure_cookies: bool = False


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; False when either side is missing."""
    return bool(expected and given) and hmac.compare_digest(str(expected).encode(), str(given).encode())


def create_session(conn, user: User, policy: AuthPolicy) -> tuple[str, Session]:
    """Store a new session for ``user`` (and drop expired ones); commits. Returns (cookie token, session)."""
    token, csrf = new_token(), new_token()
    with conn.cursor() as cur:
        cur.execute("DELETE FROM portal_sessions WHERE expires_at < now()")
        cur.execute(
            "INSERT INTO portal_sessions (token_sha256, user_name, csrf_token, expires_at) "
            "VALUES (%s, %s, %s, now() + %s) RETURNING expires_at",
            (_digest(token), user.name, csrf, policy.session_lifetime))
        expires_at = cur.fetchone()[0]
    conn.commit()
    return token, Session(user, csrf, expires_at)


def load_session(conn, token: str | None) -> Session | None:
    """The live session of a cookie token (None when absent, unknown or expired)."""
    if not token or len(token) > 128:
        return None
    with conn.cursor() as cur:
        cur.execute(
            "SELECT u.name, u.role, s.csrf_token, s.expires_at FROM portal_sessions s "
            "JOIN portal_users u ON u.name = s.user_name WHERE s.token_sha256 = %s AND s.expires_at > now()",
            (_digest(token),))
        row = cur.fetchone()
    return Session(User(row[0], row[1]), row[2], row[3]) if row else None


def end_session(conn, token: str | None) -> None:
    """Delete the session of ``token`` (logout); commits."""
    if token:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM portal_sessions WHERE token_sha256 = %s", (_digest(token),))
        conn.commit()


def login_refused(conn, user_name: str, client: str, policy: AuthPolicy) -> bool:
    """Whether this user name or this client made too many failed attempts recently."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM portal_login_attempts WHERE user_name = %(name)s AND NOT succeeded "
            "AND attempted_at > now() - %(window)s AND attempted_at > coalesce((SELECT max(attempted_at) "
            "FROM portal_login_attempts WHERE user_name = %(name)s AND succeeded), '-infinity')",
            {"name": user_name, "window": policy.failure_window})
        by_name = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM portal_login_attempts WHERE client = %s AND NOT succeeded "
            "AND attempted_at > now() - %s", (client, policy.failure_window))
        by_client = cur.fetchone()[0]
    return by_name >= policy.max_failed_logins or by_client >= policy.max_failed_per_client


def record_attempt(conn, user_name: str, client: str, succeeded: bool) -> None:
    """One portal_login_attempts row; commits."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO portal_login_attempts (user_name, client, succeeded) VALUES (%s, %s, %s)",
                    (user_name[:64], client[:64], succeeded))
    conn.commit()
