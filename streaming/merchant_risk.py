"""Merchant snapshot for the scoring job, refreshed from PostgreSQL on an interval.

The features are computed by features.merchant (the same count events training uses). The
snapshot (features.merchant.MerchantSnapshot, small: a base count per merchant and counter plus
the next minutes' events) comes from PostgreSQL in two parts: the base counts of the windows (30
days before now - label_delay) aggregated there by WINDOW_BASE_SQL, the twin of the module's
definition that a test keeps equal to it, and the upcoming events computed here by
features.merchant from the few minutes of rows that have one (UPCOMING_SQL). It is broadcast
to the workers, where the scoring pass evaluates it at each event's time
(features.merchant.snapshot_merchant_features). Exact whenever label_delay exceeds the refresh
interval and the stream's lag (everything the windows need is in PostgreSQL by then).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time

import pandas as pd

from features.merchant import (
    DEFAULT_LABEL_DELAY,
    DEFAULT_SNAPSHOT_VALIDITY,
    N_COUNTERS,
    WINDOW_MICROS,
    label_delay_micros,
    merchant_snapshot,
    normalize_labels,
    snapshot_from_base,
)
from features.stateless import epoch_micros
from streaming.sinks import SinkTargets, pg_connect

log = logging.getLogger("streaming.merchant_risk")

WINDOW_TRANSACTIONS_SQL = """
COPY (SELECT transaction_id, merchant, merchant_id, transaction_time FROM transactions
WHERE transaction_time >= %(start)s AND transaction_time <= %(end)s) TO STDOUT WITH (FORMAT csv, HEADER true, NULL '\\N')
"""
WINDOW_LABELS_SQL = """
COPY (SELECT l.transaction_id, l.is_fraud, l.labeled_at, t.merchant, t.merchant_id, t.transaction_time
FROM labels l JOIN transactions t USING (transaction_id)
WHERE t.transaction_time >= %(start)s AND t.transaction_time <= %(end)s AND l.labeled_at <= %(end)s) TO STDOUT WITH (FORMAT csv, HEADER true, NULL '\\N')
"""
# The base of the snapshot, counted in PostgreSQL: each merchant's counters at e = as_of -
# label_delay (features.merchant's definition: a transaction at s counts in window W for
# s in [e - W, e); a fraud label counts while it is its transaction's latest label, over
# [max(s + 1, labeled), min(s + W + 1, next label of the transaction)) holding e). One row per
# merchant with the 3 transaction counters then the 3 fraud counters (windows of
# features.definition.MERCHANT_WINDOWS_SECONDS, in order). tests/integration/
# test_merchant_snapshot_sql.py keeps it equal to features.merchant.merchant_snapshot's base.
WINDOW_BASE_SQL = """
COPY (
WITH txn AS (
  SELECT coalesce(merchant_id, merchant) AS merchant_key,
         (extract(epoch FROM transaction_time) * 1000000)::bigint AS s
  FROM transactions WHERE transaction_time >= %(first)s AND transaction_time <= %(last)s
), label AS (
  SELECT coalesce(t.merchant_id, t.merchant) AS merchant_key, l.is_fraud,
         (extract(epoch FROM t.transaction_time) * 1000000)::bigint AS s,
         (extract(epoch FROM l.labeled_at) * 1000000)::bigint AS labeled,
         coalesce(lead((extract(epoch FROM l.labeled_at) * 1000000)::bigint)
                  OVER (PARTITION BY l.transaction_id ORDER BY l.labeled_at, l.is_fraud), %(never)s) AS until
  FROM labels l JOIN transactions t USING (transaction_id)
  WHERE t.transaction_time >= %(first)s AND t.transaction_time <= %(last)s AND l.labeled_at <= %(last)s
)
SELECT merchant_key,
       count(*) FILTER (WHERE s >= %(e)s - %(w0)s AND s < %(e)s) AS c0,
       count(*) FILTER (WHERE s >= %(e)s - %(w1)s AND s < %(e)s) AS c1,
       count(*) FILTER (WHERE s >= %(e)s - %(w2)s AND s < %(e)s) AS c2,
       0 AS c3, 0 AS c4, 0 AS c5
FROM txn WHERE s < %(e)s GROUP BY merchant_key
UNION ALL
SELECT merchant_key, 0, 0, 0,
       count(*) FILTER (WHERE greatest(s + 1, labeled) <= %(e)s AND %(e)s < least(s + %(w0)s + 1, until)),
       count(*) FILTER (WHERE greatest(s + 1, labeled) <= %(e)s AND %(e)s < least(s + %(w1)s + 1, until)),
       count(*) FILTER (WHERE greatest(s + 1, labeled) <= %(e)s AND %(e)s < least(s + %(w2)s + 1, until))
FROM label WHERE is_fraud GROUP BY merchant_key
) TO STDOUT WITH (FORMAT csv, HEADER true, NULL '\\N')
"""
# The transactions with a count event in (e, e + valid_for] (times in [e, e + valid_for] or
# [e - W, e - W + valid_for], or a label known in (e, e + valid_for]), each with all its labels
# known by then (one row per label; none: label columns NULL): features.merchant.snapshot_from_base
# turns them into the snapshot's upcoming events. A few minutes of traffic, not the window.
UPCOMING_SQL = """
COPY (SELECT t.transaction_id, t.merchant, t.merchant_id, t.transaction_time, l.is_fraud, l.labeled_at
FROM transactions t LEFT JOIN labels l ON l.transaction_id = t.transaction_id AND l.labeled_at <= %(last)s
WHERE t.transaction_time >= %(first)s AND t.transaction_time <= %(last)s
AND (t.transaction_time BETWEEN %(e_at)s AND %(end_at)s
 OR t.transaction_time BETWEEN %(e_at_w0)s AND %(end_at_w0)s
 OR t.transaction_time BETWEEN %(e_at_w1)s AND %(end_at_w1)s
 OR t.transaction_time BETWEEN %(e_at_w2)s AND %(end_at_w2)s
 OR t.transaction_id IN (SELECT transaction_id FROM labels WHERE labeled_at > %(e_at)s AND labeled_at <= %(end_at)s))
) TO STDOUT WITH (FORMAT csv, HEADER true, NULL '\\N')
"""
_LONGEST_WINDOW = pd.Timedelta(days=30, seconds=1)
_LONGEST_WINDOW_US = int(WINDOW_MICROS.max()) + 1_000_000
_NEVER = 2**62  # a label's span ends at its transaction's next label, else never
if len(WINDOW_MICROS) != 3 or N_COUNTERS != 6:
    raise ImportError("WINDOW_BASE_SQL and UPCOMING_SQL name 3 merchant windows; update them with "
                      "features.definition.MERCHANT_WINDOWS_SECONDS")


_BOOLEAN_COLUMNS = ("is_fraud",)


def _query(cur, sql: str, params: dict) -> pd.DataFrame:
    """The query's rows as text columns (NULL -> NaN, booleans as bool), through COPY ... TO
    STDOUT and one CSV parse: ~4x less CPU than a row tuple per transaction from fetchall once
    the window holds hundreds of thousands of rows."""
    buffer = io.StringIO()
    cur.copy_expert(cur.mogrify(sql, params).decode(), buffer)  # values bound by mogrify, as execute does
    buffer.seek(0)
    frame = pd.read_csv(buffer, dtype=str, keep_default_na=False, na_values=["\\N"])
    for name in _BOOLEAN_COLUMNS:
        if name in frame:
            values = frame[name].map({"t": True, "f": False})
            frame[name] = values if values.isna().any() else values.astype(bool)
    return frame


def _queries(targets: SinkTargets, params: dict, *statements: str) -> list[pd.DataFrame]:
    """Each COPY statement's rows (:func:`_query`), over one connection closed after."""
    conn = pg_connect(targets)
    try:
        with conn.cursor() as cur:
            return [_query(cur, sql, params) for sql in statements]
    finally:
        conn.close()


