"""fraudops.jsonutil: JSON written to PostgreSQL is strict (NaN and infinities become null)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math

import numpy as np
import pandas as pd
import pytest

from fraudops.jsonutil import strict_dumps, strict_value

pytestmark = pytest.mark.unit


def test_non_finite_numbers_become_null_at_any_depth():
    value = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -math.inf}], "d": np.float32("nan"),
             "e": np.array([1.5, np.nan]), "f": (np.inf,), "g": decimal.Decimal("NaN"), "h": pd.NA, "i": pd.NaT}
    text = strict_dumps(value, sort_keys=True)
    assert json.loads(text) == {"a": None, "b": [1.0, None, {"c": None}], "d": None, "e": [1.5, None],
                                "f": [None], "g": None, "h": None, "i": None}
    assert "NaN" not in text and "Infinity" not in text


def test_plain_types_survive_and_others_become_json():
    stamp = pd.Timestamp("2026-01-02T03:04:05Z")
    value = {"int": np.int64(3), "float": np.float64(0.25), "bool": np.bool_(True), "str": "x", "none": None,
             "when": stamp, "date": dt.date(2026, 1, 2), "delta": dt.timedelta(seconds=90), "dec": decimal.Decimal("1.5"),
             "set": {"b", "a"}, 7: "int key", "obj": object}
    loaded = json.loads(strict_dumps(value))
    assert loaded["int"] == 3 and loaded["float"] == 0.25 and loaded["bool"] is True and loaded["none"] is None
    assert loaded["when"] == stamp.isoformat() and loaded["date"] == "2026-01-02" and loaded["delta"] == 90.0
    assert loaded["dec"] == 1.5 and loaded["set"] == ["a", "b"] and loaded["7"] == "int key"
    assert isinstance(loaded["obj"], str)


def test_allow_nan_cannot_be_turned_back_on():
    assert strict_dumps([float("nan")], allow_nan=True) == "[null]"


def test_the_input_is_not_modified():
    value = {"a": [float("nan")]}
    strict_value(value)
    assert math.isnan(value["a"][0])
