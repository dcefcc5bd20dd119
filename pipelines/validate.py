"""Validate a dataset with a Great Expectations suite and log the result to MLflow.

Reads:  --data (Parquet, or CSV by extension) and the suite expectations/gx/expectations/<suite>.json
        ("raw_transactions": the message contract; "feature_table": features.definition).
Writes: an MLflow run (params data/suite; metrics validation_success, failed_expectations,
        evaluated_expectations, rows; artifact validation_report.txt). On failure it prints each
        failing expectation with its column and example transaction_ids and exits with status 1.

Run:
    mlflow run . -e validate --env-manager local -P data=data/history.parquet -P suite=raw_transactions
    python -m pipelines.validate --data data/history.parquet --suite raw_transactions
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import pandas as pd

from expectations.runner import ValidationOutcome, validate_dataframe
from expectations.suites import SUITE_BUILDERS
from pipelines.common import DEFAULT_DATA, DEFAULT_EXPERIMENT, configure_logging, use_experiment

log = logging.getLogger("pipelines.validate")


def load_table(data: str | Path) -> pd.DataFrame:
    """Read Parquet (any extension but .csv) or CSV.

    Raises:
        FileNotFoundError: naming the --data path when it does not exist.
    """
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"--data {path} does not exist")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"transaction_id": str, "user_id": str})
    return pd.read_parquet(path)


def validate(data: str | Path, suite: str) -> ValidationOutcome:
    """Load ``data`` and validate it with ``suite`` (no MLflow; see :func:`log_validation`)."""
    return validate_dataframe(load_table(data), suite)


def log_validation(data: str | Path, outcome: ValidationOutcome) -> str:
    """Log the outcome to MLflow; returns the run id."""
    import mlflow

    from fraudops.modeling.registry import configure_tracking

    configure_tracking()
    use_experiment(DEFAULT_EXPERIMENT)
    with mlflow.start_run(run_name=f"validate-{outcome.suite_name}") as run:
        mlflow.log_params({"data": str(data), "suite": outcome.suite_name})
        mlflow.log_metrics({
            "validation_success": float(outcome.success),
            "failed_expectations": float(len(outcome.failures)),
            "evaluated_expectations": float(outcome.evaluated_expectations),
            "rows": float(outcome.rows),
        })
        mlflow.set_tags({"step": "validate", "validation_status": "passed" if outcome.success else "failed"})
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "validation_report.txt"
            report.write_text(outcome.report() + "\n")
            mlflow.log_artifact(str(report))
        return run.info.run_id


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipelines.validate`` (MLproject entry point ``validate``)."""
    from fraudops.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m pipelines.validate", description="validate a dataset with a GE suite",
                                formatter_class=HelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="Parquet or CSV file")
    p.add_argument("--suite", default="raw_transactions", choices=sorted(SUITE_BUILDERS),
                   help="the Great Expectations suite (expectations/gx)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        outcome = validate(args.data, args.suite)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(outcome.report())
    if not args.no_mlflow:
        print(f"MLflow run {log_validation(args.data, outcome)}")
    return 0 if outcome.success else 1


if __name__ == "__main__":
    sys.exit(main())
