"""Per-user window features on hand-built sequences with known answers, state round trip, chunking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.definition import NO_PREVIOUS_SECONDS, SEEN_HORIZON_SECONDS
from features.user_state import USER_FEATURES
from tests.feature_oracle import MAX_SEEN_ITEMS, UserState, user_window_features

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def events(rows: list[dict]) -> pd.DataFrame:
    """Raw events of user u1; each row gives minutes after T0 and overrides of the defaults."""
    base = {
        "user_id": "u1",
        "amount": 10.0,
        "currency": "USD",
        "merchant": "Shop",
        "merchant_id": None,
        "country": "US",
        "transaction_type": "purchase",
        "device_id": "dev-1",
    }
    records = []
    for i, row in enumerate(rows):
        record = {**base, "transaction_id": f"t{i:03d}", **row}
        record["transaction_time"] = T0 + pd.Timedelta(minutes=record.pop("minutes"))
        records.append(record)
    return pd.DataFrame(records)


def features_of(rows: list[dict]) -> pd.DataFrame:
    feats, _ = user_window_features(None, events(rows))
    return feats


def test_first_transaction_has_no_history():
    f = features_of([{"minutes": 0, "amount": 42.0}]).iloc[0]
    assert f["user_txn_count_30d"] == 0 and f["user_amount_sum_1h"] == 0 and f["user_amount_mean_24h"] == 0
    assert f["user_seconds_since_prev"] == NO_PREVIOUS_SECONDS
    assert f["user_amount_ratio_30d"] == 1.0
    assert (f["user_new_merchant"], f["user_new_country"], f["user_new_device"]) == (1.0, 1.0, 1.0)


def test_windows_count_only_earlier_events_inside_the_window():
    # minutes: 0, 30, 59, 60, 61 + 1 day
    f = features_of(
        [
            {"minutes": 0, "amount": 1.0},
            {"minutes": 30, "amount": 2.0},
            {"minutes": 59, "amount": 4.0},
            {"minutes": 60, "amount": 8.0},
            {"minutes": 60 + 24 * 60, "amount": 16.0},
        ]
    )
    assert f["user_txn_count_1h"].tolist() == [0, 1, 2, 2, 0]  # at 60 min the event at 0 is out (> t - 1h)
    assert f["user_amount_sum_1h"].tolist() == [0, 1, 3, 6, 0]
    assert f["user_txn_count_24h"].tolist() == [0, 1, 2, 3, 0]  # exactly 24 h after minute 60: out
    assert f["user_txn_count_7d"].tolist() == [0, 1, 2, 3, 4]
    assert f["user_amount_sum_30d"].tolist() == [0, 1, 3, 7, 15]
    assert f["user_amount_mean_30d"].iloc[4] == pytest.approx(15 / 4)
    assert f["user_amount_ratio_30d"].iloc[4] == pytest.approx(16 / (15 / 4))
    assert f["user_seconds_since_prev"].tolist() == [NO_PREVIOUS_SECONDS, 1800, 1740, 60, 86400]


def test_no_look_ahead_later_events_do_not_change_earlier_features():
    rows = [{"minutes": m, "amount": float(m + 1)} for m in (0, 10, 20, 30)]
    short = features_of(rows[:2])
    longer = features_of(rows)
    pd.testing.assert_frame_equal(short, longer.iloc[:2])


def test_equal_times_are_ordered_by_transaction_id():
    frame = events([{"minutes": 5, "amount": 3.0}, {"minutes": 5, "amount": 7.0}])
    frame["transaction_id"] = ["b", "a"]
    feats, _ = user_window_features(None, frame)
    # "a" comes first: it sees nothing, "b" sees "a".
    assert feats["user_txn_count_1h"].tolist() == [1, 0]
    assert feats["user_amount_sum_1h"].tolist() == [7.0, 0.0]
    assert feats["user_seconds_since_prev"].tolist() == [0.0, NO_PREVIOUS_SECONDS]


def test_input_order_does_not_matter():
    rows = [
        {"minutes": m, "amount": float(m % 7 + 1), "country": "US" if m % 3 else "FR"}
        for m in range(0, 200, 9)
    ]
    frame = events(rows)
    shuffled = frame.sample(frac=1.0, random_state=3)
    a, _ = user_window_features(None, frame)
    b, _ = user_window_features(None, shuffled)
    pd.testing.assert_frame_equal(a, b.loc[a.index])


def test_tiny_amounts_and_other_countries():
    f = features_of(
        [
            {"minutes": 0, "amount": 1.0, "country": "US"},
            {"minutes": 1, "amount": 4.99, "country": "FR"},
            {"minutes": 2, "amount": 5.0, "country": "US"},
            {"minutes": 3, "amount": 900.0, "country": "US"},
        ]
    )
    assert f["user_tiny_count_1h"].tolist() == [0, 1, 2, 2]
    assert f["user_other_country_count_24h"].tolist() == [0, 1, 1, 1]
    assert f["user_new_country"].tolist() == [1, 1, 0, 0]


def test_new_merchant_uses_merchant_id_when_present_and_forgets_after_horizon():
    horizon_minutes = SEEN_HORIZON_SECONDS // 60
    f = features_of(
        [
            {"minutes": 0, "merchant": "Walmart", "merchant_id": "M1"},
            {"minutes": 1, "merchant": "WALMART #42", "merchant_id": "M1"},  # renamed, same id
            {"minutes": 2, "merchant": "Corner shop"},  # no id: the name identifies it
            {"minutes": 3, "merchant": "Corner shop"},
            {"minutes": 3 + horizon_minutes, "merchant": "Corner shop"},  # exactly the horizon: still known
            {"minutes": 4 + 2 * horizon_minutes, "merchant": "Corner shop"},  # longer: new again
        ]
    )
    assert f["user_new_merchant"].tolist() == [1, 0, 1, 0, 0, 1]


def test_missing_device_is_never_new():
    f = features_of([{"minutes": 0, "device_id": None}, {"minutes": 1, "device_id": "d9"}, {"minutes": 2}])
    assert f["user_new_device"].tolist() == [0, 1, 1]


def test_state_round_trips_through_a_record():
    _, state = user_window_features(None, events([{"minutes": m} for m in (0, 5, 50)]))
    record = state.to_record()
    assert all(isinstance(part, list) for part in record)
    again = UserState.from_record(record)
    assert again.to_record() == record
    empty = UserState.from_record(UserState().to_record())
    assert empty.is_empty()


def test_state_keeps_only_the_longest_window_and_the_horizon():
    day = 24 * 60
    _, state = user_window_features(
        None,
        events(
            [
                {"minutes": 0, "merchant": "Old", "country": "DE"},
                {"minutes": 40 * day, "merchant": "Mid"},
                {"minutes": 100 * day, "merchant": "New"},
            ]
        ),
    )
    assert state.transaction_id.tolist() == ["t002"]  # only the last 30 days of events
    assert sorted(state.seen_items["merchant"]) == ["Mid", "New"]  # "Old" is beyond 90 days
    assert sorted(state.seen_items["country"]) == ["US"]


def test_seen_items_are_bounded():
    rows = [{"minutes": i, "merchant": f"m{i:04d}"} for i in range(MAX_SEEN_ITEMS + 10)]
    _, state = user_window_features(None, events(rows))
    assert len(state.seen_items["merchant"]) == MAX_SEEN_ITEMS
    assert "m0000" not in set(state.seen_items["merchant"])  # least recently seen dropped first


@pytest.mark.parametrize("chunk_size", [1, 2, 5])
def test_one_at_a_time_equals_all_at_once(chunk_size):
    rng = np.random.default_rng(7)
    minutes = np.sort(rng.integers(0, 60 * 24 * 45, 40))
    rows = [
        {
            "minutes": int(m),
            "amount": float(rng.choice([1.0, 3.5, 20.0, 75.0, 600.0])),
            "merchant": str(rng.choice(["A", "B", "C"])),
            "country": str(rng.choice(["US", "US", "FR"])),
            "device_id": rng.choice(["d1", "d2", None]),
        }
        for m in minutes
    ]
    rows[5]["minutes"] = rows[4]["minutes"]  # a tie, split across chunks when chunk_size == 1
    frame = events(rows)
    all_at_once, final_state = user_window_features(None, frame)
    state, parts = None, []
    for start in range(0, len(frame), chunk_size):
        part, state = user_window_features(state, frame.iloc[start : start + chunk_size])
        state = UserState.from_record(state.to_record())  # as through the state store
        parts.append(part)
    chunked = pd.concat(parts)
    np.testing.assert_allclose(
        chunked[USER_FEATURES].to_numpy(), all_at_once[USER_FEATURES].to_numpy(), rtol=1e-12
    )
    assert state.to_record() == final_state.to_record()


def test_missing_time_is_a_named_error():
    frame = events([{"minutes": 0}])
    frame.loc[0, "transaction_time"] = None
    with pytest.raises(ValueError, match="transaction_time"):
        user_window_features(None, frame)


def test_events_of_several_users_are_rejected():
    frame = events([{"minutes": 0}, {"minutes": 1}])
    frame.loc[1, "user_id"] = "u2"
    with pytest.raises(ValueError, match="one user"):
        user_window_features(None, frame)
