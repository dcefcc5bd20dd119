"""The portal's champion-vs-challenger page (/challenger, /api/challenger) over HTTP, against a
real portal process, PostgreSQL and the MLflow registry: login required, the "no challenger"
and "not enough labels" states, and the live figures (with the labels behind them) and the
recorded comparisons as monitoring.challenger computes them.

The portal serves its own model name (MODEL_NAME) and schema: v1 Production, then v2 staged;
the champion's scores (transactions), the challenger's (shadow_scores) and the labels are written
into the schema as the scoring job and the labels sink write them.
"""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest

from fraudops.db import apply_migrations
from fraudops.modeling import registry
from monitoring.challenger import compare_live, figure_table, live_comparison
from monitoring.storage import connect_schema
from tests import monitoring_support, streaming_support
from tests import portal_support as support

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ANALYST, VIEWER = ("carla", "carla-password-1"), ("viktor", "viktor-password-1")


@pytest.fixture(scope="module")
def model_name(settings):
    """A model of the module's own: v1 Production, v2 registered (a copy of the same small model)."""
    name = f"fraud-detector-portal-cc-{uuid.uuid4().hex[:8]}"
    streaming_support.train_and_register(settings, name, streaming_support.small_history(days=2, customers=30, seed=5))
    built = registry.get_version(name, "1", registry.registry_client(settings))
    registry.register_model_version(built.source, name, built.tags, run_id=built.run_id)
    return name


@pytest.fixture(scope="module")
def schema(settings):
    from fraudops.db import connect

    name = f"s_portal_cc_{uuid.uuid4().hex[:8]}"
    conn = connect(settings)
    apply_migrations(conn, name)
    yield name
    monitoring_support.drop_schema(conn, name)
    conn.close()


@pytest.fixture(scope="module")
def portal(schema, model_name, tmp_path_factory):
    for (name, password), role in ((ANALYST, "analyst"), (VIEWER, "viewer")):
        done = support.add_user(schema, name, role, password)
        assert done.returncode == 0, done.stderr
    process = support.start_portal(schema, tmp_path_factory.mktemp("portal-cc") / "portal.log",
                                   env={"MODEL_NAME": model_name})
    yield process
    process.stop()


def signed_in(portal, who) -> httpx.Client:
    client = httpx.Client(base_url=portal.base_url, timeout=60)
    assert support.login(client, *who).status_code == 303
    return client


def write_live(pg_conn, schema: str, n: int, start: int, seed: int) -> None:
    """``n`` labelled transactions: the champion v1's scores (transactions), the challenger v2's
    (shadow_scores; it ranks the frauds better) and a chargeback label each."""
    rng = np.random.default_rng(seed)
    label = rng.random(n) < 0.2
    champion = np.clip(label * 0.2 + rng.random(n) * 0.8, 0, 1)
    challenger = np.clip(label * 0.35 + rng.random(n) * 0.65, 0, 1)
    now = pd.Timestamp.now(tz="UTC")
    ids = [f"TXN_CC_{start + i}" for i in range(n)]
    transactions = pd.DataFrame({
        "transaction_id": ids, "user_id": "USER_CC", "amount": 25.0, "currency": "EUR", "merchant": "Shop",
        "transaction_time": now, "country": "DE", "transaction_type": "purchase", "fraud_score": champion,
        "is_fraud": champion >= 0.5, "decision_threshold": 0.5, "model_version": "1", "scored_at": now})
    shadow = pd.DataFrame({"transaction_id": ids, "model_version": "2", "fraud_score": challenger,
                           "would_alert": challenger >= 0.5, "threshold": 0.5, "scored_at": now})
    labels = pd.DataFrame({"transaction_id": ids, "is_fraud": label, "source": "chargeback", "labeled_at": now})
    for table, frame in (("transactions", transactions), ("shadow_scores", shadow), ("labels", labels)):
        monitoring_support.insert_rows(pg_conn, schema, table, frame)


