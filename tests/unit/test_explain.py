"""fraudops.modeling.explain: exact contributions on the logged pipeline, and the reasons of an alert.

One small simulated history; models fitted as pipelines.train fits them. Checks: the
HistGradientBoosting TreeSHAP equals the shap package on numeric splits and adds up to
decision_function with native categorical splits; shap's values for the forest and the linear
Shapley values add up too; through the saved pyfunc (the served path) the seed's $3,500 RU 2 AM
fraud is explained by amount- and country/night-related features.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from fraudops.modeling.explain import (
    BASELINE_KEY,
    HistGradientBoostingTreeShap,
    alert_reasons,
    alert_reasons_json,
    build_explainer,
    linear_baseline,
)
from fraudops.modeling.model import ModelMetadata, prepare_model_input, save_fraud_model
from pipelines.train import feature_lists, fit_pipeline, prepare_data
from simulator.generator import generate_history, seed_scenario_messages

pytestmark = [pytest.mark.unit, pytest.mark.slow, pytest.mark.timeout(900)]

AMOUNT_FEATURES = {"amount", "log_amount", "user_amount_ratio_30d"}
COUNTRY_OR_NIGHT_FEATURES = {"cat_country", "user_new_country", "user_other_country_count_24h", "is_night", "hour"}


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_history(days=21, customers=600, fraud_ratio=0.01, seed=5)


@pytest.fixture(scope="module")
def prepared(history, tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "history.parquet"
    history.to_parquet(path, index=False)
    return prepare_data(str(path))


@pytest.fixture(scope="module")
def rows(prepared) -> pd.DataFrame:
    test = prepared.frames.test
    return pd.concat([test[test["is_fraud"] == 1].head(40), test[test["is_fraud"] == 0].head(160)])


def _fit(prepared, model_type, categorical=True, params=None):
    numeric, categorical_features = feature_lists("all")
    return fit_pipeline(model_type, prepared.frames.fit, numeric, categorical_features if categorical else [], params)


def _transformed(pipeline, rows, categorical=True):
    numeric, categorical_features = feature_lists("all")
    frame = prepare_model_input(rows, numeric, categorical_features if categorical else [])
    return frame, np.asarray(pipeline[:-1].transform(frame), dtype="float64")


def test_hist_gradient_boosting_treeshap_equals_the_shap_package_on_numeric_splits(prepared, rows):
    import shap

    pipeline = _fit(prepared, "hist_gradient_boosting", categorical=False, params={"max_iter": 60})
    _, X = _transformed(pipeline, rows, categorical=False)
    ours = HistGradientBoostingTreeShap(pipeline[-1]).shap_values(X)
    np.testing.assert_allclose(ours, shap.TreeExplainer(pipeline[-1]).shap_values(X), atol=1e-9)


def test_hist_gradient_boosting_contributions_add_up_with_categorical_splits(prepared, rows):
    pipeline = _fit(prepared, "hist_gradient_boosting", params={"max_iter": 60})
    assert pipeline[-1].is_categorical_ is not None and pipeline[-1].is_categorical_.any()
    _, X = _transformed(pipeline, rows)
    explainer = HistGradientBoostingTreeShap(pipeline[-1])
    total = explainer.shap_values(X).sum(axis=1) + explainer.expected_value
    np.testing.assert_allclose(total, pipeline[-1].decision_function(X), atol=1e-9)


def test_the_one_call_forest_path_equals_the_per_tree_reference_with_categorical_splits(prepared, rows):
    """The batch kernel (all trees and rows in one compiled call) gives the per-tree reference's values."""
    pipeline = _fit(prepared, "hist_gradient_boosting", params={"max_iter": 60})
    estimator = pipeline[-1]
    assert estimator.is_categorical_.any()
    _, X = _transformed(pipeline, rows)
    # missing, negative and never-seen categories take the missing-value direction, as in the predictor
    categorical = np.flatnonzero(estimator.is_categorical_)
    X[0, categorical[0]], X[1, categorical[-1]], X[2, categorical[0]] = np.nan, -1.0, 250.0
    explainer = HistGradientBoostingTreeShap(estimator)
    fast = explainer.shap_values(X)
    np.testing.assert_allclose(fast, explainer.shap_values_per_tree(X), rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.sum(axis=1) + explainer.expected_value, estimator.decision_function(X), atol=1e-9)
    np.testing.assert_allclose(explainer.shap_values(X[5:6]), fast[5:6], rtol=0, atol=1e-9)  # one alert alone
    assert explainer.shap_values(X[:0]).shape == (0, X.shape[1])


