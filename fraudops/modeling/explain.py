"""Reasons for an alert: the features that pushed its score up the most (exact Shapley values).

The streaming job calls :func:`alert_reasons` for the alerted rows only (scoring stays fast) and
stores the result with the alert (PostgreSQL ``fraud_alerts.reasons``, the Redis JSON, the
alerts topic): per row a list of ``{"name", "value", "contribution"}``, largest contribution
first, only features that raised the score.

How contributions are computed, on the logged pipeline (preprocessing inside):

* random forest and gradient boosting (sklearn trees on numeric splits): SHAP values from the
  ``shap`` package (``TreeExplainer``, path-dependent TreeSHAP), in the estimator's output units
  (probability for the forest, log-odds for gradient boosting).
* HistGradientBoosting: the same path-dependent TreeSHAP algorithm (Lundberg et al. 2018,
  Algorithm 2), implemented here because ``shap`` ignores HistGradientBoosting's native
  categorical splits (its values then do not add up to the model's output). Which child a row
  follows at each node is taken from the predictor's own rules (numeric threshold, categorical
  bitset, missing-value direction); contributions are in log-odds and add up exactly to
  ``decision_function`` (tests check both explainers against each other and that sum). The
  trees are flattened once per model (the explainer is cached per served pipeline) and all rows
  of a call go through every tree in ONE compiled call (``_treeshap.forest_shap``); the per-tree
  path (``shap_values_per_tree``) stays as the reference the tests compare it with.
* logistic regression: exact Shapley values of the linear part, ``w_j * (x_j - E[x_j])`` in
  log-odds, the one-hot columns of a categorical summed into that feature; ``E[x]`` is the
  training mean stored with the model (``extra["explain_baseline"]``), else 0 (the scaled
  numerics' training mean).

Values are the model's inputs (numbers, or strings for the categoricals); non-finite numbers
become None so the result is always strict JSON.

Importing this module has no side effects; numba compiles the TreeSHAP kernel on first use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_TOP_K = 5
BASELINE_KEY = "explain_baseline"
_CACHE_SIZE = 4
_explainers: dict[int, tuple[Any, Explainer]] = {}


@dataclass
class Explainer:
    """Contributions of the input features of one fitted pipeline.

    Attributes:
        pipeline: the fitted sklearn Pipeline (``preprocess`` then ``model``).
        numeric_features, categorical_features: the model's input columns.
        groups: for each transformed column, the index of the input feature it comes from.
        kind: ``shap_tree``, ``hgb_tree`` or ``linear``.
        output: units of the contributions (``probability`` or ``log_odds``).
    """

    pipeline: Any
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    groups: np.ndarray
    kind: str
    output: str
    baseline: np.ndarray | None = None
    _shap: Any = None
    _trees: Any = None

    @property
    def feature_columns(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features]

    def contributions(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, input features) contributions of the prepared model input ``frame``."""
        transformed = _dense(self.pipeline[:-1].transform(frame))
        if self.kind == "linear":
            per_column = self._linear(transformed)
        elif self.kind == "hgb_tree":
            per_column = self._trees.shap_values(transformed)
        else:
            per_column = self._shap_values(transformed)
        out = np.zeros((len(frame), len(self.feature_columns)))
        np.add.at(out.T, self.groups, per_column.T)
        return out

    def _linear(self, transformed: np.ndarray) -> np.ndarray:
        estimator = self.pipeline[-1]
        column = list(estimator.classes_).index(1)
        weights = estimator.coef_[0] if estimator.coef_.shape[0] == 1 else estimator.coef_[column]
        sign = -1.0 if estimator.coef_.shape[0] == 1 and column == 0 else 1.0
        baseline = self.baseline if self.baseline is not None else np.zeros(transformed.shape[1])
        return sign * weights * (transformed - baseline)

    def _shap_values(self, transformed: np.ndarray) -> np.ndarray:
        values = self._shap.shap_values(transformed, check_additivity=False)
        if isinstance(values, list):
            values = values[list(self.pipeline[-1].classes_).index(1)]
        values = np.asarray(values)
        if values.ndim == 3:
            values = values[:, :, list(self.pipeline[-1].classes_).index(1)]
        return values


