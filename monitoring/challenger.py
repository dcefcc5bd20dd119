"""Champion against challenger on live labels (issue 15).

The scoring job stores the champion's score in transactions and, while a challenger (Staging
stage or alias ``challenger``) exists, the challenger's in shadow_scores. As labels arrive
(chargebacks, analyst reviews; a transaction's latest label counts), this compares both on the
SAME labelled transactions: average precision, AUC ROC, precision and recall at the champion's
alert volume (each model's top-k scores, k = the champion's alerts), the alert overlap of their
own threshold decisions, and the number of labels behind each figure.

Reads:  transactions, shadow_scores, labels (PostgreSQL schema --pg-schema); the registry.
Writes: monitoring_metrics (source ``challenger``); metrics ``live_*`` on the MLflow run of the
        challenger's version (step = number of labels), unless --no-mlflow.

Run:
    python -m monitoring.challenger compare [--model-name fraud-detector] [--pg-schema public]

The same figures are shown by notebooks/05_champion_challenger.ipynb and the analyst portal's
page /challenger (both call this module: :func:`live_comparison`, :func:`figure_table`,
:func:`comparison_history`, :func:`label_shortfall`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

SOURCE = "challenger"
METRICS = ("average_precision", "auc_roc", "precision_at_volume", "recall_at_volume")
MIN_LIVE_LABELS = 500  # labels before the live figures can decide (promote --live's default)


@dataclass(frozen=True)
class LiveComparison:
    """Both models' figures on the same labelled transactions."""

    model: str
    champion_version: str
    challenger_version: str
    labels: int  # labelled transactions scored by both
    positives: int  # of which fraud
    alert_volume: int  # the champion's alerts among them (k of the *_at_volume figures)
    champion: dict
    challenger: dict
    overlap: dict  # alerts of each by its own threshold, both, Jaccard

    def summary(self) -> dict:
        return asdict(self)


def _ranked_hits(label: np.ndarray, score: np.ndarray, k: int) -> int:
    """Frauds among the ``k`` highest scores (stable: ties broken by position)."""
    if k <= 0:
        return 0
    top = np.argsort(-score, kind="stable")[:k]
    return int(label[top].sum())


def model_figures(label: np.ndarray, score: np.ndarray, volume: int) -> dict:
    """AP, AUC (None when one class only) and precision/recall among the top ``volume`` scores."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives = int(label.sum())
    both = 0 < positives < len(label)
    hits = _ranked_hits(label, score, volume)
    return {
        "average_precision": float(average_precision_score(label, score)) if positives else None,
        "auc_roc": float(roc_auc_score(label, score)) if both else None,
        "precision_at_volume": hits / volume if volume else None,
        "recall_at_volume": hits / positives if positives else None,
    }


def live_figures(frame: pd.DataFrame) -> dict:
    """The comparison on ``frame`` (one row per labelled transaction; columns label,
    champion_score, champion_alert, challenger_score, challenger_alert). Pure."""
    label = frame["label"].astype(bool).to_numpy()
    champ_alert = frame["champion_alert"].astype(bool).to_numpy()
    chall_alert = frame["challenger_alert"].astype(bool).to_numpy()
    volume = int(champ_alert.sum())
    union = int((champ_alert | chall_alert).sum())
    both = int((champ_alert & chall_alert).sum())
    return {
        "labels": len(frame), "positives": int(label.sum()), "alert_volume": volume,
        "champion": model_figures(label, frame["champion_score"].to_numpy(dtype="float64"), volume),
        "challenger": model_figures(label, frame["challenger_score"].to_numpy(dtype="float64"), volume),
        "overlap": {"champion_alerts": volume, "challenger_alerts": int(chall_alert.sum()), "both": both,
                    "jaccard": both / union if union else None},
    }


LIVE_ROWS_SQL = """
    SELECT t.fraud_score AS champion_score, t.is_fraud AS champion_alert,
           s.fraud_score AS challenger_score, s.would_alert AS challenger_alert, l.is_fraud AS label
    FROM transactions t
    JOIN shadow_scores s ON s.transaction_id = t.transaction_id AND s.model_version = %(challenger)s
    JOIN (SELECT DISTINCT ON (transaction_id) transaction_id, is_fraud FROM labels
          ORDER BY transaction_id, labeled_at DESC, source) l ON l.transaction_id = t.transaction_id
    WHERE t.model_version = %(champion)s
