"""Drift check: recent scored transactions against the training reference of the served model.

Reads:  PostgreSQL ``<pg-schema>``.transactions of the window (feature vectors ``features``,
        ``fraud_score``, ``model_version``, ``scored_at``) and their labels; the model version that
        --model-uri resolves to (default MODEL_URI, models:/fraud-detector/Production) and its
        training run's artifact ``reference/features.parquet``.
Writes: ``<reports-dir>/drift_<UTC time>_<model>_v<version>.html`` (Evidently report); an MLflow run
        (experiment fraud-monitoring) with params, metrics (drift_share, drifted_columns_count,
        dataset_drift, score_drift_score, drift_score_<column>, precision/recall/f1 on the
        labelled rows), tag ``drifted_columns`` and the HTML report; monitoring_metrics rows of
        source ``drift`` (monitoring.alerts fires "drift detected" from them).
Exit:   0; 3 when the data drifted and ``--fail-on-drift true``; 2 on bad input (e.g. a window
        with fewer than --min-rows scored rows, or no Production model).

Run:
    python -m pipelines.drift --window 24h
    python -m pipelines.drift --window 5000 --fail-on-drift true     # the last 5000 scored rows
    mlflow run . -e drift --env-manager local -P window=24h
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from fraudops.errors import InsufficientDataError
from monitoring.drift import (
    DEFAULT_COLUMN_THRESHOLD,
    DEFAULT_DRIFT_SHARE,
    SCORE_COLUMN,
    DriftResult,
    detect_drift,
    features_frame,
    split_feature_columns,
)
from monitoring.performance import decision_performance
from monitoring.storage import MetricRow, connect_schema, insert_metric_rows
from monitoring.windows import Window, parse_window
from pipelines.common import (
    cli_text,
    configure_logging,
    defaults_of,
    log_finite_metrics,
    parse_bool,
    whole_number,
)

log = logging.getLogger("pipelines.drift")

EXPERIMENT = "fraud-monitoring"
METRIC_SOURCE = "drift"
DRIFT_EXIT_CODE = 3
DEFAULT_MIN_ROWS = 200
DEFAULT_MAX_ROWS = 50_000
REFERENCE_META_COLUMNS = ("transaction_time", "score", "label")


@dataclass(frozen=True)
class DriftCheck:
    """One drift check: the verdict, what it compared and where it was recorded."""

    result: DriftResult
    model_name: str
    model_version: str
    window: str
    performance: dict[str, float | None]
    report_path: Path
    run_id: str | None


# --- inputs -------------------------------------------------------------------------------------
def resolve_reference_model(model_uri: str, client):
    """The ModelVersion ``model_uri`` points at; LookupError naming the URI when there is none."""
    from mlflow.exceptions import MlflowException

    from fraudops.modeling.registry import resolve_model_version

    try:
        return resolve_model_version(model_uri, client)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
            raise LookupError(f"model_uri={model_uri!r}: no such registered model or version") from None
        raise


def load_reference(model_version) -> pd.DataFrame:
    """The model version's training reference sample (feature columns, score, label)."""
    from fraudops.modeling.registry import download_reference_features

    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(download_reference_features(model_version, tmp))


def current_frame(rows: pd.DataFrame, model_version: str) -> pd.DataFrame:
    """Feature vectors of the scored rows plus ``score``: the fraud score of rows scored by
    ``model_version`` (NaN for rows another version scored: its scores are not comparable)."""
    frame = features_frame(rows)
    same_version = rows["model_version"].astype(str) == str(model_version)
    frame[SCORE_COLUMN] = pd.to_numeric(rows["fraud_score"], errors="coerce").where(same_version)
    return frame


def labelled_performance(rows: pd.DataFrame) -> dict[str, float | None]:
    """Precision/recall/F1 of the stream's decisions on the window's labelled rows."""
    labelled = rows[rows["label"].notna() & rows["is_fraud"].notna()]
    return decision_performance(labelled["is_fraud"].tolist(), labelled["label"].tolist())