def build_explainer(pipeline, numeric_features: Sequence[str], categorical_features: Sequence[str],
                    baseline: Sequence[float] | None = None) -> Explainer:
    """An :class:`Explainer` for a fitted pipeline of :func:`fraudops.modeling.model.build_pipeline`.

    Raises:
        TypeError: naming the estimator when it is not one of the supported kinds.
    """
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression

    estimator = pipeline[-1]
    names = list(pipeline[:-1].get_feature_names_out())
    groups = np.array([_input_feature(n, numeric_features, categorical_features) for n in names])
    common = {"pipeline": pipeline, "numeric_features": tuple(numeric_features),
              "categorical_features": tuple(categorical_features), "groups": groups}
    if isinstance(estimator, HistGradientBoostingClassifier):
        return Explainer(kind="hgb_tree", output="log_odds", _trees=HistGradientBoostingTreeShap(estimator), **common)
    if isinstance(estimator, RandomForestClassifier | GradientBoostingClassifier):
        import shap

        output = "probability" if isinstance(estimator, RandomForestClassifier) else "log_odds"
        return Explainer(kind="shap_tree", output=output, _shap=shap.TreeExplainer(estimator), **common)
    if isinstance(estimator, LogisticRegression):
        base = np.asarray(baseline, dtype="float64") if baseline is not None and len(baseline) == len(names) else None
        return Explainer(kind="linear", output="log_odds", baseline=base, **common)
    raise TypeError(f"no explainer for estimator {type(estimator).__name__}")


def _input_feature(name: str, numeric: Sequence[str], categorical: Sequence[str]) -> int:
    """Index (in numeric + categorical order) of the input feature a transformed column comes from."""
    columns = [*numeric, *categorical]
    if name in columns:
        return columns.index(name)
    prefixed = [c for c in categorical if name.startswith(f"{c}_")]
    if not prefixed:
        raise ValueError(f"transformed column {name!r} maps to no input feature")
    return columns.index(max(prefixed, key=len))


def linear_baseline(pipeline, model_input: pd.DataFrame) -> list[float]:
    """Training means of a logistic pipeline's transformed columns (store as ``extra["explain_baseline"]``)."""
    return _dense(pipeline[:-1].transform(model_input)).mean(axis=0).tolist()


def _dense(matrix) -> np.ndarray:
    """The preprocessor's output as a dense float array (one-hot columns may come out sparse)."""
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype="float64")


# --- the served model ---------------------------------------------------------------------------
def explainer_for(model) -> Explainer:
    """The (cached) :class:`Explainer` of a loaded pyfunc, a FraudModel or an :class:`Explainer`.

    ``model`` may be what ``mlflow.pyfunc.load_model`` returns for a model logged by
    :func:`fraudops.modeling.model.log_fraud_model`, its FraudModel, or an Explainer already.
    """
    if isinstance(model, Explainer):
        return model
    python_model = model.unwrap_python_model() if hasattr(model, "unwrap_python_model") else model
    pipeline, metadata = getattr(python_model, "pipeline", None), getattr(python_model, "metadata", None)
    if pipeline is None or metadata is None:
        raise TypeError(f"{type(model).__name__} is not a fraud-detector pyfunc (no pipeline and metadata)")
    cached = _explainers.get(id(pipeline))
    if cached is not None and cached[0] is pipeline:
        return cached[1]
    explainer = build_explainer(pipeline, metadata.numeric_features, metadata.categorical_features,
                                (metadata.extra or {}).get(BASELINE_KEY))
    if len(_explainers) >= _CACHE_SIZE:
        _explainers.pop(next(iter(_explainers)))
    _explainers[id(pipeline)] = (pipeline, explainer)
    return explainer


def alert_reasons(model, features: pd.DataFrame, top_k: int = DEFAULT_TOP_K) -> list[list[dict]]:
    """The top contributing features of each row of ``features`` (call it for alerted rows only).

    Args:
        model: the served pyfunc (``mlflow.pyfunc.load_model``), its FraudModel, or an Explainer.
        features: rows holding the model's feature columns (other columns are ignored).
        top_k: at most this many reasons per row.

    Returns:
        One list per row, in row order: ``{"name", "value", "contribution"}`` dicts for the
        features that raised the score, largest first (at least the largest one, even if no
        feature raised it). Empty input gives ``[]``.
    """
    from fraudops.modeling.model import prepare_model_input

    if len(features) == 0:
        return []
    explainer = explainer_for(model)
    frame = prepare_model_input(features, explainer.numeric_features, explainer.categorical_features)
    contributions = explainer.contributions(frame)
    names = explainer.feature_columns
    values = frame[names].to_numpy(dtype=object)
    return [_row_reasons(names, values[i], contributions[i], top_k) for i in range(len(frame))]