"""


def live_rows(conn, champion_version: str, challenger_version: str) -> pd.DataFrame:
    from monitoring.storage import read_frame

    frame = read_frame(conn, LIVE_ROWS_SQL, {"champion": str(champion_version), "challenger": str(challenger_version)})
    conn.rollback()
    return frame


def current_versions(model_name: str, client=None) -> tuple[str | None, str | None]:
    """(champion version, challenger version) of ``model_name``, None for a missing one (no
    challenger without a champion). The champion is the alias ``champion`` (else the Production
    stage, its mirror)."""
    from fraudops.modeling.champion import champion_version
    from fraudops.modeling.registry import resolve_challenger

    champion = champion_version(model_name, client)
    if champion is None:
        return None, None
    challenger = resolve_challenger(model_name, str(champion.version), client)
    return str(champion.version), (challenger.version if challenger is not None else None)


def current_pair(model_name: str, client=None) -> tuple[str, str]:
    """(Production version, challenger version) of ``model_name``; LookupError when one is missing."""
    champion, challenger = current_versions(model_name, client)
    if champion is None:
        raise LookupError(f"{model_name} has no Production version")
    if challenger is None:
        raise LookupError(f"{model_name} has no challenger (a Staging version or the alias 'challenger')")
    return champion, challenger


def live_comparison(conn, model_name: str, champion_version: str, challenger_version: str) -> LiveComparison:
    """The comparison of the two versions on the live labels of ``conn``'s schema (reads only)."""
    figures = live_figures(live_rows(conn, champion_version, challenger_version))
    return LiveComparison(model=model_name, champion_version=str(champion_version),
                          challenger_version=str(challenger_version), **figures)


def label_shortfall(comparison: LiveComparison, min_labels: int = MIN_LIVE_LABELS) -> str | None:
    """Why the live figures cannot decide yet (too few labels, or no fraud among them); None when they can."""
    if comparison.labels < min_labels or not comparison.positives:
        return (f"{comparison.labels} live labels ({comparison.positives} fraud); "
                f"needs at least {min_labels} with a fraud among them")
    return None


FIGURE_NAMES = {"average_precision": "average precision", "auc_roc": "AUC ROC",
                "precision_at_volume": "precision at the champion's alert volume",
                "recall_at_volume": "recall at the champion's alert volume"}


def figure_table(comparison: LiveComparison) -> list[dict]:
    """One row per figure: champion, challenger, difference (None when undefined) and the labels behind it."""
    c = comparison
    behind = {
        "average_precision": f"{c.labels} labels, {c.positives} fraud",
        "auc_roc": f"{c.labels} labels ({c.positives} fraud, {c.labels - c.positives} legitimate)",
        "precision_at_volume": f"top {c.alert_volume} scores of {c.labels} labels",
        "recall_at_volume": f"{c.positives} fraud, top {c.alert_volume} scores",
    }
    rows = []
    for metric in METRICS:
        champ, chall = c.champion[metric], c.challenger[metric]
        rows.append({"metric": metric, "figure": FIGURE_NAMES[metric], "champion": champ, "challenger": chall,
                     "difference": chall - champ if champ is not None and chall is not None else None,
                     "behind": behind[metric]})
    return rows


HISTORY_SQL = """
    SELECT recorded_at, labels->>'model' AS model, labels->>'champion_version' AS champion_version,
           labels->>'challenger_version' AS challenger_version, metric_name, metric_value
    FROM monitoring_metrics
    WHERE source = %(source)s AND (%(model)s::text IS NULL OR labels->>'model' = %(model)s)
      AND recorded_at IN (SELECT DISTINCT recorded_at FROM monitoring_metrics
                          WHERE source = %(source)s AND metric_name = 'live_labels'
                            AND (%(model)s::text IS NULL OR labels->>'model' = %(model)s)
                          ORDER BY recorded_at DESC LIMIT %(limit)s)
    ORDER BY recorded_at
"""
HISTORY_KEYS = ["recorded_at", "model", "champion_version", "challenger_version"]


