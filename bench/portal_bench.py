"""Benchmark of the analyst portal: alert queue and dashboard response times with 1,000,000
transactions and 20,000 alerts, 50 concurrent live clients, and live-queue delivery delay.

Reads/writes: a dedicated PostgreSQL schema ``bench_portal_<id>`` (migrations applied, filled by
SQL generate_series: transactions scored over the last 30 days, 2% of them alerts with mixed
review statuses, per-batch latency metrics for the last hour, a drift check), dropped at the end
(unless --keep); a portal process (`python -m portal serve`) on a free loopback port for that
schema; bench/results/portal_<timestamp>.json.
Run:  .venv/bin/python -m bench.portal_bench [--transactions 1000000] [--alerts 20000] [--clients 50]
      (also part of `make bench`: bench.run --only portal)

Phases (each with the machine's load average, the box is shared):
  sequential   one client: queue pages (several filters, page 2 by cursor) and the dashboard
  concurrent   N clients, each with a live /alerts/stream open, loading a queue page or the
               dashboard panel every --think seconds (+-50%) for --seconds (people at work)
  saturation   the same N clients without pauses (closed loop): the capacity of one portal process
  live         alerts inserted one by one (commit), the time until each of the N streams has it
Targets (issue 14): queue and dashboard p95 <= 200 ms; N live clients served; delivery <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.bench_support import RESULTS_DIR, ROOT, free_port, machine_load, run_id

TARGET_P95_MS = 200.0
TARGET_DELIVERY_S = 2.0
QUEUE_PATHS = ("/alerts", "/alerts?status=pending", "/alerts?country=DE", "/alerts?min_score=0.95",
               "/alerts?status=confirmed&country=US", "/alerts?model_version=2&limit=100")
DASHBOARD_PATHS = ("/dashboard", "/dashboard/panel")

FILL_TRANSACTIONS_SQL = """
INSERT INTO transactions (transaction_id, user_id, amount, currency, merchant, merchant_category, transaction_time,
    country, transaction_type, channel, fraud_score, is_fraud, decision_threshold, model_version,
    feature_set_version, produced_at, scored_at, ingested_at)
SELECT 'BTX_' || i, 'USER_' || (i %% %(users)s), round((random() * 900 + 1)::numeric, 2), 'USD',
       'Merchant ' || (i %% 500), 'retail',
       now() - (%(n)s - i) * %(spacing)s * interval '1 second',
       (ARRAY['US','GB','DE','FR','ES','IT','NL','CA','BR','IN','JP','RU','NG','MX','AU'])[1 + i %% 15],
       'purchase', 'online',
       CASE WHEN i %% %(every)s = 0 THEN 0.5 + random() / 2 ELSE random() * 0.5 END,
       i %% %(every)s = 0, 0.5, (1 + (i * 3) / %(n)s)::text, 'v1',
       now() - (%(n)s - i) * %(spacing)s * interval '1 second' - interval '800 milliseconds',
       now() - (%(n)s - i) * %(spacing)s * interval '1 second',
       now() - (%(n)s - i) * %(spacing)s * interval '1 second'
FROM generate_series(1, %(n)s) AS i
"""
FILL_ALERTS_SQL = """
INSERT INTO fraud_alerts (transaction_id, user_id, amount, currency, merchant, country, transaction_time,
    fraud_score, model_version, detection_time, alert_status, reviewed_by, reviewed_at, notes)
SELECT transaction_id, user_id, amount, currency, merchant, country, transaction_time, fraud_score, model_version,
       scored_at, s.status, CASE WHEN s.status <> 'pending' THEN 'bench' END,
       CASE WHEN s.status <> 'pending' THEN scored_at + interval '1 hour' END, NULL
FROM (SELECT t.*, (ARRAY['pending','pending','pending','pending','pending','pending','pending',
                         'confirmed','confirmed','false_positive','escalated'])[1 + (hashtext(transaction_id) & 1023) % 11]
                  AS status
      FROM transactions t WHERE is_fraud) s
"""
FILL_METRICS_SQL = """
INSERT INTO monitoring_metrics (source, metric_name, metric_value, labels, recorded_at)
SELECT 'streaming', m.name, m.value * (0.8 + random() * 0.4), '{"query": "scoring"}'::jsonb,
       now() - i * interval '1 second'
