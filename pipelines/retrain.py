"""Retrain on recent scored traffic (+ history), and promote only through the champion/challenger gate.

Reads:  PostgreSQL ``<pg-schema>``: the scored transactions of --db-window (by scored_at) and every
        label of them (latest per transaction wins; chargeback, analyst, simulator, import);
        --history, a labelled history Parquet/CSV (optional); with --if-drift true, the drift
        checks' monitoring_metrics rows and earlier retrains in audit_log.
Writes: an MLflow run ``retrain`` with nested runs: the training run (pipelines.train: model,
        metrics, reference sample; registered as a new version of --model-name) and the
        promotion run (pipelines.promote: both models on the same holdout, the decision); the
        version's stage (Production only when the gate passes); audit_log ``model_retrained``.

The training set: transactions in time order, features recomputed from the raw fields by
features.batch.compute_features with the labels as they were known (never re-implemented). A row
is labelled by its latest label; an unlabelled row counts as genuine once it was scored more than
--label-maturity ago (no chargeback came), and is otherwise left out of training and evaluation
(it still feeds the stateful features of later rows). Both datasets are validated with Great
Expectations (raw_transactions, feature_table) before training.

Periods: the holdout is the newest --holdout-fraction of the labelled PostgreSQL rows; training
ends --gap before it; the decision threshold is chosen on the last 20% of the training rows; a
warm-up (7 days, at most a quarter of the range) only feeds the stateful features. Candidate and
Production are scored on the same holdout by pipelines.promote (pipelines.promotion_policy).

Run:
    python -m pipelines.retrain --history data/history.parquet
    python -m pipelines.retrain --if-drift true          # only when the last drift check found drift
    mlflow run . -e retrain --env-manager local -P history=data/history.parquet
    scripts/retrain_model.sh
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from fraudops.contract.messages import TRANSACTION_COLUMNS
from fraudops.errors import DataValidationError, DegenerateModelError
from monitoring.storage import connect_schema, insert_audit, read_frame
from monitoring.windows import parse_duration
from pipelines.common import (
    DEFAULT_EXPERIMENT,
    DEFAULT_LABEL_DELAY,
    DEFAULT_MODEL_TYPE,
    cli_text,
    configure_logging,
    defaults_of,
    label_delay_seconds,
    parse_bool,
    start_step_run,
    use_experiment,
)
from pipelines.promotion_policy import DEFAULT_POLICY, PromotionPolicy
from pipelines.splits import DEFAULT_VALIDATION_FRACTION, DEFAULT_WARMUP_DAYS, MAX_WARMUP_SHARE, TimeSplit

log = logging.getLogger("pipelines.retrain")

AUDIT_EVENT = "model_retrained"
REFUSED_EVENT = "model_retrain_refused"
AUDIT_ACTOR = "pipelines.retrain"
RAW_SUITE, FEATURE_SUITE = "raw_transactions", "feature_table"
ORIGIN_COLUMN = "origin"  # "database" or "history"


@dataclass(frozen=True)
class TrainingData:
    """Raw transactions in time order, their labels as known, and the label of each row.

    Attributes:
        transactions: TRANSACTION_COLUMNS + ``label`` (1/0, NaN: unknown yet) + ``origin``.
        labels: every label (transaction_id, is_fraud, labeled_at) for the merchant features.
    """

    transactions: pd.DataFrame
    labels: pd.DataFrame

    def counts(self) -> dict[str, int]:
        t = self.transactions
        known = t["label"].notna()
        return {"rows": len(t), "labelled_rows": int(known.sum()), "fraud_rows": int((t["label"] == 1).sum()),
                "database_rows": int((t[ORIGIN_COLUMN] == "database").sum()),
                "history_rows": int((t[ORIGIN_COLUMN] == "history").sum())}


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain did (``skipped`` with the reason when --if-drift found nothing to do)."""

    skipped: bool
    reason: str
    run_id: str | None = None
    version: str | None = None
    outcome: Any = None  # pipelines.promote.PromotionOutcome
    data_counts: dict[str, int] | None = None
    split: TimeSplit | None = None


# --- the drift trigger --------------------------------------------------------------------------
def drift_trigger(conn, max_age: timedelta, max_age_text: str | None = None) -> tuple[bool, str]:
    """Whether a drift check younger than ``max_age`` found drift that no retrain has followed yet."""
    from monitoring.queries import latest_metric

    latest = latest_metric(conn, "drift", "dataset_drift", max_age)
    if not latest or latest["metric_value"] != 1:
        return False, f"no drift check found drift in the last {max_age_text or max_age}"
    rows = read_frame(conn, "SELECT max(created_at) AS last FROM audit_log WHERE event_type = %s", (AUDIT_EVENT,))
    last = rows["last"].iloc[0]
    if last is not None and not pd.isna(last) and last >= latest["recorded_at"]:
        return False, f"already retrained at {last} after the drift check of {latest['recorded_at']}"
    return True, f"drift check of {latest['recorded_at']} found drift"


