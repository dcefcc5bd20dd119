"""Evaluate a model (default: the Production version) on an out-of-time period.

Reads:  --model-uri (models:/fraud-detector/Production by default; any pyfunc URI logged by
        pipelines.train works) and --data, labelled history in the raw schema (Parquet/CSV).
        Features are computed on the whole history, then the period [--test-start, --test-end)
        is scored (default: the last 20% of the history, as in training).
Writes: an MLflow run with the metrics (AUC ROC, average precision, precision/recall/F1 at the
        model version's threshold, Card Precision@100 per day, fraud amount caught and its
        share, recall per fraud_scenario) and the artifacts evaluation/report.json,
        evaluation/report.md and evaluation/scored_rows.parquet (transaction_id, user_id,
        transaction_time, amount, score, label, fraud_scenario).

Run:
    python -m pipelines.evaluate --model-uri models:/fraud-detector/Production --data data/history.parquet
    mlflow run . -e evaluate --env-manager local -P data=data/history.parquet
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.common import (
    DEFAULT_DATA,
    DEFAULT_LABEL_DELAY,
    cli_text,
    configure_logging,
    defaults_of,
    log_finite_metrics,
    start_step_run,
    use_experiment,
)
from pipelines.evaluation_metrics import evaluate_scored_rows, metrics_by_scenario
from pipelines.splits import derive_time_split, event_times, parse_time, slice_period
from pipelines.train import featurize_history, load_history, scored_frame

log = logging.getLogger("pipelines.evaluate")

DEFAULT_EXPERIMENT = "fraud-detection-evaluation"
HEADLINE_METRICS = ("auc_roc", "average_precision", "precision", "recall", "f1", "card_precision_at_100",
                    "card_precision_at_100_best", "fraud_amount_caught", "fraud_amount_total",
                    "fraud_amount_caught_share", "alert_rate", "rows", "fraud_rate")


@dataclass(frozen=True)
class Holdout:
    """The featurized rows of an evaluation period."""

    rows: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp


@dataclass(frozen=True)
class ScoringModel:
    """A loaded pyfunc with what it needs to be judged: threshold, version, feature set."""

    model_uri: str
    model: Any
    metadata: Any  # fraudops.modeling.model.ModelMetadata
    threshold: float
    version: str | None


@dataclass
class EvaluationResult:
    """Metrics of one model on one holdout, and the scored rows."""

    model_uri: str
    version: str | None
    threshold: float
    feature_set_version: str
    period: tuple[str, str]
    metrics: dict[str, float]
    per_scenario: dict[str, dict[str, float]]
    scored: pd.DataFrame = field(repr=False)
    run_id: str | None = None


def build_holdout(featurized: pd.DataFrame, test_start=None, test_end=None) -> Holdout:
    """Slice [test_start, test_end) from featurized history (defaults: the training split's test period).

    Raises:
        ValueError: naming the period when it holds no rows.
    """
    times = event_times(featurized)
    start, end = parse_time(test_start, "test_start"), parse_time(test_end, "test_end")
    if start is None or end is None:
        default = derive_time_split(times, test_start=start, test_end=end)
        start = default.test_start if start is None else start
        end = default.test_end if end is None else end
    rows = slice_period(featurized, start, end)
    if rows.empty:
        raise ValueError(f"no transactions in the evaluation period [{start.isoformat()}, {end.isoformat()})")
    return Holdout(rows, start, end)


def load_holdout(data: str, test_start=None, test_end=None, label_delay: str | float = DEFAULT_LABEL_DELAY) -> Holdout:
    """Read labelled history, compute features on all of it, slice the evaluation period."""
    return build_holdout(featurize_history(load_history(data), label_delay), test_start, test_end)


def load_scoring_model(model_uri: str, client=None) -> ScoringModel:
    """Load ``model_uri`` and its threshold (the version's tag for models:/ URIs, else the metadata).

    Raises:
        ValueError: when the model was trained on another feature set than the code computes.
    """
    from features.definition import FEATURE_SET_VERSION
    from fraudops.modeling import registry
    from fraudops.modeling.model import load_fraud_model, read_model_metadata

    version, threshold, uri = None, None, model_uri
    if model_uri.startswith("models:/"):
        model_version = registry.resolve_model_version(model_uri, client)
        version, threshold = str(model_version.version), registry.version_threshold(model_version)
        uri = f"models:/{model_version.name}/{model_version.version}"  # pinned: Production may move meanwhile
    model = load_fraud_model(uri)
    metadata = read_model_metadata(model)
    if metadata.feature_set_version != FEATURE_SET_VERSION:
        raise ValueError(
            f"{model_uri} was trained on feature set {metadata.feature_set_version!r}; this code computes "
            f"{FEATURE_SET_VERSION!r}, so it cannot be evaluated fairly here"
        )
    return ScoringModel(uri, model, metadata, metadata.decision_threshold if threshold is None else threshold, version)


def score_holdout(scoring: ScoringModel, holdout: Holdout) -> EvaluationResult:
    """Score the holdout through the pyfunc (as served) and compute every metric."""
    from fraudops.modeling.model import prepare_model_input

    md = scoring.metadata
    scores = np.asarray(scoring.model.predict(prepare_model_input(holdout.rows, md.numeric_features,
                                                                  md.categorical_features)), dtype="float64")
    scored = scored_frame(holdout.rows, scores)
    return EvaluationResult(
        model_uri=scoring.model_uri, version=scoring.version, threshold=scoring.threshold,
        feature_set_version=md.feature_set_version,
        period=(holdout.start.isoformat(), holdout.end.isoformat()),
        metrics=evaluate_scored_rows(scored, scoring.threshold),
        per_scenario=metrics_by_scenario(scored, scoring.threshold), scored=scored,
    )


def evaluate_on_holdout(model_uri: str, holdout: Holdout, client=None) -> EvaluationResult:
    """Load ``model_uri`` and score ``holdout`` (promote calls this for candidate and champion)."""
    return score_holdout(load_scoring_model(model_uri, client), holdout)


# --- report -------------------------------------------------------------------------------------
def build_report(result: EvaluationResult) -> dict[str, Any]:
    """JSON-friendly report: model, period, threshold, headline metrics, per-scenario metrics."""
    def clean(value: float) -> float | None:
        return None if value is None or not math.isfinite(float(value)) else float(value)

    return {
        "model_uri": result.model_uri, "model_version": result.version, "threshold": result.threshold,
        "feature_set_version": result.feature_set_version,
        "period": {"start": result.period[0], "end": result.period[1]},
        "metrics": {k: clean(v) for k, v in result.metrics.items()},
        "per_scenario": {s: {k: clean(v) for k, v in m.items()} for s, m in result.per_scenario.items()},
    }


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a short markdown page."""
    lines = [
        f"# Evaluation of {report['model_uri']} (version {report['model_version']})", "",
        f"Period [{report['period']['start']}, {report['period']['end']}), decision threshold "
        f"{report['threshold']:.4f}, feature set {report['feature_set_version']}.", "",
        "| metric | value |", "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(report['metrics'].get(k))} |" for k in HEADLINE_METRICS if k in report["metrics"]]
    if report["per_scenario"]:
        lines += ["", "| fraud scenario | frauds | recall | mean score | amount caught share |", "|---|---|---|---|---|"]
        lines += [f"| {s} | {_fmt(m['frauds'])} | {_fmt(m['recall'])} | {_fmt(m['mean_score'])} | "
                  f"{_fmt(m['fraud_amount_caught_share'])} |" for s, m in sorted(report["per_scenario"].items())]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 or float(value).is_integer() else f"{value:.4f}"


def write_report(result: EvaluationResult, directory: Path) -> list[Path]:
    """Write report.json, report.md and scored_rows.parquet into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    report = build_report(result)
    paths = [directory / "report.json", directory / "report.md", directory / "scored_rows.parquet"]
    paths[0].write_text(json.dumps(report, indent=2))
    paths[1].write_text(report_markdown(report))
    result.scored.to_parquet(paths[2], index=False)
    return paths


def log_evaluation(result: EvaluationResult, data: str) -> str:
    """Log params, metrics (``test_`` prefix) and the report artifacts in a new run; returns its id."""
    import mlflow

    with start_step_run(f"evaluate-{result.version or 'model'}") as run:
        mlflow.set_tag("step", "evaluate")
        # names differ from the CLI flags: `mlflow run` logged those as given (e.g. test_start "")
        mlflow.log_params({"evaluated_model_uri": result.model_uri, "model_version": result.version or "",
                           "evaluation_data": data, "period_start": result.period[0], "period_end": result.period[1],
                           "threshold": result.threshold, "feature_set_version": result.feature_set_version})
        log_finite_metrics({f"test_{k}": v for k, v in result.metrics.items()})
        log_finite_metrics({f"test_recall_{s}": m["recall"] for s, m in result.per_scenario.items()})
        with tempfile.TemporaryDirectory() as tmp:
            write_report(result, Path(tmp))
            mlflow.log_artifacts(tmp, artifact_path="evaluation")
    return run.info.run_id


def evaluate_model(model_uri: str | None = None, data: str = DEFAULT_DATA, test_start=None,
                   test_end=None, experiment_name: str = DEFAULT_EXPERIMENT, output_dir: str | Path | None = None,
                   label_delay: str = DEFAULT_LABEL_DELAY, settings=None) -> EvaluationResult:
    """Evaluate ``model_uri`` on the period of ``data``, log the run, optionally write the report locally.

    Args:
        model_uri: default settings.model_uri (models:/fraud-detector/Production).
        data: labelled history (Parquet/CSV).
        test_start, test_end: the period (ISO; empty: the last 20% of the history).
        experiment_name: MLflow experiment of the evaluation run.
        output_dir: also write report.json/report.md/scored_rows.parquet here.
        label_delay: how long after a transaction its label is known (``1h``, ``7d``): the
            merchant features of the holdout use a label only from then on.
        settings: fraudops Settings (default: load_settings()).
    """
    from fraudops.modeling.registry import configure_tracking
    from fraudops.settings import load_settings

    settings = settings or load_settings()
    configure_tracking(settings)
    use_experiment(experiment_name)
    result = evaluate_on_holdout(model_uri or settings.model_uri, load_holdout(data, test_start, test_end, label_delay))
    result.run_id = log_evaluation(result, data)
    if output_dir:
        write_report(result, Path(output_dir))
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipelines.evaluate`` (MLproject entry point ``evaluate``)."""
    from fraudops.cli import HelpFormatter

    defaults = defaults_of(evaluate_model)
    parser = argparse.ArgumentParser(prog="python -m pipelines.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model-uri", default=cli_text(defaults["model_uri"]),
                        help="the model evaluated (default: MODEL_URI)")
    parser.add_argument("--data", default=defaults["data"], help="labelled history (Parquet/CSV) holding the holdout")
    parser.add_argument("--test-start", default=cli_text(defaults["test_start"]),
                        help="start of the holdout, ISO-8601 (default: as train chooses it)")
    parser.add_argument("--test-end", default=cli_text(defaults["test_end"]),
                        help="end of the holdout, ISO-8601 (default: the data's end)")
    parser.add_argument("--label-delay", default=defaults["label_delay"],
                        help="how long after a transaction its label is known (30m, 1h, 7d)")
    parser.add_argument("--experiment", default=defaults["experiment_name"],
                        help="MLflow experiment of the run (mlflow run: its own)")
    parser.add_argument("--output-dir", default=cli_text(defaults["output_dir"]), help="also write the report here (default: nowhere)")
    return parser


def main(argv: Sequence[str] | None = None) -> EvaluationResult:
    configure_logging()
    args = build_parser().parse_args(argv)
    result = evaluate_model(args.model_uri or None, args.data, args.test_start, args.test_end,
                            args.experiment, args.output_dir or None, args.label_delay)
    print(report_markdown(build_report(result)))
    return result


if __name__ == "__main__":
    main()
