"""Behaviour of the default model (Made-With-ML style): invariance, direction, the seed's promises.

The model is trained once per module exactly as ``pipelines.train`` trains the default one
(simulator default history: 30 days, 2000 customers; HistGradientBoosting, default parameters;
threshold by max F1 on validation) and saved as the same pyfunc, without a tracking server.
Scores always go through that pyfunc, i.e. the served path.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from fraudops.modeling.model import ModelMetadata, prepare_model_input, save_fraud_model
from pipelines.evaluation_metrics import THRESHOLD_OBJECTIVE, choose_threshold
from pipelines.train import feature_lists, fit_pipeline, prepare_data, score_rows
from simulator.generator import generate_history, seed_scenario_messages

pytestmark = pytest.mark.model  # no service needed; trains one model per module

HISTORY_DAYS, HISTORY_CUSTOMERS, SEED = 30, 2000, 42


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_history(HISTORY_DAYS, HISTORY_CUSTOMERS, seed=SEED)


@pytest.fixture(scope="module")
def default_model(history, tmp_path_factory):
    """(pyfunc, metadata, prepared data) of the default model."""
    import features.definition as fd

    path = tmp_path_factory.mktemp("model") / "history.parquet"
    history.to_parquet(path, index=False)
    prepared = prepare_data(str(path))
    numeric, categorical = feature_lists("all")
    pipeline = fit_pipeline("hist_gradient_boosting", prepared.frames.fit, numeric, categorical)
    validation = prepared.frames.validation
    threshold = choose_threshold(validation["is_fraud"], score_rows(pipeline, validation, numeric, categorical)).threshold
    metadata = ModelMetadata(threshold, THRESHOLD_OBJECTIVE, fd.FEATURE_SET_VERSION, tuple(numeric), tuple(categorical),
                             "hist_gradient_boosting")
    saved = save_fraud_model(tmp_path_factory.mktemp("pyfunc") / "model", pipeline, metadata, prepared.frames.fit.head(5))
    return mlflow.pyfunc.load_model(str(saved)), metadata, prepared


def served_scores(model, metadata: ModelMetadata, rows: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict(prepare_model_input(rows, metadata.numeric_features, metadata.categorical_features)))


def test_renaming_a_merchant_everywhere_does_not_change_any_score(default_model, history):
    model, metadata, _ = default_model
    window = history[history["transaction_time"] >= history["transaction_time"].max() - pd.Timedelta(days=10)]
    busiest = window["merchant"].value_counts().index[0]
    renamed = window.assign(merchant=window["merchant"].replace({busiest: "Totally Different Name Ltd"}))
    for with_ids in (True, False):  # merchant_id present (the key) or absent (the name is the key)
        before, after = (frame if with_ids else frame.drop(columns=["merchant_id"]) for frame in (window, renamed))
        original = served_scores(model, metadata, compute_features(before))
        changed = served_scores(model, metadata, compute_features(after))
        np.testing.assert_array_equal(original, changed)


def test_a_larger_amount_ratio_never_lowers_the_score(default_model):
    model, metadata, prepared = default_model
    rows = prepared.frames.test.sample(3000, random_state=0)
    base = served_scores(model, metadata, rows)
    for factor in (1.5, 3.0, 10.0):
        larger = rows.assign(user_amount_ratio_30d=rows["user_amount_ratio_30d"] * factor)
        assert (served_scores(model, metadata, larger) >= base - 1e-12).all(), factor


def test_stateless_inputs_of_an_unknown_country_or_channel_still_score(default_model):
    model, metadata, prepared = default_model
    rows = prepared.frames.test.head(20).assign(cat_country="ZZ", cat_channel="carrier-pigeon")
    scores = served_scores(model, metadata, rows)
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


def seed_message_features(history: pd.DataFrame, message: dict) -> pd.DataFrame:
    """Features of a seed message sent after the history before it (labels known by then)."""
    when = pd.Timestamp(message["transaction_time"], tz="UTC")
    past = history[history["transaction_time"] < when]
    raw = {k: v for k, v in message.items() if k != "is_fraud_actual"}  # unknown field: never a feature
    frame = pd.concat([past.drop(columns=["is_fraud", "fraud_scenario", "label_time"]),
                       pd.DataFrame([{**raw, "transaction_time": when}])], ignore_index=True)
    known = past[past["label_time"] < when]
    labels = known[["transaction_id", "is_fraud"]].assign(labeled_at=known["label_time"])
    return compute_features(frame, labels=labels).iloc[[-1]]


def test_the_seeds_two_scenarios_land_on_the_promised_side(default_model, history):
    model, metadata, _ = default_model
    normal, fraud = seed_scenario_messages()
    normal_score = float(served_scores(model, metadata, seed_message_features(history, normal))[0])
    fraud_score = float(served_scores(model, metadata, seed_message_features(history, fraud))[0])
    assert normal_score < 0.3 and normal_score < metadata.decision_threshold, normal_score
    assert fraud_score > 0.8 and fraud_score >= metadata.decision_threshold, fraud_score
