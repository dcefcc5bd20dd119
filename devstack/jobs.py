"""Background application processes of the local stack (the streaming job, the producer).

    python -m devstack.jobs start streaming -- <command ...>   # PID in .stack/pids, log in .stack/logs
    python -m devstack.jobs stop streaming
    python -m devstack.jobs status streaming

`make stack-down` stops them too (by PID). A spark-submit command starts its driver JVM from the
class-data archive (devstack.spark_cds, built on the first start; ~2-4 s sooner to the first row).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack.paths import stack_paths
from devstack.processes import is_alive, read_pid, spawn, terminate
from fraudops.spark_session import cds_archive_path

JOB_NAMES = ("streaming", "producer", "portal", "decisions")


def with_class_data(argv: list[str]) -> list[str]:
    """``argv`` with the driver's class-data archive when it runs spark-submit (built if missing)."""
    if not argv or not Path(argv[0]).name.startswith("spark-submit") or "--driver-java-options" in argv:
        return argv
    from devstack.spark_cds import build_archive
    from fraudops.spark_session import driver_java_options

    if not cds_archive_path().is_file():
        print("building the driver JVM's class-data archive once (~1 min): python -m devstack.spark_cds")
        build_archive()
    return [argv[0], *driver_java_options(), *argv[1:]]


def start_job(name: str, argv: list[str]) -> int:
    argv = with_class_data(argv)
    paths = stack_paths()
    pid = read_pid(paths, name)
    if pid is not None and is_alive(pid):
        print(f"{name} already running (pid {pid}); log: {paths.log_file(name)}")
        return pid
    pid = spawn(paths, name, argv)
    print(f"{name} started (pid {pid}); log: {paths.log_file(name)}")
    return pid


def stop_job(name: str) -> bool:
    paths = stack_paths()
    pid = read_pid(paths, name)
    running = pid is not None and is_alive(pid)
    if running:
        terminate(pid, timeout=60)
        print(f"{name} stopped (pid {pid})")
    paths.pid_file(name).unlink(missing_ok=True)
    return running


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devstack.jobs`` (the command to start follows ``--``)."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m devstack.jobs", formatter_class=HelpFormatter,
                                     description="background jobs of the local stack",
                                     usage="%(prog)s {start,stop,status} NAME [-- COMMAND ...]")
    parser.add_argument("action", choices=["start", "stop", "status"],
                        help="start runs the COMMAND after -- in the background (log .stack/logs/NAME.log)")
    parser.add_argument("name", choices=JOB_NAMES, help="the job")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = build_parser()
    args = parser.parse_args(own)
    if args.action == "start":
        if not command:
            parser.error("argument command: give the command after --")
        start_job(args.name, command)
    elif args.action == "stop":
        stop_job(args.name)
    else:
        pid = read_pid(stack_paths(), args.name)
        alive = pid is not None and is_alive(pid)
        print(f"{args.name}: {'running pid ' + str(pid) if alive else 'stopped'}")
        return 0 if alive else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
