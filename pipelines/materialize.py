"""Rebuild the online feature store (Redis) from the transaction history: the store's lifecycle.

Reads:  PostgreSQL ``<pg-schema>.transactions`` (the system of record; keyset-paged COPY ... TO
        STDOUT in (transaction_time, transaction_id) order), or a Parquet history (the one
        pipelines.generate / `make demo` write, default data/history.parquet). Only events with
        transaction_time >= (the source's newest transaction_time - --since) are read: the store
        keeps a user's events within features.online.RETENTION_SECONDS (91 days) of the user's
        newest, so the default 91d reads every event that can still change a feature.
Writes: the feature store (settings feature_store_host/port/password, keys under --redis-prefix,
        the streaming job's --redis-prefix): each user's ``<prefix>fs:user:<user_id>`` through
        features.online.append_events (ZADD of an existing member adds nothing, so a rerun changes
        nothing), and the progress ``<prefix>fs:materialize:<source id>`` (the last
        (transaction_time, transaction_id) written) after each chunk: an interrupted run resumes
        there; --restart ignores it. Prints the throughput at the end.

Run:
    python -m pipelines.materialize --since 91d                                   # from PostgreSQL
    python -m pipelines.materialize --since 91d --source parquet --path data/history.parquet
    make materialize SINCE=91d
    mlflow run . -e materialize --env-manager local -P since=91d -P source=parquet -P path=data/history.parquet
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.common import DEFAULT_DATA, parse_bool

SOURCES = ("postgres", "parquet")
DEFAULT_SINCE = "91d"
DEFAULT_BATCH_ROWS = 50_000
# what append_events needs of an event (the member's fields; merchant_id/merchant give the key)
EVENT_COLUMNS = ["transaction_id", "user_id", "amount", "merchant", "merchant_id", "transaction_time",
                 "country", "device_id"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

NEWEST_SQL = 'SELECT (extract(epoch FROM max(transaction_time)) * 1000000)::bigint FROM "{schema}".transactions'
COUNT_SQL = """SELECT count(*) FROM "{schema}".transactions
WHERE transaction_time >= %(low)s AND (transaction_time, transaction_id) > (%(after_t)s, %(after_id)s)"""
# One page of events after (after_t, after_id); time as exact epoch microseconds (numeric in 15).
PAGE_SQL = """COPY (SELECT transaction_id, user_id, amount, merchant, merchant_id,
       (extract(epoch FROM transaction_time) * 1000000)::bigint AS time_us, country, device_id
FROM "{schema}".transactions
WHERE transaction_time >= %(low)s AND transaction_time >= %(after_t)s
  AND (transaction_time, transaction_id) > (%(after_t)s, %(after_id)s)
ORDER BY transaction_time, transaction_id LIMIT %(limit)s) TO STDOUT WITH (FORMAT csv, HEADER true, NULL '\\N')"""


@dataclass(frozen=True)
class MaterializeResult:
    """What one run wrote.

    Attributes:
        events: events appended by this run (a resumed run counts only its own).
        users: distinct users of those events.
        seconds: wall time of the run (reading included).
        source_id: the source as the progress key names it.
        resumed_from: (time_us, transaction_id) the run continued after, None when it started over.
        complete: False when ``max_rows`` stopped it before the end of the source.
    """

    events: int
    users: int
    seconds: float
    source_id: str
    resumed_from: tuple[int, str] | None
    complete: bool

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"materialized {self.events} events of {self.users} users in {self.seconds:.1f} s "
                f"({self.events_per_second:,.0f} events/s)")


# --- sources ------------------------------------------------------------------------------------
def _micros_to_datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _frame_from_micros(frame: pd.DataFrame, time_us: np.ndarray) -> pd.DataFrame:
    frame = frame.drop(columns="time_us", errors="ignore")
    frame["transaction_time"] = pd.to_datetime(time_us, unit="us", utc=True)
    return frame


class PostgresSource:
    """``<schema>.transactions`` of the settings' database, paged by (transaction_time, transaction_id)."""

    def __init__(self, settings, schema: str = "public"):
        self.settings = settings
        self.schema = schema
        self.source_id = f"postgres:{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}/{schema}"

    def _connect(self):
        from fraudops.db import connect

        conn = connect(self.settings)  # ConnectionError names PostgreSQL and `make stack-up`
        conn.autocommit = True
        return conn

    def newest_us(self) -> int | None:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(NEWEST_SQL.format(schema=self.schema))
                value = cur.fetchone()[0]
        finally:
            conn.close()
        return None if value is None else int(value)

    def count(self, low_us: int, after: tuple[int, str]) -> int:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(COUNT_SQL.format(schema=self.schema), self._params(low_us, after))
                return int(cur.fetchone()[0])
        finally:
            conn.close()

    @staticmethod
    def _params(low_us: int, after: tuple[int, str], limit: int = 0) -> dict:
        return {"low": _micros_to_datetime(low_us), "after_t": _micros_to_datetime(after[0]),
                "after_id": after[1], "limit": limit}

    def chunks(self, low_us: int, after: tuple[int, str], batch_rows: int) -> Iterator[pd.DataFrame]:
        """Pages of at most ``batch_rows`` events after ``after``, in order; one COPY each."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                while True:
                    buffer = io.StringIO()
                    sql = cur.mogrify(PAGE_SQL.format(schema=self.schema), self._params(low_us, after, batch_rows))
                    cur.copy_expert(sql.decode(), buffer)
                    buffer.seek(0)
                    page = pd.read_csv(buffer, dtype=str, keep_default_na=False, na_values=["\\N"])
                    if page.empty:
                        return
                    page["amount"] = page["amount"].astype("float64")  # Python's strtod: exact
                    time_us = page["time_us"].astype("int64").to_numpy()
                    page = _frame_from_micros(page, time_us)
                    after = (int(time_us[-1]), str(page["transaction_id"].iloc[-1]))
                    yield page
                    if len(page) < batch_rows:
                        return
        finally:
            conn.close()


class ParquetSource:
    """A Parquet (or CSV) history with at least :data:`EVENT_COLUMNS` but device_id/merchant_id."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"--path {self.path}: no such file (make demo or `python -m pipelines.generate` "
                                    "writes data/history.parquet)")
        stat = self.path.stat()
        # the file's identity: a regenerated history is a new source (its progress starts over)
        self.source_id = f"parquet:{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        self._events: pd.DataFrame | None = None

    def _load(self) -> pd.DataFrame:
        if self._events is None:
            if self.path.suffix.lower() == ".csv":
                frame = pd.read_csv(self.path, dtype={"transaction_id": str, "user_id": str})
            else:
                import pyarrow.parquet as pq

                present = set(pq.read_schema(self.path).names)
                frame = pd.read_parquet(self.path, columns=[c for c in EVENT_COLUMNS if c in present])
            missing = {"transaction_id", "user_id", "amount", "merchant", "transaction_time", "country"} - set(frame)
            if missing:
                raise ValueError(f"--path {self.path} lacks column(s) {', '.join(sorted(missing))}")
            from features.stateless import epoch_micros

            time_us = epoch_micros(frame["transaction_time"])
            ids = frame["transaction_id"].astype(str).to_numpy(object)
            order = np.lexsort((ids, time_us))
            frame = frame.iloc[order].reset_index(drop=True)
            frame["transaction_id"] = ids[order]
            frame["time_us"] = time_us[order]
            self._events = frame
        return self._events

    def newest_us(self) -> int | None:
        events = self._load()
        return int(events["time_us"].iloc[-1]) if len(events) else None

    def _selected(self, low_us: int, after: tuple[int, str]) -> pd.DataFrame:
        events = self._load()
        t, ids = events["time_us"].to_numpy(), events["transaction_id"].to_numpy(object)
        later = (t > after[0]) | ((t == after[0]) & (ids > after[1]))
        return events[(t >= low_us) & later]

    def count(self, low_us: int, after: tuple[int, str]) -> int:
        return len(self._selected(low_us, after))

    def chunks(self, low_us: int, after: tuple[int, str], batch_rows: int) -> Iterator[pd.DataFrame]:
        selected = self._selected(low_us, after)
        for first in range(0, len(selected), batch_rows):
            page = selected.iloc[first:first + batch_rows]
            yield _frame_from_micros(page.copy(), page["time_us"].to_numpy())


