"""Parse and validate Kafka records with THE message contract (fraudops.contract.messages).

Called by the scoring job's pandas pass (streaming.scoring_pass) on each chunk of Kafka records.

Valid rows come out with the parsed fields; rejected rows keep their reason, the raw value cut
to a bound and their topic/partition/offset for the quarantine table. Nothing is dropped here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraudops.contract.messages import REJECT_REASON_COLUMN, validate_messages_frame
from streaming.sinks import MAX_RAW_VALUE_CHARS


def _raw_text(value) -> str | None:
    if value is None:
        return None
    text = bytes(value)[: MAX_RAW_VALUE_CHARS * 4].decode("utf-8", errors="replace")
    return text[:MAX_RAW_VALUE_CHARS].replace("\x00", "\ufffd")  # PostgreSQL text holds no NUL


def validate_kafka_chunk(chunk: pd.DataFrame) -> pd.DataFrame:
    """Kafka columns (value, topic, partition, offset, timestamp) in, parsed rows out (same order).

    Valid rows have the message fields and ``reject_reason`` None; rejected rows keep their
    reason, the raw value cut to a bound and their topic/partition/offset.
    """
    chunk = chunk.reset_index(drop=True)
    values = chunk["value"].tolist()
    parsed = validate_messages_frame(values)
    rejected = parsed[REJECT_REASON_COLUMN].notna().to_numpy()
    parsed["kafka_topic"] = chunk["topic"].to_numpy()
    parsed["kafka_partition"] = chunk["partition"].astype("int32").to_numpy()
    parsed["kafka_offset"] = chunk["offset"].astype("int64").to_numpy()
    parsed["produced_at"] = pd.to_datetime(chunk["timestamp"], utc=True)
    parsed["raw_size_bytes"] = np.array([0 if v is None else len(v) for v in values], dtype="int32")
    raw = pd.Series([None] * len(chunk), dtype="object")
    if rejected.any():
        raw[rejected] = chunk["value"][rejected].map(_raw_text).to_numpy()
    parsed["raw_value"] = raw.to_numpy()
    return parsed
