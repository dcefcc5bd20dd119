"""Compare model families on the time split, on the simulator AND on the independent generator.

Reads:  nothing: each dataset is generated (simulator.generator, simulator.independent) with
        fixed seeds, written to a temporary Parquet file and prepared exactly as pipelines.train
        prepares --data (features on the whole history, then the fit / validation / test periods).
Writes: docs/model_comparison/<label>.json (one result per dataset and model) and, with
        --render, docs/model_comparison.md (the table of every JSON in that folder).

Each model is fitted on the fit period; the hyperopt search (``--trials`` > 0, pipelines.tune's
search across families, class weights included) only sees the validation period; the test
period (after the gap) gives AUC ROC, average precision and CP@100 with the card-level protocol
(pipelines.evaluation_metrics.card_precision_at_k: per day the 100 cards with the highest
score, cards already known compromised removed).

Run:
    python -m pipelines.compare_models --label after --trials 16
    python -m pipelines.compare_models --render
The "before" rows were measured with this same module on the code before the merchant
features (commit d4128ce, fs-v1): see docs/model_comparison.md for the exact command.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("pipelines.compare_models")

RESULTS_DIR = Path("docs/model_comparison")
TABLE = Path("docs/model_comparison.md")
DATASETS = ("simulator", "independent")
FAMILIES = ("hist_gradient_boosting", "random_forest", "logistic")
DEFAULT_DAYS, DEFAULT_SIZE, DEFAULT_SEED = 30, 1000, 7


@dataclass(frozen=True)
class Result:
    """Test-period metrics of one model on one dataset."""

    label: str
    dataset: str
    model: str
    params: dict[str, Any]
    feature_set_version: str
    test_auc_roc: float
    test_average_precision: float
    test_cp_at_100: float
    test_cp_at_100_best: float
    val_average_precision: float
    test_rows: int
    test_frauds: int
    fit_seconds: float


# --- data ---------------------------------------------------------------------------------------
def dataset_frame(name: str, days: int, size: int, seed: int) -> pd.DataFrame:
    """Labelled history of ``name``: ``simulator`` (size = customers) or ``independent`` (size = cards)."""
    if name == "simulator":
        from simulator.generator import generate_history

        return generate_history(days=days, customers=size, seed=seed)
    if name == "independent":
        from simulator.independent import generate_independent

        return generate_independent(days=days, cards=size, seed=seed).drop(columns=["fraud_pattern"])
    raise ValueError(f"dataset={name!r} is not one of {', '.join(DATASETS)}")


def legacy_clean(frame: pd.DataFrame) -> pd.DataFrame:
    """For feature code without features.batch.clean_transactions (the "before" measurement):
    the rows that code accepted (amount > 0, unique transaction_id, aware UTC times)."""
    out = frame[pd.to_numeric(frame["amount"], errors="coerce") > 0].drop_duplicates("transaction_id")
    times = pd.to_datetime(out["transaction_time"])
    out = out.assign(transaction_time=times.dt.tz_localize("UTC") if times.dt.tz is None else times)
    if "label_time" in out.columns:
        labels = pd.to_datetime(out["label_time"])
        out = out.assign(label_time=labels.dt.tz_localize("UTC") if labels.dt.tz is None else labels)
    return out.reset_index(drop=True)


def prepared_dataset(name: str, days: int, size: int, seed: int):
    """pipelines.train.PreparedData of a generated dataset (through a Parquet file, as --data)."""
    import features.batch
    from pipelines.train import prepare_data

    frame = dataset_frame(name, days, size, seed)
    if not hasattr(features.batch, "clean_transactions"):
        frame = legacy_clean(frame)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        return prepare_data(str(path))


# --- models -------------------------------------------------------------------------------------
def measure(label: str, dataset: str, prepared, model_type: str, params: dict[str, Any] | None,
            name: str | None = None) -> Result:
    """Fit on the fit period; AP on validation; AUC, AP, CP@100 on the test period."""
    from features.definition import FEATURE_SET_VERSION
    from pipelines.evaluation_metrics import card_precision_at_k, ranking_metrics
    from pipelines.train import feature_lists, fit_pipeline, score_rows, scored_frame

    numeric, categorical = feature_lists("all")
    frames = prepared.frames
    started = time.perf_counter()
    pipeline = fit_pipeline(model_type, frames.fit, numeric, categorical, params)
    seconds = time.perf_counter() - started
    validation = ranking_metrics(frames.validation["is_fraud"], score_rows(pipeline, frames.validation, numeric, categorical))
    scored = scored_frame(frames.test, score_rows(pipeline, frames.test, numeric, categorical))
    ranking = ranking_metrics(scored["label"], scored["score"])
    cards = card_precision_at_k(scored)
    return Result(label, dataset, name or model_type, {"model_type": model_type, **dict(params or {})},
                  FEATURE_SET_VERSION, ranking["auc_roc"], ranking["average_precision"],
                  cards["card_precision_at_k"], cards["card_precision_at_k_best"],
                  validation["average_precision"], len(scored), int(scored["label"].sum()), seconds)


def tuned_choice(prepared, trials: int, seed: int) -> tuple[str, dict[str, Any]]:
    """pipelines.tune's search across families (validation period only), without MLflow."""
    from pipelines.tune import search_families

    return search_families(prepared, trials, seed)


