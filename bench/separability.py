"""How separable is the simulated fraud? Average precision on a later period, three models.

Reads nothing; generates history with simulator.generator (no services needed). Writes nothing
but prints (and with --json writes) the numbers:

* amount only                     HistGradientBoosting on the raw amount
* all raw fields                  amount, hour, weekday, currency, country, merchant category,
                                  transaction type, channel, device present (one row at a time)
* each raw field alone            the same model on one field at a time
* behaviour (feature set)         features.definition.FEATURE_COLUMNS from features.batch
                                  (user history, merchant risk from labels known at the time)

Train on the days before ``--train-days`` (after a 7-day warm-up for the history windows), skip
``--gap-days``, score the rest. A simulator whose fraud one raw field separates would show the
amount-only AP close to the others; the base rate (fraud share of the test period) is printed too.

Command:
    .venv/bin/python -m bench.separability --days 60 --customers 3000 --seed 42
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from simulator.generator import generate_history

RAW_CATEGORICALS = ["currency", "country", "merchant_category", "transaction_type", "channel"]
WARMUP_DAYS = 7


def raw_field_matrix(history: pd.DataFrame) -> pd.DataFrame:
    """One row's own fields only (no history): numbers plus integer-coded categoricals."""
    times = history["transaction_time"]
    out = pd.DataFrame(
        {
            "amount": history["amount"].to_numpy(),
            "hour": times.dt.hour.to_numpy(),
            "weekday": times.dt.weekday.to_numpy(),
            "has_device": history["device_id"].notna().astype(int).to_numpy(),
        }
    )
    for name in RAW_CATEGORICALS:
        out[name] = pd.factorize(history[name].fillna("unknown"))[0]
    return out


def behaviour_matrix(history: pd.DataFrame) -> pd.DataFrame:
    """The project's feature set (stateless + user history + merchant risk), codes for categoricals."""
    from features.batch import compute_features
    from features.definition import CATEGORICAL_FEATURES, FEATURE_COLUMNS

    featured = compute_features(history)
    out = featured[FEATURE_COLUMNS].reset_index(drop=True).copy()
    for name in CATEGORICAL_FEATURES:
        out[name] = pd.factorize(out[name].astype(str))[0]
    return out


def fit_and_score(x: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray, categorical: list[str]) -> dict:
    """Fit on ``train`` rows, return AP and ROC AUC on ``test`` rows."""
    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, categorical_features=[c in categorical for c in x.columns], random_state=0
    )
    model.fit(x[train], y[train])
    score = model.predict_proba(x[test])[:, 1]
    return {"average_precision": float(average_precision_score(y[test], score)), "roc_auc": float(roc_auc_score(y[test], score))}


def measure(days: int, customers: int, seed: int, train_days: int, gap_days: int, fraud_ratio: float) -> dict:
    """Generate, split by time, fit the three models; return their test metrics."""
    started = time.perf_counter()
    history = generate_history(days, customers, fraud_ratio=fraud_ratio, seed=seed)
    day = ((history["transaction_time"] - history["transaction_time"].min()).dt.total_seconds() // 86_400).to_numpy()
    train = (day >= WARMUP_DAYS) & (day < train_days)
    test = day >= train_days + gap_days
    y = history["is_fraud"].to_numpy()
    raw = raw_field_matrix(history)
    results = {
        "rows": len(history),
        "test_rows": int(test.sum()),
        "test_base_rate": float(y[test].mean()),
        "amount_only": fit_and_score(raw[["amount"]], y, train, test, []),
        "all_raw_fields": fit_and_score(raw, y, train, test, RAW_CATEGORICALS),
    }
    from features.definition import CATEGORICAL_FEATURES

    results["single_raw_field"] = {
        name: round(fit_and_score(raw[[name]], y, train, test, [name] if name in RAW_CATEGORICALS else [])["average_precision"], 4)
        for name in raw.columns
    }
    results["behaviour_features"] = fit_and_score(behaviour_matrix(history), y, train, test, CATEGORICAL_FEATURES)
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fraud-ratio", type=float, default=0.008)
    parser.add_argument("--train-days", type=int, default=40, help="train on days [7, train_days)")
    parser.add_argument("--gap-days", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    results = measure(args.days, args.customers, args.seed, args.train_days, args.gap_days, args.fraud_ratio)
    for name in ("amount_only", "all_raw_fields", "behaviour_features"):
        r = results[name]
        print(f"{name:20s} AP={r['average_precision']:.3f}  ROC AUC={r['roc_auc']:.3f}")
    print("single raw field AP: " + ", ".join(f"{k}={v:.3f}" for k, v in results["single_raw_field"].items()))
    print(f"test rows={results['test_rows']} base rate={results['test_base_rate']:.4f} ({results['seconds']} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
