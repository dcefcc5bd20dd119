"""The merchant snapshot counted in PostgreSQL (streaming.merchant_risk.read_snapshot: base counts
aggregated there, upcoming events from a few minutes of rows) equals the snapshot built from every
row of the window (read_snapshot_reference: features.merchant.merchant_snapshot), on hostile data:
transactions on every window boundary (to the microsecond), several labels per transaction (fraud
then legitimate, legitimate then fraud, equal times), labels known inside and after the snapshot's
validity, merchants without merchant_id. Real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from features.merchant import COUNT_EVENT_COLUMNS, WINDOW_MICROS, snapshot_merchant_features
from fraudops.contract.messages import TRANSACTION_COLUMNS
from simulator.generator import generate_history
from streaming.merchant_risk import read_snapshot, read_snapshot_reference
from tests.monitoring_support import create_schema, drop_schema, insert_rows, schema_targets

pytestmark = pytest.mark.integration

DELAY = pd.Timedelta(hours=1)
VALID_FOR = pd.Timedelta(minutes=2)
US = pd.Timedelta(microseconds=1)


@pytest.fixture
def schema(pg_conn, unique_name):
    name = create_schema(pg_conn, f"merchant_sql_{unique_name}")
    yield name
    drop_schema(pg_conn, name)



def boundary_times(e: pd.Timestamp) -> list[pd.Timestamp]:
    """Times on and next to every edge the snapshot has: e, e + valid_for, each e - W and
    e - W + valid_for, one microsecond either side, and inside each range."""
    edges = [e, e + VALID_FOR]
    for width in WINDOW_MICROS:
        w = pd.Timedelta(microseconds=int(width))
        edges += [e - w, e - w + VALID_FOR]
    return [t + d for t in edges for d in (-US, pd.Timedelta(0), US, pd.Timedelta(seconds=30))]


def hostile_window(as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transactions, labels): 34 days of simulated history plus transactions on every edge."""
    e = as_of - DELAY
    past = generate_history(days=34, customers=40, fraud_ratio=0.05, seed=11,
                            start=(as_of - pd.Timedelta(days=34)).to_pydatetime())
    past = past[TRANSACTION_COLUMNS + ["is_fraud"]].copy()
    past["transaction_time"] = pd.to_datetime(past["transaction_time"], utc=True)
    merchants = past.drop_duplicates("merchant").head(6)
    edges = boundary_times(e)
    planted = pd.concat([merchants.assign(transaction_time=t) for t in edges], ignore_index=True)
    planted["transaction_id"] = [f"EDGE-{i}" for i in range(len(planted))]
    planted["is_fraud"] = np.arange(len(planted)) % 3 == 0
    frame = pd.concat([past, planted], ignore_index=True)
    frame.loc[frame.index[::9], "merchant_id"] = None  # keyed by name
    frame = frame[frame["transaction_time"] <= as_of].reset_index(drop=True)

    rng = np.random.default_rng(5)
    fraud = frame[frame["is_fraud"].astype(bool)]
    chargeback = pd.DataFrame({"transaction_id": fraud["transaction_id"], "is_fraud": True, "source": "chargeback",
                               "labeled_at": fraud["transaction_time"] + pd.to_timedelta(
                                   rng.uniform(0, 5 * 86_400, len(fraud)), unit="s")})
    # an analyst's verdict on some: later legitimate, earlier legitimate, the same instant, or
    # known inside / after the snapshot's validity
    some = frame[~frame["transaction_id"].isin(chargeback["transaction_id"])].sample(frac=0.3, random_state=3)
    labeled_at = some["transaction_time"] + pd.to_timedelta(rng.uniform(0, 3 * 86_400, len(some)), unit="s")
    analyst = pd.DataFrame({"transaction_id": some["transaction_id"], "is_fraud": rng.random(len(some)) < 0.5,
                            "source": "analyst", "labeled_at": labeled_at})
    recent = analyst.index[::7]
    analyst.loc[recent, "labeled_at"] = [e + pd.Timedelta(seconds=float(s)) for s in rng.uniform(-60, 200, len(recent))]
    # on chargebacks: legitimate at the same instant (the fraud label wins the tie), later, earlier
    recent_fraud = chargeback[chargeback["labeled_at"] < e - pd.Timedelta(days=1)].tail(30)
    verdicts = pd.DataFrame({"transaction_id": recent_fraud["transaction_id"], "is_fraud": False,
                             "source": "analyst", "labeled_at": recent_fraud["labeled_at"]})
    shift = np.resize([0.0, 3_600.0, -3_600.0], len(verdicts))
    verdicts["labeled_at"] = verdicts["labeled_at"] + pd.to_timedelta(shift, unit="s")
    analyst = pd.concat([analyst, verdicts], ignore_index=True)
    picked = frame["transaction_id"].iloc[::11]
    imported = pd.DataFrame({"transaction_id": picked, "is_fraud": True, "source": "import",
                             "labeled_at": [e + pd.Timedelta(seconds=float(s))
                                            for s in rng.uniform(-100, 150, len(picked))]})
    labels = pd.concat([chargeback, analyst, imported], ignore_index=True)
    labels["labeled_at"] = pd.to_datetime(labels["labeled_at"], utc=True).dt.floor("us")
    return frame, labels


