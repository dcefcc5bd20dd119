"""The warm Python daemon (streaming.worker_zygote): the JVM's daemon (streaming.worker_daemon)
hands it its pipes, the warm one forks the workers; anything else falls back to the JVM's
daemon; no process outlives the JVM's pipe (the test plays the JVM: it starts the daemon with
pipes, reads its port, asks for a worker, then closes the daemon's stdin)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from streaming.worker_zygote import ZYGOTE_ENV
from tests import streaming_support as support

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FRAUDOPS_PRELOAD_MODEL_URI", "FRAUDOPS_PRELOAD_TRACKING_URI")}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "YES"}, **extra)
    return env


def _start_zygote(path: str, env: dict[str, str]) -> subprocess.Popen:
    """The warm daemon as the driver starts it; returns once it listens (the JVM's daemon comes
    seconds after it in a real start)."""
    with open(f"{path}.zygote.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streaming.worker_zygote", path], stdin=subprocess.PIPE,
                                stderr=log, env=env, cwd=support.ROOT)
    while not Path(path).exists() and proc.poll() is None:
        time.sleep(0.05)
    return proc


def _start_jvm_daemon(env: dict[str, str], path: str) -> subprocess.Popen:
    """The daemon as Spark's PythonWorkerFactory starts it: stdin/stdout pipes, the port on stdout."""
    with open(f"{path}.daemon.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "streaming.worker_daemon", "pyspark.worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                cwd=support.ROOT)


def _log(path: str, which: str) -> str:
    return Path(f"{path}.{which}.log").read_text(errors="replace")


def _ask_for_worker(daemon: subprocess.Popen) -> tuple[socket.socket, int]:
    port = struct.unpack("!i", daemon.stdout.read(4))[0]
    conn = socket.create_connection(("127.0.0.1", port))
    pid = struct.unpack("!i", conn.makefile("rb").read(4))[0]
    return conn, pid


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])


def _settled(worker: int, timeout: float = 60) -> None:
    """Wait until a forked worker runs its own signal handlers (pyspark.daemon.worker resets
    SIGHUP, which the daemon ignores, to the default): a daemon's shutdown SIGHUP ends it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ignored = next(line for line in Path(f"/proc/{worker}/status").read_text().splitlines()
                       if line.startswith("SigIgn:"))
        if not int(ignored.split()[1], 16) & (1 << (signal.SIGHUP - 1)):
            return
        time.sleep(0.05)


def _gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def socket_path():
    with tempfile.TemporaryDirectory(prefix="zygote-test-") as scratch:
        yield str(Path(scratch) / "daemon.sock")


def test_the_jvm_daemon_hands_over_to_the_warm_daemon_and_nothing_outlives_its_stdin(socket_path):
    zygote = _start_zygote(socket_path, _env())
    daemon = _start_jvm_daemon(_env(**{ZYGOTE_ENV: socket_path}), socket_path)
    try:
        conn, worker = _ask_for_worker(daemon)
        assert _parent_of(worker) == zygote.pid  # forked by the warm daemon, not by the JVM's
        conn.close()
        daemon.stdin.close()  # the JVM ends: the warm daemon, its workers and the proxy end
        zygote.wait(60)  # pyspark's daemon loop always exits with 1
        assert daemon.wait(60) == 0
        assert _gone(worker)
        assert "taken over by" in _log(socket_path, "zygote")
    finally:
        for proc in (zygote, daemon):
            if proc.poll() is None:
                proc.kill()


def test_sigterm_to_the_jvm_daemon_stops_the_warm_one(socket_path):
    zygote = _start_zygote(socket_path, _env())
    daemon = _start_jvm_daemon(_env(**{ZYGOTE_ENV: socket_path}), socket_path)
    try:
        conn, worker = _ask_for_worker(daemon)
        _settled(worker)
        daemon.send_signal(signal.SIGTERM)  # Spark's stopDaemon: Process.destroy()
        assert daemon.wait(60) == 0
        zygote.wait(60)  # pyspark's daemon loop exits (code 1) on SIGTERM, SIGHUPs its workers
        assert _gone(worker)
        conn.close()
    finally:
        for proc in (zygote, daemon):
            if proc.poll() is None:
                proc.kill()


def test_another_import_time_environment_falls_back_to_the_jvm_daemon(socket_path):
    zygote = _start_zygote(socket_path, _env())
    daemon = _start_jvm_daemon(_env(**{ZYGOTE_ENV: socket_path, "OMP_NUM_THREADS": "2"}), socket_path)
    try:
        conn, worker = _ask_for_worker(daemon)
        assert _parent_of(worker) == daemon.pid  # the JVM's daemon preloaded and forked itself
        assert zygote.wait(60) == 0
        conn.close()
        daemon.stdin.close()
        daemon.wait(60)
        assert "environment differs: OMP_NUM_THREADS" in _log(socket_path, "daemon")
    finally:
        for proc in (zygote, daemon):
            if proc.poll() is None:
                proc.kill()


def test_the_warm_daemon_ends_with_the_driver_and_the_jvm_daemon_preloads_itself(socket_path):
    zygote = _start_zygote(socket_path, _env())
    zygote.stdin.close()  # the driver ended (even by SIGKILL) before the JVM's daemon came
    assert zygote.wait(120) == 0
    daemon = _start_jvm_daemon(_env(**{ZYGOTE_ENV: socket_path}), socket_path)
    try:
        conn, worker = _ask_for_worker(daemon)
        assert _parent_of(worker) == daemon.pid
        conn.close()
        daemon.stdin.close()
        daemon.wait(60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
