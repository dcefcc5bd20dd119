"""Generate labelled transaction history with the simulator and log its statistics to MLflow.

Reads:  nothing (simulator.generator builds the world from --seed and --customers).
Writes: --output (Parquet, or CSV when it ends in .csv): the message fields plus is_fraud,
        fraud_scenario and label_time; an MLflow run with the parameters, rows, fraud rate
        overall and per scenario, and scenario_summary.json (tracking URI from the settings;
        MLFLOW_TRACKING_URI wins).

Run:
    mlflow run . -e generate --env-manager local -P days=30 -P customers=2000 -P fraud_ratio=0.008 -P seed=42
    python -m pipelines.generate --days 30 --customers 2000 --fraud-ratio 0.008 --seed 42 --output data/history.parquet
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.common import DEFAULT_DATA, DEFAULT_EXPERIMENT, configure_logging, use_experiment
from simulator.generator import DEFAULT_FRAUD_RATIO, FRAUD_SCENARIOS, generate_history, scenario_summary

log = logging.getLogger("pipelines.generate")


@dataclass(frozen=True)
class GenerateResult:
    """Where the history went and what it holds."""

    output: Path
    statistics: dict[str, float]
    seconds: float


def history_statistics(history: pd.DataFrame) -> dict[str, float]:
    """Rows, customers, merchants, fraud rate overall and per scenario (rows_<s>, fraud_rate_<s>)."""
    summary = scenario_summary(history)
    stats: dict[str, float] = {
        "rows": float(len(history)),
        "frauds": float(history["is_fraud"].sum()),
        "fraud_rate": float(history["is_fraud"].mean()) if len(history) else 0.0,
        "customers_active": float(history["user_id"].nunique()),
        "merchants_active": float(history["merchant_id"].nunique()),
    }
    for scenario in FRAUD_SCENARIOS:
        stats[f"rows_{scenario}"] = float(summary.loc[scenario, "rows"])
        stats[f"fraud_rate_{scenario}"] = float(summary.loc[scenario, "rate"])
    return stats


def write_table(frame: pd.DataFrame, output: Path) -> Path:
    """Write Parquet (or CSV for a .csv path), creating the folder."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".csv":
        frame.to_csv(output, index=False)
    else:
        frame.to_parquet(output, index=False)
    return output


def generate(days: int, customers: int, fraud_ratio: float, seed: int, output: str | Path) -> GenerateResult:
    """Generate the history and write it to ``output`` (no MLflow; see :func:`log_generation`)."""
    started = time.perf_counter()
    history = generate_history(days, customers, fraud_ratio=fraud_ratio, seed=seed)
    path = write_table(history, Path(output))
    return GenerateResult(path, history_statistics(history), time.perf_counter() - started)


def log_generation(params: dict, result: GenerateResult) -> str:
    """Log params, statistics and the scenario summary to MLflow; returns the run id."""
    import mlflow

    from fraudops.modeling.registry import configure_tracking

    configure_tracking()
    use_experiment(DEFAULT_EXPERIMENT)
    with mlflow.start_run(run_name="generate") as run:
        mlflow.log_params({**params, "output": str(result.output)})
        mlflow.log_metrics({**result.statistics, "generation_seconds": result.seconds})
        mlflow.set_tag("step", "generate")
        with tempfile.TemporaryDirectory() as tmp:
            summary = Path(tmp) / "scenario_summary.json"
            summary.write_text(json.dumps(result.statistics, indent=2))
            mlflow.log_artifact(str(summary))
        return run.info.run_id


def _whole_number(name: str, minimum: int):
    def parse(text: str) -> int:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not value.is_integer() or value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number >= {minimum}, got {text!r}")
        return int(value)

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipelines.generate`` (MLproject entry point ``generate``)."""
    from fraudops.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m pipelines.generate", description="generate labelled history",
                                formatter_class=HelpFormatter)
    p.add_argument("--days", type=_whole_number("--days", 1), default=30, help="days of history, >= 1")
    p.add_argument("--customers", type=_whole_number("--customers", 1), default=2000, help="customers, >= 1")
    p.add_argument("--fraud-ratio", type=float, default=DEFAULT_FRAUD_RATIO, help="share of fraudulent transactions, in [0, 0.5)")
    p.add_argument("--seed", type=_whole_number("--seed", 0), default=42, help="the simulator's seed (same seed: same history)")
    p.add_argument("--output", default=DEFAULT_DATA, help="Parquet path (or .csv)")
    p.add_argument("--no-mlflow", action="store_true", help="only write the file")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if not 0.0 <= args.fraud_ratio < 0.5:
        p.error(f"--fraud-ratio must be in [0, 0.5), got {args.fraud_ratio}")
    return args


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    result = generate(args.days, args.customers, args.fraud_ratio, args.seed, args.output)
    stats = result.statistics
    print(f"wrote {int(stats['rows'])} transactions ({int(stats['frauds'])} frauds, rate {stats['fraud_rate']:.4f}) "
          f"to {result.output} in {result.seconds:.1f}s")
    for scenario in FRAUD_SCENARIOS:
        print(f"  {scenario:24s} {int(stats[f'rows_{scenario}']):7d} rows  rate {stats[f'fraud_rate_{scenario}']:.5f}")
    if not args.no_mlflow:
        params = {"days": args.days, "customers": args.customers, "fraud_ratio": args.fraud_ratio, "seed": args.seed}
        print(f"MLflow run {log_generation(params, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
