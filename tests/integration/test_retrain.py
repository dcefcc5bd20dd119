"""pipelines.retrain against the real stack: training set from PostgreSQL (+ history), Great
Expectations, training, the champion/challenger gate on the same holdout, and the drift trigger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from fraudops.modeling.registry import CHAMPION_ALIAS, production_version, registry_client
from monitoring.storage import MetricRow, connect_schema, insert_audit, insert_metric_rows
from pipelines.promote import AUDIT_EVENT as PROMOTION_EVENT
from pipelines.promotion_policy import MetricThreshold, PromotionPolicy
from pipelines.retrain import AUDIT_EVENT, DataValidationError, main, retrain
from tests.monitoring_support import (
    count_rows,
    create_schema,
    drop_schema,
    history_since,
    insert_rows,
    insert_scored,
    scored_rows,
)

pytestmark = pytest.mark.integration
FAST = {"max_iter": 80}


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"rt_{unique_name}")
    yield name
    drop_schema(pg_conn, name)


@pytest.fixture
def names(unique_name):
    return {"model": f"retrain-{unique_name}", "experiment": f"tests-retrain-{unique_name}"}


@pytest.fixture(scope="module")
def world():
    """40 days of one simulated bank ending two hours ago: the first 30 are history, the rest the
    recent traffic the stream scored."""
    full = history_since(days=40, customers=200, seed=11, fraud_ratio=0.03,
                         end=datetime.now(UTC) - timedelta(hours=2))
    day = (pd.to_datetime(full["transaction_time"], utc=True) - pd.to_datetime(full["transaction_time"], utc=True).min()).dt.days
    return {"history": full[day < 30].reset_index(drop=True), "recent": full[day >= 30].reset_index(drop=True)}


def _plant_recent(pg_conn, schema, recent: pd.DataFrame) -> None:
    """Scored rows of the recent period and a chargeback for each fraud 30 minutes after it."""
    insert_scored(pg_conn, schema, scored_rows(recent, model_version="1"))
    frauds = recent[recent["is_fraud"] == 1]
    insert_rows(pg_conn, schema, "labels", pd.DataFrame({
        "transaction_id": frauds["transaction_id"], "is_fraud": True, "source": "chargeback",
        "labeled_at": pd.to_datetime(frauds["transaction_time"], utc=True) + pd.Timedelta(minutes=30)}))


def _history_file(world, tmp_path) -> str:
    path = tmp_path / "history.parquet"
    world["history"].to_parquet(path, index=False)
    return str(path)


def test_a_better_candidate_replaces_the_champion(settings, pg_conn, schema, names, world, tmp_path):
    from pipelines.train import train_model

    weak = train_model(model_type="logistic", feature_set="stateless", samples=6000, fraud_ratio=0.03,
                       model_name=names["model"], experiment_name=names["experiment"], settings=settings)
    from fraudops.modeling.registry import promote_to_production

    promote_to_production(names["model"], weak.version)
    _plant_recent(pg_conn, schema, world["recent"])

    result = retrain(pg_schema=schema, history=_history_file(world, tmp_path), model_name=names["model"],
                     params=FAST, experiment_name=names["experiment"], settings=settings)

    client = registry_client(settings)
    assert not result.skipped and result.version != weak.version
    assert result.outcome.decision.stage == "Production", result.outcome.decision.explain()
    assert result.outcome.champion_version == weak.version
    assert production_version(names["model"], client).version == result.version
    assert client.get_model_version_by_alias(names["model"], CHAMPION_ALIAS).version == result.version
    assert result.data_counts["history_rows"] == len(world["history"])
    assert result.data_counts["database_rows"] == len(world["recent"])
    # the holdout is recent PostgreSQL traffic, and both models were judged on it
    assert result.split.test_start > pd.to_datetime(world["recent"]["transaction_time"], utc=True).min()
    assert result.outcome.candidate.period == result.outcome.champion.period
    assert count_rows(pg_conn, schema, "audit_log", "event_type = %s", (AUDIT_EVENT,)) == 1
    # the gate's decision is audited in the job's schema too, not in public
    assert count_rows(pg_conn, schema, "audit_log", "event_type = %s", (PROMOTION_EVENT,)) == 1
    children = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert {r.data.tags.get("step") for r in children} >= {"train"}


def test_a_candidate_failing_the_gate_is_registered_but_not_promoted(settings, pg_conn, schema, names, world, tmp_path):
    _plant_recent(pg_conn, schema, world["recent"])
    impossible = PromotionPolicy(thresholds=(MetricThreshold("auc_roc", 1.01),))

    result = retrain(pg_schema=schema, history=_history_file(world, tmp_path), model_name=names["model"],
                     params=FAST, policy=impossible, experiment_name=names["experiment"], settings=settings)

    client = registry_client(settings)
    assert result.outcome.decision.stage is None and result.outcome.applied_stage is None
    assert production_version(names["model"], client) is None
    version = client.get_model_version(names["model"], result.version)
    assert version.tags["validation_status"] == "failed"


def test_if_drift_runs_only_after_an_unanswered_drift_check(settings, pg_conn, schema, names):
    assert retrain(pg_schema=schema, if_drift=True, settings=settings).skipped  # no drift check at all
    conn = connect_schema(settings, schema)
    try:
        insert_metric_rows(conn, "drift", [MetricRow("dataset_drift", 0.0, {})])
        conn.commit()
        assert "no drift check found drift" in retrain(pg_schema=schema, if_drift=True, settings=settings).reason
        insert_metric_rows(conn, "drift", [MetricRow("dataset_drift", 1.0, {})])
        conn.commit()
        with pytest.raises(ValueError, match=f"pg_schema='{schema}' holds no scored transactions"):
            retrain(pg_schema=schema, if_drift=True, settings=settings)  # drift: it tries, the schema is empty
        insert_audit(conn, AUDIT_EVENT, "test", {})
        conn.commit()
        assert "already retrained" in retrain(pg_schema=schema, if_drift=True, settings=settings).reason
    finally:
        conn.close()


def test_bad_rows_fail_validation_before_training(settings, pg_conn, schema, names, world):
    rows = scored_rows(world["recent"].head(300), model_version="1")
    rows.loc[rows.index[:3], "currency"] = "XXX"
    insert_scored(pg_conn, schema, rows)

    with pytest.raises(DataValidationError, match="currency"):
        retrain(pg_schema=schema, model_name=names["model"], settings=settings)
    assert main(["--pg-schema", schema, "--model-name", names["model"]]) == 1


def test_the_seed_script_runs_the_retrain_step(schema):
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([str(root / "scripts" / "retrain_model.sh"), "--pg-schema", schema, "--if-drift", "true"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "retrain skipped: no drift check found drift in the last 24h" in done.stdout


def test_named_errors(settings, schema):
    with pytest.raises(ValueError, match="gap='soon'"):
        retrain(pg_schema=schema, gap="soon", settings=settings)
    assert main(["--pg-schema", schema, "--holdout-fraction", "0.3"]) == 2  # empty schema


def test_label_maturity_decides_which_unlabelled_rows_count_as_genuine(settings, pg_conn, schema):
    from pipelines.retrain import load_database_rows

    now = datetime.now(UTC).replace(microsecond=0)
    recent = history_since(days=1, customers=20, seed=5, end=now - timedelta(hours=3)).head(3)
    old, young, charged = recent["transaction_id"].tolist()
    rows = scored_rows(recent, model_version="1")
    rows["scored_at"] = [now - timedelta(hours=3), now - timedelta(minutes=5), now - timedelta(hours=3)]
    insert_scored(pg_conn, schema, rows, with_alerts=False)
    insert_rows(pg_conn, schema, "labels", pd.DataFrame({
        "transaction_id": [charged], "is_fraud": [True], "source": ["chargeback"], "labeled_at": [now]}))

    conn = connect_schema(settings, schema)
    try:
        one_hour = load_database_rows(conn, None, timedelta(hours=1)).transactions.set_index("transaction_id")["label"]
        never = load_database_rows(conn, None, None).transactions.set_index("transaction_id")["label"]
    finally:
        conn.close()
    assert one_hour[old] == 0 and pd.isna(one_hour[young]) and one_hour[charged] == 1
    assert pd.isna(never[old]) and pd.isna(never[young]) and never[charged] == 1


def _messy_production(seed: int) -> pd.DataFrame:
    """Ten days the way production delivers them: half of the messages from the seed's producer
    (no merchant_id, merchant_category, channel or device_id), a third of the users new (no history
    at all), a fraud share well above the simulator's."""
    recent = history_since(days=10, customers=150, seed=seed, fraud_ratio=0.06,
                           end=datetime.now(UTC) - timedelta(hours=2))
    import numpy as np

    rng = np.random.default_rng(seed)
    seed_producer = rng.random(len(recent)) < 0.5
    for column in ("merchant_id", "merchant_category", "channel", "device_id"):
        recent[column] = recent[column].astype(object).where(~seed_producer, None)
    new_user = rng.random(len(recent)) < 0.33
    recent.loc[new_user, "user_id"] = [f"NEW_{i}" for i in range(int(new_user.sum()))]
    return recent


