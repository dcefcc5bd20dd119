"""Backtest a rule (or a threshold) on the stored transactions before publishing it.

The last ``days`` of PostgreSQL ``transactions`` (by transaction_time), each with its label from
``labels`` (fraud when any source says fraud; no label counts as genuine: no chargeback came),
are evaluated with the rule's CEL expression; only the columns the expression references are
read (features from the stored ``features`` JSON, the model's ``fraud_score`` as ``score``).
Lists are checked with their current entries.

Result: hits, hits per day, precision and recall against the labels, how many of the hits the
model alerted on already (``overlap_with_model``), the fraud amount the rule would have caught,
and the new alerts it adds beyond the model's.

    python -m rules backtest --expression 'amount > 2000 && user_new_country == 1' --days 30
    python -m rules backtest --rule big_new_country --days 30
    python -m rules backtest --expression 'score >= 0.6' --days 7     # a threshold change
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from fraudops.contract.messages import TRANSACTION_COLUMNS
from rules.language import RULE_FIELDS, SCORE_FIELD, compile_rule, rule_context
from rules.ruleset import RuleSet, load_ruleset


@dataclass
class BacktestResult:
    expression: str
    days: int
    transactions: int
    frauds: int
    hits: int
    hits_per_day: float
    true_hits: int
    precision: float | None
    recall: float | None
    overlap_with_model: int
    new_alerts: int
    fraud_amount_caught: float
    errors: int
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        def share(v):
            return "n/a" if v is None else f"{v:.3f}"

        return [f"backtest of `{self.expression}` on the last {self.days} days: {self.transactions:,} transactions, "
                f"{self.frauds:,} labeled fraud",
                f"  hits {self.hits:,} ({self.hits_per_day:,.1f}/day), of them fraud {self.true_hits:,}: "
                f"precision {share(self.precision)}, recall {share(self.recall)}",
                f"  already alerted by the model: {self.overlap_with_model:,}; new alerts: {self.new_alerts:,}; "
                f"fraud amount caught {self.fraud_amount_caught:,.2f}",
                f"  rule errors: {self.errors:,}; {self.seconds:.1f} s"]


def _select_sql(fields: list[str]) -> str:
    columns = ["t.transaction_id", "t.amount::float8 AS _amount", "coalesce(t.is_fraud, false) AS _alerted",
               "coalesce(l.is_fraud, false) AS _label"]
    for name in fields:
        if name == SCORE_FIELD:
            columns.append(f"t.fraud_score AS {SCORE_FIELD}")
        elif name in TRANSACTION_COLUMNS:
            columns.append(f"t.{name}" if name != "transaction_time" else "t.transaction_time::text AS transaction_time")
        else:  # a feature: from the stored features (the values the model saw)
            cast = "::float8" if RULE_FIELDS[name] == "number" else ""
            columns.append(f"(t.features ->> '{name}'){cast} AS {name}")
    return (f"SELECT {', '.join(dict.fromkeys(columns))} FROM transactions t LEFT JOIN "
            "(SELECT transaction_id, bool_or(is_fraud) AS is_fraud FROM labels GROUP BY transaction_id) l "
            "USING (transaction_id) WHERE t.transaction_time >= now() - make_interval(days => %s)")


def load_window(conn, fields: list[str], days: int) -> pd.DataFrame:
    """The columns a backtest needs, for the last ``days`` (COPY: the fast way out of PostgreSQL)."""
    sql = _select_sql(fields)
    with conn.cursor() as cur:
        query = cur.mogrify(sql, (days,)).decode()
        buffer = io.StringIO()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
    conn.rollback()
    buffer.seek(0)
    dtypes = {name: ("float64" if RULE_FIELDS[name] == "number" else "string") for name in fields}
    frame = pd.read_csv(buffer, dtype={**dtypes, "transaction_id": "string"}, keep_default_na=True)
    for flag in ("_alerted", "_label"):
        frame[flag] = frame[flag].astype(str).str.lower().isin(("t", "true"))
    return frame


def hits_of(expression: str, frame: pd.DataFrame, fields: list[str], ruleset: RuleSet,
            name: str = "backtest") -> tuple[np.ndarray, int]:
    """Boolean hits of ``expression`` on each row, and how many rows raised."""
    compiled = compile_rule(name, expression, list(ruleset.lists))
    in_list = ruleset.in_list(datetime.now(UTC))
    columns = []
    for field in fields:
        values = frame[field]
        if RULE_FIELDS[field] == "number":
            columns.append(values.fillna(0.0).astype("float64").tolist())
        else:
            columns.append(values.fillna("").astype(str).tolist())
    hits = np.zeros(len(frame), dtype=bool)
    errors = 0
    program = compiled.program
    for i, row in enumerate(zip(*columns, strict=True) if columns else ((),) * len(frame)):
        try:
            hits[i] = program.execute(rule_context(dict(zip(fields, row, strict=True)), in_list)) is True
        except Exception:  # noqa: BLE001 - counted, as at run time
            errors += 1
    return hits, errors


def backtest(conn, expression: str, days: int = 30) -> BacktestResult:
    if not isinstance(days, int) or days < 1:
        raise ValueError(f"--days must be an integer >= 1 (got {days!r})")
    started = time.perf_counter()
    ruleset = load_ruleset(conn)
    fields = list(compile_rule("backtest", expression, list(ruleset.lists)).fields)
    frame = load_window(conn, fields, days)
    hits, errors = hits_of(expression, frame, fields, ruleset)
    label = frame["_label"].to_numpy(bool)
    alerted = frame["_alerted"].to_numpy(bool)
    true_hits = hits & label
    return BacktestResult(
        expression=expression, days=days, transactions=len(frame), frauds=int(label.sum()), hits=int(hits.sum()),
        hits_per_day=float(hits.sum()) / days, true_hits=int(true_hits.sum()),
        precision=float(true_hits.sum() / hits.sum()) if hits.any() else None,
        recall=float(true_hits.sum() / label.sum()) if label.any() else None,
        overlap_with_model=int((hits & alerted).sum()), new_alerts=int((hits & ~alerted).sum()),
        fraud_amount_caught=float(frame["_amount"].to_numpy("float64")[true_hits].sum()), errors=errors,
        seconds=time.perf_counter() - started)
