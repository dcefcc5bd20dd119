"""Pieces of `make demo`: send the seed's two scenario transactions, wait until the job has
scored them (it is up), plan the live traffic as the continuation of the demo's history (same
simulated bank: seed and customers of the history, event time right after the history's newest
event or the previous demo run's last live transaction), then (after the live transactions)
wait until everything produced is scored and print a summary, with the precision and recall of
the live alerts against the simulator's ground truth.

The ground truth never reaches the job: ``live-plan`` re-derives it from the simulator (same
seed, customers, fraud rate and start as the producer's stream) into a CSV under .stack/demo/,
which only the summary reads.

Reads: PostgreSQL (transactions, fraud_alerts, quarantine), the settings, the history Parquet.
Writes: the two seed scenario messages to KAFKA_TOPIC (``send-seed-scenarios``); the live
ground truth CSV (``live-plan --truth``).

    python -m devstack.demo send-seed-scenarios --run-tag 1700000000
    python -m devstack.demo wait-scored --run-tag 1700000000
    python -m devstack.demo live-plan --customers 2000 --fraud-rate 0.01 --num 3000 --truth .stack/demo/truth-1700000000.csv
    python -m devstack.demo summary --run-tag 1700000000 --since 2026-01-01T00:00:00Z --expect 3002 \
        --truth .stack/demo/truth-1700000000.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from fraudops.settings import Settings, load_settings

DEFAULT_HISTORY = "data/history.parquet"


def seed_messages_for_run(run_tag: str) -> list[dict]:
    """The seed's two scenario messages, their transaction ids made unique to this demo run
    (a re-run would otherwise be deduplicated by transaction_id)."""
    from simulator.generator import seed_scenario_messages

    messages = seed_scenario_messages()
    for message in messages:
        message["transaction_id"] = f"{message['transaction_id']}_{run_tag}"
    return messages


def send_seed_scenarios(settings: Settings, run_tag: str) -> list[str]:
    """Produce the seed's normal and fraud scenario messages in the seed's format."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_brokers})
    ids = []
    for message in seed_messages_for_run(run_tag):
        producer.produce(settings.kafka_topic, key=message["user_id"].encode(), value=json.dumps(message).encode())
        ids.append(message["transaction_id"])
    if producer.flush(30):
        raise ConnectionError(f"Kafka at {settings.kafka_brokers} did not take the seed scenarios; `make stack-up`")
    return ids


def processed_since(conn, since: datetime) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM transactions WHERE ingested_at >= %(s)s)"
                    " + (SELECT count(*) FROM quarantine WHERE quarantined_at >= %(s)s)", {"s": since})
        return cur.fetchone()[0]


def wait_until_processed(conn, since: datetime, expect: int, timeout: float) -> int:
    """Poll until ``expect`` messages produced after ``since`` are scored or quarantined."""
    deadline = time.monotonic() + timeout
    done = processed_since(conn, since)
    while done < expect and time.monotonic() < deadline:
        time.sleep(2)
        conn.rollback()
        done = processed_since(conn, since)
        print(f"\r  processed {done}/{expect}", end="", flush=True)
    print()
    return done


SUMMARY_SQL = """
SELECT count(*), count(*) FILTER (WHERE is_fraud), min(produced_at), max(ingested_at),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - produced_at)),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - produced_at)),
       string_agg(DISTINCT model_version, ',')
FROM transactions WHERE ingested_at >= %(s)s
"""
# Latency of the rows produced once the job was scoring (after its first commit of this run):
# the rows produced before it waited for the job's own start, reported apart.
STEADY_LATENCY_SQL = """
WITH run AS (SELECT min(ingested_at) AS first_commit FROM transactions WHERE ingested_at >= %(s)s)
SELECT count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - produced_at)),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - produced_at)),
       (SELECT first_commit FROM run), min(produced_at), max(ingested_at)
FROM transactions, run WHERE ingested_at >= %(s)s AND produced_at > run.first_commit
"""
TOP_ALERTS_SQL = """
SELECT a.transaction_id, a.user_id, a.amount, a.currency, a.country, a.merchant, round(a.fraud_score::numeric, 4),
       a.reasons
FROM fraud_alerts a JOIN transactions t USING (transaction_id)
WHERE t.ingested_at >= %(s)s ORDER BY a.fraud_score DESC LIMIT 5
"""


