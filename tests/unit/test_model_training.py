"""Training, tuning and evaluation helpers that need no service (hand-made frames)."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from pipelines.common import parse_bool, whole_number
from pipelines.evaluate import EvaluationResult, build_holdout, build_report, report_markdown
from pipelines.train import (
    check_labels,
    feature_lists,
    load_history,
    missing_optional_feature_values,
    with_missing_optional_fields,
)
from pipelines.tune import estimator_params, search_space

pytestmark = pytest.mark.unit


def raw_rows(n: int = 6, optional: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame({
        "transaction_id": [f"TXN_{i}" for i in range(n)],
        "user_id": ["USER_1"] * n,
        "amount": np.linspace(10, 60, n),
        "currency": "USD",
        "merchant": ["Shop A", "Shop B"] * (n // 2),
        "transaction_time": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"),
        "country": "US",
        "transaction_type": "purchase",
    })
    if optional:
        frame = frame.assign(merchant_id=["M1", "M2"] * (n // 2), merchant_category="grocery",
                             channel="pos", device_id=[f"DEV_{i}" for i in range(n)])
    return frame


def test_missing_optional_values_are_what_the_feature_code_computes():
    from features.batch import compute_features

    featured = compute_features(raw_rows(optional=False))
    for column, value in missing_optional_feature_values().items():
        assert (featured[column] == value).all(), column
    assert {"cat_merchant_category", "cat_channel", "user_new_device"} <= set(missing_optional_feature_values())


def test_with_missing_optional_fields_replaces_a_share_and_leaves_the_input_alone():
    from features.batch import compute_features

    featured = compute_features(raw_rows(200))
    before = featured.copy()
    none = with_missing_optional_fields(featured, 0.0)
    pd.testing.assert_frame_equal(none, featured)
    every = with_missing_optional_fields(featured, 1.0)
    assert (every["cat_channel"] == "unknown").all() and (every["user_new_device"] == 0).all()
    some = with_missing_optional_fields(featured, 0.3, seed=1)
    assert 0.15 < (some["cat_channel"] == "unknown").mean() < 0.45
    pd.testing.assert_frame_equal(featured, before)
    with pytest.raises(ValueError, match="missing_optional_share"):
        with_missing_optional_fields(featured, 1.5)


def test_feature_lists():
    from features.definition import FEATURE_COLUMNS, STATELESS_FEATURES

    numeric, categorical = feature_lists("all")
    assert numeric + categorical == FEATURE_COLUMNS
    numeric, categorical = feature_lists("stateless")
    assert set(numeric + categorical) == set(STATELESS_FEATURES)
    with pytest.raises(ValueError, match="feature_set"):
        feature_lists("some")


def test_check_labels_accepts_bools_and_strings_and_names_problems():
    frame = pd.DataFrame({"is_fraud": [True, False, "true", 0]})
    assert check_labels(frame)["is_fraud"].tolist() == [1, 0, 1, 0]
    with pytest.raises(ValueError, match="no 'is_fraud' label column"):
        check_labels(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="1 missing"):
        check_labels(pd.DataFrame({"is_fraud": [1, None]}))
    with pytest.raises(ValueError, match="0/1"):
        check_labels(pd.DataFrame({"is_fraud": [1, 7]}))


def test_load_history_reads_csv_and_parquet(tmp_path):
    frame = raw_rows().assign(is_fraud=[0, 1, 0, 0, 0, 0])
    frame.to_parquet(tmp_path / "h.parquet")
    frame.to_csv(tmp_path / "h.csv", index=False)
    assert load_history(tmp_path / "h.parquet")["is_fraud"].sum() == 1
    assert len(load_history(tmp_path / "h.csv")) == 6
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        load_history(tmp_path / "nope.parquet")


def test_cli_parsers():
    assert parse_bool("True", "--register") is True and parse_bool("false", "--register") is False
    with pytest.raises(ValueError, match="--register"):
        parse_bool("maybe", "--register")
    assert whole_number("30.0") == 30
    with pytest.raises(argparse.ArgumentTypeError):
        whole_number("2.5")


def test_tune_space_and_params():
    from hyperopt import space_eval
    from hyperopt.pyll.stochastic import sample

    space = search_space("random_forest")
    model_type, params = estimator_params(sample(space, rng=np.random.default_rng(0)))
    assert model_type == "random_forest"
    assert isinstance(params["n_estimators"], int) and params["max_features"] in ("sqrt", 0.3, 0.5)
    assert params["class_weight"] in (None, "balanced")
    assert space_eval(space, {"max_features": 1, "max_depth": 0, "n_estimators": 100.0, "class_weight": 1,
                              "min_samples_leaf": 3.0})["family"]["max_features"] == 0.3
    with pytest.raises(ValueError, match="svm"):
        search_space("svm")


def test_the_default_search_spans_the_families_and_their_class_weights():
    from hyperopt.pyll.stochastic import sample

    space = search_space("all")
    drawn = [estimator_params(sample(space, rng=np.random.default_rng(seed))) for seed in range(60)]
    assert {model_type for model_type, _ in drawn} == {"random_forest", "hist_gradient_boosting", "logistic"}
    assert {params["class_weight"] for _, params in drawn} == {None, "balanced"}
    for model_type, params in drawn[:6]:  # every sampled point builds its estimator
        from fraudops.modeling.model import build_estimator

        build_estimator(model_type, params)


def test_build_holdout_defaults_to_the_last_fifth_and_names_an_empty_period():
    frame = pd.DataFrame({"transaction_time": pd.date_range("2025-01-01", periods=30 * 24, freq="h", tz="UTC")})
    holdout = build_holdout(frame)
    assert holdout.start == pd.Timestamp("2025-01-25", tz="UTC") and len(holdout.rows) == 6 * 24
    with pytest.raises(ValueError, match="no transactions in the evaluation period"):
        build_holdout(frame, "2026-01-01", "2026-01-02")


def test_report_json_and_markdown():
    scored = pd.DataFrame({"score": [0.1]})
    result = EvaluationResult("models:/m/1", "1", 0.5, "fs-v1", ("2025-01-25", "2025-01-31"),
                              {"auc_roc": 0.9, "average_precision": float("nan"), "rows": 100.0},
                              {"card_testing": {"frauds": 3.0, "recall": 1 / 3, "mean_score": 0.4,
                                                "fraud_amount_caught_share": 0.5}}, scored)
    report = build_report(result)
    assert report["metrics"]["average_precision"] is None and report["model_version"] == "1"
    text = report_markdown(report)
    assert "| auc_roc | 0.9000 |" in text and "| average_precision | n/a |" in text and "card_testing" in text


def test_label_delay_default_and_parsing():
    from features.definition import DEFAULT_LABEL_DELAY_SECONDS
    from pipelines.common import DEFAULT_LABEL_DELAY, label_delay_seconds

    assert label_delay_seconds(DEFAULT_LABEL_DELAY) == DEFAULT_LABEL_DELAY_SECONDS
    assert label_delay_seconds("7d") == 7 * 86_400 and label_delay_seconds("0") == 0 and label_delay_seconds(90) == 90
    with pytest.raises(ValueError, match="label_delay"):
        label_delay_seconds("soon")


def test_a_degenerate_threshold_or_a_validation_without_fraud_is_never_a_candidate():
    from pipelines.train import registration_problem

    assert registration_problem(0.42, validation_frauds=3) is None
    assert "degenerate decision threshold" in registration_problem(0.9999999999999978, validation_frauds=3)
    assert "degenerate decision threshold" in registration_problem(0.99, validation_frauds=3)
    assert "no fraud" in registration_problem(0.3, validation_frauds=0)


def test_the_job_warns_when_its_label_delay_differs_from_the_served_versions():
    from fraudops.modeling.registry import ServedModel, label_delay_mismatch

    served = ServedModel("fraud-detector", "7", "models:/fraud-detector/7", 0.5, "fs-v2", None, 3600.0)
    assert label_delay_mismatch(3600, served) is None
    assert "--label-delay 3600" in label_delay_mismatch(86_400, served)
    assert label_delay_mismatch(86_400, ServedModel("m", "1", "models:/m/1", 0.5, "fs-v2", None)) is None