def alert_reasons_json(model, features: pd.DataFrame, alerted, top_k: int = DEFAULT_TOP_K) -> list[str | None]:
    """The stream's column: strict JSON reasons for the alerted rows, None for the others.

    An explanation never fails a micro-batch: if it raises, the alerts keep None (no reasons
    recorded) and the error is logged.

    Args:
        model: the served pyfunc.
        features: every row of the batch (feature columns).
        alerted: boolean mask (array-like) of the rows that raised an alert.
        top_k: reasons per alert.
    """
    import logging

    from fraudops.jsonutil import strict_dumps

    mask = np.asarray(alerted, dtype=bool)
    out: list[str | None] = [None] * len(features)
    if not mask.any():
        return out
    try:
        reasons = alert_reasons(model, features.loc[mask], top_k)
    except Exception:  # reasons are an aid: the alert itself must still be written (logged below)
        logging.getLogger(__name__).exception("no reasons for %d alert(s)", int(mask.sum()))
        return out
    for position, row_reasons in zip(np.flatnonzero(mask), reasons, strict=True):
        out[position] = strict_dumps(row_reasons, separators=(",", ":"))
    return out


def _row_reasons(names: Sequence[str], values: np.ndarray, contributions: np.ndarray, top_k: int) -> list[dict]:
    order = np.argsort(-contributions, kind="stable")[: max(1, top_k)]
    chosen = [i for i in order if contributions[i] > 0] or list(order[:1])
    return [{"name": names[i], "value": _plain(values[i]), "contribution": _plain(contributions[i])} for i in chosen]


def _plain(value):
    if isinstance(value, str) or value is None:
        return value
    number = float(value)
    return round(number, 6) if math.isfinite(number) else None


# --- TreeSHAP for HistGradientBoosting ----------------------------------------------------------
class HistGradientBoostingTreeShap:
    """Path-dependent TreeSHAP of a binary HistGradientBoostingClassifier (log-odds of class 1).

    ``shap_values(X)`` takes the transformed (preprocessed) matrix and returns (rows, columns);
    with ``expected_value`` the rows add up to ``estimator.decision_function(X)``.
    """

    def __init__(self, estimator):
        if estimator.n_trees_per_iteration_ != 1:
            raise ValueError("only binary HistGradientBoostingClassifier models are supported")
        self.predictors = [iteration[0] for iteration in estimator._predictors]
        self.n_features = int(estimator.n_features_in_)
        self.sign = 1.0 if list(estimator.classes_).index(1) == 1 else -1.0
        baseline = float(np.ravel(estimator._baseline_prediction)[0])
        self.expected_value = self.sign * (baseline + sum(_tree_expectation(p.nodes) for p in self.predictors))
        self.max_depth = max(int(p.nodes["depth"].max()) for p in self.predictors)
        self.known_bitsets, self.f_idx_map = _known_categories(estimator, self.n_features)
        self._forest = _flat_forest(self.predictors, self.f_idx_map)

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """(rows, columns) contributions: every tree and row in one compiled call."""
        from fraudops.modeling import _treeshap

        X = np.ascontiguousarray(X, dtype="float64")
        phi = np.zeros((len(X), self.n_features))
        if len(X):
            _treeshap.forest_shap(X, *self._forest, self.known_bitsets, self.max_depth + 3, phi)
        return self.sign * phi

    def shap_values_per_tree(self, X: np.ndarray) -> np.ndarray:
        """The reference path (one compiled call per tree and row, hot children by numpy): same values."""
        kernel = _numba_kernel()
        X = np.ascontiguousarray(X, dtype="float64")
        phi = np.zeros((len(X), self.n_features))
        size = self.max_depth + 3
        for predictor in self.predictors:
            nodes = predictor.nodes
            hot = _hot_children(predictor, X, self.known_bitsets, self.f_idx_map)
            leaf = nodes["is_leaf"].astype(np.bool_)
            arrays = (nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), leaf,
                      nodes["feature_idx"].astype(np.int64), nodes["count"].astype(np.float64),
                      nodes["value"].astype(np.float64))
            for row in range(len(X)):
                kernel(*arrays, hot[row], phi[row], size)
        return self.sign * phi


