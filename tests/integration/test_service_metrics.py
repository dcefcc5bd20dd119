"""The decision service's and the analyst portal's own Prometheus metrics, scraped over real HTTP
from the real processes (PostgreSQL, Redis, Kafka, MLflow of the stack), with LOG_FORMAT=json:
the counters move by what the requests did, and the logs are JSON lines with the transaction id."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests import decisions_support as ds
from tests import portal_support
from tests import streaming_support as support
from tests.observability_support import scrape, value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

JSON_LOGS = {"LOG_FORMAT": "json"}


def json_lines(path) -> list[dict]:
    """The log's JSON lines (every line must be one)."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return [json.loads(line) for line in lines if line.startswith("{")]


# ---------------------------------------------------------------- the decision service
@pytest.fixture(scope="module")
def decisions(settings, tmp_path_factory):
    name = f"fraud-detector-metrics-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, support.small_history())
    log_path = tmp_path_factory.mktemp("decisions") / "service.log"
    with ds.private_space(settings, "m") as space, \
            ds.decision_service(settings, space["schema"], space["prefix"], space["topic"],
                                f"models:/{name}/Production", log_path, env=JSON_LOGS) as running:
        running.space = space
        yield running


def test_decision_metrics_count_the_answers(decisions):
    url = f"{decisions.url}/metrics"
    before = scrape(url)
    tag = decisions.space["tag"]
    answers = [decisions.post(ds.transaction(i, user=f"U_{tag}_{i}")) for i in range(4)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    invalid = ds.transaction(9, user=f"U_{tag}_x")
    del invalid["amount"]
    assert decisions.post(invalid).status_code == 422
    assert decisions.post(ds.transaction(10), key="not-a-key").status_code == 401
    after = scrape(url)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    p = "fraudops_decision_"
    outcomes = [a.json()["decision"] for a in answers]
    for outcome in ("approve", "review", "decline"):
        assert delta(p + "decisions_total", decision=outcome, degraded="false") == outcomes.count(outcome), outcome
    assert delta(p + "requests_total", status=200) == 4
    assert delta(p + "requests_total", status=422) == 1 and delta(p + "requests_total", status=401) == 1
    assert delta(p + "invalid_total", reason="missing_field") == 1
    assert delta(p + "request_seconds_count") == 6
    assert delta(p + "request_seconds_sum") > 0
    assert value(after, p + "model_version") == 1.0
    # the refused body's claimed transaction id is a field of its JSON log line
    refused = [line for line in json_lines(decisions.log_path) if line.get("status") == 422]
    assert [(line["transaction_id"], line["reason"]) for line in refused] == [(invalid["transaction_id"],
                                                                              "missing_field:amount")]


def test_decision_metrics_need_no_api_key(decisions):
    response = httpx.get(f"{decisions.url}/metrics", timeout=10)
    assert response.status_code == 200 and "fraudops_decision_requests_total" in response.text


# ---------------------------------------------------------------- the analyst portal
ANALYST = ("mia", "mia-password-1")


@pytest.fixture(scope="module")
def portal(settings, tmp_path_factory):
    from fraudops.db import apply_migrations, connect

    schema = f"s_pmetrics_{uuid.uuid4().hex[:8]}"
    conn = connect(settings)
    apply_migrations(conn, schema)
    done = portal_support.add_user(schema, ANALYST[0], "analyst", ANALYST[1])
    assert done.returncode == 0, done.stderr
    process = portal_support.start_portal(schema, tmp_path_factory.mktemp("portal") / "portal.log", env=JSON_LOGS)
    process.schema, process.conn = schema, conn
    yield process
    process.stop()
    conn.rollback()
    with conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()


def test_portal_metrics_count_requests_logins_and_reviews(portal):
    url = f"{portal.base_url}/metrics"
    before = scrape(url)  # no login: Prometheus scrapes it like /healthz
    tid = f"TXN_{uuid.uuid4().hex[:12]}"
    portal_support.insert_alert(portal.conn, portal.schema, tid)
    with httpx.Client(base_url=portal.base_url, timeout=30) as client:
        assert portal_support.login(client, ANALYST[0], "wrong-password-1").status_code == 401
        assert portal_support.login(client, *ANALYST).status_code == 303
        page = client.get(f"/alerts/{tid}")
        assert page.status_code == 200
        form = {"csrf_token": portal_support.csrf_token(page.text), "state": portal_support.review_state(page.text),
                "decision": "confirmed"}
        assert client.post(f"/alerts/{tid}/review", data=form).status_code == 303
        assert client.get("/no/such/page").status_code == 404
    after = scrape(url)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    p = "fraudops_portal_"
    assert delta(p + "logins_total", outcome="failure") == 1 and delta(p + "logins_total", outcome="success") == 1
    assert delta(p + "reviews_total", decision="confirmed", result="recorded") == 1
    assert delta(p + "requests_total", method="GET", route="/alerts/{transaction_id}", status=200) == 1
    assert delta(p + "requests_total", method="POST", route="/alerts/{transaction_id}/review", status=303) == 1
    assert delta(p + "requests_total", method="GET", route="unmatched", status=404) == 1  # no raw path as a label
    assert delta(p + "request_seconds_count", route="/alerts/{transaction_id}") == 1
    # the review's JSON log line names the transaction
    reviewed = [line for line in json_lines(portal.log_path) if line.get("logger") == "portal.reviews"]
    assert [(line["transaction_id"], line["status"]) for line in reviewed] == [(tid, "recorded")]
