"""The served pipeline compiled for one-request latency: the same P(fraud), bit for bit.

The pyfunc (fraudops.modeling.model.FraudModel) scores through mlflow's schema enforcement, a
pandas copy of the input (prepare_model_input), the ColumnTransformer and sklearn's per-tree
loop: ~20 ms for ONE row, the same for 64. The decision service answers one transaction at a
time, so that fixed cost is its latency. :func:`compiled_scorer` turns a HistGradientBoosting
pipeline (the default model) into:

* per categorical column, a dict from each training category to the code the fitted
  OrdinalEncoder gives it (built by calling that encoder on the categories themselves, so
  infrequent grouping and every other encoder rule are the encoder's own); any other value gets
  the encoder's unknown_value;
* the forest flattened once (the TreeSHAP explainer's layout) and walked by one numba call per
  batch (fraudops.modeling._forest), summed in sklearn's order, then sklearn's own link
  function (``estimator._loss.predict_proba``).

It is used only after :meth:`CompiledScorer.verify` found it EQUAL (==, not close) to the
pipeline's ``predict_proba[:, 1]`` on the model's input example and on rows built to reach
unknown categories, missing values and every split threshold; any other pipeline (random forest,
logistic ...) or any difference gives None, and callers keep the pyfunc.

Use:
    scorer = compiled_scorer(pyfunc_model)            # None: score with the pyfunc
    p_fraud = scorer.score(featured_frame)             # float64, one per row
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from fraudops.modeling.model import MISSING_CATEGORY, prepare_model_input

log = logging.getLogger(__name__)
_NEVER_A_CATEGORY = "\x00not-a-training-category"


class CompiledScorer:
    """P(fraud) of feature rows for one fitted HistGradientBoosting pipeline (see the module)."""

    def __init__(self, pipeline, numeric_features, categorical_features):
        from fraudops.modeling.explain import _flat_forest, _known_categories

        self.pipeline = pipeline
        self.numeric_features = tuple(numeric_features)
        self.categorical_features = tuple(categorical_features)
        estimator = pipeline[-1]
        self.fraud_column = list(estimator.classes_).index(1)
        self.codes, self.unknown_code = _category_codes(pipeline[0].named_transformers_["categorical"],
                                                        self.categorical_features)
        self.baseline = float(np.ravel(estimator._baseline_prediction)[0])
        known_bitsets, f_idx_map = _known_categories(estimator, int(estimator.n_features_in_))
        self._forest = _flat_forest([iteration[0] for iteration in estimator._predictors], f_idx_map)
        self._known_bitsets = known_bitsets
        self._loss = estimator._loss

    def matrix(self, frame: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        """The transformed input (categorical codes, then numerics) of the feature columns of
        ``frame`` (a DataFrame, or arrays by column name)."""
        n_cat = len(self.categorical_features)
        n = len(frame) if isinstance(frame, pd.DataFrame) else len(frame[self.numeric_features[0]])
        X = np.empty((n, n_cat + len(self.numeric_features)), dtype="float64")
        for j, column in enumerate(self.categorical_features):
            lookup, unknown = self.codes[j], self.unknown_code
            X[:, j] = [lookup.get(_category_text(v), unknown) for v in np.asarray(frame[column], dtype=object).tolist()]
        for j, column in enumerate(self.numeric_features):
            values = frame[column]
            if values.dtype != np.float64:  # as prepare_model_input converts it
                values = pd.to_numeric(pd.Series(values), errors="raise").astype("float64")
            X[:, n_cat + j] = np.asarray(values)
        return X

    def score(self, frame: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        """P(fraud) of every row of ``frame`` (holding the feature columns; or arrays by name), float64."""
        from fraudops.modeling._forest import forest_raw_predict

        X = self.matrix(frame)
        raw = np.empty(len(X), dtype="float64")
        if len(X):
            forest_raw_predict(X, *_predict_arrays(self._forest), self._known_bitsets, self.baseline, raw)
        proba = self._loss.predict_proba(raw.reshape(-1, 1))
        return np.asarray(proba[:, self.fraud_column], dtype="float64")

    def verify(self, example: pd.DataFrame, rows: int = 400, seed: int = 0) -> str | None:
        """None when :meth:`score` equals the pipeline's ``predict_proba[:, 1]`` exactly on
        ``example`` and on rows probing it (unknown and missing categories, NaN, each split
        threshold and its neighbours); else what differed."""
        from fraudops.modeling.model import fraud_probability

        probe = pd.concat([example, self._probe_rows(example, rows, seed)], ignore_index=True)
        expected = fraud_probability(self.pipeline, prepare_model_input(
            probe, self.numeric_features, self.categorical_features))
        got = self.score(probe)
        different = np.flatnonzero(~((got == expected) | (np.isnan(got) & np.isnan(expected))))
        if len(different):
            i = different[0]
            return f"{len(different)} of {len(probe)} rows differ (row {i}: {got[i]!r} != {expected[i]!r})"
        return None

    def _probe_rows(self, example: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        base = prepare_model_input(example, self.numeric_features, self.categorical_features)
        probe = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
        thresholds = _split_thresholds(self._forest, len(self.categorical_features))
        for j, column in enumerate(self.numeric_features):
            cuts = thresholds.get(len(self.categorical_features) + j)
            if cuts is not None and len(cuts):
                picked = rng.choice(cuts, rows)
                values = picked + rng.choice([-1e-9, 0.0, 1e-9], rows) * np.maximum(1.0, np.abs(picked))
                keep = rng.random(rows) < 0.5
                probe[column] = np.where(keep, probe[column].to_numpy(), values)
            probe.loc[rng.random(rows) < 0.05, column] = np.nan
        for j, column in enumerate(self.categorical_features):
            known = list(self.codes[j]) or [MISSING_CATEGORY]
            values = np.array(known, dtype=object)[rng.integers(0, len(known), rows)]
            odd = rng.random(rows)
            values[odd < 0.1] = _NEVER_A_CATEGORY
            values[(odd >= 0.1) & (odd < 0.15)] = None
            probe[column] = values
        return probe


def _category_text(value) -> str:
    """A categorical value as prepare_model_input passes it to the encoder (missing, by pandas'
    notna, becomes MISSING_CATEGORY; anything else its str)."""
    if type(value) is str:
        return value
    return MISSING_CATEGORY if pd.isna(value) else str(value)


def _category_codes(encoder, columns) -> tuple[list[dict[str, float]], float]:
    """Per column, {training category: the encoder's code of it}; and the code of an unknown value."""
    from sklearn.preprocessing import OrdinalEncoder

    if not isinstance(encoder, OrdinalEncoder) or encoder.handle_unknown != "use_encoded_value":
        raise TypeError(f"unsupported categorical encoder {encoder!r}")
    categories = [list(map(str, c)) for c in encoder.categories_]
    longest = max((len(c) for c in categories), default=0) + 1
    table = {column: [*cats, _NEVER_A_CATEGORY] + [cats[0] if cats else _NEVER_A_CATEGORY] * (longest - len(cats) - 1)
             for column, cats in zip(columns, categories, strict=True)}
    codes = encoder.transform(pd.DataFrame(table, columns=list(columns)))
    lookups = [{c: float(codes[i, j]) for i, c in enumerate(cats)} for j, cats in enumerate(categories)]
    unknown = np.array([codes[len(cats), j] for j, cats in enumerate(categories)], dtype="float64")
    if len(unknown) and not (np.all(np.isnan(unknown)) or np.all(unknown == unknown[0])):
        raise TypeError("the encoder codes unknown values differently per column")
    return lookups, float(unknown[0]) if len(unknown) else float("nan")


def _predict_arrays(forest: tuple) -> tuple:
    """The flat forest's arrays forest_raw_predict takes (the TreeSHAP layout minus counts)."""
    (tree_start, left, right, is_leaf, feature, _count, value, threshold, categorical, missing_left, bitset_row,
     known_row, raw_bitsets) = forest
    return (tree_start, left, right, is_leaf, feature, value, threshold, categorical, missing_left, bitset_row,
            known_row, raw_bitsets)


def _split_thresholds(forest: tuple, first_numeric: int) -> dict[int, np.ndarray]:
    _, _, _, is_leaf, feature, _, _, threshold, categorical, *_ = forest
    split = ~is_leaf & ~categorical & (feature >= first_numeric)
    return {int(f): np.unique(threshold[split & (feature == f)]) for f in np.unique(feature[split])}


def compiled_scorer(model) -> CompiledScorer | None:
    """The verified :class:`CompiledScorer` of a loaded fraud-detector pyfunc (or FraudModel),
    or None when its pipeline is not a supported HistGradientBoosting one or differs anywhere."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    python_model = model.unwrap_python_model() if hasattr(model, "unwrap_python_model") else model
    pipeline, metadata = getattr(python_model, "pipeline", None), getattr(python_model, "metadata", None)
    if pipeline is None or metadata is None:
        return None
    estimator = pipeline[-1]
    if not isinstance(estimator, HistGradientBoostingClassifier) or estimator.n_trees_per_iteration_ != 1:
        return None
    try:
        if not _plain_hgb_preprocessor(pipeline[0], metadata):
            return None
        scorer = CompiledScorer(pipeline, metadata.numeric_features, metadata.categorical_features)
        problem = scorer.verify(_example_rows(model, metadata))
    except Exception as exc:  # noqa: BLE001 - the pyfunc still scores: never fail a load for this
        log.warning("compiled scorer not built (%s); scoring with the pyfunc", exc)
        return None
    if problem is not None:
        log.warning("compiled scorer differs from the pipeline (%s); scoring with the pyfunc", problem)
        return None
    return scorer


def _plain_hgb_preprocessor(preprocessor, metadata) -> bool:
    """The ColumnTransformer of build_preprocessor('hist_gradient_boosting', ...), exactly."""
    steps = [(name, transformer, list(columns)) for name, transformer, columns in preprocessor.transformers_
             if name != "remainder"]
    return (len(steps) == 2 and steps[0][0] == "categorical" and steps[0][2] == list(metadata.categorical_features)
            and steps[1][0] == "numeric" and _identity(steps[1][1])
            and steps[1][2] == list(metadata.numeric_features)
            and getattr(preprocessor, "remainder", "drop") == "drop")


def _identity(transformer) -> bool:
    """'passthrough', which a fitted ColumnTransformer keeps as a FunctionTransformer of nothing."""
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(transformer, str):
        return transformer == "passthrough"
    return isinstance(transformer, FunctionTransformer) and transformer.func is None and not transformer.validate


def _example_rows(model, metadata) -> pd.DataFrame:
    """The model's logged input example (a few real feature rows), or one neutral row."""
    example = None
    try:
        example = model.input_example if hasattr(model, "input_example") else None
    except Exception:  # noqa: BLE001 - older models: no example stored
        example = None
    if isinstance(example, pd.DataFrame) and len(example):
        return example
    row = {**{c: 0.0 for c in metadata.numeric_features}, **{c: MISSING_CATEGORY for c in metadata.categorical_features}}
    return pd.DataFrame([row])
