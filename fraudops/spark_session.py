"""Build the Spark session that tests, pipelines and the streaming job share.

The Kafka connector jars come from the Maven cache that `make setup` fills
(.cache/jars/spark-kafka); on a cluster, spark-submit passes them with --jars instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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


# A class-data sharing archive of the driver JVM (Java's AppCDS: Spark's classes parsed and
# verified once, mapped at start), built by `python -m devstack.spark_cds`: the JVM and the
# Spark session start ~2-4 s sooner on this machine. Keyed by the pyspark version and the Java
# binary; a JVM that finds the archive stale ignores it (with a warning) and starts as usual.
SPARK_CDS_DIR = PROJECT_ROOT / ".cache" / "spark-cds"


def cds_archive_path() -> Path:
    """Where the driver JVM's class-data archive of this pyspark and Java lives (may not exist)."""
    import pyspark

    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home) / "bin" / "java" if java_home else Path(shutil.which("java") or "java")
    key = hashlib.sha256(f"{pyspark.__version__}|{java.resolve()}".encode()).hexdigest()[:12]
    return SPARK_CDS_DIR / f"spark-{pyspark.__version__}-{key}.jsa"


def driver_java_options(archive: Path | None = None) -> list[str]:
    """spark-submit arguments that start the driver JVM from the class-data archive, or [] when
    none was built. Goes before the application file, e.g. ``spark-submit *driver_java_options() ...``."""
    archive = archive or cds_archive_path()
    if not archive.is_file():
        return []
    return ["--driver-java-options", f"-XX:SharedArchiveFile={archive} -Xshare:auto"]


def spark_kafka_jars(jars_dir: Path = SPARK_KAFKA_JARS_DIR) -> list[str]:
    """Paths of the spark-sql-kafka connector and its dependencies (empty if not fetched)."""
    if not jars_dir.is_dir():
        return []
    return sorted(str(p) for p in jars_dir.glob("*.jar"))


def build_spark_session(app_name: str, master: str | None = None, shuffle_partitions: int = 4,
                        python_daemon_module: str | None = None):
    """Return a SparkSession with the RocksDB state store and (when present) the Kafka jars.

    When launched by spark-submit, master and jars come from its command line; this function
    only fills in what is missing. ``python_daemon_module``: the module every executor runs as
    its Python daemon, which forks the Python workers (default pyspark.daemon; the scoring job
    passes streaming.worker_daemon, which imports and loads its model before forking).
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
    if python_daemon_module:
        builder = builder.config("spark.python.daemon.module", python_daemon_module)
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
