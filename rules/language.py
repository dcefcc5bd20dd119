"""The rule language: CEL (Common Expression Language, the `common-expression-language` package),
never Python ``eval``. A rule is a boolean CEL expression over one transaction.

What an expression sees (``RULE_FIELDS``, one name each):
- the message fields (fraudops.contract.messages: ``amount``, ``country``, ``merchant_id``, ...;
  a missing optional string is ``""``; ``transaction_time`` is its ISO-8601 text);
- every feature of THE feature definition (features.definition.FEATURE_COLUMNS: the user's
  windows such as ``user_txn_count_1h``, the merchant windows such as ``merchant_fraud_rate_7d``,
  ``cat_*`` categoricals), as the model sees them;
- ``score``: the served model's P(fraud) for the transaction;
- ``in_list("<list name>", value)``: true when ``value`` is a current entry of that list
  (rules/lists.py; entries can expire).

Examples::

    amount > 2000 && user_new_country == 1 && cat_channel == "online"
    in_list("mule_devices", device_id) || (score > 0.5 && merchant_fraud_rate_7d > 0.05)

:func:`compile_rule` refuses, with the rule's name and the position: a syntax error, an unknown
field, an unknown list, a result that is not a boolean, and an expression that fails on the
probe transactions (e.g. ``amount / user_tiny_count_1h`` divides by zero when the count is 0).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import cel

from features.definition import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from fraudops.contract.messages import FIELD_SPECS

LIST_FUNCTION = "in_list"
SCORE_FIELD = "score"


def _field_kinds() -> dict[str, str]:
    kinds = {spec.name: ("number" if spec.kind == "amount" else "string") for spec in FIELD_SPECS}
    kinds.update({name: "number" for name in NUMERIC_FEATURES})
    kinds.update({name: "string" for name in CATEGORICAL_FEATURES})
    kinds[SCORE_FIELD] = "number"
    return kinds


# name -> "number" | "string": everything an expression may reference
RULE_FIELDS: dict[str, str] = _field_kinds()
STRING_FIELDS: tuple[str, ...] = tuple(n for n, k in RULE_FIELDS.items() if k == "string")
NUMBER_FIELDS: tuple[str, ...] = tuple(n for n, k in RULE_FIELDS.items() if k == "number")

_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")
_LIST_CALL = re.compile(r"""in_list\(\s*(?:"([^"]*)"|'([^']*)')""")


class RuleError(ValueError):
    """A rule that cannot be saved: the message names the rule and, for syntax, the position."""


@dataclass(frozen=True)
class CompiledRule:
    """A rule's CEL program and what it references."""

    name: str
    expression: str
    program: object  # cel.Program
    fields: tuple[str, ...]  # the RULE_FIELDS it reads
    lists: tuple[str, ...]  # the list names it checks with in_list

    def matches(self, context) -> bool:
        """True when the rule fires on ``context`` (a cel.Context); raises what CEL raises."""
        return self.program.execute(context) is True


def list_names_in(expression: str) -> tuple[str, ...]:
    """The list names an expression passes to in_list as literals."""
    return tuple(sorted({a or b for a, b in _LIST_CALL.findall(expression)}))


def compile_rule(name: str, expression: str, known_lists: Iterable[str] | None = None,
                 probes: Iterable[Mapping] = ()) -> CompiledRule:
    """Compile and check one rule (see the module docstring); raises RuleError."""
    if not isinstance(expression, str) or not expression.strip():
        raise RuleError(f"rule {name!r}: the expression is empty")
    try:
        program = cel.compile(expression)
    except (ValueError, RuntimeError) as exc:
        raise RuleError(f"rule {name!r}: {_syntax_message(str(exc))}") from None
    references = program.variables()
    unknown = sorted(set(references) - set(RULE_FIELDS) - _comprehension_names(expression))
    if unknown:
        raise RuleError(f"rule {name!r}: unknown field {', '.join(unknown)} (known: the message fields, "
                        f"the features of features/definition.py and {SCORE_FIELD!r})")
    functions = {f for f in program.functions() if not f.startswith(("_", "@"))}
    lists = list_names_in(expression)
    if LIST_FUNCTION in functions and not lists:
        raise RuleError(f"rule {name!r}: in_list needs the list's name as a literal string, "
                        'e.g. in_list("blocked_devices", device_id)')
    if known_lists is not None:
        missing = sorted(set(lists) - set(known_lists))
        if missing:
            raise RuleError(f"rule {name!r}: unknown list {', '.join(missing)} (create it first: "
                            "python -m rules lists create)")
    compiled = CompiledRule(name, expression, program, tuple(sorted(set(references) & set(RULE_FIELDS))), lists)
    for probe in division_probes():  # CEL doubles divide by zero into inf / NaN: integers raise
        _check_on(compiled, probe, only_division=True)
    for probe in [*probe_contexts(), *probes]:
        _check_on(compiled, probe)
    return compiled


def probe_contexts() -> list[dict]:
    """Transactions every rule must evaluate on: all zeros / empty strings, and all ones."""
    zeros = {n: ("" if k == "string" else 0.0) for n, k in RULE_FIELDS.items()}
    ones = {n: ("x" if k == "string" else 1.0) for n, k in RULE_FIELDS.items()}
    return [zeros, ones]


def division_probes() -> list[dict]:
    """The probes with integer numbers: a division by a field that can be 0 (or 1 - 1) raises."""
    return [{n: ("" if k == "string" else value) for n, k in RULE_FIELDS.items()} for value in (0, 1)]


def _check_on(rule: CompiledRule, variables: Mapping, only_division: bool = False) -> None:
    try:
        result = rule.program.execute(rule_context(variables, lambda _name, _value: False))
    except ZeroDivisionError:
        raise RuleError(f"rule {rule.name!r}: divides by zero on a transaction where "
                        f"{_describe_probe(variables, rule.fields)} (guard the divisor, e.g. "
                        "`x > 0.0 && amount / x > 3.0`)") from None
    except (TypeError, RuntimeError, ValueError, OverflowError) as exc:
        if only_division:  # integer probes may mix types where doubles would not: not the rule's fault
            return
        raise RuleError(f"rule {rule.name!r}: fails on a transaction where "
                        f"{_describe_probe(variables, rule.fields)}: {exc}") from None
    if only_division:
        return
    if not isinstance(result, bool):
        raise RuleError(f"rule {rule.name!r}: must be a condition (true/false), gives {type(result).__name__} "
                        f"{result!r}")


def rule_context(variables: Mapping, in_list: Callable[[str, object], bool]):
    """A CEL context of one transaction's ``variables`` and the in_list function."""
    return cel.Context(dict(variables), {LIST_FUNCTION: in_list})


def _describe_probe(variables: Mapping, fields: tuple[str, ...]) -> str:
    shown = [f"{f}={variables.get(f)!r}" for f in fields[:6]]
    return ", ".join(shown) if shown else "every field is empty"


def _syntax_message(text: str) -> str:
    """CEL's parse error as 'line L, column C: <what>'."""
    match = _POSITION.search(text)
    if not match:
        return f"syntax error: {text.splitlines()[0]}"
    line, column, what = match.groups()
    return f"syntax error at line {line}, column {column}: {what.strip()}"


def _comprehension_names(expression: str) -> set[str]:
    """Names bound by CEL macros such as ``[1, 2].exists(x, x > 1)`` (not fields)."""
    return set(re.findall(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,", expression))
