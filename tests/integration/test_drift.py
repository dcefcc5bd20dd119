"""pipelines.drift against the real stack: a Production model trained through pipelines.train (so
its reference sample is the registry artifact), scored rows planted in a fresh PostgreSQL schema,
the Evidently check, its MLflow run, HTML report and monitoring_metrics rows."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest

from features.batch import compute_features
from pipelines.drift import DRIFT_EXIT_CODE, InsufficientDataError, main, run_drift_check
from simulator.generator import generate_history
from tests.monitoring_support import (
    count_rows,
    create_schema,
    drop_schema,
    insert_labels,
    insert_scored,
    scored_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # the module fixture (world + training) counts in the first test

DAYS, CURRENT_FROM_DAY, CUSTOMERS, SEED = 56, 50, 200, 5
START = datetime(2025, 3, 1, tzinfo=UTC)


@functools.cache
def _history(fraud_ratio: float = 0.02) -> pd.DataFrame:
    """The simulated world (generated once per fraud ratio; callers never modify it)."""
    return generate_history(days=DAYS, customers=CUSTOMERS, fraud_ratio=fraud_ratio, seed=SEED, start=START)


@functools.cache
def _world(shift: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, its features) of ``shift``: none, currency_mix or fraud_wave, computed once each."""
    history = {"none": _history, "currency_mix": lambda: _currency_shift(_history()),
               "fraud_wave": lambda: _history(fraud_ratio=0.15)}[shift]()
    return history, compute_features(history)


def _day(frame: pd.DataFrame) -> pd.Series:
    return (pd.to_datetime(frame["transaction_time"], utc=True) - pd.Timestamp(START)).dt.days


@pytest.fixture(scope="module")
def production_model(settings):
    """A registered Production model whose reference covers days 31-40 (30-day windows full)."""
    from fraudops.modeling.registry import promote_to_production
    from pipelines.splits import TimeSplit, split_frames
    from pipelines.train import PreparedData, train_model

    name = f"drift-{uuid.uuid4().hex[:8]}"
    history, features = _world("none")
    # point-in-time features: those of days < 50 computed on all 56 days equal those computed on days < 50
    featurized = features[_day(history) < CURRENT_FROM_DAY].reset_index(drop=True)
    at = lambda day: pd.Timestamp(START) + pd.Timedelta(days=day)  # noqa: E731
    split = TimeSplit(at(0), at(31), at(40), at(44), at(46), at(CURRENT_FROM_DAY))
    prepared = PreparedData(featurized, split, split_frames(featurized, split), "tests: simulator")
    trained = train_model(register=True, model_name=name, experiment_name=f"tests-{name}", prepared=prepared,
                          params={"max_iter": 60}, settings=settings)
    promote_to_production(name, trained.version)
    return {"name": name, "version": trained.version, "uri": f"models:/{name}/Production",
            "threshold": trained.threshold}


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"drift_{unique_name}")
    yield name
    drop_schema(pg_conn, name)


@functools.cache
def _fraud_model(uri: str):
    from fraudops.modeling.model import load_fraud_model

    return load_fraud_model(uri)


def _plant_current(pg_conn, schema: str, shift: str, model: dict) -> int:
    """Score the last days of the ``shift`` world (features over all of it) with the Production
    model into ``schema``, as the streaming job would have, scored now."""
    history, featurized = _world(shift)
    current = _day(history) >= CURRENT_FROM_DAY
    scores = _fraud_model(f"models:/{model['name']}/{model['version']}").predict(featurized[current])
    rows = scored_rows(history[current], model_version=model["version"], threshold=model["threshold"],
                       features=featurized[current], scored_at=datetime.now(UTC), scores=scores)
    planted = insert_scored(pg_conn, schema, rows)
    insert_labels(pg_conn, schema, history[current], source="simulator", only_fraud=False,
                  known_by=datetime(2100, 1, 1, tzinfo=UTC))
    return planted


