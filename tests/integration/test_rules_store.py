"""Rules and lists in the real PostgreSQL: versions, four-eyes approval, audit, lists, atomic
changes, the live snapshot and the backtest (a private schema per module)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from rules.backtest import backtest
from rules.language import RuleError
from rules.ruleset import RuleSetCache, load_ruleset
from rules.store import ListEntry, NotAllowed, RuleStore, RuleStoreError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="module")
def schema(settings):
    from fraudops.db import apply_migrations, connect
    from portal.users import save_user

    name = f"s_r{uuid.uuid4().hex[:10]}"
    conn = connect(settings)
    apply_migrations(conn, name)
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('search_path', %s, false)", (name,))
    for user, role in (("ana", "rule_author"), ("olga", "rule_approver"), ("pat", "rule_approver"),
                       ("vic", "viewer")):
        save_user(conn, user, role, PASSWORD)
    conn.commit()
    yield name
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.commit()
    conn.close()


@pytest.fixture
def conn(settings, schema):
    from fraudops.db import connect

    connection = connect(settings)
    with connection.cursor() as cur:
        cur.execute("SELECT set_config('search_path', %s, false)", (schema,))
    connection.commit()
    yield connection
    connection.close()


def _audit(conn, event_type: str) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute("SELECT actor, details FROM audit_log WHERE event_type = %s ORDER BY audit_id", (event_type,))
        rows = [{"actor": a, **d} for a, d in cur.fetchall()]
    conn.rollback()
    return rows


def _state(conn, name: str) -> dict[int, str]:
    with conn.cursor() as cur:
        cur.execute("SELECT version, state FROM rules WHERE name = %s", (name,))
        rows = dict(cur.fetchall())
    conn.rollback()
    return rows


def test_versions_are_kept_and_publishing_takes_a_second_person(conn):
    store = RuleStore(conn, four_eyes=True)
    v1 = store.save_rule("ana", "big_online", "amount > 2000", "review", 50, reason="first cut")
    v2 = store.save_rule("ana", "big_online", 'amount > 1500 && cat_channel == "online"', "review", 50,
                         reason="online only")
    assert (v1, v2) == (1, 2)
    request = store.request("ana", "publish", "big_online", reason="backtested")
    assert request["status"] == "pending" and _state(conn, "big_online") == {1: "draft", 2: "draft"}

    with pytest.raises(NotAllowed, match="may not approve rule changes: needs role rule_approver"):
        store.approve("ana", request["request_id"])  # an author without the approver role
    olga_request = store.request("olga", "shadow", "big_online", version=1, reason="watch v1")
    with pytest.raises(NotAllowed, match="'olga' requested change .*four-eyes needs another rule_approver"):
        store.approve("olga", olga_request["request_id"])
    assert any(r["request_id"] == olga_request["request_id"] for r in _audit(conn, "rule_change_refused"))

    store.approve("olga", request["request_id"], reason="looks right")
    assert _state(conn, "big_online") == {1: "draft", 2: "active"}
    store.approve("pat", olga_request["request_id"])  # shadowing v1 retires the live v2 (one live version)
    assert _state(conn, "big_online") == {1: "shadow", 2: "retired"}
    applied = _audit(conn, "rule_change_applied")
    assert [(a["requested_by"], a["approved_by"]) for a in applied[-2:]] == [("ana", "olga"), ("olga", "pat")]
    assert [r.version for r in store.history("big_online")] == [1, 2]
    with pytest.raises(RuleStoreError, match="already applied"):
        store.approve("pat", request["request_id"])


def test_roles_are_enforced_and_named(conn):
    store = RuleStore(conn)
    with pytest.raises(NotAllowed, match=r"'vic' \(role viewer\) may not write rules: needs role rule_author"):
        store.save_rule("vic", "x", "amount > 1", "review")
    with pytest.raises(NotAllowed, match="'nobody' is not a portal user"):
        store.save_rule("nobody", "x", "amount > 1", "review")
    store.save_rule("ana", "needs_approver", "amount > 1", "tag")
    pending = store.request("ana", "publish", "needs_approver", reason="r")
    with pytest.raises(NotAllowed, match="may not approve rule changes: needs role rule_approver"):
        store.approve("ana", pending["request_id"])


def test_bad_rules_are_refused_at_save_time_and_nothing_is_written(conn):
    store = RuleStore(conn)
    for expression, message in (("amount >", "syntax error at line 1, column 9"),
                                ("speed > 3", "unknown field speed"),
                                ("amount / user_tiny_count_1h > 3.0", "divides by zero"),
                                ('in_list("nope", device_id)', "unknown list nope")):
        with pytest.raises(RuleError, match=f"rule 'bad_one': .*{message}"):
            store.save_rule("ana", "bad_one", expression, "decline")
    with pytest.raises(RuleStoreError, match="action='block' must be one of"):
        store.save_rule("ana", "bad_one", "amount > 1", "block")
    with pytest.raises(RuleStoreError, match="rule name 'Bad Name' must be lower case"):
        store.save_rule("ana", "Bad Name", "amount > 1", "review")
    assert _state(conn, "bad_one") == {}


def test_lists_expire_import_from_csv_and_large_changes_need_approval(conn, tmp_path):
    store = RuleStore(conn, four_eyes=True, list_approval_size=3)
    store.create_list("ana", "mule_devices", "block", "device_id", "devices of known mules")
    with pytest.raises(RuleStoreError, match="list 'mule_devices' exists already"):
        store.create_list("ana", "mule_devices", "block", "device_id")
    small = store.change_list("ana", "mule_devices", add=[
        ListEntry("DEV_1"), ListEntry("DEV_OLD", datetime.now(UTC) - timedelta(seconds=1))], reason="case 17")
    assert small["status"] == "applied"  # 2 entries <= 3: no approval needed
    assert [e["value"] for e in store.entries("mule_devices")] == ["DEV_1"]  # DEV_OLD has expired

    csv_file = tmp_path / "devices.csv"
    csv_file.write_text("value,expires_at,reason\n" + "".join(f"DEV_B{i},,bulk\n" for i in range(10)))
    result = subprocess.run([sys.executable, "-m", "rules", "--pg-schema", _schema_of(conn), "lists", "import",
                             "mule_devices", "--csv", str(csv_file), "--actor", "ana", "--reason", "bulk from case 18"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "RULES_LIST_APPROVAL_SIZE": "3"})
    assert result.returncode == 0, result.stderr
    assert "pending" in result.stdout  # 10 > 3: four-eyes
    request_id = int(result.stdout.split("request ")[1].split(":")[0])
    assert len(store.entries("mule_devices")) == 1
    store.approve("olga", request_id)
    assert len(store.entries("mule_devices")) == 11
    store.change_list("ana", "mule_devices", remove=["DEV_1"], reason="cleared")
    with conn.cursor() as cur:  # the removed entry's history stays
        cur.execute("SELECT removed_by FROM rule_list_entries WHERE list_name = 'mule_devices' AND value = 'DEV_1'")
        assert cur.fetchall() == [("ana",)]
    conn.rollback()


def test_a_change_that_fails_halfway_leaves_nothing(conn):
    store = RuleStore(conn, four_eyes=True)
    store.create_list("ana", "blocked_users", "block", "user_id")
    revision_before = load_ruleset(conn).revision
    with conn.cursor() as cur:  # a pending change whose second entry cannot be stored
        cur.execute("INSERT INTO rule_change_requests (kind, list_name, payload, reason, requested_by) VALUES "
                    "('list_change', 'blocked_users', %s, 'r', 'ana') RETURNING request_id",
                    (json.dumps({"add": [{"value": "U1", "expires_at": None},
                                         {"value": "U2", "expires_at": "not a time"}], "remove": []}),))
        request_id = cur.fetchone()[0]
    conn.commit()
    with pytest.raises(Exception, match="timestamp"):
        store.approve("olga", request_id)
    assert store.entries("blocked_users") == []
    assert load_ruleset(conn).revision == revision_before
    assert [p["request_id"] for p in store.pending() if p["request_id"] == request_id] == [request_id]
    assert not [a for a in _audit(conn, "rule_change_applied") if a["request_id"] == request_id]


def test_the_cache_picks_up_a_published_change(settings, conn, schema):
    from fraudops.db import connect

    def connect_schema():
        c = connect(settings)
        with c.cursor() as cur:
            cur.execute("SELECT set_config('search_path', %s, false)", (schema,))
        c.commit()
        return c

    cache = RuleSetCache(connect_schema, every_s=0.2)
    cache.refresh()
    before = cache.ruleset.revision
    store = RuleStore(conn, four_eyes=False)
    store.save_rule("ana", "hot_reload", 'country == "KP"', "decline", 5)
    store.request("ana", "publish", "hot_reload", reason="sanctions")
    assert cache.refresh() and cache.ruleset.revision > before
    assert "hot_reload" in [r.name for r in cache.ruleset.rules]
    assert not cache.refresh()  # same revision: nothing reloaded
    cache.stop()


def test_backtest_counts_hits_precision_recall_and_overlap(conn):
    rng = np.random.default_rng(5)
    now = datetime.now(UTC)
    rows = []
    for i in range(400):
        amount = float(rng.uniform(1, 5000))
        count = int(rng.integers(0, 6))
        fraud = bool(rng.random() < 0.1)
        rows.append((f"BT_{i}", "U1", amount, "USD", "M", now - timedelta(hours=i), "US", "purchase",
                     float(rng.random()), bool(rng.random() < 0.05),
                     json.dumps({"user_txn_count_1h": count}), fraud, i >= 390))
    with conn.cursor() as cur:
        for tid, user, amount, cur_, merchant, t, country, ttype, score, alerted, features, fraud, old in rows:
            when = t - timedelta(days=40) if old else t
            cur.execute("INSERT INTO transactions (transaction_id, user_id, amount, currency, merchant, "
                        "transaction_time, country, transaction_type, fraud_score, is_fraud, features) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (tid, user, amount, cur_, merchant, when, country, ttype, score, alerted, features))
            if fraud:
                cur.execute("INSERT INTO labels (transaction_id, is_fraud, source) VALUES (%s, true, 'chargeback')",
                            (tid,))
    conn.commit()
    result = backtest(conn, "amount > 2500.0 && user_txn_count_1h >= 3", days=30)
    recent = [r for r in rows if not r[-1]]
    hit = [r for r in recent if r[2] > 2500.0 and json.loads(r[10])["user_txn_count_1h"] >= 3]
    true_hits = [r for r in hit if r[11]]
    assert result.transactions == len(recent) and result.hits == len(hit)
    assert result.true_hits == len(true_hits) and result.frauds == sum(r[11] for r in recent)
    assert result.precision == pytest.approx(len(true_hits) / len(hit))
    assert result.recall == pytest.approx(len(true_hits) / sum(r[11] for r in recent))
    assert result.overlap_with_model == sum(r[9] for r in hit)
    assert result.new_alerts == len(hit) - result.overlap_with_model
    assert result.fraud_amount_caught == pytest.approx(sum(r[2] for r in true_hits))
    threshold = backtest(conn, "score >= 0.9", days=30)
    assert threshold.hits == sum(r[8] >= 0.9 for r in recent)


def _schema_of(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('search_path')")
        value = cur.fetchone()[0]
    conn.rollback()
    return value.strip('"')
