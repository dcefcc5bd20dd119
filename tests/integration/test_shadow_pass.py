"""Shadow scoring in the scoring pass (issue 15), in process: streaming.scoring_pass.process_records
with and without a challenger, on the real registry, PostgreSQL, the feature store, Redis and Kafka.

* with a challenger, every transaction gets one shadow_scores row of the challenger's version
  (its own threshold decision in would_alert), written in the transactions' PostgreSQL
  transaction; a replay of the same records duplicates nothing;
* the challenger never alerts: the alerts are exactly the champion's;
* a challenger that cannot score (here: a version that cannot load) costs its shadow rows only:
  the champion's transactions and alerts are written as without a challenger.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from fraudops.contract.messages import serialize_message
from tests import streaming_support as support

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(settings):
    from fraudops.modeling.registry import resolve_served_model

    name = f"fraud-detector-shadow-pass-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, support.small_history(days=3, customers=60, seed=4), threshold=0.2)
    return resolve_served_model(f"models:/{name}/1")


@pytest.fixture
def namespace(pg_conn, settings, unique_name, tmp_path):
    ns = support.make_namespace(pg_conn, settings, unique_name, tmp_path, partitions=1)
    yield ns
    support.drop_namespace(pg_conn, ns)


def records_of(history: pd.DataFrame, topic: str, first_offset: int = 0) -> pd.DataFrame:
    values = [serialize_message(r) for r in history.to_dict("records")]
    return pd.DataFrame({"value": values, "topic": topic, "partition": np.int32(0),
                         "offset": np.arange(first_offset, first_offset + len(values), dtype="int64"),
                         "timestamp": pd.Timestamp(datetime.now(UTC)).tz_localize(None)})


def inputs_for(settings, ns, served, challenger=None):
    from streaming.scoring_job import JobOptions, feature_store_target, sink_targets
    from streaming.scoring_pass import PassInputs

    options = JobOptions(checkpoint_dir=ns.checkpoint_dir, pg_schema=ns.pg_schema, redis_prefix=ns.redis_prefix,
                         alerts_topic=ns.alerts_topic)
    return PassInputs(sink_targets(settings, options), feature_store_target(settings, options), served,
                      settings.mlflow_tracking_uri, challenger=challenger)


def rows(pg_conn, ns, sql: str) -> list[tuple]:
    with pg_conn.cursor() as cur:
        cur.execute(sql.replace("{s}", f'"{ns.pg_schema}"'))
        found = cur.fetchall()
    pg_conn.rollback()
    return found


def test_shadow_rows_for_every_transaction_never_alerting_idempotent(settings, pg_conn, namespace, served):
    from streaming.scoring_pass import process_records

    ns = namespace
    history = support.small_history(days=3, customers=60, seed=8).sort_values("transaction_time").head(400)
    # the challenger: the same pyfunc under another version number, a much lower threshold
    challenger = dataclasses.replace(served, version="77", threshold=0.0)
    inputs = inputs_for(settings, ns, served, challenger)
    records = records_of(history, ns.topic)

    stats = process_records(records, inputs)
    assert stats["rows"] == 400
    assert rows(pg_conn, ns, "SELECT model_version, count(*), bool_and(would_alert) FROM {s}.shadow_scores "
                             "GROUP BY 1") == [("77", 400, True)]
    # the shadow score is the same pyfunc's score: equal to the champion's, row by row
    assert rows(pg_conn, ns, """SELECT count(*) FROM {s}.transactions t JOIN {s}.shadow_scores s
                                USING (transaction_id) WHERE abs(t.fraud_score - s.fraud_score) < 1e-12""") == [(400,)]
    # alerts: the champion's decisions only (threshold 0.2), not the challenger's (all 400)
    champion_alerts = rows(pg_conn, ns, "SELECT count(*) FROM {s}.transactions WHERE is_fraud")[0][0]
    assert rows(pg_conn, ns, "SELECT count(*), count(DISTINCT model_version) FROM {s}.fraud_alerts") == \
        [(champion_alerts, 1 if champion_alerts else 0)]
    assert champion_alerts == stats["alerts"] < 400

    # a replay of the same records (a micro-batch retried after a crash) duplicates nothing
    process_records(records, inputs)
    assert rows(pg_conn, ns, "SELECT count(*) FROM {s}.shadow_scores") == [(400,)]
    assert rows(pg_conn, ns, "SELECT count(*) FROM {s}.transactions") == [(400,)]


def test_a_challenger_that_cannot_score_never_stops_the_champion(settings, pg_conn, namespace, served):
    from streaming.scoring_pass import process_records

    ns = namespace
    history = support.small_history(days=3, customers=60, seed=9).sort_values("transaction_time").head(200)
    broken = dataclasses.replace(served, version="404", model_uri=f"models:/{served.name}/404")
    stats = process_records(records_of(history, ns.topic), inputs_for(settings, ns, served, broken))
    assert stats["rows"] == 200
    assert rows(pg_conn, ns, "SELECT model_version, count(*) FROM {s}.transactions GROUP BY 1") == [("1", 200)]
    assert rows(pg_conn, ns, "SELECT count(*) FROM {s}.shadow_scores") == [(0,)]
