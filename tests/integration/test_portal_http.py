"""The analyst portal over HTTP, against a real portal process and PostgreSQL: authentication on
every route, CSRF, roles, bad input (400/404 with a message, never 500), the login rate limit,
idempotent reviews writing the label, the alert and the audit row, strict JSON, the live stream.

One portal process per module, on its own PostgreSQL schema; each test uses its own alerts.
"""

from __future__ import annotations

import json
import re
import threading
import uuid

import httpx
import pytest

from fraudops.db import apply_migrations
from tests import portal_support as support

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ANALYST, VIEWER = ("alice", "alice-password-1"), ("victor", "victor-password-1")
PROTECTED_GETS = ["/", "/alerts", "/alerts/TXN_ANY", "/api/alerts", "/api/alerts/TXN_ANY", "/alerts/stream",
                  "/dashboard", "/dashboard/panel", "/api/dashboard", "/models"]


@pytest.fixture(scope="module")
def schema(settings):
    from fraudops.db import connect

    name = f"s_portal_{uuid.uuid4().hex[:8]}"
    conn = connect(settings)
    apply_migrations(conn, name)
    yield name
    conn.rollback()
    with conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


@pytest.fixture(scope="module")
def portal(schema, tmp_path_factory):
    for (name, password), role in ((ANALYST, "analyst"), (VIEWER, "viewer")):
        done = support.add_user(schema, name, role, password)
        assert done.returncode == 0, done.stderr
    process = support.start_portal(schema, tmp_path_factory.mktemp("portal") / "portal.log")
    yield process
    process.stop()


