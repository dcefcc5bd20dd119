"""The whole MLOps loop on the real stack (issue 6): stream, labels, drift, retrain, promote, and
the stream then scores with the new version.

One simulated bank (fixed seed and start date, so every run sees the same transactions):

* days 0-16, the history: v1 (hist_gradient_boosting, through pipelines.train) learns from it
  and becomes Production;
* days 16-24, the shifted period, streamed through Kafka into the in-process scoring job: half
  of the customers now pay in yen in Japan (amount x150, JP/JPY) and a fraud wave runs (fraud
  ratio 8% instead of 3%). The job scores it with v1;
* chargebacks of the period's frauds come in on the labels topic, an analyst reviews alerts
  (monitoring.feedback); the other rows become genuine by label maturity;
* pipelines.drift finds the drift; pipelines.retrain --if-drift trains v2 on the job's rows and
  labels plus the history; the gate compares v1 and v2 on the same recent holdout and promotes v2;
* day 24, streamed next: the running job swaps to v2 between micro-batches and scores with it.

Everything has its own namespace: Kafka topics, PostgreSQL schema, Redis prefix, checkpoint
folder, registered model name and MLflow experiment. No mocks, no skips.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pandas as pd
import pytest

from fraudops.contract.messages import MAX_AMOUNT, serialize_message
from simulator.generator import generate_history
from streaming.scoring_job import JobOptions, start_queries
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = pytest.mark.e2e

START = datetime(2025, 3, 1, tzinfo=UTC)
SEED, CUSTOMERS = 7, 150
HISTORY_DAYS, SHIFT_DAYS = 16, 8  # history: days 0-15; shifted period: days 16-23; then day 24
HISTORY_FRAUD_RATIO, WAVE_FRAUD_RATIO = 0.03, 0.08
AFTER_ROWS = 150  # first transactions of day 24, scored after the promotion
FAST = {"max_iter": 80}
JPY_PER_UNIT = 150
LABEL_MATURITY = "1s"  # compressed time: a row without a chargeback 1 s after scoring is genuine
ANALYST_REVIEWS = 12


# --- the simulated world ------------------------------------------------------------------------
def _day(frame: pd.DataFrame) -> pd.Series:
    return (pd.to_datetime(frame["transaction_time"], utc=True) - pd.Timestamp(START)).dt.days


def _move_to_japan(frame: pd.DataFrame, users: set[str]) -> pd.DataFrame:
    """The given customers pay in yen in Japan: amount x150 (kept under the schema's maximum, as
    the simulator's own local amounts are), currency JPY, country JP."""
    out = frame.copy()
    moved = out["user_id"].isin(users)
    out.loc[moved, "amount"] = (out.loc[moved, "amount"] * JPY_PER_UNIT).round(0).clip(upper=0.9 * MAX_AMOUNT)
    out.loc[moved, "currency"] = "JPY"
    out.loc[moved, "country"] = "JP"
    return out


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    """history (days 0-15, 3% fraud), shifted (days 16-23) and after (day 24): the same customers
    during a fraud wave (8%), half of them moved to Japan. Transaction ids of the later periods
    are renamed (TXN_W...) so they can never collide with the history's."""
    calm = generate_history(days=HISTORY_DAYS, customers=CUSTOMERS, fraud_ratio=HISTORY_FRAUD_RATIO, seed=SEED,
                            start=START)
    wave = generate_history(days=HISTORY_DAYS + SHIFT_DAYS + 1, customers=CUSTOMERS, fraud_ratio=WAVE_FRAUD_RATIO,
                            seed=SEED, start=START)
    wave = wave[_day(wave) >= HISTORY_DAYS].reset_index(drop=True)
    wave["transaction_id"] = wave["transaction_id"].str.replace("TXN_H", "TXN_W", regex=False)
    wave = _move_to_japan(wave, set(sorted(wave["user_id"].unique())[::2]))
    day = _day(wave)
    shifted = wave[day < HISTORY_DAYS + SHIFT_DAYS].reset_index(drop=True)
    after = wave[day == HISTORY_DAYS + SHIFT_DAYS].head(AFTER_ROWS).reset_index(drop=True)
    assert len(after) == AFTER_ROWS
    return {"history": calm, "shifted": shifted, "after": after}


# --- namespace and job --------------------------------------------------------------------------
@pytest.fixture
def namespace(pg_conn, settings, unique_name, tmp_path):
    ns = support.make_namespace(pg_conn, settings, unique_name, tmp_path)
    yield ns
    support.drop_namespace(pg_conn, ns)


def job_options(ns, model_name: str) -> JobOptions:
    return JobOptions(checkpoint_dir=ns.checkpoint_dir, trigger_seconds=0.5, pg_schema=ns.pg_schema,
                      redis_prefix=ns.redis_prefix, topic=ns.topic, labels_topic=ns.labels_topic,
                      alerts_topic=ns.alerts_topic, model_uri=f"models:/{model_name}/Production",
                      model_refresh_seconds=0.1, merchant_refresh_seconds=0.1, query_prefix=ns.pg_schema + "_")


def transaction_messages(rows: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    return [(r["user_id"].encode(), serialize_message(r)) for r in rows.to_dict("records")]


def chargeback_messages(rows: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    """One chargeback per fraud, dated when the bank learns of it (the simulator's label_time)."""
    frauds = rows[rows["is_fraud"] == 1]
    return [(tid.encode(), json.dumps({"transaction_id": tid, "is_fraud": True, "source": "chargeback",
                                       "labeled_at": pd.Timestamp(at).isoformat()}).encode())
            for tid, at in zip(frauds["transaction_id"], frauds["label_time"], strict=True)]


# --- reads --------------------------------------------------------------------------------------
def query(pg_conn, ns, sql: str, params=None) -> list[tuple]:
    with pg_conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{ns.pg_schema}"')
        cur.execute(sql, params)
        rows = cur.fetchall()
    pg_conn.rollback()
    return rows


def version_counts(pg_conn, ns) -> dict[str, int]:
    return dict(query(pg_conn, ns, "SELECT model_version, count(*) FROM transactions GROUP BY 1"))


def registry_state(settings, name: str) -> tuple[dict[str, str], str]:
    """({version: stage}, version of the champion alias)."""
    from fraudops.modeling.registry import CHAMPION_ALIAS, registry_client

    client = registry_client(settings)
    stages = {v.version: v.current_stage for v in client.search_model_versions(f"name='{name}'")}
    return stages, client.get_model_version_by_alias(name, CHAMPION_ALIAS).version


# --- the loop -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(1200)  # 6 min measured on a loaded machine (two trainings, two stream phases)
def test_stream_labels_drift_retrain_promote_and_the_stream_scores_with_the_new_version(
        spark, settings, pg_conn, namespace, world, unique_name, tmp_path):
    from fraudops.modeling.registry import promote_to_production
    from monitoring.feedback import pending_alerts, review_alert
    from monitoring.storage import connect_schema
    from pipelines.drift import run_drift_check
    from pipelines.retrain import retrain
    from pipelines.train import train_model

    history, shifted, after = world["history"], world["shifted"], world["after"]
    name, experiment = f"full-loop-{unique_name}", f"tests-full-loop-{unique_name}"
    history_path = tmp_path / "history.parquet"
    history.to_parquet(history_path, index=False)
    truth = pd.concat([shifted, after]).set_index("transaction_id")["is_fraud"].astype(bool)

    # 1. v1: trained on the history, registered, Production (and champion)
    v1 = train_model(model_type="hist_gradient_boosting", data=str(history_path), params=FAST, model_name=name,
                     experiment_name=experiment, seed=SEED, settings=settings).version
    promote_to_production(name, v1)
    assert registry_state(settings, name) == ({v1: "Production"}, v1)

    job = start_queries(spark, settings, job_options(namespace, name))
    try:
        # 2. the shifted period through Kafka, scored by v1
        support.produce(settings, namespace.topic, transaction_messages(shifted))
        job.process_all_available()
        assert version_counts(pg_conn, namespace) == {v1: len(shifted)}
        assert support.count(pg_conn, namespace, "quarantine") == 0

        # 3. labels: chargebacks on the labels topic, analyst reviews of the oldest pending alerts
        chargebacks = chargeback_messages(shifted)
        assert len(chargebacks) > 100  # the fraud wave
        support.produce(settings, namespace.labels_topic, chargebacks)
        job.process_all_available()
        assert support.count(pg_conn, namespace, "labels", "source = 'chargeback' AND is_fraud") == len(chargebacks)
        conn = connect_schema(settings, namespace.pg_schema)
        try:
            alerts = pending_alerts(conn, limit=ANALYST_REVIEWS)
            assert len(alerts) == ANALYST_REVIEWS
            for tid in alerts["transaction_id"]:
                review_alert(conn, tid, "confirmed" if truth[tid] else "false_positive", "analyst-e2e")
        finally:
            conn.close()
        reviewed = alerts["transaction_id"].tolist()
        analyst = dict(query(pg_conn, namespace, "SELECT transaction_id, is_fraud FROM labels WHERE source = 'analyst'"))
        assert analyst == {tid: bool(truth[tid]) for tid in reviewed}
        assert support.count(pg_conn, namespace, "fraud_alerts", "alert_status <> 'pending'") == ANALYST_REVIEWS

        # 4. no drift check yet: the drift-triggered retrain has nothing to do
        skipped = retrain(pg_schema=namespace.pg_schema, if_drift=True, settings=settings)
        assert skipped.skipped and "no drift check found drift" in skipped.reason

        # 5. the drift check on the job's rows against v1's training reference
        check = run_drift_check(window="24h", model_uri=f"models:/{name}/Production", pg_schema=namespace.pg_schema,
                                reports_dir=tmp_path / "reports", experiment=experiment, settings=settings)
        assert check.model_version == v1 and check.result.current_rows == len(shifted)
        assert check.result.dataset_drift, (check.result.drift_share, check.result.drifted_columns)
        assert {"cat_currency", "amount"} <= set(check.result.drifted_columns)
        assert support.count(pg_conn, namespace, "monitoring_metrics",
                             "source = 'drift' AND metric_name = 'dataset_drift' AND metric_value = 1") == 1

        # 6. retrain because of the drift: the job's rows + labels + the history; the gate promotes v2
        assert_eventually(lambda: query(pg_conn, namespace, "SELECT max(scored_at) < now() - %s::interval FROM "
                                        "transactions", (LABEL_MATURITY,))[0][0],
                          timeout=60, message="every scored row older than the label maturity")
        result = retrain(pg_schema=namespace.pg_schema, history=str(history_path), model_name=name, params=FAST,
                         label_maturity=LABEL_MATURITY, if_drift=True, experiment_name=experiment, seed=SEED,
                         settings=settings)
        assert not result.skipped, result.reason
        v2 = result.version
        assert v2 != v1
        assert result.outcome.champion_version == v1
        assert result.outcome.decision.stage == "Production" and result.outcome.decision.beats_champion, result.reason
        assert result.outcome.applied_stage == "Production"
        assert result.data_counts == {
            "rows": len(history) + len(shifted), "labelled_rows": len(history) + len(shifted),
            "fraud_rows": int(history["is_fraud"].sum() + shifted["is_fraud"].sum()),
            "database_rows": len(shifted), "history_rows": len(history)}
        assert result.split.test_start > pd.to_datetime(shifted["transaction_time"], utc=True).min()
        assert registry_state(settings, name) == ({v1: "Archived", v2: "Production"}, v2)
        assert support.count(pg_conn, namespace, "audit_log", "event_type = 'model_retrained'") == 1
        # the gate's decision is audited in the job's schema (pipelines.promote --pg-schema)
        assert support.count(pg_conn, namespace, "audit_log", "event_type = 'model_promotion'") == 1
        again = retrain(pg_schema=namespace.pg_schema, if_drift=True, settings=settings)
        assert again.skipped and "already retrained" in again.reason

        # 7. the next transactions: the running job swaps to v2 (its registry poll runs beside the
        # batches) and scores them with it
        assert_eventually(lambda: support.count(pg_conn, namespace, "audit_log", "event_type = 'model_switch'") == 1,
                          timeout=60, interval=0.1, message="the job switched to the promoted version")
        support.produce(settings, namespace.topic, transaction_messages(after))
        job.process_all_available()
    finally:
        job.stop()
    assert not job.failures(), [q.exception() for q in job.failures()]

    assert version_counts(pg_conn, namespace) == {v1: len(shifted), v2: len(after)}
    assert dict(query(pg_conn, namespace, "SELECT transaction_id, model_version FROM transactions "
                                          "WHERE transaction_id = ANY(%s)", (after["transaction_id"].tolist(),))) == \
        dict.fromkeys(after["transaction_id"], v2)
    switches = query(pg_conn, namespace, "SELECT details->>'from_version', details->>'to_version' FROM audit_log "
                                         "WHERE event_type = 'model_switch' ORDER BY audit_id")
    assert switches == [(v1, v2)]
    # nothing lost, nothing doubled: every produced transaction is stored exactly once
    stored = Counter(tid for (tid,) in query(pg_conn, namespace, "SELECT transaction_id FROM transactions"))
    produced = [*shifted["transaction_id"], *after["transaction_id"]]
    assert stored == Counter(produced)
    assert support.count(pg_conn, namespace, "quarantine") == 0
