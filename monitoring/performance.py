"""Precision, recall and F1 of the scoring decisions on labelled rows (the monitoring view).

Training measures a model on a holdout (pipelines.evaluation_metrics); monitoring measures what
the stream actually decided (``transactions.is_fraud``, at the threshold of the version that
scored each row) against the labels that came back. Only labelled rows count: precision is
meaningful only when negatives are labelled too (analyst false positives, genuine labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_bool(values: Sequence, argument: str) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in array):
        raise ValueError(f"{argument} holds missing values; pass labelled, scored rows only")
    return array.astype(bool)


def decision_performance(decisions: Sequence, labels: Sequence) -> dict[str, float | None]:
    """Precision, recall and F1 of ``decisions`` (flagged or not) against ``labels`` (fraud or not).

    Returns:
        labelled_rows, labelled_frauds, flagged, true_positives, and precision / recall / f1
        (None when undefined: nothing flagged, no labelled fraud).

    Raises:
        ValueError: when the two sequences differ in length or hold missing values.
    """
    flagged, fraud = _as_bool(decisions, "decisions"), _as_bool(labels, "labels")
    if len(flagged) != len(fraud):
        raise ValueError(f"decisions ({len(flagged)}) and labels ({len(fraud)}) differ in length")
    tp = int((flagged & fraud).sum())
    n_flagged, n_fraud = int(flagged.sum()), int(fraud.sum())
    precision = tp / n_flagged if n_flagged else None
    recall = tp / n_fraud if n_fraud else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"labelled_rows": float(len(fraud)), "labelled_frauds": float(n_fraud), "flagged": float(n_flagged),
            "true_positives": float(tp), "precision": precision, "recall": recall, "f1": f1}
