"""PostgreSQL access of the monitoring commands: connections on one schema, reads into pandas,
and the two tables they write (monitoring_metrics, audit_log).

Every command takes ``--pg-schema`` (default ``public``), like the streaming job, so tests and
parallel environments each use their own schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from fraudops.records import MetricRow, finite_or_none, insert_audit, insert_metric_rows  # noqa: F401 - re-exported

_SCHEMA_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def connect_schema(settings, schema: str = "public"):
    """A psycopg2 connection whose search_path is ``schema``.

    Raises:
        ConnectionError: PostgreSQL is not reachable (names the service and `make stack-up`).
        ValueError: naming ``pg_schema`` when the schema does not exist or has no tables yet.
    """
    from fraudops.db import connect

    if not re.match(_SCHEMA_NAME, schema or ""):
        raise ValueError(f"pg_schema={schema!r} is not a plain schema name")
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".transactions',))
            if not cur.fetchone()[0]:
                raise ValueError(
                    f"pg_schema={schema!r} has no transactions table; apply the migrations "
                    f"(python -m fraudops.db migrate --schema {schema})"
                )
            cur.execute("SELECT set_config('search_path', %s, false)", (schema,))
        conn.commit()
    except Exception:
        conn.close()
        raise
    return conn


def read_frame(conn, sql: str, params: Mapping[str, Any] | tuple | None = None) -> pd.DataFrame:
    """Run a SELECT and return its rows as a DataFrame (columns named as in the query)."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
    return pd.DataFrame.from_records(rows, columns=columns)


def read_one(conn, sql: str, params: Mapping[str, Any] | tuple | None = None) -> dict[str, Any]:
    """Run a SELECT that returns one row; the row as a dict (empty when there is none)."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        columns = [d[0] for d in cur.description]
        row = cur.fetchone()
    return dict(zip(columns, row, strict=True)) if row is not None else {}
