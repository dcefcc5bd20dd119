"""The scoring job's ONE pandas pass per micro-batch: Kafka records in, every sink written.

Per task of a micro-batch (Spark mapInPandas, in a Python worker that Spark reuses), all of its
Kafka records at once:
  1. parse and validate with THE message contract; rejected rows are split off here;
  2. per-user features as of each event from the online feature store (features.online, only the
     users of the chunk are read), stateless features, merchant features from the snapshot the
     driver broadcasts;
  3. score with the served registry pyfunc (loaded once per worker; the driver's registry poll
     decides the version and passes it in). :func:`score_rows` is where a challenger's shadow
     score and per-alert reasons go;
  4. write the chunk's events to the feature store (idempotent), then PostgreSQL in ONE
     transaction (transactions, fraud_alerts, quarantine and, while a challenger exists, its
     shadow_scores: one COPY each, ON CONFLICT DO NOTHING semantics, see streaming.sinks),
     then Redis alerts and the Kafka alerts topic;
  5. yield one statistics row (rows, alerts, Redis misses, quarantined, latencies, quarantine reasons).
Every event of a user in a micro-batch is in one task (streaming.batch_handlers lays the batch
out so), which the as-of features need.

Connections (PostgreSQL, both Redis instances, the Kafka producer) and the model are cached per
Python worker, keyed by their targets: a micro-batch opens nothing when the worker is warm.
A failure raises: the micro-batch fails and the query restarts from its checkpoint; replays
change nothing (idempotent store and sinks, features from strictly earlier events only).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.definition import FEATURE_COLUMNS
from features.online import FeatureStore, FeatureStoreTarget
from features.stream import remember_events, stream_features
from features.user_state import event_arrays
from fraudops.contract.messages import REJECT_REASON_COLUMN, TRANSACTION_COLUMNS
from fraudops.contract.tables import (
    DECISION_ROW_COLUMNS,
    QUARANTINE_INSERT_COLUMNS,
    SHADOW_SCORE_INSERT_COLUMNS,
)
from fraudops.jsonutil import strict_dumps
from fraudops.modeling.explain import alert_reasons_json
from fraudops.modeling.registry import ServedModel
from streaming.sinks import (
    SinkTargets,
    as_utc,
    copy_upsert,
    pg_connect,
    publish_alerts,
    push_alerts_to_redis,
    write_scored_chunk,
)
from streaming.validation import validate_kafka_chunk

_log = logging.getLogger("streaming.scoring_pass")
KAFKA_COLUMNS = ["value", "topic", "partition", "offset", "timestamp"]
BATCH_STATS_DDL = ("rows long, alerts long, redis_missed long, quarantined long, latencies array<double>, "
                   "quarantine_reasons string")


@dataclass(frozen=True)
class PassInputs:
    """What one micro-batch's pass needs, decided on the driver; small and picklable."""

    targets: SinkTargets
    store: FeatureStoreTarget
    served: ServedModel
    tracking_uri: str
    merchant_risk: object = None  # a Broadcast of a merchant_risk_snapshot DataFrame, or None
    challenger: ServedModel | None = None  # scored in shadow (never alerts) when set
    decisions_topic: str | None = None  # records of this topic are decided transactions (decisions/)
    rules_reload_seconds: float = 5.0  # how often a worker checks for published rules and lists (rules/)


# ---------------------------------------------------------------- per-worker caches

_MODELS: dict[str, object] = {}
_MODELS_KEPT = 3  # the served version, the one before it (a switch in flight), the challenger
_CONNECTIONS: dict[tuple, object] = {}


def worker_model(served: ServedModel, tracking_uri: str):
    """The pyfunc of the served version (pinned URI), loaded once per Python worker."""
    model = _MODELS.get(served.model_uri)
    if model is None:
        import mlflow
        import mlflow.pyfunc

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        model = mlflow.pyfunc.load_model(served.model_uri)
        while len(_MODELS) >= _MODELS_KEPT:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[served.model_uri] = model
    return model


def _cached(key: tuple, factory):
    conn = _CONNECTIONS.get(key)
    if conn is None:
        conn = _CONNECTIONS[key] = factory()
    return conn


def _drop_pg(targets: SinkTargets) -> None:
    conn = _CONNECTIONS.pop(("pg", targets.postgres_dsn, targets.pg_schema), None)
    if conn is not None:
        with contextlib.suppress(Exception):  # a broken connection may fail to close; dropped anyway
            conn.close()