FROM generate_series(1, 3600) AS i,
     (VALUES ('latency_p50_seconds', 1.2), ('latency_p95_seconds', 2.5), ('scored_rows', 400.0)) AS m(name, value)
"""
FILL_AUDIT_SQL = """
INSERT INTO audit_log (event_type, actor, details, created_at) VALUES
('model_switch', 'streaming-job', '{"from_version": "1", "to_version": "2"}', now() - interval '20 days'),
('model_switch', 'streaming-job', '{"from_version": "2", "to_version": "3"}', now() - interval '10 days'),
('model_promotion', 'pipelines.promote', '{"candidate_version": "3", "champion_version": "2", "applied_stage": "Production", "reasons": ["beats the champion"]}', now() - interval '10 days')
"""
FILL_DRIFT_SQL = """
INSERT INTO monitoring_metrics (source, metric_name, metric_value, labels, recorded_at)
SELECT 'drift', m.name, m.value, '{"model_version": "3", "window": "24h", "drifted_columns": ["amount"]}'::jsonb,
       date_trunc('second', now()) - interval '5 minutes'
FROM (VALUES ('dataset_drift', 0.0), ('drift_share', 0.1), ('drifted_columns_count', 3.0)) AS m(name, value)
"""
INSERT_LIVE_ALERT_SQL = """
WITH t AS (
  INSERT INTO transactions (transaction_id, user_id, amount, currency, merchant, transaction_time, country,
      transaction_type, fraud_score, is_fraud, decision_threshold, model_version, scored_at, produced_at)
  VALUES (%(tid)s, 'USER_LIVE', 999, 'USD', 'Live shop', now(), 'US', 'purchase', 0.97, TRUE, 0.5, '3', now(), now())
  RETURNING transaction_id)
INSERT INTO fraud_alerts (transaction_id, user_id, amount, currency, merchant, country, transaction_time, fraud_score,
    model_version)
