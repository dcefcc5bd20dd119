"""The promotion policy: validation floors and the champion comparison."""

from __future__ import annotations

import pytest

from pipelines.promotion_policy import (
    PRODUCTION,
    STAGING,
    MetricThreshold,
    PromotionPolicy,
    decide,
    validation_failures,
)

pytestmark = pytest.mark.unit

GOOD = {"auc_roc": 0.95, "average_precision": 0.6, "recall": 0.5, "precision": 0.6}


def test_no_champion_and_passing_validation_goes_to_production():
    decision = decide(GOOD, None)
    assert decision.stage == PRODUCTION and decision.passes_validation and decision.beats_champion is None


def test_failing_validation_goes_nowhere_and_says_why():
    weak = {**GOOD, "average_precision": 0.05}
    decision = decide(weak, None)
    assert decision.stage is None and not decision.passes_validation
    assert any("average_precision=0.0500 is below" in r for r in decision.reasons)


def test_missing_or_nan_metric_fails_validation():
    assert validation_failures({**GOOD, "auc_roc": float("nan")}) == ["auc_roc is missing"]
    assert "recall is missing" in validation_failures({k: v for k, v in GOOD.items() if k != "recall"})


def test_a_better_candidate_replaces_the_champion():
    champion = {**GOOD, "average_precision": 0.5}
    decision = decide(GOOD, champion)
    assert decision.stage == PRODUCTION and decision.beats_champion is True


def test_an_equal_or_worse_candidate_only_reaches_staging():
    assert decide(GOOD, GOOD).stage == STAGING
    worse = {**GOOD, "average_precision": 0.4}
    decision = decide(worse, GOOD)
    assert decision.stage == STAGING and decision.beats_champion is False
    assert "does not beat the champion" in decision.explain()


def test_a_guard_metric_regression_blocks_production_even_with_a_better_primary():
    candidate = {**GOOD, "average_precision": 0.7, "auc_roc": 0.90}
    decision = decide(candidate, GOOD)
    assert decision.stage == STAGING
    assert any("auc_roc" in r and "worse than champion" in r for r in decision.reasons)


def test_custom_policy_minimum_improvement():
    policy = PromotionPolicy(thresholds=(MetricThreshold("auc_roc", 0.5),), min_improvement=0.05)
    assert decide({**GOOD, "average_precision": 0.62}, GOOD, policy).stage == STAGING
    assert decide({**GOOD, "average_precision": 0.66}, GOOD, policy).stage == PRODUCTION
