"""Sinks of the scoring job: PostgreSQL, Redis and the Kafka alerts topic.

They run on the executors inside the scoring job's pandas pass (streaming.scoring_pass), one
chunk at a time, so writes scale with the cluster. Every target is a plain value resolved on the
driver (:class:`SinkTargets`); the pass keeps one connection per target per Python worker.

* PostgreSQL: ONE COPY (text format, built a column at a time) straight into the table inside a
  savepoint; when a row is already there (a replayed micro-batch) the COPY is rolled back to the
  savepoint and the rows go through a temporary table and ``INSERT .. ON CONFLICT DO NOTHING`` on
  transaction_id: a replay never duplicates a row. transactions and fraud_alerts commit together. A failure raises, which fails the micro-batch and the query restarts from its
  checkpoint; nothing is swallowed.
* Redis: ``fraud_alert:<transaction_id>`` = JSON with a TTL, plus the sorted set
  ``recent_fraud_alerts`` (score = detection time), pipelined. Redis is a cache of PostgreSQL:
  when it is down the batch still commits, the alerts it missed are counted, and the job copies
  them from PostgreSQL once Redis is back (:func:`resync_redis_alerts`).
* Kafka: one JSON message per alert on the alerts topic, key = transaction_id. Replays can
  repeat a message (at-least-once); consumers deduplicate on the key.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from fraudops.contract.tables import (
    ALERT_INSERT_COLUMNS,
    DECISION_ROW_COLUMNS,
    LABEL_INSERT_COLUMNS,
    REDIS_ALERT_KEY,
    REDIS_RECENT_ALERTS_KEY,
    TRANSACTION_INSERT_COLUMNS,
)
from fraudops.jsonutil import strict_dumps

MAX_RAW_VALUE_CHARS = 4096  # quarantined raw values are cut to this length


@dataclass(frozen=True)
class SinkTargets:
    """Where the sinks write; plain values only, safe to ship to executors."""

    postgres_dsn: str
    pg_schema: str
    redis_host: str
    redis_port: int
    redis_password: str
    redis_prefix: str
    kafka_brokers: str
    alerts_topic: str
    alert_ttl_seconds: int = 7 * 86_400
    recent_alerts_max: int = 10_000

    def redis_alert_key(self, transaction_id: str) -> str:
        return self.redis_prefix + REDIS_ALERT_KEY.format(transaction_id=transaction_id)

    @property
    def redis_recent_key(self) -> str:
        return self.redis_prefix + REDIS_RECENT_ALERTS_KEY


def pg_connect(targets: SinkTargets):
    import psycopg2

    conn = psycopg2.connect(targets.postgres_dsn, connect_timeout=10)
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('search_path', %s, false)", (targets.pg_schema,))
    conn.commit()
    return conn


def as_utc(values: pd.Series) -> pd.Series:
    """Spark hands timestamps to pandas as naive values in the session zone (UTC): mark them UTC."""
    values = pd.to_datetime(values)
    return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")


_COPY_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SPECIALS = ("\\", "\t", "\n", "\r")


def _text_column(values: pd.Series) -> list[str]:
    """One column as COPY text-format fields (NULL as \\N), built a column at a time.

    Timestamps are written in UTC with microseconds (naive ones are UTC), floats with Python's
    shortest round-trip repr (NaN is NULL), booleans t/f, text escaped for the text format.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        if values.dt.tz is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        utc = values.to_numpy("datetime64[us]")
        if len(utc) > 1 and not np.isnat(utc[0]) and (utc == utc[0]).all():  # one time (scored_at): formatted once
            return [f"{np.datetime_as_string(utc[0], unit='us')}+00"] * len(utc)
        out = np.char.add(np.datetime_as_string(utc, unit="us"), "+00").astype(object)
        out[np.isnat(utc)] = _COPY_NULL
        return out.tolist()
    if values.dtype == np.bool_:
        return np.where(values.to_numpy(bool), "t", "f").tolist()
    if pd.api.types.is_integer_dtype(values) and not isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
        return values.to_numpy().astype(str).tolist()
    if pd.api.types.is_float_dtype(values) and not isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
        numbers = values.to_numpy("float64")
        if not len(numbers):
            return []
        # repr of each float (as str(float): the shortest exact text), in one C call: a list's repr
        # is its items' reprs joined by ", ", which no float's repr contains
        out = repr(numbers.tolist())[1:-1].split(", ")
        for i in np.flatnonzero(np.isnan(numbers)).tolist():
            out[i] = _COPY_NULL
        return out
    raw = values.to_numpy(object)
    if _all_strings(raw):  # the common case: no null to find, no value to convert
        out = raw.tolist()
        null = None
    else:
        null = pd.isna(raw)
        out = [v if type(v) is str else _text_value(v) for v in raw.tolist()]
    joined = "".join(out)  # a null is "" here
    if any(special in joined for special in _SPECIALS):
        out = [v.translate(_COPY_ESCAPES) for v in out]
    if null is not None:
        for i in np.flatnonzero(null).tolist():
            out[i] = _COPY_NULL
    return out


