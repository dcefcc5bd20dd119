"""`make bench`: every benchmark of the scoring job in one go, on the local stack.

Reads:  the local stack (`make stack-up`), the live simulator; registers one model for all parts.
Writes: bench/results/<timestamp>.json (git-ignored) and bench/results/<timestamp>.md; a full
        run (not --quick) of the scoring parts also writes bench/RESULTS.md and bench/RESULTS.json
        (issue 12's numbers, committed); prints the markdown.
Run:    .venv/bin/python -m bench.run [--quick] [--only scoring,stages,streaming]

Parts (each is its own module, runnable alone):
  scoring    bench.bench_scoring: scoring step vs raw predict_proba; the seed's batch vs ours;
             the same batch's cost with 10k vs 1M users in the feature store
  stages     bench.stage_profile: the scoring pass's steps, timed one by one
  streaming  bench.bench_streaming: spark-submit job: first row after start, sustained tx/s,
             latency at 2,000 and 500 tx/s, single-row batches, SIGKILL + restart, peak memory
  portal     bench.portal_bench: analyst portal, queue/dashboard p95 at 1M transactions, 50 live clients
  shadow     bench.shadow_bench: the scoring pass with and without a challenger (target <= 1.3x)
  decisions  bench.decisions_bench: the decision service (POST /v1/decisions) under open-loop load at
             200 and 1000 req/s (180 s each), the step search for decision_max_rps, the materialize
             rate; its keys are merged into bench/RESULTS.json and its section into RESULTS.md
  rules      bench.rules_bench: a rule's backtest on 30 days of a 1M-transaction table (goal < 60 s)
  startup    (only with --only) streaming's start and SIGKILL + restart phases alone, with the
             job's start-up milestones (bench_streaming.run_startup)
A part that fails is recorded with its error and the others still run. Timing goals are
reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import bench_report, decisions_bench, shadow_bench
from bench.bench_support import RESULTS_DIR, machine_load, register_model

PARTS = ("scoring", "stages", "streaming", "portal", "shadow", "decisions", "rules", "startup")
DEFAULT_PARTS = PARTS[:-1]  # startup repeats streaming's start and SIGKILL phases alone


def run_part(part: str, settings, quick: bool, scratch: Path, model) -> dict:
    if part == "portal":  # analyst portal: queue/dashboard p95, live clients (bench.portal_bench)
        from bench import portal_bench

        return portal_bench.run(settings, **({"transactions": 100_000, "alerts": 2_000, "seconds": 5.0} if quick else {}))
    if part == "decisions":  # the decision service under open-loop load (bench.decisions_bench)
        if quick:
            return decisions_bench.run(settings, scratch, seconds=10.0, step_seconds=10.0,
                                       step_rates=(200.0, 600.0, 1000.0), customers=5_000, history_days=7,
                                       check_clients=False, model=model)
        return decisions_bench.run(settings, scratch, model=model)
    if part == "rules":  # issue 24: a rule's backtest on 30 days of a 1M-transaction table
        from bench import rules_bench

        return rules_bench.run(settings, transactions=100_000 if quick else 1_000_000)
    if part == "shadow":  # issue 15: the scoring pass with and without a challenger
        return shadow_bench.run(settings, model, rows=2_000 if quick else 10_000)
    if part == "scoring":
        from bench import bench_scoring

        return bench_scoring.run(settings, rows=5_000 if quick else 20_000, repeats=2 if quick else 3, model=model)
    if part == "stages":
        from bench import stage_profile

        if quick:
            return stage_profile.run(settings, messages=4_000, customers=1_000, batch=1_000, model=model)
        return stage_profile.run(settings, model=model)
    from bench import bench_streaming

    if part == "startup":  # only the start and SIGKILL + restart phases of streaming
        return bench_streaming.run_startup(settings, scratch, model=model,
                                           **({"between_messages": 5_000} if quick else {}))
    if quick:
        return bench_streaming.run(settings, scratch, customers=2_000, throughput_messages=10_000, rate_seconds=20.0,
                                   warmup_seconds=5.0, model=model)
    return bench_streaming.run(settings, scratch, model=model)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.run``."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m bench.run", description="run the scoring job's benchmarks",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small volumes: checks the harness, not the job")
    parser.add_argument("--only", default=",".join(DEFAULT_PARTS),
                        help=f"comma-separated subset of {', '.join(PARTS)}")
    return parser


def main(argv: list[str] | None = None) -> dict:
    from fraudops.settings import load_settings

    parser = build_parser()
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--only: unknown part(s) {unknown}; choose from {PARTS}")
    settings = load_settings()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict = {"started_at": stamp, "quick": args.quick, "machine": {"cpus": machine_load()["cpus"]},
                     "load_start": machine_load()}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{stamp}.json"
    print("registering the benchmark model (production size, HistGradientBoosting)", flush=True)
    model = register_model(settings, f"bench-fraud-detector-{stamp.lower()}")
    results["model"] = {"name": model.name, "version": model.version, "train_rows": len(model.featured),
                        "train_seconds": round(model.train_seconds, 1)}
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        for part in parts:
            print(f"== {part} (load {machine_load()['load_1m']})", flush=True)
            try:
                results[part] = run_part(part, settings, args.quick, Path(scratch), model)
            except Exception as exc:  # noqa: BLE001 - record it, run the other parts
                results[part] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
            json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    results["load_end"] = machine_load()
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown = bench_report.render(results) + shadow_bench.markdown(results) + decisions_bench.markdown(results)
    json_path.with_suffix(".md").write_text(markdown)
    committed = Path(__file__).resolve().parent
    if not args.quick and {"scoring", "stages", "streaming"} <= set(parts):
        previous_md = (committed / "RESULTS.md").read_text() if (committed / "RESULTS.md").exists() else ""
        previous_json = (json.loads((committed / "RESULTS.json").read_text())
                         if (committed / "RESULTS.json").exists() else {})
        (committed / "RESULTS.md").write_text(markdown)
        (committed / "RESULTS.json").write_text(json.dumps(bench_report.summary(results), indent=2) + "\n")
        decisions_bench.carry_over(committed, previous_json, previous_md)  # kept when not measured again
    ruled = results.get("rules")
    if not args.quick and isinstance(ruled, dict) and "error" not in ruled:
        from bench import rules_bench

        rules_bench.write_committed(ruled, committed)
    decided = results.get("decisions")
    if not args.quick and isinstance(decided, dict) and "phases" in decided and "error" not in decided:
        decisions_bench.write_committed(decided, committed)
    print(markdown)
    print(f"results: {json_path}")
    return results


if __name__ == "__main__":
    main()
