"""Data drift and score drift of recent scored transactions against a model's training reference.

The core is :func:`detect_drift`, a plain function on two DataFrames: an Evidently 0.7 Report with
a DataDriftPreset over the feature columns (numeric: normed Wasserstein distance, categorical:
Jensen-Shannon distance, each drifted when its distance reaches ``column_threshold``) plus a
ValueDrift of the fraud score. The dataset has drifted when the share of drifted feature columns
reaches ``drift_share`` (Evidently's DriftedColumnsCount share against its drift_share; there is
no separate "dataset_drift" flag in 0.7).

Why these defaults: distances, unlike p-values, do not flag tiny differences in large samples, and
fixing the methods keeps the verdict independent of the sample sizes (Evidently would otherwise
switch to KS / chi-squared below 1000 reference rows). A drift share of 0.3 separates an unshifted
later period (0.06-0.16 of the 31 columns drift: the cumulative merchant label counts always grow,
and 30-day windows fill up) from a currency-mix change (0.48) or a fraud wave (0.61) in the
simulator (measured on generate_history(50 days, 300 customers)).

pipelines/drift.py reads the rows from PostgreSQL and the reference from the registry, and logs
the result; see there for the command.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_DRIFT_SHARE = 0.3
DEFAULT_COLUMN_THRESHOLD = 0.1
NUMERIC_METHOD = "wasserstein"
CATEGORICAL_METHOD = "jensenshannon"
SCORE_COLUMN = "score"


@dataclass(frozen=True)
class ColumnDrift:
    """Drift of one column: Evidently's distance, the threshold and its verdict."""

    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """What :func:`detect_drift` found.

    Attributes:
        drift_share: share of the feature columns that drifted.
        drift_share_threshold: the share at which the dataset counts as drifted.
        dataset_drift: ``drift_share >= drift_share_threshold``.
        columns: per feature column verdicts, in feature order.
        score_drift: the fraud score's verdict (None when a side has no scores).
        reference_rows, current_rows: sample sizes.
        snapshot: the Evidently Snapshot (HTML via :meth:`save_html`).
    """

    drift_share: float
    drift_share_threshold: float
    dataset_drift: bool
    columns: tuple[ColumnDrift, ...]
    score_drift: ColumnDrift | None
    reference_rows: int
    current_rows: int
    snapshot: Any = field(default=None, repr=False, compare=False)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def metrics(self) -> dict[str, float]:
        """Flat numeric metrics (for MLflow): share, counts, verdicts and each column's distance."""
        values = {
            "drift_share": self.drift_share,
            "drifted_columns_count": float(len(self.drifted_columns)),
            "dataset_drift": float(self.dataset_drift),
            "reference_rows": float(self.reference_rows),
            "current_rows": float(self.current_rows),
        }
        if self.score_drift is not None:
            values["score_drift_score"] = self.score_drift.score
            values["score_drift_detected"] = float(self.score_drift.drifted)
        values.update({f"drift_score_{c.column}": c.score for c in self.columns})
        return values

    def save_html(self, path: str | Path) -> Path:
        """Write the Evidently HTML report to ``path`` (parent folders created)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.snapshot.save_html(str(target))
        return target


def split_feature_columns(columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns among ``columns``, in features.definition order."""
    from features.definition import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    present = set(columns)
    return [c for c in NUMERIC_FEATURES if c in present], [c for c in CATEGORICAL_FEATURES if c in present]


def features_frame(rows: pd.DataFrame, column: str = "features") -> pd.DataFrame:
    """Expand the JSONB feature vectors of scored rows into one column per feature (same index)."""
    if column not in rows.columns:
        raise KeyError(f"scored rows lack the {column!r} column")
    vectors = [json.loads(v) if isinstance(v, str) else (v or {}) for v in rows[column]]
    return pd.DataFrame.from_records(vectors, index=rows.index)


