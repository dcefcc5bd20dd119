"""Build the Spark session that tests, pipelines and the streaming job share.

The Kafka connector jars come from the Maven cache that `make setup` fills
(.cache/jars/spark-kafka); on a cluster, spark-submit passes them with --jars instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fraudops.settings import PROJECT_ROOT

SPARK_KAFKA_JARS_DIR = PROJECT_ROOT / ".cache" / "jars" / "spark-kafka"
ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
# Local runs listen on loopback only (driver RPC, block manager, UI). The UI's bind address comes
# from the JVM's SPARK_LOCAL_IP, so it must be in the environment before the JVM starts; on a
# cluster, set SPARK_LOCAL_IP (and spark.driver.host) to the address the executors can reach.
LOOPBACK = "127.0.0.1"


def local_job_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a local spark-submit: this venv's Python for the workers, loopback only.

    Values already in ``env`` (default: os.environ) win, so a cluster's SPARK_LOCAL_IP is kept.
    """
    full = dict(os.environ if env is None else env)
    full.setdefault("PYSPARK_PYTHON", sys.executable)
    full.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    full.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    return full


def spark_kafka_jars(jars_dir: Path = SPARK_KAFKA_JARS_DIR) -> list[str]:
    """Paths of the spark-sql-kafka connector and its dependencies (empty if not fetched)."""
    if not jars_dir.is_dir():
        return []
    return sorted(str(p) for p in jars_dir.glob("*.jar"))


def build_spark_session(app_name: str, master: str | None = None, shuffle_partitions: int = 4):
    """Return a SparkSession with the RocksDB state store and (when present) the Kafka jars.

    When launched by spark-submit, master and jars come from its command line; this function
    only fills in what is missing.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    under_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # the JVM started us
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    if not under_spark_submit and (master or "local").startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)  # read by the JVM this call starts
        builder = builder.config("spark.driver.bindAddress", LOOPBACK).config("spark.driver.host", LOOPBACK)
    jars = spark_kafka_jars()
    # under spark-submit --jars already decided
    if jars and not under_spark_submit:
        builder = builder.config("spark.jars", ",".join(jars))
    return (
        builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.streaming.stateStore.providerClass", ROCKSDB_PROVIDER)
        .config("spark.sql.session.timeZone", "UTC")
        # Python workers start slowly on a busy 2-core machine (pandas, pyarrow imports): give them
        # time to connect back before Spark gives up on them (default 15 s)
        .config("spark.python.authenticate.socketTimeout", "180s")
        # no empty micro-batches: the per-user state is pruned when the user's next event comes
        .config("spark.sql.streaming.noDataMicroBatches.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "2g"))
        .getOrCreate()
    )
