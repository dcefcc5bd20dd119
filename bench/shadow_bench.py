"""The cost of shadow scoring (issue 15): the scoring pass with and without a challenger.

The same micro-batch of raw Kafka records goes through streaming.scoring_pass.process_records
(parse, features from the online store, score, PostgreSQL in one transaction, Redis, alerts
topic) on a warm worker, alternately without a challenger and with one (its score and the
shadow_scores rows in the same transaction). The challenger is the benchmark model's pyfunc
under another version number, so the extra cost is the second predict and the shadow rows,
not a different model's size. Target: at most 1.3x the time per batch.

Run:    .venv/bin/python -m bench.shadow_bench [--rows 5000] [--repeats 3]
        (also a part of `make bench`: bench.run --only shadow)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from bench.bench_scoring import kafka_records, served_model
from bench.bench_support import MessageStream, create_namespace, drop_namespace, register_model, run_id

TARGET_RATIO = 1.3


def _reset(settings, schema: str):
    from fraudops.db import connect

    def reset() -> None:
        conn = connect(settings)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(f'TRUNCATE "{schema}".transactions, "{schema}".fraud_alerts, "{schema}".shadow_scores CASCADE')
        finally:
            conn.close()

    return reset


def run(settings, model, rows: int = 5_000, repeats: int = 3) -> dict:
    from streaming.scoring_job import JobOptions, feature_store_target, sink_targets
    from streaming.scoring_pass import PassInputs, process_records

    ns = create_namespace(settings, run_id(), 1, scratch=Path(tempfile.gettempdir()))
    records = kafka_records(MessageStream(2_000, expected=rows, seed=11).take(rows), ns.topic)
    try:
        options = JobOptions(checkpoint_dir=ns.checkpoint_dir, pg_schema=ns.pg_schema, redis_prefix=ns.redis_prefix,
                             alerts_topic=ns.alerts_topic)
        served = served_model(settings, model)
        challenger = dataclasses.replace(served, version=str(int(served.version) + 1000))
        base = PassInputs(sink_targets(settings, options), feature_store_target(settings, options), served,
                          settings.mlflow_tracking_uri)
        shadow = dataclasses.replace(base, challenger=challenger)
        reset = _reset(settings, ns.pg_schema)
        process_records(records.head(100), shadow)  # warm: both models and the connections
        runs: dict[str, list[float]] = {"without": [], "with": []}
        for _ in range(repeats):
            for label, inputs in (("without", base), ("with", shadow)):
                reset()
                started = time.perf_counter()
                process_records(records, inputs)
                runs[label].append(time.perf_counter() - started)
    finally:
        drop_namespace(settings, ns)
    without, with_ = min(runs["without"]), min(runs["with"])
    ratio = with_ / without
    return {"rows": rows, "without_seconds": round(without, 3), "with_seconds": round(with_, 3),
            "without_rows_per_second": round(rows / without), "with_rows_per_second": round(rows / with_),
            "ratio": round(ratio, 3), "target_ratio": TARGET_RATIO, "meets_target": ratio <= TARGET_RATIO,
            "all_runs": {k: [round(v, 3) for v in vs] for k, vs in runs.items()}}


def markdown(results: dict) -> str:
    """The section of the `make bench` report ("" when the part did not run)."""
    part = results.get("shadow")
    if not isinstance(part, dict) or "ratio" not in part:
        return ""
    return ("\n## Shadow scoring: the scoring pass with and without a challenger (bench.shadow_bench)\n\n"
            "| rows | without (s) | with (s) | ratio | target |\n|---|---|---|---|---|\n"
            f"| {part['rows']} | {part['without_seconds']} | {part['with_seconds']} | {part['ratio']} "
            f"| <= {part['target_ratio']} ({'met' if part['meets_target'] else 'NOT met'}) |\n")


def main(argv: list[str] | None = None) -> dict:
    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    settings = load_settings()
    model = register_model(settings, f"bench-shadow-{run_id()}", days=6, customers=500)
    result = run(settings, model, rows=args.rows, repeats=args.repeats)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
