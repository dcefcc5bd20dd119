"""A Python daemon warmed up while the JVM starts (local mode only): the driver starts it at its
first line; the JVM's daemon (streaming.worker_daemon) hands it its pipes and becomes its proxy.

Spark starts the executors' Python daemon only once the Spark session exists (~5-7 s after
spark-submit on this machine) and the daemon then imports pandas, scikit-learn, MLflow and loads
the served model (~4-6 s) before the first micro-batch can run. In local mode the executor is the
driver's own JVM, on the driver's machine, so the driver can start that work ~4 s sooner:

1. the driver (streaming.scoring_job, first line) starts ``python -m streaming.worker_zygote
   <socket>`` (:func:`start`), in its own process group, stdin a pipe from the driver;
2. the zygote imports what streaming.worker_daemon.preload imports; the driver writes the served
   version to its stdin as soon as the registry answered, and the zygote loads it;
3. the driver names the socket in the Python workers' environment (:data:`ZYGOTE_ENV`); the JVM
   starts streaming.worker_daemon, which connects (:func:`hand_over`) and sends its environment,
   argv, sys.path, working directory and its stdin/stdout/stderr (SCM_RIGHTS); once the zygote
   is ready and the environment read at import time matches, the zygote takes the pipes over
   and runs pyspark's daemon loop (pyspark.daemon.manager) with the JVM's environment; the JVM's
   daemon stays as a proxy that forwards SIGTERM to it and exits when it exits.

Anything else falls back to today's start: no socket, a zygote not ready within
HANDOVER_TIMEOUT_SECONDS, a zygote already taken, an environment that differs (e.g. another
OMP_NUM_THREADS): the JVM's daemon preloads itself. Lifetimes: before the hand-over the zygote
exits when the driver's pipe closes (the driver ended, even by SIGKILL) and it is in the job's
process group; after it, like any pyspark daemon, it exits when the JVM closes its stdin or
sends SIGTERM, SIGHUPs its workers, and the proxy exits with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_STARTED = time.time()
ZYGOTE_ENV = "FRAUDOPS_WORKER_ZYGOTE"  # the zygote's socket, in the Python workers' environment
DISABLE_ENV = "FRAUDOPS_WORKER_PREWARM"  # "0": no zygote (the JVM's daemon preloads, as before)
HANDOVER_TIMEOUT_SECONDS = 120.0
# variables a library reads once when it is imported (OpenMP, BLAS, numba, the hash seed, stdio):
# the zygote imported with its own values, so it only serves a daemon whose values are the same
_IMPORT_TIME_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "NUMBA_", "ARROW_", "LD_")
_IMPORT_TIME_KEYS = ("PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONOPTIMIZE")
# what Spark puts in every Python worker's environment that the driver's lacks (local mode)
_WORKER_DEFAULTS = {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "YES"}


def _say(message: str) -> None:
    print(f"worker daemon {os.getpid()}: {message}", file=sys.stderr, flush=True)


def import_time_env(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that libraries read when imported (compared at the hand-over)."""
    return {k: v for k, v in env.items() if k.startswith(_IMPORT_TIME_PREFIXES) or k in _IMPORT_TIME_KEYS}


def spark_submit_master(argv: list[str]) -> str:
    """The master of a spark-submit command line (Spark's default local[*] when none is given)."""
    for i, arg in enumerate(argv):
        if arg == "--master" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--master="):
            return arg.split("=", 1)[1]
        if arg == "--conf" and i + 1 < len(argv) and argv[i + 1].startswith("spark.master="):
            return argv[i + 1].split("=", 1)[1]
    return "local[*]"


def _parent_argv() -> list[str]:
    try:
        return Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


