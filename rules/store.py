"""Rules and lists in PostgreSQL (migration 0007): every version kept, every change audited,
four-eyes approval for what changes decisions.

Who may do what (portal_users.role):
- ``rule_author``, ``rule_approver``: save rule versions (drafts), create lists, request changes;
- ``rule_approver``: approve or reject another person's request (never their own).
With four-eyes on (RULES_FOUR_EYES, the default) publishing, shadowing and retiring a rule, and
a list change of more than RULES_LIST_APPROVAL_SIZE entries, wait in rule_change_requests for
approval; off, they apply at once. An applied change, its audit_log row and a new
rules_revisions row are one transaction: a change that fails halfway leaves nothing behind.

    store = RuleStore(conn, four_eyes=True, list_approval_size=100)
    version = store.save_rule("ana", "big_online_new_country", 'amount > 2000 && user_new_country == 1',
                              action="review", priority=50, reason="ATO wave of March")
    request = store.request("ana", "publish", "big_online_new_country", version, reason="approved by risk committee")
    store.approve("olga", request)          # a rule_approver other than ana
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from rules.language import RuleError, compile_rule

ACTIONS = ("decline", "review", "allow", "tag")
STATES = ("draft", "shadow", "active", "retired")
RULE_CHANGES = ("publish", "shadow", "retire")
LIST_KINDS = ("block", "allow")
LIST_FIELDS = ("user_id", "device_id", "merchant_id", "country")
AUTHOR_ROLES = ("rule_author", "rule_approver")
APPROVER_ROLES = ("rule_approver",)
TARGET_STATE = {"publish": "active", "shadow": "shadow", "retire": "retired"}


class RuleStoreError(ValueError):
    """A refused change: the message says which argument or which rule, and why."""


class NotAllowed(RuleStoreError):
    """The actor's role does not allow the change (or it is their own request)."""


@dataclass(frozen=True)
class Rule:
    name: str
    version: int
    expression: str
    action: str
    priority: int
    owner: str
    state: str
    description: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "expression": self.expression, "action": self.action,
                "priority": self.priority, "owner": self.owner, "state": self.state,
                "description": self.description}


@dataclass(frozen=True)
class ListEntry:
    value: str
    expires_at: datetime | None = None
    reason: str = ""


_RULE_COLUMNS = "name, version, expression, action, priority, owner, state, description"


def parse_flag(value: str, argument: str) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise RuleStoreError(f"{argument}={value!r} must be true or false")


