"""The message contract: accepted messages, one specific reason per rejection, serializer."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudops.contract.messages import (
    COUNTRIES,
    CURRENCIES,
    MAX_MESSAGE_BYTES,
    MAX_STRING_LENGTH,
    OPTIONAL_FIELDS,
    REJECT_REASON_COLUMN,
    REJECTION_CODES,
    REQUIRED_FIELDS,
    TRANSACTION_COLUMNS,
    TRANSACTION_TYPES,
    serialize_label,
    serialize_message,
    validate_label_message,
    validate_message,
    validate_messages_frame,
    validate_record,
)
from simulator.generator import seed_scenario_messages

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def valid_message(**changes) -> dict:
    message = {
        "transaction_id": "TXN_1717200000000_1234",
        "user_id": "USER_0042",
        "amount": 52.47,
        "currency": "USD",
        "merchant": "Walmart",
        "merchant_id": "MER_00001",
        "merchant_category": "grocery",
        "transaction_time": "2025-05-31T14:32:00.512034",
        "country": "US",
        "transaction_type": "purchase",
        "channel": "pos",
        "device_id": "DEV_abc",
    }
    message.update(changes)
    return message


def raw(message: dict) -> bytes:
    return json.dumps(message).encode()


def without(field: str) -> bytes:
    message = valid_message()
    message.pop(field)
    return raw(message)


def test_columns_are_required_plus_optional_in_contract_order():
    assert set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS) == set(TRANSACTION_COLUMNS)
    assert TRANSACTION_COLUMNS == [
        "transaction_id", "user_id", "amount", "currency", "merchant", "merchant_id", "merchant_category",
        "transaction_time", "country", "transaction_type", "channel", "device_id",
    ]
    assert TRANSACTION_TYPES == ("purchase", "withdrawal", "transfer", "payment")


def test_code_sets_are_iso_and_accept_the_seeds_values():
    assert {"USD", "EUR", "GBP", "JPY", "CHF"} <= CURRENCIES and "XXX" not in CURRENCIES
    assert {"US", "GB", "FR", "DE", "CN", "RU", "UK"} <= COUNTRIES  # the seed sends "UK"
    assert len(COUNTRIES) == 249 + 1 and all(len(c) == 2 and c.isupper() for c in COUNTRIES)
    assert all(len(c) == 3 and c.isupper() for c in CURRENCIES)


def test_valid_message_is_normalized():
    record, reason = validate_message(raw(valid_message(merchant="  Walmart  ")), now=NOW)
    assert reason is None
    assert list(record) == TRANSACTION_COLUMNS
    assert record["merchant"] == "Walmart"
    assert record["transaction_time"] == datetime(2025, 5, 31, 14, 32, 0, 512034, tzinfo=UTC)
    assert record["transaction_time"].tzinfo is UTC


def test_offset_timestamps_are_converted_to_utc_and_z_is_accepted():
    record, _ = validate_message(raw(valid_message(transaction_time="2025-05-31T10:00:00+02:00")), now=NOW)
    assert record["transaction_time"] == datetime(2025, 5, 31, 8, 0, tzinfo=UTC)
    record, _ = validate_message(raw(valid_message(transaction_time="2025-05-31T10:00:00Z")), now=NOW)
    assert record["transaction_time"] == datetime(2025, 5, 31, 10, 0, tzinfo=UTC)


def test_optional_fields_may_be_absent_null_or_blank():
    message = valid_message(channel=None, device_id="")
    del message["merchant_id"], message["merchant_category"]
    record, reason = validate_message(raw(message), now=NOW)
    assert reason is None
    assert record["merchant_id"] is None and record["channel"] is None and record["device_id"] is None


def test_seed_producer_messages_are_accepted_as_they_are_and_the_label_is_dropped():
    for message in seed_scenario_messages():
        assert "is_fraud_actual" in message and isinstance(message["transaction_time"], str)
        assert "+" not in message["transaction_time"] and not message["transaction_time"].endswith("Z")  # naive
        record, reason = validate_message(json.dumps(message))
        assert reason is None, reason
        assert "is_fraud_actual" not in record
        assert record["amount"] == message["amount"]


def test_a_message_built_like_the_seeds_generate_transaction_is_accepted():
    seed_like = {
        "transaction_id": "TXN_1732818000000_5821", "user_id": "USER_0317", "amount": 123.45, "currency": "GBP",
        "merchant": "Suspicious Shop", "transaction_time": datetime(2025, 5, 1, 3, 4, 5, 678901).isoformat(),
        "country": "UK", "transaction_type": "transfer", "is_fraud_actual": True,
    }
    record, reason = validate_message(json.dumps(seed_like).encode("utf-8"), now=NOW)
    assert reason is None and record["country"] == "UK"


BAD_CASES = [
    pytest.param(b"this is not json", "not_json", id="not-json"),
    pytest.param(b"{\"amount\": 1", "not_json", id="truncated-json"),
    pytest.param(b"[1, 2, 3]", "not_an_object", id="array"),
    pytest.param(b"\"just a string\"", "not_an_object", id="string"),
    pytest.param(None, "empty_message", id="null-value"),
    pytest.param(b"   ", "empty_message", id="blank-value"),
    pytest.param(b"\xff\xfe{}", "not_utf8", id="not-utf8"),
    pytest.param(b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "oversized_message", id="oversized-message"),
    pytest.param(without("amount"), "missing_field:amount", id="missing-amount"),
    pytest.param(without("transaction_id"), "missing_field:transaction_id", id="missing-id"),
    pytest.param(raw(valid_message(user_id=None)), "missing_field:user_id", id="null-user"),
    pytest.param(raw(valid_message(amount=math.nan)), "non_finite:amount", id="nan"),
    pytest.param(raw(valid_message(amount=math.inf)), "non_finite:amount", id="infinity"),
    pytest.param(raw(valid_message(amount=-math.inf)), "non_finite:amount", id="minus-infinity"),
    pytest.param(raw(valid_message(amount=-12.5)), "negative:amount", id="negative-amount"),
    pytest.param(raw(valid_message(amount=-0.01)), "negative:amount", id="slightly-negative-amount"),
    pytest.param(raw(valid_message(amount=5e7)), "absurd_value:amount", id="absurd-amount"),
    pytest.param(raw(valid_message(amount="52.47")), "wrong_type:amount", id="amount-as-string"),
    pytest.param(raw(valid_message(amount=True)), "wrong_type:amount", id="amount-as-bool"),
    pytest.param(raw(valid_message(transaction_id=12345)), "wrong_type:transaction_id", id="id-as-number"),
    pytest.param(raw(valid_message(transaction_time=1717200000)), "wrong_type:transaction_time", id="epoch-time"),
    pytest.param(raw(valid_message(transaction_time="yesterday at noon")), "unparseable_time", id="unparseable-time"),
    pytest.param(raw(valid_message(transaction_time="2025-13-45T99:00:00")), "unparseable_time", id="impossible-date"),
    pytest.param(raw(valid_message(transaction_time="9999-12-31T23:59:59")), "time_out_of_range", id="far-future"),
    pytest.param(raw(valid_message(transaction_time="1970-01-01T00:00:00")), "time_out_of_range", id="too-old"),
    pytest.param(raw(valid_message(currency="XYZ")), "unknown_currency:XYZ", id="currency"),
    pytest.param(raw(valid_message(country="ZZ")), "unknown_country:ZZ", id="country"),
    pytest.param(raw(valid_message(transaction_type="refund")), "bad_transaction_type:refund", id="type"),
    pytest.param(raw(valid_message(merchant="M" * (MAX_STRING_LENGTH + 1))), "oversized_field:merchant", id="long-merchant"),
    pytest.param(raw(valid_message(device_id="D" * 1000)), "oversized_field:device_id", id="long-optional"),
    pytest.param(raw(valid_message(user_id="   ")), "empty_field:user_id", id="blank-user"),
    pytest.param(raw(valid_message(merchant=["a"])), "wrong_type:merchant", id="merchant-as-list"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_CASES)
def test_each_bad_message_is_rejected_with_its_own_reason(value, reason):
    record, got = validate_message(value, now=NOW)
    assert record is None
    assert got == reason
    assert got.split(":")[0] in {code.split(":")[0] for code in REJECTION_CODES}


def test_future_bound_follows_now():
    message = raw(valid_message(transaction_time="2025-06-01T20:00:00"))
    assert validate_message(message, now=NOW)[1] is None  # within a day ahead
    assert validate_message(message, now=NOW - timedelta(days=2))[1] == "time_out_of_range"


def test_str_input_and_bytes_input_agree():
    message = json.dumps(valid_message())
    assert validate_message(message, now=NOW) == validate_message(message.encode(), now=NOW)


def test_validate_record_takes_a_decoded_dict():
    record, reason = validate_record(valid_message(amount=7), now=NOW)
    assert reason is None and record["amount"] == 7.0 and isinstance(record["amount"], float)
    assert validate_record(["not", "a", "dict"]) == (None, "not_an_object")


def test_serializer_round_trips_and_writes_only_contract_fields():
    record, _ = validate_message(raw(valid_message()), now=NOW)
    payload = serialize_message({**record, "is_fraud": 1, "fraud_scenario": "card_testing"})
    decoded = json.loads(payload)
    assert set(decoded) == set(TRANSACTION_COLUMNS)
    assert decoded["transaction_time"] == "2025-05-31T14:32:00.512034Z"
    assert validate_message(payload, now=NOW) == (record, None)


def test_serializer_equals_json_dumps_and_omits_missing_optionals():
    record = {"transaction_id": "T\"1\u00e9", "user_id": "U", "amount": 1e-05, "currency": "EUR", "merchant": "Caf\u00e9 \\ 1",
              "transaction_time": datetime(2025, 1, 1, 12, 0, tzinfo=UTC), "country": "FR", "transaction_type": "payment"}
    expected = {**record, "transaction_time": "2025-01-01T12:00:00Z"}
    assert serialize_message(record) == json.dumps(expected, separators=(",", ":")).encode()


def test_serializer_names_a_missing_required_field():
    with pytest.raises(KeyError, match="amount"):
        serialize_message({k: v for k, v in valid_message().items() if k != "amount"})


def test_label_serializer_checks_the_source():
    payload = serialize_label({"transaction_id": "TXN_1", "is_fraud": 1, "source": "chargeback",
                               "labeled_at": datetime(2025, 1, 2, tzinfo=UTC)})
    assert json.loads(payload) == {"transaction_id": "TXN_1", "is_fraud": 1, "source": "chargeback",
                                   "labeled_at": "2025-01-02T00:00:00Z"}
    with pytest.raises(ValueError, match="source"):
        serialize_label({"transaction_id": "TXN_1", "is_fraud": 1, "source": "gossip", "labeled_at": "x"})


def test_frame_validation_keeps_order_and_reasons():
    values = [raw(valid_message()), b"nope", None, raw(valid_message(amount=-1))]
    frame = validate_messages_frame(values, now=NOW)
    assert list(frame.columns) == [*TRANSACTION_COLUMNS, REJECT_REASON_COLUMN]
    assert frame[REJECT_REASON_COLUMN].tolist() == [None, "not_json", "empty_message", "negative:amount"]
    assert str(frame["transaction_time"].dtype) == "datetime64[us, UTC]"
    assert frame.loc[0, "amount"] == 52.47 and frame.loc[1, "transaction_id"] is None


# --- property tests -------------------------------------------------------------------------------
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=200)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
FIELD_NAMES = st.sampled_from([*TRANSACTION_COLUMNS, "is_fraud_actual", "extra"])


def assert_exactly_one(result) -> None:
    record, reason = result
    assert (record is None) != (reason is None)
    if reason is not None:
        assert isinstance(reason, str) and reason
    else:
        assert list(record) == TRANSACTION_COLUMNS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400) | st.none())
def test_validator_never_raises_on_arbitrary_input(value):
    assert_exactly_one(validate_message(value, now=NOW))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=14))
def test_validator_never_raises_on_arbitrary_objects(obj):
    assert_exactly_one(validate_message(json.dumps(obj), now=NOW))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TRANSACTION_COLUMNS), JSON_VALUES)
def test_validator_never_raises_when_one_field_of_a_valid_message_changes(name, value):
    result = validate_message(json.dumps(valid_message(**{name: value})), now=NOW)
    assert_exactly_one(result)
    record, _ = result
    if record is not None:  # whatever is accepted is serializable and accepted again
        assert validate_message(serialize_message(record), now=NOW) == (record, None)


# --- zero amounts, duplicate keys, labels (issue 13) -------------------------------------------
def test_zero_amount_verifications_are_valid_transactions():
    record, reason = validate_message(raw(valid_message(amount=0)), now=NOW)
    assert reason is None and record["amount"] == 0.0
    record, reason = validate_message(raw(valid_message(amount=-0.0)), now=NOW)
    assert reason is None and record["amount"] == 0.0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b'{"transaction_id": "T1", "amount": 10, "amount": 99999}', "duplicate_key:amount", id="top-level"),
        pytest.param(b'{"a": {"k": 1, "k": 2}, "transaction_id": "T1"}', "duplicate_key:k", id="nested-object"),
        pytest.param(b'{"a": [{"x": 1}, {"y": 1, "y": 1}]}', "duplicate_key:y", id="object-in-array-same-value"),
        pytest.param(b'{"amount": 1, "\\u0061mount": 2}', "duplicate_key:amount", id="escaped-spelling"),
    ],
)
def test_a_duplicate_key_anywhere_rejects_the_message(payload, reason):
    assert validate_message(payload, now=NOW) == (None, reason)


def test_duplicate_key_of_a_whole_valid_message_is_named():
    text = raw(valid_message()).decode()
    doubled = text[:-1] + ', "currency": "EUR"}'
    assert validate_message(doubled, now=NOW) == (None, "duplicate_key:currency")
    frame = validate_messages_frame([doubled.encode()], now=NOW)
    assert frame[REJECT_REASON_COLUMN].tolist() == ["duplicate_key:currency"]
    assert "duplicate_key" in REJECTION_CODES and "negative" in REJECTION_CODES


def test_label_messages_share_the_duplicate_key_rule_and_their_checks():
    good = serialize_label({"transaction_id": "TXN_1", "is_fraud": 1, "source": "chargeback",
                            "labeled_at": datetime(2025, 1, 2, tzinfo=UTC)})
    label, reason = validate_label_message(good)
    assert reason is None
    assert label == {"transaction_id": "TXN_1", "is_fraud": True, "source": "chargeback",
                     "labeled_at": datetime(2025, 1, 2, tzinfo=UTC)}
    naive, _ = validate_label_message(b'{"transaction_id": "T", "is_fraud": false, "labeled_at": "2025-01-02T03:00:00"}')
    assert naive["labeled_at"] == datetime(2025, 1, 2, 3, tzinfo=UTC) and naive["source"] == "chargeback"
    cases = {
        b'{"transaction_id": "T", "is_fraud": 0, "is_fraud": 1}': "duplicate_key:is_fraud",
        b"nope": "label:not_json",
        b"\xff": "label:not_json",
        None: "label:not_json",
        b"[1]": "label:not_an_object",
        b'{"transaction_id": "", "is_fraud": 1}': "label:bad_transaction_id",
        b'{"transaction_id": "T", "is_fraud": 2}': "label:bad_is_fraud",
        b'{"transaction_id": "T", "is_fraud": "1"}': "label:bad_is_fraud",
        b'{"transaction_id": "T", "is_fraud": 1, "source": "gossip"}': "label:bad_source:gossip",
        b'{"transaction_id": "T", "is_fraud": 1, "labeled_at": "soon"}': "label:unparseable_labeled_at",
    }
    for payload, expected in cases.items():
        assert validate_label_message(payload) == (None, expected), payload


def test_the_streaming_label_parser_delegates_to_the_contract():
    from streaming.batch_handlers import _parse_label

    payload = b'{"transaction_id": "T", "is_fraud": 0, "is_fraud": 1}'
    assert _parse_label(payload) == validate_label_message(payload) == (None, "duplicate_key:is_fraud")
