"""Markdown tables of a benchmark run (bench/results/<timestamp>.json written by bench.run).

Reads:  one results JSON.
Writes: the markdown on stdout, or to --output (bench/RESULTS.md holds the committed run).
Run:    .venv/bin/python -m bench.bench_report bench/results/<timestamp>.json [--output bench/RESULTS.md]

Every number is printed with the 1-minute load average measured when it was taken: the machine
has 2 cores shared with other work, so a number taken at load 8 understates what the code does
on an idle machine (roughly by the share of the cores it got).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGETS = {
    "throughput": 10_000.0,  # transactions/s sustained, end to end
    "p95_at_2000": 2.0,  # seconds
    "scoring_vs_raw": 2.0,  # at most
    "seed_vs_ours": 10.0,  # at least
}


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
    return next((r for r in runs if r.get("partitions") == 2 and r.get("trigger_seconds") == 1.0), runs[0] if runs else None)


def latency_at(run: dict | None, rate: float) -> dict | None:
    return next((p for p in (run or {}).get("latency", []) if p.get("target_rate") == rate), None)


def targets_table(results: dict) -> list[str]:
    run = headline_run(results)
    throughput = _get(run, "throughput", "transactions_per_second")
    at_2000 = latency_at(run, 2000.0)
    p95 = _get(at_2000, "latency", "p95_seconds")
    stage = _get(results, "scoring", "scoring_stage") or {}
    seed = _get(results, "scoring", "seed_vs_ours") or {}
    rows = [
        ("sustained end-to-end throughput (tx/s, 2 partitions, 1 s trigger)", f">= {TARGETS['throughput']:,.0f}",
         _fmt(throughput), _load(_get(run, "throughput", "load_before")),
         _status(None if throughput is None else throughput >= TARGETS["throughput"])),
        ("p95 latency at 2,000 tx/s (s, Kafka timestamp -> PostgreSQL commit)", f"<= {TARGETS['p95_at_2000']}",
         "not sustainable: 2,000 tx/s is above the measured capacity" if _get(at_2000, "not_sustainable") else _fmt(p95, 2),
         _load(_get(at_2000, "load_before")),
         "NOT met" if _get(at_2000, "not_sustainable") else _status(None if p95 is None else p95 <= TARGETS["p95_at_2000"])),
        ("scoring stage / raw predict_proba (same rows)", f"<= {TARGETS['scoring_vs_raw']}x",
         _fmt(stage.get("ratio_stage_to_raw"), 2) + "x" if stage else "n/a", _load(_get(stage, "load", "before")),
         _status(None if not stage else stage["ratio_stage_to_raw"] <= TARGETS["scoring_vs_raw"])),
        ("seed-style batch / ours (same micro-batch, scoring + storing)", f">= {TARGETS['seed_vs_ours']}x",
         _fmt(seed.get("ratio_seed_to_ours"), 2) + "x" if seed else "n/a", _load(_get(seed, "load", "before")),
         _status(None if not seed else seed["ratio_seed_to_ours"] >= TARGETS["seed_vs_ours"])),
    ]
    lines = ["| target | goal | measured | load (1 min) | status |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return lines


def streaming_table(results: dict) -> list[str]:
    lines = ["| partitions | trigger (s) | throughput (tx/s) | steady 10-90% (tx/s) | producer (msg/s) | start-up incl. warm-up (s) "
             "| peak memory (MB) | mean batch rows | mean batch (s) | load before/after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in _get(results, "streaming", "runs", default=[]) or []:
        tp = run.get("throughput") or {}
        batches = run.get("job_batches") or {}
        lines.append(
            f"| {run['partitions']} | {run['trigger_seconds']} | {_fmt(tp.get('transactions_per_second'))} "
            f"| {_fmt(tp.get('steady_transactions_per_second'))} | {_fmt(tp.get('producer_messages_per_second'))} "
            f"| {_fmt(run.get('startup_seconds_incl_warmup'))} | {_fmt(run.get('peak_rss_mb'))} "
            f"| {_fmt(batches.get('mean_batch_rows'), 0)} | {_fmt(batches.get('mean_batch_seconds'), 2)} "
            f"| {_load(tp.get('load_before'))} / {_load(tp.get('load_after'))} |"
            + (f" error: {run['error'][:120]!r}" if run.get("error") else ""))
    return lines


def latency_table(results: dict) -> list[str]:
    lines = ["| partitions | trigger (s) | rate (tx/s) | achieved producer rate | p50 (s) | p95 (s) | p99 (s) | max (s) "
             "| job-reported p95, row-weighted (s) | load before/after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in _get(results, "streaming", "runs", default=[]) or []:
        for phase in run.get("latency", []):
            if phase.get("not_sustainable"):  # above the measured capacity: the backlog only grows
                lines.append(f"| {run['partitions']} | {run['trigger_seconds']} | {_fmt(phase['target_rate'], 0)} "
                             f"| not sustainable: backlog grows {_fmt(phase.get('backlog_growth_per_second'))} tx/s "
                             "| n/a | n/a | n/a | n/a | n/a | n/a |")
                continue
            if "latency" not in phase:
                continue
            lat, job = phase["latency"], phase.get("job_reported") or {}
            lines.append(
                f"| {run['partitions']} | {run['trigger_seconds']} | {_fmt(phase['target_rate'], 0)} "
                f"| {_fmt(phase['achieved_producer_rate'], 0)} | {_fmt(lat['p50_seconds'], 2)} | {_fmt(lat['p95_seconds'], 2)} "
                f"| {_fmt(lat['p99_seconds'], 2)} | {_fmt(lat['max_seconds'], 2)} | {_fmt(job.get('weighted_p95_seconds'), 2)} "
                f"| {_load(phase.get('load_before'))} / {_load(phase.get('load_after'))} |")
    return lines


def scoring_table(results: dict) -> list[str]:
    stage = _get(results, "scoring", "scoring_stage") or {}
    seed = _get(results, "scoring", "seed_vs_ours") or {}
    lines = ["| measurement | rows | seconds (best of N) | rows/s | load |", "|---|---|---|---|---|"]
    if stage:
        load = _load(_get(stage, "load", "before"))
        for key, label in (("raw_predict_proba_seconds", "raw predict_proba, in process"),
                           ("raw_with_input_preparation_seconds", "raw + prepare_model_input"),
                           ("pyfunc_in_process_seconds", "registry pyfunc predict, in process"),
                           ("spark_scoring_stage_seconds", "job's scoring stage (spark_udf, noop sink)"),
                           ("spark_mapinpandas_pyfunc_seconds", "prototype: mapInPandas + pyfunc loaded once per worker"),
                           ("spark_passthrough_seconds", "Spark pass-through of the same cached rows")):
            if key in stage:
                lines.append(f"| {label} | {stage['rows']:,} | {stage[key]:.3f} | {stage['rows'] / stage[key]:,.0f} | {load} |")
    if seed:
        load = _load(_get(seed, "load", "before"))
        lines.append(f"| seed way: toPandas, LabelEncoder per row, scaler, predict, to_sql | {seed['rows']:,} "
                     f"| {seed['seed_seconds']:.3f} | {seed['seed_rows_per_second']:,} | {load} |")
        lines.append(f"| ours: ScoringBatchWriter (risk join, UDF, COPY, Redis, Kafka, metrics) | {seed['rows']:,} "
                     f"| {seed['ours_seconds']:.3f} | {seed['ours_rows_per_second']:,} | {load} |")
    return lines


def stages_table(results: dict) -> list[str]:
    stages = _get(results, "stages", "stages") or {}
    lines = ["| stage | seconds | rows/s | addBatch ms | addBatch ms per (user, batch) | queryPlanning ms "
             "| walCommit+commitOffsets ms | state updates ms | state commit ms | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in stages.items():
        lines.append(f"| {name} | {_fmt(s.get('seconds'), 2)} | {_fmt(s.get('rows_per_second'))} | {_fmt(s.get('addBatch_ms'))} "
                     f"| {_fmt(s.get('add_batch_ms_per_user_batch'), 3)} "
                     f"| {_fmt(s.get('queryPlanning_ms'))} | {_fmt((s.get('walCommit_ms') or 0) + (s.get('commitOffsets_ms') or 0))} "
                     f"| {_fmt(s.get('state_all_updates_ms'))} | {_fmt(s.get('state_commit_ms'))} | {_load(s.get('load'))} |")
    per_user = _get(results, "stages", "per_user_function") or {}
    if per_user:
        lines += ["", "| per-user feature function (no Spark) | value |", "|---|---|"]
        for key in ("users", "events_per_user", "per_user_call_cpu_ms_new_users", "per_user_call_cpu_ms_with_state",
                    "per_user_call_ms_with_state", "per_user_events_per_cpu_second", "vectorised_events_per_cpu_second",
                    "speedup_vectorised_vs_per_user_cpu"):
            lines.append(f"| {key} | {_fmt(per_user.get(key), 3)} |")
        lines.append(f"| load (1 min) | {_load(per_user.get('load'))} |")
    return lines


def render(results: dict) -> str:
    """The whole report as markdown."""
    machine = results.get("machine", {})
    head = [f"# Benchmark run {results.get('started_at', '?')}", "",
            f"Machine: {machine.get('cpus', '?')} CPUs, shared; load average at start "
            f"{_load(results.get('load_start'))}, at end {_load(results.get('load_end'))}. "
            "Spark local[2]; services of the local stack. Numbers taken under load are pessimistic.", ""]
    sections = [("Targets", targets_table), ("End-to-end streaming (spark-submit job)", streaming_table),
                ("End-to-end latency at fixed rates", latency_table),
                ("Scoring stage and the seed's batch path", scoring_table),
                ("Where the time goes (in-process stages, same backlog)", stages_table)]
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
    args = parser.parse_args(argv)
    markdown = render(json.loads(args.results.read_text()))
    if args.output:
        args.output.write_text(markdown)
    print(markdown)
    return markdown


if __name__ == "__main__":
    main()