def read_merchant_inputs(targets: SinkTargets, as_of: pd.Timestamp, label_delay, valid_for):
    """(transactions, labels with their transaction's merchant and time) the snapshot needs."""
    end = as_of - pd.Timedelta(microseconds=label_delay_micros(label_delay)) + pd.Timedelta(valid_for)
    params = {"start": (end - pd.Timedelta(valid_for) - _LONGEST_WINDOW).to_pydatetime(), "end": end.to_pydatetime()}
    transactions, labels = _queries(targets, params, WINDOW_TRANSACTIONS_SQL, WINDOW_LABELS_SQL)
    for frame, columns in ((transactions, ["transaction_time"]), (labels, ["transaction_time", "labeled_at"])):
        for name in columns:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return transactions, labels


def read_snapshot_reference(targets: SinkTargets, as_of: pd.Timestamp, label_delay=DEFAULT_LABEL_DELAY,
                            valid_for=DEFAULT_SNAPSHOT_VALIDITY):
    """The snapshot from every row of the window (features.merchant.merchant_snapshot over them):
    the reference :func:`read_snapshot` is tested equal to."""
    transactions, labels = read_merchant_inputs(targets, as_of, label_delay, valid_for)
    known = normalize_labels(labels) if len(labels) else None
    return merchant_snapshot(transactions, known, as_of, label_delay, valid_for)