def _currency_shift(history: pd.DataFrame) -> pd.DataFrame:
    """Half of the customers pay in yen from day 50 on (amount x150, JP/JPY)."""
    users = sorted(history["user_id"].unique())[::2]
    moved = history["user_id"].isin(users) & (_day(history) >= CURRENT_FROM_DAY)
    shifted = history.copy()
    shifted.loc[moved, "amount"] = (shifted.loc[moved, "amount"] * 150).round(0)
    shifted.loc[moved, "currency"] = "JPY"
    shifted.loc[moved, "country"] = "JP"
    return shifted


def _check(settings, schema, model, tmp_path):
    return run_drift_check(window="24h", model_uri=model["uri"], pg_schema=schema, reports_dir=tmp_path,
                           experiment=f"tests-{model['name']}", settings=settings)


def test_unshifted_stream_shows_no_drift_and_is_recorded(settings, pg_conn, schema, production_model, tmp_path):
    planted = _plant_current(pg_conn, schema, "none", production_model)

    check = _check(settings, schema, production_model, tmp_path)

    assert check.result.current_rows == planted
    assert not check.result.dataset_drift, check.result.drifted_columns
    assert check.result.drift_share < check.result.drift_share_threshold
    # the reference holds out-of-sample scores (validation period), so the same world's scores
    # do not drift either
    assert check.result.score_drift is not None and not check.result.score_drift.drifted, check.result.score_drift
    assert check.model_version == production_model["version"]
    assert check.report_path.is_file() and check.report_path.parent == tmp_path
    assert check.performance["labelled_rows"] == planted
    assert 0 < check.performance["precision"] <= 1 and 0 < check.performance["recall"] <= 1
    assert count_rows(pg_conn, schema, "monitoring_metrics",
                      "source = 'drift' AND metric_name = 'dataset_drift' AND metric_value = 0") == 1
    _assert_mlflow_run(settings, check)


def _assert_mlflow_run(settings, check):
    from fraudops.modeling.registry import registry_client

    client = registry_client(settings)
    run = client.get_run(check.run_id)
    assert run.data.metrics["drift_share"] == pytest.approx(check.result.drift_share)
    assert run.data.tags["dataset_drift"] == str(check.result.dataset_drift).lower()
    artifacts = [a.path for a in client.list_artifacts(check.run_id, "drift")]
    assert artifacts == [f"drift/{check.report_path.name}"]


@pytest.mark.parametrize("shift", ["currency_mix", "fraud_wave"])
def test_shifted_stream_is_detected(settings, pg_conn, schema, production_model, tmp_path, shift):
    _plant_current(pg_conn, schema, shift, production_model)

    check = _check(settings, schema, production_model, tmp_path)

    assert check.result.dataset_drift, (check.result.drift_share, check.result.drifted_columns)
    expected = {"cat_currency", "amount"} if shift == "currency_mix" else {"user_tiny_count_1h", "user_txn_count_1h"}
    assert expected <= set(check.result.drifted_columns)
    assert count_rows(pg_conn, schema, "monitoring_metrics",
                      "source = 'drift' AND metric_name = 'dataset_drift' AND metric_value = 1") == 1


def test_cli_exit_status_follows_fail_on_drift(settings, pg_conn, schema, production_model, tmp_path):
    _plant_current(pg_conn, schema, "currency_mix", production_model)
    args = ["--window", "5000.0", "--model-uri", production_model["uri"], "--pg-schema", schema,
            "--reports-dir", str(tmp_path), "--experiment", f"tests-{production_model['name']}"]

    assert main([*args, "--fail-on-drift", "true"]) == DRIFT_EXIT_CODE
    assert main([*args, "--fail-on-drift", "false"]) == 0


def test_too_few_rows_is_a_named_error(settings, pg_conn, schema, production_model, tmp_path):
    with pytest.raises(InsufficientDataError, match="window='24h'.*min_rows=200"):
        _check(settings, schema, production_model, tmp_path)
    assert main(["--window", "24h", "--model-uri", production_model["uri"], "--pg-schema", schema]) == 2


def test_unknown_schema_is_a_named_error(settings, production_model, tmp_path):
    with pytest.raises(ValueError, match="pg_schema='no_such_schema_x'"):
        run_drift_check(model_uri=production_model["uri"], pg_schema="no_such_schema_x", settings=settings,
                        reports_dir=tmp_path)
