"""The portal's rules and lists pages over HTTP, against a real portal process and PostgreSQL: a
rule_author saves a rule (a bad one is refused with its position, 422, nothing saved), validates
and backtests it, requests publishing; four-eyes (the requester may not approve; a rule_author
may not approve at all); a rule_approver approves and the rule is active in PostgreSQL; viewers
read but every change they post is refused (403); a form without its CSRF token is refused; a
list is created, entries added (lines and a CSV upload, a large change waits for approval) and
removed.

One portal process per module, on its own PostgreSQL schema; each test uses its own rule / list names.
"""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager

import httpx
import pytest
from markupsafe import escape

from fraudops.db import apply_migrations
from tests import portal_support as support

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

AUTHOR, APPROVER, VIEWER = ("ana", "ana-password-123"), ("olga", "olga-password-123"), ("vic", "vic-password-123")
OTHER_APPROVER = ("otto", "otto-password-123")
LIST_APPROVAL_SIZE = 3


@pytest.fixture(scope="module")
def schema(settings):
    from fraudops.db import connect
    from portal.users import save_user

    name = f"s_prules_{uuid.uuid4().hex[:8]}"
    conn = connect(settings)
    apply_migrations(conn, name)
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('search_path', %s, false)", (name,))
    conn.commit()
    for (user, password), role in ((AUTHOR, "rule_author"), (APPROVER, "rule_approver"), (VIEWER, "viewer"),
                                   (OTHER_APPROVER, "rule_approver")):
        save_user(conn, user, role, password)
    yield name
    conn.rollback()
    with conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


@pytest.fixture(scope="module")
def portal(schema, tmp_path_factory):
    process = support.start_portal(schema, tmp_path_factory.mktemp("portal-rules") / "portal.log",
                                   env={"RULES_FOUR_EYES": "true", "RULES_LIST_APPROVAL_SIZE": str(LIST_APPROVAL_SIZE)})
    yield process
    process.stop()


@contextmanager
def _client(portal, user):
    with httpx.Client(base_url=portal.base_url, timeout=60) as client:
        assert support.login(client, *user).status_code == 303
        yield client


@pytest.fixture
def author(portal):
    with _client(portal, AUTHOR) as c:
        yield c


@pytest.fixture
def approver(portal):
    with _client(portal, APPROVER) as c:
        yield c


@pytest.fixture
def viewer(portal):
    with _client(portal, VIEWER) as c:
        yield c


def token(client, path="/rules") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return support.csrf_token(page.text)


def one(pg_conn, schema, sql, params=()):
    with pg_conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{schema}"')
        cur.execute(sql, params)
        row = cur.fetchone()
    pg_conn.rollback()
    return row


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def save(client, name, expression, action="review", priority="50", reason="test"):
    return client.post("/rules", data={"csrf_token": token(client), "name": name, "expression": expression,
                                       "action": action, "priority": priority, "reason": reason})


