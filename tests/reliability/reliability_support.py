"""Helpers of the reliability suite: job options, fresh messages, the job as a spark-submit
process, and PRIVATE service instances (own state folder, own ports) to break on purpose.

The shared stack (default ports) is never stopped here: a test that kills PostgreSQL, Redis or
Kafka starts its own instance with devstack.stack and points the job at it through settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fraudops.settings import Settings
from streaming.scoring_job import JobOptions, start_queries

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the job

def job_options(ns, model_name: str, **overrides) -> JobOptions:
    """Options of an in-process job writing only to the namespace ``ns``."""
    values = dict(checkpoint_dir=ns.checkpoint_dir, trigger_seconds=0.5, pg_schema=ns.pg_schema,
                  redis_prefix=ns.redis_prefix, topic=ns.topic, labels_topic=ns.labels_topic,
                  alerts_topic=ns.alerts_topic, model_uri=f"models:/{model_name}/Production",
                  model_refresh_seconds=60.0, merchant_refresh_seconds=60.0,
                  query_prefix=ns.pg_schema + "_", with_labels=False)
    values.update(overrides)
    return JobOptions(**values)


# Spark starts the Python side of transformWithStateInPandas as a fresh interpreter that must
# connect back within a hard-coded 10 s; on a heavily loaded machine it can miss that and the
# query fails before its first batch (`make setup` removes pyspark.zip so that workers import the
# compiled pyspark, which makes this rare). The job's supervisor restarts the queries from their
# checkpoints after a growing pause; an in-process run does the same, a few times at most.
STARTUP_FAILURE = "Python worker failed to connect back"
STARTUP_ATTEMPTS = 6


def _pause_before_retry(attempt: int) -> None:
    time.sleep(min(30, 2 ** attempt))


def drain(spark, settings: Settings, options: JobOptions, attempts: int = STARTUP_ATTEMPTS) -> list:
    """Start the job's queries, process everything available, stop them; return failed queries.

    A start-up failure (``STARTUP_FAILURE``) is retried from the checkpoints like the supervisor
    does; any other failure is returned at once.
    """
    for attempt in range(attempts):
        job = start_queries(spark, settings, options)
        try:
            with contextlib.suppress(Exception):  # a failed query is reported through job.failures()
                job.process_all_available()
        finally:
            job.stop()
        failed = job.failures()
        startup_only = failed and all(STARTUP_FAILURE in str(q.exception()) for q in failed)
        if not startup_only or attempt == attempts - 1:
            return failed
        _pause_before_retry(attempt)
    return failed


def start_and_process(spark, settings: Settings, options: JobOptions, attempts: int = STARTUP_ATTEMPTS):
    """Start the job's queries and process what is available; keep them running and return the
    RunningJob. A start-up failure (``STARTUP_FAILURE``) is retried from the checkpoints."""
    for attempt in range(attempts):
        job = start_queries(spark, settings, options)
        try:
            job.process_all_available()
            return job
        except Exception:
            job.stop()
            failed = job.failures()
            if attempt == attempts - 1 or not all(STARTUP_FAILURE in str(q.exception()) for q in failed):
                raise
            _pause_before_retry(attempt)
    raise AssertionError("unreachable")


def message(**changes) -> dict:
    """A valid transaction (message contract), an hour old, with ``changes`` applied."""
    record = {
        "transaction_id": f"TXN_R_{uuid.uuid4().hex[:12]}",
        "user_id": "USER_R1",
        "amount": 42.5,
        "currency": "USD",
        "merchant": "Corner Shop",
        "merchant_id": "MER_R1",
        "merchant_category": "grocery",
        "transaction_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "country": "US",
        "transaction_type": "purchase",
        "channel": "pos",
        "device_id": "DEV_R1",
    }
    record.update(changes)
    return record


def encoded(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def stop_process_group(proc: subprocess.Popen, timeout: float = 120) -> int | None:
    """SIGTERM the job's process group, SIGKILL it if it does not stop; returns its exit code."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    # the Python driver is a child of the JVM: never leave it behind, whatever the JVM did
    from tests.streaming_support import group_alive

    deadline = time.monotonic() + 30
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode



# ---------------------------------------------------------------- private services

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class PrivateStack:
    """One private instance of a service (devstack.stack), with its own folder and ports."""

    paths: object
    cfg: dict[str, str]

    def start(self, service: str) -> None:
        from devstack.stack import STARTERS

        STARTERS[service](self.paths, self.cfg)

    def stop(self, service: str) -> None:
        from devstack.stack import stop_service

        stop_service(self.paths, service)

    def settings(self, shared: Settings) -> Settings:
        """The shared settings with this instance's address (and password) for its service."""
        service = self.cfg["_service"]
        if service == "postgres":
            changes = {"postgres_port": int(self.cfg["POSTGRES_PORT"]), "postgres_user": self.cfg["POSTGRES_USER"],
                       "postgres_password": self.cfg["POSTGRES_PASSWORD"], "postgres_db": self.cfg["POSTGRES_DB"]}
        elif service == "redis":
            changes = {"redis_port": int(self.cfg["REDIS_PORT"]), "redis_password": self.cfg["REDIS_PASSWORD"]}
        elif service == "feature-store":
            changes = {"feature_store_port": int(self.cfg["FEATURE_STORE_PORT"]),
                       "feature_store_password": self.cfg["FEATURE_STORE_PASSWORD"]}
        else:
            changes = {"kafka_brokers": self.cfg["KAFKA_BROKERS"]}
        return dataclasses.replace(shared, **changes)

    def env(self) -> dict[str, str]:
        """Environment variables pointing a spark-submit job at this instance."""
        service = self.cfg["_service"]
        if service == "postgres":
            keys = ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
        elif service == "redis":
            keys = ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD")
        elif service == "feature-store":
            keys = ("FEATURE_STORE_HOST", "FEATURE_STORE_PORT", "FEATURE_STORE_PASSWORD")
        else:
            keys = ("KAFKA_BROKERS",)
        return {key: self.cfg[key] for key in keys}


@contextmanager
def private_service(service: str):
    """Start a private ``service`` ("postgres", "redis", "feature-store" or "kafka") on free ports; stop and remove
    it afterwards. The folder is world-readable so that the postgres user can reach its data."""
    from devstack.stack import StackPaths, stack_config

    state = Path(tempfile.mkdtemp(prefix=f"fraudops-private-{service}-", dir="/tmp"))
    state.chmod(0o755)
    paths = StackPaths(state=state, env_file=state / "stack.env")
    cfg = stack_config(paths)
    cfg.update({"_service": service, "POSTGRES_PORT": str(free_port()), "REDIS_PORT": str(free_port()),
                "FEATURE_STORE_PORT": str(free_port()),
                "KAFKA_BROKERS": f"127.0.0.1:{free_port()}", "KAFKA_CONTROLLER_PORT": str(free_port()),
                "POSTGRES_USER": "fraud", "POSTGRES_DB": "frauddb"})
    stack = PrivateStack(paths, cfg)
    try:
        stack.start(service)
        yield stack
    finally:
        stack.stop(service)
        shutil.rmtree(state, ignore_errors=True)
