"""The simulator: determinism, layout, scenarios and labels, fraud rate, realism, one generator for both modes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from fraudops.contract.messages import TRANSACTION_COLUMNS, serialize_message, validate_message
from simulator.generator import (
    FRAUD_SCENARIOS,
    HISTORY_COLUMNS,
    LiveSimulator,
    build_world,
    customers_for_rate,
    generate_history,
    scenario_summary,
    seed_scenario_messages,
)

pytestmark = pytest.mark.unit

START = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """A month of 1000 customers at the default fraud ratio (shared by the read-only tests)."""
    return generate_history(30, 1000, seed=11, start=START)


def test_same_seed_gives_the_same_data_and_another_seed_does_not():
    first = generate_history(3, 200, fraud_ratio=0.02, seed=5, start=START)
    again = generate_history(3, 200, fraud_ratio=0.02, seed=5, start=START)
    other = generate_history(3, 200, fraud_ratio=0.02, seed=6, start=START)
    pd.testing.assert_frame_equal(first, again)
    assert not first.drop(columns="transaction_id").equals(other.drop(columns="transaction_id"))


def test_layout_types_and_order(history):
    assert list(history.columns) == HISTORY_COLUMNS
    assert str(history["transaction_time"].dtype) == "datetime64[ns, UTC]"
    assert str(history["label_time"].dtype) == "datetime64[ns, UTC]"
    assert history["is_fraud"].dtype == np.int8
    assert history["transaction_time"].is_monotonic_increasing
    assert history["transaction_id"].is_unique
    assert history["transaction_id"].str.startswith("TXN_").all()
    assert history["user_id"].str.startswith("USER_").all()
    assert history["transaction_time"].min() >= START
    assert history["transaction_time"].max() < START + timedelta(days=30)
    assert (history["label_time"] > history["transaction_time"]).all()


def test_every_row_is_a_valid_message(history):
    now = START + timedelta(days=30)
    sample = history.sample(2000, random_state=0)
    reasons = {validate_message(serialize_message(row), now=now)[1] for row in sample.to_dict("records")}
    assert reasons == {None}


def test_every_scenario_appears_with_its_label(history):
    present = set(history["fraud_scenario"])
    assert present == {"none", *FRAUD_SCENARIOS}
    assert (history["is_fraud"] == (history["fraud_scenario"] != "none")).all()
    summary = scenario_summary(history)
    assert (summary.loc[list(FRAUD_SCENARIOS), "rows"] >= 20).all(), summary


@pytest.mark.parametrize("ratio", [0.008, 0.03])
def test_fraud_rate_is_within_tolerance(ratio):
    frame = generate_history(30, 1000, fraud_ratio=ratio, seed=3, start=START)
    assert frame["is_fraud"].mean() == pytest.approx(ratio, rel=0.25)


def test_zero_fraud_ratio_gives_no_fraud():
    assert generate_history(2, 300, fraud_ratio=0.0, seed=1, start=START)["is_fraud"].sum() == 0


def test_fraud_labels_arrive_days_later_and_genuine_ones_later_still(history):
    delay_days = (history["label_time"] - history["transaction_time"]).dt.total_seconds() / 86_400
    fraud = history["is_fraud"] == 1
    assert delay_days[fraud].min() >= 1.0 and delay_days[fraud].median() < 15
    assert delay_days[~fraud].min() >= 30.0


def test_no_single_raw_field_separates_fraud(history):
    genuine, fraud = history[history["is_fraud"] == 0], history[history["is_fraud"] == 1]
    home = history.groupby("user_id")["country"].agg(lambda s: s.mode().iloc[0])

    def shares(frame: pd.DataFrame) -> dict[str, float]:
        return {
            "night": (frame["transaction_time"].dt.hour < 6).mean(),
            "abroad": (frame["country"] != frame["user_id"].map(home)).mean(),
            "large": (frame["amount"] > 1000).mean(),
            "risky": frame["merchant_category"].isin(["crypto", "gambling", "money_transfer", "jewelry"]).mean(),
            "no_device": frame["device_id"].isna().mean(),
        }

    genuine_shares, fraud_shares = shares(genuine), shares(fraud)
    for name, value in genuine_shares.items():
        assert value > 0.02, f"genuine customers never look '{name}'"  # thousands of genuine rows each
    for name, value in fraud_shares.items():
        assert value < 0.9, f"fraud is almost always '{name}'"
    # and genuine rows outnumber fraud rows even inside each suspicious slice
    for name in ("night", "abroad", "large", "risky"):
        assert genuine_shares[name] * len(genuine) > fraud_shares[name] * len(fraud), name


def test_card_testing_is_a_burst_of_tiny_amounts_then_a_large_one(history):
    testing = history[history["fraud_scenario"] == "card_testing"]
    assert (testing["amount"] < 5).mean() > 0.5
    assert (testing["amount"] > 100).any()
    first_user = testing["user_id"].iloc[0]
    times = testing.loc[testing["user_id"] == first_user, "transaction_time"]
    assert (times.diff().dropna() < pd.Timedelta(hours=12)).all()


def test_live_mode_is_the_history_generator():
    days = 2
    history = generate_history(days, 300, fraud_ratio=0.02, seed=9, start=START)
    live = LiveSimulator(seed=9, fraud_ratio=0.02, customers=300, start=START, label_delay=timedelta(0))
    events = [e for e in itertools.islice(iter(live), 3 * len(history)) if e.kind == "transaction"]
    live_rows = pd.DataFrame([{**e.message, "fraud_scenario": e.fraud_scenario} for e in events])
    live_rows = live_rows[live_rows["transaction_time"] < START + timedelta(days=days)].reset_index(drop=True)
    expected = history.drop(columns=["transaction_id", "is_fraud", "label_time"]).reset_index(drop=True)
    got = live_rows.drop(columns="transaction_id")[expected.columns]
    got["transaction_time"] = pd.to_datetime(got["transaction_time"], utc=True).astype(expected["transaction_time"].dtype)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_live_stream_is_time_ordered_with_delayed_chargebacks():
    delay = timedelta(minutes=5)
    live = LiveSimulator(seed=4, fraud_ratio=0.05, customers=500, start=START + timedelta(hours=13), label_delay=delay)
    events = list(itertools.islice(iter(live), 3000))
    times = [e.event_time for e in events]
    assert times == sorted(times) and times[0] >= live.start
    transactions = {e.message["transaction_id"]: e for e in events if e.kind == "transaction"}
    labels = [e for e in events if e.kind == "label"]
    assert labels, "no chargeback within 3000 events at a 5% fraud rate"
    for label in labels:
        origin = transactions[label.key]
        assert label.message["source"] == "chargeback" and label.message["is_fraud"] == 1
        assert origin.is_fraud == 1 and origin.fraud_scenario in FRAUD_SCENARIOS
        assert label.event_time == origin.event_time + delay
    for event in transactions.values():
        assert list(event.message) == TRANSACTION_COLUMNS  # no ground truth inside the message
        assert event.key == event.message["user_id"]


def test_live_genuine_labels_are_optional():
    live = LiveSimulator(seed=4, fraud_ratio=0.0, customers=200, start=START, label_delay=timedelta(0), genuine_labels=True)
    events = list(itertools.islice(iter(live), 200))
    sources = {e.message["source"] for e in events if e.kind == "label"}
    assert sources == {"simulator"}


def test_seed_scenarios_are_a_daytime_home_purchase_and_a_night_abroad_high_value_fraud():
    normal, fraud = seed_scenario_messages()
    assert normal["is_fraud_actual"] is False and fraud["is_fraud_actual"] is True
    normal_time, fraud_time = (datetime.fromisoformat(m["transaction_time"]) for m in (normal, fraud))
    assert 8 <= normal_time.hour <= 18 and normal["country"] == "US" and 20 <= normal["amount"] <= 100
    assert fraud_time.hour < 6 and fraud["country"] != normal["country"] and fraud["amount"] >= 1000
    assert normal_time.tzinfo is None and fraud_time.tzinfo is None  # the seed's naive UTC format


def test_world_is_deterministic_and_customers_have_profiles():
    world, again = build_world(3, 500), build_world(3, 500)
    assert np.array_equal(world.home, again.home) and np.array_equal(world.usual_merchants, again.usual_merchants)
    assert world.user_id[0] == "USER_0001" and len(world.user_id) == 500
    assert (world.merchant_country[world.usual_merchants] == world.home[:, None]).all()


def test_customers_for_rate_is_bounded():
    assert customers_for_rate(0) == 2000
    assert customers_for_rate(0.5) == 17_280
    assert customers_for_rate(1000) == 50_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"days": 0}, "days"), ({"customers": 0}, "customers"), ({"fraud_ratio": 0.7}, "fraud_ratio"), ({"days": 1.5}, "days")],
)
def test_bad_arguments_are_named(kwargs, message):
    arguments = {"days": 1, "customers": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_history(**arguments)
