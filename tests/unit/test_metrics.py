"""Fraud metrics on hand-made rows with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.evaluation_metrics import (
    THRESHOLD_OBJECTIVE,
    card_precision_at_k,
    choose_threshold,
    evaluate_scored_rows,
    fraud_amount_caught,
    metrics_by_scenario,
    ranking_metrics,
    threshold_metrics,
)

pytestmark = pytest.mark.unit


def test_threshold_metrics_counts_flagged_at_or_above_threshold():
    m = threshold_metrics([1, 1, 0, 0, 1], [0.9, 0.5, 0.5, 0.1, 0.2], threshold=0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["alert_rate"] == pytest.approx(3 / 5)


def test_threshold_metrics_with_no_alert_gives_zero_precision_not_nan():
    m = threshold_metrics([1, 0], [0.1, 0.2], threshold=0.9)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_choose_threshold_maximizes_f1_on_a_separable_set():
    choice = choose_threshold([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.9])
    assert choice.objective == THRESHOLD_OBJECTIVE
    assert choice.f1 == 1.0 and choice.threshold == pytest.approx(0.8)


def test_choose_threshold_matches_the_best_f1_of_every_candidate():
    rng = np.random.default_rng(3)
    labels = rng.random(500) < 0.1
    scores = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1)
    choice = choose_threshold(labels, scores)
    best = max(threshold_metrics(labels, scores, t)["f1"] for t in np.unique(scores))
    assert choice.f1 == pytest.approx(best)
    assert threshold_metrics(labels, scores, choice.threshold)["f1"] == pytest.approx(best)


def test_choose_threshold_without_fraud_names_the_problem():
    with pytest.raises(ValueError, match="no fraud"):
        choose_threshold([0, 0], [0.1, 0.2])


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        ranking_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics([0, 1], [0.5, float("nan")])
    with pytest.raises(ValueError, match="0/1"):
        ranking_metrics([0, 2], [0.5, 0.1])
    with pytest.raises(ValueError, match="empty"):
        threshold_metrics([], [], 0.5)


def test_ranking_metrics_single_class_is_nan():
    m = ranking_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(m["auc_roc"]) and math.isnan(m["average_precision"])


def test_ranking_metrics_perfect_ranking():
    m = ranking_metrics([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8])
    assert m["auc_roc"] == 1.0 and m["average_precision"] == 1.0 and m["fraud_rate"] == 0.5


def _day_rows(day: str, cards: list[tuple[str, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"user_id": c, "transaction_time": f"{day}T12:00:00Z", "score": s, "label": y} for c, s, y in cards]
    )


def test_card_precision_counts_distinct_cards_per_day_and_divides_by_k():
    day1 = _day_rows("2024-01-01", [("a", 0.9, 1), ("a", 0.8, 1), ("b", 0.7, 0), ("c", 0.1, 1)])
    day2 = _day_rows("2024-01-02", [("a", 0.2, 0), ("b", 0.9, 1), ("c", 0.5, 0)])
    result = card_precision_at_k(pd.concat([day1, day2]), k=2)
    # day 1: top-2 cards a (fraud), b (genuine) -> 1/2; day 2: b (fraud), c -> 1/2
    assert result["card_precision_at_k"] == pytest.approx(0.5)
    # best possible: day 1 has 2 fraud cards (a, c) -> 2/2, day 2 has 1 -> 1/2
    assert result["card_precision_at_k_best"] == pytest.approx(0.75)
    assert result["days"] == 2


def test_card_precision_removes_cards_already_known_compromised():
    # day 1: card a is investigated and found fraudulent; on day 2 it is blocked, so it leaves the
    # ranking: the top-1 of day 2 is b (genuine) instead of a second hit on a
    day1 = _day_rows("2024-01-01", [("a", 0.9, 1), ("b", 0.1, 0)])
    day2 = _day_rows("2024-01-02", [("a", 0.95, 1), ("b", 0.5, 0)])
    rows = pd.concat([day1, day2])
    assert card_precision_at_k(rows, k=1)["card_precision_at_k"] == pytest.approx(0.5)
    assert card_precision_at_k(rows, k=1)["card_precision_at_k_best"] == pytest.approx(0.5)
    assert card_precision_at_k(rows, k=1, remove_known_compromised=False)["card_precision_at_k"] == 1.0


def test_card_precision_a_card_with_any_fraud_that_day_is_fraudulent():
    rows = _day_rows("2024-01-01", [("a", 0.1, 1), ("a", 0.95, 0), ("b", 0.5, 0)])
    assert card_precision_at_k(rows, k=1)["card_precision_at_k"] == 1.0


def test_fraud_amount_caught():
    m = fraud_amount_caught([100, 50, 10, 1000], [1, 1, 0, 0], [0.9, 0.1, 0.9, 0.95], threshold=0.5)
    assert m["fraud_amount_total"] == 150 and m["fraud_amount_caught"] == 100
    assert m["fraud_amount_caught_share"] == pytest.approx(2 / 3)


def _scored() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ["a", "b", "c", "d"],
        "transaction_time": pd.to_datetime(["2024-01-01T01:00Z"] * 2 + ["2024-01-02T01:00Z"] * 2),
        "score": [0.9, 0.2, 0.7, 0.1],
        "label": [1, 0, 1, 0],
        "amount": [10.0, 20.0, 30.0, 40.0],
        "fraud_scenario": ["card_testing", None, "account_takeover", None],
    })


def test_evaluate_scored_rows_reports_every_headline_metric():
    m = evaluate_scored_rows(_scored(), threshold=0.5)
    for key in ("auc_roc", "average_precision", "precision", "recall", "f1", "card_precision_at_100",
                "fraud_amount_caught", "fraud_amount_caught_share"):
        assert key in m
    assert m["auc_roc"] == 1.0 and m["recall"] == 1.0 and m["fraud_amount_caught"] == 40.0


def test_evaluate_scored_rows_names_missing_columns():
    with pytest.raises(KeyError, match="amount"):
        evaluate_scored_rows(_scored().drop(columns=["amount"]), threshold=0.5)


def test_metrics_by_scenario():
    per = metrics_by_scenario(_scored(), threshold=0.8)
    assert set(per) == {"card_testing", "account_takeover"}
    assert per["card_testing"]["recall"] == 1.0 and per["account_takeover"]["recall"] == 0.0
    assert metrics_by_scenario(_scored().drop(columns=["fraud_scenario"]), 0.5) == {}
