"""Redis servers of the local stack, each with its own folder, port and password, on 127.0.0.1:
the alert cache (``redis``) and the online feature store (``feature-store``, append-only)."""

from __future__ import annotations

import shutil
from pathlib import Path

from devstack import processes
from devstack.config import stack_settings
from devstack.paths import StackError, StackPaths
from fraudops.health import check_feature_store, check_redis

READY_TIMEOUT_S = 30


def start_redis(paths: StackPaths, cfg: dict[str, str]) -> None:
    """The alert cache: a cache of PostgreSQL, no persistence of its own."""
    settings = stack_settings(paths, cfg)
    start_redis_server(paths, "redis", paths.redis, cfg["REDIS_PORT"], cfg["REDIS_PASSWORD"], "appendonly no",
                       lambda: check_redis(settings))


def start_feature_store(paths: StackPaths, cfg: dict[str, str]) -> None:
    """The online feature store: a second redis-server, its own port, append-only persistence
    only (``save ""``: an RDB snapshot on top of the AOF forked the server every minute under
    the job's writes and stalled micro-batches, bench_streaming --latency-only --backlog 200000
    at 2,000 tx/s: p95 4.8-6.7 s with it, 2.0 s without)."""
    settings = stack_settings(paths, cfg)
    start_redis_server(paths, "feature-store", paths.feature_store, cfg["FEATURE_STORE_PORT"],
                       cfg["FEATURE_STORE_PASSWORD"], 'appendonly yes\nappendfsync everysec\nsave ""',
                       lambda: check_feature_store(settings))


def start_redis_server(paths: StackPaths, service: str, folder: Path, port: str, password: str,
                       persistence: str, readiness) -> None:
    """Write ``folder``/redis.conf (loopback, requirepass, readable by us only), start
    redis-server on it and wait until ``readiness`` (a fraudops.health check) says up."""
    if processes.is_ours(paths, service):
        return
    processes.ensure_port_free(int(port), service.replace("redis", "Redis"))
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(redis_server).exists():
        raise StackError("redis-server not found; install it with `make setup`")
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "redis.conf"
    conf.write_text(
        f"bind 127.0.0.1\nport {port}\nprotected-mode yes\nrequirepass {password}\n"
        f"dir {folder}\ndaemonize no\nsave 60 1000\n{persistence}\nlogfile \"\"\n"
        # keep the config path in the process title, so stack-down can recognise our server
        'proc-title-template "{title} {listen-addr} {config-file}"\n'
    )
    conf.chmod(0o600)
    pid = processes.spawn(paths, service, [redis_server, str(conf)])
    processes.wait_until_ready(readiness, service, READY_TIMEOUT_S, paths, pid)
