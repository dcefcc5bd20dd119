"""The model contract without a tracking server: P(fraud) per row, encoding inside the pipeline."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from fraudops.modeling.model import (
    MISSING_CATEGORY,
    MODEL_TYPES,
    ModelMetadata,
    build_pipeline,
    check_model_type,
    fraud_probability,
    load_pipeline,
    model_signature,
    prepare_model_input,
    save_fraud_model,
    save_pipeline,
)

pytestmark = pytest.mark.unit

NUMERIC = ["amount_ratio", "count_1h", "seconds_since_prev"]
CATEGORICAL = ["cat_country", "cat_channel"]


def toy_frame(n: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Fraud is more likely with a large amount ratio, a burst, and country RU."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "amount_ratio": rng.lognormal(0, 0.7, n),
        "count_1h": rng.poisson(0.5, n),  # int64, as counts often are
        "seconds_since_prev": np.where(rng.random(n) < 0.05, np.nan, rng.exponential(3600, n)),
        "cat_country": rng.choice(["US", "GB", "RU", None], n, p=[0.6, 0.25, 0.1, 0.05]),
        "cat_channel": rng.choice(["pos", "online"], n),
    })
    logit = -5 + 1.2 * np.log(frame.amount_ratio) + 0.8 * frame.count_1h + 2.0 * (frame.cat_country == "RU")
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    labels[:5] = 1  # both classes, always
    return frame, labels


def metadata(model_type: str = "hist_gradient_boosting", threshold: float = 0.3) -> ModelMetadata:
    return ModelMetadata(threshold, "max_f1_on_validation", "fs-test", tuple(NUMERIC), tuple(CATEGORICAL), model_type)


@pytest.fixture(scope="module", params=MODEL_TYPES)
def fitted(request):
    frame, labels = toy_frame()
    params = {"n_estimators": 20} if request.param in ("random_forest", "gradient_boosting") else None
    pipeline = build_pipeline(request.param, NUMERIC, CATEGORICAL, params=params)
    pipeline.fit(prepare_model_input(frame, NUMERIC, CATEGORICAL), labels)
    return request.param, pipeline, frame


def test_missing_category_matches_the_feature_definition():
    from features.definition import UNKNOWN_CATEGORY

    assert MISSING_CATEGORY == UNKNOWN_CATEGORY


def test_fraud_probability_is_the_fraud_class_column(fitted):
    _, pipeline, frame = fitted
    X = prepare_model_input(frame, NUMERIC, CATEGORICAL)
    scores = fraud_probability(pipeline, X)
    assert scores.dtype == np.float64 and scores.shape == (len(frame),)
    # tolerance: a random forest on 2 threads sums its trees in varying order (1e-16 differences)
    np.testing.assert_allclose(scores, pipeline.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    assert not np.allclose(scores, pipeline.predict_proba(X)[:, 0])


def test_pipeline_survives_skops_round_trip_with_the_allowlist(fitted, tmp_path):
    _, pipeline, frame = fitted
    X = prepare_model_input(frame, NUMERIC, CATEGORICAL)
    loaded = load_pipeline(save_pipeline(pipeline, tmp_path))
    np.testing.assert_allclose(loaded.predict_proba(X), pipeline.predict_proba(X), rtol=0, atol=1e-12)


def test_saved_pyfunc_returns_p_fraud_and_carries_its_metadata(fitted, tmp_path):
    model_type, pipeline, frame = fitted
    path = save_fraud_model(tmp_path / "model", pipeline, metadata(model_type), frame.head(20))
    model = mlflow.pyfunc.load_model(str(path))
    X = prepare_model_input(frame, NUMERIC, CATEGORICAL)
    scores = model.predict(X)
    assert np.asarray(scores).dtype == np.float64
    np.testing.assert_allclose(scores, pipeline.predict_proba(X)[:, 1], rtol=0, atol=1e-12)
    assert model.metadata.metadata["decision_threshold"] == 0.3
    assert model.metadata.metadata["feature_set_version"] == "fs-test"
    assert model.metadata.get_input_schema().input_names() == NUMERIC + CATEGORICAL


def test_unknown_and_missing_categories_are_scored_not_rejected(fitted):
    _, pipeline, frame = fitted
    odd = frame.head(3).copy()
    odd["cat_country"] = ["ZZ", None, "US"]
    scores = fraud_probability(pipeline, prepare_model_input(odd, NUMERIC, CATEGORICAL))
    assert np.isfinite(scores).all()


def test_prepare_model_input_orders_and_types_columns_without_touching_the_input():
    frame, _ = toy_frame(10)
    frame["extra"] = 1
    before = frame.copy()
    out = prepare_model_input(frame, NUMERIC, CATEGORICAL)
    assert list(out.columns) == NUMERIC + CATEGORICAL
    assert (out.dtypes[NUMERIC] == "float64").all()
    assert out["cat_country"].map(type).eq(str).all()
    assert MISSING_CATEGORY in set(out["cat_country"]) or frame["cat_country"].notna().all()
    pd.testing.assert_frame_equal(frame, before)


def test_prepare_model_input_names_missing_columns():
    frame, _ = toy_frame(10)
    with pytest.raises(KeyError, match="count_1h"):
        prepare_model_input(frame.drop(columns=["count_1h"]), NUMERIC, CATEGORICAL)


def test_prepare_model_input_names_a_non_numeric_value():
    frame, _ = toy_frame(3)
    frame["amount_ratio"] = frame["amount_ratio"].astype(object)
    frame.loc[0, "amount_ratio"] = "lots"
    with pytest.raises(ValueError):
        prepare_model_input(frame, NUMERIC, CATEGORICAL)


def test_metadata_round_trip_and_missing_key():
    md = metadata()
    assert ModelMetadata.from_config(md.to_config()) == md
    assert md.feature_columns == NUMERIC + CATEGORICAL
    config = md.to_config()
    del config["feature_set_version"]
    with pytest.raises(KeyError, match="feature_set_version"):
        ModelMetadata.from_config(config)


def test_signature_inputs_and_double_output():
    signature = model_signature(NUMERIC, CATEGORICAL)
    types = {spec.name: spec.type.name for spec in signature.inputs.inputs}
    assert types == {**{c: "double" for c in NUMERIC}, **{c: "string" for c in CATEGORICAL}}
    assert [spec.type.name for spec in signature.outputs.inputs] == ["double"]


def test_unknown_model_type_is_named():
    with pytest.raises(ValueError, match="xgboost"):
        check_model_type("xgboost")