def snapshot_params(as_of: pd.Timestamp, label_delay, valid_for) -> dict:
    """The parameters of WINDOW_BASE_SQL and UPCOMING_SQL: e = as_of - label_delay and the
    window bounds, in microseconds (counts) and as timestamps (index ranges)."""
    e = int(epoch_micros(pd.Series([pd.Timestamp(as_of)]), argument="as_of")[0]) - label_delay_micros(label_delay)
    end = e + label_delay_micros(valid_for)

    def at(micros: int):
        return pd.Timestamp(micros, unit="us", tz="UTC").to_pydatetime()

    params = {"e": e, "never": _NEVER, "first": at(e - _LONGEST_WINDOW_US), "last": at(end),
              "e_at": at(e), "end_at": at(end)}
    for k, width in enumerate(int(w) for w in WINDOW_MICROS):
        params.update({f"w{k}": width, f"e_at_w{k}": at(e - width), f"end_at_w{k}": at(end - width)})
    return params


def read_snapshot(targets: SinkTargets, as_of: pd.Timestamp, label_delay=DEFAULT_LABEL_DELAY,
                  valid_for=DEFAULT_SNAPSHOT_VALIDITY):
    """The features.merchant.MerchantSnapshot at ``as_of`` from PostgreSQL: the base counts
    aggregated there (one row per merchant), the upcoming events from the few minutes of rows
    that have one. Its cost follows the merchants and the traffic of a few minutes; the rows of
    the 30-day window never leave PostgreSQL (reading them all took 9-17 s each minute at
    600,000 rows on the benchmark's 2 loaded cores)."""
    params = snapshot_params(as_of, label_delay, valid_for)
    wide, upcoming = _queries(targets, params, WINDOW_BASE_SQL, UPCOMING_SQL)
    counters = [f"c{k}" for k in range(N_COUNTERS)]
    base = wide.melt(id_vars="merchant_key", value_vars=counters, var_name="counter", value_name="delta")
    base = base.assign(counter=base["counter"].str[1:].astype("int64"), delta=base["delta"].astype("int64"))
    upcoming["transaction_time"] = pd.to_datetime(upcoming["transaction_time"], utc=True, format="ISO8601")
    transactions = upcoming.drop_duplicates("transaction_id")[["transaction_id", "merchant", "merchant_id",
                                                               "transaction_time"]]
    labels = upcoming[upcoming["labeled_at"].notna()]
    labels = labels.assign(is_fraud=labels["is_fraud"].astype(bool),
                           labeled_at=pd.to_datetime(labels["labeled_at"], utc=True, format="ISO8601"))
    known = normalize_labels(labels) if len(labels) else None
    return snapshot_from_base(base, transactions, known, as_of, label_delay, valid_for)


def _lower_priority() -> None:
    """Initializer of the refresh's child process: background work, below the batch path."""
    with contextlib.suppress(OSError):
        os.nice(10)


