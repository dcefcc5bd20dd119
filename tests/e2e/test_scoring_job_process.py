"""The scoring job as users run it (spark-submit), killed with SIGKILL mid-stream and restarted:
exactly N rows in the end, no duplicates, no gap."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from fraudops.contract.messages import serialize_message
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]  # waits of 600 s + 1200 s


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(settings, pg_conn, unique_name, tmp_path):
    history = support.small_history(days=8, customers=200, seed=11)
    model_name = f"fraud-detector-kill-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, model_name, history)
    ns = support.make_namespace(pg_conn, settings, unique_name, tmp_path)
    rows = history.head(2400).to_dict("records")
    first, second = rows[:1800], rows[1800:]
    support.produce(settings, ns.topic, [(r["user_id"].encode(), serialize_message(r)) for r in first])
    log_path = tmp_path / "job.log"
    job = support.spark_submit(ns, model_name, log_path, max_offsets=500)
    try:
        assert_eventually(lambda: support.count(pg_conn, ns, "transactions") > 0, timeout=600, interval=0.5,
                          message=f"first rows scored (log {log_path})")
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
        killed_at = support.count(pg_conn, ns, "transactions")
        support.produce(settings, ns.topic, [(r["user_id"].encode(), serialize_message(r)) for r in second])
        job = support.spark_submit(ns, model_name, log_path, max_offsets=500)
        assert_eventually(lambda: support.count(pg_conn, ns, "transactions") >= len(rows), timeout=1200,
                          interval=1.0, message=f"all rows scored after restart (log {log_path})")
        os.killpg(job.pid, signal.SIGTERM)  # what `make stream-stop` / stack-down send
        assert job.wait(120) in (0, 143), log_path.read_text()[-3000:]
        # the Python driver (the JVM's child) stops too: nothing of the job is left running
        assert_eventually(lambda: not support.group_alive(job.pid), timeout=120, interval=0.5,
                          message=f"the job's processes all ended after SIGTERM (log {log_path})")
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert killed_at < len(rows), "the job finished before it was killed: nothing was tested"
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT count(*), count(DISTINCT transaction_id) FROM "{ns.pg_schema}".transactions')
        total, distinct = cur.fetchone()
    pg_conn.rollback()
    assert total == distinct == len(rows)
    assert support.count(pg_conn, ns, "quarantine") == 0
    support.drop_namespace(pg_conn, ns)
    # both starts ran the preloading Python daemon (imports and the served model before fork)
    # and logged their start-up milestones (what bench.bench_streaming --startup-only reads)
    log = log_path.read_text(errors="replace")
    assert log.count(f"model models:/{model_name}/") >= 2, log[-3000:]
    # (the killed run may die before it logs its first batch's end: called twice, ended once)
    assert log.count("start-up: first micro-batch") >= 3, log[-3000:]
