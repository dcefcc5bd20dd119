"""fraudops.modeling.compiled: the decision service's scorer equals the pyfunc, bit for bit.

HistGradientBoosting pipelines fitted as pipelines.train fits them (native categorical splits,
missing values), saved as the pyfunc the registry serves and loaded back; the compiled score
must be EQUAL (==) to the pipeline's predict_proba[:, 1] on thousands of rows of a history the
model never saw (other customers, merchants and countries it never met: unknown categories),
with missing and odd values planted. A pipeline it cannot reproduce (a forest) or a scorer that
differs anywhere is refused, and the pyfunc keeps scoring.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.batch import compute_features
from fraudops.modeling.compiled import CompiledScorer, compiled_scorer
from fraudops.modeling.model import ModelMetadata, fraud_probability, prepare_model_input, save_fraud_model
from pipelines.train import feature_lists, fit_pipeline, prepare_data
from simulator.generator import generate_history

pytestmark = [pytest.mark.unit, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("compiled") / "history.parquet"
    generate_history(days=21, customers=600, fraud_ratio=0.02, seed=11).to_parquet(path, index=False)
    return prepare_data(str(path))


@pytest.fixture(scope="module")
def unseen() -> pd.DataFrame:
    """Features of another simulated population, with missing values and unknown categories planted."""
    other = compute_features(generate_history(days=10, customers=400, fraud_ratio=0.05, seed=99))
    rng = np.random.default_rng(3)
    numeric, categorical = feature_lists("all")
    for column in rng.choice(numeric, 6, replace=False):
        other.loc[rng.random(len(other)) < 0.05, column] = np.nan
    other.loc[rng.random(len(other)) < 0.05, "cat_country"] = "ZZ"
    other.loc[rng.random(len(other)) < 0.05, "cat_channel"] = None
    other.loc[rng.random(len(other)) < 0.02, "cat_currency"] = ""
    return other


def _served(prepared, tmp_path, model_type: str, params=None):
    numeric, categorical = feature_lists("all")
    pipeline = fit_pipeline(model_type, prepared.frames.fit, numeric, categorical, params)
    metadata = ModelMetadata(decision_threshold=0.5, threshold_objective="test", feature_set_version="test",
                             numeric_features=tuple(numeric), categorical_features=tuple(categorical),
                             model_type=model_type)
    path = save_fraud_model(tmp_path / model_type, pipeline, metadata, prepared.frames.fit.head(20))
    return pipeline, metadata, mlflow.pyfunc.load_model(str(path))


@pytest.mark.parametrize("params", [None, {"max_iter": 60, "max_leaf_nodes": 63, "learning_rate": 0.2}])
def test_the_compiled_score_equals_the_pipeline_exactly_on_unseen_data(prepared, unseen, tmp_path, params):
    pipeline, metadata, model = _served(prepared, tmp_path, "hist_gradient_boosting", params)
    scorer = compiled_scorer(model)
    assert scorer is not None
    expected = fraud_probability(pipeline, prepare_model_input(unseen, metadata.numeric_features,
                                                               metadata.categorical_features))
    got = scorer.score(unseen)
    assert got.dtype == np.float64 and len(got) == len(unseen) > 3000
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, np.asarray(model.predict(unseen[metadata.feature_columns])))
    assert 0.0 < got.min() < got.max() < 1.0 and (got > 0.5).sum() > 0  # not a constant


def test_a_forest_is_left_to_the_pyfunc(prepared, tmp_path):
    _, _, model = _served(prepared, tmp_path, "random_forest", {"n_estimators": 10})
    assert compiled_scorer(model) is None


def test_a_scorer_that_differs_anywhere_fails_its_check(prepared, unseen, tmp_path):
    pipeline, metadata, model = _served(prepared, tmp_path, "hist_gradient_boosting", {"max_iter": 30})
    scorer = CompiledScorer(pipeline, metadata.numeric_features, metadata.categorical_features)
    example = unseen[metadata.feature_columns].head(50)
    assert scorer.verify(example) is None
    scorer.baseline = np.nextafter(scorer.baseline, np.inf)  # one ulp off
    problem = scorer.verify(example)
    assert problem is not None and "differ" in problem
