"""The live champion/challenger comparison and the live promotion decision (pure functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.challenger import LiveComparison, figure_table, label_shortfall, live_figures
from pipelines.promote import live_decision

pytestmark = pytest.mark.unit


def frame() -> pd.DataFrame:
    # 8 labelled transactions, 3 frauds; the challenger ranks them perfectly, the champion does not
    label = [1, 1, 1, 0, 0, 0, 0, 0]
    champion = [0.9, 0.2, 0.1, 0.8, 0.3, 0.05, 0.4, 0.01]
    challenger = [0.95, 0.9, 0.85, 0.3, 0.2, 0.1, 0.15, 0.05]
    return pd.DataFrame({"label": label, "champion_score": champion, "champion_alert": np.array(champion) >= 0.5,
                         "challenger_score": challenger, "challenger_alert": np.array(challenger) >= 0.5})


def test_live_figures_on_the_same_labels():
    figures = live_figures(frame())
    assert (figures["labels"], figures["positives"], figures["alert_volume"]) == (8, 3, 2)
    champ, chall = figures["champion"], figures["challenger"]
    assert chall["average_precision"] == pytest.approx(1.0)
    assert chall["auc_roc"] == pytest.approx(1.0)
    assert champ["average_precision"] < chall["average_precision"]
    # at the champion's alert volume (2): champion top-2 = {0.9 fraud, 0.8 legit}; challenger 2 frauds
    assert (champ["precision_at_volume"], champ["recall_at_volume"]) == (0.5, pytest.approx(1 / 3))
    assert (chall["precision_at_volume"], chall["recall_at_volume"]) == (1.0, pytest.approx(2 / 3))
    # own thresholds: champion alerts {0, 3}, challenger {0, 1, 2}: both = 1, union = 4
    assert figures["overlap"] == {"champion_alerts": 2, "challenger_alerts": 3, "both": 1, "jaccard": 0.25}


def test_live_figures_without_frauds_are_undefined_not_zero():
    data = frame().assign(label=0)
    figures = live_figures(data)
    assert figures["champion"]["average_precision"] is None
    assert figures["challenger"]["auc_roc"] is None
    assert figures["challenger"]["recall_at_volume"] is None


def comparison(labels: int, champion_ap: float, challenger_ap: float) -> LiveComparison:
    figures = {"average_precision": champion_ap, "auc_roc": 0.9, "precision_at_volume": 0.5, "recall_at_volume": 0.5}
    return LiveComparison("m", "1", "2", labels, 10, 5, figures, {**figures, "average_precision": challenger_ap},
                          {"jaccard": 0.5})


def test_live_decision():
    assert live_decision(comparison(1000, 0.30, 0.40), 500, 0.05)[0] == "promote"
    decision, reasons = live_decision(comparison(1000, 0.30, 0.33), 500, 0.05)
    assert decision == "archive"
    assert "margin +0.0300" in reasons[1]
    assert live_decision(comparison(100, 0.30, 0.90), 500, 0.05)[0] == "wait"
    with pytest.raises(ValueError, match="live metric"):
        live_decision(comparison(1000, 0.3, 0.4), 500, 0.0, metric="f1")


def test_label_shortfall_names_the_counts_until_the_labels_can_decide():
    assert label_shortfall(comparison(100, 0.3, 0.4), 500) == \
        "100 live labels (10 fraud); needs at least 500 with a fraud among them"
    assert label_shortfall(comparison(600, 0.3, 0.4), 500) is None
    no_fraud = LiveComparison("m", "1", "2", 600, 0, 0, {}, {}, {})
    assert "0 fraud" in label_shortfall(no_fraud, 500)


def test_figure_table_has_each_figure_with_the_labels_behind_it():
    live = LiveComparison("m", "1", "2", **live_figures(frame()))
    rows = {row["metric"]: row for row in figure_table(live)}
    assert list(rows) == ["average_precision", "auc_roc", "precision_at_volume", "recall_at_volume"]
    assert rows["precision_at_volume"]["champion"] == 0.5 and rows["precision_at_volume"]["challenger"] == 1.0
    assert rows["precision_at_volume"]["difference"] == 0.5
    assert rows["auc_roc"]["behind"] == "8 labels (3 fraud, 5 legitimate)"
    assert rows["precision_at_volume"]["behind"] == "top 2 scores of 8 labels"
    undefined = figure_table(LiveComparison("m", "1", "2", **live_figures(frame().assign(label=0))))
    assert undefined[0]["champion"] is None and undefined[0]["difference"] is None
