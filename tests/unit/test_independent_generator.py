"""The independent generator: layout, determinism, fraud share, messy delivery, no one-field separation."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fraudops.contract.messages import TRANSACTION_COLUMNS, serialize_message, validate_message
from simulator.independent import INDEPENDENT_COLUMNS, PATTERNS, generate_independent

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_independent(days=30, cards=2000, seed=3)


def test_same_seed_same_frame_other_seed_other_frame():
    first = generate_independent(days=5, cards=300, seed=1)
    pd.testing.assert_frame_equal(first, generate_independent(days=5, cards=300, seed=1))
    other = generate_independent(days=5, cards=300, seed=2)
    assert len(first) != len(other) or not first["amount"].equals(other["amount"])


def test_layout_and_messy_delivery(frame):
    assert list(frame.columns) == INDEPENDENT_COLUMNS
    assert set(TRANSACTION_COLUMNS) <= set(frame.columns)
    assert frame["transaction_time"].dt.tz is None and frame["label_time"].dt.tz is None  # naive = UTC
    assert frame["transaction_time"].is_monotonic_increasing
    assert (frame["label_time"] > frame["transaction_time"]).all()
    assert 0 < frame["transaction_id"].duplicated().sum() < 0.01 * len(frame)
    assert (frame["amount"] == 0).sum() > 100  # zero-amount verifications, genuine and card testing
    assert 0 < (frame["amount"] < 0).sum() < 0.005 * len(frame)  # refunds: invalid rows to drop
    assert set(frame["fraud_pattern"]) == set(PATTERNS)


def test_clean_delivery_is_valid_messages_with_aware_times():
    clean = generate_independent(days=3, cards=200, seed=4, messy=False)
    assert str(clean["transaction_time"].dt.tz) == "UTC" and clean["transaction_id"].is_unique
    now = datetime(2030, 1, 1, tzinfo=UTC)
    reasons = {validate_message(serialize_message(r), now=now)[1] for r in clean.to_dict("records")}
    assert reasons == {None}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fraud_share_is_realistic(seed):
    share = generate_independent(days=30, cards=2000, seed=seed)["is_fraud"].mean()
    assert 0.003 < share < 0.015


def test_fast_enough_for_tests(frame):
    assert 100_000 < len(frame) < 200_000  # ~30 days x 2,000 cards (timing goals live in bench)


def _one_field_auc(frame: pd.DataFrame, column: str) -> float:
    if column in ("amount", "hour"):
        values = frame["amount"] if column == "amount" else frame["transaction_time"].dt.hour
        auc = roc_auc_score(frame["is_fraud"], values)
        return max(auc, 1 - auc)
    # in-sample target encoding: the best a rule on this one field can do
    encoded = frame.groupby(column, dropna=False)["is_fraud"].transform("mean")
    return roc_auc_score(frame["is_fraud"], encoded)


@pytest.mark.parametrize(
    "column", ["amount", "hour", "merchant_category", "country", "channel", "transaction_type"]
)
def test_no_single_raw_field_separates_fraud(frame, column):
    assert _one_field_auc(frame, column) < 0.85


def test_fraud_concentrates_at_compromised_merchants_for_a_while(frame):
    compromised = frame[frame["fraud_pattern"] == "merchant_compromise"]
    per_merchant = compromised.groupby("merchant")["transaction_time"].agg(["min", "max", "size"])
    assert (per_merchant["size"] >= 5).sum() >= 3
    assert (per_merchant["max"] - per_merchant["min"]).max() > pd.Timedelta(days=7)


def test_card_testing_precedes_a_burst_on_the_same_card(frame):
    testing = frame[frame["fraud_pattern"] == "card_testing"]
    assert (testing["amount"] < 3).all()
    bursts = frame[frame["fraud_pattern"] == "card_burst"].groupby("user_id")["transaction_time"].min()
    followed = testing.groupby("user_id")["transaction_time"].max().reindex(bursts.index).dropna()
    assert len(followed) > 5 and (followed <= bursts.loc[followed.index]).mean() > 0.9


def test_argument_errors_are_named():
    with pytest.raises(ValueError, match="days"):
        generate_independent(days=0)
    with pytest.raises(ValueError, match="cards"):
        generate_independent(cards=np.int64(3))
