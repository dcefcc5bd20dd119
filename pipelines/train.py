"""Train a fraud model on an out-of-time split, log it to MLflow and register a new version.

Reads:  labelled history in the raw message schema plus ``is_fraud`` (Parquet or CSV, --data), or
        generates it with simulator.generator when --data is empty (--samples, --fraud-ratio).
Writes: an MLflow run (params, metrics, plots/, the pyfunc model ``model``, the drift reference
        sample ``reference/features.parquet``) and, unless --register false, a new version of the
        registered model (tags decision_threshold, feature_set_version, model_type).

Periods (pipelines.splits): features are computed on the whole history, then sliced: warm-up rows
only feed the stateful features, the estimator fits on [train_start, validation_start), the
decision threshold maximizes F1 on [validation_start, train_end), and the reported test_* metrics
come from [test_start, test_end), ``gap_days`` after the end of training. 20% of the fit rows
(never validation or test rows) are shown as messages without the optional fields (merchant_id,
merchant_category, channel, device_id), so messages like the seed producer's score well too.

Run:
    python -m pipelines.train --model-type hist_gradient_boosting --data data/history.parquet
    mlflow run . -e train --env-manager local -P data=data/history.parquet -P model_type=logistic
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudops.errors import DegenerateModelError
from fraudops.jsonutil import strict_value
from pipelines.common import (
    DEFAULT_EXPERIMENT,
    DEFAULT_LABEL_DELAY,
    DEFAULT_MODEL_TYPE,
    cli_text,
    configure_logging,
    defaults_of,
    label_delay_seconds,
    log_finite_metrics,
    parse_bool,
    start_step_run,
    use_experiment,
    whole_number,
)
from pipelines.evaluation_metrics import (
    THRESHOLD_OBJECTIVE,
    choose_decline_threshold,
    choose_threshold,
    evaluate_scored_rows,
    metrics_by_scenario,
)
from pipelines.splits import SplitFrames, TimeSplit, derive_time_split, event_times, split_frames
from simulator.generator import DEFAULT_FRAUD_RATIO

log = logging.getLogger("pipelines.train")

LABEL_COLUMN = "is_fraud"
SCENARIO_COLUMN = "fraud_scenario"
DEFAULT_HISTORY_DAYS = 30
DEFAULT_CUSTOMERS = 2000
REFERENCE_SAMPLE_ROWS = 20_000
IMPORTANCE_GENUINE_ROWS = 5_000
MISSING_OPTIONAL_SHARE = 0.2  # share of fit rows shown as messages without the optional fields
SCORED_ROW_COLUMNS = ["transaction_id", "user_id", "transaction_time", "amount", "score", "label"]
MAX_REGISTRABLE_THRESHOLD = 0.99  # a threshold at or above this flags (almost) nothing: never a candidate
TAG_LABEL_DELAY = "label_delay_seconds"  # = fraudops.modeling.registry.TAG_LABEL_DELAY


def registration_problem(threshold: float, validation_frauds: int) -> str | None:
    """Why a model with this threshold must not be registered as a candidate (None: it may)."""
    if validation_frauds < 1:
        return ("the validation period holds no fraud, so no decision threshold can be chosen; "
                "add labelled frauds or a longer history")
    if not math.isfinite(float(threshold)) or threshold >= MAX_REGISTRABLE_THRESHOLD:
        return (f"degenerate decision threshold {threshold!r} (>= {MAX_REGISTRABLE_THRESHOLD}): the model "
                "separates nothing on validation; check the labels and the fraud share of the data")
    return None


# --- data ---------------------------------------------------------------------------------------
def load_history(data: str | Path) -> pd.DataFrame:
    """Read labelled history (Parquet, or CSV by extension) and check its label column.

    Raises:
        FileNotFoundError: naming the path; ValueError naming ``is_fraud`` when absent or unusable.
    """
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"data={str(data)!r} does not exist")
    history = pd.read_csv(path) if path.suffix.lower() in (".csv", ".gz") else pd.read_parquet(path)
    return check_labels(history, f"data={str(data)!r}")


def check_labels(history: pd.DataFrame, source: str = "history") -> pd.DataFrame:
    """``history`` with ``is_fraud`` as int 0/1; ValueError naming the column if missing or not 0/1."""
    if LABEL_COLUMN not in history.columns:
        raise ValueError(f"{source} has no {LABEL_COLUMN!r} label column")
    labels = history[LABEL_COLUMN]
    if labels.isna().any():
        raise ValueError(f"{source}.{LABEL_COLUMN} has {int(labels.isna().sum())} missing value(s)")
    normalized = labels.map(lambda v: {True: 1, False: 0, "true": 1, "false": 0, "True": 1, "False": 0}.get(v, v))
    if not normalized.isin([0, 1]).all():
        raise ValueError(f"{source}.{LABEL_COLUMN} must be 0/1 or true/false")
    return history.assign(**{LABEL_COLUMN: normalized.astype("int64")})


def generate_training_history(samples: int, fraud_ratio: float, seed: int = 42) -> pd.DataFrame:
    """Simulated history: 30 days; customers sized for ``samples`` transactions (0: 2000 customers)."""
    from simulator.generator import MEAN_TX_PER_CUSTOMER_DAY, generate_history

    customers = DEFAULT_CUSTOMERS
    if samples > 0:
        customers = max(20, math.ceil(samples / (DEFAULT_HISTORY_DAYS * MEAN_TX_PER_CUSTOMER_DAY)))
    return generate_history(days=DEFAULT_HISTORY_DAYS, customers=customers, fraud_ratio=fraud_ratio, seed=seed)


def featurize_history(history: pd.DataFrame, label_delay: str | float = DEFAULT_LABEL_DELAY) -> pd.DataFrame:
    """The history's valid rows plus FEATURE_COLUMNS, point in time (a label is usable
    ``label_delay`` after it is known). Invalid rows are dropped (see :func:`featurize_with_report`)."""
    return featurize_with_report(history, label_delay)[0]


def featurize_with_report(history: pd.DataFrame, label_delay: str | float = DEFAULT_LABEL_DELAY):
    """(featurized valid rows, features.batch.RowReport of the dropped ones with their reasons).

    Rows the message contract refuses (negative amounts, duplicate transaction_ids, bad times,
    ...) are dropped and counted, never a crash; zero amounts are valid.
    """
    from features.batch import compute_training_features

    featurized, report = compute_training_features(history, label_delay=label_delay_seconds(label_delay))
    if report.rows_out < report.rows_in:
        log.warning("dropped %d of %d rows: %s", report.rows_in - report.rows_out, report.rows_in, report.dropped)
    return featurized.reset_index(drop=True), report


@dataclass(frozen=True)
class PreparedData:
    """Featurized history, its periods and the rows of each period."""

    featurized: pd.DataFrame
    split: TimeSplit
    frames: SplitFrames
    source: str
    label_delay_seconds: float = 3600.0
    row_report: Any = None  # features.batch.RowReport of the rows dropped while loading


def prepare_data(data: str = "", samples: int = 0, fraud_ratio: float = DEFAULT_FRAUD_RATIO, seed: int = 42,
                 train_end=None, test_start=None, test_end=None, gap_days: float = 2.0,
                 label_delay: str | float = DEFAULT_LABEL_DELAY) -> PreparedData:
    """Load (or generate) history, compute features on all of it, then split by time.

    Args:
        data: Parquet/CSV path; empty to generate with the simulator.
        samples: approximate number of generated transactions (0: 30 days x 2000 customers).
        fraud_ratio: fraud ratio of generated data.
        seed: simulator seed.
        train_end, test_start, test_end: period boundaries (ISO strings; empty: derived).
        gap_days: days between the end of training and the test period.
        label_delay: how long after a transaction its label is known (``1h``, ``7d`` or seconds):
            the merchant features use a label only from then on.
    """
    delay = label_delay_seconds(label_delay)
    if data:
        history, source = load_history(data), str(data)
    else:
        history = check_labels(generate_training_history(samples, fraud_ratio, seed), "simulated history")
        source = f"simulator(samples={samples}, fraud_ratio={fraud_ratio}, seed={seed})"
    featurized, report = featurize_with_report(history, delay)
    split = derive_time_split(event_times(featurized), train_end, test_start, test_end, gap_days)
    return PreparedData(featurized, split, split_frames(featurized, split, LABEL_COLUMN), source, delay, report)


# --- fitting and scoring ------------------------------------------------------------------------
def feature_lists(feature_set: str = "all") -> tuple[list[str], list[str]]:
    """(numeric, categorical) columns of ``feature_set``: ``all`` or ``stateless`` (the baseline)."""
    from features.definition import CATEGORICAL_FEATURES, NUMERIC_FEATURES, STATELESS_FEATURES

    if feature_set == "all":
        return list(NUMERIC_FEATURES), list(CATEGORICAL_FEATURES)
    if feature_set == "stateless":
        return ([c for c in NUMERIC_FEATURES if c in STATELESS_FEATURES],
                [c for c in CATEGORICAL_FEATURES if c in STATELESS_FEATURES])
    raise ValueError(f"feature_set={feature_set!r} must be 'all' or 'stateless'")


def missing_optional_feature_values() -> dict[str, Any]:
    """Feature values of a message without the optional fields (merchant_id, merchant_category,
    channel, device_id), as the feature code computes them: categoricals "unknown", and
    user_new_device 0 (features.definition: "0 when device_id is missing"). A unit test checks
    this against features.batch.compute_features."""
    from features.definition import CATEGORICAL_SOURCE_COLUMNS, OPTIONAL_INPUT_COLUMNS, UNKNOWN_CATEGORY

    values: dict[str, Any] = {name: UNKNOWN_CATEGORY for name, source in CATEGORICAL_SOURCE_COLUMNS.items()
                              if source in OPTIONAL_INPUT_COLUMNS}
    values["user_new_device"] = 0.0
    return values


def with_missing_optional_fields(rows: pd.DataFrame, share: float, seed: int = 42) -> pd.DataFrame:
    """A copy where a random ``share`` of rows (independent of the label) look like messages
    without the optional fields, so the model also scores such messages well (the seed's
    producer sends none of them); validation and test rows are never altered."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"missing_optional_share={share} must be in [0, 1]")
    out = rows.copy()
    chosen = np.random.default_rng(seed).random(len(out)) < share
    for column, value in missing_optional_feature_values().items():
        if column in out.columns:
            out.loc[chosen, column] = value
    return out


