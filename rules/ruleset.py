"""The live rules and lists, loaded from PostgreSQL, evaluated on decided transactions, and
reloaded without a restart when a change is published.

A :class:`RuleSet` is an immutable snapshot at one ``rules_revisions`` revision: the shadow and
active rule versions (compiled), the lists' current entries with their expiry. :class:`RuleSetCache`
checks the newest revision every RULES_RELOAD_SECONDS in a background thread and swaps in a new
snapshot (a PostgreSQL that is down keeps the last snapshot and logs it). A rule that raises on
one transaction is counted (``errors``), logged once per minute, and skipped: the decision
still comes back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rules.language import RULE_FIELDS, CompiledRule, RuleError, compile_rule, rule_context

log = logging.getLogger("rules.ruleset")


@dataclass(frozen=True)
class LiveRule:
    name: str
    version: int
    action: str
    priority: int
    shadow: bool
    compiled: CompiledRule


@dataclass(frozen=True)
class LiveList:
    name: str
    kind: str  # block | allow
    field: str  # the transaction field it matches
    entries: Mapping[str, datetime | None]  # value -> expires_at (None: never)

    def has(self, value, now: datetime) -> bool:
        if value is None:
            return False
        key = str(value)
        if key not in self.entries:
            return False
        expires = self.entries[key]
        return expires is None or expires > now


@dataclass
class Outcome:
    """What the rules and lists say about one transaction."""

    fired: list[dict] = field(default_factory=list)  # {"name", "version", "action", "shadow"}
    list_hits: list[dict] = field(default_factory=list)  # {"list", "kind", "field"}

    def actions(self) -> set[str]:
        """The actions of the fired rules that count (shadow rules never change a decision)."""
        return {f["action"] for f in self.fired if not f["shadow"]}

    def list_kinds(self) -> set[str]:
        return {h["kind"] for h in self.list_hits}

    def recorded(self) -> list[dict]:
        """What the decision records (rules_fired): fired rules and list hits."""
        return [*self.fired, *({"name": f"list:{h['list']}", "version": 0, "action": h["kind"], "shadow": False}
                               for h in self.list_hits)]


class RuleSet:
    def __init__(self, revision: int, rules: list[LiveRule], lists: dict[str, LiveList]):
        self.revision = revision
        self.rules = sorted(rules, key=lambda r: (r.priority, r.name))
        self.lists = lists
        self.fields = tuple(sorted({f for r in self.rules for f in r.compiled.fields}))  # what the rules read
        self.errors: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}

    @classmethod
    def empty(cls) -> RuleSet:
        return cls(0, [], {})

    def __bool__(self) -> bool:
        return bool(self.rules or self.lists)

    def in_list(self, now: datetime):
        lists = self.lists

        def check(name, value) -> bool:
            live = lists.get(name)
            return live is not None and live.has(value, now)

        return check

    def evaluate(self, rows: list[Mapping], now: datetime | None = None) -> list[Outcome]:
        """The outcome for each row: the transaction's fields, its features and ``score``."""
        now = now or datetime.now(UTC)
        in_list = self.in_list(now)
        outcomes = []
        for row in rows:
            outcome = Outcome()
            for live in self.lists.values():
                if live.has(row.get(live.field), now):
                    outcome.list_hits.append({"list": live.name, "kind": live.kind, "field": live.field})
            if self.rules:
                context = rule_context(rule_variables(row, self.fields), in_list)
                for rule in self.rules:
                    try:
                        fired = rule.compiled.matches(context)
                    except Exception as exc:  # noqa: BLE001 - counted, logged, skipped
                        self._count_error(rule, exc)
                        continue
                    if fired:
                        outcome.fired.append({"name": rule.name, "version": rule.version,
                                              "action": rule.action, "shadow": rule.shadow})
            outcomes.append(outcome)
        return outcomes

    def _count_error(self, rule: LiveRule, exc: Exception) -> None:
        key = f"{rule.name}@{rule.version}"
        self.errors[key] = self.errors.get(key, 0) + 1
        now = time.monotonic()
        if now - self._last_logged.get(key, -1e9) >= 60:
            self._last_logged[key] = now
            log.warning("rule %s version %s raised (%s: %s); skipped (%d errors so far)", rule.name, rule.version,
                        type(exc).__name__, exc, self.errors[key])