def element(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match, f"no #{element_id} in the page"
    return match.group(1).strip()


def pending_id(pg_conn, schema, rule_name) -> int:
    return one(pg_conn, schema, "SELECT max(request_id) FROM rule_change_requests WHERE rule_name = %s "
                                "AND status = 'pending'", (rule_name,))[0]


# ---------------------------------------------------------------- pages need a login

@pytest.mark.parametrize("path", ["/rules", "/rules/some_rule", "/lists/some_list"])
def test_pages_need_a_login(portal, path):
    with httpx.Client(base_url=portal.base_url, timeout=30) as anonymous:
        page = anonymous.get(path)
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
        assert anonymous.post("/rules", data={"name": "x"}).status_code == 401


def test_viewer_reads_the_rules_page_without_forms(viewer):
    page = viewer.get("/rules")
    assert page.status_code == 200 and 'href="/rules"' in page.text
    assert 'id="rule-form"' not in page.text and "Only rule authors" in page.text


# ---------------------------------------------------------------- writing a rule

def test_author_saves_validates_backtests_and_requests_publish(author, pg_conn, schema):
    name = unique("big_amount")
    for i, amount in enumerate((50.0, 150.0, 250.0)):
        support.insert_alert(pg_conn, schema, f"TXN_{name}_{i}", amount=amount)
    with pg_conn, pg_conn.cursor() as cur:
        cur.execute(f'INSERT INTO "{schema}".labels (transaction_id, is_fraud, source) VALUES (%s, TRUE, %s)',
                    (f"TXN_{name}_2", "chargeback"))

    checked = author.post("/rules/check", data={"csrf_token": token(author), "name": name,
                                                "expression": f'amount > 100.0 && merchant_id != "{name}"'})
    assert checked.status_code == 200
    assert element(checked.text, "check-result") == "ok: reads amount, merchant_id; lists none"
    assert one(pg_conn, schema, "SELECT count(*) FROM rules WHERE name = %s", (name,)) == (0,)  # nothing saved

    saved = save(author, name, f'amount > 100.0 && merchant_id != "{name}"')
    assert saved.status_code == 303 and saved.headers["location"] == f"/rules/{name}?result=saved&version=1"
    page = author.get(saved.headers["location"])
    assert element(page.text, "rule-result") == "Saved version 1 (draft)."
    assert element(page.text, "rule-state") == "draft"
    assert one(pg_conn, schema, "SELECT version, state, owner, action, priority FROM rules WHERE name = %s",
               (name,)) == (1, "draft", AUTHOR[0], "review", 50)

    tested = author.post(f"/rules/{name}/backtest", data={"csrf_token": support.csrf_token(page.text), "days": "7"})
    assert tested.status_code == 200, tested.text
    shown = {key: element(tested.text, f"bt-{key}") for key in
             ("transactions", "frauds", "hits", "true-hits", "precision", "recall", "fraud-amount", "days")}
    assert shown == {"transactions": "3", "frauds": "1", "hits": "2", "true-hits": "1", "precision": "0.500",
                     "recall": "1.000", "fraud-amount": "250.00", "days": "7"}

    requested = author.post(f"/rules/{name}/request", data={"csrf_token": token(author), "kind": "publish",
                                                            "version": "1", "reason": "backtested"})
    assert requested.status_code == 303
    request_id = pending_id(pg_conn, schema, name)
    assert requested.headers["location"] == f"/rules/{name}?result=requested&request_id={request_id}&status=pending"
    assert one(pg_conn, schema, "SELECT state FROM rules WHERE name = %s", (name,)) == ("draft",)
    listing = author.get("/rules").text
    assert f'data-request="{request_id}"' in listing and f'id="approve-{request_id}"' not in listing  # not an approver


@pytest.mark.parametrize("expression, message", [
    ("amount > ", "syntax error at line 1, column"),
    ("amount > 10.0 && no_such_field == 1.0", "unknown field no_such_field"),
    ('in_list("nope", device_id)', "unknown list nope"),
    ("amount + 1.0", "must be a condition"),
])
def test_a_bad_rule_is_refused_with_its_reason_and_nothing_is_saved(author, pg_conn, schema, expression, message):
    name = unique("bad")
    refused = save(author, name, expression)
    assert refused.status_code == 422
    error = element(refused.text, "save-error")
    assert error.startswith(f"rule &#39;{name}&#39;:") and message in error, error
    assert f">{escape(expression)}</textarea>" in refused.text  # kept, to be fixed
    assert one(pg_conn, schema, "SELECT count(*) FROM rules WHERE name = %s", (name,)) == (0,)
    assert one(pg_conn, schema, "SELECT count(*) FROM audit_log WHERE details->>'rule' = %s", (name,)) == (0,)
    checked = author.post("/rules/check", data={"csrf_token": token(author), "name": name, "expression": expression})
    assert checked.status_code == 422 and message in element(checked.text, "check-result")


def test_a_bad_name_action_or_priority_is_422(author, pg_conn, schema):
    for data in ({"name": "Bad Name"}, {"action": "explode"}, {"priority": "high"}):
        fields = {"name": unique("ok"), "expression": "amount > 1.0", "action": "review", "priority": "5", **data}
        refused = save(author, **fields)
        assert refused.status_code == 422, data
        assert 'id="save-error"' in refused.text
    assert one(pg_conn, schema, "SELECT count(*) FROM rules WHERE name = 'Bad Name' OR action = 'explode'") == (0,)


def test_unknown_rule_and_bad_backtest_days(author):
    assert author.get("/rules/no_such_rule").status_code == 404
    assert author.get("/rules/NOT%20A%20NAME").status_code == 404
    name = unique("days")
    assert save(author, name, "amount > 1.0").status_code == 303
    for days in ("0", "abc", "5000"):
        bad = author.post(f"/rules/{name}/backtest", data={"csrf_token": token(author), "days": days})
        assert bad.status_code == 422 and "days=" in bad.text


# ---------------------------------------------------------------- four-eyes

def test_four_eyes_and_the_approver_makes_the_rule_active(author, approver, portal, pg_conn, schema):
    name = unique("four_eyes")
    assert save(author, name, "amount > 5000.0", action="decline").status_code == 303
    assert author.post(f"/rules/{name}/request", data={"csrf_token": token(author), "kind": "publish",
                                                       "reason": "needed"}).status_code == 303
    request_id = pending_id(pg_conn, schema, name)

    own = author.post(f"/rules/requests/{request_id}/approve", data={"csrf_token": token(author)})
    assert own.status_code == 403 and "needs role rule_approver" in element(own.text, "error-message")

    # an approver's own request: four-eyes refuses it (and audits the refusal)
    mine = unique("own_request")
    assert save(approver, mine, "amount > 6000.0").status_code == 303
    assert approver.post(f"/rules/{mine}/request", data={"csrf_token": token(approver), "kind": "shadow",
                                                         "reason": "mine"}).status_code == 303
    mine_id = pending_id(pg_conn, schema, mine)
    page = approver.get("/rules").text
    assert f'id="approve-{mine_id}"' not in page and f'id="approve-{request_id}"' in page
    refused = approver.post(f"/rules/requests/{mine_id}/approve", data={"csrf_token": token(approver)})
    assert refused.status_code == 403 and "four-eyes" in element(refused.text, "error-message")
    assert one(pg_conn, schema, "SELECT state FROM rules WHERE name = %s", (mine,)) == ("draft",)
    assert one(pg_conn, schema, "SELECT count(*) FROM audit_log WHERE event_type = 'rule_change_refused' "
                                "AND (details->>'request_id')::int = %s", (mine_id,)) == (1,)

    approved = approver.post(f"/rules/requests/{request_id}/approve", data={"csrf_token": token(approver),
                                                                            "reason": "looks right"})
    assert approved.status_code == 303 and approved.headers["location"] == (
        f"/rules?result=approved&request_id={request_id}")
    assert one(pg_conn, schema, "SELECT state FROM rules WHERE name = %s AND version = 1", (name,)) == ("active",)
    assert one(pg_conn, schema, "SELECT status, decided_by FROM rule_change_requests WHERE request_id = %s",
               (request_id,)) == ("applied", APPROVER[0])
    again = approver.post(f"/rules/requests/{request_id}/approve", data={"csrf_token": token(approver)})
    assert again.status_code == 422 and "already applied" in again.text

    with _client(portal, OTHER_APPROVER) as other:
        rejected = other.post(f"/rules/requests/{mine_id}/reject", data={"csrf_token": token(other), "reason": "no"})
        assert rejected.status_code == 303
    assert one(pg_conn, schema, "SELECT status FROM rule_change_requests WHERE request_id = %s",
               (mine_id,)) == ("rejected",)
    assert approver.post("/rules/requests/999999999/approve", data={"csrf_token": token(approver)}).status_code == 422
    assert approver.post("/rules/requests/abc/approve", data={"csrf_token": token(approver)}).status_code == 400


def test_a_request_without_a_reason_is_422(author, pg_conn, schema):
    name = unique("no_reason")
    assert save(author, name, "amount > 1.0").status_code == 303
    refused = author.post(f"/rules/{name}/request", data={"csrf_token": token(author), "kind": "publish",
                                                          "reason": " "})
    assert refused.status_code == 422 and "reason is required" in element(refused.text, "error-message")
    assert one(pg_conn, schema, "SELECT count(*) FROM rule_change_requests WHERE rule_name = %s", (name,)) == (0,)


def test_viewer_posts_are_refused(author, viewer, pg_conn, schema):
    name = unique("viewer_target")
    assert save(author, name, "amount > 1.0").status_code == 303
    list_name = unique("viewer_list")
    assert author.post("/lists", data={"csrf_token": token(author), "name": list_name, "kind": "block",
                                       "field": "device_id"}).status_code == 303
    csrf = token(viewer)
    posts = [("/rules", {"name": unique("by_viewer"), "expression": "amount > 1.0", "action": "review"}),
             (f"/rules/{name}/backtest", {"days": "7"}),
             (f"/rules/{name}/request", {"kind": "publish", "reason": "viewer"}),
             ("/lists", {"name": unique("by_viewer"), "kind": "block", "field": "device_id"}),
             (f"/lists/{list_name}/entries", {"values": "DEV_V", "reason": "viewer"}),
             (f"/lists/{list_name}/remove", {"values": "DEV_V", "reason": "viewer"})]
    for path, data in posts:
        refused = viewer.post(path, data={"csrf_token": csrf, **data})
        assert refused.status_code == 403, (path, refused.text)
        assert "viewer" in element(refused.text, "error-message")
    assert one(pg_conn, schema, "SELECT count(*) FROM rule_change_requests WHERE requested_by = %s",
               (VIEWER[0],)) == (0,)
    assert one(pg_conn, schema, "SELECT count(*) FROM rules WHERE owner = %s", (VIEWER[0],)) == (0,)


def test_posts_without_the_csrf_token_are_refused(author, pg_conn, schema):
    name = unique("csrf")
    assert save(author, name, "amount > 1.0").status_code == 303
    list_name = unique("csrf_list")
    for path, data in [("/rules", {"name": unique("csrf_x"), "expression": "amount > 1.0", "action": "review"}),
                       ("/rules/check", {"expression": "amount > 1.0"}),
                       (f"/rules/{name}/backtest", {"days": "7"}),
                       (f"/rules/{name}/request", {"kind": "publish", "reason": "x"}),
                       ("/rules/requests/1/approve", {}), ("/rules/requests/1/reject", {}),
                       ("/lists", {"name": list_name, "kind": "block", "field": "device_id"}),
                       (f"/lists/{list_name}/entries", {"values": "X"}), (f"/lists/{list_name}/remove", {"values": "X"})]:
        for csrf in (None, "forged-token"):
            refused = author.post(path, data=data if csrf is None else {**data, "csrf_token": csrf})
            assert refused.status_code == 403 and "CSRF" in refused.text, path
    assert one(pg_conn, schema, "SELECT count(*) FROM rule_lists WHERE list_name = %s", (list_name,)) == (0,)
    assert one(pg_conn, schema, "SELECT count(*) FROM rule_change_requests WHERE rule_name = %s", (name,)) == (0,)


# ---------------------------------------------------------------- lists

def test_list_create_add_upload_and_remove(author, approver, pg_conn, schema):
    name = unique("mules")
    created = author.post("/lists", data={"csrf_token": token(author), "name": name, "kind": "block",
                                          "field": "device_id", "description": "known mule devices"})
    assert created.status_code == 303 and created.headers["location"] == f"/lists/{name}?result=created"
    page = author.get(created.headers["location"])
    assert page.status_code == 200 and element(page.text, "entry-count") == "0"
    again = author.post("/lists", data={"csrf_token": token(author), "name": name, "kind": "block",
                                        "field": "device_id"})
    assert again.status_code == 422 and "exists already" in again.text
    bad_kind = author.post("/lists", data={"csrf_token": token(author), "name": unique("x"), "kind": "maybe",
                                           "field": "device_id"})
    assert bad_kind.status_code == 422 and "kind=" in bad_kind.text

    csrf = support.csrf_token(page.text)
    added = author.post(f"/lists/{name}/entries", data={"csrf_token": csrf, "values": "DEV_1\n\nDEV_2\nDEV_1\n",
                                                       "expires": "2030-01-01T00:00:00Z", "reason": "case 1"})
    assert added.status_code == 303 and "status=applied" in added.headers["location"]
    rows = one(pg_conn, schema, "SELECT count(*), min(expires_at)::text FROM rule_list_entries WHERE list_name = %s",
               (name,))
    assert rows == (2, "2030-01-01 00:00:00+00")

    upload = "value,expires_at,reason\nDEV_3,,csv one\nDEV_4,2031-06-01T12:00:00Z,csv two\n"
    uploaded = author.post(f"/lists/{name}/entries", data={"csrf_token": csrf, "reason": "bulk"},
                           files={"csv": ("devices.csv", upload.encode(), "text/csv")})
    assert uploaded.status_code == 303 and "status=applied" in uploaded.headers["location"]
    page = author.get(f"/lists/{name}").text
    assert element(page, "entry-count") == "4"
    assert all(f'data-value="DEV_{i}"' in page for i in range(1, 5))
    assert one(pg_conn, schema, "SELECT reason FROM rule_list_entries WHERE list_name = %s AND value = 'DEV_4'",
               (name,)) == ("csv two",)
    lists = author.get("/rules").text
    assert re.search(rf'data-list="{name}">.*?data-entries>4<', lists, re.S)

    bad_csv = author.post(f"/lists/{name}/entries", data={"csrf_token": csrf, "reason": "bulk"},
                          files={"csv": ("bad.csv", b"value,expires_at\nDEV_9,tomorrow\n", "text/csv")})
    assert bad_csv.status_code == 422 and "bad.csv line 2" in bad_csv.text
    no_header = author.post(f"/lists/{name}/entries", data={"csrf_token": csrf, "reason": "bulk"},
                            files={"csv": ("h.csv", b"device\nDEV_9\n", "text/csv")})
    assert no_header.status_code == 422 and "value" in no_header.text
    bad_expiry = author.post(f"/lists/{name}/entries", data={"csrf_token": csrf, "values": "DEV_9",
                                                            "expires": "soon", "reason": "x"})
    assert bad_expiry.status_code == 422 and "ISO-8601" in bad_expiry.text
    nothing = author.post(f"/lists/{name}/entries", data={"csrf_token": csrf, "values": "\n", "reason": "x"})
    assert nothing.status_code == 422
    assert one(pg_conn, schema, "SELECT count(*) FROM rule_list_entries WHERE value = 'DEV_9'") == (0,)

    # more than RULES_LIST_APPROVAL_SIZE entries: waits for a rule_approver
    big = "value\n" + "".join(f"DEV_BULK_{i}\n" for i in range(LIST_APPROVAL_SIZE + 1))
    waiting = author.post(f"/lists/{name}/entries", data={"csrf_token": csrf, "reason": "big import"},
                          files={"csv": ("big.csv", big.encode(), "text/csv")})
    assert waiting.status_code == 303 and "status=pending" in waiting.headers["location"]
    request_id = int(re.search(r"request_id=(\d+)", waiting.headers["location"]).group(1))
    assert element(author.get(f"/lists/{name}").text, "entry-count") == "4"
    assert f'id="approve-{request_id}"' in approver.get("/rules").text
    assert approver.post(f"/rules/requests/{request_id}/approve",
                         data={"csrf_token": token(approver)}).status_code == 303
    assert element(author.get(f"/lists/{name}").text, "entry-count") == str(4 + LIST_APPROVAL_SIZE + 1)

    removed = author.post(f"/lists/{name}/remove", data={"csrf_token": csrf, "values": "DEV_1\nDEV_3",
                                                        "reason": "cleared"})
    assert removed.status_code == 303 and "status=applied" in removed.headers["location"]
    page = author.get(f"/lists/{name}").text
    assert 'data-value="DEV_1"' not in page and 'data-value="DEV_3"' not in page and 'data-value="DEV_2"' in page
    assert one(pg_conn, schema, "SELECT count(*) FROM rule_list_entries WHERE list_name = %s AND removed_at IS NULL",
               (name,)) == (2 + LIST_APPROVAL_SIZE + 1,)
    no_reason = author.post(f"/lists/{name}/remove", data={"csrf_token": csrf, "values": "DEV_2", "reason": ""})
    assert no_reason.status_code == 422 and "reason is required" in no_reason.text
    assert author.get("/lists/no_such_list").status_code == 404


def test_a_rule_using_a_list_checks_against_the_current_lists(author):
    name = unique("listed")
    assert author.post("/lists", data={"csrf_token": token(author), "name": name, "kind": "block",
                                       "field": "device_id"}).status_code == 303
    checked = author.post("/rules/check", data={"csrf_token": token(author),
                                                "expression": f'in_list("{name}", device_id)'})
    assert checked.status_code == 200 and element(checked.text, "check-result") == (
        f"ok: reads device_id; lists {name}")
