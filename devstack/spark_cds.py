"""Build the driver JVM's class-data sharing archive (fraudops.spark_session.cds_archive_path).

    python -m devstack.spark_cds [--force]

Runs a short spark-submit that loads what the scoring job's driver loads (Spark session, SQL,
Arrow and a pandas function, a streaming query with foreachBatch) with
``-XX:ArchiveClassesAtExit``: the JVM writes the classes it loaded to the archive when it exits
(~30-60 s once). Later spark-submits given fraudops.spark_session.driver_java_options() map it
instead of parsing and verifying those classes again. Classes of --jars (the Kafka connector)
load through Spark's own class loader and are not archived.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from fraudops.spark_session import cds_archive_path, local_job_env, spark_kafka_jars

# what the job's driver does at start, in small: session, a pandas pass, a streaming query
_EXERCISE = '''
import sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("spark-cds").config("spark.sql.session.timeZone", "UTC") \\
    .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate()

def passthrough(chunks):
    for chunk in chunks:
        yield chunk

spark.range(100, numPartitions=2).mapInPandas(passthrough, "id long").coalesce(1).collect()
query = (spark.readStream.format("rate").option("rowsPerSecond", 50).load().writeStream
         .foreachBatch(lambda df, _: df.select("value").mapInPandas(passthrough, "value long").collect())
         .option("checkpointLocation", sys.argv[1]).trigger(processingTime="0.5 seconds").start())
query.processAllAvailable()
import time
time.sleep(3)
query.processAllAvailable()
query.stop()
spark.stop()
'''


def build_archive(archive: Path | None = None, force: bool = False, timeout: float = 600) -> Path | None:
    """Write the archive (unless it exists and not ``force``); returns its path, None on failure."""
    archive = archive or cds_archive_path()
    if archive.is_file() and not force:
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(f".{os.getpid()}.partial")
    with tempfile.TemporaryDirectory(prefix="spark-cds-") as scratch:
        script = Path(scratch) / "exercise.py"
        script.write_text(_EXERCISE)
        argv = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]",
                "--driver-java-options", f"-XX:ArchiveClassesAtExit={partial}"]
        if jars := spark_kafka_jars():
            argv += ["--jars", ",".join(jars)]
        argv += [str(script), str(Path(scratch) / "checkpoint")]
        done = subprocess.run(argv, env=local_job_env(), capture_output=True, text=True, timeout=timeout,
                              check=False)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        print(f"could not build {archive} (exit {done.returncode}):\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    partial.replace(archive)
    return archive


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devstack.spark_cds``."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m devstack.spark_cds", formatter_class=HelpFormatter,
                                     description="build the driver JVM's class-data sharing archive")
    parser.add_argument("--force", action="store_true", help="rebuild even if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Build the archive; returns the exit code."""
    args = build_parser().parse_args(argv)
    archive = build_archive(force=args.force)
    if archive is None:
        return 1
    print(f"class-data archive: {archive} ({archive.stat().st_size // 2**20} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