def fit_pipeline(model_type: str, fit_rows: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str],
                 params: Mapping[str, Any] | None = None, seed: int = 42,
                 missing_optional_share: float = MISSING_OPTIONAL_SHARE):
    """Fit the sklearn Pipeline of ``model_type`` on ``fit_rows`` (see with_missing_optional_fields)."""
    from fraudops.modeling.model import build_pipeline, prepare_model_input

    rows = with_missing_optional_fields(fit_rows, missing_optional_share, seed)
    pipeline = build_pipeline(model_type, numeric, categorical, params=params, seed=seed)
    return pipeline.fit(prepare_model_input(rows, numeric, categorical), rows[LABEL_COLUMN].to_numpy())


def score_rows(pipeline, rows: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> np.ndarray:
    """P(fraud) of ``rows`` with a fitted pipeline (same path as the pyfunc)."""
    from fraudops.modeling.model import fraud_probability, prepare_model_input

    return fraud_probability(pipeline, prepare_model_input(rows, numeric, categorical))


def scored_frame(rows: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """transaction_id, user_id, transaction_time, amount, score, label (+ fraud_scenario if present)."""
    out = rows[["transaction_id", "user_id", "transaction_time", "amount"]].copy()
    out["transaction_time"] = pd.to_datetime(out["transaction_time"], utc=True, format="ISO8601")
    out["score"] = scores
    out["label"] = rows[LABEL_COLUMN].astype(int).to_numpy()
    if SCENARIO_COLUMN in rows.columns:
        out[SCENARIO_COLUMN] = rows[SCENARIO_COLUMN].to_numpy()
    return out


def permutation_importances(pipeline, rows: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str],
                            seed: int = 42) -> dict[str, float]:
    """Drop in average precision when each input column is shuffled (all frauds + a genuine sample)."""
    from sklearn.inspection import permutation_importance

    from fraudops.modeling.model import prepare_model_input

    fraud = rows[rows[LABEL_COLUMN] == 1]
    genuine = rows[rows[LABEL_COLUMN] == 0]
    sample = pd.concat([fraud, genuine.sample(min(len(genuine), IMPORTANCE_GENUINE_ROWS), random_state=seed)])
    result = permutation_importance(
        pipeline, prepare_model_input(sample, numeric, categorical), sample[LABEL_COLUMN].to_numpy(),
        scoring="average_precision", n_repeats=2, random_state=seed,
    )
    return dict(zip([*numeric, *categorical], result.importances_mean.tolist(), strict=True))


# --- MLflow logging -----------------------------------------------------------------------------
def log_scenario_metrics(prefix: str, per_scenario: Mapping[str, Mapping[str, float]]) -> None:
    """Log recall and mean score per fraud scenario."""
    import mlflow

    for scenario, values in per_scenario.items():
        mlflow.log_metrics({f"{prefix}_recall_{scenario}": values["recall"],
                            f"{prefix}_mean_score_{scenario}": values["mean_score"]})


def log_plots(test_scored: pd.DataFrame, threshold: float, importances: Mapping[str, float]) -> None:
    """ROC, PR, confusion matrix at the threshold, calibration (test) and feature importance."""
    import matplotlib.pyplot as plt
    import mlflow

    from pipelines import plots

    y, s = test_scored["label"].to_numpy(), test_scored["score"].to_numpy()
    figures = {
        "plots/roc_curve.png": plots.roc_curve_figure(y, s),
        "plots/precision_recall_curve.png": plots.precision_recall_figure(y, s, threshold),
        "plots/confusion_matrix.png": plots.confusion_matrix_figure(y, s, threshold),
        "plots/calibration.png": plots.calibration_figure(y, s),
        "plots/feature_importance.png": plots.feature_importance_figure(importances),
    }
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        plt.close(figure)


def reference_sample(rows: pd.DataFrame, scores: np.ndarray, columns: Sequence[str], seed: int = 42) -> pd.DataFrame:
    """Up to 20k rows: transaction_time, feature columns, score, label (the drift reference).

    Pass the validation period with its out-of-sample scores: the model never fit those rows, so
    their score distribution is what the model gives on unseen traffic like the stream's (fit
    rows' in-sample scores are overconfident and would make score drift fire on any stream).
    """
    frame = rows[["transaction_time", *columns]].assign(score=scores, label=rows[LABEL_COLUMN].to_numpy())
    return frame.sample(min(len(frame), REFERENCE_SAMPLE_ROWS), random_state=seed).sort_index()


def log_reference(sample: pd.DataFrame) -> None:
    """Log the drift reference as run artifact ``reference/features.parquet``."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.parquet"
        sample.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path="reference")


def log_split(prepared: PreparedData) -> None:
    """Period boundaries (``split_*``), row and fraud counts, data source.

    Names differ from the CLI flags on purpose: `mlflow run` already logged those, as given.
    """
    import mlflow

    frames = prepared.frames
    split = {f"split_{k}": v for k, v in prepared.split.as_params().items()}
    mlflow.log_params({**split, "data_source": prepared.source[:490],
                       "label_delay_seconds": prepared.label_delay_seconds})
    for name in ("fit", "validation", "test"):
        rows = getattr(frames, name)
        mlflow.log_params({f"{name}_rows": len(rows), f"{name}_frauds": int(rows[LABEL_COLUMN].sum())})
    log_row_report(prepared.row_report)


def log_row_report(report) -> None:
    """Rows dropped while loading: metrics ``rows_dropped`` and ``rows_dropped_<reason>``, and
    ``data/row_report.json`` (counts, reasons, example ids)."""
    import mlflow

    if report is None:
        return
    mlflow.log_metrics({"rows_in": report.rows_in, "rows_dropped": report.rows_in - report.rows_out,
                        **{f"rows_dropped_{reason}"[:250]: count for reason, count in report.dropped.items()}})
    mlflow.log_dict(strict_value(asdict(report)), "data/row_report.json")


# --- training -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    model_uri: str
    version: str | None
    threshold: float
    metrics: dict[str, float]
    split: TimeSplit


@dataclass(frozen=True)
class FittedEvaluation:
    """A fitted pipeline's threshold (chosen on validation) and its scored periods."""

    threshold: float
    validation: pd.DataFrame
    test: pd.DataFrame
    metrics: dict[str, float]


def evaluate_fitted(pipeline, frames: SplitFrames, numeric: Sequence[str], categorical: Sequence[str]) -> FittedEvaluation:
    """Choose the threshold on validation (max F1), then measure validation and test at it."""
    validation = scored_frame(frames.validation, score_rows(pipeline, frames.validation, numeric, categorical))
    choice = choose_threshold(validation["label"], validation["score"])
    test = scored_frame(frames.test, score_rows(pipeline, frames.test, numeric, categorical))
    metrics = {f"val_{k}": v for k, v in evaluate_scored_rows(validation, choice.threshold).items()}
    metrics.update({f"test_{k}": v for k, v in evaluate_scored_rows(test, choice.threshold).items()})
    decline = choose_decline_threshold(validation["label"], validation["score"], choice.threshold)
    metrics.update({"val_decline_threshold": decline,
                    **{f"val_decline_{k}": v for k, v in evaluate_scored_rows(validation, decline).items()
                       if k in ("precision", "recall")}})
    return FittedEvaluation(choice.threshold, validation, test, metrics)


def log_training_params(prepared: PreparedData, model_type: str, params: Mapping[str, Any] | None,
                        feature_set: str, seed: int) -> None:
    """Model type, effective estimator params, feature set, threshold objective, periods."""
    import mlflow

    from features.definition import FEATURE_SET_VERSION
    from fraudops.modeling.model import DEFAULT_PARAMS

    effective = {**DEFAULT_PARAMS[model_type], **dict(params or {})}
    mlflow.log_params({"model_type": model_type, "feature_set": feature_set, "feature_set_version": FEATURE_SET_VERSION,
                       "threshold_objective": THRESHOLD_OBJECTIVE, "seed": seed,
                       "missing_optional_share": MISSING_OPTIONAL_SHARE,
                       **{f"param_{k}": v for k, v in effective.items()}})
    log_split(prepared)


def train_in_active_run(prepared: PreparedData, model_type: str, params: Mapping[str, Any] | None = None,
                        feature_set: str = "all", seed: int = 42, log_importance: bool = True):
    """Fit, choose the threshold on validation, measure on test, log everything and the model.

    Returns:
        (ModelInfo of the logged pyfunc, threshold, metrics with val_*, test_* and training_seconds).
    """
    from features.definition import FEATURE_SET_VERSION
    from fraudops.modeling.model import ModelMetadata, check_model_type, log_fraud_model

    check_model_type(model_type)
    numeric, categorical = feature_lists(feature_set)
    frames = prepared.frames
    log_training_params(prepared, model_type, params, feature_set, seed)
    started = time.perf_counter()
    pipeline = fit_pipeline(model_type, frames.fit, numeric, categorical, params, seed)
    training_seconds = time.perf_counter() - started
    result = evaluate_fitted(pipeline, frames, numeric, categorical)
    metrics = {**result.metrics, "training_seconds": training_seconds}
    log_finite_metrics(metrics)
    log_scenario_metrics("test", metrics_by_scenario(result.test, result.threshold))
    importances = permutation_importances(pipeline, frames.validation, numeric, categorical, seed) if log_importance else {}
    log_plots(result.test, result.threshold, importances or {"(not computed)": 0.0})
    log_reference(reference_sample(frames.validation, result.validation["score"].to_numpy(),
                                   [*numeric, *categorical], seed))
    metadata = ModelMetadata(result.threshold, THRESHOLD_OBJECTIVE, FEATURE_SET_VERSION, tuple(numeric),
                             tuple(categorical), model_type,
                             extra=model_extra(pipeline, prepared, model_type, feature_set, numeric, categorical))
    info = log_fraud_model(pipeline, metadata, frames.fit.head(5))
    return info, result.threshold, metrics


def model_extra(pipeline, prepared: PreparedData, model_type: str, feature_set: str, numeric: Sequence[str],
                categorical: Sequence[str]) -> dict[str, Any]:
    """What travels in ModelMetadata.extra: feature set, label delay, the explainer's linear baseline."""
    from fraudops.modeling.explain import BASELINE_KEY, linear_baseline
    from fraudops.modeling.model import prepare_model_input

    extra: dict[str, Any] = {"feature_set": feature_set, TAG_LABEL_DELAY: prepared.label_delay_seconds}
    if model_type == "logistic":
        extra[BASELINE_KEY] = linear_baseline(pipeline, prepare_model_input(prepared.frames.fit, numeric, categorical))
    return extra


def register_trained_model(info, run_id: str, model_name: str, model_type: str, threshold: float,
                           metrics: Mapping[str, float], prepared: PreparedData | None = None):
    """Register the logged model as a new version with its threshold, feature-set and label-delay tags.

    Raises:
        DegenerateModelError: the threshold is >= 0.99 or the validation period held no fraud
            (such a model is never a candidate).
    """
    from features.definition import FEATURE_SET_VERSION
    from fraudops.modeling.registry import (
        TAG_DECLINE_THRESHOLD,
        TAG_FEATURE_SET_VERSION,
        TAG_MODEL_TYPE,
        TAG_THRESHOLD,
        register_model_version,
    )

    if prepared is not None and (problem := registration_problem(
            threshold, int(prepared.frames.validation[LABEL_COLUMN].sum()))):
        raise DegenerateModelError(f"not registered: {problem}")
    if threshold >= MAX_REGISTRABLE_THRESHOLD:
        raise DegenerateModelError(f"not registered: {registration_problem(threshold, 1)}")
    delay = prepared.label_delay_seconds if prepared is not None else label_delay_seconds(DEFAULT_LABEL_DELAY)
    tags = {TAG_THRESHOLD: repr(float(threshold)), TAG_FEATURE_SET_VERSION: FEATURE_SET_VERSION,
            TAG_MODEL_TYPE: model_type, TAG_LABEL_DELAY: repr(float(delay)),
            **{k: f"{metrics[k]:.4f}" for k in ("test_auc_roc", "test_average_precision") if k in metrics}}
    if "val_decline_threshold" in metrics:  # the decision service declines at or above it
        tags[TAG_DECLINE_THRESHOLD] = repr(float(metrics["val_decline_threshold"]))
    description = (f"{model_type}, threshold {threshold:.4f} ({THRESHOLD_OBJECTIVE}); test AUC "
                   f"{metrics.get('test_auc_roc', float('nan')):.4f}, AP {metrics.get('test_average_precision', float('nan')):.4f}")
    return register_model_version(info.model_uri, model_name, tags, run_id=run_id, description=description)


def train_model(model_type: str = DEFAULT_MODEL_TYPE, data: str = "", samples: int = 0,
                fraud_ratio: float = DEFAULT_FRAUD_RATIO, train_end=None, test_start=None, test_end=None,
                gap_days: float = 2.0, register: bool = True, params: Mapping[str, Any] | None = None,
                model_name: str | None = None, experiment_name: str = DEFAULT_EXPERIMENT, seed: int = 42,
                feature_set: str = "all", prepared: PreparedData | None = None,
                label_delay: str | float = DEFAULT_LABEL_DELAY, settings=None) -> TrainResult:
    """Train, log and (optionally) register one model. See the module docstring for the periods.

    Args:
        model_type: random_forest, gradient_boosting, logistic or hist_gradient_boosting.
        data: labelled history path (Parquet/CSV); empty to generate with the simulator.
        samples, fraud_ratio, seed: generated data (when ``data`` is empty).
        train_end, test_start, test_end, gap_days: the periods (empty: derived from the data).
        register: register a new version of ``model_name``.
        params: estimator hyperparameters (override fraudops.modeling.model.DEFAULT_PARAMS).
        model_name: registered model (default: settings.model_name, i.e. fraud-detector).
        experiment_name: MLflow experiment.
        feature_set: ``all`` (the contract) or ``stateless`` (baseline for comparison only).
        prepared: already prepared data (skips loading and featurizing).
        label_delay: how long after a transaction its label is known (``1h``, ``7d`` or seconds);
            recorded on the run and the version (tag ``label_delay_seconds``).
        settings: fraudops Settings (default: load_settings()).

    Raises:
        DegenerateModelError: with ``register``, a model whose threshold is >= 0.99 or whose
            validation period held no fraud (the run is kept, tagged ``not_registered``).
    """
    import mlflow

    from fraudops.modeling.model import check_model_type
    from fraudops.modeling.registry import configure_tracking
    from fraudops.settings import load_settings

    check_model_type(model_type)  # before any data is read or run is opened
    feature_lists(feature_set)
    settings = settings or load_settings()
    configure_tracking(settings)
    use_experiment(experiment_name)
    prepared = prepared or prepare_data(data, samples, fraud_ratio, seed, train_end, test_start, test_end, gap_days,
                                        label_delay)
    with start_step_run(f"train-{model_type}") as run:
        mlflow.set_tag("step", "train")
        info, threshold, metrics = train_in_active_run(prepared, model_type, params, feature_set, seed)
        version = None
        if register:
            name = model_name or settings.model_name
            version = register_or_tag(info, run.info.run_id, name, model_type, threshold, metrics, prepared)
            mlflow.set_tag("registered_version", f"{name}/{version}")
    return TrainResult(run.info.run_id, info.model_uri, version, threshold, metrics, prepared.split)


def register_or_tag(info, run_id: str, name: str, model_type: str, threshold: float, metrics: Mapping[str, float],
                    prepared: PreparedData) -> str:
    """Register (returns the version); a degenerate model is tagged ``not_registered`` and re-raised."""
    import mlflow

    try:
        return register_trained_model(info, run_id, name, model_type, threshold, metrics, prepared).version
    except DegenerateModelError as exc:
        mlflow.set_tag("not_registered", str(exc)[:4900])
        raise


# --- CLI ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipelines.train`` (MLproject entry point ``train``)."""
    from fraudops.cli import HelpFormatter
    from fraudops.modeling.model import MODEL_TYPES

    defaults = defaults_of(train_model)
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model-type", default=defaults["model_type"], help=f"one of {', '.join(MODEL_TYPES)}")
    parser.add_argument("--data", default=defaults["data"],
                        help="labelled history (Parquet/CSV); empty: simulate (default: %(default)r)")
    parser.add_argument("--samples", type=whole_number, default=defaults["samples"],
                        help="about this many transactions simulated when --data is empty (0: 30 days x 2000 customers)")
    parser.add_argument("--fraud-ratio", type=float, default=defaults["fraud_ratio"],
                        help="share of fraud in the simulated history (--data empty)")
    period = {"train_end": "end of the training period", "test_start": "start of the out-of-time test period",
              "test_end": "end of the test period"}
    for name in ("train_end", "test_start", "test_end"):
        parser.add_argument(f"--{name.replace('_', '-')}", default=cli_text(defaults[name]),
                            help=f"{period[name]}, ISO-8601 (default: chosen from the data's time span)")
    parser.add_argument("--gap-days", type=float, default=defaults["gap_days"],
                        help="days left out between training and test (labels arriving late)")
    parser.add_argument("--register", default=cli_text(defaults["register"]).lower(),
                        help="true: register the model as a new version of MODEL_NAME")
    parser.add_argument("--label-delay", default=defaults["label_delay"],
                        help="how long after a transaction its label is known (30m, 1h, 7d, or seconds)")
    parser.add_argument("--experiment", default=defaults["experiment_name"],
                        help="MLflow experiment of the run (mlflow run: its own)")
    return parser


def main(argv: Sequence[str] | None = None) -> TrainResult:
    configure_logging()
    args = build_parser().parse_args(argv)
    result = train_model(
        model_type=args.model_type, data=args.data, samples=args.samples, fraud_ratio=args.fraud_ratio,
        train_end=args.train_end, test_start=args.test_start, test_end=args.test_end, gap_days=args.gap_days,
        register=parse_bool(args.register, "--register"), experiment_name=args.experiment,
        label_delay=args.label_delay,
    )
    summary = {k: round(result.metrics[k], 4) for k in sorted(result.metrics) if k.startswith("test_")}
    print(f"run {result.run_id}  version {result.version}  threshold {result.threshold:.4f}")
    print("  ".join(f"{k}={v}" for k, v in summary.items()))
    return result


if __name__ == "__main__":
    main()