def comparison_history(conn, model_name: str | None = None, limit: int = 100) -> pd.DataFrame:
    """The recorded comparisons (monitoring_metrics, source ``challenger``), oldest first, at most
    the newest ``limit``: one row each with recorded_at, model, both versions and every figure
    of :func:`record` as a column (live_labels, live_positives, champion_<metric>, ...)."""
    from monitoring.storage import read_frame

    rows = read_frame(conn, HISTORY_SQL, {"source": SOURCE, "model": model_name, "limit": int(limit)})
    conn.rollback()
    columns = ["live_labels", "live_positives", "alert_overlap_jaccard"] + \
        [f"{who}_{m}" for who in ("champion", "challenger") for m in METRICS]
    if rows.empty:
        return pd.DataFrame(columns=HISTORY_KEYS + columns)
    wide = (rows.groupby(HISTORY_KEYS + ["metric_name"], dropna=False)["metric_value"].first()
            .unstack("metric_name").reindex(columns=columns).reset_index())
    wide.columns.name = None
    return wide.sort_values("recorded_at", ignore_index=True)


def record(conn, comparison: LiveComparison) -> None:
    """monitoring_metrics rows: champion_<metric>, challenger_<metric>, live_labels, overlap."""
    from fraudops.records import MetricRow, insert_metric_rows

    tags = {"model": comparison.model, "champion_version": comparison.champion_version,
            "challenger_version": comparison.challenger_version, "labels": comparison.labels}
    rows = [MetricRow(f"{who}_{m}", getattr(comparison, who)[m], tags)
            for who in ("champion", "challenger") for m in METRICS]
    rows += [MetricRow("live_labels", comparison.labels, tags), MetricRow("live_positives", comparison.positives, tags),
             MetricRow("alert_overlap_jaccard", comparison.overlap["jaccard"], tags)]
    with conn:
        insert_metric_rows(conn, SOURCE, rows)


def log_to_mlflow(comparison: LiveComparison, client=None) -> None:
    """``live_<who>_<metric>`` on the challenger version's run (step = labels behind them)."""
    from fraudops.modeling.registry import get_version, registry_client

    client = client or registry_client()
    run_id = get_version(comparison.model, comparison.challenger_version, client).run_id
    if not run_id:
        return
    for who in ("champion", "challenger"):
        for metric in METRICS:
            value = getattr(comparison, who)[metric]
            if value is not None and math.isfinite(value):
                client.log_metric(run_id, f"live_{who}_{metric}", value, step=comparison.labels)
    client.log_metric(run_id, "live_labels", comparison.labels, step=comparison.labels)


def compare_live(settings=None, model_name: str | None = None, pg_schema: str = "public",
                 champion_version: str | None = None, challenger_version: str | None = None,
                 write: bool = True, log_mlflow: bool = True) -> LiveComparison:
    """Compare the Production version and the challenger (default: the registry's) on the live
    labels of ``pg_schema``; record the figures unless ``write`` is False."""
    from fraudops.modeling.registry import registry_client
    from fraudops.settings import load_settings
    from monitoring.storage import connect_schema

    settings = settings or load_settings()
    name = model_name or settings.model_name
    client = registry_client(settings)
    if champion_version is None or challenger_version is None:
        champ, chall = current_pair(name, client)
        champion_version, challenger_version = champion_version or champ, challenger_version or chall
    conn = connect_schema(settings, pg_schema)
    try:
        comparison = live_comparison(conn, name, champion_version, challenger_version)
        if write:
            record(conn, comparison)
    finally:
        conn.close()
    if write and log_mlflow:
        log_to_mlflow(comparison, client)
    return comparison


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m monitoring.challenger``."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m monitoring.challenger", formatter_class=HelpFormatter,
                                     description="champion vs challenger on live labels")
    parser.add_argument("command", choices=["compare"], help="compare: both versions on the same live labels")
    parser.add_argument("--model-name", default=None, help="default: MODEL_NAME (fraud-detector)")
    parser.add_argument("--pg-schema", default="public", help="PostgreSQL schema of shadow_scores and labels")
    parser.add_argument("--champion-version", default=None, help="default: the Production version")
    parser.add_argument("--challenger-version", default=None,
                        help="default: the Staging version or the alias challenger")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to the challenger's run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (1: nothing to compare)."""
    args = build_parser().parse_args(argv)
    try:
        comparison = compare_live(model_name=args.model_name, pg_schema=args.pg_schema,
                                  champion_version=args.champion_version,
                                  challenger_version=args.challenger_version, log_mlflow=not args.no_mlflow)
    except LookupError as exc:
        print(f"nothing to compare: {exc}")
        return 1
    print(json.dumps(comparison.summary(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
