"""Fraud metrics, written once: ranking quality, decisions at a threshold, CP@k, amount caught.

Pure functions over arrays and DataFrames (no MLflow, no Spark). Used by train, tune, evaluate
and promote, so every number in a report is computed the same way.

Threshold objective (documented, used by train): the threshold maximizes F1 on the validation
period (:data:`THRESHOLD_OBJECTIVE`); ties go to the higher threshold (fewer alerts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

THRESHOLD_OBJECTIVE = "max_f1_on_validation"
CARD_PRECISION_K = 100


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen decision threshold and its validation precision/recall/F1."""

    threshold: float
    objective: str
    precision: float
    recall: float
    f1: float


def _as_labels(y_true: Sequence) -> np.ndarray:
    labels = np.asarray(y_true)
    if labels.size and not np.isin(labels, [0, 1, True, False]).all():
        raise ValueError("labels must be 0/1 (is_fraud)")
    return labels.astype(int)


def _check_lengths(y_true: np.ndarray, scores: np.ndarray) -> None:
    if len(y_true) != len(scores):
        raise ValueError(f"labels ({len(y_true)}) and scores ({len(scores)}) differ in length")
    if len(y_true) == 0:
        raise ValueError("no rows to evaluate (empty period?)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")


def choose_threshold(y_true: Sequence, scores: Sequence, objective: str = THRESHOLD_OBJECTIVE) -> ThresholdChoice:
    """The score threshold that maximizes F1 (flag when score >= threshold).

    Args:
        y_true: 0/1 labels of the validation rows.
        scores: P(fraud) of the same rows.
        objective: only ``max_f1_on_validation`` is implemented (the name is recorded).

    Raises:
        ValueError: when the validation rows hold no fraud (nothing to choose a threshold on).
    """
    from sklearn.metrics import precision_recall_curve

    if objective != THRESHOLD_OBJECTIVE:
        raise ValueError(f"objective={objective!r} is not supported (use {THRESHOLD_OBJECTIVE!r})")
    labels, values = _as_labels(y_true), np.asarray(scores, dtype="float64")
    _check_lengths(labels, values)
    if labels.sum() == 0:
        raise ValueError("validation period holds no fraud: cannot choose a decision threshold")
    precision, recall, thresholds = precision_recall_curve(labels, values)
    precision, recall = precision[:-1], recall[:-1]
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    return ThresholdChoice(float(thresholds[best]), objective, float(precision[best]), float(recall[best]),
                           float(f1[best]))


DECLINE_MIN_PRECISION = 0.9  # a decline stops a payment: only where validation precision reaches this


def choose_decline_threshold(y_true: Sequence, scores: Sequence, review_threshold: float,
                             min_precision: float = DECLINE_MIN_PRECISION) -> float:
    """The score at or above which the decision service declines: the lowest threshold, not
    below ``review_threshold``, whose validation precision is at least ``min_precision``
    (recall as high as that precision allows). When no threshold reaches it, the highest
    validation score of a fraud plus a hair: almost nothing is declined, everything above the
    review threshold goes to review.
    """
    from sklearn.metrics import precision_recall_curve

    labels, values = _as_labels(y_true), np.asarray(scores, dtype="float64")
    _check_lengths(labels, values)
    precision, _, thresholds = precision_recall_curve(labels, values)
    ok = (precision[:-1] >= min_precision) & (thresholds >= review_threshold)
    if ok.any():
        return float(thresholds[np.flatnonzero(ok)[0]])
    return float(np.nextafter(max(values.max(), review_threshold), np.inf))


