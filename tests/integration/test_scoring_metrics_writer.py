"""The scoring handler's background metrics writer against the real PostgreSQL: every queued
batch's metrics are written, once, and close() writes what is still queued."""

from __future__ import annotations

import pytest

from streaming.batch_handlers import MetricsWriter
from tests.monitoring_support import create_schema, drop_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"metrics_{unique_name}")
    yield name
    drop_schema(pg_conn, name)


def connector(settings, schema):
    def connect():
        import psycopg2

        conn = psycopg2.connect(settings.postgres_dsn, connect_timeout=10)
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('search_path', %s, false)", (schema,))
        conn.commit()
        return conn

    return connect


def stored(pg_conn, schema) -> list[tuple[int, str, float]]:
    with pg_conn.cursor() as cur:
        cur.execute(f"""SELECT (labels->>'batch_id')::int, metric_name, metric_value
                        FROM "{schema}".monitoring_metrics WHERE source = 'streaming' ORDER BY 1, 2""")
        rows = cur.fetchall()
    pg_conn.rollback()
    return rows


def test_every_queued_batch_is_written_once_and_close_drains_the_queue(settings, pg_conn, schema):
    writer = MetricsWriter(connector(settings, schema))
    for batch_id in range(50):
        writer.put({"scored_rows": float(batch_id), "alerts": 1.0}, {"query": "scoring", "batch_id": batch_id})
    writer.close()  # returns once the 50 batches are written
    rows = stored(pg_conn, schema)
    assert rows == [(b, name, value) for b in range(50)
                    for name, value in (("alerts", 1.0), ("scored_rows", float(b)))]


def test_flush_waits_for_the_writes(settings, pg_conn, schema):
    writer = MetricsWriter(connector(settings, schema))
    try:
        writer.put({"scored_rows": 3.0}, {"query": "scoring", "batch_id": 7})
        assert writer.flush(timeout=60)
        assert stored(pg_conn, schema) == [(7, "scored_rows", 3.0)]
    finally:
        writer.close()
