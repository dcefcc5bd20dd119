"""Property-based tests (hypothesis) of the message validator, fraudops.contract.messages.validate_message.

tests/unit/test_schema.py already checks, example by example, one reason per bad message, and,
as properties, that the validator never raises and that an accepted record re-serializes to
itself. This file adds the properties those do not cover:

* every message built inside the contract is accepted, normalized as documented;
* fields outside the contract, key order and JSON whitespace never change the verdict;
* every reason is a documented code, and a single broken field is named in its reason;
* whatever is accepted satisfies the storage invariants (what PostgreSQL and Arrow can hold);
* the vectorized frame validator agrees with the scalar one, row by row.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudops.contract.messages import (
    COUNTRIES,
    CURRENCIES,
    MAX_AMOUNT,
    MAX_FUTURE_SKEW,
    MAX_MESSAGE_BYTES,
    MAX_STRING_LENGTH,
    MIN_TRANSACTION_TIME,
    OPTIONAL_FIELDS,
    REJECT_REASON_COLUMN,
    REJECTION_CODES,
    REQUIRED_FIELDS,
    TRANSACTION_COLUMNS,
    TRANSACTION_TYPES,
    validate_message,
    validate_messages_frame,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, tzinfo=UTC)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELD_CODES = {"missing_field", "wrong_type", "empty_field", "oversized_field", "non_finite", "negative",
               "absurd_value"}

# ---------------------------------------------------------------- strategies

# free text as a producer may send it: any unicode a JSON encoder can carry, without surrounding
# whitespace (the validator strips it) and within the length limit
free_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                    min_size=1, max_size=MAX_STRING_LENGTH).map(str.strip).filter(bool)
amounts = st.floats(min_value=0.0, max_value=MAX_AMOUNT, exclude_min=True, allow_nan=False) | st.integers(1, int(MAX_AMOUNT))
times = st.datetimes(min_value=MIN_TRANSACTION_TIME.replace(tzinfo=None),
                     max_value=(NOW + MAX_FUTURE_SKEW).replace(tzinfo=None) - timedelta(seconds=1))
offsets = st.sampled_from([None, timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)])


@st.composite
def time_texts(draw) -> tuple[str, datetime]:
    """(ISO-8601 text, the UTC instant it means): naive = UTC, or with an offset."""
    instant = draw(times).replace(tzinfo=UTC)
    offset = draw(offsets)
    if offset is None:
        return instant.replace(tzinfo=None).isoformat(), instant
    local = instant.astimezone(timezone(offset))
    return local.isoformat(), instant


@st.composite
def valid_messages(draw) -> tuple[dict, datetime]:
    """A message inside the contract (optional fields present or not) and its UTC time."""
    text, instant = draw(time_texts())
    message = {
        "transaction_id": draw(free_text), "user_id": draw(free_text), "amount": draw(amounts),
        "currency": draw(st.sampled_from(sorted(CURRENCIES))), "merchant": draw(free_text),
        "transaction_time": text, "country": draw(st.sampled_from(sorted(COUNTRIES))),
        "transaction_type": draw(st.sampled_from(TRANSACTION_TYPES)),
    }
    for name in OPTIONAL_FIELDS:
        if draw(st.booleans()):
            message[name] = draw(free_text)
    return message, instant


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
extra_fields = st.dictionaries(st.text(max_size=12).filter(lambda k: k not in TRANSACTION_COLUMNS), json_values,
                               max_size=4)

# values that break a field of a given kind, with the reason code they must produce
BREAKERS = {
    "string": st.sampled_from([(None, "missing_field"), (12, "wrong_type"), (True, "wrong_type"), ([], "wrong_type"),
                               ("   ", "empty_field"), ("x" * (MAX_STRING_LENGTH + 1), "oversized_field")]),
    "amount": st.sampled_from([(None, "missing_field"), ("12.5", "wrong_type"), (False, "wrong_type"),
                               (-0.01, "negative"), (-5, "negative"), (MAX_AMOUNT * 1.5, "absurd_value"),
                               (10 ** 400, "absurd_value")]),
}


def dumps(message: dict, **kwargs) -> bytes:
    return json.dumps(message, ensure_ascii=False, **kwargs).encode("utf-8")


def code_of(reason: str) -> str:
    return reason.split(":", 1)[0]


# ---------------------------------------------------------------- properties

@PROPERTY_SETTINGS
@given(valid_messages())
def test_every_message_inside_the_contract_is_accepted_and_normalized(case):
    message, instant = case
    record, reason = validate_message(dumps(message), now=NOW)
    assert reason is None, (reason, message)
    assert list(record) == TRANSACTION_COLUMNS
    assert record["transaction_time"] == instant and record["transaction_time"].tzinfo is not None
    assert record["amount"] == float(message["amount"]) and isinstance(record["amount"], float)
    for name in TRANSACTION_COLUMNS:
        if name not in ("amount", "transaction_time"):
            assert record[name] == message.get(name), name


@PROPERTY_SETTINGS
@given(st.one_of(valid_messages().map(lambda c: c[0]), st.dictionaries(st.sampled_from(TRANSACTION_COLUMNS),
                                                                        json_values)), extra_fields)
def test_fields_outside_the_contract_never_change_the_verdict(message, extra):
    assert validate_message(dumps({**extra, **message}), now=NOW) == validate_message(dumps(message), now=NOW)


@PROPERTY_SETTINGS
@given(valid_messages().map(lambda c: c[0]), st.randoms(use_true_random=False), st.sampled_from([None, 2, 0]))
def test_key_order_and_json_whitespace_never_change_the_verdict(message, rnd, indent):
    keys = list(message)
    rnd.shuffle(keys)
    shuffled = {key: message[key] for key in keys}
    expected = validate_message(dumps(message), now=NOW)
    assert validate_message(dumps(shuffled, indent=indent), now=NOW) == expected
    assert validate_message(b"  \n" + dumps(shuffled, separators=(",", ":")) + b"\t ", now=NOW) == expected


@PROPERTY_SETTINGS
@given(st.one_of(st.binary(max_size=300), st.dictionaries(st.sampled_from([*TRANSACTION_COLUMNS, "x"]),
                                                          json_values, max_size=14).map(dumps)))
def test_every_reason_is_a_documented_code_naming_a_contract_field(value):
    record, reason = validate_message(value, now=NOW)
    if reason is None:
        return
    documented = {code_of(code) for code in REJECTION_CODES} | {"wrong_type"}
    assert code_of(reason) in documented, reason
    if code_of(reason) in FIELD_CODES and ":" in reason:
        assert reason.split(":", 1)[1] in TRANSACTION_COLUMNS, reason


@PROPERTY_SETTINGS
# times have their own codes (unparseable_time, time_out_of_range), checked in test_schema.py
@given(valid_messages().map(lambda c: c[0]), st.sampled_from([f for f in REQUIRED_FIELDS if f != "transaction_time"]),
       st.data())
def test_one_broken_required_field_is_named_in_the_reason(message, name, data):
    kind = "amount" if name == "amount" else "string"
    value, code = data.draw(BREAKERS[kind])
    broken = {**message, name: value}
    _, reason = validate_message(dumps(broken), now=NOW)
    assert reason == f"{code}:{name}", (reason, name, value)


@PROPERTY_SETTINGS
@given(st.one_of(valid_messages().map(lambda c: dumps(c[0])), st.binary(max_size=200)), st.integers(1, 64))
def test_anything_longer_than_the_limit_is_oversized_whatever_it_holds(value, excess):
    padded = value + b" " * (MAX_MESSAGE_BYTES - len(value) + excess)  # even a valid message
    assert validate_message(padded, now=NOW) == (None, "oversized_message")
    assert validate_message(padded.decode("utf-8", "replace"), now=NOW) == (None, "oversized_message")


@PROPERTY_SETTINGS
@given(st.lists(st.one_of(valid_messages().map(lambda c: dumps(c[0])), st.binary(max_size=60), st.none()),
                max_size=12))
def test_the_frame_validator_agrees_with_the_scalar_one_row_by_row(values):
    frame = validate_messages_frame(values, now=NOW)
    assert len(frame) == len(values)
    for row, value in zip(frame.to_dict("records"), values, strict=True):
        record, reason = validate_message(value, now=NOW)
        assert row[REJECT_REASON_COLUMN] == reason
        if record is not None:
            assert row["transaction_id"] == record["transaction_id"] and row["amount"] == record["amount"]
            assert row["transaction_time"].to_pydatetime() == record["transaction_time"]


def storable(record: dict) -> bool:
    """What the sinks need of an accepted record: finite positive amount within bounds, known
    codes, and strings that UTF-8 can encode and PostgreSQL text can hold (no NUL)."""
    strings = [v for v in record.values() if isinstance(v, str)]
    return (math.isfinite(record["amount"]) and 0 < record["amount"] <= MAX_AMOUNT
            and record["currency"] in CURRENCIES and record["country"] in COUNTRIES
            and all(0 < len(s) <= MAX_STRING_LENGTH and s == s.strip() for s in strings)
            and all("\x00" not in s for s in strings) and all(_utf8(s) for s in strings))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@PROPERTY_SETTINGS
@given(valid_messages().map(lambda c: c[0]), st.sampled_from(["merchant", "user_id", "device_id"]),
       st.text(max_size=8), st.sampled_from(["\x00", "\ud800", "\udfff"]) | st.characters(blacklist_categories=()))
def test_whatever_is_accepted_can_be_stored(message, name, text, character):
    """Any one character (control, surrogate, emoji, quote...) anywhere in a free-text field."""
    raw = json.dumps({**message, name: f"x{text}{character}x"})  # ASCII JSON: \\u escapes, lone surrogates too
    record, reason = validate_message(raw.encode(), now=NOW)
    if reason is None:
        assert storable(record), record