# --- data ---------------------------------------------------------------------------------------
def load_database_rows(conn, db_window: timedelta | None, label_maturity: timedelta | None) -> TrainingData:
    """Scored transactions of the window with their label (see the module docstring) and their labels."""
    from monitoring.queries import LATEST_LABELS_SQL

    columns = ", ".join(f"t.{c}" for c in TRANSACTION_COLUMNS)
    since = "AND t.scored_at >= now() - %(window)s" if db_window is not None else ""
    rows = read_frame(conn, f"""
        SELECT {columns}, CASE WHEN l.is_fraud IS NOT NULL THEN l.is_fraud::int
                               WHEN t.scored_at <= now() - %(maturity)s::interval THEN 0 END AS label
        FROM transactions t LEFT JOIN ({LATEST_LABELS_SQL}) l ON l.transaction_id = t.transaction_id
        WHERE t.scored_at IS NOT NULL {since}
        ORDER BY t.transaction_time, t.transaction_id""", {"window": db_window, "maturity": label_maturity})
    labels = read_frame(conn, f"""
        SELECT b.transaction_id, b.is_fraud, b.labeled_at FROM labels b
        JOIN transactions t ON t.transaction_id = b.transaction_id WHERE t.scored_at IS NOT NULL {since}""",
                        {"window": db_window})
    rows["transaction_time"] = pd.to_datetime(rows["transaction_time"], utc=True)
    rows["label"] = pd.to_numeric(rows["label"]).astype("float64")
    return TrainingData(rows.assign(**{ORIGIN_COLUMN: "database"}), labels)


def history_rows(history: pd.DataFrame, exclude_ids: set[str]) -> TrainingData:
    """A labelled history as TrainingData (rows already in PostgreSQL are left out)."""
    keep = history[~history["transaction_id"].astype(str).isin(exclude_ids)]
    rows = keep[TRANSACTION_COLUMNS].assign(label=keep["is_fraud"].astype("float64").to_numpy(),
                                            **{ORIGIN_COLUMN: "history"})
    rows["transaction_time"] = pd.to_datetime(rows["transaction_time"], utc=True, format="ISO8601")
    known = keep[keep["label_time"].notna()] if "label_time" in keep.columns else keep.iloc[0:0]
    labels = pd.DataFrame({"transaction_id": known["transaction_id"], "is_fraud": known["is_fraud"].astype(bool),
                           "labeled_at": pd.to_datetime(known["label_time"], utc=True)})
    return TrainingData(rows, labels)


def combine(parts: Sequence[TrainingData]) -> TrainingData:
    """Concatenate in time order (ties by transaction_id)."""
    rows = pd.concat([p.transactions for p in parts], ignore_index=True)
    rows = rows.sort_values(["transaction_time", "transaction_id"], kind="mergesort").reset_index(drop=True)
    labels = pd.concat([p.labels for p in parts if not p.labels.empty], ignore_index=True) \
        if any(not p.labels.empty for p in parts) else parts[0].labels
    return TrainingData(rows, labels)


def load_training_data(settings, pg_schema: str, history: str = "", db_window: timedelta | None = None,
                       label_maturity: timedelta | None = timedelta(hours=1)) -> TrainingData:
    """PostgreSQL rows (+ the history file), in time order.

    Raises:
        ValueError: naming pg_schema when it holds no scored transactions.
    """
    from pipelines.train import load_history

    conn = connect_schema(settings, pg_schema)
    try:
        database = load_database_rows(conn, db_window, label_maturity)
    finally:
        conn.close()
    if database.transactions.empty:
        raise ValueError(f"pg_schema={pg_schema!r} holds no scored transactions in the window; retraining needs "
                         "recent traffic for the holdout")
    parts = [database]
    if history:
        parts.append(history_rows(load_history(history), set(database.transactions["transaction_id"])))
    return combine(parts)


def validate(frame: pd.DataFrame, suite: str) -> None:
    """Great Expectations suite ``suite`` on ``frame``; DataValidationError with the report on failure."""
    from expectations.runner import validate_dataframe

    outcome = validate_dataframe(frame, suite)
    if not outcome.success:
        raise DataValidationError(outcome.report())
    log.info("%s: %d rows passed %d expectations", suite, outcome.rows, outcome.evaluated_expectations)