def state_of(page: httpx.Response) -> str:
    assert page.status_code == 200, page.text[:2000]
    marker = 'id="challenger-state" data-state="'
    return page.text.split(marker, 1)[1].split('"', 1)[0]


def strict_json(response: httpx.Response) -> dict:
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    assert response.status_code == 200, response.text[:2000]
    return json.loads(response.text, parse_constant=refuse)


@pytest.mark.parametrize("path", ["/challenger", "/api/challenger"])
def test_the_page_requires_a_session(portal, path):
    with httpx.Client(base_url=portal.base_url, timeout=30) as client:
        page = client.get(path, headers={"Accept": "text/html"})
        if path.startswith("/api/"):
            assert page.status_code == 401
        else:
            assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
        assert client.get(path, cookies={"portal_session": "forged"},
                          headers={"Accept": "application/json"}).status_code == 401


def test_no_challenger_then_not_enough_labels_then_the_live_figures(settings, portal, schema, model_name, pg_conn):
    client = signed_in(portal, ANALYST)
    try:
        # only a champion: the "no challenger" state, no figures, nothing recorded
        page = client.get("/challenger")
        assert state_of(page) == "no_challenger"
        assert 'id="champion-version">v1<' in page.text and 'id="challenger-version">none<' in page.text
        assert 'id="live-figures"' not in page.text and "no comparison recorded in this schema yet" in page.text
        assert 'href="/challenger"' in page.text  # the nav links the page

        # v2 staged, 60 labels: the figures so far, but "not enough labels"
        registry.promote_to_staging(model_name, "2", registry.registry_client(settings))
        write_live(pg_conn, schema, 60, start=0, seed=1)
        page = client.get("/challenger")
        assert state_of(page) == "not_enough_labels"
        assert "60 live labels" in page.text and "needs at least 500" in page.text
        assert 'id="challenger-version">v2<' in page.text and 'id="live-figures"' in page.text

        # 600 labels: ready; every figure as monitoring.challenger computes it, with the labels behind it
        write_live(pg_conn, schema, 540, start=60, seed=2)
        page = client.get("/challenger")
        assert state_of(page) == "ready"
        conn = connect_schema(settings, schema)
        try:
            expected = live_comparison(conn, model_name, "1", "2")
        finally:
            conn.close()
        assert expected.labels == 600 and expected.challenger["average_precision"] > expected.champion["average_precision"]
        assert f"<strong>{expected.labels}</strong> labels, <strong>{expected.positives}</strong> fraud" in page.text
        for row in figure_table(expected):
            assert f"<td>{row['champion']:.4f}</td><td>{row['challenger']:.4f}</td>" \
                   f"<td>{row['difference']:+.4f}</td><td class=\"small\">{row['behind']}</td>" in page.text, row
        assert f"both {expected.overlap['both']}" in page.text

        # two recorded comparisons (the CLI's function): the history table and the chart
        for _ in range(2):
            compare_live(settings, model_name=model_name, pg_schema=schema, log_mlflow=False)
        page = client.get("/challenger")
        history = page.text.split('id="history"', 1)[1]
        assert history.count("<td>v1</td><td>v2</td><td>600</td>") == 2
        assert f"<td>{expected.challenger['average_precision']:.4f}</td>" in history
        assert "<polyline" in page.text.split('id="history"', 1)[0]

        data = strict_json(client.get("/api/challenger"))
        assert (data["state"], data["champion_version"], data["challenger_version"]) == ("ready", "1", "2")
        assert data["comparison"]["labels"] == 600 and len(data["history"]) == 2
        assert data["comparison"]["challenger"] == pytest.approx(expected.challenger)
    finally:
        client.close()


def test_a_viewer_reads_the_page(portal):
    client = signed_in(portal, VIEWER)
    try:
        page = client.get("/challenger")
        assert page.status_code == 200 and 'id="challenger-state"' in page.text
        assert "Content-Security-Policy" in page.headers
    finally:
        client.close()
