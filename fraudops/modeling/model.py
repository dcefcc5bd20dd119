"""The model contract of `fraud-detector`: a pyfunc that returns P(fraud), one double per row.

What is logged for every model version:

* ``artifacts/pipeline.skops``: a scikit-learn Pipeline (ColumnTransformer that encodes the
  categorical feature columns, given as strings, and imputes/scales the numeric ones, then the
  estimator). Stored with skops, loaded with an explicit allowlist (:data:`SKOPS_TRUSTED_TYPES`).
* the :class:`FraudModel` pyfunc wrapper: ``predict`` returns ``pipeline.predict_proba(X)[:, 1]``
  as float64. Never class labels, never P(class 0).
* a signature (inputs: the feature columns, categoricals as strings, numerics as doubles;
  output: one double) and an input example.
* :class:`ModelMetadata` (decision threshold, how it was chosen, feature-set version, feature
  columns, model type) as the pyfunc's ``model_config`` and the MLmodel ``metadata``; the
  registry helpers copy the threshold and feature-set version onto the model version tags too.

Importing this module has no side effects (no tracking URI, no files).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

MODEL_TYPES = ("random_forest", "gradient_boosting", "logistic", "hist_gradient_boosting")
PIPELINE_ARTIFACT = "pipeline"
PIPELINE_FILE = "pipeline.skops"
MISSING_CATEGORY = "unknown"  # = features.definition.UNKNOWN_CATEGORY (a unit test checks they match)
# the whole `fraudops` package travels with every logged model (code_paths): the pickled class is
# fraudops.modeling.model.FraudModel, so a Python without this project imports it from the model's
# own code/ folder (loading imports only this module, mlflow, numpy, pandas, skops, threadpoolctl)
FRAUDOPS_PACKAGE_DIR = Path(__file__).resolve().parent.parent

# skops refuses any type outside its defaults and this list (checked per model type by tests).
SKOPS_TRUSTED_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sklearn.utils.validation.check_array",
    "functools.partial",  # HistGradientBoosting keeps partial(check_array, ...) as an attribute
    "numpy.dtype",
]

# All else equal, a larger amount relative to the user's usual never lowers P(fraud)
# (a HistGradientBoosting monotonic constraint; tests/model checks the behaviour).
MONOTONIC_INCREASING_FEATURES = ("user_amount_ratio_30d",)

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "hist_gradient_boosting": {
        "learning_rate": 0.08,
        "max_iter": 250,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 40,
        "l2_regularization": 1.0,
    },
    "random_forest": {"n_estimators": 200, "min_samples_leaf": 5, "max_features": "sqrt"},
    "gradient_boosting": {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.8},
    "logistic": {"C": 1.0},
}


@dataclass(frozen=True)
class ModelMetadata:
    """What travels with a model version besides the pipeline itself.

    Attributes:
        decision_threshold: score at or above which a transaction is flagged as fraud.
        threshold_objective: how the threshold was chosen (e.g. ``max_f1_on_validation``).
        feature_set_version: ``features.definition.FEATURE_SET_VERSION`` the model was trained on.
        numeric_features: numeric input columns, in order.
        categorical_features: categorical input columns (strings), in order.
        model_type: one of :data:`MODEL_TYPES`.
    """

    decision_threshold: float
    threshold_objective: str
    feature_set_version: str
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    model_type: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_columns(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features]

    def to_config(self) -> dict[str, Any]:
        """A JSON-friendly dict (the pyfunc ``model_config`` and MLmodel ``metadata``)."""
        config = asdict(self)
        config["numeric_features"] = list(self.numeric_features)
        config["categorical_features"] = list(self.categorical_features)
        config["decision_threshold"] = float(self.decision_threshold)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelMetadata:
        """Rebuild from :meth:`to_config`'s dict; raises KeyError naming a missing key."""
        missing = [k for k in ("decision_threshold", "feature_set_version", "numeric_features",
                               "categorical_features", "model_type") if k not in config]
        if missing:
            raise KeyError(f"model metadata lacks {missing}; was this model logged by log_fraud_model?")
        return cls(
            decision_threshold=float(config["decision_threshold"]),
            threshold_objective=str(config.get("threshold_objective", "")),
            feature_set_version=str(config["feature_set_version"]),
            numeric_features=tuple(config["numeric_features"]),
            categorical_features=tuple(config["categorical_features"]),
            model_type=str(config["model_type"]),
            extra=dict(config.get("extra") or {}),
        )


