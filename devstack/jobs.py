"""Background application processes of the local stack (the streaming job, the producer).

    python -m devstack.jobs start streaming -- <command ...>   # PID in .stack/pids, log in .stack/logs
    python -m devstack.jobs stop streaming
    python -m devstack.jobs status streaming

`make stack-down` stops them too (by PID).
"""

from __future__ import annotations

import argparse
import sys

from devstack.paths import stack_paths
from devstack.processes import is_alive, read_pid, spawn, terminate

JOB_NAMES = ("streaming", "producer", "portal")


def start_job(name: str, argv: list[str]) -> int:
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description="background jobs of the local stack")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("name", choices=JOB_NAMES)
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
