"""Evaluation plots (matplotlib figures, Agg backend): ROC, PR, confusion matrix, calibration,
feature importance. Pure: each function takes arrays and returns a Figure; the caller logs it
(``mlflow.log_figure``) and closes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def _figure(width: float = 5.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def roc_curve_figure(y_true: Sequence, scores: Sequence, title: str = "ROC (test period)"):
    """ROC curve with its AUC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y_true, scores)
    fig, ax = _figure()
    ax.plot(fpr, tpr, label=f"AUC = {roc_auc_score(y_true, scores):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def precision_recall_figure(y_true: Sequence, scores: Sequence, threshold: float | None = None,
                            title: str = "Precision-recall (test period)"):
    """PR curve with its average precision, the base rate, and the operating point at the threshold."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    labels = np.asarray(y_true).astype(int)
    precision, recall, _ = precision_recall_curve(labels, scores)
    fig, ax = _figure()
    ax.plot(recall, precision, label=f"AP = {average_precision_score(labels, scores):.3f}")
    ax.axhline(labels.mean(), linestyle="--", color="grey", label=f"fraud rate {labels.mean():.4f}")
    if threshold is not None:
        flagged = np.asarray(scores) >= threshold
        tp = (flagged & (labels == 1)).sum()
        point_p = tp / flagged.sum() if flagged.sum() else 0.0
        ax.scatter([tp / max(labels.sum(), 1)], [point_p], color="red", zorder=3, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def confusion_matrix_figure(y_true: Sequence, scores: Sequence, threshold: float,
                            title: str = "Confusion matrix at the threshold"):
    """2x2 counts of genuine/fraud against not flagged/flagged."""
    labels = np.asarray(y_true).astype(int)
    flagged = (np.asarray(scores) >= threshold).astype(int)
    counts = np.array([[((labels == a) & (flagged == b)).sum() for b in (0, 1)] for a in (0, 1)])
    fig, ax = _figure(4.5, 4.0)
    ax.imshow(counts, cmap="Blues")
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, f"{value:,}", ha="center", va="center", color="black")
    ax.set_xticks([0, 1], ["not flagged", "flagged"])
    ax.set_yticks([0, 1], ["genuine", "fraud"])
    ax.set_title(f"{title} ({threshold:.3f})")
    fig.tight_layout()
    return fig


def calibration_figure(y_true: Sequence, scores: Sequence, bins: int = 10, title: str = "Calibration (test period)"):
    """Observed fraud rate against mean predicted P(fraud), quantile bins."""
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y_true, scores, n_bins=bins, strategy="quantile")
    fig, ax = _figure()
    ax.plot(predicted, observed, marker="o", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.set(xlabel="mean predicted P(fraud)", ylabel="observed fraud rate", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def feature_importance_figure(importances: Mapping[str, float], top: int = 25,
                              title: str = "Permutation importance (drop in AP, validation)"):
    """Horizontal bars of the ``top`` most important features."""
    series = pd.Series(importances, dtype="float64").sort_values().tail(top)
    fig, ax = _figure(6.0, max(3.0, 0.28 * len(series) + 1))
    ax.barh(series.index, series.to_numpy())
    ax.set(xlabel="importance", title=title)
    fig.tight_layout()
    return fig