def ranking_metrics(y_true: Sequence, scores: Sequence) -> dict[str, float]:
    """AUC ROC and average precision (NaN when the rows hold a single class), plus the fraud rate."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels, values = _as_labels(y_true), np.asarray(scores, dtype="float64")
    _check_lengths(labels, values)
    both_classes = 0 < labels.sum() < len(labels)
    return {
        "auc_roc": float(roc_auc_score(labels, values)) if both_classes else float("nan"),
        "average_precision": float(average_precision_score(labels, values)) if both_classes else float("nan"),
        "fraud_rate": float(labels.mean()),
        "rows": float(len(labels)),
    }


def threshold_metrics(y_true: Sequence, scores: Sequence, threshold: float) -> dict[str, float]:
    """Precision, recall, F1, alert rate and confusion counts when flagging score >= threshold."""
    labels, values = _as_labels(y_true), np.asarray(scores, dtype="float64")
    _check_lengths(labels, values)
    flagged = values >= threshold
    tp = int((flagged & (labels == 1)).sum())
    fp = int((flagged & (labels == 0)).sum())
    fn = int((~flagged & (labels == 1)).sum())
    tn = int((~flagged & (labels == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1,
        "alert_rate": float(flagged.mean()), "tp": float(tp), "fp": float(fp), "fn": float(fn), "tn": float(tn),
    }


def card_precision_at_k(frame: pd.DataFrame, k: int = CARD_PRECISION_K, card_col: str = "user_id",
                        time_col: str = "transaction_time", score_col: str = "score",
                        label_col: str = "label", remove_known_compromised: bool = True) -> dict[str, float]:
    """Card Precision@k per day, averaged over days (the card-level protocol of the Fraud
    Detection Handbook, Le Borgne et al.).

    Each day, a card (user) scores its highest transaction score of that day and is fraudulent
    when any of its transactions that day is fraud; the k best-scored cards are "investigated"
    and the day's CP@k is the number of fraudulent cards among them divided by k. Cards already
    known as compromised (found fraudulent by an investigation of an earlier day) are blocked:
    they leave the ranking of the following days (``remove_known_compromised``).

    Returns:
        ``card_precision_at_k`` (mean over days), ``card_precision_at_k_best`` (the best any
        ranking could reach: mean over days of min(fraud cards still in the ranking, k) / k), and
        ``days``.
    """
    _require_columns(frame, [card_col, time_col, score_col, label_col])
    if frame.empty:
        raise ValueError("no rows to evaluate (empty period?)")
    day = pd.to_datetime(frame[time_col], utc=True).dt.floor("D")
    cards = (
        pd.DataFrame({"day": day, "card": frame[card_col].astype(str).to_numpy(),
                      "score": frame[score_col].to_numpy(), "label": frame[label_col].astype(int).to_numpy()})
        .groupby(["day", "card"], sort=False)
        .agg(score=("score", "max"), label=("label", "max"))
        .reset_index()
    )
    known: set[str] = set()
    precision, best = [], []
    for _, day_cards in cards.sort_values("day", kind="mergesort").groupby("day", sort=True):
        candidates = day_cards[~day_cards["card"].isin(known)]
        top = candidates.sort_values("score", ascending=False, kind="mergesort").head(k)
        precision.append(float(top["label"].sum()) / k)
        best.append(min(int(candidates["label"].sum()), k) / k)
        if remove_known_compromised:
            known.update(top.loc[top["label"] == 1, "card"])
    return {
        "card_precision_at_k": float(np.mean(precision)),
        "card_precision_at_k_best": float(np.mean(best)),
        "days": float(len(precision)),
    }


def fraud_amount_caught(amounts: Sequence, y_true: Sequence, scores: Sequence, threshold: float) -> dict[str, float]:
    """Fraud amount flagged at the threshold, the total fraud amount, and the caught share."""
    values = np.asarray(amounts, dtype="float64")
    labels, score_values = _as_labels(y_true), np.asarray(scores, dtype="float64")
    _check_lengths(labels, score_values)
    fraud = labels == 1
    total = float(values[fraud].sum())
    caught = float(values[fraud & (score_values >= threshold)].sum())
    return {"fraud_amount_total": total, "fraud_amount_caught": caught,
            "fraud_amount_caught_share": caught / total if total else float("nan")}


def evaluate_scored_rows(scored: pd.DataFrame, threshold: float, k: int = CARD_PRECISION_K) -> dict[str, float]:
    """Every headline metric of a scored period.

    Args:
        scored: rows with ``score``, ``label``, ``amount``, ``user_id``, ``transaction_time``.
        threshold: the model version's decision threshold.
        k: cards investigated per day for CP@k.

    Returns:
        Flat dict: auc_roc, average_precision, precision, recall, f1, alert_rate, confusion
        counts, card_precision_at_100 (+ _best), fraud_amount_caught (+ _total, _share), rows, fraud_rate.
    """
    _require_columns(scored, ["score", "label", "amount", "user_id", "transaction_time"])
    metrics = ranking_metrics(scored["label"], scored["score"])
    metrics.update(threshold_metrics(scored["label"], scored["score"], threshold))
    cp = card_precision_at_k(scored, k=k)
    metrics[f"card_precision_at_{k}"] = cp["card_precision_at_k"]
    metrics[f"card_precision_at_{k}_best"] = cp["card_precision_at_k_best"]
    metrics.update(fraud_amount_caught(scored["amount"], scored["label"], scored["score"], threshold))
    return metrics


def metrics_by_scenario(scored: pd.DataFrame, threshold: float, scenario_col: str = "fraud_scenario") -> dict[str, dict[str, float]]:
    """Recall, amount caught and mean score of each fraud scenario (empty when the column is absent)."""
    if scenario_col not in scored.columns:
        return {}
    fraud = scored[scored["label"].astype(int) == 1]
    result: dict[str, dict[str, float]] = {}
    for scenario, rows in fraud.groupby(fraud[scenario_col].fillna("unknown").astype(str)):
        flagged = rows["score"] >= threshold
        total = float(rows["amount"].sum())
        result[scenario] = {
            "frauds": float(len(rows)),
            "recall": float(flagged.mean()),
            "mean_score": float(rows["score"].mean()),
            "fraud_amount_caught_share": float(rows.loc[flagged, "amount"].sum() / total) if total else float("nan"),
        }
    return result


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"scored rows lack columns {missing}")


def as_dict(choice: ThresholdChoice) -> dict[str, Any]:
    """A ThresholdChoice as a plain dict (for JSON reports)."""
    return asdict(choice)