def test_messy_production_data_without_a_labelled_fraud_is_refused_with_its_reason(settings, pg_conn, schema, names):
    recent = _messy_production(seed=21)
    insert_scored(pg_conn, schema, scored_rows(recent, model_version="1"))  # no chargeback ever came
    # refused before any fit (the periods hold no fraud), or, past that, as a degenerate model
    # (DegenerateModelError, a ValueError too, audited as model_retrain_refused)
    with pytest.raises(ValueError, match="no fraud"):
        retrain(pg_schema=schema, model_name=names["model"], params=FAST, experiment_name=names["experiment"],
                settings=settings)
    client = registry_client(settings)
    assert client.search_model_versions(f"name='{names['model']}'") == []  # nothing registered
    assert main(["--pg-schema", schema, "--model-name", names["model"], "--experiment", names["experiment"]]) == 2


def test_messy_production_data_with_chargebacks_trains_a_sane_candidate(settings, pg_conn, schema, names):
    recent = _messy_production(seed=22)
    _plant_recent(pg_conn, schema, recent)
    result = retrain(pg_schema=schema, model_name=names["model"], params=FAST, experiment_name=names["experiment"],
                     label_delay="30m", settings=settings)
    version = registry_client(settings).get_model_version(names["model"], result.version)
    assert 0 < float(version.tags["decision_threshold"]) < 0.99
    assert float(version.tags["label_delay_seconds"]) == 1800.0
    assert result.outcome.candidate.metrics["auc_roc"] > 0.7, result.outcome.candidate.metrics