def worker_pg(targets: SinkTargets):
    """This worker's PostgreSQL connection (search_path set), opened on first use."""
    return _cached(("pg", targets.postgres_dsn, targets.pg_schema), lambda: pg_connect(targets))


_RULESETS: dict[tuple, tuple] = {}  # (dsn, schema) -> (RuleSet, monotonic time it was last checked)


def worker_rules(targets: SinkTargets, every_s: float = 5.0):
    """This worker's rules and lists (rules.ruleset.RuleSet), reloaded when rules_revisions
    moved, checked at most every ``every_s``; a PostgreSQL error keeps the last ones."""
    from rules.ruleset import RuleSet, current_revision, load_ruleset

    key = (targets.postgres_dsn, targets.pg_schema)
    ruleset, checked = _RULESETS.get(key, (None, -1e9))
    now = time.monotonic()
    if ruleset is not None and now - checked < every_s:
        return ruleset
    try:
        conn = worker_pg(targets)
        if ruleset is None or current_revision(conn) != ruleset.revision:
            ruleset = load_ruleset(conn)
    except Exception as exc:  # noqa: BLE001 - scoring goes on with the rules it had
        _log.warning("rules not reloaded (%s); keeping revision %s", str(exc).splitlines()[0][:200],
                     ruleset.revision if ruleset is not None else "none")
        _drop_pg(targets)
        ruleset = ruleset if ruleset is not None else RuleSet.empty()
    _RULESETS[key] = (ruleset, now)
    return ruleset


def worker_store(target: FeatureStoreTarget) -> FeatureStore:
    return _cached(("store", target.host, target.port, target.password, target.prefix),
                   lambda: FeatureStore(target.connect(), target.prefix))


def worker_alert_redis(targets: SinkTargets):
    import redis

    return _cached(("redis", targets.redis_host, targets.redis_port, targets.redis_password),
                   lambda: redis.Redis(host=targets.redis_host, port=targets.redis_port,
                                       password=targets.redis_password or None, socket_timeout=5,
                                       socket_connect_timeout=3))


def worker_producer(targets: SinkTargets):
    from confluent_kafka import Producer

    return _cached(("kafka", targets.kafka_brokers),
                   lambda: Producer({"bootstrap.servers": targets.kafka_brokers, "enable.idempotence": True,
                                     "linger.ms": 5, "message.timeout.ms": 30_000}))


# ---------------------------------------------------------------- the steps

def features_json(featured: pd.DataFrame) -> list[str]:
    """The feature vector of each row as strict JSON (NaN and infinities become null).

    The same text as :func:`features_json_reference`, faster: no ``replace`` when no value is
    an infinity (checked on the float columns; object columns must hold only strings and
    missing values, else the reference runs), and one JSON array cut at its row boundaries
    instead of ``lines=True`` (which converts the array to lines in a second pass) and
    ``splitlines``. A row boundary is ``},{"<first column>":``: inside a JSON string a quote is
    always escaped, so that text only occurs between two rows of a flat record.
    """
    frame = featured[FEATURE_COLUMNS]
    if not len(frame) or not _finite_and_plain(frame):
        return features_json_reference(featured)
    text = frame.to_json(orient="records", double_precision=15)
    head = '{"' + FEATURE_COLUMNS[0] + '":'  # the first key: a feature name, no character to escape
    rows = text[1:-1].split("}," + head)
    if len(rows) == 1:
        return [text[1:-1]]
    last = len(rows) - 1
    return [rows[0] + "}", *[head + row + "}" for row in rows[1:last]], head + rows[last]]


def features_json_reference(featured: pd.DataFrame) -> list[str]:
    """The reference of :func:`features_json` (the tests compare the two on hostile frames)."""
    frame = featured[FEATURE_COLUMNS].replace([np.inf, -np.inf], np.nan)
    text = frame.to_json(orient="records", lines=True, double_precision=15)
    return text.splitlines() if text else []


