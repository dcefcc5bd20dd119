"""The merchant snapshot's later refreshes run in a child process (streaming.merchant_risk):
the child reads and builds the same snapshot as the driver at the same instant, and the cache's
second refresh (the child's) replaces the first. Real PostgreSQL and Spark."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from features.merchant import DEFAULT_LABEL_DELAY
from fraudops.contract.messages import TRANSACTION_COLUMNS
from simulator.generator import generate_history
from streaming.merchant_risk import MerchantRiskCache, read_snapshot
from tests.monitoring_support import create_schema, drop_schema, insert_rows, schema_targets

pytestmark = pytest.mark.integration


@pytest.fixture
def targets(pg_conn, settings, unique_name):
    schema = create_schema(pg_conn, f"merchant_child_{unique_name}")
    now = pd.Timestamp(datetime.now(UTC)).floor("s")
    past = generate_history(days=3, customers=20, fraud_ratio=0.05, seed=4,
                            start=(now - pd.Timedelta(days=3)).to_pydatetime())
    rows = past[TRANSACTION_COLUMNS].copy()
    rows["transaction_time"] = pd.to_datetime(rows["transaction_time"], utc=True)
    rows["scored_at"] = rows["transaction_time"] + pd.Timedelta(seconds=1)
    insert_rows(pg_conn, schema, "transactions", rows)
    yield schema_targets(settings, schema)
    drop_schema(pg_conn, schema)


def assert_same_snapshot(actual, expected) -> None:
    assert (actual.as_of_us, actual.label_delay_us, actual.start_us, actual.end_us) == (
        expected.as_of_us, expected.label_delay_us, expected.start_us, expected.end_us)
    pd.testing.assert_frame_equal(actual.events, expected.events)


def test_the_child_builds_the_drivers_snapshot_and_the_cache_uses_it(spark, targets):
    cache = MerchantRiskCache(spark, targets, refresh_seconds=60)
    try:
        args = (targets, pd.Timestamp.now(tz="UTC"), DEFAULT_LABEL_DELAY, pd.Timedelta(seconds=120))
        in_child = cache._read_in_child(*args)
        assert in_child is not None and len(in_child) > 0
        assert_same_snapshot(in_child, read_snapshot(*args))

        cache.refresh()  # the first: in the driver
        first = cache.current
        cache.refresh()  # a later one: in the child
        assert cache.current is not first and cache.current.value.as_of_us > first.value.as_of_us
    finally:
        cache.stop()