# --- the run ------------------------------------------------------------------------------------
def parse_since(value, argument: str = "--since") -> float:
    """``91d``, ``12h``, ``30m`` or seconds -> seconds; ValueError naming ``argument``."""
    from fraudops.modeling.registry import parse_label_delay

    return parse_label_delay(value, argument)


def progress_key(prefix: str, source_id: str) -> str:
    return f"{prefix}fs:materialize:{source_id}"


def connect_store(settings, prefix: str = ""):
    """The feature store of the settings; ConnectionError naming it and `make stack-up`."""
    import redis

    from features.online import FeatureStore, FeatureStoreTarget

    target = FeatureStoreTarget(settings.feature_store_host, settings.feature_store_port,
                                settings.feature_store_password, prefix)
    client = target.connect()
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise ConnectionError(f"the feature store (Redis) at {target.host}:{target.port} is not reachable: {exc}; "
                              "start it with `make stack-up`") from exc
    return FeatureStore(client, prefix)


def open_source(source: str, settings, path: str | Path | None = None, pg_schema: str = "public"):
    if source == "postgres":
        return PostgresSource(settings, pg_schema)
    if source == "parquet":
        return ParquetSource(path or DEFAULT_DATA)
    raise ValueError(f"--source={source!r} must be one of {', '.join(SOURCES)}")


