"""Fixtures the end-to-end tests share: a small simulated history (module scope) and, per test,
its own namespace on the real stack (topics, PostgreSQL schema, Redis prefix, checkpoint), always
dropped after. A module that needs another history defines its own `history`."""

from __future__ import annotations

import pytest

from tests import streaming_support as support


@pytest.fixture(scope="module")
def history():
    return support.small_history()


@pytest.fixture
def namespace(pg_conn, settings, unique_name, tmp_path):
    ns = support.make_namespace(pg_conn, settings, unique_name, tmp_path)
    yield ns
    support.drop_namespace(pg_conn, ns)
