"""The scoring job's start-up helpers: the driver JVM's class-data archive flags, the job
launcher adding them, the bench reading the job's start-up milestones, and the merchant
snapshot read in the background (a failed first read is reported, never silently empty)."""

from __future__ import annotations

import socket

import pytest

from bench.bench_streaming import start_phases
from devstack.jobs import with_class_data
from fraudops.spark_session import cds_archive_path, driver_java_options
from streaming.merchant_risk import MerchantRiskCache
from streaming.sinks import SinkTargets

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def test_no_archive_no_flags(tmp_path):
    assert driver_java_options(tmp_path / "missing.jsa") == []


def test_an_archive_is_passed_to_the_driver_jvm(tmp_path):
    archive = tmp_path / "spark.jsa"
    archive.write_bytes(b"x")
    assert driver_java_options(archive) == ["--driver-java-options", f"-XX:SharedArchiveFile={archive} -Xshare:auto"]


def test_the_archive_is_keyed_by_the_pyspark_version():
    import pyspark

    assert cds_archive_path().name.startswith(f"spark-{pyspark.__version__}-")


def test_the_launcher_leaves_other_commands_and_explicit_java_options_alone():
    assert with_class_data(["python", "-m", "streaming.producer"]) == ["python", "-m", "streaming.producer"]
    argv = ["/v/bin/spark-submit", "--driver-java-options", "-Xmx1g", "job.py"]
    assert with_class_data(argv) == argv


def test_start_phases_are_read_from_the_job_log():
    log = ("x start-up: driver Python running at +2.2s\n"
           "x start-up: first micro-batch (0) called at +7.5s\n"
           "x start-up: first micro-batch (0) committed at +16.9s\n"
           "x start-up: driver Python running at +2.6s\n")
    assert start_phases(log) == {"driver Python running": 2.2, "first micro-batch called": 7.5,
                                 "first micro-batch committed": 16.9}
    restart = log.index("x start-up: driver Python running at +2.6s")
    assert start_phases(log, restart) == {"driver Python running": 2.6}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_failed_first_snapshot_read_is_raised_to_the_first_batch():
    targets = SinkTargets(postgres_dsn=f"host=127.0.0.1 port={_closed_port()} dbname=x user=x connect_timeout=2",
                          pg_schema="public", redis_host="127.0.0.1", redis_port=1, redis_password="",
                          redis_prefix="", kafka_brokers="127.0.0.1:1", alerts_topic="a")
    cache = MerchantRiskCache(spark=None, targets=targets, refresh_seconds=3600)
    cache.start(wait=False)  # returns at once: the read happens in the background
    try:
        with pytest.raises(RuntimeError, match="merchant risk snapshot"):
            cache.await_first(timeout=30)
        assert cache.current is None
    finally:
        cache.stop()
