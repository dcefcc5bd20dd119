"""The decision service's part of `make demo`: wait until it answers, then decide live traffic.

Reads: the settings (DECISIONS_PORT), ``<state dir>/decisions-demo.key`` (the demo's API key,
created on the first run: ``python -m decisions keys create --client demo``, mode 600).
Writes: decisions through the API (which publishes them; the streaming job records them).

    python -m devstack.decisions_demo wait                      # until /health is ok; prints the URL
    python -m devstack.decisions_demo live --num 500 --seed 42 --customers 2000 --start 2025-01-31T00:00:00Z
        # 500 live transactions of the simulator (same seed, customers and a start after the
        # history: the history's customers, continued; `devstack.demo live-plan` prints them) decided through POST /v1/decisions by 8 concurrent callers; prints the
        # decisions, their latency and their precision / recall against the simulator's truth
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import islice

from fraudops.settings import Settings, load_settings


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.decisions_port}"


def demo_key(settings: Settings) -> str:
    """The demo's API key, created once and kept in the state folder (mode 600)."""
    path = settings.state_dir / "decisions-demo.key"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    from decisions.auth import create_client
    from fraudops.db import connect

    conn = connect(settings)
    try:
        key = create_client(conn, "demo", 100_000.0)
    finally:
        conn.close()
    path.write_text(key + "\n")
    os.chmod(path, 0o600)
    return key


def wait(settings: Settings, timeout: float = 240.0) -> int:
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url(settings)}/health", timeout=2)
            if response.status_code == 200:
                body = response.json()
                print(f"decision service: {url(settings)}/v1/decisions (model version {body['model_version']}, "
                      f"budget {body['timeout_ms']:g} ms, degraded mode {body['degraded_mode']}); log "
                      f".stack/logs/decisions.log")
                return 0
            last = response.text[:200]
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = str(exc)
        time.sleep(0.5)
    print(f"error: the decision service did not become ready within {timeout:g}s ({last}); "
          f"see .stack/logs/decisions.log", file=sys.stderr)
    return 1


def live(settings: Settings, num: int, seed: int, customers: int, fraud_rate: float, callers: int = 8,
         start: datetime | None = None) -> int:
    import httpx
    import numpy as np

    from fraudops.contract.messages import serialize_message
    from simulator.generator import LiveSimulator
    from streaming.producer import default_start

    simulator = LiveSimulator(seed=seed, fraud_ratio=fraud_rate, customers=customers,
                              start=start or default_start(num, customers))
    events = list(islice((e for e in simulator if e.kind == "transaction"), num))
    key = demo_key(settings)
    client = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def decide(event):
        started = time.perf_counter()
        response = client.post(f"{url(settings)}/v1/decisions", content=serialize_message(event.message))
        return event, response, (time.perf_counter() - started) * 1000.0

    with ThreadPoolExecutor(callers) as pool:
        results = list(pool.map(decide, events))
    failed = [r for _, r, _ in results if r.status_code != 200]
    answers = [(e, r.json(), ms) for e, r, ms in results if r.status_code == 200]
    decisions = np.array([a["decision"] for _, a, _ in answers])
    truth = np.array([e.is_fraud for e, _, _ in answers], dtype=bool)
    flagged = decisions != "approve"
    latency = np.array([ms for _, _, ms in answers])
    counts = {d: int((decisions == d).sum()) for d in ("approve", "review", "decline")}
    precision = (flagged & truth).sum() / max(flagged.sum(), 1)
    recall = (flagged & truth).sum() / max(truth.sum(), 1)
    print(f"decisions of {len(answers)} live transactions ({len(failed)} failed): {counts}, "
          f"{sum(a['degraded'] for _, a, _ in answers)} degraded")
    print(f"  review+decline vs the simulator's truth: precision {precision:.3f}, recall {recall:.3f} "
          f"({int(truth.sum())} frauds); declines: {counts['decline']}, of them fraud "
          f"{int((truth & (decisions == 'decline')).sum())}")
    if len(latency):
        print(f"  latency seen by {callers} concurrent callers: p50 {np.percentile(latency, 50):.1f} ms, "
              f"p99 {np.percentile(latency, 99):.1f} ms")
    example = events[0].message if events else None
    if example is not None:
        print(f"  try it: curl -s -X POST {url(settings)}/v1/decisions -H 'Authorization: Bearer '$(cat "
              f"{settings.state_dir}/decisions-demo.key) -d '{serialize_message(example).decode()}'")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devstack.decisions_demo`` (the decision part of `make demo`)."""
    from fraudops.cli import HelpFormatter, add_command

    parser = argparse.ArgumentParser(prog="python -m devstack.decisions_demo", formatter_class=HelpFormatter,
                                     description="the decision service's part of make demo")
    commands = parser.add_subparsers(dest="command", required=True)
    add_command(commands, "wait", help="wait until the decision service answers")
    run = add_command(commands, "live", help="decide live transactions through POST /v1/decisions, print a summary")
    run.add_argument("--num", type=int, default=500, help="transactions decided")
    run.add_argument("--seed", type=int, default=7, help="the simulator's seed")
    run.add_argument("--customers", type=int, default=2000, help="customers of the simulated stream")
    run.add_argument("--fraud-rate", type=float, default=0.01, help="share of fraudulent transactions")
    run.add_argument("--callers", type=int, default=8, help="concurrent HTTP callers")
    run.add_argument("--start", default=None,
                     help="event time of the first transaction, ISO-8601 (devstack.demo live-plan prints one "
                          "continuing the history; default: the producer's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.command == "wait":
        return wait(settings)
    if args.num <= 0 or args.callers <= 0:
        parser.error("--num and --callers must be > 0")
    start = None
    if args.start is not None:
        try:
            start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        except ValueError:
            parser.error(f"argument --start: not an ISO-8601 time: {args.start!r}")
    return live(settings, args.num, args.seed, args.customers, args.fraud_rate, args.callers, start)


if __name__ == "__main__":
    raise SystemExit(main())
