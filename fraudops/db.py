"""PostgreSQL access: connections and the ordered, idempotent schema migrations.

Run the migrations: ``python -m fraudops.db migrate`` (done by `make stack-up`).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from fraudops.settings import Settings, load_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "contract" / "migrations"


def connect(settings: Settings, timeout: int = 5, **kwargs):
    """Open a psycopg2 connection; raises ConnectionError naming the service and the fix."""
    import psycopg2

    try:
        return psycopg2.connect(settings.postgres_dsn, connect_timeout=timeout, **kwargs)
    except psycopg2.OperationalError as exc:
        raise ConnectionError(
            f"PostgreSQL at {settings.postgres_host}:{settings.postgres_port} "
            f"(database {settings.postgres_db}) is not reachable: {str(exc).strip()}; "
            "start it with `make stack-up`"
        ) from exc


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The migration files in the order they apply (their names start with a number)."""
    return sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def apply_migrations(conn, schema: str = "public", directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not yet recorded in ``<schema>.schema_migrations``.

    Each file runs in its own transaction together with its bookkeeping row, so a failure
    leaves nothing half applied. Returns the names applied now (empty when up to date).
    Raises RuntimeError when an applied file was edited afterwards (checksum mismatch).
    """
    applied_now: list[str] = []
    with conn, conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        cur.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
            " version TEXT PRIMARY KEY, checksum TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        cur.execute(f'SELECT version, checksum FROM "{schema}".schema_migrations')
        done = dict(cur.fetchall())
    for path in migration_files(directory):
        sql = path.read_text()
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        if path.name in done:
            if done[path.name] != checksum:
                raise RuntimeError(f"migration {path.name} changed after it was applied")
            continue
        with conn, conn.cursor() as cur:
            cur.execute(f'SET LOCAL search_path TO "{schema}"')
            cur.execute(sql)
            cur.execute(
                f'INSERT INTO "{schema}".schema_migrations (version, checksum) VALUES (%s, %s)',
                (path.name, checksum),
            )
        applied_now.append(path.name)
    return applied_now


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m fraudops.db``."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m fraudops.db", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("command", choices=["migrate"], help="migrate: apply the migrations not yet applied")
    parser.add_argument("--schema", default="public", help="PostgreSQL schema migrated")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Apply the migrations; returns the exit code."""
    args = build_parser().parse_args(argv)
    conn = connect(load_settings())
    try:
        applied = apply_migrations(conn, args.schema)
    finally:
        conn.close()
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
