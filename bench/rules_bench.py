"""Rule backtest benchmark (issue 24): 30 days of a 1M-transaction table, one rule, in seconds.

Reads:  the local stack's PostgreSQL (a schema of its own, dropped after).
Writes: bench/results/rules-<run id>.json; a 1M run also the key ``rule_backtest_s_30d_1m`` into
        bench/RESULTS.json and its section into bench/RESULTS.md. Target: < 60 s.
Run:    .venv/bin/python -m bench.rules_bench [--transactions 1000000]

The table: transactions spread over the last 30 days, each with the full stored feature JSON
(every feature of features/definition.py, as the stream writes it), 1 % labeled fraud. The rule
reads a message field, two features and the model score.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.bench_support import RESULTS_DIR, machine_load, run_id

RULE = 'amount > 700.0 && user_txn_count_1h >= 3.0 && cat_country != "US" || score >= 0.97'

FILL_SQL = """
INSERT INTO transactions (transaction_id, user_id, amount, currency, merchant, transaction_time, country,
    transaction_type, fraud_score, is_fraud, features)
SELECT 'RB_' || i, 'USER_' || (i %% 50000), round((random() * 900 + 1)::numeric, 2), 'USD', 'Merchant ' || (i %% 500),
       now() - (%(n)s - i) * %(spacing)s * interval '1 second',
       (ARRAY['US','GB','DE','RU','NG'])[1 + i %% 5], 'purchase', random(), random() < 0.02,
       %(template)s::jsonb || jsonb_build_object('user_txn_count_1h', i %% 7, 'user_new_country', (i %% 13 = 0)::int,
                                               'cat_country', (ARRAY['US','GB','DE','RU','NG'])[1 + i %% 5])
FROM generate_series(1, %(n)s) AS i
"""


def fill(conn, schema: str, transactions: int) -> float:
    from features.definition import CATEGORICAL_FEATURES, FEATURE_COLUMNS
    from fraudops.db import apply_migrations

    started = time.perf_counter()
    apply_migrations(conn, schema)
    template = {name: ("unknown" if name in CATEGORICAL_FEATURES else 0.0) for name in FEATURE_COLUMNS}
    with conn, conn.cursor() as cur:
        cur.execute("SELECT set_config('search_path', %s, true)", (schema,))
        cur.execute(FILL_SQL, {"n": transactions, "spacing": 30 * 86400 / transactions * 0.999,
                               "template": json.dumps(template)})
        cur.execute("INSERT INTO labels (transaction_id, is_fraud, source) SELECT transaction_id, true, 'chargeback' "
                    "FROM transactions WHERE hashtext(transaction_id) % 100 = 0")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'ANALYZE "{schema}".transactions')
        cur.execute(f'ANALYZE "{schema}".labels')
    conn.autocommit = False
    return time.perf_counter() - started


def run(settings, transactions: int = 1_000_000) -> dict:
    from fraudops.db import connect
    from rules.backtest import backtest

    schema = f"bench_rules_{run_id()}"
    conn = connect(settings)
    try:
        fill_s = fill(conn, schema, transactions)
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('search_path', %s, false)", (schema,))
        conn.commit()
        result = backtest(conn, RULE, days=30)
        threshold = backtest(conn, "score >= 0.9", days=30)
    finally:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.commit()
        conn.close()
    out = {"transactions": transactions, "fill_seconds": round(fill_s, 1), "rule": RULE,
           "rule_backtest_s_30d_1m" if transactions == 1_000_000 else "rule_backtest_s": round(result.seconds, 2),
           "threshold_backtest_s": round(threshold.seconds, 2), "rule_result": result.as_dict(),
           "target_s": 60.0, "machine": machine_load()}
    return out


SECTION_BEGIN, SECTION_END = "<!-- rules_bench -->", "<!-- /rules_bench -->"
SUMMARY_KEYS = ("rule_backtest_s_30d_1m",)


def section(result: dict) -> str:
    r = result["rule_result"]
    return (f"{SECTION_BEGIN}\n## Rule backtest (bench.rules_bench)\n\n"
            f"`{result['rule']}` on the last 30 days of {result['transactions']:,} stored transactions "
            f"(full feature JSON, 1 % labeled fraud): **{result['rule_backtest_s_30d_1m']} s** (goal < 60 s; "
            f"a threshold backtest `score >= 0.9`: {result['threshold_backtest_s']} s). {r['hits']:,} hits, "
            f"precision {r['precision']:.3f}, recall {r['recall']:.3f}; table filled in {result['fill_seconds']} s; "
            f"load {result['machine'].get('load_1m')}.\n{SECTION_END}\n")


def write_committed(result: dict, folder: Path | None = None) -> None:
    """Merge the key into bench/RESULTS.json and the section into bench/RESULTS.md (a 1M run only)."""
    if "rule_backtest_s_30d_1m" not in result:
        return
    folder = folder or Path(__file__).resolve().parent
    json_path, md_path = folder / "RESULTS.json", folder / "RESULTS.md"
    existing = json.loads(json_path.read_text()) if json_path.exists() else {}
    existing["rule_backtest_s_30d_1m"] = result["rule_backtest_s_30d_1m"]
    json_path.write_text(json.dumps(existing, indent=2) + "\n")
    text = md_path.read_text() if md_path.exists() else ""
    if SECTION_BEGIN in text:
        text = text[:text.index(SECTION_BEGIN)] + text[text.index(SECTION_END) + len(SECTION_END) + 1:]
    md_path.write_text(text.rstrip("\n") + "\n\n" + section(result))


def main(argv: list[str] | None = None) -> dict:
    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description="the rule backtest benchmark")
    parser.add_argument("--transactions", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.transactions < 1:
        parser.error("--transactions must be >= 1")
    result = run(load_settings(), args.transactions)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"rules-{run_id()}.json").write_text(json.dumps(result, indent=2, default=str))
    write_committed(result)
    print(json.dumps({k: v for k, v in result.items() if k != "rule_result"}, indent=2, default=str))
    from rules.backtest import BacktestResult

    print("\n".join(BacktestResult(**result["rule_result"]).lines()))
    return result


if __name__ == "__main__":
    main()