def _finite_and_plain(frame: pd.DataFrame) -> bool:
    """No infinity in a float column; object columns hold only strings and missing values."""
    from pandas.api.types import is_float_dtype, is_integer_dtype

    # the columns grouped by kind from ONE look at the dtypes, each group checked in one array:
    # a column at a time costs ~20 us of pandas per column, what a one-row decision pays 38 times
    floats, objects = [], []
    for name, dtype in frame.dtypes.items():
        if dtype == np.dtype(object):
            objects.append(name)
        elif is_float_dtype(dtype) and not isinstance(dtype, pd.api.extensions.ExtensionDtype):
            floats.append(name)
        elif not (is_integer_dtype(dtype) and not isinstance(dtype, pd.api.extensions.ExtensionDtype)):
            return False
    if floats and np.isinf(frame[floats].to_numpy(dtype="float64")).any():
        return False
    return not objects or _only_strings(frame[objects].to_numpy(dtype=object).ravel())


def _only_strings(values: np.ndarray) -> bool:
    from pandas._libs import lib

    return bool(lib.is_string_array(values, skipna=True))


def score_rows(featured: pd.DataFrame, served: ServedModel, tracking_uri: str, ruleset=None) -> pd.DataFrame:
    """``featured`` plus fraud_score (P(fraud) of the served pyfunc), is_fraud and provenance.

    The place for more per-row model outputs: a challenger's shadow score (never alerting) and
    the top contributing features of each alert both belong here, next to the served score.
    With ``ruleset`` (rules.ruleset.RuleSet) the rules and lists act on the alert as they act on
    a decision (rules.policy: an allow list or allow rule clears it, a block list or a decline /
    review rule raises it) and ``rules_fired`` records what fired.
    """
    model = worker_model(served, tracking_uri)
    score = np.asarray(model.predict(featured[FEATURE_COLUMNS]), dtype="float64")
    alerted = score >= served.threshold
    rules_fired = None
    if ruleset:
        from rules.policy import apply_rules

        final, fired = apply_rules(ruleset, featured, score, np.where(alerted, "review", "approve"))
        alerted = final != "approve"
        rules_fired = [strict_dumps(f, separators=(",", ":")) if f else None for f in fired]
    return featured.assign(
        fraud_score=score, is_fraud=alerted, decision_threshold=served.threshold,
        model_version=served.version, feature_set_version=served.feature_set_version,
        features=features_json(featured),
        reasons=alert_reasons_json(model, featured[FEATURE_COLUMNS], alerted),  # alerted rows only
        rules_fired=rules_fired,
    )


def shadow_rows(featured: pd.DataFrame, challenger: ServedModel, tracking_uri: str) -> pd.DataFrame:
    """The challenger's scores of ``featured`` (columns SHADOW_SCORE_INSERT_COLUMNS but scored_at):
    its own threshold decision as would_alert, which never raises an alert."""
    model = worker_model(challenger, tracking_uri)
    score = np.asarray(model.predict(featured[FEATURE_COLUMNS]), dtype="float64")
    return pd.DataFrame({"transaction_id": featured["transaction_id"].to_numpy(),
                         "model_version": challenger.version, "fraud_score": score,
                         "would_alert": score >= challenger.threshold, "threshold": challenger.threshold})