def _all_strings(raw: np.ndarray) -> bool:
    """Every value is a ``str`` (no None, NaN or other type): one C pass."""
    from pandas._libs import lib

    return bool(len(raw)) and bool(lib.is_string_array(raw, skipna=False))


def _text_value(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""  # replaced by NULL by the caller
    if isinstance(value, bool | np.bool_):
        return "t" if value else "f"
    if isinstance(value, pd.Timestamp | datetime):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f+00")
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def copy_text(frame: pd.DataFrame) -> bytes:
    """``frame`` as the body of ``COPY .. FROM STDIN`` (text format), one line per row."""
    columns = [_text_column(frame[name]) for name in frame.columns]
    if not len(frame):
        return b""
    return ("\n".join(map("\t".join, zip(*columns, strict=True))) + "\n").encode("utf-8")


def copy_upsert(cur, table: str, frame: pd.DataFrame, columns: list[str], conflict: str) -> int:
    """Insert ``frame[columns]`` into ``table`` as ``INSERT .. ON CONFLICT`` ``conflict`` would.

    The common case (no row there yet) is ONE COPY straight into ``table`` inside a savepoint;
    when a row conflicts (a replayed micro-batch), the COPY is rolled back to the savepoint as a
    whole and the rows go through a temporary table and ``INSERT .. ON CONFLICT`` instead. Both
    end with the same rows in ``table``: a COPY that succeeds met no conflict.

    Returns the number of rows inserted now (0 for rows already there).
    """
    if frame.empty:
        return 0
    from psycopg2 import errors

    body = copy_text(frame[columns])
    cols = ", ".join(columns)
    cur.execute("SAVEPOINT copy_direct")
    try:
        cur.copy_expert(f"COPY {table} ({cols}) FROM STDIN", io.BytesIO(body), size=_COPY_CHUNK)
    except errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT copy_direct")
    else:
        return len(frame)  # the savepoint ends with the transaction: no round trip to release it
    temp = f"incoming_{table}"
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    cur.copy_expert(f"COPY {temp} ({cols}) FROM STDIN", io.BytesIO(body), size=_COPY_CHUNK)
    cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT {conflict}")
    return cur.rowcount


_COPY_CHUNK = 1 << 20


def alert_rows(scored: pd.DataFrame, detection_time: datetime) -> pd.DataFrame:
    alerts = scored.loc[scored["is_fraud"].astype(bool)].copy()
    alerts["detection_time"] = detection_time
    if "reasons" not in alerts.columns:  # scored without explanations: the alert has none recorded
        alerts["reasons"] = None
    return alerts


def alert_payload(row: dict) -> str:
    """The alert as strict JSON, the same text in Redis and on the alerts topic (reasons as a list)."""
    payload = {key: _plain(row.get(key)) for key in ALERT_INSERT_COLUMNS}
    for key in ("reasons", "rules_fired"):  # the stream's columns hold the JSON text PostgreSQL gets
        if isinstance(payload.get(key), str):
            payload[key] = json.loads(payload[key])
    return strict_dumps(payload, separators=(",", ":"))


def _plain(value):
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_scored_chunk(conn, scored: pd.DataFrame, targets: SinkTargets) -> tuple[pd.DataFrame, int]:
    """Write transactions and their alerts in one PostgreSQL transaction.

    Returns (alerts as rows, number of transactions inserted now).
    """
    missing = [name for name in DECISION_ROW_COLUMNS if name not in scored.columns]
    if missing:  # rows the stream alone scored: no decision (NULL)
        scored = scored.assign(**dict.fromkeys(missing))
    alerts = alert_rows(scored, pd.Timestamp.now(tz="UTC"))
    with conn.cursor() as cur:
        inserted = copy_upsert(cur, "transactions", scored, TRANSACTION_INSERT_COLUMNS, "(transaction_id) DO NOTHING")
        copy_upsert(cur, "fraud_alerts", alerts, ALERT_INSERT_COLUMNS, "(transaction_id) DO NOTHING")
    conn.commit()
    return alerts, inserted


def push_alerts_to_redis(alerts: pd.DataFrame, targets: SinkTargets, client=None) -> int:
    """SET each alert with its TTL and add it to the recent-alerts sorted set.

    ``client``: a redis.Redis to use (kept open), or None for one opened and closed here.
    Returns how many alerts could NOT be written (Redis down): the caller reports the gap.
    """
    if alerts.empty:
        return 0
    import redis

    own = client is None
    if own:
        client = redis.Redis(host=targets.redis_host, port=targets.redis_port,
                             password=targets.redis_password or None, socket_timeout=5,
                             socket_connect_timeout=3)
    try:
        pipe = client.pipeline(transaction=False)
        for row in alerts.to_dict("records"):
            pipe.set(targets.redis_alert_key(row["transaction_id"]), alert_payload(row),
                     ex=targets.alert_ttl_seconds)
            pipe.zadd(targets.redis_recent_key, {row["transaction_id"]: row["detection_time"].timestamp()})
        pipe.zremrangebyrank(targets.redis_recent_key, 0, -targets.recent_alerts_max - 1)
        pipe.execute()
        return 0
    except redis.RedisError:
        return len(alerts)
    finally:
        if own:
            client.close()


def publish_alerts(alerts: pd.DataFrame, targets: SinkTargets, producer) -> None:
    """Produce the alerts to the alerts topic with ``producer`` (a confluent_kafka.Producer, kept
    open) and wait for the broker's acknowledgement."""
    if alerts.empty:
        return
    from confluent_kafka import KafkaException

    errors: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    for row in alerts.to_dict("records"):
        producer.produce(targets.alerts_topic, key=row["transaction_id"].encode(),
                         value=alert_payload(row).encode(), on_delivery=on_delivery)
    remaining = producer.flush(30)
    if remaining or errors:
        raise KafkaException(f"alerts topic {targets.alerts_topic}: {remaining} undelivered, errors {errors[:3]}")


def upsert_labels(conn, labels: pd.DataFrame) -> int:
    """Insert labels; a newer label of the same source replaces the older one."""
    with conn.cursor() as cur:
        n = copy_upsert(
            cur, "labels", labels, LABEL_INSERT_COLUMNS,
            "(transaction_id, source) DO UPDATE SET is_fraud = EXCLUDED.is_fraud, "
            "labeled_at = EXCLUDED.labeled_at WHERE labels.labeled_at <= EXCLUDED.labeled_at",
        )
    conn.commit()
    return n


def resync_redis_alerts(conn, targets: SinkTargets, since: datetime) -> int:
    """Copy alerts detected since ``since`` from PostgreSQL to Redis (after Redis was down).

    Returns the number of alerts still missing (non-zero when Redis is still down).
    """
    cols = ", ".join(ALERT_INSERT_COLUMNS)
    alerts = pd.read_sql_query(f"SELECT {cols} FROM fraud_alerts WHERE detection_time >= %(since)s",
                               conn, params={"since": since})
    conn.rollback()
    return push_alerts_to_redis(alerts, targets)