def compare_dataset(label: str, dataset: str, days: int, size: int, seed: int, trials: int,
                    defaults: bool = True) -> list[Result]:
    """Every family with its default parameters (unless not ``defaults``), then the tuned best
    (when ``trials`` > 0)."""
    prepared = prepared_dataset(dataset, days, size, seed)
    results = []
    for family in FAMILIES if defaults else ():
        results.append(measure(label, dataset, prepared, family, None, f"{family} (defaults)"))
        log.info("%s", results[-1])
    if trials > 0:
        model_type, params = tuned_choice(prepared, trials, seed)
        results.append(measure(label, dataset, prepared, model_type, params, f"tuned: {model_type}"))
        log.info("%s", results[-1])
    return results


# --- output -------------------------------------------------------------------------------------
def write_results(label: str, results: Sequence[Result], folder: Path = RESULTS_DIR,
                  settings: dict[str, Any] | None = None, name: str | None = None) -> Path:
    """docs/model_comparison/<name or label>.json."""
    from fraudops.jsonutil import strict_dumps

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or label}.json"
    path.write_text(strict_dumps({"label": label, "settings": settings or {},
                                  "results": [asdict(r) for r in results]}, indent=2) + "\n")
    return path


def render_table(folder: Path = RESULTS_DIR) -> str:
    """The markdown table of every result file in ``folder`` (dataset, then label, then model)."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        rows += json.loads(path.read_text())["results"]
    rows.sort(key=lambda r: (DATASETS.index(r["dataset"]), r["label"] != "before", r["model"]))
    lines = ["| dataset | code | model | features | test AUC | test AP | test CP@100 (best possible) | val AP |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {r['label']} | {r['model']} | {r['feature_set_version']} | "
              f"{r['test_auc_roc']:.3f} | {r['test_average_precision']:.3f} | "
              f"{r['test_cp_at_100']:.3f} ({r['test_cp_at_100_best']:.3f}) | {r['val_average_precision']:.3f} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def render(folder: Path = RESULTS_DIR, table: Path = TABLE) -> Path:
    """Replace the table between the markers of docs/model_comparison.md."""
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    text = table.read_text() if table.exists() else f"# Model comparison\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    table.write_text(f"{head}{start}\n{render_table(folder)}{end}{rest.split(end, 1)[1]}")
    return table


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipelines.compare_models``."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m pipelines.compare_models", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--label", default="after", help="name of this measurement (before/after)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated subset of {', '.join(DATASETS)}")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="days of each generated history")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="customers (simulator) / cards (independent)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the generators' seed")
    parser.add_argument("--trials", type=int, default=16, help="hyperopt trials across families (0: defaults only)")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="where each measurement's JSON goes")
    parser.add_argument("--results-name", default="", help="file name of this measurement (default: the label)")
    parser.add_argument("--skip-defaults", action="store_true", help="only the tuned best")
    parser.add_argument("--render", action="store_true", help="only rebuild docs/model_comparison.md")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    folder = Path(args.results_dir)
    if not args.render:
        np.seterr(all="ignore")
        results = [r for d in args.datasets.split(",")
                   for r in compare_dataset(args.label, d, args.days, args.size, args.seed, args.trials,
                                            not args.skip_defaults)]
        settings = {k: getattr(args, k) for k in ("days", "size", "seed", "trials")}
        print(f"wrote {write_results(args.label, results, folder, settings, args.results_name or None)}")
    print(render_table(folder))
    if args.render or folder == RESULTS_DIR:
        render(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
