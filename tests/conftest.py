"""Shared fixtures: settings, one Spark session, and clients of the real local stack.

Integration tests need the stack that `make test` starts (`make stack-up`). A service that is
not reachable FAILS the test with the command to start it; nothing is skipped.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from fraudops.settings import load_settings

TESTS_DIR = Path(__file__).resolve().parent
# each folder's marker: a test carries its folder's marker and no other folder's
FOLDER_MARKERS = {"unit": "unit", "model": "model", "integration": "integration", "e2e": "e2e",
                  "reliability": "reliability"}


def marker_problems(item) -> list[str]:
    """Why ``item``'s markers do not tell the truth about its folder (empty when they do)."""
    parts = Path(item.path).resolve().relative_to(TESTS_DIR).parts
    expected = FOLDER_MARKERS.get(parts[0]) if len(parts) > 1 else None
    if expected is None:
        return [f"{item.nodeid}: a test lives in one of tests/{{{','.join(FOLDER_MARKERS)}}}/"]
    names = {mark.name for mark in item.iter_markers()}
    problems = []
    if expected not in names:
        problems.append(f"{item.nodeid}: in tests/{parts[0]}/ but not marked {expected}")
    if others := sorted((names & set(FOLDER_MARKERS.values())) - {expected}):
        problems.append(f"{item.nodeid}: in tests/{parts[0]}/ but marked {', '.join(others)}")
    if "slow" in names and "timeout" not in names:
        problems.append(f"{item.nodeid}: marked slow without an explicit @pytest.mark.timeout(N)")
    return problems


def pytest_collection_modifyitems(config, items):
    """Fail the run when a test's markers do not match its folder (so `-m unit` means tests/unit)."""
    problems = [problem for item in items for problem in marker_problems(item)]
    if problems:
        raise pytest.UsageError("markers do not match folders:\n  " + "\n  ".join(problems))


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture
def unique_name():
    """A short unique suffix for topics, schemas, key prefixes and checkpoints."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(settings, unique_name):
    """The online feature store (its own Redis) under a key prefix of this test; its keys go after."""
    from features.online import FeatureStore, FeatureStoreTarget

    client = FeatureStoreTarget(settings.feature_store_host, settings.feature_store_port,
                                settings.feature_store_password).connect()
    yield FeatureStore(client, prefix=f"{unique_name}:")
    keys = list(client.scan_iter(f"{unique_name}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


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