class RuleStore:
    def __init__(self, conn, four_eyes: bool = True, list_approval_size: int = 100):
        self.conn = conn
        self.four_eyes = four_eyes
        self.list_approval_size = list_approval_size

    @classmethod
    def from_settings(cls, conn, settings) -> RuleStore:
        return cls(conn, parse_flag(settings.rules_four_eyes, "RULES_FOUR_EYES"), settings.rules_list_approval_size)

    # ------------------------------------------------------------------ who
    def role_of(self, actor: str) -> str | None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT role FROM portal_users WHERE name = %s", (actor,))
            row = cur.fetchone()
        return row[0] if row else None

    def _require(self, actor: str, roles: tuple[str, ...], what: str) -> None:
        role = self.role_of(actor)
        if role is None:
            raise NotAllowed(f"actor {actor!r} is not a portal user (python -m portal add-user {actor} "
                             f"--role {roles[0]})")
        if role not in roles:
            raise NotAllowed(f"{actor!r} (role {role}) may not {what}: needs role {' or '.join(roles)}")

    # ------------------------------------------------------------------ rules
    def known_lists(self) -> list[str]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT list_name FROM rule_lists")
            return [r[0] for r in cur.fetchall()]

    def save_rule(self, actor: str, name: str, expression: str, action: str, priority: int = 100,
                  description: str = "", reason: str = "", probes: Iterable[dict] = ()) -> int:
        """Save a new version of rule ``name`` as a draft (compiled and checked first); returns its version."""
        self._require(actor, AUTHOR_ROLES, "write rules")
        if action not in ACTIONS:
            raise RuleStoreError(f"action={action!r} must be one of {', '.join(ACTIONS)}")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise RuleStoreError(f"priority={priority!r} must be an integer")
        compile_rule(name, expression, self.known_lists(), probes)  # RuleError names rule and position
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT coalesce(max(version), 0) + 1 FROM rules WHERE name = %s", (name,))
                version = cur.fetchone()[0]
                cur.execute("INSERT INTO rules (name, version, expression, action, priority, owner, description, "
                            "created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                            (name, version, expression, action, priority, actor, description, actor))
                _audit(cur, "rule_saved", actor, {"rule": name, "version": version, "action": action,
                                                  "priority": priority, "expression": expression, "reason": reason})
            self.conn.commit()
        except Exception as exc:
            self.conn.rollback()
            if getattr(exc, "pgcode", None) == "23514":  # check_violation: the name pattern
                raise RuleStoreError(f"rule name {name!r} must be lower case letters, digits and _ "
                                     "(starting with a letter, at most 64)") from None
            raise
        return version

    def rule(self, name: str, version: int | None = None) -> Rule:
        with self.conn.cursor() as cur:
            if version is None:
                cur.execute(f"SELECT {_RULE_COLUMNS} FROM rules WHERE name = %s ORDER BY version DESC LIMIT 1",
                            (name,))
            else:
                cur.execute(f"SELECT {_RULE_COLUMNS} FROM rules WHERE name = %s AND version = %s", (name, version))
            row = cur.fetchone()
        self.conn.rollback()
        if row is None:
            raise RuleStoreError(f"no rule {name!r}" + (f" version {version}" if version else ""))
        return Rule(*row)

    def rules(self, states: tuple[str, ...] = STATES) -> list[Rule]:
        """The newest version of each rule plus every live version, in precedence order."""
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT {_RULE_COLUMNS} FROM rules r WHERE state = ANY(%s) AND (state IN ('shadow', 'active') "
                        "OR version = (SELECT max(version) FROM rules x WHERE x.name = r.name)) "
                        "ORDER BY priority, name, version", (list(states),))
            rows = cur.fetchall()
        self.conn.rollback()
        return [Rule(*row) for row in rows]

    def history(self, name: str) -> list[Rule]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT {_RULE_COLUMNS} FROM rules WHERE name = %s ORDER BY version", (name,))
            rows = cur.fetchall()
        self.conn.rollback()
        return [Rule(*row) for row in rows]

    # ------------------------------------------------------------------ changes and approvals
    def request(self, actor: str, kind: str, name: str, version: int | None = None, reason: str = "") -> dict:
        """Ask to publish / shadow / retire a rule version (default: its newest). Applied at once
        without four-eyes; otherwise pending. Returns {"request_id", "status"}."""
        self._require(actor, AUTHOR_ROLES, f"{kind} rules")
        if kind not in RULE_CHANGES:
            raise RuleStoreError(f"change={kind!r} must be one of {', '.join(RULE_CHANGES)}")
        if not reason.strip():
            raise RuleStoreError("reason is required: say why the rule changes (it goes to the audit log)")
        rule = self.rule(name, version)
        if kind != "retire" and rule.state == "retired":
            raise RuleStoreError(f"rule {name!r} version {rule.version} is retired: save a new version instead")
        compile_rule(rule.name, rule.expression, self.known_lists())
        return self._file(actor, kind, reason, rule_name=rule.name, rule_version=rule.version)

    def change_list(self, actor: str, list_name: str, add: Iterable[ListEntry] = (),
                    remove: Iterable[str] = (), reason: str = "") -> dict:
        """Add entries to / remove values from a list; above RULES_LIST_APPROVAL_SIZE entries,
        four-eyes applies. Returns {"request_id", "status"}."""
        self._require(actor, AUTHOR_ROLES, "change lists")
        add, remove = list(add), [str(v) for v in remove]
        if not add and not remove:
            raise RuleStoreError("a list change needs entries to add or values to remove")
        if not reason.strip():
            raise RuleStoreError("reason is required: say why the list changes (it goes to the audit log)")
        self.list_info(list_name)
        for entry in add:
            if not str(entry.value).strip():
                raise RuleStoreError(f"list {list_name!r}: an entry has an empty value")
        payload = {"add": [{"value": str(e.value).strip(), "reason": e.reason,
                            "expires_at": e.expires_at.isoformat() if e.expires_at else None} for e in add],
                   "remove": remove}
        needs_approval = self.four_eyes and len(add) + len(remove) > self.list_approval_size
        return self._file(actor, "list_change", reason, list_name=list_name, payload=payload,
                          needs_approval=needs_approval)

    def _file(self, actor, kind, reason, rule_name=None, rule_version=None, list_name=None, payload=None,
              needs_approval=None) -> dict:
        needs_approval = self.four_eyes if needs_approval is None else needs_approval
        try:
            with self.conn.cursor() as cur:
                cur.execute("INSERT INTO rule_change_requests (kind, rule_name, rule_version, list_name, payload, "
                            "reason, requested_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING request_id",
                            (kind, rule_name, rule_version, list_name, json.dumps(payload or {}), reason, actor))
                request_id = cur.fetchone()[0]
                details = {"request_id": request_id, "change": kind, "rule": rule_name, "version": rule_version,
                           "list": list_name, "reason": reason,
                           "entries": _entry_count(payload) if payload else None}
                _audit(cur, "rule_change_requested", actor, details)
                if not needs_approval:
                    self._apply(cur, request_id, actor, approved_by=None)
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        return {"request_id": request_id, "status": "pending" if needs_approval else "applied"}

    def pending(self) -> list[dict]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT request_id, kind, rule_name, rule_version, list_name, payload, reason, requested_by, "
                        "requested_at FROM rule_change_requests WHERE status = 'pending' ORDER BY request_id")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        self.conn.rollback()
        return rows

    def approve(self, actor: str, request_id: int, reason: str = "") -> None:
        """Apply a pending request as its second person (a rule_approver other than the requester)."""
        self._decide(actor, request_id, reason, approve=True)

    def reject(self, actor: str, request_id: int, reason: str = "") -> None:
        self._decide(actor, request_id, reason, approve=False)

    def _decide(self, actor: str, request_id: int, reason: str, approve: bool) -> None:
        self._require(actor, APPROVER_ROLES, "approve rule changes")
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT requested_by, status FROM rule_change_requests WHERE request_id = %s FOR UPDATE",
                            (request_id,))
                row = cur.fetchone()
                if row is None:
                    raise RuleStoreError(f"no change request {request_id}")
                requested_by, status = row
                if status != "pending":
                    raise RuleStoreError(f"change request {request_id} is already {status}")
                if requested_by == actor:
                    _audit(cur, "rule_change_refused", actor, {"request_id": request_id,
                                                               "why": "four-eyes: the requester approving"})
                    self.conn.commit()
                    raise NotAllowed(f"{actor!r} requested change {request_id}: four-eyes needs another "
                                     "rule_approver to approve it")
                if approve:
                    self._apply(cur, request_id, requested_by, approved_by=actor)
                else:
                    cur.execute("UPDATE rule_change_requests SET status = 'rejected', decided_by = %s, "
                                "decided_at = now() WHERE request_id = %s", (actor, request_id))
                _audit(cur, "rule_change_approved" if approve else "rule_change_rejected", actor,
                       {"request_id": request_id, "requested_by": requested_by, "reason": reason})
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise

    def _apply(self, cur, request_id: int, requested_by: str, approved_by: str | None) -> None:
        cur.execute("SELECT kind, rule_name, rule_version, list_name, payload FROM rule_change_requests "
                    "WHERE request_id = %s", (request_id,))
        kind, name, version, list_name, payload = cur.fetchone()
        if kind in TARGET_STATE:
            target = TARGET_STATE[kind]
            if target in ("active", "shadow"):  # the name's other live version steps down
                cur.execute("UPDATE rules SET state = 'retired', state_changed_at = now() WHERE name = %s "
                            "AND version <> %s AND state IN ('shadow', 'active')", (name, version))
            cur.execute("UPDATE rules SET state = %s, state_changed_at = now() WHERE name = %s AND version = %s",
                        (target, name, version))
            change = f"{kind} {name} v{version}"
        else:
            for entry in payload.get("add", []):
                cur.execute("UPDATE rule_list_entries SET removed_at = now(), removed_by = %s "
                            "WHERE list_name = %s AND value = %s AND removed_at IS NULL",
                            (requested_by, list_name, entry["value"]))
                cur.execute("INSERT INTO rule_list_entries (list_name, value, expires_at, reason, added_by) "
                            "VALUES (%s, %s, %s, %s, %s)",
                            (list_name, entry["value"], entry["expires_at"], entry.get("reason", ""), requested_by))
            if payload.get("remove"):
                cur.execute("UPDATE rule_list_entries SET removed_at = now(), removed_by = %s "
                            "WHERE list_name = %s AND value = ANY(%s) AND removed_at IS NULL",
                            (requested_by, list_name, payload["remove"]))
            change = f"list {list_name}: +{len(payload.get('add', []))} -{len(payload.get('remove', []))}"
        cur.execute("UPDATE rule_change_requests SET status = 'applied', decided_by = %s, decided_at = now() "
                    "WHERE request_id = %s", (approved_by, request_id))
        cur.execute("INSERT INTO rules_revisions (change) VALUES (%s) RETURNING revision", (change,))
        revision = cur.fetchone()[0]
        _audit(cur, "rule_change_applied", approved_by or requested_by,
               {"request_id": request_id, "change": change, "requested_by": requested_by,
                "approved_by": approved_by, "revision": revision})

    # ------------------------------------------------------------------ lists
    def create_list(self, actor: str, name: str, kind: str, field: str, description: str = "") -> None:
        self._require(actor, AUTHOR_ROLES, "create lists")
        if kind not in LIST_KINDS:
            raise RuleStoreError(f"kind={kind!r} must be one of {', '.join(LIST_KINDS)}")
        if field not in LIST_FIELDS:
            raise RuleStoreError(f"field={field!r} must be one of {', '.join(LIST_FIELDS)}")
        try:
            with self.conn.cursor() as cur:
                cur.execute("INSERT INTO rule_lists (list_name, kind, field, description, created_by) "
                            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING list_name",
                            (name, kind, field, description, actor))
                if cur.fetchone() is None:
                    raise RuleStoreError(f"list {name!r} exists already")
                cur.execute("INSERT INTO rules_revisions (change) VALUES (%s)", (f"create list {name}",))
                _audit(cur, "rule_list_created", actor, {"list": name, "kind": kind, "field": field})
            self.conn.commit()
        except Exception as exc:
            self.conn.rollback()
            if getattr(exc, "pgcode", None) == "23514":
                raise RuleStoreError(f"list name {name!r} must be lower case letters, digits and _") from None
            raise

    def list_info(self, name: str) -> dict:
        with self.conn.cursor() as cur:
            cur.execute("SELECT list_name, kind, field, description FROM rule_lists WHERE list_name = %s", (name,))
            row = cur.fetchone()
        self.conn.rollback()
        if row is None:
            raise RuleStoreError(f"no list {name!r} (python -m rules lists create {name} --kind block --field device_id)")
        return dict(zip(("name", "kind", "field", "description"), row, strict=True))

    def lists(self) -> list[dict]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT l.list_name, l.kind, l.field, l.description, count(e.entry_id) FILTER "
                        "(WHERE e.removed_at IS NULL AND (e.expires_at IS NULL OR e.expires_at > now())) "
                        "FROM rule_lists l LEFT JOIN rule_list_entries e USING (list_name) "
                        "GROUP BY 1, 2, 3, 4 ORDER BY 1")
            rows = cur.fetchall()
        self.conn.rollback()
        return [dict(zip(("name", "kind", "field", "description", "entries"), r, strict=True)) for r in rows]

    def entries(self, name: str) -> list[dict]:
        """The list's current entries (not removed, not expired)."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT value, expires_at, reason, added_by, added_at FROM rule_list_entries "
                        "WHERE list_name = %s AND removed_at IS NULL AND (expires_at IS NULL OR expires_at > now()) "
                        "ORDER BY value", (name,))
            rows = cur.fetchall()
        self.conn.rollback()
        return [dict(zip(("value", "expires_at", "reason", "added_by", "added_at"), r, strict=True)) for r in rows]


def read_entries_csv(text: str, source: str = "CSV") -> list[ListEntry]:
    """Entries of a bulk import: a header with ``value`` and optionally ``expires_at`` (ISO-8601)
    and ``reason``. A bad row names its line; nothing is imported then."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "value" not in reader.fieldnames:
        raise RuleStoreError(f"{source}: the header must name a 'value' column (optional: expires_at, reason)")
    entries = []
    for line, row in enumerate(reader, start=2):
        value = (row.get("value") or "").strip()
        if not value:
            raise RuleStoreError(f"{source} line {line}: empty value")
        expires = (row.get("expires_at") or "").strip()
        expires_at = None
        if expires:
            try:
                expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00"))
            except ValueError:
                raise RuleStoreError(f"{source} line {line}: expires_at {expires!r} is not ISO-8601") from None
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
        entries.append(ListEntry(value, expires_at, (row.get("reason") or "").strip()))
    return entries


def _entry_count(payload: dict) -> int:
    return len(payload.get("add", [])) + len(payload.get("remove", []))


def _audit(cur, event_type: str, actor: str, details: dict) -> None:
    cur.execute("INSERT INTO audit_log (event_type, actor, details) VALUES (%s, %s, %s)",
                (event_type, actor, json.dumps(details, default=str)))


__all__ = ["ACTIONS", "LIST_FIELDS", "LIST_KINDS", "ListEntry", "NotAllowed", "Rule", "RuleError", "RuleStore",
           "RuleStoreError", "read_entries_csv"]
