"""Great Expectations suites built from code: the message contract and the feature definition.

The suites are stored as JSON in the file-backed GE context (expectations/gx/expectations/*.json)
and rebuilt from fraudops.contract.messages (FIELD_SPECS and its code sets and limits) and
features.definition (FEATURE_COLUMNS, NUMERIC_FEATURES, CATEGORICAL_FEATURES), so they cannot drift
from what the streaming job quarantines or what the features produce. A unit test checks that the
JSON on disk equals what these builders return.

Command (after changing the schema or the feature definition):
    .venv/bin/python -m expectations.suites            # rewrite expectations/gx/expectations/*.json
    .venv/bin/python -m expectations.suites --check    # exit 1 if the files are stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fraudops.contract.messages import (
    CODE_FIELDS,
    FIELD_SPECS,
    MAX_AMOUNT,
    MAX_STRING_LENGTH,
    MIN_TRANSACTION_TIME,
    REQUIRED_FIELDS,
    STRING_FIELDS,
)

EXPECTATIONS_ROOT = Path(__file__).resolve().parent
GX_DIR = EXPECTATIONS_ROOT / "gx"
SUITES_DIR = GX_DIR / "expectations"
RAW_SUITE = "raw_transactions"
FEATURE_SUITE = "feature_table"
ID_COLUMN = "transaction_id"
MAX_TIME_PARAMETER = "max_transaction_time"  # supplied at run time: now + MAX_FUTURE_SKEW
MAX_FEATURE_MAGNITUDE = 1e12  # any numeric feature beyond this (or infinite) is a bug
AMOUNT_TYPES = ["float64", "float32", "int64", "int32", "Float64", "Int64"]


def expectation(kind: str, note: str = "", **kwargs: Any) -> dict[str, Any]:
    """One expectation in GE's JSON layout."""
    return {"kwargs": kwargs, "meta": {"note": note} if note else {}, "severity": "critical", "type": kind}


def suite_document(name: str, expectations: list[dict], source: str) -> dict[str, Any]:
    """A whole suite in GE's JSON layout (no ids, so the file is deterministic)."""
    return {"expectations": expectations, "meta": {"generated_from": source}, "name": name, "notes": None}


def _string_expectations(name: str, required: bool) -> list[dict]:
    out = [expectation("expect_column_value_lengths_to_be_between", "fraudops.contract.messages.MAX_STRING_LENGTH",
                       column=name, min_value=1, max_value=MAX_STRING_LENGTH)]
    if required:
        out.append(expectation("expect_column_values_to_match_regex", "not blank", column=name, regex=r"\S"))
    if name in CODE_FIELDS:
        out.append(expectation("expect_column_values_to_be_in_set", f"fraudops.contract.messages code set of {name}",
                               column=name, value_set=sorted(CODE_FIELDS[name])))
    return out


def build_raw_transactions_suite() -> dict[str, Any]:
    """Suite for raw transactions (history files, exports): the message contract, column-wise."""
    exps = [expectation("expect_table_row_count_to_be_between", "not empty", min_value=1, max_value=None)]
    for name in REQUIRED_FIELDS:
        exps.append(expectation("expect_column_to_exist", "required field", column=name))
        exps.append(expectation("expect_column_values_to_not_be_null", "required field", column=name))
    for spec in FIELD_SPECS:
        if spec.name in STRING_FIELDS:
            exps += _string_expectations(spec.name, spec.required)
    exps.append(expectation("expect_column_values_to_be_unique", "transaction_id is unique", column=ID_COLUMN))
    exps.append(expectation("expect_column_values_to_be_in_type_list", "amount is a number", column="amount", type_list=AMOUNT_TYPES))
    exps.append(expectation("expect_column_values_to_be_between", "amount finite, >= 0 (zero-amount verifications), <= MAX_AMOUNT",
                            column="amount", min_value=0, max_value=MAX_AMOUNT))
    exps.append(expectation("expect_column_values_to_be_between", "not before 2000, not beyond now + MAX_FUTURE_SKEW",
                            column="transaction_time", min_value=MIN_TRANSACTION_TIME.isoformat(),
                            max_value={"$PARAMETER": MAX_TIME_PARAMETER}))
    return suite_document(RAW_SUITE, exps, "fraudops.contract.messages")


