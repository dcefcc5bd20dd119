"""The whole batch loop in one command: generate -> validate -> train -> evaluate -> promote.

Reads:  nothing but its parameters (the simulator makes the data).
Writes: --data (default data/history.parquet), one MLflow run per step (generate and validate in
        experiment fraud-detection; train, evaluate, promote as pipelines.train/evaluate/promote
        write them), a new registered version of fraud-detector, promoted by the policy (the
        first one becomes Production), an audit_log row, and a summary in this command's own run
        (tags step=main, the version and the decision).

Steps are plain function calls; evaluate and promote share one featurized holdout.

Run:
    python -m pipelines.main --days 30 --customers 2000 --model-type hist_gradient_boosting
    mlflow run . -e main --env-manager local -P days=30 -P customers=2000
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fraudops.errors import DataValidationError
from pipelines.common import (
    DEFAULT_DATA,
    DEFAULT_EXPERIMENT,
    DEFAULT_MODEL_TYPE,
    configure_logging,
    defaults_of,
    use_experiment,
    whole_number,
)
from simulator.generator import DEFAULT_FRAUD_RATIO

log = logging.getLogger("pipelines.main")

RAW_SUITE = "raw_transactions"


@dataclass(frozen=True)
class PipelineResult:
    """What each step produced."""

    data: Path
    train_run_id: str
    version: str | None
    evaluation_run_id: str | None
    test_metrics: dict[str, float]
    decision: str
    applied_stage: str | None


@contextlib.contextmanager
def steps_in_own_runs():
    """Let each step open its own run even under `mlflow run -e main` (which sets MLFLOW_RUN_ID).

    Yields the id of the run `mlflow run` created (None when run as a plain module).
    """
    run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        yield run_id
    finally:
        if run_id is not None:
            os.environ["MLFLOW_RUN_ID"] = run_id


def generate_and_validate(days: int, customers: int, fraud_ratio: float, seed: int, data: Path) -> Path:
    """Generate history to ``data`` and validate it; raises DataValidationError listing failures."""
    from pipelines import generate, validate

    generated = generate.generate(days, customers, fraud_ratio, seed, data)
    generate.log_generation({"days": days, "customers": customers, "fraud_ratio": fraud_ratio, "seed": seed}, generated)
    outcome = validate.validate(generated.output, RAW_SUITE)
    validate.log_validation(generated.output, outcome)
    if not outcome.success:
        raise DataValidationError(f"{generated.output} failed suite {RAW_SUITE}:\n{outcome.report()}")
    return generated.output


def record_summary(run_id: str | None, result: PipelineResult, settings) -> str:
    """Tags and metrics of the main run (the one `mlflow run` created, else a new one); returns its id.

    Written through the client: the steps switched the active experiment, so the fluent API
    would refuse to resume the `mlflow run` run.
    """
    import mlflow
    from mlflow import MlflowClient

    if run_id is None:
        use_experiment(DEFAULT_EXPERIMENT)
        with mlflow.start_run(run_name="main") as run:
            run_id = run.info.run_id
    client = MlflowClient()
    tags = {"step": "main", "train_run_id": result.train_run_id,
            "registered_version": f"{settings.model_name}/{result.version}",
            "promotion_decision": result.decision[:4900], "applied_stage": str(result.applied_stage)}
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    for key in ("auc_roc", "average_precision", "card_precision_at_100"):
        client.log_metric(run_id, f"test_{key}", float(result.test_metrics[key]))
    return run_id


def train_or_tune(model_type: str, data: str, tune_evals: int, settings) -> tuple[str, str]:
    """(run id, registered version) of pipelines.train's model, or of pipelines.tune's best when
    ``tune_evals`` > 0 (the search across families of ``model_type``; ``all`` with the default type)."""
    from pipelines.train import train_model
    from pipelines.tune import ALL_FAMILIES, tune_model

    if tune_evals > 0:
        searched = ALL_FAMILIES if model_type == DEFAULT_MODEL_TYPE else model_type
        tuned = tune_model(searched, data, max_evals=tune_evals, settings=settings)
        return tuned.run_id, tuned.version
    trained = train_model(model_type, data=data, settings=settings)
    return trained.run_id, trained.version


def run_pipeline(days: int = 30, customers: int = 2000, model_type: str = DEFAULT_MODEL_TYPE,
                 data: str | Path = DEFAULT_DATA, fraud_ratio: float = DEFAULT_FRAUD_RATIO, seed: int = 42,
                 tune_evals: int = 0, settings=None) -> PipelineResult:
    """Run every step; each step's failure stops the chain with its own error.

    Args:
        days, customers, fraud_ratio, seed: the generated history.
        model_type: what pipelines.train fits.
        data: where the history is written.
        tune_evals: > 0: train the best of a pipelines.tune search with this many trials (across
            families when ``model_type`` is the default) instead of ``model_type``'s defaults.
        settings: fraudops Settings (default load_settings()).
    """
    from fraudops.modeling.registry import configure_tracking
    from fraudops.settings import load_settings
    from pipelines.evaluate import evaluate_on_holdout, load_holdout, log_evaluation
    from pipelines.promote import promote_version

    settings = settings or load_settings()
    configure_tracking(settings)
    with steps_in_own_runs() as main_run_id:
        path = generate_and_validate(days, customers, fraud_ratio, seed, Path(data))
        run_id, version = train_or_tune(model_type, str(path), tune_evals, settings)
        holdout = load_holdout(str(path))
        evaluation = evaluate_on_holdout(f"models:/{settings.model_name}/{version}", holdout)
        evaluation.run_id = log_evaluation(evaluation, str(path))
        outcome = promote_version(version, str(path), dry_run=False, holdout=holdout, settings=settings)
    result = PipelineResult(path, run_id, version, evaluation.run_id, evaluation.metrics,
                            outcome.decision.explain(), outcome.applied_stage)
    record_summary(main_run_id, result, settings)
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipelines.main`` (MLproject entry point ``main``)."""
    from fraudops.cli import HelpFormatter
    from fraudops.modeling.model import MODEL_TYPES

    defaults = defaults_of(run_pipeline)
    parser = argparse.ArgumentParser(prog="python -m pipelines.main", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--days", type=whole_number, default=defaults["days"], help="days of history to generate")
    parser.add_argument("--customers", type=whole_number, default=defaults["customers"],
                        help="customers of the generated history")
    parser.add_argument("--model-type", default=defaults["model_type"],
                        help=f"what train fits: one of {', '.join(MODEL_TYPES)}")
    parser.add_argument("--data", default=str(defaults["data"]), help="where the generated history is written")
    parser.add_argument("--fraud-ratio", type=float, default=defaults["fraud_ratio"],
                        help="share of fraudulent transactions in the history")
    parser.add_argument("--seed", type=whole_number, default=defaults["seed"], help="the simulator's seed")
    parser.add_argument("--tune-evals", type=whole_number, default=defaults["tune_evals"],
                        help="> 0: train the best of a hyperopt search with this many trials")
    return parser


def main(argv: Sequence[str] | None = None) -> PipelineResult:
    configure_logging()
    args = build_parser().parse_args(argv)
    result = run_pipeline(args.days, args.customers, args.model_type, args.data, args.fraud_ratio, args.seed,
                          args.tune_evals)
    m = result.test_metrics
    print(f"data {result.data}; version {result.version}; test AUC {m['auc_roc']:.4f} AP {m['average_precision']:.4f} "
          f"CP@100 {m['card_precision_at_100']:.4f}; {result.decision}")
    return result


if __name__ == "__main__":
    main()
