"""The online feature store's Redis calls (features.online.FeatureStore): one script call reads
every user of a batch and one writes them, packed by the store itself; a script Redis does not
hold yet (a restarted server) is loaded through redis-py and the call still answers; a user with
more events in one batch than one ZADD takes (chunked in the script) keeps all of them; a replay
adds nothing. Real Redis (the feature store instance), own key prefix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.online import append_events, online_user_features

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _events(n: int, users: int, start: str = "2026-11-01") -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "transaction_id": [f"T{i:06d}" for i in range(n)],
        "user_id": [f"U{i % users}" for i in range(n)],
        "amount": rng.uniform(0, 500, n).round(2),
        "currency": "EUR", "merchant": [f"shop\x1e{i % 7}" for i in range(n)], "merchant_id": None,
        "merchant_category": "grocery",
        "transaction_time": pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 86_400 * 3, n)), unit="s"),
        "country": "FR", "transaction_type": "purchase", "channel": "pos",
        "device_id": [None if i % 3 else f"D{i % 5}" for i in range(n)],
    })


def test_a_user_with_thousands_of_events_in_one_batch_keeps_them_all(store):
    events = _events(2_600, users=2)
    append_events(store, events)
    stored = [store.client.zcard(store.user_key(u)) for u in ("U0", "U1")]
    assert stored == [1_300, 1_300]
    append_events(store, events)  # a replay adds nothing
    assert [store.client.zcard(store.user_key(u)) for u in ("U0", "U1")] == stored
    later = _events(10, users=2, start="2026-11-05").assign(transaction_id=lambda f: "L" + f["transaction_id"])
    features = online_user_features(store, later)
    assert (features["user_txn_count_7d"].to_numpy() >= 1_300).all()


def test_a_script_redis_does_not_hold_is_loaded_and_the_call_answers(store):
    events = _events(300, users=40)
    expected = online_user_features(store, events.tail(100))
    append_events(store, events.head(200))
    store._read.sha = store._write.sha = "0" * 40  # as after a Redis restart: unknown to the server
    before = online_user_features(store, events.tail(100))
    assert store._read.sha != "0" * 40  # loaded by redis-py
    append_events(store, events.tail(100))
    assert store._write.sha != "0" * 40
    assert sum(store.client.zcard(store.user_key(f"U{u}")) for u in range(40)) == 300
    assert not before.equals(expected)  # the 200 earlier events were read
    pd.testing.assert_frame_equal(online_user_features(store, events.tail(100)), before)  # replay: same features


def test_a_field_holding_the_store_separator_neither_breaks_the_store_nor_the_features(store):
    from features.batch import user_features

    events = _events(60, users=3)
    events["merchant"] = [f"shop\x1f{i % 4}" for i in range(60)]  # the contract accepts it
    events["transaction_id"] = [f"T\x1f{i:04d}" for i in range(60)]
    events["device_id"] = [f"D\x1f{i % 2}" for i in range(60)]
    for part in (events.iloc[:20], events.iloc[20:40], events.iloc[40:]):  # three batches
        online = online_user_features(store, part)
        append_events(store, part)
    history = store.history(np.array(["U0"], dtype=object), np.array([0]), np.array([2**62]))[1]
    assert set(history["merchant"]) <= set(events["merchant"]) and set(history["device"]) <= set(events["device_id"])
    assert set(history["transaction_id"]) <= set(events["transaction_id"])
    expected = user_features(events).loc[part.index]
    np.testing.assert_allclose(online[expected.columns].to_numpy("float64"), expected.to_numpy("float64"), rtol=1e-9)
