"""Run a Great Expectations suite (expectations/gx/expectations/<suite>.json) on a pandas DataFrame.

Reads: the suite JSON written by expectations.suites, and the DataFrame you pass. Writes nothing.
Each failure names the expectation, the column, how many rows failed and example transaction_ids.

Usage:
    from expectations.runner import validate_dataframe
    outcome = validate_dataframe(df, "raw_transactions")
    if not outcome.success:
        print(outcome.report())

The CLI with MLflow logging is pipelines/validate.py (`mlflow run . -e validate -P data=...`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from expectations.suites import ID_COLUMN, MAX_TIME_PARAMETER, RAW_SUITE, SUITE_BUILDERS, suite_path
from fraudops.contract.messages import MAX_FUTURE_SKEW

MAX_EXAMPLES = 5


def _short(value: Any, limit: int = 40) -> Any:
    text = str(value)
    return value if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ExpectationFailure:
    """One failed expectation.

    Attributes:
        expectation: GE expectation type (or "parseable" for values the runner could not convert).
        column: the column checked (None for table-level expectations).
        unexpected_count: rows that failed (0 when the expectation itself errored, e.g. no column).
        example_ids: transaction_ids of up to MAX_EXAMPLES failing rows.
        example_values: their offending values.
        detail: the expectation's arguments or the error raised.
    """

    expectation: str
    column: str | None
    unexpected_count: int
    example_ids: list[str] = field(default_factory=list)
    example_values: list[Any] = field(default_factory=list)
    detail: str = ""

    def describe(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        rows = f": {self.unexpected_count} row(s)" if self.unexpected_count else ""
        values = [_short(v) for v in self.example_values]
        examples = f", e.g. transaction_id {self.example_ids} values {values}" if self.example_ids else ""
        detail = f" [{self.detail}]" if self.detail and self.detail != "{}" else ""
        return f"{self.expectation}{where}{rows}{examples}{detail}"


@dataclass(frozen=True)
class ValidationOutcome:
    """Result of :func:`validate_dataframe`."""

    suite_name: str
    success: bool
    failures: list[ExpectationFailure]
    evaluated_expectations: int
    rows: int

    def report(self) -> str:
        head = f"suite {self.suite_name}: {'PASSED' if self.success else 'FAILED'} on {self.rows} rows " \
               f"({self.evaluated_expectations} expectations, {len(self.failures)} failed)"
        return "\n".join([head, *(f"  - {f.describe()}" for f in self.failures)])


def load_suite_document(suite_name: str) -> dict[str, Any]:
    """The suite's JSON from the file context.

    Raises:
        ValueError: unknown suite name; FileNotFoundError: file missing (run `python -m expectations.suites`).
    """
    if suite_name not in SUITE_BUILDERS:
        raise ValueError(f"unknown suite {suite_name!r}; known suites: {sorted(SUITE_BUILDERS)}")
    path = suite_path(suite_name)
    if not path.is_file():
        raise FileNotFoundError(f"suite file {path} is missing; write it with `python -m expectations.suites`")
    return json.loads(path.read_text())


def _ids(frame: pd.DataFrame, index) -> list[str]:
    return [str(v) for v in frame.loc[index, ID_COLUMN].head(MAX_EXAMPLES)] if ID_COLUMN in frame else [str(i) for i in list(index)[:MAX_EXAMPLES]]


def _coerce_column(frame: pd.DataFrame, column: str, convert) -> ExpectationFailure | None:
    """Convert a text column in place; a failure names the rows that did not convert."""
    original = frame[column]
    converted = convert(original)
    bad = original.notna() & converted.isna()
    frame[column] = converted
    if not bad.any():
        return None
    return ExpectationFailure("parseable", column, int(bad.sum()), _ids(frame, bad[bad].index),
                              [str(v) for v in original[bad].head(MAX_EXAMPLES)], "value could not be converted")


def prepare_raw_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, list[ExpectationFailure]]:
    """Copy ``df`` with transaction_time as UTC datetimes and amount numeric (CSV input is text).

    Values that cannot be converted become nulls and are reported as "parseable" failures.
    """
    frame = df.copy()
    failures: list[ExpectationFailure] = []
    if "transaction_time" in frame and not isinstance(frame["transaction_time"].dtype, pd.DatetimeTZDtype):
        failures.append(_coerce_column(frame, "transaction_time",
                                       lambda s: pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")))
    if "amount" in frame and frame["amount"].dtype == object:
        failures.append(_coerce_column(frame, "amount", lambda s: pd.to_numeric(s, errors="coerce")))
    return frame, [f for f in failures if f is not None]


def _result_failure(result, frame: pd.DataFrame) -> ExpectationFailure:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("column", "value_set", "batch_id")}
    details = result.result or {}
    index_rows = details.get("unexpected_index_list") or []
    ids = [str(row.get(ID_COLUMN)) if isinstance(row, dict) else str(row) for row in index_rows[:MAX_EXAMPLES]]
    values = list(details.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]
    info = result.exception_info or {}
    error = info.get("exception_message") if info.get("raised_exception") else None
    return ExpectationFailure(
        expectation=config.type,
        column=config.kwargs.get("column"),
        unexpected_count=int(details.get("unexpected_count") or 0),
        example_ids=ids,
        example_values=[v.isoformat() if hasattr(v, "isoformat") else v for v in values],
        detail=error or json.dumps(kwargs, default=str),
    )


def _run_suite(frame: pd.DataFrame, document: dict[str, Any], parameters: dict[str, Any]):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:  # GE logs its internals at INFO; keep them out of reports
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    suite = gx.ExpectationSuite(name=document["name"], expectations=document["expectations"], meta=document.get("meta"))
    batch_definition = (
        context.data_sources.add_pandas("runtime").add_dataframe_asset("frame").add_batch_definition_whole_dataframe("all")
    )
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result_format: dict[str, Any] = {"result_format": "COMPLETE", "partial_unexpected_count": MAX_EXAMPLES}
    if ID_COLUMN in frame.columns:
        result_format["unexpected_index_column_names"] = [ID_COLUMN]
    return batch.validate(suite, result_format=result_format, expectation_parameters=parameters)


def validate_dataframe(df: pd.DataFrame, suite_name: str, now: datetime | None = None) -> ValidationOutcome:
    """Validate ``df`` with the suite ``suite_name`` ("raw_transactions" or "feature_table").

    Args:
        df: the data (not modified). transaction_time and amount may be text (CSV).
        suite_name: a suite of expectations.suites.SUITE_BUILDERS.
        now: reference time for "not in the future" (default: now, UTC).

    Returns:
        ValidationOutcome; ``failures`` name the expectation, column and example transaction_ids.
    """
    document = load_suite_document(suite_name)
    frame, failures = prepare_raw_frame(df) if suite_name == RAW_SUITE else (df.copy(), [])
    latest = (now or datetime.now(UTC)) + MAX_FUTURE_SKEW
    result = _run_suite(frame, document, {MAX_TIME_PARAMETER: latest.isoformat()})
    failures += [_result_failure(r, frame) for r in result.results if not r.success]
    return ValidationOutcome(
        suite_name=suite_name,
        success=not failures,
        failures=failures,
        evaluated_expectations=len(result.results),
        rows=len(frame),
    )
