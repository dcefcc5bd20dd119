"""Markdown tables of a benchmark run (bench/results/<timestamp>.json written by bench.run).

Reads:  one results JSON.
Writes: the markdown on stdout, or to --output (bench/RESULTS.md holds the committed run).
Run:    .venv/bin/python -m bench.bench_report bench/results/<timestamp>.json [--output bench/RESULTS.md]
        [--json bench/RESULTS.json]

Every number is printed with the 1-minute load average measured when it was taken: the machine
has 2 cores shared with other work, so a number taken at load 8 understates what the code does
on an idle machine (roughly by the share of the cores it got).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# issue 12's keys of bench/RESULTS.json -> (goal, "<=" or ">=") ; None: reported, no goal
TARGETS = {
    "e2e_sustained_tx_per_s": (10_000.0, ">="),
    "p50_latency_s_at_2000": (1.2, "<="),
    "p95_latency_s_at_2000": (2.0, "<="),
    "p95_latency_s_at_500": (2.0, "<="),
    "single_row_batch_s": None,
    "batch_cost_ratio_1m_vs_10k_users": (1.5, "<="),
    "first_row_after_start_s": (20.0, "<="),
    "first_row_after_kill_s": (20.0, "<="),
    "scoring_vs_raw_ratio": (2.0, "<="),
    "seed_path_ratio": (10.0, ">="),
    "load_avg_during": None,
}
SUMMARY_KEYS = list(TARGETS)


def _get(data: dict | None, *path, default=None):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _load(load: dict | None) -> str:
    return "n/a" if not load else f"{load.get('load_1m', 'n/a')}"


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def headline_run(results: dict) -> dict | None:
    runs = _get(results, "streaming", "runs", default=[]) or []
    return runs[0] if runs else None


def latency_at(run: dict | None, rate: float) -> dict | None:
    return next((p for p in (run or {}).get("latency", []) if p.get("target_rate") == rate), None)


def summary(results: dict) -> dict:
    """issue 12's numbers (None when not measured): what bench/RESULTS.json holds."""
    run = headline_run(results)
    at_2000, at_500 = latency_at(run, 2000.0), latency_at(run, 500.0)
    loads = [p.get("load_avg_during") for p in (run or {}).get("latency", []) if p.get("load_avg_during") is not None]
    stage = _get(results, "scoring", "scoring_stage") or {}
    seed = _get(results, "scoring", "seed_vs_ours") or {}
    cost = _get(results, "scoring", "batch_cost_vs_users") or {}
    return {
        "e2e_sustained_tx_per_s": _get(run, "throughput", "transactions_per_second"),
        "p50_latency_s_at_2000": _get(at_2000, "latency", "p50_seconds"),
        "p95_latency_s_at_2000": _get(at_2000, "latency", "p95_seconds"),
        "p95_latency_s_at_500": _get(at_500, "latency", "p95_seconds"),
        "single_row_batch_s": _get(run, "single_row", "handler_seconds_median"),
        "batch_cost_ratio_1m_vs_10k_users": cost.get("ratio_large_to_small"),
        "first_row_after_start_s": _get(run, "first_row_after_start_s"),
        "first_row_after_kill_s": _get(run, "kill", "first_row_after_kill_s"),
        "scoring_vs_raw_ratio": stage.get("ratio_step_to_raw"),
        "seed_path_ratio": seed.get("ratio_seed_to_ours"),
        "load_avg_during": round(sum(loads) / len(loads), 2) if loads else None,
    }


def _met(key: str, value) -> str:
    goal = TARGETS[key]
    if goal is None:
        return "(reported)"
    if value is None:
        return "n/a"
    limit, sense = goal
    return _status(value >= limit if sense == ">=" else value <= limit)


def targets_table(results: dict) -> list[str]:
    numbers = summary(results)
    lines = ["| key | goal | measured | status |", "|---|---|---|---|"]
    for key in SUMMARY_KEYS:
        goal = TARGETS[key]
        lines.append(f"| {key} | {'' if goal is None else f'{goal[1]} {goal[0]:g}'} | {_fmt(numbers[key], 2)} "
                     f"| {_met(key, numbers[key])} |")
    return lines