def _split(records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid rows, first of each transaction_id, with Kafka metadata; rejected rows for quarantine)."""
    parsed = validate_kafka_chunk(records)
    rejected = parsed[REJECT_REASON_COLUMN].notna()
    valid = parsed.loc[~rejected, [*TRANSACTION_COLUMNS, "kafka_partition", "kafka_offset", "produced_at"]]
    valid = valid.drop_duplicates("transaction_id", keep="first").reset_index(drop=True)
    quarantine = parsed.loc[rejected].rename(columns={REJECT_REASON_COLUMN: "reason", "produced_at": "kafka_timestamp"})
    return valid, quarantine


def _write(conn, scored: pd.DataFrame, quarantine: pd.DataFrame, targets: SinkTargets,
           shadow: pd.DataFrame | None = None) -> pd.DataFrame:
    """Transactions, alerts, shadow scores and quarantined messages in one PostgreSQL
    transaction; returns the alerts."""
    try:
        if len(quarantine):
            with conn.cursor() as cur:
                copy_upsert(cur, "quarantine", quarantine, QUARANTINE_INSERT_COLUMNS,
                            "(kafka_topic, kafka_partition, kafka_offset) DO NOTHING")
        if len(scored):
            if shadow is not None and len(shadow):
                with conn.cursor() as cur:
                    copy_upsert(cur, "shadow_scores", shadow, SHADOW_SCORE_INSERT_COLUMNS,
                                "(transaction_id, model_version) DO NOTHING")
            alerts, _ = write_scored_chunk(conn, scored, targets)  # commits
            return alerts
        conn.commit()
        return scored.iloc[:0]
    except Exception:
        _drop_pg(targets)
        raise



def _decided_split(records: pd.DataFrame, inputs: PassInputs) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame,
                                                                      pd.DataFrame]:
    """(raw transactions' records; decided rows ready to write; degraded decided rows to score,
    with their decision columns; rejected decided records for quarantine) of a task's records.

    A decided record (the decisions topic) carries the service's score, features and decision:
    it is recorded as decided, never scored again. A degraded one (the service could not score)
    is scored here like any transaction and keeps the service's decision beside the score.
    """
    if inputs.decisions_topic is None or not len(records):
        empty = records.iloc[:0]
        return records, empty, empty, empty
    mine = (records["topic"] == inputs.decisions_topic).to_numpy()
    if not mine.any():
        empty = records.iloc[:0]
        return records, empty, empty, empty
    return (records.loc[~mine].reset_index(drop=True), *decided_rows(records.loc[mine].reset_index(drop=True)))


def decided_rows(records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Records of the decisions topic -> (decided rows as the sinks take them, degraded rows
    with decision columns, quarantine rows), through THE message contract and THE decided contract."""
    from fraudops.contract.decisions import DECIDED_COLUMNS, parse_decision

    parsed = validate_kafka_chunk(records)
    decisions = [parse_decision(None if v is None else bytes(v)) for v in records["value"].tolist()]
    reasons = parsed[REJECT_REASON_COLUMN].to_numpy(object).copy()
    for i, (_, reason) in enumerate(decisions):
        if reasons[i] is None and reason is not None:
            reasons[i] = reason
            parsed.loc[i, "raw_value"] = _raw_value(records["value"].iloc[i])
    parsed[REJECT_REASON_COLUMN] = reasons
    rejected = pd.notna(reasons)
    quarantine = parsed.loc[rejected].rename(columns={REJECT_REASON_COLUMN: "reason", "produced_at": "kafka_timestamp"})
    keep = np.flatnonzero(~rejected)
    rows = parsed.iloc[keep][[*TRANSACTION_COLUMNS, "kafka_partition", "kafka_offset", "produced_at"]].reset_index(drop=True)
    decided = pd.DataFrame([decisions[i][0] for i in keep], columns=list(DECIDED_COLUMNS))
    rows = pd.concat([rows, decided], axis=1).drop_duplicates("transaction_id", keep="first").reset_index(drop=True)
    rows["decided_at"] = pd.to_datetime(rows["decided_at"], utc=True, format="ISO8601")
    rows["decision_degraded"] = rows["degraded"].astype(object)
    degraded = rows["degraded"].astype(bool).to_numpy()
    scored = rows.loc[~degraded].assign(
        is_fraud=lambda f: (f["decision"] != "approve").to_numpy(), decision_threshold=lambda f: f["review_threshold"],
        scored_at=lambda f: f["decided_at"], fraud_score=lambda f: f["fraud_score"].astype("float64"))
    keep_degraded = [*TRANSACTION_COLUMNS, "kafka_partition", "kafka_offset", "produced_at", *DECISION_ROW_COLUMNS]
    return scored.reset_index(drop=True), rows.loc[degraded, keep_degraded].reset_index(drop=True), quarantine


def _raw_value(value):
    from streaming.validation import _raw_text

    return _raw_text(value)


