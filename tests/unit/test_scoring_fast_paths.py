"""The scoring pass's faster paths give exactly what the slower ones they replaced gave.

* streaming.scoring_pass.features_json (one records array cut at its row boundaries, no
  ``replace`` when nothing is infinite) == features_json_reference (``replace`` + ``lines=True``
  + ``splitlines``), text for text, on hostile frames: NaN, infinities, huge and tiny numbers,
  unicode, quotes and the row-boundary text inside strings, missing categoricals, empty frames.
* fraudops.modeling.model.prepare_model_input (columns built first, the frame once) == the
  column-at-a-time construction it replaced, and its types.
* fraudops.modeling.model.one_thread limits the native pools to one thread, as threadpool_limits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.definition import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES
from fraudops.modeling.model import MISSING_CATEGORY, one_thread, prepare_model_input
from streaming.scoring_pass import _finite_and_plain, features_json, features_json_reference

pytestmark = pytest.mark.unit

HOSTILE_STRINGS = ["USD", "", "ü€😀", '"},{"amount":1}', '},{"amount":', "a\\", "line\nbreak\u2028\x1c", "tab\t/", "\\\"", "x" * 500]
HOSTILE_NUMBERS = [0.0, -0.0, 1.0, 0.1 + 0.2, 1 / 3, 263.83, 1e16, 1e-16, 5e-324, 1.7976931348623157e308, -2.5,
                   123456789.123456789, np.nan, 9_999_999_999_999_998.0, 1e15 + 0.5]


def _frame(rows: int, seed: int, infinities: bool = False, strings=HOSTILE_STRINGS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    numbers = np.array(HOSTILE_NUMBERS + ([np.inf, -np.inf] if infinities else []))
    data = {name: rng.choice(numbers, rows) if i % 2 else rng.normal(0, 10 ** (i % 9), rows)
            for i, name in enumerate(NUMERIC_FEATURES)}
    for name in CATEGORICAL_FEATURES:
        data[name] = pd.Series(rng.choice(np.array([*strings, None], dtype=object), rows), dtype=object)
    frame = pd.DataFrame(data)
    frame.insert(0, "transaction_id", [f"t{i}" for i in range(rows)])  # other columns are ignored
    return frame


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 7, 500])
@pytest.mark.parametrize("infinities", [False, True])
def test_features_json_is_the_reference_text_on_hostile_frames(rows, infinities):
    for seed in range(5):
        frame = _frame(rows, seed, infinities)
        assert features_json(frame) == features_json_reference(frame)
        if rows == 500:  # the fast path ran (no infinity), or the reference did (infinities)
            assert _finite_and_plain(frame[FEATURE_COLUMNS]) is not infinities


def test_features_json_of_odd_columns_falls_back_to_the_reference():
    frame = _frame(50, 1)
    frame[CATEGORICAL_FEATURES[0]] = pd.Series([np.inf, "x"] * 25, dtype=object)  # an infinity in an object column
    frame[NUMERIC_FEATURES[0]] = np.arange(50)  # integers
    frame[NUMERIC_FEATURES[1]] = np.arange(50) % 2 == 0  # booleans
    frame[NUMERIC_FEATURES[2]] = np.float32(1.5)
    assert features_json(frame) == features_json_reference(frame)
    assert '"cat_currency":null' in features_json(frame)[0]


def test_features_json_is_strict_json_one_object_per_row_in_feature_order():
    import json

    frame = _frame(40, 3, infinities=True)
    texts = features_json(frame)
    assert len(texts) == 40
    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")

    for text in texts:
        assert list(json.loads(text, parse_constant=refuse)) == FEATURE_COLUMNS


def _prepare_column_at_a_time(frame, numeric_features, categorical_features):
    """prepare_model_input as it was (a column at a time into an empty frame): the reference."""
    out = pd.DataFrame(index=frame.index)
    for column in numeric_features:
        out[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    for column in categorical_features:
        values = frame[column].astype("object")
        out[column] = values.where(values.notna(), MISSING_CATEGORY).astype(str)
    return out


@pytest.mark.parametrize("rows", [0, 1, 300])
def test_prepare_model_input_equals_the_column_at_a_time_reference(rows):
    frame = _frame(rows, 2, infinities=True)
    frame.index = pd.Index(np.arange(rows)[::-1] * 3)  # the input's index is kept
    frame[NUMERIC_FEATURES[0]] = np.arange(rows, dtype="int64")  # integers become float64
    frame[NUMERIC_FEATURES[1]] = pd.Series([str(i) for i in range(rows)], dtype=object, index=frame.index)  # text numbers
    frame[NUMERIC_FEATURES[2]] = pd.array([None if i % 3 == 0 else float(i) for i in range(rows)], dtype="Float64")
    frame[CATEGORICAL_FEATURES[1]] = pd.Series([i if i % 2 else np.nan for i in range(rows)], index=frame.index,
                                               dtype=object)  # numbers and NaN as categoricals
    ours = prepare_model_input(frame, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    reference = _prepare_column_at_a_time(frame, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    pd.testing.assert_frame_equal(ours, reference, check_exact=True)
    assert list(ours.columns) == [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]
    assert (ours.dtypes[NUMERIC_FEATURES] == "float64").all() and (ours.dtypes[CATEGORICAL_FEATURES] == np.dtype(object)).all()


def test_prepare_model_input_with_duplicate_index_labels_and_errors_as_before():
    frame = _frame(6, 4)
    frame.index = pd.Index([1, 1, 2, 2, 3, 3])
    pd.testing.assert_frame_equal(prepare_model_input(frame, NUMERIC_FEATURES, CATEGORICAL_FEATURES),
                                  _prepare_column_at_a_time(frame, NUMERIC_FEATURES, CATEGORICAL_FEATURES),
                                  check_exact=True)
    frame[NUMERIC_FEATURES[0]] = "not a number"
    with pytest.raises(ValueError):
        prepare_model_input(frame, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    with pytest.raises(KeyError, match=NUMERIC_FEATURES[1]):
        prepare_model_input(frame.drop(columns=NUMERIC_FEATURES[1]), NUMERIC_FEATURES, CATEGORICAL_FEATURES)


def test_one_thread_limits_the_native_pools_and_restores_them():
    import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime
    from threadpoolctl import threadpool_info

    before = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    with one_thread():
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["filepath"] in before)
    assert {p["filepath"]: p["num_threads"] for p in threadpool_info()} == before


def _old_float_text(values: pd.Series) -> list[str]:
    """streaming.sinks' float column as it was (a repr per value): the reference."""
    numbers = values.to_numpy("float64")
    out = [repr(v) for v in numbers.tolist()]
    for i in np.flatnonzero(np.isnan(numbers)).tolist():
        out[i] = "\\N"
    return out


