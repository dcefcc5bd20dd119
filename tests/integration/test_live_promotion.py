"""Promotion on live evidence (issue 15): `promote --live` against the real registry and PostgreSQL.

The shadow scores, the champion's scores and the labels are written straight into a schema of
the test's own (the streaming job's part is tests/e2e/test_shadow_scoring.py); the versions are
copies of one small logged model under the test's own model name.
"""

from __future__ import annotations

import uuid
import warnings

import numpy as np
import pandas as pd
import pytest

from fraudops.db import apply_migrations
from fraudops.modeling import registry
from pipelines.promote import main as promote_main
from pipelines.promote import promote_on_live_evidence
from tests import streaming_support as support

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def logged(settings):
    scratch = f"fraud-detector-live-build-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, scratch, support.small_history(days=2, customers=30, seed=5))
    return registry.get_version(scratch, "1", registry.registry_client(settings))


@pytest.fixture
def schema(pg_conn, unique_name):
    name = f"s_{unique_name}"
    apply_migrations(pg_conn, name)
    yield name
    pg_conn.rollback()
    with pg_conn, pg_conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def copy_of(name: str, built) -> str:
    return str(registry.register_model_version(built.source, name, built.tags, run_id=built.run_id).version)


def stages(client, name: str) -> dict[str, str]:
    return {v.version: v.current_stage for v in client.search_model_versions(f"name='{name}'")}


def write_live(pg_conn, schema: str, n: int, champion: str, challenger: str, challenger_better: bool, seed=0):
    """n labelled transactions scored by ``champion`` (transactions) and ``challenger`` (shadow)."""
    rng = np.random.default_rng(seed)
    label = rng.random(n) < 0.2
    good = np.clip(label * 0.6 + rng.random(n) * 0.5, 0, 1)
    bad = rng.random(n)
    champ, chall = (bad, good) if challenger_better else (good, bad)
    now = pd.Timestamp.now(tz="UTC")
    with pg_conn, pg_conn.cursor() as cur:
        for i in range(n):
            tid = f"TXN_{challenger}_{seed}_{i}"
            cur.execute(f"""INSERT INTO "{schema}".transactions (transaction_id, user_id, amount, currency, merchant,
                            transaction_time, country, transaction_type, fraud_score, is_fraud, model_version, scored_at)
                            VALUES (%s, 'u', 10, 'EUR', 'm', %s, 'DE', 'purchase', %s, %s, %s, %s)""",
                        (tid, now, float(champ[i]), bool(champ[i] >= 0.5), champion, now))
            cur.execute(f"""INSERT INTO "{schema}".shadow_scores VALUES (%s, %s, %s, %s, 0.5, %s)""",
                        (tid, challenger, float(chall[i]), bool(chall[i] >= 0.5), now))
            cur.execute(f"""INSERT INTO "{schema}".labels (transaction_id, is_fraud, source, labeled_at)
                            VALUES (%s, %s, 'chargeback', %s)""", (tid, bool(label[i]), now))


def audit(pg_conn, schema: str) -> list[tuple]:
    with pg_conn.cursor() as cur:
        cur.execute(f"""SELECT details->>'decision', details->>'candidate_version' FROM "{schema}".audit_log
                        WHERE event_type = 'model_promotion' AND details->>'evidence' = 'live' ORDER BY audit_id""")
        rows = cur.fetchall()
    pg_conn.rollback()
    return rows


def test_live_evidence_waits_archives_a_loser_and_promotes_a_winner(settings, pg_conn, schema, logged):
    client = registry.registry_client(settings)
    name = f"fraud-detector-live-{uuid.uuid4().hex[:8]}"
    assert copy_of(name, logged) == "1"
    registry.promote_to_production(name, "1", client)
    assert copy_of(name, logged) == "2"
    registry.promote_to_staging(name, "2", client)

    # v2 loses on the live labels, but too few labels: wait, nothing changes
    write_live(pg_conn, schema, 60, "1", "2", challenger_better=False)
    waited = promote_on_live_evidence(settings, name, schema, min_live_labels=100, min_margin=0.0)
    assert waited["decision"] == "wait" and "60 live labels" in waited["reasons"][0]
    assert stages(client, name) == {"1": "Production", "2": "Staging"}

    # enough labels: the losing challenger is archived with the reason (tags, audit_log)
    write_live(pg_conn, schema, 200, "1", "2", challenger_better=False, seed=1)
    lost = promote_on_live_evidence(settings, name, schema, min_live_labels=100, min_margin=0.0)
    assert lost["decision"] == "archive", lost
    assert stages(client, name) == {"1": "Production", "2": "Archived"}
    tags = client.get_model_version(name, "2").tags
    assert tags["live_promotion_decision"].startswith("archive: does not beat the champion on live labels")
    assert '"labels": 260' in tags["live_evidence"]

    # v3 as the `challenger` alias wins by the margin: Production, v1 archived, alias removed (CLI)
    assert copy_of(name, logged) == "3"
    client.set_registered_model_alias(name, registry.CHALLENGER_ALIAS, "3")
    write_live(pg_conn, schema, 300, "1", "3", challenger_better=True, seed=2)
    won = promote_main(["--live", "true", "--model-name", name, "--pg-schema", schema,
                        "--min-live-labels", "100", "--live-margin", "0.05"])
    assert won["decision"] == "promote", won
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert stages(client, name) == {"1": "Archived", "2": "Archived", "3": "Production"}
    aliases = client.get_registered_model(name).aliases
    assert aliases.get(registry.CHAMPION_ALIAS) == "3" and registry.CHALLENGER_ALIAS not in aliases
    assert audit(pg_conn, schema) == [("wait", "2"), ("archive", "2"), ("promote", "3")]
    with pg_conn.cursor() as cur:
        cur.execute(f"""SELECT labels->>'challenger_version', metric_value FROM "{schema}".monitoring_metrics
                        WHERE metric_name = 'live_labels' ORDER BY metric_id""")
        assert cur.fetchall() == [("2", 60.0), ("2", 260.0), ("3", 300.0)]
    pg_conn.rollback()