class DriverHandle:
    """The driver's side: the zygote process, its socket and the pipe that names the model."""

    def __init__(self, proc: subprocess.Popen, socket_path: str):
        self.proc, self.socket_path = proc, socket_path

    def worker_env(self) -> dict[str, str]:
        return {ZYGOTE_ENV: self.socket_path}

    def name_model(self, model_uri: str, tracking_uri: str) -> None:
        """Tell the zygote which served version to load (once known); ignored when it is gone."""
        try:
            self.proc.stdin.write((json.dumps({"model_uri": model_uri, "tracking_uri": tracking_uri}) + "\n").encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass


def start() -> DriverHandle | None:
    """Start the zygote when the driver runs under spark-submit in local mode (its JVM, the
    driver's parent, runs the executor); None otherwise or when disabled (FRAUDOPS_WORKER_PREWARM=0)."""
    if os.environ.get(DISABLE_ENV, "1") == "0" or "PYSPARK_GATEWAY_PORT" not in os.environ:
        return None
    argv = _parent_argv()
    if "org.apache.spark.deploy.SparkSubmit" not in argv or not spark_submit_master(argv).startswith("local"):
        return None
    env = {**_WORKER_DEFAULTS, **os.environ}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    env.pop("PYSPARK_GATEWAY_SECRET", None)
    socket_path = str(Path(tempfile.mkdtemp(prefix="fraudops-zygote-")) / "daemon.sock")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "streaming.worker_zygote", socket_path],
                                stdin=subprocess.PIPE, stdout=sys.stderr.fileno(), env=env,
                                cwd=str(Path(__file__).resolve().parent.parent))
    except OSError:
        return None
    import threading

    threading.Thread(target=proc.wait, name="worker-zygote-reaper", daemon=True).start()
    return DriverHandle(proc, socket_path)


# --- the JVM's daemon side (streaming.worker_daemon) -----------------------------------------

