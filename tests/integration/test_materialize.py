"""pipelines.materialize rebuilds the online feature store: after the store's keys are flushed, a
materialize from PostgreSQL (and, apart, from the Parquet history) gives every feature of a
later batch bit-identical to the store the stream filled; a second run changes nothing; an
interrupted run resumes from its recorded progress to the same store; a bad --since names the
argument. Real PostgreSQL (own schema) and the feature store Redis (own key prefix)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from features.stream import remember_events, stream_features
from fraudops.contract.messages import TRANSACTION_COLUMNS
from pipelines.materialize import main, materialize, progress_key
from simulator.generator import generate_history
from tests.monitoring_support import create_schema, drop_schema, insert_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

END = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    """40 days of 60 customers: the history (first 39 days) and the batch (the last day)."""
    start = END - pd.Timedelta(days=40)
    return generate_history(days=40, customers=60, fraud_ratio=0.02, seed=11, start=start)[TRANSACTION_COLUMNS]


def _split(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = END - pd.Timedelta(days=1)
    history = events[events["transaction_time"] < cut].reset_index(drop=True)
    return history, events[events["transaction_time"] >= cut].reset_index(drop=True)


@pytest.fixture
def schema(pg_conn, unique_name, events):
    name = create_schema(pg_conn, f"mat_{unique_name}")
    history, _ = _split(events)
    insert_rows(pg_conn, name, "transactions", history)
    pg_conn.commit()
    yield name
    drop_schema(pg_conn, name)


def _dump(store) -> dict[str, list]:
    """Every user set under the store's prefix: key -> [(member, score), ...]."""
    keys = sorted(store.client.scan_iter(f"{store.prefix}fs:user:*", count=1000))
    return {k: store.client.zrange(k, 0, -1, withscores=True) for k in keys}


def _flush(store) -> None:
    keys = list(store.client.scan_iter(f"{store.prefix}*", count=1000))
    if keys:
        store.client.delete(*keys)


def _streamed(store, history: pd.DataFrame, batch: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The stream's way: history remembered in micro-batches (a user's events in one), then the
    batch's features and the store's contents."""
    day = pd.to_datetime(history["transaction_time"], utc=True).dt.floor("D")
    for _, micro_batch in history.groupby(day, sort=True):
        remember_events(store, micro_batch)
    return stream_features(batch, store), _dump(store)


def _assert_identical(before: pd.DataFrame, after: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(before, after, check_exact=True)


@pytest.mark.parametrize("source", ["postgres", "parquet"])
def test_materialized_store_gives_bit_identical_features(settings, store, schema, events, source, tmp_path):
    history, batch = _split(events)
    path = tmp_path / "history.parquet"
    history.to_parquet(path, index=False)
    expected, streamed_store = _streamed(store, history, batch)
    _flush(store)
    assert _dump(store) == {}

    kwargs = dict(path=path, pg_schema=schema, redis_prefix=store.prefix, batch_rows=5_000, progress=False,
                  settings=settings)
    result = materialize(source, "91d", **kwargs)
    assert (result.events, result.users, result.complete) == (len(history), history["user_id"].nunique(), True)
    assert _dump(store) == streamed_store
    _assert_identical(expected, stream_features(batch, store))

    again = materialize(source, "91d", **kwargs)  # progress recorded: nothing left to read
    assert again.events == 0 and again.resumed_from is not None
    restarted = materialize(source, "91d", restart=True, **kwargs)  # everything again: ZADD adds nothing
    assert restarted.events == len(history) and restarted.resumed_from is None
    assert _dump(store) == streamed_store
    _assert_identical(expected, stream_features(batch, store))


@pytest.mark.parametrize("source", ["postgres", "parquet"])
def test_an_interrupted_run_resumes_to_the_same_store(settings, store, schema, events, source, tmp_path):
    history, batch = _split(events)
    path = tmp_path / "history.parquet"
    history.to_parquet(path, index=False)
    kwargs = dict(path=path, pg_schema=schema, redis_prefix=store.prefix, batch_rows=1_000, progress=False,
                  settings=settings)
    full = materialize(source, "91d", **kwargs)
    complete_store = _dump(store)
    expected = stream_features(batch, store)
    _flush(store)

    def crash_after_first_chunk(written: int) -> None:
        raise KeyboardInterrupt(f"interrupted after {written} events")

    with pytest.raises(KeyboardInterrupt):
        materialize(source, "91d", on_chunk=crash_after_first_chunk, **kwargs)
    assert store.client.get(progress_key(store.prefix, full.source_id)) is not None
    partial = materialize(source, "91d", max_rows=2_000, **kwargs)  # stops, progress recorded
    assert partial.events == 2_000 and not partial.complete and partial.resumed_from is not None
    resumed = materialize(source, "91d", **kwargs)
    assert resumed.complete and resumed.events == len(history) - 3_000
    assert _dump(store) == complete_store
    _assert_identical(expected, stream_features(batch, store))


def test_since_bounds_what_is_read(settings, store, schema, events):
    history, _ = _split(events)
    newest = pd.to_datetime(history["transaction_time"], utc=True).max()
    result = materialize("postgres", "12h", pg_schema=schema, redis_prefix=store.prefix, progress=False,
                         settings=settings)
    assert result.events == int((pd.to_datetime(history["transaction_time"], utc=True)
                                 >= newest - pd.Timedelta(hours=12)).sum())


def test_bad_arguments_name_the_argument(settings, store, capsys):
    with pytest.raises(SystemExit):
        main(["--since", "91x", "--no-progress"])
    assert "--since" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--batch-rows", "0"])
    assert "--batch-rows" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--since"):
        materialize("postgres", "soon", settings=settings, redis_prefix=store.prefix, progress=False)
    assert main(["--source", "parquet", "--path", "/nonexistent/history.parquet", "--no-progress"]) == 2
    assert "--path /nonexistent/history.parquet" in capsys.readouterr().err