def sorted_events(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[COUNT_EVENT_COLUMNS].sort_values(COUNT_EVENT_COLUMNS).reset_index(drop=True)


def test_the_snapshot_counted_in_postgresql_equals_the_one_from_every_row(settings, pg_conn, schema):
    as_of = pd.Timestamp(datetime.now(UTC)).floor("s")
    transactions, labels = hostile_window(as_of)
    rows = transactions[TRANSACTION_COLUMNS].assign(scored_at=transactions["transaction_time"])
    insert_rows(pg_conn, schema, "transactions", rows)
    insert_rows(pg_conn, schema, "labels", labels)
    where = schema_targets(settings, schema)

    seen = []
    for when in (as_of, as_of + pd.Timedelta(seconds=45), as_of - pd.Timedelta(days=2, microseconds=3)):
        actual = read_snapshot(where, when, DELAY, VALID_FOR)
        expected = read_snapshot_reference(where, when, DELAY, VALID_FOR)
        assert (actual.as_of_us, actual.label_delay_us, actual.start_us, actual.end_us) == (
            expected.as_of_us, expected.label_delay_us, expected.start_us, expected.end_us)
        at_start = expected.events["time_us"] == expected.start_us
        # the base rows: the same counts, in the same order (merchant, counter)
        pd.testing.assert_frame_equal(actual.events.iloc[: int(at_start.sum())].reset_index(drop=True),
                                      expected.events[at_start].reset_index(drop=True))
        pd.testing.assert_frame_equal(sorted_events(actual.events), sorted_events(expected.events))

        # and the features the stream reads from them, at every merchant across the validity
        keys = transactions.drop_duplicates(["merchant", "merchant_id"])[["merchant", "merchant_id"]]
        probe = keys.assign(transaction_id=[f"P{i}" for i in range(len(keys))], user_id="u", amount=1.0,
                            currency="EUR", country="FR", transaction_type="purchase",
                            transaction_time=when + pd.to_timedelta(
                                np.linspace(0, VALID_FOR.total_seconds(), len(keys)), unit="s"))
        np.testing.assert_array_equal(snapshot_merchant_features(probe, actual).to_numpy("float64"),
                                      snapshot_merchant_features(probe, expected).to_numpy("float64"))

        seen.append(expected)
    first = seen[0].events  # not vacuous: fraud counters and upcoming events are there
    assert (first["counter"] >= 3).any() and (first["time_us"] > seen[0].start_us).sum() > 20


def test_an_empty_window_gives_an_empty_snapshot(settings, schema):
    snapshot = read_snapshot(schema_targets(settings, schema), pd.Timestamp.now(tz="UTC"), DELAY, VALID_FOR)
    assert len(snapshot) == 0 and list(snapshot.events.columns) == COUNT_EVENT_COLUMNS