def read_window(settings, pg_schema: str, window: Window, min_rows: int, max_rows: int) -> pd.DataFrame:
    """Scored rows of the window (raises InsufficientDataError when fewer than ``min_rows``)."""
    from monitoring.queries import recent_scored_rows

    conn = connect_schema(settings, pg_schema)
    try:
        rows = recent_scored_rows(conn, window, max_rows)
    finally:
        conn.close()
    if len(rows) < min_rows:
        raise InsufficientDataError(
            f"window={window.text!r} ({window.describe()}) holds {len(rows)} scored row(s) with feature "
            f"vectors in schema {pg_schema!r}; need at least min_rows={min_rows}"
        )
    return rows


# --- outputs ------------------------------------------------------------------------------------
def report_file(reports_dir: str | Path, model_name: str, model_version: str, now: datetime) -> Path:
    return Path(reports_dir) / f"drift_{now:%Y%m%dT%H%M%SZ}_{model_name}_v{model_version}.html"


def metric_rows(check: DriftCheck) -> list[MetricRow]:
    """The monitoring_metrics rows of a check (labels: model, window, run, drifted columns)."""
    result, perf = check.result, check.performance
    labels = {"model_name": check.model_name, "model_version": check.model_version, "window": check.window,
              "run_id": check.run_id, "drifted_columns": result.drifted_columns,
              "drift_share_threshold": result.drift_share_threshold, "report": str(check.report_path)}
    values = {
        "drift_share": result.drift_share,
        "drifted_columns_count": float(len(result.drifted_columns)),
        "dataset_drift": float(result.dataset_drift),
        "score_drift_score": result.score_drift.score if result.score_drift else None,
        "current_rows": float(result.current_rows),
        **{k: perf[k] for k in ("precision", "recall", "f1", "labelled_rows")},
    }
    return [MetricRow(name, value, labels) for name, value in values.items()]


def log_run(check: DriftCheck, params: dict, experiment: str) -> str:
    """Log the check to MLflow (params, metrics, tags, HTML report); returns the run id."""
    import mlflow

    from monitoring.tracking import set_experiment_unless_entry_point

    set_experiment_unless_entry_point(experiment)
    with mlflow.start_run(run_name=f"drift-{check.model_name}-v{check.model_version}") as run:
        mlflow.log_params(params)
        perf = {f"labelled_{k}": v for k, v in check.performance.items() if v is not None}
        log_finite_metrics({**check.result.metrics(), **perf})
        mlflow.set_tags({"step": "drift", "dataset_drift": str(check.result.dataset_drift).lower(),
                         "drifted_columns": ",".join(check.result.drifted_columns)[:5000] or "(none)",
                         "model_version": f"{check.model_name}/{check.model_version}"})
        mlflow.log_artifact(str(check.report_path), artifact_path="drift")
        return run.info.run_id


def record_check(settings, pg_schema: str, check: DriftCheck) -> None:
    """Insert the check's monitoring_metrics rows (one transaction)."""
    conn = connect_schema(settings, pg_schema)
    try:
        insert_metric_rows(conn, METRIC_SOURCE, metric_rows(check))
        conn.commit()
    finally:
        conn.close()


# --- the step -----------------------------------------------------------------------------------
def run_drift_check(
    window: str = "24h",
    model_uri: str | None = None,
    pg_schema: str = "public",
    drift_share: float = DEFAULT_DRIFT_SHARE,
    column_threshold: float = DEFAULT_COLUMN_THRESHOLD,
    reports_dir: str | Path = "reports",
    min_rows: int = DEFAULT_MIN_ROWS,
    max_rows: int = DEFAULT_MAX_ROWS,
    experiment: str = EXPERIMENT,
    log_to_mlflow: bool = True,
    settings=None,
) -> DriftCheck:
    """Compare the window's scored rows with the served model's reference; record the result.

    Args:
        window: ``24h``-style duration (by scored_at) or a row count (the newest rows).
        model_uri: registry URI of the reference model (default: settings.model_uri).
        pg_schema: PostgreSQL schema of the tables.
        drift_share, column_threshold: see monitoring.drift.detect_drift.
        reports_dir: folder of the HTML reports.
        min_rows: fewest scored rows worth comparing; max_rows: newest rows read at most.
        experiment: MLflow experiment (ignored inside `mlflow run`).
        log_to_mlflow: log a run (the monitoring_metrics rows are written either way).
        settings: fraudops Settings (default: load_settings()).

    Raises:
        InsufficientDataError: fewer than ``min_rows`` rows; LookupError: no such model version.
    """
    from fraudops.modeling.registry import registry_client
    from fraudops.settings import load_settings

    settings = settings or load_settings()
    parsed = parse_window(window)
    client = registry_client(settings)
    version = resolve_reference_model(model_uri or settings.model_uri, client)
    rows = read_window(settings, pg_schema, parsed, min_rows, max_rows)
    reference = load_reference(version)
    numeric, categorical = split_feature_columns([c for c in reference.columns if c not in REFERENCE_META_COLUMNS])
    result = detect_drift(reference, current_frame(rows, version.version), numeric, categorical,
                          drift_share=drift_share, column_threshold=column_threshold)
    path = result.save_html(report_file(reports_dir, version.name, version.version, datetime.now(UTC)))
    check = DriftCheck(result, version.name, str(version.version), parsed.text, labelled_performance(rows), path, None)
    if log_to_mlflow:
        # names differ from the entry point's parameters: `mlflow run` logged those already, as given
        # (model_uri as ''), and MLflow refuses to change a param's value
        params = {"checked_window": parsed.text, "reference_model_uri": model_uri or settings.model_uri,
                  "model_version": version.version, "checked_schema": pg_schema, "drift_share_threshold": drift_share,
                  "column_drift_threshold": column_threshold, "window_min_rows": min_rows,
                  "window_max_rows": max_rows}
        check = DriftCheck(**{**check.__dict__, "run_id": log_run(check, params, experiment)})
    record_check(settings, pg_schema, check)
    return check