def rule_variables(row: Mapping, fields=None) -> dict:
    """The CEL variables of one row: the ``fields`` (default: every RULE_FIELDS name; a missing
    string is "", a missing number 0.0 -- NaN and None would make comparisons fail), typed for CEL."""
    out = {}
    for name in RULE_FIELDS if fields is None else fields:
        kind = RULE_FIELDS[name]
        value = row.get(name)
        if kind == "string":
            out[name] = "" if value is None else (value.isoformat() if isinstance(value, datetime) else str(value))
        else:
            try:
                number = float(value) if value is not None else 0.0
            except (TypeError, ValueError):
                number = 0.0
            out[name] = 0.0 if number != number else number
    return out



# ---------------------------------------------------------------------- loading
def current_revision(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(revision), 0) FROM rules_revisions")
        revision = cur.fetchone()[0]
    conn.rollback()
    return int(revision)


def load_ruleset(conn) -> RuleSet:
    """The live snapshot: shadow and active rules, the lists' current entries."""
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(revision), 0) FROM rules_revisions")
        revision = int(cur.fetchone()[0])
        cur.execute("SELECT name, version, expression, action, priority, state FROM rules "
                    "WHERE state IN ('shadow', 'active')")
        rule_rows = cur.fetchall()
        cur.execute("SELECT list_name, kind, field FROM rule_lists")
        list_rows = cur.fetchall()
        cur.execute("SELECT list_name, value, expires_at FROM rule_list_entries WHERE removed_at IS NULL "
                    "AND (expires_at IS NULL OR expires_at > now())")
        entry_rows = cur.fetchall()
    conn.rollback()
    known = [r[0] for r in list_rows]
    rules = []
    for name, version, expression, action, priority, state in rule_rows:
        try:
            compiled = compile_rule(name, expression, known)
        except RuleError as exc:  # saved rules were checked; a list dropped since would land here
            log.error("live rule %s v%s no longer compiles, skipped: %s", name, version, exc)
            continue
        rules.append(LiveRule(name, version, action, priority, state == "shadow", compiled))
    entries: dict[str, dict] = {name: {} for name in known}
    for list_name, value, expires_at in entry_rows:
        entries[list_name][value] = expires_at
    lists = {name: LiveList(name, kind, fld, entries[name]) for name, kind, fld in list_rows}
    return RuleSet(revision, rules, lists)


class RuleSetCache:
    """The service's current RuleSet, refreshed in the background when the revision moves."""

    def __init__(self, connect, every_s: float = 5.0):
        self.connect = connect  # () -> a psycopg2 connection
        self.every_s = every_s
        self.ruleset = RuleSet.empty()
        self.loaded_at: float | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None

    def refresh(self) -> bool:
        """Reload when the revision moved; True when a new snapshot was swapped in."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.connect()
            if self.loaded_at is not None and current_revision(self._conn) == self.ruleset.revision:
                self.last_error = None
                return False
            fresh = load_ruleset(self._conn)
        except Exception as exc:  # noqa: BLE001 - keep the last snapshot
            self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            log.warning("rules not reloaded (kept revision %s): %s", self.ruleset.revision, self.last_error)
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None
            return False
        previous = self.ruleset.revision
        self.ruleset, self.loaded_at, self.last_error = fresh, time.monotonic(), None
        if fresh.revision != previous:
            log.info("rules revision %s loaded: %d rules, %d lists", fresh.revision, len(fresh.rules), len(fresh.lists))
        return True

    def start(self) -> RuleSetCache:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="rules-reload", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