def streaming_table(results: dict) -> list[str]:
    lines = ["| partitions | trigger (s) | throughput (tx/s) | steady 10-90% (tx/s) | producer (msg/s) "
             "| first row after start (s) | after SIGKILL (s) | exactly once after SIGKILL | peak memory (MB) "
             "| load before/after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in _get(results, "streaming", "runs", default=[]) or []:
        tp, kill = run.get("throughput") or {}, run.get("kill") or {}
        lines.append(
            f"| {run['partitions']} | {run['trigger_seconds']} | {_fmt(tp.get('transactions_per_second'))} "
            f"| {_fmt(tp.get('steady_transactions_per_second'))} | {_fmt(tp.get('producer_messages_per_second'))} "
            f"| {_fmt(run.get('first_row_after_start_s'))} | {_fmt(kill.get('first_row_after_kill_s'))} "
            f"| {_fmt(kill.get('exactly_once'))} | {_fmt(run.get('peak_rss_mb'))} "
            f"| {_load(tp.get('load_before'))} / {_load(tp.get('load_after'))} |"
            + (f" error: {run['error'][:200]!r}" if run.get("error") else ""))
    return lines


def latency_table(results: dict) -> list[str]:
    lines = ["| rate (tx/s) | seconds (warm-up left out) | achieved producer rate | rows | p50 (s) | p95 (s) | p99 (s) "
             "| max (s) | job-reported p95 to commit, row-weighted (s) | mean batch rows / s | load avg during |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in _get(results, "streaming", "runs", default=[]) or []:
        for phase in run.get("latency", []):
            lat, job = phase["latency"], phase.get("job_reported") or {}
            lines.append(
                f"| {_fmt(phase['target_rate'], 0)} | {phase['seconds']:g} ({phase['warmup_seconds']:g}) "
                f"| {_fmt(phase['achieved_producer_rate'], 0)} | {_fmt(lat['rows'])} | {_fmt(lat['p50_seconds'], 2)} "
                f"| {_fmt(lat['p95_seconds'], 2)} | {_fmt(lat['p99_seconds'], 2)} | {_fmt(lat['max_seconds'], 2)} "
                f"| {_fmt(job.get('weighted_p95_seconds'), 2)} | {_fmt(job.get('mean_batch_rows'), 0)} / "
                f"{_fmt(job.get('mean_batch_seconds'), 2)} | {_fmt(phase.get('load_avg_during'), 2)} |")
        single = run.get("single_row") or {}
        if single:
            lines += ["", f"Single-row micro-batches: handler {_fmt(single.get('handler_seconds_median'), 3)} s (median), "
                          f"latency p50 {_fmt(_get(single, 'latency', 'p50_seconds'), 2)} s."]
    return lines


BATCH_PHASES = (("rows", "rows", 0), ("trigger_execution_ms", "whole trigger (ms)", 0),
                ("latest_offset_ms", "latestOffset (ms)", 0), ("wal_commit_ms", "walCommit (ms)", 0),
                ("query_planning_ms", "planning (ms)", 0), ("add_batch_ms", "addBatch (ms)", 0),
                ("handler_to_task_seconds", "handler -> Python task (s)", 3),
                ("task_records_seconds", "Kafka records to the task (s)", 3), ("pass_seconds", "the pass (s)", 3),
                ("task_to_handler_seconds", "task -> handler (s)", 3), ("commit_offsets_ms", "commitOffsets (ms)", 0))


def batch_table(results: dict) -> list[str]:
    """Median / p95 of each micro-batch phase per latency phase (the job's monitoring_metrics:
    Spark's durationMs from its progress listener, the handler's own split)."""
    phases = [(run, phase) for run in _get(results, "streaming", "runs", default=[]) or []
              for phase in run.get("latency", []) if _get(phase, "batches", "summary")]
    if not phases:
        return ["(not measured)"]
    lines = ["| phase of a micro-batch | " + " | ".join(f"{_fmt(p['target_rate'], 0)} tx/s median / p95"
                                                     for _, p in phases) + " |",
             "|---|" + "---|" * len(phases)]
    for key, title, digits in BATCH_PHASES:
        cells = []
        for _, phase in phases:
            values = phase["batches"]["summary"].get(key)
            cells.append("" if not values else f"{_fmt(values['median'], digits)} / {_fmt(values['p95'], digits)}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines


def scoring_table(results: dict) -> list[str]:
    stage = _get(results, "scoring", "scoring_stage") or {}
    seed = _get(results, "scoring", "seed_vs_ours") or {}
    cost = _get(results, "scoring", "batch_cost_vs_users") or {}
    lines = ["| measurement | rows | seconds (best of N) | load |", "|---|---|---|---|"]
    if stage:
        load = _load(_get(stage, "load", "before"))
        lines.append(f"| raw predict_proba, one thread | {stage['rows']:,} | {stage['raw_predict_proba_seconds']:.3f} | {load} |")
        lines.append(f"| the pass's scoring step (pyfunc, threshold, JSON; scores equal raw: "
                     f"{stage.get('scores_equal_raw')}) | {stage['rows']:,} | {stage['scoring_step_seconds']:.3f} | {load} |")
    if seed:
        load = _load(_get(seed, "load", "before"))
        lines.append(f"| seed way: LabelEncoder per row, scaler, predict, to_sql (features given) | {seed['rows']:,} "
                     f"| {seed['seed_seconds']:.3f} | {load} |")
        lines.append(f"| ours: the whole pass on Kafka records (parse, features, score, feature store, COPY, "
                     f"Redis, Kafka) | {seed['rows']:,} | {seed['ours_seconds']:.3f} | {load} |")
    if cost:
        load = _load(_get(cost, "load", "before"))
        for size in ("small", "large"):
            lines.append(f"| same batch's features with {cost[f'users_{size}']:,} users in the store "
                         f"| {cost['batch_rows']:,} | {cost[f'seconds_{size}']:.3f} | {load} |")
    return lines


def stages_table(results: dict) -> list[str]:
    stages = _get(results, "stages") or {}
    lines = [f"Batches of {_fmt(stages.get('batch_rows'))} rows, {_fmt(stages.get('rows'))} rows in all, "
             f"{_fmt(stages.get('rows_per_second'))} rows/s through the steps (no Spark).", "",
             "| step | seconds | share | ms per 1,000 rows |", "|---|---|---|---|"]
    for name, step in (stages.get("steps") or {}).items():
        lines.append(f"| {name} | {_fmt(step['seconds'], 3)} | {_fmt(step['share'], 3)} | {_fmt(step['ms_per_1000_rows'], 1)} |")
    return lines


def render(results: dict) -> str:
    """The whole report as markdown."""
    machine = results.get("machine", {})
    head = [f"# Benchmark run {results.get('started_at', '?')}", "",
            f"Machine: {machine.get('cpus', '?')} CPUs, shared; load average at start "
            f"{_load(results.get('load_start'))}, at end {_load(results.get('load_end'))}. "
            "Spark local[2]; services of the local stack. Numbers taken under load are pessimistic.", ""]
    sections = [("Targets (bench/RESULTS.json)", targets_table),
                ("End-to-end streaming (spark-submit job)", streaming_table),
                ("End-to-end latency at fixed rates (Kafka timestamp -> PostgreSQL)", latency_table),
                ("Where a micro-batch's time goes in the job (per latency phase)", batch_table),
                ("Scoring step, the seed's batch path, batch cost vs users in the store", scoring_table),
                ("Where a micro-batch's time goes (the pass's steps, in process)", stages_table)]
    body = []
    for title, table in sections:
        body += [f"## {title}", "", *table(results), ""]
    errors = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and v.get("error")}
    if errors:
        body += ["## Errors", ""] + [f"- {k}: {v[:500]}" for k, v in errors.items()] + [""]
    return "\n".join(head + body)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="markdown tables of a benchmark results JSON")
    parser.add_argument("results", type=Path)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write issue 12's numbers (summary) here")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    markdown = render(results)
    if args.output:
        args.output.write_text(markdown)
    if args.json:
        args.json.write_text(json.dumps(summary(results), indent=2) + "\n")
    print(markdown)
    return markdown


if __name__ == "__main__":
    main()