def _known_categories(estimator, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The training categories per categorical column (bitset rows) and column -> row (-1: numeric)."""
    f_idx_map = np.full(n_features, -1, dtype=np.int64)
    is_categorical = getattr(estimator, "is_categorical_", None)
    if is_categorical is None or not np.any(is_categorical):
        return np.zeros((1, 8), dtype=np.uint32), f_idx_map
    known, mapping = estimator._bin_mapper.make_known_categories_bitsets()
    categorical = np.flatnonzero(is_categorical)
    f_idx_map[categorical] = np.asarray(mapping, dtype=np.int64)[categorical]
    return np.ascontiguousarray(known, dtype=np.uint32), f_idx_map


def _flat_forest(predictors, f_idx_map: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every tree's node arrays back to back (built once per model; see ``_treeshap.forest_shap``)."""
    nodes = [p.nodes for p in predictors]
    sizes = np.array([len(n) for n in nodes], dtype=np.int64)
    tree_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    bitsets = [np.asarray(p.raw_left_cat_bitsets, dtype=np.uint32).reshape(-1, 8) for p in predictors]
    bitset_start = np.concatenate([[0], np.cumsum([len(b) for b in bitsets])]).astype(np.int64)
    raw_bitsets = np.concatenate([*bitsets, np.zeros((1, 8), dtype=np.uint32)])

    def column(name, dtype):
        return np.ascontiguousarray(np.concatenate([n[name] for n in nodes]).astype(dtype))

    feature = column("feature_idx", np.int64)
    categorical = column("is_categorical", np.bool_)
    bitset_row = np.concatenate([n["bitset_idx"].astype(np.int64) + bitset_start[t] for t, n in enumerate(nodes)])
    known_row = np.where(categorical, f_idx_map[feature], -1).astype(np.int64)
    return (tree_start, column("left", np.int64), column("right", np.int64), column("is_leaf", np.bool_), feature,
            column("count", np.float64), column("value", np.float64), column("num_threshold", np.float64),
            categorical, column("missing_go_to_left", np.bool_), np.ascontiguousarray(bitset_row),
            np.ascontiguousarray(known_row), np.ascontiguousarray(raw_bitsets))


def _tree_expectation(nodes) -> float:
    leaves = nodes["is_leaf"].astype(bool)
    counts = nodes["count"][leaves].astype("float64")
    return float((nodes["value"][leaves] * counts).sum() / counts.sum())


def _hot_children(predictor, X: np.ndarray, known_bitsets: np.ndarray | None = None,
                  f_idx_map: np.ndarray | None = None) -> np.ndarray:
    """(rows, nodes): the child each row follows at each node, by the predictor's own rules.

    With ``known_bitsets``/``f_idx_map`` (see :func:`_known_categories`), a categorical value that
    is not a training category is missing, as in the predictor.
    """
    nodes = predictor.nodes
    values = X[:, nodes["feature_idx"]]
    missing = np.isnan(values)
    goes_left = values <= nodes["num_threshold"]
    categorical = nodes["is_categorical"].astype(bool)
    if categorical.any():
        bitsets = np.asarray(predictor.raw_left_cat_bitsets)[nodes["bitset_idx"]]  # (nodes, words)
        out_of_range = missing | (values < 0) | (values >= 32 * bitsets.shape[1])
        codes = np.where(out_of_range, 0, values).astype(np.int64)
        words = np.take_along_axis(np.broadcast_to(bitsets, (len(X), *bitsets.shape)),
                                   (codes // 32)[:, :, None], axis=2)[:, :, 0]
        in_set = ((words >> (codes % 32).astype(np.uint32)) & 1).astype(bool) & ~out_of_range
        unknown = out_of_range
        if known_bitsets is not None and f_idx_map is not None:
            rows = np.where(categorical, f_idx_map[nodes["feature_idx"]], 0).clip(0)
            known = np.take_along_axis(np.broadcast_to(known_bitsets[rows], (len(X), len(rows), known_bitsets.shape[1])),
                                       (codes // 32)[:, :, None], axis=2)[:, :, 0]
            unknown = unknown | ~(((known >> (codes % 32).astype(np.uint32)) & 1).astype(bool) | in_set)
        missing = missing | (categorical & unknown)
        goes_left = np.where(categorical, in_set, goes_left)
    goes_left = np.where(missing, nodes["missing_go_to_left"].astype(bool), goes_left)
    return np.where(goes_left, nodes["left"], nodes["right"]).astype(np.int64)


_kernel = None


def _numba_kernel():
    """The compiled TreeSHAP recursion (built once per process; cached on disk by numba)."""
    global _kernel
    if _kernel is None:
        from fraudops.modeling import _treeshap

        _kernel = _treeshap.tree_shap
    return _kernel
