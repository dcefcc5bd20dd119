"""What do the windowed merchant features buy? AP/AUC with and without them, on both generators.

Reads nothing; generates 30 days with simulator.generator (the project's simulator) and with
simulator.independent (a fraud process the features were NOT designed around), computes the
features with features.batch.compute_training_features (invalid rows dropped and counted), and
trains a quick model on the first ``--train-days`` days (after ``--warmup-days`` for the windows),
skips ``--gap-days`` and scores the rest. Feature sets: "all" (FEATURE_COLUMNS) and "no_merchant"
(FEATURE_COLUMNS without the merchant features). Prints one table (and writes --json).

Command:
    .venv/bin/python -m bench.merchant_ablation --cards 2000 --label-delay-days 7 --seed 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder

from features.batch import compute_training_features
from features.definition import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from features.merchant import MERCHANT_FEATURES


def _history(generator: str, days: int, cards: int, seed: int) -> pd.DataFrame:
    if generator == "simulator":
        from simulator.generator import generate_history

        return generate_history(days=days, customers=cards, seed=seed)
    from simulator.independent import generate_independent

    return generate_independent(days=days, cards=cards, seed=seed)


def _model(kind: str, seed: int):
    encode = ColumnTransformer(
        [("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), CATEGORICAL_FEATURES)],
        remainder="passthrough",
    )
    if kind == "random_forest":
        model = RandomForestClassifier(n_estimators=150, min_samples_leaf=2, n_jobs=2, random_state=seed,
                                       class_weight="balanced_subsample")
    else:
        model = HistGradientBoostingClassifier(random_state=seed)
    return make_pipeline(encode, model)


def run(generator: str, days: int, cards: int, seed: int, label_delay_days: float, train_days: int,
        gap_days: int, warmup_days: int, models: list[str]) -> list[dict]:
    raw = _history(generator, days, cards, seed)
    featured, report = compute_training_features(raw, label_delay=label_delay_days * 86_400)
    day = (featured["transaction_time"] - featured["transaction_time"].min()).dt.days
    train = featured[(day >= warmup_days) & (day < train_days)]
    test = featured[day >= train_days + gap_days]
    rows = []
    for kind in models:
        for name, numeric in (("all", NUMERIC_FEATURES),
                              ("no_merchant", [c for c in NUMERIC_FEATURES if c not in MERCHANT_FEATURES])):
            columns = CATEGORICAL_FEATURES + numeric
            started = time.perf_counter()
            model = _model(kind, seed).fit(train[columns], train["is_fraud"])
            score = model.predict_proba(test[columns])[:, 1]
            rows.append({"generator": generator, "model": kind, "features": name,
                         "ap": round(float(average_precision_score(test["is_fraud"], score)), 4),
                         "auc": round(float(roc_auc_score(test["is_fraud"], score)), 4),
                         "test_rows": len(test), "test_fraud": int(test["is_fraud"].sum()),
                         "dropped_rows": report.rows_dropped, "seconds": round(time.perf_counter() - started, 1)})
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-delay-days", type=float, default=7.0)
    parser.add_argument("--warmup-days", type=int, default=3)
    parser.add_argument("--train-days", type=int, default=20)
    parser.add_argument("--gap-days", type=int, default=2)
    parser.add_argument("--models", default="random_forest,hist_gradient_boosting")
    parser.add_argument("--generators", default="simulator,independent")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for generator in args.generators.split(","):
        rows += run(generator, args.days, args.cards, args.seed, args.label_delay_days, args.train_days,
                    args.gap_days, args.warmup_days, args.models.split(","))
    table = pd.DataFrame(rows).pivot_table(index=["generator", "model"], columns="features", values=["ap", "auc"])
    print(table.round(4).to_string())
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