def _model_frame(frame: pd.DataFrame, numeric: list[str], categorical: list[str], name: str,
                 score_column: str) -> pd.DataFrame:
    from fraudops.modeling.model import prepare_model_input

    if frame.empty:
        raise ValueError(f"{name} holds no rows")
    try:
        out = prepare_model_input(frame, numeric, categorical)
    except KeyError as exc:
        raise KeyError(f"{name}: {exc.args[0]}") from None
    if score_column in frame.columns:
        out[score_column] = pd.to_numeric(frame[score_column], errors="coerce").astype("float64").to_numpy()
    return out


def _has_scores(frame: pd.DataFrame, score_column: str) -> bool:
    return score_column in frame.columns and frame[score_column].notna().any()


def _status(test: dict) -> str:
    status = test.get("status")
    return str(getattr(status, "value", status)).upper()


def _parse_snapshot(snapshot) -> tuple[float, dict[str, ColumnDrift]]:
    """(share of drifted columns, per column verdicts) from an Evidently snapshot."""
    document = snapshot.dict()
    verdicts = {
        t["metric_config"]["params"]["column"]: _status(t) == "FAIL"
        for t in document["tests"]
        if t.get("id") == "drift" and "column" in t["metric_config"]["params"]
    }
    share, columns = None, {}
    for metric in document["metrics"]:
        kind = metric["config"]["type"]
        if kind.endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith("ValueDrift"):
            name = metric["config"]["column"]
            columns[name] = ColumnDrift(name, str(metric["config"]["method"]), float(metric["value"]),
                                        float(metric["config"]["threshold"]), verdicts[name])
    if share is None:
        raise RuntimeError("the Evidently report holds no DriftedColumnsCount metric")
    return share, columns


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric_features: Sequence[str] | None = None,
    categorical_features: Sequence[str] | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    column_threshold: float = DEFAULT_COLUMN_THRESHOLD,
    score_column: str = SCORE_COLUMN,
) -> DriftResult:
    """Compare the feature (and score) distributions of ``current`` with ``reference``.

    Args:
        reference: training sample (feature columns, optionally ``score_column``). Not modified.
        current: recent rows (same columns; categoricals as strings). Not modified.
        numeric_features, categorical_features: the columns to compare (default: every feature of
            features.definition present in ``reference``).
        drift_share: share of drifted columns at which the dataset counts as drifted, in (0, 1].
        column_threshold: distance at which one column counts as drifted (> 0).
        score_column: the fraud score column; compared when both frames hold scores.

    Raises:
        ValueError: an empty frame or a threshold out of range (named); KeyError: missing columns.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share={drift_share} must be in (0, 1]")
    if column_threshold <= 0:
        raise ValueError(f"column_threshold={column_threshold} must be > 0")
    if numeric_features is None and categorical_features is None:
        numeric_features, categorical_features = split_feature_columns(reference.columns)
    numeric, categorical = list(numeric_features or []), list(categorical_features or [])
    if not numeric + categorical:
        raise ValueError("no feature columns to compare (reference holds none of features.definition)")
    ref = _model_frame(reference, numeric, categorical, "reference", score_column)
    cur = _model_frame(current, numeric, categorical, "current", score_column)
    with_score = _has_scores(ref, score_column) and _has_scores(cur, score_column)
    metrics: list = [DataDriftPreset(columns=numeric + categorical, drift_share=drift_share, num_method=NUMERIC_METHOD,
                                     cat_method=CATEGORICAL_METHOD, threshold=column_threshold)]
    if with_score:
        metrics.append(ValueDrift(column=score_column, method=NUMERIC_METHOD, threshold=column_threshold))
    definition = DataDefinition(numerical_columns=numeric + ([score_column] if with_score else []),
                                categorical_columns=categorical)
    keep = numeric + categorical + ([score_column] if with_score else [])
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(cur[keep], data_definition=definition),
        Dataset.from_pandas(ref[keep], data_definition=definition),
    )
    share, by_column = _parse_snapshot(snapshot)
    return DriftResult(
        drift_share=share,
        drift_share_threshold=drift_share,
        dataset_drift=share >= drift_share,
        columns=tuple(by_column[c] for c in numeric + categorical),
        score_drift=by_column.get(score_column) if with_score else None,
        reference_rows=len(ref),
        current_rows=len(cur),
        snapshot=snapshot,
    )