@pytest.mark.parametrize("model_type", ["random_forest", "logistic"])
def test_forest_and_linear_contributions_add_up_to_the_model_output(prepared, rows, model_type):
    numeric, categorical = feature_lists("all")
    params = {"n_estimators": 30} if model_type == "random_forest" else {}
    pipeline = _fit(prepared, model_type, params=params)
    frame, X = _transformed(pipeline, rows)
    baseline = linear_baseline(pipeline, prepare_model_input(prepared.frames.fit, numeric, categorical)) \
        if model_type == "logistic" else None
    explainer = build_explainer(pipeline, numeric, categorical, baseline)
    contributions = explainer.contributions(frame)
    assert contributions.shape == (len(rows), len(numeric) + len(categorical))
    if model_type == "random_forest":
        output = pipeline.predict_proba(frame)[:, 1]
        expected = np.ravel(explainer._shap.expected_value)[1]
    else:
        output = pipeline[-1].decision_function(X)
        expected = pipeline[-1].decision_function(np.asarray(baseline)[None, :])[0]
    np.testing.assert_allclose(contributions.sum(axis=1) + expected, output, atol=1e-9)


def _seed_message_features(history: pd.DataFrame, message: dict) -> pd.DataFrame:
    when = pd.Timestamp(message["transaction_time"], tz="UTC")
    past = history[history["transaction_time"] < when]
    raw = {k: v for k, v in message.items() if k != "is_fraud_actual"}
    frame = pd.concat([past.drop(columns=["is_fraud", "fraud_scenario", "label_time"]),
                       pd.DataFrame([{**raw, "transaction_time": when}])], ignore_index=True)
    known = past[past["label_time"] < when]
    return compute_features(frame, labels=known[["transaction_id", "is_fraud"]].assign(labeled_at=known["label_time"]))


@pytest.fixture(scope="module")
def served_model(prepared, tmp_path_factory):
    """The default model type saved as the pyfunc the stream loads."""
    import features.definition as fd

    numeric, categorical = feature_lists("all")
    pipeline = fit_pipeline("hist_gradient_boosting", prepared.frames.fit, numeric, categorical)
    metadata = ModelMetadata(0.5, "test", fd.FEATURE_SET_VERSION, tuple(numeric), tuple(categorical),
                             "hist_gradient_boosting")
    path = save_fraud_model(tmp_path_factory.mktemp("pyfunc") / "model", pipeline, metadata, prepared.frames.fit.head(5))
    return mlflow.pyfunc.load_model(str(path))


def test_the_seeds_3500_ru_2am_fraud_is_explained_by_amount_and_country_or_night(served_model, history):
    _, fraud = seed_scenario_messages()
    features = _seed_message_features(history, fraud).iloc[[-1]]
    [reasons] = alert_reasons(served_model, features, top_k=5)
    names = [r["name"] for r in reasons]
    assert AMOUNT_FEATURES & set(names), reasons
    assert COUNTRY_OR_NIGHT_FEATURES & set(names), reasons
    contributions = [r["contribution"] for r in reasons]
    assert contributions == sorted(contributions, reverse=True) and all(c > 0 for c in contributions)
    by_name = {r["name"]: r["value"] for r in reasons}
    assert by_name.get("amount", 3500.0) == 3500.0 and by_name.get("cat_country", "RU") == "RU"


def test_reasons_are_strict_json_one_list_per_row_and_empty_input_gives_nothing(served_model, rows):
    with_gaps = rows.head(30).copy()
    with_gaps.loc[with_gaps.index[0], "user_amount_ratio_30d"] = np.nan
    reasons = alert_reasons(served_model, with_gaps, top_k=3)
    assert len(reasons) == 30 and all(1 <= len(r) <= 3 for r in reasons)
    assert all(set(reason) == {"name", "value", "contribution"} for row in reasons for reason in row)
    json.dumps(reasons, allow_nan=False)
    assert alert_reasons(served_model, with_gaps.iloc[0:0]) == []


def test_a_logistic_model_uses_its_stored_baseline(prepared, rows, tmp_path):
    import features.definition as fd

    numeric, categorical = feature_lists("all")
    pipeline = fit_pipeline("logistic", prepared.frames.fit, numeric, categorical)
    baseline = linear_baseline(pipeline, prepare_model_input(prepared.frames.fit, numeric, categorical))
    metadata = ModelMetadata(0.5, "test", fd.FEATURE_SET_VERSION, tuple(numeric), tuple(categorical), "logistic",
                             extra={BASELINE_KEY: baseline})
    model = mlflow.pyfunc.load_model(str(save_fraud_model(tmp_path / "m", pipeline, metadata, rows.head(5))))
    reasons = alert_reasons(model, rows.head(5))
    assert len(reasons) == 5 and all(r["name"] in numeric + categorical for row in reasons for r in row)


def test_the_streams_column_holds_json_for_alerted_rows_only_and_never_raises(served_model, rows):
    batch = rows.head(6)
    alerted = np.array([True, False, True, False, False, False])
    column = alert_reasons_json(served_model, batch, alerted, top_k=2)
    assert [value is not None for value in column] == alerted.tolist()
    assert all(1 <= len(json.loads(column[i])) <= 2 for i in (0, 2))
    assert alert_reasons_json(served_model, batch, np.zeros(6, dtype=bool)) == [None] * 6
    assert alert_reasons_json(object(), batch, alerted) == [None] * 6  # not a fraud model: no reasons, no crash
