"""PostgreSQL of the local stack: its own cluster in ``.stack/postgres`` (initdb and pg_ctl as the
``postgres`` system user when we are root), loopback only, password authentication, the
application's role and database plus MLflow's, then the schema migrations."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from devstack import processes
from devstack.config import stack_settings
from devstack.paths import StackError, StackPaths
from fraudops.health import check_postgres

READY_TIMEOUT_S = 60


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server program (the newest version installed)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    if not candidates:
        raise StackError(f"PostgreSQL's {name} not found; install it with `make setup`")
    return str(candidates[0])


def as_postgres(argv: list[str]) -> list[str]:
    """``argv`` run as the ``postgres`` system user when we are root (the server refuses root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start_postgres(paths: StackPaths, cfg: dict[str, str]) -> None:
    """Create the cluster on the first start, start it, ensure roles and databases, migrate."""
    if processes.is_ours(paths, "postgres"):
        return
    port = int(cfg["POSTGRES_PORT"])
    data = paths.postgres / "data"
    processes.ensure_port_free(port, "PostgreSQL")
    if not (data / "PG_VERSION").exists():
        create_cluster(paths, cfg)
    run_dir = paths.postgres / "run"
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={run_dir}"
    subprocess.run(
        as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-l", str(paths.log_file("postgres")),
                     "-o", opts, "-w", "-t", str(READY_TIMEOUT_S), "start"]),
        check=True, stdout=subprocess.DEVNULL,
    )
    ensure_roles(cfg)
    migrate(cfg)
    settings = stack_settings(paths, cfg)
    processes.wait_until_ready(lambda: check_postgres(settings), "postgres", READY_TIMEOUT_S, paths)


def create_cluster(paths: StackPaths, cfg: dict[str, str]) -> None:
    """initdb with scram-sha-256 for every connection; the superuser's password from ``cfg``."""
    data = paths.postgres / "data"
    for sub in ("data", "run"):
        (paths.postgres / sub).mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    pwfile = paths.postgres / "pwfile"
    pwfile.write_text(cfg["POSTGRES_SUPERUSER_PASSWORD"] + "\n")
    pwfile.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(paths.postgres, "postgres", "postgres")
        for path in (data, paths.postgres / "run", pwfile):
            shutil.chown(path, "postgres", "postgres")
        log = paths.log_file("postgres")
        log.touch()
        shutil.chown(log, "postgres", "postgres")
    try:
        subprocess.run(
            as_postgres([pg_bin("initdb"), "-D", str(data), "--username=postgres",
                         f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                         "--locale=C.UTF-8"]),
            check=True, stdout=subprocess.DEVNULL,
        )
    finally:
        pwfile.unlink(missing_ok=True)


def connect_as(cfg: dict[str, str], user: str, password: str, dbname: str):
    """An autocommit connection to the stack's server over TCP on 127.0.0.1."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=int(cfg["POSTGRES_PORT"]), user=user,
                            password=password, dbname=dbname, connect_timeout=3)
    conn.autocommit = True
    return conn


def ensure_roles(cfg: dict[str, str]) -> None:
    """Application role + database and the `mlflow` role + database (idempotent)."""
    from psycopg2 import sql

    wanted = [(cfg["POSTGRES_USER"], cfg["POSTGRES_PASSWORD"], cfg["POSTGRES_DB"]),
              ("mlflow", cfg["MLFLOW_DB_PASSWORD"], "mlflow")]
    conn = connect_as(cfg, "postgres", cfg["POSTGRES_SUPERUSER_PASSWORD"], "postgres")
    try:
        with conn.cursor() as cur:
            for role, password, db in wanted:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if not cur.fetchone():
                    cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(db), sql.Identifier(role)))
    finally:
        conn.close()


def migrate(cfg: dict[str, str]) -> None:
    """Apply the schema migrations (fraudops/contract/migrations) to the application database."""
    from fraudops.db import apply_migrations

    conn = connect_as(cfg, cfg["POSTGRES_USER"], cfg["POSTGRES_PASSWORD"], cfg["POSTGRES_DB"])
    conn.autocommit = False
    try:
        apply_migrations(conn)
    finally:
        conn.close()


def stop_postgres(paths: StackPaths) -> None:
    """pg_ctl stop -m fast (when the running server is ours)."""
    if processes.is_ours(paths, "postgres"):
        subprocess.run(as_postgres([pg_bin("pg_ctl"), "-D", str(paths.postgres / "data"),
                                    "-m", "fast", "-w", "stop"]),
                       check=False, stdout=subprocess.DEVNULL)