def featurize(data: TrainingData, label_delay_seconds: float = 3600.0) -> pd.DataFrame:
    """Features of every row (a label usable ``label_delay_seconds`` after it is known), then the
    labelled rows only, with ``is_fraud``."""
    from features.batch import compute_features

    featurized = compute_features(data.transactions.drop(columns=["label", ORIGIN_COLUMN]), labels=data.labels,
                                  label_delay=label_delay_seconds)
    labelled = data.transactions["label"].notna().to_numpy()
    out = featurized.loc[labelled].copy()
    out["is_fraud"] = data.transactions.loc[labelled, "label"].astype("int64").to_numpy()
    out[ORIGIN_COLUMN] = data.transactions.loc[labelled, ORIGIN_COLUMN].to_numpy()
    return out


# --- periods ------------------------------------------------------------------------------------
def _quantile_time(sorted_times: pd.Series, fraction: float) -> pd.Timestamp:
    return sorted_times.iloc[min(len(sorted_times) - 1, int(np.floor(len(sorted_times) * fraction)))]


def retrain_split(times: pd.Series, recent_times: pd.Series, holdout_fraction: float = 0.3,
                  gap: timedelta = timedelta(hours=1),
                  validation_fraction: float = DEFAULT_VALIDATION_FRACTION) -> TimeSplit:
    """Periods by rows: the holdout is the newest ``holdout_fraction`` of ``recent_times``.

    Args:
        times: event times of every labelled row (history and PostgreSQL).
        recent_times: event times of the labelled PostgreSQL rows.
        holdout_fraction: share of the recent rows in the holdout, in (0, 1).
        gap: time between the end of training and the holdout.
        validation_fraction: share of the training rows (the newest) that choose the threshold.

    Raises:
        ValueError: naming the argument or the periods when they come out empty or out of order.
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction={holdout_fraction} must be in (0, 1)")
    if recent_times.empty:
        raise ValueError("no labelled PostgreSQL rows: nothing to hold out")
    times = pd.to_datetime(times, utc=True).sort_values(ignore_index=True)
    recent = pd.to_datetime(recent_times, utc=True).sort_values(ignore_index=True)
    test_start = _quantile_time(recent, 1 - holdout_fraction)
    test_end = recent.iloc[-1] + pd.Timedelta(seconds=1)
    train_end = test_start - pd.Timedelta(gap)
    first = times.iloc[0]
    if train_end <= first:
        raise ValueError(f"no training rows before the holdout start {test_start.isoformat()} minus gap={gap}")
    warmup = min(pd.Timedelta(days=DEFAULT_WARMUP_DAYS), (train_end - first) * MAX_WARMUP_SHARE)
    train_start = (first + warmup).ceil("s")
    training = times[(times >= train_start) & (times < train_end)].reset_index(drop=True)
    if len(training) < 2:
        raise ValueError(f"only {len(training)} training row(s) between {train_start.isoformat()} and "
                         f"{train_end.isoformat()}; add history (--history) or lower holdout_fraction")
    validation_start = _quantile_time(training, 1 - validation_fraction)
    return TimeSplit(first, train_start, validation_start, train_end, test_start, test_end)


def prepare(data: TrainingData, holdout_fraction: float, gap: timedelta, label_delay_seconds: float = 3600.0):
    """Validate, featurize, validate the features, and split: pipelines.train.PreparedData."""
    from pipelines.splits import split_frames
    from pipelines.train import PreparedData

    validate(data.transactions[TRANSACTION_COLUMNS], RAW_SUITE)
    featurized = featurize(data, label_delay_seconds)
    validate(featurized, FEATURE_SUITE)
    recent = featurized.loc[featurized[ORIGIN_COLUMN] == "database", "transaction_time"]
    split = retrain_split(featurized["transaction_time"], recent, holdout_fraction, gap)
    counts = data.counts()
    source = f"postgres({counts['database_rows']} rows) + history({counts['history_rows']} rows)"
    return PreparedData(featurized, split, split_frames(featurized, split), source, label_delay_seconds)


# --- the step -----------------------------------------------------------------------------------
def record_retrain(settings, pg_schema: str, details: dict) -> None:
    """One audit_log row ``model_retrained`` in ``pg_schema``."""
    conn = connect_schema(settings, pg_schema)
    try:
        insert_audit(conn, AUDIT_EVENT, AUDIT_ACTOR, details)
        conn.commit()
    finally:
        conn.close()


def drift_skip_reason(settings, pg_schema: str, drift_max_age: str) -> str | None:
    """Why an ``--if-drift`` retrain has nothing to do (None: it should run)."""
    conn = connect_schema(settings, pg_schema)
    try:
        go, reason = drift_trigger(conn, parse_duration(drift_max_age, "drift_max_age"), drift_max_age)
    finally:
        conn.close()
    return None if go else reason


def train_and_gate(prepared, data: TrainingData, name: str, model_type: str, promote: bool,
                   policy: PromotionPolicy, params: dict | None, experiment_name: str, seed: int, settings,
                   run_params: dict):
    """In one ``retrain`` run: train and register the candidate (nested run), then run the gate.

    Returns:
        (retrain run id, pipelines.train.TrainResult, pipelines.promote.PromotionOutcome)
    """
    import mlflow

    from fraudops.modeling.registry import configure_tracking
    from monitoring.tracking import entry_point_experiment
    from pipelines.evaluate import Holdout
    from pipelines.promote import promote_version
    from pipelines.train import train_model

    configure_tracking(settings)
    experiment_name = entry_point_experiment(experiment_name)  # nested runs next to `mlflow run`'s run
    use_experiment(experiment_name)
    with start_step_run(f"retrain-{name}") as run:
        mlflow.set_tag("step", "retrain")
        mlflow.log_params({**{f"retrain_{k}": v for k, v in run_params.items()},
                           **{f"retrain_{k}": v for k, v in data.counts().items()}})
        trained = train_model(model_type=model_type, register=True, params=params, model_name=name,
                              experiment_name=experiment_name, seed=seed, prepared=prepared, settings=settings)
        holdout = Holdout(prepared.frames.test, prepared.split.test_start, prepared.split.test_end)
        outcome = promote_version(trained.version, dry_run=not promote, model_name=name, policy=policy,
                                  experiment_name=experiment_name, holdout=holdout,
                                  pg_schema=run_params["pg_schema"], settings=settings)
        mlflow.set_tags({"candidate_version": trained.version, "decision_stage": str(outcome.decision.stage),
                         "applied_stage": str(outcome.applied_stage)})
    return run.info.run_id, trained, outcome


def retrain(pg_schema: str = "public", history: str = "", model_name: str | None = None,
            model_type: str = DEFAULT_MODEL_TYPE, holdout_fraction: float = 0.3, gap: str = "1h",
            label_maturity: str | None = "1h", db_window: str | None = "30d", promote: bool = True,
            if_drift: bool = False, drift_max_age: str = "24h", policy: PromotionPolicy = DEFAULT_POLICY,
            params: dict | None = None, experiment_name: str = DEFAULT_EXPERIMENT, seed: int = 42,
            label_delay: str = DEFAULT_LABEL_DELAY, settings=None) -> RetrainResult:
    """Build the training set, train and register a candidate, and run the promotion gate.

    Args:
        pg_schema: PostgreSQL schema of the scored transactions and labels.
        history: labelled history Parquet/CSV to add (empty: PostgreSQL only).
        model_name: registered model (default settings.model_name).
        model_type: see fraudops.modeling.model.MODEL_TYPES.
        holdout_fraction: newest share of the labelled PostgreSQL rows held out for the comparison.
        gap: duration between training and holdout (e.g. ``1h``).
        label_maturity: unlabelled rows scored longer ago count as genuine (None/"none": never).
        db_window: how far back to read PostgreSQL by scored_at (None/"all": everything).
        promote: apply the gate's decision (False: decide and report only).
        if_drift: only run when the latest drift check (younger than ``drift_max_age``) found drift
            and no retrain followed it.
        policy: the promotion policy (pipelines.promotion_policy).
        params: estimator hyperparameters.
        experiment_name: MLflow experiment of the runs.
        seed: random seed of the estimator.
        label_delay: how long after a transaction its label is known (``1h``, ``7d``); the
            merchant features use a label only from then on; recorded on the candidate version.
        settings: fraudops Settings (default load_settings()).

    Raises:
        DataValidationError: a Great Expectations suite failed; ValueError: bad arguments or data;
        DegenerateModelError (a ValueError): the candidate's threshold is >= 0.99 or the validation
        period held no fraud: nothing is registered, audit_log gets ``model_retrain_refused``.
    """
    from fraudops.settings import load_settings

    settings = settings or load_settings()
    maturity = _optional_duration(label_maturity, "label_maturity")
    window = _optional_duration(db_window, "db_window", none_word="all")
    gap_delta = parse_duration(gap, "gap")
    if if_drift and (reason := drift_skip_reason(settings, pg_schema, drift_max_age)):
        log.info("retrain skipped: %s", reason)
        return RetrainResult(True, reason)
    data = load_training_data(settings, pg_schema, history, window, maturity)
    prepared = prepare(data, holdout_fraction, gap_delta, label_delay_seconds(label_delay))
    name = model_name or settings.model_name
    run_params = {"pg_schema": pg_schema, "history": history, "holdout_fraction": holdout_fraction, "gap": gap,
                  "label_maturity": str(label_maturity), "db_window": str(db_window), "model_name": name}
    try:
        run_id, trained, outcome = train_and_gate(prepared, data, name, model_type, promote, policy, params,
                                                  experiment_name, seed, settings, run_params)
    except DegenerateModelError as exc:
        record_refusal(settings, pg_schema, str(exc), data, prepared)
        raise
    record_retrain(settings, pg_schema, {**outcome.summary(), "run_id": run_id, "training_run_id": trained.run_id,
                                         "data": data.counts(), "split": prepared.split.as_params()})
    return RetrainResult(False, outcome.decision.explain(), run_id, trained.version, outcome, data.counts(),
                         prepared.split)


def record_refusal(settings, pg_schema: str, reason: str, data: TrainingData, prepared) -> None:
    """audit_log ``model_retrain_refused``: why no candidate was registered, with the data counts."""
    conn = connect_schema(settings, pg_schema)
    try:
        insert_audit(conn, REFUSED_EVENT, AUDIT_ACTOR, {"reason": reason, "data": data.counts(),
                                                        "split": prepared.split.as_params()})
        conn.commit()
    finally:
        conn.close()


def _optional_duration(text: str | None, argument: str, none_word: str = "none") -> timedelta | None:
    if text is None or str(text).strip().lower() in ("", none_word, "none"):
        return None
    return parse_duration(text, argument)


# --- CLI ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from fraudops.cli import HelpFormatter
    from fraudops.modeling.model import MODEL_TYPES

    defaults = defaults_of(retrain)
    p = argparse.ArgumentParser(prog="python -m pipelines.retrain", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--pg-schema", default=defaults["pg_schema"], help="PostgreSQL schema of the scored rows and labels")
    p.add_argument("--history", default=defaults["history"], help="labelled history Parquet/CSV to add (default: none)")
    p.add_argument("--model-type", default=defaults["model_type"], help=f"one of {', '.join(MODEL_TYPES)}")
    p.add_argument("--model-name", default=cli_text(defaults["model_name"]), help="default: MODEL_NAME (fraud-detector)")
    p.add_argument("--holdout-fraction", type=float, default=defaults["holdout_fraction"],
                   help="newest share of the rows kept for the promotion gate's holdout")
    p.add_argument("--gap", default=defaults["gap"], help="between training and holdout (30m, 1h, 2d)")
    p.add_argument("--label-maturity", default=cli_text(defaults["label_maturity"]),
                   help="unlabelled rows older than this are genuine ('none': never)")
    p.add_argument("--db-window", default=cli_text(defaults["db_window"]),
                   help="read PostgreSQL rows scored in this window ('all': all)")
    p.add_argument("--promote", default=cli_text(defaults["promote"]).lower(),
                   help="apply the gate's decision (false: report only)")
    p.add_argument("--if-drift", default=cli_text(defaults["if_drift"]).lower(),
                   help="true: only when the last drift check found drift")
    p.add_argument("--drift-max-age", default=defaults["drift_max_age"],
                   help="with --if-drift: a drift check older than this does not count")
    p.add_argument("--label-delay", default=defaults["label_delay"],
                   help="how long after a transaction its label is known (30m, 1h, 7d)")
    p.add_argument("--experiment", default=defaults["experiment_name"], help="MLflow experiment of the run (mlflow run: its own)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        result = retrain(
            pg_schema=args.pg_schema, history=args.history, model_name=args.model_name or None,
            model_type=args.model_type, holdout_fraction=args.holdout_fraction, gap=args.gap,
            label_maturity=args.label_maturity, db_window=args.db_window,
            promote=parse_bool(args.promote, "--promote"), if_drift=parse_bool(args.if_drift, "--if-drift"),
            drift_max_age=args.drift_max_age, experiment_name=args.experiment, label_delay=args.label_delay)
    except DataValidationError as exc:
        print(f"training data failed validation:\n{exc}", file=sys.stderr)
        return 1
    except DegenerateModelError as exc:
        print(f"retrain refused: {exc}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.skipped:
        print(f"retrain skipped: {result.reason}")
        return 0
    print(f"candidate {result.outcome.model_name} v{result.version} (run {result.run_id}): {result.reason}")
    print(f"data: {result.data_counts}; holdout [{result.split.test_start}, {result.split.test_end})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