def check_model_type(model_type: str) -> str:
    """Return ``model_type`` or raise ValueError listing the valid ones."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type={model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    return model_type


def build_estimator(model_type: str, params: Mapping[str, Any] | None = None, seed: int = 42):
    """The unfitted classifier for ``model_type`` with DEFAULT_PARAMS overridden by ``params``."""
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression

    check_model_type(model_type)
    merged = {**DEFAULT_PARAMS[model_type], **dict(params or {})}
    if model_type == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(
            early_stopping=False, categorical_features="from_dtype", random_state=seed, **merged
        )
    if model_type == "random_forest":
        return RandomForestClassifier(n_jobs=2, random_state=seed, **merged)
    if model_type == "gradient_boosting":
        return GradientBoostingClassifier(random_state=seed, **merged)
    return LogisticRegression(max_iter=3000, random_state=seed, **merged)


def build_preprocessor(model_type: str, numeric_features: Sequence[str], categorical_features: Sequence[str]):
    """ColumnTransformer: categoricals (strings) encoded, numerics imputed (and scaled for logistic).

    Trees get ordinal codes (unknown categories become NaN for HistGradientBoosting, which
    treats them as missing, and -1 elsewhere); logistic regression gets one-hot columns.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if model_type == "logistic":
        categorical = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20, max_categories=30)
        numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    elif model_type == "hist_gradient_boosting":
        categorical = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan,
            max_categories=200, dtype=np.float64,
        )
        numeric = "passthrough"  # native NaN support
    else:
        categorical = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, max_categories=200)
        numeric = SimpleImputer(strategy="median", keep_empty_features=True)
    return ColumnTransformer(
        [("categorical", categorical, list(categorical_features)), ("numeric", numeric, list(numeric_features))],
        remainder="drop",
        verbose_feature_names_out=False,
    )


def build_pipeline(
    model_type: str,
    numeric_features: Sequence[str],
    categorical_features: Sequence[str],
    params: Mapping[str, Any] | None = None,
    seed: int = 42,
):
    """The unfitted sklearn Pipeline (preprocessing + estimator) that the pyfunc wraps.

    Args:
        model_type: one of :data:`MODEL_TYPES`.
        numeric_features: numeric input columns.
        categorical_features: categorical input columns (strings).
        params: estimator hyperparameters overriding :data:`DEFAULT_PARAMS`.
        seed: random_state of the estimator.
    """
    from sklearn.pipeline import Pipeline

    estimator = build_estimator(model_type, params, seed)
    if model_type == "hist_gradient_boosting":
        n_cat = len(categorical_features)
        mask = [True] * n_cat + [False] * len(numeric_features)
        increasing = [0] * n_cat + [int(c in MONOTONIC_INCREASING_FEATURES) for c in numeric_features]
        estimator.set_params(categorical_features=mask if n_cat else None, monotonic_cst=increasing)
    preprocessor = build_preprocessor(model_type, numeric_features, categorical_features)
    return Pipeline([("preprocess", preprocessor), ("model", estimator)])


def prepare_model_input(
    frame: pd.DataFrame, numeric_features: Sequence[str], categorical_features: Sequence[str]
) -> pd.DataFrame:
    """The feature columns in contract order and types: numerics float64, categoricals str.

    Missing categoricals become ``"unknown"`` (as the feature code writes them). Does not modify ``frame``.

    Raises:
        KeyError: naming the feature columns that ``frame`` lacks.
    """
    columns = [*numeric_features, *categorical_features]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"model input lacks feature columns {missing}")
    # the columns are built first and the frame once (a column at a time into a frame costs a
    # block insert per column: 4 ms a call, what a batch of rows pays in every prediction)
    data: dict[str, np.ndarray] = {}
    for column in numeric_features:
        values = frame[column]
        if values.dtype != np.float64:  # float64 already: to_numeric and astype leave it as it is
            values = pd.to_numeric(values, errors="raise").astype("float64")
        data[column] = values.to_numpy()
    for column in categorical_features:
        values = frame[column].astype("object")
        data[column] = values.where(values.notna(), MISSING_CATEGORY).astype(str).to_numpy()
    return pd.DataFrame(data, index=frame.index, columns=columns)


class FraudModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: ``predict`` returns P(fraud) (float64, one per row)."""

    def load_context(self, context) -> None:
        import skops.io as sio

        self.metadata = ModelMetadata.from_config(context.model_config)
        self.pipeline = sio.load(context.artifacts[PIPELINE_ARTIFACT], trusted=SKOPS_TRUSTED_TYPES)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        frame = prepare_model_input(
            pd.DataFrame(model_input), self.metadata.numeric_features, self.metadata.categorical_features
        )
        # one thread per call: Spark already runs one task per core, more threads only contend
        with one_thread():
            return fraud_probability(self.pipeline, frame)


_THREADPOOLS: list = []  # the process's threadpoolctl controller, made on first use


def one_thread():
    """A context manager limiting the native thread pools (OpenMP, BLAS) to one thread.

    As ``threadpool_limits(limits=1)``, but the pools are looked up once per process (on the first
    prediction, once the model's libraries are loaded): the look-up walks every loaded shared
    library, 4.5 ms a call, which every micro-batch paid.
    """
    if not _THREADPOOLS:
        from threadpoolctl import ThreadpoolController

        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1)


def fraud_probability(pipeline, frame: pd.DataFrame) -> np.ndarray:
    """P(fraud) = ``predict_proba(frame)[:, index of class 1]`` as float64."""
    classes = list(pipeline.classes_)
    if 1 not in classes and True not in classes:
        raise ValueError(f"the model was fitted without the fraud class (classes {classes})")
    column = classes.index(1)
    return np.asarray(pipeline.predict_proba(frame)[:, column], dtype="float64")


def spark_model_input(numeric_features: Sequence[str], categorical_features: Sequence[str]):
    """One Spark struct column to pass to ``mlflow.pyfunc.spark_udf(..., result_type="double")``.

    Casts numerics to double and categoricals to string (null -> "unknown") so Spark's long or int
    feature columns match the signature, and passes them by name (a struct reaches the model as
    a pandas DataFrame with these column names; positional arguments would be matched by order).
    Usage: ``df.withColumn("fraud_score", udf(spark_model_input(md.numeric_features, md.categorical_features)))``.
    """
    from pyspark.sql import functions as F

    numeric = [F.col(c).cast("double").alias(c) for c in numeric_features]
    categorical = [
        F.coalesce(F.col(c).cast("string"), F.lit(MISSING_CATEGORY)).alias(c) for c in categorical_features
    ]
    return F.struct(*numeric, *categorical)


def model_signature(numeric_features: Sequence[str], categorical_features: Sequence[str]):
    """Inputs: numerics as double, categoricals as string. Output: one double (P(fraud))."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema(
        [ColSpec("double", c) for c in numeric_features] + [ColSpec("string", c) for c in categorical_features]
    )
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double")]))


def save_pipeline(pipeline, directory: Path) -> Path:
    """Write the fitted pipeline with skops; raises ValueError naming an unexpected type."""
    import skops.io as sio

    path = Path(directory) / PIPELINE_FILE
    sio.dump(pipeline, path)
    untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(SKOPS_TRUSTED_TYPES))
    if untrusted:
        raise ValueError(f"pipeline holds types not in SKOPS_TRUSTED_TYPES: {untrusted}")
    return path


def load_pipeline(path: str | Path):
    """Load a pipeline written by :func:`save_pipeline`."""
    import skops.io as sio

    return sio.load(path, trusted=SKOPS_TRUSTED_TYPES)


def log_fraud_model(
    pipeline,
    metadata: ModelMetadata,
    input_example: pd.DataFrame,
    name: str = "model",
    registered_model_name: str | None = None,
):
    """Log the fitted pipeline as a :class:`FraudModel` pyfunc in the active run.

    Args:
        pipeline: fitted sklearn Pipeline from :func:`build_pipeline`.
        metadata: threshold, feature-set version and feature columns of this model.
        input_example: a few rows holding the feature columns.
        name: model name inside the run.
        registered_model_name: also register it under this name (None: don't; the pipelines
            register through fraudops.modeling.registry so the version gets its tags).

    Returns:
        mlflow ModelInfo (``model_uri``, ``model_id`` ...).
    """
    with tempfile.TemporaryDirectory() as tmp:
        return mlflow.pyfunc.log_model(
            name=name, registered_model_name=registered_model_name,
            **_pyfunc_arguments(pipeline, metadata, input_example, Path(tmp)),
        )


def save_fraud_model(path: str | Path, pipeline, metadata: ModelMetadata, input_example: pd.DataFrame) -> Path:
    """Save the same pyfunc as :func:`log_fraud_model` to a local folder (no tracking server)."""
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.pyfunc.save_model(path=str(path), **_pyfunc_arguments(pipeline, metadata, input_example, Path(tmp)))
    return Path(path)


def _pyfunc_arguments(pipeline, metadata: ModelMetadata, input_example: pd.DataFrame, tmp: Path) -> dict[str, Any]:
    example = prepare_model_input(input_example, metadata.numeric_features, metadata.categorical_features)
    return {
        "python_model": FraudModel(),
        "artifacts": {PIPELINE_ARTIFACT: str(save_pipeline(pipeline, tmp))},
        "code_paths": [str(FRAUDOPS_PACKAGE_DIR)],
        "signature": model_signature(metadata.numeric_features, metadata.categorical_features),
        "input_example": example.head(5),
        "model_config": metadata.to_config(),
        "metadata": metadata.to_config(),
        "pip_requirements": _pip_requirements(),
    }


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    packages = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "cloudpickle", "threadpoolctl")
    return [f"{p}=={version(p)}" for p in packages]


def load_fraud_model(model_uri: str):
    """Load a logged model as a pyfunc (``predict`` returns P(fraud))."""
    return mlflow.pyfunc.load_model(model_uri)


def read_model_metadata(pyfunc_model) -> ModelMetadata:
    """The :class:`ModelMetadata` of a loaded pyfunc (works for runs:/, models:/ and local URIs)."""
    config = pyfunc_model.metadata.metadata or {}
    return ModelMetadata.from_config(config)