def wait_until_scored(conn, transaction_ids: list[str], timeout: float) -> bool:
    """Poll until every one of ``transaction_ids`` is in transactions (the job is scoring)."""
    deadline = time.monotonic() + timeout
    while True:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM transactions WHERE transaction_id = ANY(%s)", (transaction_ids,))
            done = cur.fetchone()[0]
        conn.rollback()
        if done >= len(transaction_ids) or time.monotonic() >= deadline:
            return done >= len(transaction_ids)
        time.sleep(0.5)


# --- the live traffic: the history's customers, continued in event time ------------------------------
def history_seed() -> int:
    """The seed `mlflow run . -e main` generates the demo's history with (pipelines.main's default)."""
    from pipelines.common import defaults_of
    from pipelines.main import run_pipeline

    return int(defaults_of(run_pipeline)["seed"])


def live_id_prefix(seed: int) -> str:
    """The start of every live transaction id of ``seed`` (simulator.generator.LiveSimulator's ids)."""
    return f"TXN_L{seed}_"


def previous_live_end(conn, seed: int) -> datetime | None:
    """Event time of the newest live transaction of ``seed`` already scored (an earlier demo run)."""
    pattern = live_id_prefix(seed).replace("_", "\\_") + "%"
    with conn.cursor() as cur:
        cur.execute("SELECT max(transaction_time) FROM transactions WHERE transaction_id LIKE %s", (pattern,))
        value = cur.fetchone()[0]
    conn.rollback()
    return value


def live_start(history: str | Path, previous_end: datetime | None) -> datetime:
    """1 ms after the history's newest event, or after ``previous_end`` when later: the live stream
    continues the history's customers where they stopped (their features in the store stay
    within the windows) and never repeats an earlier run's transactions."""
    times = pd.read_parquet(history, columns=["transaction_time"])["transaction_time"]
    newest = pd.to_datetime(times, utc=True).max().to_pydatetime()
    if previous_end is not None and previous_end > newest:
        newest = previous_end
    return newest + timedelta(milliseconds=1)


def live_ground_truth(seed: int, customers: int, fraud_rate: float, start: datetime, num: int) -> pd.DataFrame:
    """transaction_id, is_fraud, fraud_scenario of the first ``num`` transactions the producer sends
    with ``--seed seed --customers customers --fraud-rate fraud_rate --start start`` (the same
    simulator, so the same stream)."""
    from simulator.generator import LiveSimulator

    rows = []
    for event in LiveSimulator(seed=seed, fraud_ratio=fraud_rate, customers=customers, start=start):
        if event.kind != "transaction":
            continue
        rows.append((event.message["transaction_id"], event.is_fraud, event.fraud_scenario))
        if len(rows) >= num:
            break
    return pd.DataFrame(rows, columns=["transaction_id", "is_fraud", "fraud_scenario"])


def plan_live(conn, history: str | Path, seed: int, customers: int, fraud_rate: float, num: int,
              truth: str | Path) -> list[str]:
    """Write the ground truth of the planned live stream to ``truth``; returns the producer's arguments."""
    start = live_start(history, previous_live_end(conn, seed))
    frame = live_ground_truth(seed, customers, fraud_rate, start, num)
    Path(truth).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(truth, index=False)
    return ["--seed", str(seed), "--customers", str(customers), "--start", start.isoformat()]


def alert_quality(conn, truth: pd.DataFrame) -> dict:
    """Precision and recall of the job's alerts on the scored live transactions of ``truth``."""
    with conn.cursor() as cur:
        cur.execute("SELECT transaction_id, is_fraud FROM transactions WHERE transaction_id = ANY(%s)",
                    (truth["transaction_id"].tolist(),))
        scored = pd.DataFrame(cur.fetchall(), columns=["transaction_id", "alert"])
    conn.rollback()
    rows = truth.merge(scored, on="transaction_id")
    alert, fraud = rows["alert"].fillna(False).astype(bool), rows["is_fraud"].astype(int) == 1
    caught = rows[fraud & alert]
    per_scenario = {name: (int((caught["fraud_scenario"] == name).sum()), int(count))
                    for name, count in rows.loc[fraud, "fraud_scenario"].value_counts().sort_index().items()}
    return {"scored": len(rows), "alerts": int(alert.sum()), "frauds": int(fraud.sum()), "caught": len(caught),
            "precision": len(caught) / alert.sum() if alert.sum() else None,
            "recall": len(caught) / fraud.sum() if fraud.sum() else None, "per_scenario": per_scenario}