SELECT transaction_id, 'USER_LIVE', 999, 'USD', 'Live shop', 'US', now(), 0.97, '3' FROM t
"""


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q):
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"n": len(values), "p50": round(pick(0.5), 2), "p95": round(pick(0.95), 2), "p99": round(pick(0.99), 2),
            "max": round(ordered[-1], 2), "mean": round(statistics.fmean(values), 2)}


def fill_schema(conn, schema: str, transactions: int, alerts: int) -> dict:
    """Create and fill the benchmark schema; returns row counts and seconds taken."""
    from fraudops.db import apply_migrations

    started = time.perf_counter()
    apply_migrations(conn, schema)
    every = max(1, transactions // alerts)
    spacing = 30 * 86400 / transactions  # the rows span the last 30 days
    with conn, conn.cursor() as cur:
        cur.execute("SELECT set_config('search_path', %s, true)", (schema,))
        cur.execute(FILL_TRANSACTIONS_SQL, {"n": transactions, "users": max(1, transactions // 20),
                                            "every": every, "spacing": spacing})
        cur.execute(FILL_ALERTS_SQL)
        cur.execute(FILL_METRICS_SQL)
        cur.execute(FILL_AUDIT_SQL)
        cur.execute(FILL_DRIFT_SQL)
        cur.execute("SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM fraud_alerts)")
        counts = cur.fetchone()
    conn.autocommit = True
    with conn.cursor() as cur:
        for table in ("transactions", "fraud_alerts", "monitoring_metrics", "audit_log"):
            cur.execute(f'ANALYZE "{schema}".{table}')
    conn.autocommit = False
    return {"transactions": counts[0], "alerts": counts[1], "fill_seconds": round(time.perf_counter() - started, 1)}


def start_portal(schema: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen([sys.executable, "-m", "portal", "serve", "--port", str(port), "--pg-schema", schema],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"portal exited; see {log_path}")
        time.sleep(0.3)
    process.terminate()
    raise RuntimeError(f"portal did not answer within 60 s; see {log_path}")


async def login(client: httpx.AsyncClient, name: str, password: str) -> None:
    form = (await client.get("/login")).text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = await client.post("/login", data={"name": name, "password": password, "csrf_token": token})
    if response.status_code != 303:
        raise RuntimeError(f"bench login failed: HTTP {response.status_code}")


async def timed_get(client: httpx.AsyncClient, path: str, times: dict[str, list[float]], key: str) -> None:
    started = time.perf_counter()
    response = await client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: HTTP {response.status_code}")
    times.setdefault(key, []).append(elapsed)


async def sequential_phase(base: str, cookies, repeats: int) -> dict:
    times: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=base, cookies=cookies, timeout=60) as client:
        first = (await client.get("/alerts")).text
        older = re.search(r'href="([^"]+)" id="older"', first)
        cursor = older.group(1).replace("&amp;", "&") if older else None  # page 2 of the queue
        paths = [*QUEUE_PATHS, *([cursor] if cursor else [])]
        for _ in range(repeats):
            for path in paths:
                await timed_get(client, path, times, "queue")
            for path in DASHBOARD_PATHS:
                await timed_get(client, path, times, "dashboard")
    return {key: percentiles(values) for key, values in times.items()} | {"load": machine_load()}


class LiveClient:
    """One browser-like client: a live stream open, recording when each alert event arrives."""

    def __init__(self, base: str, cookies):
        self.client = httpx.AsyncClient(base_url=base, cookies=cookies, timeout=httpx.Timeout(60, read=None))
        self.arrivals: dict[str, float] = {}
        self.connected = asyncio.Event()

    async def listen(self) -> None:
        async with self.client.stream("GET", "/alerts/stream") as stream:
            self.connected.set()
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    self.arrivals[json.loads(line[5:])["transaction_id"]] = time.perf_counter()


async def concurrent_phase(clients: list[LiveClient], seconds: float, think: float) -> dict:
    """Every client loads queue pages and the dashboard panel while its stream stays open, pausing
    ``think`` seconds (+-50%) between requests; ``think=0`` is a saturation test (closed loop)."""
    import random

    times: dict[str, list[float]] = {}
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds
    rng = random.Random(7)

    async def browse(i: int, live: LiveClient):
        n = i
        await asyncio.sleep(rng.uniform(0, think))  # clients do not start in lockstep
        while time.perf_counter() < stop_at:
            try:
                if n % 2 == 0:
                    await timed_get(live.client, QUEUE_PATHS[(n // 2) % len(QUEUE_PATHS)], times, "queue")
                else:
                    await timed_get(live.client, "/dashboard/panel", times, "dashboard")
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            n += 1
            if think:
                await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))

    started = time.perf_counter()
    await asyncio.gather(*(browse(i, c) for i, c in enumerate(clients)))
    elapsed = time.perf_counter() - started
    requests = sum(len(v) for v in times.values())
    return {key: percentiles(values) for key, values in times.items()} | {
        "requests": requests, "requests_per_second": round(requests / elapsed, 1), "errors": len(errors),
        "first_errors": errors[:5], "load": machine_load()}


async def live_phase(settings, schema: str, clients: list[LiveClient], alerts: int) -> dict:
    from portal.db import connect_on_schema

    conn = connect_on_schema(settings, schema)
    delays: list[float] = []
    missing = 0
    try:
        for i in range(alerts):
            tid = f"BLIVE_{run_id()}_{i}"
            with conn.cursor() as cur:
                cur.execute(INSERT_LIVE_ALERT_SQL, {"tid": tid})
            conn.commit()
            committed = time.perf_counter()
            deadline = committed + 10
            while time.perf_counter() < deadline and not all(tid in c.arrivals for c in clients):
                await asyncio.sleep(0.01)
            for c in clients:
                if tid in c.arrivals:
                    delays.append(c.arrivals[tid] - committed)
                else:
                    missing += 1
            await asyncio.sleep(0.3)
    finally:
        conn.close()
    return {"delivery_seconds": percentiles(delays), "events_expected": alerts * len(clients),
            "events_missing": missing, "load": machine_load()}


async def run_clients(settings, schema: str, base: str, name: str, password: str, n_clients: int,
                      seconds: float, repeats: int, live_alerts: int, think: float) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=60) as first:
        await login(first, name, password)
        cookies = first.cookies
        results = {"sequential": await sequential_phase(base, cookies, repeats)}
    clients = [LiveClient(base, cookies) for _ in range(n_clients)]
    listeners = [asyncio.create_task(c.listen()) for c in clients]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), timeout=60)
        results["live_clients_connected"] = sum(c.connected.is_set() for c in clients)
        results["concurrent"] = await concurrent_phase(clients, seconds, think)
        results["saturation"] = await concurrent_phase(clients, seconds / 2, 0.0)
        results["live"] = await live_phase(settings, schema, clients, live_alerts)
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        for c in clients:
            await c.client.aclose()
    return results


def uncached_dashboard_ms(settings, schema: str, repeats: int) -> dict:
    """The dashboard's PostgreSQL work alone, without the portal's 2 s cache (one connection)."""
    from portal.dashboard import dashboard_numbers
    from portal.db import connect_on_schema

    conn = connect_on_schema(settings, schema)
    times = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            dashboard_numbers(conn)
            conn.rollback()
            times.append((time.perf_counter() - started) * 1000)
    finally:
        conn.close()
    return percentiles(times) | {"load": machine_load()}


def run(settings, transactions: int = 1_000_000, alerts: int = 20_000, clients: int = 50, seconds: float = 30.0,
        repeats: int = 20, live_alerts: int = 20, keep: bool = False, think: float = 2.0) -> dict:
    """The whole benchmark; returns the results dict (also the JSON written by main)."""
    from fraudops.db import connect
    from portal.db import connect_on_schema
    from portal.users import save_user

    schema = f"bench_portal_{run_id()}"
    conn = connect(settings)
    result: dict = {"schema": schema, "clients": clients, "load_start": machine_load(),
                    "targets": {"p95_ms": TARGET_P95_MS, "delivery_seconds": TARGET_DELIVERY_S}}
    process = None
    try:
        result["data"] = fill_schema(conn, schema, transactions, alerts)
        password = secrets.token_urlsafe(16)
        user_conn = connect_on_schema(settings, schema)
        save_user(user_conn, "bench-analyst", "analyst", password)
        user_conn.close()
        log_path = RESULTS_DIR / f"portal_{schema}.log"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        result["dashboard_queries_uncached"] = uncached_dashboard_ms(settings, schema, repeats)
        process, base = start_portal(schema, log_path)
        result.update(asyncio.run(run_clients(settings, schema, base, "bench-analyst", password, clients, seconds,
                                              repeats, live_alerts, think)))
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        if not keep:
            conn.rollback()
            with conn, conn.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()
    result["load_end"] = machine_load()
    return result


def summary(result: dict) -> str:
    """A few markdown lines: the numbers against the targets."""
    def p95(*path):
        data = result
        for key in path:
            data = (data or {}).get(key)
        return data

    lines = [f"portal benchmark: {result.get('data', {}).get('transactions')} transactions, "
             f"{result.get('data', {}).get('alerts')} alerts, {result.get('clients')} live clients "
             f"(load {result.get('load_start', {}).get('load_1m')} -> {result.get('load_end', {}).get('load_1m')})"]
    for phase in ("sequential", "concurrent", "saturation"):
        for page in ("queue", "dashboard"):
            stats = p95(phase, page) or {}
            lines.append(f"- {phase:10s} {page:9s} p50 {stats.get('p50')} ms, p95 {stats.get('p95')} ms "
                         f"(n={stats.get('n')}; target p95 <= {TARGET_P95_MS:.0f} ms)")
    for phase in ("concurrent", "saturation"):
        lines.append(f"- {phase}: {p95(phase, 'requests_per_second')} requests/s, {p95(phase, 'errors')} errors")
    raw = result.get("dashboard_queries_uncached") or {}
    lines.append(f"- dashboard PostgreSQL work without the 2 s cache: p50 {raw.get('p50')} ms, p95 {raw.get('p95')} ms")
    delivery = p95("live", "delivery_seconds") or {}
    lines.append(f"- live delivery commit -> event: p50 {delivery.get('p50')} s, p95 {delivery.get('p95')} s, "
                 f"missing {p95('live', 'events_missing')} of {p95('live', 'events_expected')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the concurrent phase (saturation: half)")
    parser.add_argument("--think", type=float, default=2.0, help="seconds between a live client's requests")
    parser.add_argument("--repeats", type=int, default=20, help="rounds of the sequential phase")
    parser.add_argument("--live-alerts", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark schema")
    args = parser.parse_args(argv)
    result = run(load_settings(), args.transactions, args.alerts, args.clients, args.seconds, args.repeats,
                 args.live_alerts, args.keep, args.think)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"portal_{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(summary(result))
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
