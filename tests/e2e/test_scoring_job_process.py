"""The scoring job as users run it (spark-submit), killed with SIGKILL mid-stream and restarted:
exactly N rows in the end, no duplicates, no gap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fraudops.schema import serialize_message
from fraudops.spark_session import local_job_env, spark_kafka_jars
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def spark_submit(ns, model_name: str, log_path: Path) -> subprocess.Popen:
    jars = spark_kafka_jars()
    assert jars, "Spark Kafka connector jars missing: run `make setup`"
    argv = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]",
            "--conf", "spark.sql.shuffle.partitions=2", "--jars", ",".join(jars),
            str(ROOT / "streaming" / "scoring_job.py"),
            "--checkpoint-dir", str(ns.checkpoint_dir), "--pg-schema", ns.pg_schema,
            "--redis-prefix", ns.redis_prefix, "--topic", ns.topic, "--labels-topic", ns.labels_topic,
            "--alerts-topic", ns.alerts_topic, "--model-uri", f"models:/{model_name}/Production",
            "--max-offsets-per-trigger", "500", "--trigger-seconds", "0.5"]
    env = local_job_env()
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(settings, pg_conn, unique_name, tmp_path):
    history = support.small_history(days=8, customers=200, seed=11)
    model_name = f"fraud-detector-kill-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, model_name, history)
    ns = support.make_namespace(pg_conn, settings, unique_name, tmp_path)
    rows = history.head(2400).to_dict("records")
    first, second = rows[:1800], rows[1800:]
    support.produce(settings, ns.topic, [(r["user_id"].encode(), serialize_message(r)) for r in first])
    log_path = tmp_path / "job.log"
    job = spark_submit(ns, model_name, log_path)
    try:
        assert_eventually(lambda: support.count(pg_conn, ns, "transactions") > 0, timeout=600, interval=0.5,
                          message=f"first rows scored (log {log_path})")
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
        killed_at = support.count(pg_conn, ns, "transactions")
        support.produce(settings, ns.topic, [(r["user_id"].encode(), serialize_message(r)) for r in second])
        job = spark_submit(ns, model_name, log_path)
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
