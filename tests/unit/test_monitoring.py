"""Unit tests of the monitoring core: windows, decision performance, detect_drift on DataFrames."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import detect_drift, features_frame, split_feature_columns
from monitoring.performance import decision_performance
from monitoring.windows import parse_duration, parse_window

pytestmark = pytest.mark.unit


# --- windows ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [("24h", timedelta(hours=24)), ("30m", timedelta(minutes=30)),
                                            ("7d", timedelta(days=7)), ("1.5h", timedelta(minutes=90)),
                                            ("2w", timedelta(weeks=2)), ("90S", timedelta(seconds=90))])
def test_durations(text, expected):
    assert parse_duration(text) == expected
    assert parse_window(text).duration == expected


@pytest.mark.parametrize("text, rows", [("5000", 5000), ("5000.0", 5000), (" 12 ", 12)])
def test_row_count_windows_accept_mlflow_floats(text, rows):
    window = parse_window(text)
    assert window.rows == rows and window.duration is None


@pytest.mark.parametrize("text", ["", "abc", "-1h", "0", "0h", "12.5", "3y"])
def test_bad_windows_name_the_argument(text):
    with pytest.raises(ValueError, match=r"^window="):
        parse_window(text)


def test_bad_duration_names_its_argument():
    with pytest.raises(ValueError, match=r"^cooldown='soon'"):
        parse_duration("soon", "cooldown")


# --- decision performance -----------------------------------------------------------------------
def test_decision_performance_counts():
    perf = decision_performance([1, 1, 0, 0, 1], [True, False, True, False, True])
    assert perf["precision"] == pytest.approx(2 / 3)
    assert perf["recall"] == pytest.approx(2 / 3)
    assert perf["f1"] == pytest.approx(2 / 3)
    assert perf["labelled_rows"] == 5 and perf["labelled_frauds"] == 3 and perf["flagged"] == 3


def test_decision_performance_is_undefined_not_zero_without_flags_or_frauds():
    perf = decision_performance([0, 0], [0, 0])
    assert perf["precision"] is None and perf["recall"] is None and perf["f1"] is None
    assert decision_performance([], [])["labelled_rows"] == 0


def test_decision_performance_rejects_missing_labels():
    with pytest.raises(ValueError, match="labels holds missing"):
        decision_performance([1, 0], [1, None])
    with pytest.raises(ValueError, match="differ in length"):
        decision_performance([1, 0], [1])


# --- drift core ---------------------------------------------------------------------------------
def _frame(n: int, seed: int, amount_scale: float = 1.0, currency_p=(0.6, 0.3, 0.1)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "amount": rng.lognormal(4, 1, n) * amount_scale,
        "hour": rng.integers(0, 24, n),
        "is_night": rng.random(n) < 0.1,
        "cat_currency": rng.choice(["USD", "EUR", "GBP"], n, p=list(currency_p)),
        "score": rng.beta(1, 30, n),
        "transaction_id": [f"T{seed}_{i}" for i in range(n)],
    })


def test_same_distribution_does_not_drift():
    result = detect_drift(_frame(3000, 1), _frame(800, 2))
    assert not result.dataset_drift and result.drifted_columns == []
    assert [c.column for c in result.columns] == ["amount", "hour", "is_night", "cat_currency"]
    assert result.score_drift is not None and not result.score_drift.drifted
    assert result.reference_rows == 3000 and result.current_rows == 800


def test_shifted_amounts_and_currency_mix_drift():
    result = detect_drift(_frame(3000, 1), _frame(800, 2, amount_scale=5.0, currency_p=(0.1, 0.2, 0.7)))
    assert set(result.drifted_columns) == {"amount", "cat_currency"}
    assert result.drift_share == pytest.approx(0.5)
    assert result.dataset_drift
    metrics = result.metrics()
    assert metrics["dataset_drift"] == 1.0 and metrics["drifted_columns_count"] == 2.0
    assert metrics["drift_score_amount"] > 0.1


def test_the_share_threshold_decides_dataset_drift():
    shifted = _frame(800, 2, amount_scale=5.0)
    assert detect_drift(_frame(3000, 1), shifted, drift_share=0.5).dataset_drift is False
    assert detect_drift(_frame(3000, 1), shifted, drift_share=0.25).dataset_drift is True


def test_score_drift_needs_scores_on_both_sides():
    current = _frame(500, 2).assign(score=np.nan)
    assert detect_drift(_frame(2000, 1), current).score_drift is None


def test_inputs_are_not_modified_and_report_is_written(tmp_path):
    reference, current = _frame(1500, 1), _frame(400, 2)
    before = current.copy()
    result = detect_drift(reference, current)
    pd.testing.assert_frame_equal(current, before)
    path = result.save_html(tmp_path / "sub" / "drift.html")
    assert path.is_file() and path.stat().st_size > 10_000


def test_missing_feature_column_is_named():
    with pytest.raises(KeyError, match=r"current: .*\['cat_currency'\]"):
        detect_drift(_frame(500, 1), _frame(200, 2).drop(columns=["cat_currency"]))


@pytest.mark.parametrize("kwargs, message", [({"drift_share": 0}, "drift_share=0"),
                                             ({"drift_share": 1.5}, "drift_share=1.5"),
                                             ({"column_threshold": 0}, "column_threshold=0")])
def test_thresholds_out_of_range_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        detect_drift(_frame(100, 1), _frame(100, 2), **kwargs)


def test_empty_current_is_named():
    with pytest.raises(ValueError, match="current holds no rows"):
        detect_drift(_frame(100, 1), _frame(0, 2))


def test_features_frame_expands_json_and_dicts():
    rows = pd.DataFrame({"features": [{"amount": 1.0, "cat_currency": "USD"}, json.dumps({"amount": 2.0, "cat_currency": "EUR"})]},
                        index=[10, 11])
    frame = features_frame(rows)
    assert list(frame.index) == [10, 11] and frame["amount"].tolist() == [1.0, 2.0]


def test_split_feature_columns_follows_the_definition():
    numeric, categorical = split_feature_columns(["cat_channel", "amount", "score", "hour", "label"])
    assert numeric == ["amount", "hour"] and categorical == ["cat_channel"]