class MerchantRiskCache:
    """The latest merchant snapshot as a Spark broadcast of a pandas table, refreshed by a
    background thread every ``refresh_seconds`` (never on the micro-batch path).

    The first snapshot is read in the driver (the first micro-batch waits for it; a child
    process would add its imports to the start), every later one in a child process at a lower
    CPU priority. Both are cheap now that PostgreSQL counts the window (:func:`read_snapshot`):
    reading every row of the 30-day window and building from them took 9-17 s a minute at
    600,000 rows on the benchmark's 2 loaded cores (10.8 s in the driver at a restart).

    :meth:`start` takes the first snapshot (and raises if it cannot); :attr:`current` is what the
    next micro-batch's pass reads (None before the first read: every count 0, rates at the prior).
    """

    def __init__(self, spark, targets: SinkTargets, refresh_seconds: float = 60.0,
                 label_delay=DEFAULT_LABEL_DELAY):
        self.spark = spark
        self.targets = targets
        self.refresh_seconds = refresh_seconds
        self.label_delay = label_delay
        self.current = None
        self._previous = None
        self._stop = threading.Event()
        self._first = threading.Event()  # set when the first read ended (well or not)
        self._first_error: Exception | None = None
        self._pool = None  # the child process of the later refreshes (a ProcessPoolExecutor of 1)

    def start(self, wait: bool = True) -> None:
        """Take the first snapshot (raises if it cannot), then refresh in a background thread.

        ``wait=False``: the thread takes the first snapshot too, so the caller goes on (the
        job starts its queries meanwhile); :meth:`await_first` before anything reads
        :attr:`current`."""
        if wait:
            self.refresh()
            self._first.set()
        threading.Thread(target=self._loop, args=(not wait,), name="merchant-risk-refresh", daemon=True).start()

    def await_first(self, timeout: float | None = None) -> None:
        """Wait for the first snapshot; raises when its read failed or ``timeout`` passed."""
        if not self._first.wait(timeout):
            raise TimeoutError(f"no merchant risk snapshot within {timeout}s")
        if self.current is None and self._first_error is not None:
            raise RuntimeError(f"could not read the merchant risk snapshot: {self._first_error}") from self._first_error

    def stop(self) -> None:
        self._stop.set()
        self._close_pool()

    def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _read_in_child(self, *args):
        """read_snapshot(*args) in the child process (started on first use); None when the
        child could not run it (it is restarted next time; the caller reads in the driver)."""
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        try:
            if self._pool is None:
                import multiprocessing

                # spawn: a fork of the driver would copy its JVM gateway threads' locks
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_lower_priority)
            return self._pool.submit(read_snapshot, *args).result()
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            log.warning("merchant snapshot child process failed (%s): reading it in the driver", exc)
            self._close_pool()
            return None

    def _loop(self, first_now: bool = False) -> None:
        if first_now:
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - reported to await_first; retried below
                self._first_error = exc
                log.warning("merchant risk snapshot could not be read (%s); retrying in %ss", exc, self.refresh_seconds)
            finally:
                self._first.set()
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep the previous snapshot, retry later
                log.warning("merchant risk refresh failed (%s); keeping the previous snapshot", exc)

    def refresh(self) -> None:
        # valid for two refresh intervals: the next snapshot replaces it well before it expires
        started = time.perf_counter()
        args = (self.targets, pd.Timestamp.now(tz="UTC"), self.label_delay, pd.Timedelta(seconds=2 * self.refresh_seconds))
        table = self._read_in_child(*args) if self.current is not None and not self._stop.is_set() else None
        if table is None:
            table = read_snapshot(*args)
        read = time.perf_counter()
        fresh = self.spark.sparkContext.broadcast(table)
        log.info("merchant snapshot refreshed: read and built in %.2fs, broadcast in %.2fs",
                 read - started, time.perf_counter() - read)
        # the one before the current may still be read by a batch in flight: unpersist it only now
        if self._previous is not None:
            self._previous.unpersist(blocking=False)
        self._previous, self.current = self.current, fresh