# --- CLI ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from fraudops.cli import HelpFormatter

    defaults = defaults_of(run_drift_check)
    p = argparse.ArgumentParser(prog="python -m pipelines.drift", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--window", default=defaults["window"], help="duration by scored_at (30m, 24h, 7d) or a row count (5000)")
    p.add_argument("--model-uri", default=cli_text(defaults["model_uri"]), help="reference model (default: MODEL_URI)")
    p.add_argument("--pg-schema", default=defaults["pg_schema"], help="PostgreSQL schema of the scored transactions")
    p.add_argument("--drift-share", type=float, default=defaults["drift_share"],
                   help="share of drifted feature columns at which the data counts as drifted")
    p.add_argument("--column-threshold", type=float, default=defaults["column_threshold"],
                   help="distance at which one column counts as drifted")
    p.add_argument("--reports-dir", default=str(defaults["reports_dir"]), help="where the HTML/JSON report goes")
    p.add_argument("--min-rows", type=whole_number, default=defaults["min_rows"],
                   help="fewer scored rows in the window: no verdict")
    p.add_argument("--max-rows", type=whole_number, default=defaults["max_rows"],
                   help="at most this many of the window's newest rows are compared")
    p.add_argument("--experiment", default=defaults["experiment"], help="MLflow experiment of the run (mlflow run: its own)")
    p.add_argument("--fail-on-drift", default="false", help=f"true: exit {DRIFT_EXIT_CODE} when the data drifted")
    return p


def summary(check: DriftCheck) -> str:
    result, perf = check.result, check.performance
    score = f"{result.score_drift.score:.3f}" if result.score_drift else "n/a"
    lines = [
        f"model {check.model_name} v{check.model_version}, window {check.window}: "
        f"{result.current_rows} current vs {result.reference_rows} reference rows",
        f"drift share {result.drift_share:.3f} (threshold {result.drift_share_threshold}) -> "
        f"{'DRIFT' if result.dataset_drift else 'no drift'}; drifted: {', '.join(result.drifted_columns) or 'none'}",
        f"score drift {score}; labelled rows {perf['labelled_rows']:.0f}: precision {perf['precision']} "
        f"recall {perf['recall']}",
        f"report {check.report_path}" + (f"; MLflow run {check.run_id}" if check.run_id else ""),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        fail_on_drift = parse_bool(args.fail_on_drift, "--fail-on-drift")
        check = run_drift_check(window=args.window, model_uri=args.model_uri or None, pg_schema=args.pg_schema,
                                drift_share=args.drift_share, column_threshold=args.column_threshold,
                                reports_dir=args.reports_dir, min_rows=args.min_rows, max_rows=args.max_rows,
                                experiment=args.experiment)
    except (ValueError, KeyError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(check))
    return DRIFT_EXIT_CODE if fail_on_drift and check.result.dataset_drift else 0


if __name__ == "__main__":
    sys.exit(main())
