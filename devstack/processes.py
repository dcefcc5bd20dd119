"""The local stack's processes: start one detached, find whether it is ours and alive (PID files
and /proc), wait until it is ready, stop it and its process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devstack.paths import StackError, StackPaths
from fraudops.health import ServiceStatus
from fraudops.settings import PROJECT_ROOT

# what the command line of each service's process contains (besides the state folder)
PROCESS_MARKERS = {"postgres": "postgres", "redis": "redis-server", "feature-store": "redis-server",
                   "kafka": "kafka.Kafka", "mlflow": "mlflow"}


def read_pid(paths: StackPaths, service: str) -> int | None:
    """The PID in the service's PID file, or None."""
    try:
        return int(paths.pid_file(service).read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    """The command line of ``pid`` ("" when it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return False


def is_ours(paths: StackPaths, service: str) -> int | None:
    """The PID of our running ``service`` (its command line names our state folder), else None."""
    if service == "postgres":  # pg_ctl starts it: its PID is in the data folder
        try:
            pid = int((paths.postgres / "data" / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
    else:
        pid = read_pid(paths, service)
    if pid is None:
        return None
    cmd = cmdline(pid)
    return pid if cmd and PROCESS_MARKERS[service] in cmd and str(paths.state) in cmd else None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_port_free(port: int, service: str) -> None:
    """StackError naming the service and the fix when ``port`` is taken."""
    if port_in_use(port):
        raise StackError(
            f"port {port} for {service} is already taken by another process; stop it or set "
            f"another port for {service} (see README, 'Configuration')"
        )


def spawn(paths: StackPaths, service: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached, output to the service's log, PID to its PID file."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.pids.mkdir(parents=True, exist_ok=True)
    with open(paths.log_file(service), "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **(env or {})}, cwd=str(PROJECT_ROOT),
        )
    paths.pid_file(service).write_text(f"{proc.pid}\n")
    return proc.pid


def wait_until(predicate: Callable[[], object], service: str, timeout: float, paths: StackPaths,
               pid: int | None = None) -> None:
    """Poll ``predicate`` until it returns a truthy value; StackError with its last error and the
    service log's tail after ``timeout``, or as soon as ``pid`` (the process we started) has died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - not ready yet; the last error goes into the message
            last = str(exc)
        if pid is not None and not is_alive(pid):
            last = f"process {pid} exited; {last}"
            break
        time.sleep(0.25)
    raise StackError(f"{service} did not become ready within {timeout:.0f}s ({last}); log tail:\n"
                     f"{log_tail(paths.log_file(service))}")


def wait_until_ready(check: Callable[[], ServiceStatus], service: str, timeout: float, paths: StackPaths,
                     pid: int | None = None) -> None:
    """Wait until the service's readiness check (fraudops.health, the one `make health` runs) says up."""

    def ready() -> bool:
        status = check()
        if not status.up:
            raise StackError(status.detail)
        return True

    wait_until(ready, service, timeout, paths, pid)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_alive(pid):
                return
            time.sleep(0.2)


def stop_app_process(paths: StackPaths, name: str) -> bool:
    """Stop an application process started through devstack.jobs (e.g. the streaming job)."""
    pid = read_pid(paths, name)
    running = pid is not None and is_alive(pid) and str(PROJECT_ROOT) in cmdline(pid)
    if running:
        terminate(pid)
    paths.pid_file(name).unlink(missing_ok=True)
    return running


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def our_processes(paths: StackPaths) -> list[tuple[int, str]]:
    """Live processes of ours: their command line names our state folder, or they run in the
    project folder (MLflow's workers, the streaming job's Python workers). Our own ancestors
    (make, the CI shell) are left out."""
    skip = _ancestors()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in skip or not is_alive(int(proc.name)):
            continue
        cmd = cmdline(int(proc.name))
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            cwd = ""
        in_project = cwd == str(PROJECT_ROOT) or cwd.startswith(str(PROJECT_ROOT) + "/")
        if cmd and (str(paths.state) in cmd or in_project):
            found.append((int(proc.name), cmd[:160]))
    return found
