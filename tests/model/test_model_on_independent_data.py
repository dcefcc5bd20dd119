"""The default model trained and evaluated on data it was not designed around.

simulator/independent.py generates card fraud with another process than simulator/generator.py
(compromised merchants and terminals, card bursts, card testing, messy delivery). The pipeline's
own steps (pipelines.train.prepare_data through a Parquet file, as ``-P data=...``; the time
split; fit; validation; test) must train on it without a crash and rank its fraud far above
chance on the later test period.
"""

from __future__ import annotations

import pytest

from pipelines.common import DEFAULT_MODEL_TYPE
from pipelines.compare_models import measure, prepared_dataset

pytestmark = pytest.mark.model  # no service needed; trains one model


def test_the_default_model_ranks_independent_fraud_far_above_chance():
    prepared = prepared_dataset("independent", days=24, size=800, seed=3)
    result = measure("test", "independent", prepared, DEFAULT_MODEL_TYPE, None)
    prevalence = result.test_frauds / result.test_rows
    assert result.test_frauds >= 10, result
    assert result.test_auc_roc >= 0.85, result
    assert result.test_average_precision >= 10 * prevalence, (prevalence, result)
