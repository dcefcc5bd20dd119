"""Shared fixtures: settings, one Spark session, and clients of the real local stack.

Integration tests need the stack that `make test` starts (`make stack-up`). A service that is
not reachable FAILS the test with the command to start it; nothing is skipped.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from fraudops.settings import load_settings


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture
def unique_name():
    """A short unique suffix for topics, schemas, key prefixes and checkpoints."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run (Kafka connector jars included)."""
    from fraudops.spark_session import build_spark_session

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = build_spark_session("fraudops-tests", master="local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture
def pg_conn(settings):
    from fraudops.db import connect

    conn = connect(settings)
    yield conn
    conn.close()


@pytest.fixture
def redis_client(settings):
    from fraudops.redis_client import connect_redis

    client = connect_redis(settings)
    yield client
    client.close()
