"""Merchant risk snapshot for the scoring job, refreshed from the labels table on an interval.

The rate is computed by features.merchant (the same functions training uses); this module only
reads the labels (joined with their transaction's merchant) from PostgreSQL and caches the
snapshot as a small Spark DataFrame that is broadcast-joined into each micro-batch.
"""

from __future__ import annotations

import logging
import time

import pandas as pd

from features.merchant import merchant_risk_snapshot, normalize_labels
from streaming.sinks import SinkTargets, pg_connect

log = logging.getLogger("streaming.merchant_risk")

LABELS_WITH_MERCHANT_SQL = """
SELECT l.transaction_id, l.is_fraud, l.labeled_at, t.merchant, t.merchant_id
FROM labels l JOIN transactions t USING (transaction_id)
"""


def read_labels_with_merchant(targets: SinkTargets) -> pd.DataFrame:
    conn = pg_connect(targets)
    try:
        with conn.cursor() as cur:
            cur.execute(LABELS_WITH_MERCHANT_SQL)
            rows = cur.fetchall()
            columns = [d[0] for d in cur.description]
    finally:
        conn.close()
    frame = pd.DataFrame(rows, columns=columns)
    frame["labeled_at"] = pd.to_datetime(frame["labeled_at"], utc=True)
    return frame


class MerchantRiskCache:
    """The latest merchant snapshot as a Spark DataFrame; re-read at most every refresh_seconds."""

    def __init__(self, spark, targets: SinkTargets, refresh_seconds: float = 60.0):
        self.spark = spark
        self.targets = targets
        self.refresh_seconds = refresh_seconds
        self._snapshot = None
        self._taken = float("-inf")

    def snapshot(self):
        if time.monotonic() - self._taken < self.refresh_seconds:
            return self._snapshot
        try:
            labels = read_labels_with_merchant(self.targets)
            table = merchant_risk_snapshot(normalize_labels(labels), as_of=pd.Timestamp.now(tz="UTC"))
        except Exception as exc:  # noqa: BLE001 - keep the previous snapshot, retry next batch
            if self._taken == float("-inf"):
                raise
            log.warning("merchant risk refresh failed (%s); keeping the previous snapshot", exc)
            return self._snapshot
        if self._snapshot is not None:
            self._snapshot.unpersist()
        # None means "no labels yet": every merchant at the prior (features.spark_columns)
        self._snapshot = self.spark.createDataFrame(table).persist() if len(table) else None
        self._taken = time.monotonic()
        return self._snapshot
