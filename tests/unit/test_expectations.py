"""Great Expectations suites: equal to the code that builds them, pass on good data, name planted bad rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from expectations.runner import validate_dataframe
from expectations.suites import (
    FEATURE_SUITE,
    RAW_SUITE,
    SUITE_BUILDERS,
    build_feature_table_suite,
    build_suite,
    stale_suites,
    suite_path,
)
from fraudops.contract.messages import COUNTRIES, CURRENCIES, MAX_AMOUNT, REQUIRED_FIELDS, TRANSACTION_TYPES
from simulator.generator import generate_history

pytestmark = pytest.mark.unit

START = datetime(2025, 3, 1, tzinfo=UTC)
NOW = datetime(2025, 3, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return generate_history(3, 150, fraud_ratio=0.02, seed=21, start=START)


def test_json_on_disk_equals_what_the_code_builds():
    assert stale_suites() == [], "run `python -m expectations.suites` to rewrite the suite files"
    for name in SUITE_BUILDERS:
        assert json.loads(suite_path(name).read_text()) == build_suite(name)


def _expectations(suite: dict, kind: str, column: str) -> list[dict]:
    return [e for e in suite["expectations"] if e["type"] == kind and e["kwargs"].get("column") == column]


def test_raw_suite_is_built_from_the_schema_constants():
    suite = build_suite(RAW_SUITE)
    assert _expectations(suite, "expect_column_values_to_be_in_set", "currency")[0]["kwargs"]["value_set"] == sorted(CURRENCIES)
    assert _expectations(suite, "expect_column_values_to_be_in_set", "country")[0]["kwargs"]["value_set"] == sorted(COUNTRIES)
    types = _expectations(suite, "expect_column_values_to_be_in_set", "transaction_type")[0]["kwargs"]["value_set"]
    assert types == sorted(TRANSACTION_TYPES)
    assert _expectations(suite, "expect_column_values_to_be_between", "amount")[0]["kwargs"]["max_value"] == MAX_AMOUNT
    for name in REQUIRED_FIELDS:
        assert _expectations(suite, "expect_column_values_to_not_be_null", name), name


def test_feature_suite_builder_takes_the_column_lists():
    suite = build_feature_table_suite(["amount", "is_night", "cat_country"], ["amount", "is_night"], ["cat_country"])
    night = _expectations(suite, "expect_column_values_to_be_between", "is_night")[0]["kwargs"]
    assert (night["min_value"], night["max_value"]) == (0, 1)
    assert _expectations(suite, "expect_column_value_lengths_to_be_between", "cat_country")
    assert suite["name"] == FEATURE_SUITE


def test_unknown_suite_is_named():
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        build_suite("nope")
    with pytest.raises(ValueError, match="raw_transactions"):
        validate_dataframe(pd.DataFrame(), "nope")


def test_simulated_history_passes_the_raw_suite(history):
    outcome = validate_dataframe(history, RAW_SUITE, now=NOW)
    assert outcome.success, outcome.report()
    assert outcome.rows == len(history) and outcome.evaluated_expectations > 30


def plant(frame: pd.DataFrame, row: int, **values) -> str:
    for column, value in values.items():
        frame.loc[frame.index[row], column] = value
    return frame["transaction_id"].iloc[row]


def test_planted_violations_are_caught_and_their_rows_named(history):
    bad = history.copy()
    bad["country"] = bad["country"].astype(object)
    planted = {
        ("expect_column_values_to_be_between", "amount"): [plant(bad, 3, amount=-5.0), plant(bad, 4, amount=np.inf)],
        ("expect_column_values_to_not_be_null", "amount"): [plant(bad, 5, amount=np.nan)],
        ("expect_column_values_to_be_in_set", "currency"): [plant(bad, 6, currency="XYZ")],
        ("expect_column_values_to_be_in_set", "country"): [plant(bad, 7, country="ZZ")],
        ("expect_column_values_to_be_in_set", "transaction_type"): [plant(bad, 8, transaction_type="refund")],
        ("expect_column_values_to_not_be_null", "user_id"): [plant(bad, 9, user_id=None)],
        ("expect_column_value_lengths_to_be_between", "merchant"): [plant(bad, 10, merchant="m" * 500)],
        ("expect_column_values_to_be_between", "transaction_time"): [
            plant(bad, 11, transaction_time=pd.Timestamp("2031-01-01", tz="UTC"))],
        ("expect_column_values_to_match_regex", "user_id"): [plant(bad, 12, user_id="   ")],
    }
    duplicate = plant(bad, 14, transaction_id=bad["transaction_id"].iloc[13])
    planted[("expect_column_values_to_be_unique", "transaction_id")] = [duplicate]
    outcome = validate_dataframe(bad, RAW_SUITE, now=NOW)
    assert not outcome.success
    found = {(f.expectation, f.column): f for f in outcome.failures}
    assert set(found) == set(planted), outcome.report()
    for key, ids in planted.items():
        assert set(ids) <= set(found[key].example_ids), (key, found[key])
        assert found[key].unexpected_count >= len(ids)
    assert "transaction_id" in outcome.report() and str(planted[("expect_column_values_to_be_in_set", "currency")][0]) in outcome.report()


def test_text_input_from_csv_is_converted_and_unparseable_values_are_named(history):
    text = history.head(30).astype({"transaction_time": str, "amount": str})
    bad_time = plant(text, 2, transaction_time="not a date")
    bad_amount = plant(text, 3, amount="twelve")
    outcome = validate_dataframe(text, RAW_SUITE, now=NOW)
    parse = {f.column: f for f in outcome.failures if f.expectation == "parseable"}
    assert parse["transaction_time"].example_ids == [bad_time]
    assert parse["amount"].example_ids == [bad_amount]
    clean = validate_dataframe(history.head(30).astype({"transaction_time": str, "amount": str}), RAW_SUITE, now=NOW)
    assert clean.success, clean.report()


def test_caller_frame_is_not_modified(history):
    frame = history.head(20).astype({"transaction_time": str})
    before = frame.copy()
    validate_dataframe(frame, RAW_SUITE, now=NOW)
    pd.testing.assert_frame_equal(frame, before)


def test_feature_table_suite_passes_on_features_and_catches_bad_values(history):
    from features.batch import compute_features

    features = compute_features(history)
    assert validate_dataframe(features, FEATURE_SUITE).success
    broken = features.copy()
    hour_row = plant(broken, 2, hour=30)
    null_row = plant(broken, 3, cat_country=None)
    outcome = validate_dataframe(broken, FEATURE_SUITE)
    found = {(f.expectation, f.column): f.example_ids for f in outcome.failures}
    assert found == {("expect_column_values_to_be_between", "hour"): [hour_row],
                     ("expect_column_values_to_not_be_null", "cat_country"): [null_row]}