def _old_time_text(values: pd.Series) -> list[str]:
    """streaming.sinks' timestamp column as it was (no shortcut for one repeated time): the reference."""
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    utc = values.to_numpy("datetime64[us]")
    out = np.char.add(np.datetime_as_string(utc, unit="us"), "+00").astype(object)
    out[np.isnat(utc)] = "\\N"
    return out.tolist()


@pytest.mark.parametrize("rows", [0, 1, 2, 1000])
def test_copy_text_of_float_columns_is_each_values_repr(rows):
    from streaming.sinks import _text_column

    rng = np.random.default_rng(rows)
    hostile = np.array([*HOSTILE_NUMBERS, np.inf, -np.inf, 1e300, -1e-300, 0.5, 1e22, 1e-7])
    for values in (pd.Series(rng.choice(hostile, rows)), pd.Series(rng.normal(0, 1e6, rows)),
                   pd.Series(np.full(rows, 0.37)), pd.Series(rng.random(rows).astype("float32"))):
        assert _text_column(values) == _old_float_text(values)


@pytest.mark.parametrize("rows", [0, 1, 2, 500])
def test_copy_text_of_a_repeated_time_is_the_reference_text(rows):
    from streaming.sinks import _text_column

    now = pd.Timestamp("2026-12-01 06:30:01.123456", tz="UTC")
    cases = [pd.Series([now] * rows, dtype="datetime64[us, UTC]"),
             pd.Series([now.tz_convert("Asia/Kolkata")] * rows, dtype="datetime64[ns, Asia/Kolkata]"),
             pd.Series([now.tz_localize(None)] * rows, dtype="datetime64[us]"),
             pd.Series([pd.NaT] * rows, dtype="datetime64[us, UTC]"),
             pd.Series(pd.date_range(now, periods=rows, freq="37ms")),
             pd.Series([now] * rows, dtype="datetime64[us, UTC]").where(np.arange(rows) % 3 != 1)]  # NaT between
    for values in cases:
        assert _text_column(values) == _old_time_text(values)


def _old_object_text(values: pd.Series) -> list[str]:
    """streaming.sinks' text column as it was (pd.isna and a conversion check on every value): the reference."""
    from streaming.sinks import _COPY_ESCAPES, _SPECIALS, _text_value

    raw = values.to_numpy(object)
    null = pd.isna(raw)
    out = [v if type(v) is str else _text_value(v) for v in raw.tolist()]
    joined = "".join(out)
    if any(special in joined for special in _SPECIALS):
        out = [v.translate(_COPY_ESCAPES) for v in out]
    for i in np.flatnonzero(null).tolist():
        out[i] = "\\N"
    return out


@pytest.mark.parametrize("rows", [0, 1, 3, 400])
def test_copy_text_of_text_columns_is_the_reference_text(rows):
    from streaming.sinks import _text_column

    rng = np.random.default_rng(rows)
    strings = np.array([*HOSTILE_STRINGS, np.str_("np"), "back\\slash", "cr\r"], dtype=object)
    odd = np.array([None, np.nan, pd.NA, pd.NaT, 3, 2.5, True, np.float64("inf"),
                    pd.Timestamp("2026-12-01 06:00", tz="UTC"), "plain"], dtype=object)
    for values in (pd.Series(rng.choice(strings, rows), dtype=object), pd.Series(rng.choice(odd, rows), dtype=object),
                   pd.Series(["same"] * rows, dtype=object), pd.Series([None] * rows, dtype=object),
                   pd.Series(rng.choice(np.array(["ok", "also ok"], dtype=object), rows), dtype=object)):
        assert _text_column(values) == _old_object_text(values)


def test_the_feature_store_command_packer_gives_the_reference_bytes():
    from features.online import _resp_command, _resp_command_bytes

    ascii_args = ["EVALSHA", "f" * 40, 3, "p:fs:user:U1", "", 17, 1.5, np.int64(9), -1, "a\x1fb\x00c\r\n$*"]
    for args in (ascii_args, [*ascii_args, "ü€😀 user"], ["é"], [], [0], ["\x7f", "tab\t"]):
        assert _resp_command(args) == _resp_command_bytes(args)
    assert _resp_command(["GET", "k€"]) == b"*2\r\n$3\r\nGET\r\n$4\r\nk\xe2\x82\xac\r\n"