def _check_arguments(batch_rows: int, max_rows: int | None, pg_schema: str) -> None:
    if not isinstance(batch_rows, int | np.integer) or batch_rows < 1:
        raise ValueError(f"--batch-rows={batch_rows!r} must be a whole number >= 1")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows={max_rows!r} must be >= 1 (None: no limit)")
    if not pg_schema or '"' in pg_schema:
        raise ValueError(f"--pg-schema={pg_schema!r} is not a schema name")


def materialize(source: str = "postgres", since: str | float = DEFAULT_SINCE, *, path: str | Path | None = None,
                pg_schema: str = "public", redis_prefix: str = "", batch_rows: int = DEFAULT_BATCH_ROWS,
                restart: bool = False, progress: bool = True, max_rows: int | None = None,
                on_chunk: Callable[[int], None] | None = None, settings=None) -> MaterializeResult:
    """Append the source's recent events to the feature store, resuming after the last run's progress.

    Args:
        source: "postgres" (``<pg_schema>.transactions``) or "parquet" (``path``).
        since: how far before the source's newest event to read (``91d``, ``12h``, seconds).
        path: the Parquet history (source "parquet"; default data/history.parquet).
        pg_schema: schema of the transactions table (source "postgres").
        redis_prefix: key prefix of the store (the streaming job's --redis-prefix).
        batch_rows: events per chunk (one read, one store write, one progress update each).
        restart: ignore the recorded progress and read from ``since`` on (changes nothing
            already written: the append is idempotent).
        progress: tqdm bar on stderr.
        max_rows: stop after the chunk that reaches this many events (progress recorded).
        on_chunk: called with the events written so far after each chunk's progress is recorded.
        settings: fraudops Settings (default load_settings()).

    Raises:
        ValueError: a bad argument, naming it. ConnectionError: PostgreSQL or the feature store is
        not reachable (names it and `make stack-up`). FileNotFoundError: no Parquet at ``path``.
    """
    from tqdm import tqdm

    from features.online import append_events
    from fraudops.settings import load_settings

    since_us = int(round(parse_since(since) * 1_000_000))
    _check_arguments(batch_rows, max_rows, pg_schema)
    settings = settings or load_settings()
    started = time.perf_counter()
    reader = open_source(source, settings, path, pg_schema)
    store = connect_store(settings, redis_prefix)
    key = progress_key(redis_prefix, reader.source_id)
    try:
        recorded = None if restart else store.client.get(key)
        resumed = (int(json.loads(recorded)[0]), str(json.loads(recorded)[1])) if recorded else None
        newest = reader.newest_us()
        low = newest - since_us if newest is not None else 0
        after = max(resumed or (low - 1, ""), (low - 1, ""))  # (low - 1 us, ""): everything from low on
        total = reader.count(low, after) if newest is not None else 0
        if max_rows is not None:
            total = min(total, max_rows)
        events, users = 0, set()
        bar = tqdm(total=total, unit="ev", disable=not progress, mininterval=0.5, file=sys.stderr)
        complete = True
        try:
            for chunk in (reader.chunks(low, after, batch_rows) if newest is not None else ()):
                append_events(store, chunk)
                last_us = int(chunk["transaction_time"].iloc[-1].value // 1_000)
                store.client.set(key, json.dumps([last_us, str(chunk["transaction_id"].iloc[-1])]))
                events += len(chunk)
                users.update(chunk["user_id"].astype(str).unique().tolist())
                bar.update(len(chunk))
                if on_chunk is not None:
                    on_chunk(events)
                if max_rows is not None and events >= max_rows:
                    complete = reader.count(low, (last_us, str(chunk["transaction_id"].iloc[-1]))) == 0
                    break
        finally:
            bar.close()
    finally:
        store.client.close()
    return MaterializeResult(events, len(users), time.perf_counter() - started, reader.source_id, resumed, complete)


# --- CLI ----------------------------------------------------------------------------------------
def _positive_int(name: str):
    def parse(text: str) -> int:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if not value.is_integer() or value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number >= 1, got {text!r}")
        return int(value)

    return parse


def _since(text: str) -> str:
    try:
        parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    from fraudops.cli import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m pipelines.materialize", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--since", type=_since, default=DEFAULT_SINCE,
                   help="read events this long before the source's newest (91d, 12h, 30m or seconds)")
    p.add_argument("--source", choices=SOURCES, default="postgres", help="where the events come from")
    p.add_argument("--path", default=DEFAULT_DATA, help="the Parquet history (--source parquet)")
    p.add_argument("--pg-schema", default="public", help="schema of the transactions table (--source postgres)")
    p.add_argument("--redis-prefix", default="", help="key prefix of the feature store (the job's --redis-prefix)")
    p.add_argument("--batch-rows", type=_positive_int("--batch-rows"), default=DEFAULT_BATCH_ROWS,
                   help="events read and written per round")
    p.add_argument("--restart", nargs="?", const="true", default="false",
                   help="ignore the recorded progress of this source (--restart, or --restart true|false)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> MaterializeResult | int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        restart = parse_bool(args.restart, "--restart")
    except ValueError as exc:
        parser.error(str(exc))
    try:
        result = materialize(args.source, args.since, path=args.path, pg_schema=args.pg_schema,
                             redis_prefix=args.redis_prefix, batch_rows=args.batch_rows, restart=restart,
                             progress=not args.no_progress)
    except (ConnectionError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.resumed_from is not None:
        print(f"resumed after {_micros_to_datetime(result.resumed_from[0]):%Y-%m-%dT%H:%M:%S.%fZ} "
              f"{result.resumed_from[1]} (recorded progress; --restart starts over)")
    print(result.summary(), flush=True)
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(outcome if isinstance(outcome, int) else 0)