def _numeric_range(name: str) -> tuple[float | None, float]:
    """Bounds of a numeric feature from its name (see features.definition descriptions)."""
    from features.definition import NO_PREVIOUS_SECONDS

    if name.startswith(("is_", "user_new_")):
        return 0, 1
    if name == "hour":
        return 0, 23
    if name.startswith("merchant_fraud_rate"):
        return 0, 1
    if name == "user_seconds_since_prev":
        return 0, NO_PREVIOUS_SECONDS
    if name == "log_amount":
        return 0, MAX_FEATURE_MAGNITUDE
    if name.startswith(("user_", "merchant_")) or name == "amount":
        return 0, MAX_FEATURE_MAGNITUDE
    return -MAX_FEATURE_MAGNITUDE, MAX_FEATURE_MAGNITUDE


def build_feature_table_suite(
    feature_columns: list[str] | None = None,
    numeric_features: list[str] | None = None,
    categorical_features: list[str] | None = None,
) -> dict[str, Any]:
    """Suite for a feature table (features.batch output): columns, nulls, ranges, unique ids.

    Args default to features.definition's FEATURE_COLUMNS, NUMERIC_FEATURES, CATEGORICAL_FEATURES.
    """
    if feature_columns is None or numeric_features is None or categorical_features is None:
        from features.definition import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES

        feature_columns = FEATURE_COLUMNS if feature_columns is None else feature_columns
        numeric_features = NUMERIC_FEATURES if numeric_features is None else numeric_features
        categorical_features = CATEGORICAL_FEATURES if categorical_features is None else categorical_features
    exps = [expectation("expect_column_to_exist", "row id", column=ID_COLUMN),
            expectation("expect_column_values_to_be_unique", "one feature row per transaction", column=ID_COLUMN)]
    for name in feature_columns:
        exps.append(expectation("expect_column_to_exist", "features.definition", column=name))
        exps.append(expectation("expect_column_values_to_not_be_null", "features are never missing", column=name))
        if name in numeric_features:
            low, high = _numeric_range(name)
            exps.append(expectation("expect_column_values_to_be_between", "range (finite)", column=name, min_value=low, max_value=high))
        elif name in categorical_features:
            exps.append(expectation("expect_column_value_lengths_to_be_between", "categorical as string", column=name,
                                    min_value=1, max_value=MAX_STRING_LENGTH))
    return suite_document(FEATURE_SUITE, exps, "features.definition")


SUITE_BUILDERS = {RAW_SUITE: build_raw_transactions_suite, FEATURE_SUITE: build_feature_table_suite}


def build_suite(name: str) -> dict[str, Any]:
    """The suite ``name`` as code builds it.

    Raises:
        ValueError: naming the known suites when ``name`` is unknown.
    """
    if name not in SUITE_BUILDERS:
        raise ValueError(f"unknown suite {name!r}; known suites: {sorted(SUITE_BUILDERS)}")
    return SUITE_BUILDERS[name]()


def suite_path(name: str, directory: Path = SUITES_DIR) -> Path:
    return directory / f"{name}.json"


def render(suite: dict[str, Any]) -> str:
    return json.dumps(suite, indent=2, sort_keys=True) + "\n"


def write_suites(directory: Path = SUITES_DIR) -> list[Path]:
    """(Re)write every suite's JSON file; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SUITE_BUILDERS:
        path = suite_path(name, directory)
        path.write_text(render(build_suite(name)))
        paths.append(path)
    return paths


def stale_suites(directory: Path = SUITES_DIR) -> list[str]:
    """Names of suites whose JSON file is missing or differs from the code."""
    stale = []
    for name in SUITE_BUILDERS:
        path = suite_path(name, directory)
        if not path.is_file() or json.loads(path.read_text()) != build_suite(name):
            stale.append(name)
    return stale


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m expectations.suites``."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m expectations.suites", formatter_class=HelpFormatter,
                                     description="write or check the Great Expectations suite files")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a file is stale")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Write (or --check) the suite files; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.check:
        stale = stale_suites()
        print("stale suites: " + ", ".join(stale) if stale else "suites are up to date")
        return 1 if stale else 0
    for path in write_suites():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
