"""The frame validator (fraudops.contract.messages.validate_messages_frame) checks a batch a column
at a time and sends every row in doubt to the scalar validator: whatever the batch holds, each row
must come out exactly as validate_message makes it (verdict, reason, and every normalized field),
whichever other rows share its batch."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudops.contract.messages import (
    FIELD_SPECS,
    REJECT_REASON_COLUMN,
    TRANSACTION_COLUMNS,
    records_frame,
    validate_message,
    validate_messages_frame,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, tzinfo=UTC)

GOOD = {"transaction_id": "TXN_1", "user_id": "USER_1", "amount": 52.35, "currency": "USD", "merchant": "Walmart",
        "merchant_id": "M1", "merchant_category": "grocery", "transaction_time": "2025-01-15T14:30:00",
        "country": "US", "transaction_type": "purchase", "channel": "pos", "device_id": "D1"}

odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 2_000_000), st.integers(10**300, 10**301),
    st.floats(allow_nan=True, allow_infinity=True), st.just(""), st.just("   "), st.just(" USD "),
    st.just("a\x00b"), st.just("\ud800x"), st.just("x" * 129), st.just(" " + "y" * 128 + " "), st.just("UK"),
    st.just("purchase"), st.just("2025-01-15T14:30:00+05:30"), st.just("2025-02-30T00:00:00"),
    st.just("1999-12-31T23:59:59Z"), st.just("2030-01-01T00:00:00"), st.just("9999-12-31T23:59:59-14:00"),
    st.just("20250115T143000"), st.just("shop\x1fname"), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.just("k"), st.integers(), max_size=1), st.text(max_size=8),
)


@st.composite
def messages(draw):
    """A Kafka value: mostly a good message with a few fields replaced, dropped or doubled."""
    kind = draw(st.sampled_from(["object"] * 8 + ["raw", "none", "text"]))
    if kind == "none":
        return None
    if kind == "raw":
        return draw(st.binary(max_size=40))
    if kind == "text":
        return draw(st.text(max_size=40))
    obj = dict(GOOD, transaction_id=f"TXN_{draw(st.integers(0, 10**6))}")
    for name in draw(st.lists(st.sampled_from([s.name for s in FIELD_SPECS]), max_size=3)):
        if draw(st.booleans()):
            obj[name] = draw(odd_values)
        else:
            obj.pop(name, None)
    if draw(st.booleans()):
        obj["is_fraud_actual"] = draw(st.booleans())
    text = json.dumps(obj, allow_nan=True)
    if draw(st.integers(0, 9)) == 0:  # a duplicated key
        text = text[:-1] + ', "amount": 1}'
    if draw(st.integers(0, 9)) == 0:
        text = " \n" + text + "\t"
    return text.encode("utf-8", "surrogatepass")


def _same(a, b) -> bool:
    if a is None or b is None:
        return (a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NaT) and \
               (b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NaT)
    if isinstance(a, pd.Timestamp):
        a = a.to_pydatetime()
    return a == b and type(a) is type(b) or (isinstance(a, float) and a == b)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), max_size=10))
def test_each_row_of_a_batch_is_what_the_scalar_validator_makes_of_it(values):
    frame = validate_messages_frame(values, now=NOW)
    assert list(frame.columns) == [*TRANSACTION_COLUMNS, REJECT_REASON_COLUMN]
    assert len(frame) == len(values)
    assert str(frame["transaction_time"].dtype) == "datetime64[us, UTC]"
    for row, value in zip(frame.to_dict("records"), values, strict=True):
        record, reason = validate_message(value, now=NOW)
        assert row[REJECT_REASON_COLUMN] == reason
        if record is None:
            assert all(_same(row[name], None) for name in TRANSACTION_COLUMNS)
        else:
            for name in TRANSACTION_COLUMNS:
                assert _same(row[name], record[name]), (name, row[name], record[name])


def test_a_batch_of_good_messages_is_checked_without_the_scalar_path():
    values = [json.dumps(dict(GOOD, transaction_id=f"T{i}", merchant_id=None if i % 2 else "M",
                              channel="  " if i % 3 else "web")).encode() for i in range(50)]
    frame = validate_messages_frame(values, now=NOW)
    assert frame[REJECT_REASON_COLUMN].isna().all()
    assert frame["merchant_id"].isna().sum() == 25 and frame["channel"].isna().sum() == 33
    assert (frame["transaction_time"] == pd.Timestamp("2025-01-15T14:30:00Z")).all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), max_size=10))
def test_the_decision_services_frame_of_validated_records_is_the_streams_frame(values):
    """decisions.engine types what its endpoint validated with records_frame: for the messages
    the contract accepts, exactly the frame the streaming job's frame parser gives them (values,
    dtypes, missing values), whatever odd fields they carried."""
    valid = [v for v in values if validate_message(v, now=NOW)[0] is not None]
    records = [validate_message(v, now=NOW)[0] for v in valid]
    frame = records_frame({name: [r[name] for r in records] for name in TRANSACTION_COLUMNS})
    parsed = validate_messages_frame(valid, now=NOW)[TRANSACTION_COLUMNS]
    pd.testing.assert_frame_equal(frame, parsed, check_exact=True)
