"""Portal users in PostgreSQL (table portal_users): names, roles, argon2id password hashes.

Reads/writes: ``<pg-schema>``.portal_users. Passwords are never stored, logged or taken as a
command-line argument. Run: ``python -m portal add-user NAME --role analyst|viewer|rule_author|rule_approver``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("analyst", "viewer", "rule_author", "rule_approver")  # rule_*: analysts who also write rules (rules/)
USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_HASHER = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
_DUMMY_HASH = _HASHER.hash("not a password of anyone")  # equal work for unknown names


class UserError(ValueError):
    """A user that cannot be created (the message names the argument)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def can_review(self) -> bool:
        return self.role in ("analyst", "rule_author", "rule_approver")


def check_new_user(name: str, role: str, password: str) -> None:
    """Raise UserError naming the argument when the name, role or password is unacceptable."""
    if not USER_NAME.match(name or ""):
        raise UserError(f"name={name!r}: 1-64 letters, digits or . _ @ -")
    if role not in ROLES:
        raise UserError(f"role={role!r} must be one of {', '.join(ROLES)}")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"password: at most {MAX_PASSWORD_LENGTH} characters")


def save_user(conn, name: str, role: str, password: str) -> bool:
    """Create the user, or set a new role and password; commits. Returns True when created."""
    check_new_user(name, role, password)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO portal_users (name, role, password_hash) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, password_hash = EXCLUDED.password_hash, "
            "updated_at = now() RETURNING (xmax = 0)",
            (name, role, _HASHER.hash(password)))
        created = bool(cur.fetchone()[0])
    conn.commit()
    return created


def verify_password(conn, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else None (unknown names cost the same hashing work)."""
    with conn.cursor() as cur:
        cur.execute("SELECT name, role, password_hash FROM portal_users WHERE name = %s", (name,))
        row = cur.fetchone()
    stored = row[2] if row else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password[:MAX_PASSWORD_LENGTH])
    except (VerificationError, InvalidHashError):
        return None
    return User(row[0], row[1]) if row else None


def find_user(conn, name: str) -> User | None:
    with conn.cursor() as cur:
        cur.execute("SELECT name, role FROM portal_users WHERE name = %s", (name,))
        row = cur.fetchone()
    return User(*row) if row else None