def hand_over(socket_path: str) -> bool:
    """Give this process's stdin/stdout/stderr and environment to the zygote at ``socket_path``;
    True when it took them (this process then only proxies signals until the zygote exits:
    call :func:`proxy_until_exit`), False to go on as a normal daemon."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(socket_path)
    except OSError as exc:
        _say(f"no warm daemon to take over ({type(exc).__name__}); preloading here")
        return False
    try:
        request = json.dumps({"env": dict(os.environ), "argv": sys.argv, "path": sys.path, "cwd": os.getcwd(),
                              "pid": os.getpid()}).encode()
        socket.send_fds(conn, [struct.pack("!I", len(request)) + request], [0, 1, 2])
        ready, _, _ = select.select([conn], [], [], HANDOVER_TIMEOUT_SECONDS)
        answer = _read_message(conn) if ready else None
        if not answer or answer.get("status") != "ready":
            _say(f"the warm daemon declined ({(answer or {}).get('reason', 'no answer')}); preloading here")
            conn.close()
            return False
        conn.sendall(b"G")  # committed: from now on the zygote owns the JVM's pipes
    except OSError as exc:
        _say(f"hand-over to the warm daemon failed ({type(exc).__name__}: {exc}); preloading here")
        conn.close()
        return False
    global _PROXY
    _PROXY = (conn, int(answer["pid"]))
    return True


_PROXY: tuple[socket.socket, int] | None = None


def proxy_until_exit() -> None:
    """After :func:`hand_over`: forward SIGTERM/SIGINT to the zygote, exit when it exits."""
    conn, pid = _PROXY

    def forward(signum, _frame):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # the zygote alone reads the JVM's kill requests and writes its port
    os.dup2(devnull, 1)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    conn.close()
    while True:
        if pidfd is not None:
            if select.select([pidfd], [], [], 5)[0]:
                break
        else:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(1)
    os._exit(0)


def _read_message(conn: socket.socket) -> dict | None:
    head = _recv_exactly(conn, 4)
    if head is None:
        return None
    body = _recv_exactly(conn, struct.unpack("!I", head)[0])
    return None if body is None else json.loads(body)


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _send_message(conn: socket.socket, message: dict) -> None:
    body = json.dumps(message).encode()
    conn.sendall(struct.pack("!I", len(body)) + body)


# --- the zygote -------------------------------------------------------------------------------

def _zygote(socket_path: str) -> int:
    from streaming import worker_daemon

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(4)
    started_env = import_time_env(dict(os.environ))
    lines = _Lines(0)
    try:
        os.dup2(2, 1)  # libraries printing while imported: to the log, never to a pipe of the JVM
        imported_at = time.monotonic()
        worker_daemon.import_scoring_modules()
        imports = time.monotonic() - imported_at
        preloaded = time.time()
        model = {"uri": None, "seconds": 0.0}

        def load(uri: str | None, tracking_uri: str | None) -> None:
            """The model and its alert explainer (the first alert's numba kernel), once."""
            if uri and tracking_uri and model["uri"] is None:
                began = time.monotonic()
                try:
                    worker_daemon.preload_served_model(uri, tracking_uri)
                    model["uri"] = uri
                except Exception as exc:  # noqa: BLE001 - the workers load it on first use
                    _say(f"preload of {uri} failed ({type(exc).__name__}: {exc})")
                    model["uri"] = "-"
                model["seconds"] = time.monotonic() - began
                if model["uri"] != "-":
                    try:
                        worker_daemon.warm_explainer_of(uri)
                    except Exception as exc:  # noqa: BLE001 - only a warm-up: the first alert pays it
                        _say(f"alert explainer warm-up failed ({type(exc).__name__}: {exc})")

        # wait for the driver's model (stdin) or the JVM's daemon (socket), whichever comes first
        pending: socket.socket | None = None
        request: dict | None = None
        fds: list[int] = []
        while pending is None:
            ready, _, _ = select.select([0, listener], [], [])
            if 0 in ready:
                if not lines.read():
                    _say("the driver ended before the JVM's daemon came: exiting")
                    return 0
                for line in lines.take():
                    named = json.loads(line)
                    load(named.get("model_uri"), named.get("tracking_uri"))
                    preloaded = time.time()
            if listener in ready:
                pending, _ = listener.accept()
                msg, fds, _flags, _addr = socket.recv_fds(pending, 1 << 20, 3)
                size = struct.unpack("!I", msg[:4])[0]
                body = msg[4:]
                while len(body) < size:
                    chunk = pending.recv(size - len(body))
                    if not chunk:
                        return 0
                    body += chunk
                request = json.loads(body)
        listener.close()
        os.unlink(socket_path)
        env = request["env"]
        differs = sorted(k for k in set(started_env) | set(import_time_env(env))
                         if started_env.get(k) != env.get(k))
        if differs or len(fds) != 3:
            _send_message(pending, {"status": "declined", "reason": f"environment differs: {', '.join(differs)}"
                                    if differs else "no pipes"})
            return 0
        came = time.time()
        # the driver's model, or the one the JVM's daemon names (not named: loaded on first use)
        load(env.get(worker_daemon.PRELOAD_MODEL_ENV), env.get(worker_daemon.PRELOAD_TRACKING_ENV))
        _say(f"started at {_STARTED:.1f}, ready at {time.time():.1f}: imports {imports:.1f}s, "
             f"model {model['uri'] or '-'} {model['seconds']:.1f}s (warm daemon, preloaded at {preloaded:.1f}, "
             f"taken over by {request['pid']} at {came:.1f})")
        _send_message(pending, {"status": "ready", "pid": os.getpid()})
        ready, _, _ = select.select([pending], [], [], HANDOVER_TIMEOUT_SECONDS)
        if not ready or pending.recv(1) != b"G":
            return 0
    except Exception as exc:  # noqa: BLE001 - the JVM's daemon falls back to preloading itself
        _say(f"warm daemon failed ({type(exc).__name__}: {exc})")
        return 1
    # taken over: the JVM's pipes and environment; `pending` stays open (the proxy exits with us)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv[:] = request["argv"]
    sys.path[:] = request["path"] + [p for p in sys.path if p not in request["path"]]
    os.chdir(request["cwd"])
    pending.close()  # the proxy watches this process itself (pidfd)
    worker_daemon.freeze_and_serve()
    return 0


class _Lines:
    """Lines read from a file descriptor without a Python file object (fd 0 is replaced later)."""

    def __init__(self, fd: int):
        self.fd, self.buffer = fd, b""

    def read(self) -> bool:
        chunk = os.read(self.fd, 65536)
        self.buffer += chunk
        return bool(chunk)

    def take(self) -> list[bytes]:
        *complete, self.buffer = self.buffer.split(b"\n")
        return [line for line in complete if line.strip()]


if __name__ == "__main__":
    raise SystemExit(_zygote(sys.argv[1]))