@pytest.fixture
def client(portal):
    with httpx.Client(base_url=portal.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def analyst(client):
    assert support.login(client, *ANALYST).status_code == 303
    return client


@pytest.fixture
def viewer(portal):
    with httpx.Client(base_url=portal.base_url, timeout=30) as c:
        assert support.login(c, *VIEWER).status_code == 303
        yield c


def new_alert(pg_conn, schema, **kwargs) -> str:
    tid = f"TXN_{uuid.uuid4().hex[:12]}"
    support.insert_alert(pg_conn, schema, tid, **kwargs)
    return tid


def fetch_one(pg_conn, sql, params=()):
    with pg_conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    pg_conn.rollback()
    return row


def review_form(client, tid):
    page = client.get(f"/alerts/{tid}")
    assert page.status_code == 200, page.text
    return {"csrf_token": support.csrf_token(page.text), "state": support.review_state(page.text)}


def strict_json(response):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(response.text, parse_constant=refuse)


# ---------------------------------------------------------------- authentication

def test_login_page_and_healthz_need_no_session(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/login").status_code == 200


@pytest.mark.parametrize("path", PROTECTED_GETS)
def test_every_other_page_requires_a_session(client, path):
    page = client.get(path, headers={"Accept": "text/html"})
    if path.startswith("/api/") or path == "/alerts/stream":
        assert page.status_code == 401 and strict_json(page)["error"]
    else:
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
    forged = client.get(path, cookies={"portal_session": "forged-token"}, headers={"Accept": "application/json"})
    assert forged.status_code == 401


def test_posts_require_a_session(client):
    assert client.post("/alerts/TXN_ANY/review", data={"decision": "confirmed"}).status_code == 401
    assert client.post("/logout", data={}).status_code == 401


def test_session_cookie_is_httponly_samesite_and_expires(client, pg_conn, schema):
    response = support.login(client, *ANALYST)
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("portal_session="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "max-age", "expires", "path"} <= flags and "samesite=strict" in cookie.lower()
    assert client.get("/alerts").status_code == 200
    with pg_conn, pg_conn.cursor() as cur:  # the server-side session expires: the cookie is then worthless
        cur.execute(f'UPDATE "{schema}".portal_sessions SET expires_at = now() - interval \'1 second\' '
                    "WHERE user_name = %s", (ANALYST[0],))
    assert client.get("/alerts").status_code == 303


def test_logout_ends_the_session(analyst):
    page = analyst.get("/alerts")
    assert analyst.post("/logout", data={"csrf_token": support.csrf_token(page.text)}).status_code == 303
    assert analyst.get("/alerts").status_code == 303


def test_wrong_password_is_refused_without_saying_which_part(client):
    for name, password in ((ANALYST[0], "wrong-password-1"), ("nobody-here", "whatever-pass-1"),
                           ("no such name!", "whatever-pass-1"), ("x" * 64, "whatever-pass-1")):
        page = support.login(client, name, password)
        assert page.status_code == 401 and "Wrong user name or password" in page.text
    for name, password in (("nul\x00name", "whatever-pass-1"), (ANALYST[0], "p\x00")):
        page = support.login(client, name, password)
        assert page.status_code == 400 and "NUL" in page.text


def test_ten_wrong_passwords_throttle_the_login(portal, pg_conn, schema):
    name, password = f"eve{uuid.uuid4().hex[:6]}", "eve-password-123"
    assert support.add_user(schema, name, "analyst", password).returncode == 0
    with httpx.Client(base_url=portal.base_url, timeout=30) as c:
        statuses = [support.login(c, name, f"wrong-{i}-password").status_code for i in range(10)]
        assert statuses == [401] * 10
        throttled = support.login(c, name, password)  # even the right password, now
        assert throttled.status_code == 429 and "Too many failed logins" in throttled.text
        assert int(throttled.headers["retry-after"]) > 0
    with httpx.Client(base_url=portal.base_url, timeout=30) as other:  # other users still log in
        assert support.login(other, *VIEWER).status_code == 303
    assert fetch_one(pg_conn, f'SELECT count(*) FROM "{schema}".portal_login_attempts WHERE user_name = %s '
                              "AND NOT succeeded", (name,))[0] == 11


def test_the_cli_takes_the_password_from_stdin_never_as_an_argument(schema):
    import subprocess
    import sys

    refused = subprocess.run([sys.executable, "-m", "portal", "add-user", "mallory", "--role", "viewer",
                              "--password", "mallory-password-1", "--pg-schema", schema],
                             cwd=support.ROOT, capture_output=True, text=True, input="", timeout=60)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
    short = support.add_user(schema, "mallory", "viewer", "short")
    assert short.returncode == 2 and "at least" in short.stderr
    bad_role = subprocess.run([sys.executable, "-m", "portal", "add-user", "mallory", "--role", "admin"],
                              cwd=support.ROOT, capture_output=True, text=True, input="x" * 12, timeout=60)
    assert bad_role.returncode == 2


def test_passwords_are_stored_as_argon2_hashes(pg_conn, schema):
    stored = fetch_one(pg_conn, f'SELECT password_hash FROM "{schema}".portal_users WHERE name = %s', (ANALYST[0],))[0]
    assert stored.startswith("$argon2id$") and ANALYST[1] not in stored


# ---------------------------------------------------------------- CSRF and roles

def test_login_form_needs_its_csrf_token(client):
    client.get("/login")
    refused = client.post("/login", data={"name": ANALYST[0], "password": ANALYST[1], "csrf_token": "forged"})
    assert refused.status_code == 403 and "portal_session" not in refused.headers.get("set-cookie", "")


def test_review_needs_the_sessions_csrf_token(analyst, pg_conn, schema):
    tid = new_alert(pg_conn, schema)
    form = review_form(analyst, tid)
    for token in (None, "forged", form["csrf_token"][:-1]):
        data = {"state": form["state"], "decision": "confirmed", **({"csrf_token": token} if token else {})}
        refused = analyst.post(f"/alerts/{tid}/review", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert fetch_one(pg_conn, f'SELECT alert_status FROM "{schema}".fraud_alerts WHERE transaction_id = %s',
                     (tid,))[0] == "pending"


def test_viewer_can_read_but_review_is_forbidden(viewer, pg_conn, schema):
    tid = new_alert(pg_conn, schema)
    page = viewer.get(f"/alerts/{tid}")
    assert page.status_code == 200 and 'id="review-form"' not in page.text
    token = support.csrf_token(page.text)
    refused = viewer.post(f"/alerts/{tid}/review", data={"csrf_token": token, "state": "pending|",
                                                         "decision": "confirmed"})
    assert refused.status_code == 403 and "viewer" in refused.text
    assert fetch_one(pg_conn, f'SELECT count(*) FROM "{schema}".labels WHERE transaction_id = %s', (tid,))[0] == 0
    for path in ("/dashboard", "/models", "/api/dashboard"):
        assert viewer.get(path).status_code == 200


# ---------------------------------------------------------------- reviews

def test_confirm_writes_label_alert_and_audit_once(analyst, pg_conn, schema):
    tid = new_alert(pg_conn, schema)
    form = review_form(analyst, tid)
    data = {**form, "decision": "confirmed", "note": "card reported stolen"}
    first = analyst.post(f"/alerts/{tid}/review", data=data)
    second = analyst.post(f"/alerts/{tid}/review", data=data)  # the double click
    assert first.status_code == second.status_code == 303
    assert first.headers["location"].endswith("result=recorded") and second.headers["location"].endswith("result=already")
    status, by, at, notes = fetch_one(pg_conn, f'SELECT alert_status, reviewed_by, reviewed_at, notes FROM "{schema}"'
                                               ".fraud_alerts WHERE transaction_id = %s", (tid,))
    assert (status, by, notes) == ("confirmed", ANALYST[0], "card reported stolen") and at is not None
    assert fetch_one(pg_conn, f'SELECT is_fraud, source FROM "{schema}".labels WHERE transaction_id = %s',
                     (tid,)) == (True, "analyst")
    audits = fetch_one(pg_conn, f'SELECT count(*), min(actor), min(details->>\'status\') FROM "{schema}".audit_log '
                                "WHERE event_type = 'alert_reviewed' AND details->>'transaction_id' = %s", (tid,))
    assert audits == (1, ANALYST[0], "confirmed")
    page = analyst.get(f"/alerts/{tid}")
    assert "card reported stolen" in page.text and 'id="alert-status">confirmed' in page.text


def test_concurrent_double_submission_is_one_review(analyst, pg_conn, schema):
    tid = new_alert(pg_conn, schema)
    data = {**review_form(analyst, tid), "decision": "false_positive"}
    cookies = dict(analyst.cookies)
    results = []

    def post():
        with httpx.Client(base_url=str(analyst.base_url), cookies=cookies, timeout=30) as c:
            results.append(c.post(f"/alerts/{tid}/review", data=data).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [303] * 4
    assert fetch_one(pg_conn, f'SELECT count(*) FROM "{schema}".audit_log WHERE details->>\'transaction_id\' = %s',
                     (tid,))[0] == 1
    assert fetch_one(pg_conn, f'SELECT is_fraud FROM "{schema}".labels WHERE transaction_id = %s', (tid,)) == (False,)


def test_escalation_sets_the_status_without_a_label_and_a_stale_form_conflicts(analyst, pg_conn, schema):
    tid = new_alert(pg_conn, schema)
    form = review_form(analyst, tid)
    assert analyst.post(f"/alerts/{tid}/review", data={**form, "decision": "escalated", "note": "ask the bank"}
                        ).status_code == 303
    assert fetch_one(pg_conn, f'SELECT alert_status FROM "{schema}".fraud_alerts WHERE transaction_id = %s',
                     (tid,)) == ("escalated",)
    assert fetch_one(pg_conn, f'SELECT count(*) FROM "{schema}".labels WHERE transaction_id = %s', (tid,)) == (0,)
    stale = analyst.post(f"/alerts/{tid}/review", data={**form, "decision": "confirmed"})
    assert stale.status_code == 409 and "changed meanwhile" in stale.text
    fresh = analyst.post(f"/alerts/{tid}/review", data={**review_form(analyst, tid), "decision": "confirmed"})
    assert fresh.status_code == 303
    assert fetch_one(pg_conn, f'SELECT is_fraud FROM "{schema}".labels WHERE transaction_id = %s', (tid,)) == (True,)


# ---------------------------------------------------------------- bad input: 400 / 404 with a message

@pytest.mark.parametrize("query, fragment", [
    ("status=bogus", "status="), ("min_score=abc", "min_score="), ("max_score=1.5", "max_score="),
    ("min_score=0.9&max_score=0.1", "min_score must not exceed"), ("country=USA", "country="),
    ("country=%27%3B--", "country="), ("since=yesterday", "since="), ("since=2026-01-02&until=2026-01-01", "since"),
    ("before=garbage", "before="), ("limit=0", "limit="), ("limit=100000", "limit="),
    ("model_version=%3Cscript%3E", "model_version="), ("min_score=nan", "min_score="),
    ("decision=bogus", "decision="), ("decision=Decline", "decision="), ("decision=%3Cscript%3E", "decision="),
])
def test_malformed_filters_answer_400_with_a_message(analyst, query, fragment):
    for path in ("/alerts", "/api/alerts"):
        page = analyst.get(f"{path}?{query}")
        assert page.status_code == 400, (path, query, page.status_code)
        assert fragment in (strict_json(page)["error"] if path.startswith("/api") else page.text)
    assert "<script>" not in analyst.get("/alerts?model_version=%3Cscript%3E").text
    if query.startswith("decision="):  # the refusal names the filter's values
        assert "approve, review, decline, stream" in strict_json(analyst.get(f"/api/alerts?{query}"))["error"]


def test_unknown_alerts_answer_404_with_a_message(analyst, pg_conn, schema):
    known = new_alert(pg_conn, schema)
    token = support.csrf_token(analyst.get("/alerts").text)
    for tid in ("TXN_DOES_NOT_EXIST", "x" * 500, "%27%20OR%201%3D1", "TXN%00", "%0A"):
        page = analyst.get(f"/alerts/{tid}")
        assert page.status_code == 404 and "no fraud alert" in page.text
        assert analyst.get(f"/api/alerts/{tid}").status_code == 404
        review = analyst.post(f"/alerts/{tid}/review", data={"csrf_token": token, "state": "pending|",
                                                             "decision": "confirmed"})
        assert review.status_code == 404
    assert analyst.get("/no/such/page").status_code == 404
    form = review_form(analyst, known)
    for bad in ({"decision": "delete"}, {"decision": ""}, {"decision": "confirmed", "note": "n" * 2500},
                {"decision": "confirmed", "note": "nul\x00byte"}):
        page = analyst.post(f"/alerts/{known}/review", data={**form, **bad})
        assert page.status_code == 400 and ("decision=" in page.text or "note" in page.text)
    for query in ("country=%00", "model_version=%00", "since=%00", "status=%00"):
        assert analyst.get(f"/api/alerts?{query}").status_code == 400


def test_a_server_error_shows_no_stack_trace(analyst, pg_conn, schema):
    tid = new_alert(pg_conn, schema)
    with pg_conn, pg_conn.cursor() as cur:
        cur.execute(f'ALTER TABLE "{schema}".labels RENAME TO labels_away')
    try:
        page = analyst.get(f"/alerts/{tid}")
        data = analyst.get(f"/api/alerts/{tid}")
    finally:
        with pg_conn, pg_conn.cursor() as cur:
            cur.execute(f'ALTER TABLE "{schema}".labels_away RENAME TO labels')
    assert page.status_code == data.status_code == 500
    for text in (page.text, data.text):
        assert "reference" in text
        assert not any(leak in text for leak in ("Traceback", "File \"", "psycopg2", "relation", "SELECT"))
    assert analyst.get(f"/alerts/{tid}").status_code == 200


# ---------------------------------------------------------------- pages, paging, JSON, live

def test_queue_filters_and_keyset_paging(analyst, pg_conn, schema):
    country = "NZ"  # this test's own alerts only
    ids = [new_alert(pg_conn, schema, country=country, score=0.6 + i / 100, detection_offset_seconds=i)
           for i in range(7)]
    seen, url = [], f"/api/alerts?country={country}&limit=3"
    while url:
        page = strict_json(analyst.get(url))
        seen += [a["transaction_id"] for a in page["alerts"]]
        url = page["older"]
    assert seen == list(reversed(ids))  # newest first, every alert once
    high = strict_json(analyst.get(f"/api/alerts?country={country}&min_score=0.64"))["alerts"]
    assert {a["transaction_id"] for a in high} == set(ids[4:])
    html = analyst.get(f"/alerts?country={country}&limit=3")
    assert html.status_code == 200 and 'id="older"' in html.text and ids[-1] in html.text


def test_json_is_strict_even_with_nan_scores(analyst, pg_conn, schema):
    tid = new_alert(pg_conn, schema, country="IS")
    with pg_conn, pg_conn.cursor() as cur:
        cur.execute(f"UPDATE \"{schema}\".fraud_alerts SET fraud_score = 'NaN' WHERE transaction_id = %s", (tid,))
    alerts = strict_json(analyst.get("/api/alerts?country=IS"))["alerts"]
    assert [a["fraud_score"] for a in alerts if a["transaction_id"] == tid] == [None]
    assert strict_json(analyst.get(f"/api/alerts/{tid}"))["alert"]["fraud_score"] is None
    dashboard = strict_json(analyst.get("/api/dashboard"))
    assert {"throughput_per_second", "alert_rate", "latency", "precision_of_reviewed", "services"} <= set(dashboard)


def test_pages_render_with_security_headers(analyst, pg_conn, schema):
    tid = new_alert(pg_conn, schema)
    for path in ("/alerts", f"/alerts/{tid}", "/dashboard", "/dashboard/panel", "/models"):
        page = analyst.get(path)
        assert page.status_code == 200, path
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff" and page.headers["cache-control"] == "no-store"
    assert "no reasons recorded" in analyst.get(f"/alerts/{tid}").text


def test_alert_reasons_are_shown(analyst, pg_conn, schema):
    tid = new_alert(pg_conn, schema)
    reasons = [{"name": "amount_ratio_user_30d", "value": 12.5, "contribution": 0.31}]
    with pg_conn, pg_conn.cursor() as cur:
        cur.execute(f'UPDATE "{schema}".fraud_alerts SET reasons = %s WHERE transaction_id = %s',
                    (json.dumps(reasons), tid))
    page = analyst.get(f"/alerts/{tid}")
    assert "amount_ratio_user_30d" in page.text and "no reasons recorded" not in page.text


def test_new_alerts_are_pushed_to_the_live_stream(analyst, pg_conn, schema):
    received: list[dict] = []
    opened = threading.Event()

    def listen():
        with analyst.stream("GET", "/alerts/stream?country=LU", timeout=60) as stream:
            opened.set()
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    received.append(json.loads(line[5:]))
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert opened.wait(30)
    new_alert(pg_conn, schema, country="FR")  # filtered out
    tid = new_alert(pg_conn, schema, country="LU")
    thread.join(30)
    assert [r["transaction_id"] for r in received] == [tid] and tid in received[0]["html"]


# ---------------------------------------------------------------- decisions of the decision service

QUEUE_ROW = re.compile(r'<tr data-alert-id="\d+"[^>]*>.*?</tr>', re.S)
BADGE = re.compile(r'<span class="decision (\w+)" data-decision="\w+">(\w+)</span>')


def queue_badges(html: str) -> dict[str, list[str]]:
    """transaction_id -> the decision badges (texts) of its queue row."""
    rows = {}
    for row in QUEUE_ROW.findall(html):
        tid = re.search(r'<a href="/alerts/[^"]+">([^<]+)</a>', row).group(1)
        badges = [text for cls, text in BADGE.findall(row) if cls == text]
        rows[tid] = badges + (["degraded"] if 'class="decision degraded"' in row else [])
    return rows


@pytest.fixture(scope="module")
def decided_alerts(settings, schema):
    """One alert per decision filter value, in a country of their own (MT): decision -> transaction_id."""
    from fraudops.db import connect

    conn, country = connect(settings), "MT"
    try:
        return {
            "decline": new_alert(conn, schema, country=country, score=0.97, decision="decline",
                                 decline_threshold=0.93),
            "review": new_alert(conn, schema, country=country, score=0.71, decision="review", decline_threshold=0.93),
            # approve-and-flag: degraded, approved, then scored and alerted by the stream
            "approve": new_alert(conn, schema, country=country, score=0.66, decision="approve",
                                 degraded_reason="feature_store_unavailable"),
            "stream": new_alert(conn, schema, country=country, score=0.8),
        }
    finally:
        conn.close()


def test_queue_shows_decision_badges(analyst, decided_alerts):
    page = analyst.get("/alerts?country=MT")
    assert page.status_code == 200 and "<th>Decision</th>" in page.text
    badges = queue_badges(page.text)
    assert {tid: badges.get(tid) for tid in decided_alerts.values()} == {
        decided_alerts["decline"]: ["decline"], decided_alerts["review"]: ["review"],
        decided_alerts["approve"]: ["approve", "degraded"], decided_alerts["stream"]: ["stream"]}
    alerts = {a["transaction_id"]: a for a in strict_json(analyst.get("/api/alerts?country=MT"))["alerts"]}
    decline = alerts[decided_alerts["decline"]]
    assert (decline["decision"], decline["decline_threshold"], decline["decision_degraded"]) == ("decline", 0.93, False)
    assert decline["decided_at"] is not None
    stream = alerts[decided_alerts["stream"]]
    assert (stream["decision"], stream["decided_at"], stream["decision_degraded"]) == (None, None, None)


@pytest.mark.parametrize("decision", ["decline", "review", "approve", "stream"])
def test_decision_filter_returns_only_matching_alerts(analyst, decided_alerts, decision):
    found = strict_json(analyst.get(f"/api/alerts?country=MT&decision={decision}"))["alerts"]
    assert found and {a["transaction_id"] for a in found} <= set(decided_alerts.values())
    assert decided_alerts[decision] in {a["transaction_id"] for a in found}
    assert all(a["decision"] == (None if decision == "stream" else decision) for a in found)
    page = analyst.get(f"/alerts?country=MT&decision={decision}")
    assert page.status_code == 200 and f'<option value="{decision}" selected>' in page.text
    assert set(queue_badges(page.text)) == {a["transaction_id"] for a in found}
    assert {b[0] for b in queue_badges(page.text).values()} == {decision}
    stream_url = re.search(r'data-stream="([^"]+)"', page.text).group(1)
    assert f"decision={decision}" in stream_url  # the live queue keeps the filter


def test_decision_filter_pages_keep_the_filter(analyst, pg_conn, schema):
    ids = [new_alert(pg_conn, schema, country="LI", decision="review", decline_threshold=0.9,
                     detection_offset_seconds=i) for i in range(3)]
    new_alert(pg_conn, schema, country="LI", detection_offset_seconds=1.5)  # stream only: filtered out
    seen, url = [], "/api/alerts?country=LI&decision=review&limit=2"
    while url:
        page = strict_json(analyst.get(url))
        seen += [a["transaction_id"] for a in page["alerts"]]
        url = page["older"]
        assert url is None or "decision=review" in url
    assert seen == list(reversed(ids))


def test_alert_detail_shows_decision_thresholds_and_degraded_reason(analyst, decided_alerts):
    decline = analyst.get(f"/alerts/{decided_alerts['decline']}").text
    assert '<span class="decision decline" id="decision">decline</span>' in decline
    assert '<td id="review-threshold">0.500</td>' in decline and '<td id="decline-threshold">0.930</td>' in decline
    assert re.search(r'<td id="decided-at">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>', decline)
    assert 'id="degraded"' not in decline
    degraded = analyst.get(f"/alerts/{decided_alerts['approve']}").text
    assert '<span class="decision approve" id="decision">approve</span>' in degraded
    assert '<span class="decision degraded" id="degraded">degraded: feature_store_unavailable</span>' in degraded
    assert '<td id="decline-threshold">-</td>' in degraded  # the degraded answer had no model
    stream = analyst.get(f"/alerts/{decided_alerts['stream']}").text
    assert '<span class="decision stream" id="decision">stream</span>' in stream
    assert "alerted by the stream alone" in stream and '<td id="decided-at">-</td>' in stream
    detail = strict_json(analyst.get(f"/api/alerts/{decided_alerts['approve']}"))
    assert (detail["alert"]["decision"], detail["alert"]["decision_degraded"], detail["alert"]["degraded_reason"]) == (
        "approve", True, "feature_store_unavailable")
    assert detail["transaction"]["decision"] == "approve"


def test_degraded_reason_is_escaped(analyst, pg_conn, schema):
    tid = new_alert(pg_conn, schema, decision="review", degraded_reason="<script>alert(1)</script>")
    page = analyst.get(f"/alerts/{tid}")
    assert page.status_code == 200 and "<script>alert(1)</script>" not in page.text
    assert "degraded: &lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_live_stream_applies_the_decision_filter(analyst, pg_conn, schema):
    received: list[dict] = []
    opened = threading.Event()

    def listen():
        with analyst.stream("GET", "/alerts/stream?country=EE&decision=decline", timeout=60) as stream:
            opened.set()
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    received.append(json.loads(line[5:]))
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert opened.wait(30)
    new_alert(pg_conn, schema, country="EE")  # stream only: filtered out
    new_alert(pg_conn, schema, country="EE", decision="review", decline_threshold=0.9)  # filtered out
    tid = new_alert(pg_conn, schema, country="EE", decision="decline", decline_threshold=0.9)
    thread.join(30)
    assert [r["transaction_id"] for r in received] == [tid]
    assert queue_badges(received[0]["html"]) == {tid: ["decline"]}