def process_records(records: pd.DataFrame, inputs: PassInputs) -> dict:
    """Everything for one task's Kafka records of a micro-batch; returns its statistics."""
    records, decided, degraded, bad_decided = _decided_split(records, inputs)
    valid, quarantine = _split(records)
    if len(bad_decided):
        quarantine = pd.concat([quarantine, bad_decided], ignore_index=True)
    if len(decided) or len(degraded):  # a decision stands: the raw copy of a decided transaction is not scored
        taken = pd.Index(pd.concat([decided["transaction_id"], degraded["transaction_id"]]))
        valid = valid.loc[~valid["transaction_id"].isin(taken)]
        valid = pd.concat([valid, degraded], ignore_index=True) if len(degraded) else valid.reset_index(drop=True)
    scored, shadow = valid, None
    if len(valid):
        snapshot = inputs.merchant_risk.value if inputs.merchant_risk is not None else None
        store = worker_store(inputs.store)
        arrays = event_arrays(valid)  # once, for the features and the store write
        featured = stream_features(valid, store, snapshot, arrays)
        scored = score_rows(featured, inputs.served, inputs.tracking_uri,
                            worker_rules(inputs.targets, inputs.rules_reload_seconds))
        scored["scored_at"] = pd.Timestamp.now(tz="UTC")
        if inputs.challenger is not None:
            try:
                shadow = shadow_rows(featured, inputs.challenger, inputs.tracking_uri)
                shadow["scored_at"] = scored["scored_at"].iloc[0]
            except Exception as exc:  # noqa: BLE001 - a broken challenger never stops the champion's scoring
                _log.warning("challenger version %s could not score (%s): no shadow scores for this chunk",
                             inputs.challenger.version, exc)
                shadow = None
        remember_events(store, valid, arrays)
    if len(decided):
        remember_events(worker_store(inputs.store), decided[TRANSACTION_COLUMNS])  # the service did; idempotent
        scored = pd.concat([scored, decided], ignore_index=True) if len(scored) else decided
    alerts = _write(worker_pg(inputs.targets), scored, quarantine, inputs.targets, shadow)
    committed = time.time()
    latencies = np.array([], dtype="float64")
    if len(scored):
        produced = as_utc(scored["produced_at"]).astype("int64").to_numpy() / 1e9
        latencies = committed - produced
    missed = push_alerts_to_redis(alerts, inputs.targets, worker_alert_redis(inputs.targets)) if len(alerts) else 0
    publish_alerts(alerts, inputs.targets, worker_producer(inputs.targets))
    return {"rows": len(scored), "alerts": len(alerts), "redis_missed": missed,
            "quarantined": len(quarantine), "latencies": latencies,
            "quarantine_reasons": json.dumps(reason_counts(quarantine))}


def reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """Quarantined messages per kind of reason (``duplicate_key:amount`` counts as ``duplicate_key``):
    a bounded set, for the job's Prometheus counter."""
    if not len(quarantine):
        return {}
    kinds = quarantine["reason"].astype(str).str.split(":", n=1).str[0]
    return {str(kind): int(count) for kind, count in kinds.value_counts().items()}


def scoring_pass(inputs: PassInputs):
    """The mapInPandas function of a micro-batch (columns KAFKA_COLUMNS in, BATCH_STATS_DDL out)."""

    def run(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # one frame per task: every event of a user in this micro-batch is featured together,
        # whatever its order and Arrow chunk (the task holds all of its users' events)
        frames = [chunk for chunk in chunks if not chunk.empty]
        if frames:
            stats = process_records(pd.concat(frames, ignore_index=True), inputs)
            yield pd.DataFrame({k: [v] for k, v in stats.items()})

    return run


def warm_up(inputs: PassInputs):
    """mapInPandas function of the keep-warm job: the model loaded and the connections open in
    a Python worker, so that the next micro-batch finds them ready (at start, and when idle)."""

    def run(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for _ in chunks:
            pass
        model = worker_model(inputs.served, inputs.tracking_uri)
        if inputs.challenger is not None:
            worker_model(inputs.challenger, inputs.tracking_uri)
        _warm_explainer(model)
        worker_store(inputs.store).client.ping()
        worker_pg(inputs.targets)
        yield pd.DataFrame({"rows": [0]})

    return run


def _warm_explainer(model) -> None:
    """Explain one made-up alert, so that the first real alert of this worker does not pay for
    building the explainer and loading its compiled kernel (numba: 0.8 s measured when cold)."""
    from features.definition import CATEGORICAL_FEATURES

    row = pd.DataFrame({name: ["unknown"] if name in CATEGORICAL_FEATURES else [0.0] for name in FEATURE_COLUMNS})
    alert_reasons_json(model, row, np.array([True]))  # never raises (logs its errors)


def stats_summary(rows: list) -> dict:
    """Totals of the statistics rows a pass yielded (latencies concatenated)."""
    latencies = [np.asarray(r["latencies"], dtype="float64") for r in rows]
    reasons: dict[str, int] = {}
    for row in rows:
        for kind, count in json.loads(row["quarantine_reasons"] or "{}").items():
            reasons[kind] = reasons.get(kind, 0) + count
    return {"rows": sum(r["rows"] for r in rows), "alerts": sum(r["alerts"] for r in rows),
            "redis_missed": sum(r["redis_missed"] for r in rows),
            "quarantined": sum(r["quarantined"] for r in rows),
            "latencies": np.concatenate(latencies) if latencies else np.array([], dtype="float64"),
            "quarantine_reasons": reasons}