def quality_lines(quality: dict) -> list[str]:
    def share(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [f"live alerts vs truth: precision {share(quality['precision'])} ({quality['caught']} of "
             f"{quality['alerts']} alerts are fraud), recall {share(quality['recall'])} ({quality['caught']} of "
             f"{quality['frauds']} frauds alerted) over {quality['scored']} scored live transactions "
             "(the simulator's ground truth; the job never sees it)"]
    if quality["per_scenario"]:
        lines.append("  recall by scenario: " + ", ".join(
            f"{name} {caught}/{count}" for name, (caught, count) in quality["per_scenario"].items()))
    return lines


def reasons_text(reasons) -> str:
    """An alert's top contributing features (fraud_alerts.reasons) on one line."""
    if not reasons:
        return "(none recorded)"
    return ", ".join(f"{r['name']}={r['value']} ({r['contribution']:+.3f})" for r in reasons)


def print_summary(conn, settings: Settings, since: datetime, seed_ids: list[str],
                  truth: pd.DataFrame | None = None) -> None:
    """The demo's summary; with ``truth`` (live-plan's CSV) also the live alerts' precision and recall."""
    with conn.cursor() as cur:
        cur.execute(SUMMARY_SQL, {"s": since})
        total, alerts, first, last, p50, p95, versions = cur.fetchone()
        cur.execute(STEADY_LATENCY_SQL, {"s": since})
        steady_rows, steady_p50, steady_p95, first_commit, steady_first, steady_last = cur.fetchone()
        cur.execute("SELECT count(*) FROM quarantine WHERE quarantined_at >= %(s)s", {"s": since})
        quarantined = cur.fetchone()[0]
        cur.execute(TOP_ALERTS_SQL, {"s": since})
        top = cur.fetchall()
        cur.execute("SELECT t.transaction_id, t.amount, t.country, round(t.fraud_score::numeric, 4), t.is_fraud, "
                    "a.reasons FROM transactions t LEFT JOIN fraud_alerts a USING (transaction_id) "
                    "WHERE t.transaction_id = ANY(%s)", (seed_ids,))
        seeds = cur.fetchall()
    seconds = (steady_last - steady_first).total_seconds() if steady_rows else 0.0
    print("\n=== fraud-detection-mlops demo summary ===")
    print(f"transactions scored : {total}   alerts: {alerts}   quarantined: {quarantined}")
    if seconds > 0:
        print(f"throughput          : {steady_rows / seconds:.0f} tx/s over the rows produced after the first commit "
              f"({seconds:.1f} s; the producer's rate: the job's capacity is in make bench)")
    if first_commit is not None and first is not None:
        print(f"first commit        : {(first_commit - first).total_seconds():.1f} s after the first message "
              "(includes the job's own start when the demo launched it)")
    if steady_rows:
        print(f"end-to-end latency  : p50 {steady_p50:.2f} s, p95 {steady_p95:.2f} s over {steady_rows} rows produced "
              "after the first commit (Kafka timestamp -> PostgreSQL commit)")
    if p50 is not None:
        print(f"  all rows          : p50 {p50:.2f} s, p95 {p95:.2f} s (start-up wait included)")
    print(f"model version(s)    : {versions} of {settings.model_name} ({settings.model_uri})")
    if truth is not None:
        print("\n".join(quality_lines(alert_quality(conn, truth))))
    print("top alerts:")
    for row in top:
        print(f"  {row[0]:<28} {row[1]:<12} {row[2]:>10.2f} {row[3]} {row[4]}  {row[5][:24]:<24} score {row[6]}")
        print(f"    reasons: {reasons_text(row[7])}")
    print("the seed's two scenarios:")
    for tid, amount, country, score, flagged, reasons in seeds:
        print(f"  {tid:<28} {amount:>10.2f} {country}  score {score}  {'ALERT' if flagged else 'ok'}")
        if flagged:
            print(f"    reasons: {reasons_text(reasons)}")
    print("where to look:")
    print(f"  MLflow UI   : {settings.mlflow_tracking_uri}")
    print("  PostgreSQL  : set -a; . .stack/stack.env; set +a; PGPASSWORD=$POSTGRES_PASSWORD psql -h "
          f"{settings.postgres_host} -p {settings.postgres_port} -U {settings.postgres_user} {settings.postgres_db} "
          "-c 'SELECT * FROM fraud_summary;'")
    print(f"  Redis       : redis-cli -p {settings.redis_port} -a \"$REDIS_PASSWORD\" --no-auth-warning "
          "ZREVRANGE recent_fraud_alerts 0 9")
    print("  job log     : .stack/logs/streaming.log    reports: reports/    health: make health")
    from devstack.portal_demo import summary_lines  # the analyst portal's URL and demo login

    print("\n".join(summary_lines(settings)) or "  Portal      : not started (make portal-bg)")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devstack.demo`` (the steps of `make demo`)."""
    from fraudops.cli import HelpFormatter, add_command

    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description="make demo helpers",
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    seed = add_command(sub, "send-seed-scenarios", help="the seed's two transactions, tagged with --run-tag")
    seed.add_argument("--run-tag", required=True, help="suffix making the transaction ids unique")
    summary = add_command(sub, "summary", help="wait until every message is scored, then print the summary")
    summary.add_argument("--run-tag", required=True, help="the tag given to send-seed-scenarios")
    summary.add_argument("--since", required=True, help="ISO-8601 time the demo started producing")
    summary.add_argument("--expect", type=int, required=True, help="messages produced since then")
    summary.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the messages")
    summary.add_argument("--truth", default=None, help="live-plan's ground truth CSV: precision and recall (default: none)")
    plan = add_command(sub, "live-plan", help="the live stream continuing the history: producer args on stdout")
    plan.add_argument("--history", default=DEFAULT_HISTORY, help="the demo's history (Parquet)")
    plan.add_argument("--seed", type=int, default=None, help="the history's seed (default: pipelines.main's)")
    plan.add_argument("--customers", type=int, required=True, help="the history's customers")
    plan.add_argument("--fraud-rate", type=float, required=True, help="the producer's --fraud-rate")
    plan.add_argument("--num", type=int, required=True, help="the producer's --num")
    plan.add_argument("--truth", required=True, help="where the ground truth CSV goes")
    ready = add_command(sub, "wait-scored", help="wait until the seed's scenarios of this run are scored")
    ready.add_argument("--run-tag", required=True, help="the tag given to send-seed-scenarios")
    ready.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one demo step; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.command == "send-seed-scenarios":
        print("sent the seed's scenarios:", ", ".join(send_seed_scenarios(settings, args.run_tag)))
        return 0
    from fraudops.db import connect

    if args.command == "live-plan":
        if not Path(args.history).is_file():
            parser.error(f"argument --history: no such file {args.history!r} (step 1/4 of make demo writes it)")
        conn = connect(settings)
        try:
            seed = history_seed() if args.seed is None else args.seed
            print(" ".join(plan_live(conn, args.history, seed, args.customers, args.fraud_rate, args.num, args.truth)))
        finally:
            conn.close()
        return 0
    if args.command == "wait-scored":
        started = time.monotonic()
        conn = connect(settings)
        try:
            scored = wait_until_scored(conn, [m["transaction_id"] for m in seed_messages_for_run(args.run_tag)],
                                       args.timeout)
        finally:
            conn.close()
        if not scored:
            print(f"the seed's scenarios were not scored within {args.timeout:.0f}s; see .stack/logs/streaming.log",
                  file=sys.stderr)
            return 1
        print(f"the job is scoring: the seed's scenarios committed {time.monotonic() - started:.1f} s after they were sent")
        return 0

    try:
        since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
    except ValueError:
        parser.error(f"argument --since: not an ISO-8601 time: {args.since!r}")
    conn = connect(settings)
    try:
        done = wait_until_processed(conn, since, args.expect, args.timeout)
        truth = pd.read_csv(args.truth, dtype={"transaction_id": str}) if args.truth else None
        print_summary(conn, settings, since, [m["transaction_id"] for m in seed_messages_for_run(args.run_tag)], truth)
    finally:
        conn.close()
    if done < args.expect:
        print(f"only {done} of {args.expect} messages processed within {args.timeout:.0f}s; "
              "see .stack/logs/streaming.log", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
