"""The rule language, the rule set's evaluation and the decision precedence: pure functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from fraudops.contract.decisions import decided_message, parse_decision
from fraudops.contract.messages import validate_message
from rules.language import RULE_FIELDS, RuleError, compile_rule
from rules.policy import final_decision
from rules.ruleset import LiveList, LiveRule, Outcome, RuleSet, rule_variables
from rules.store import RuleStoreError, read_entries_csv

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_fields_cover_the_message_the_features_and_the_score():
    from features.definition import FEATURE_COLUMNS
    from fraudops.contract.messages import TRANSACTION_COLUMNS

    assert set(TRANSACTION_COLUMNS) | set(FEATURE_COLUMNS) | {"score"} == set(RULE_FIELDS)


def test_a_valid_rule_compiles_and_names_what_it_reads():
    rule = compile_rule("big_new_country", 'amount > 2000 && user_new_country == 1 && cat_channel == "online"')
    assert rule.fields == ("amount", "cat_channel", "user_new_country")
    assert rule.lists == ()


@pytest.mark.parametrize(("expression", "message"), [
    ("amount > ", "rule 'r': syntax error at line 1, column 10"),
    ("amount > 1 &&\n  (country == ", "rule 'r': syntax error at line 2"),
    ("amount > 1 && velocity > 3", "rule 'r': unknown field velocity"),
    ("amount / user_tiny_count_1h > 3.0", "rule 'r': divides by zero"),
    ("amount / (user_txn_count_1h - 1) > 3.0", "rule 'r': divides by zero"),
    ("amount * 2.0", "rule 'r': must be a condition (true/false), gives float"),
    ("   ", "rule 'r': the expression is empty"),
    ('in_list(list_name, device_id)', "rule 'r': unknown field list_name"),
])
def test_bad_rules_are_refused_with_the_rule_and_the_reason(expression, message):
    with pytest.raises(RuleError, match=None) as caught:
        compile_rule("r", expression)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_guarded_division_is_accepted():
    compile_rule("r", "user_tiny_count_1h > 0.0 && amount / user_tiny_count_1h > 3.0")


def test_unknown_lists_are_refused_when_the_lists_are_known():
    with pytest.raises(RuleError, match=r"rule 'r': unknown list mule_devices"):
        compile_rule("r", 'in_list("mule_devices", device_id)', known_lists=["blocked_users"])
    assert compile_rule("r", 'in_list("mule_devices", device_id)', known_lists=["mule_devices"]).lists == (
        "mule_devices",)


def _rule(name, expression, action, priority=100, shadow=False, version=1):
    return LiveRule(name, version, action, priority, shadow, compile_rule(name, expression, ["mules"]))


def _row(**values):
    base = {"transaction_id": "T1", "user_id": "U1", "amount": 50.0, "country": "US", "device_id": "D1",
            "merchant_id": "M1", "score": 0.1, "user_new_country": 0.0}
    return {**base, **values}


def test_rule_variables_fill_missing_values_and_types():
    variables = rule_variables({"amount": 12, "device_id": None, "score": float("nan"),
                                "transaction_time": datetime(2025, 1, 2, tzinfo=UTC)})
    assert variables["amount"] == 12.0 and variables["device_id"] == "" and variables["score"] == 0.0
    assert variables["transaction_time"] == "2025-01-02T00:00:00+00:00"
    assert set(variables) == set(RULE_FIELDS)


def test_ruleset_fires_rules_in_priority_order_and_marks_shadow_ones():
    ruleset = RuleSet(7, [
        _rule("big", "amount > 1000", "review", priority=50),
        _rule("ru", 'country == "RU"', "decline", priority=10, shadow=True),
        _rule("mule", 'in_list("mules", device_id)', "decline", priority=20),
    ], {"mules": LiveList("mules", "block", "device_id", {"D9": None})})
    outcome, = ruleset.evaluate([_row(amount=5000.0, country="RU", device_id="D9")], now=NOW)
    assert [f["name"] for f in outcome.fired] == ["ru", "mule", "big"]
    assert outcome.actions() == {"decline", "review"}  # the shadow rule does not count
    assert outcome.list_hits == [{"list": "mules", "kind": "block", "field": "device_id"}]
    assert {"name": "list:mules", "version": 0, "action": "block", "shadow": False} in outcome.recorded()


def test_expired_list_entries_do_not_match():
    live = LiveList("mules", "block", "device_id", {"D1": NOW - timedelta(seconds=1), "D2": NOW + timedelta(days=1)})
    assert not live.has("D1", NOW) and live.has("D2", NOW) and not live.has(None, NOW)


def test_a_rule_that_raises_is_counted_and_skipped():
    # (amount - 5.5) / (amount - 5.5) is NaN at amount 5.5: CEL refuses to compare NaN
    ruleset = RuleSet(1, [_rule("odd", "(amount - 5.5) / (amount - 5.5) > 0.5", "decline"),
                          _rule("big", "amount > 1.0", "review")], {})
    first, second = ruleset.evaluate([_row(amount=5.5), _row(amount=7.0)], now=NOW)
    assert [f["name"] for f in first.fired] == ["big"]
    assert [f["name"] for f in second.fired] == ["big", "odd"]  # same priority: by name
    assert ruleset.errors == {"odd@1": 1}


@pytest.mark.parametrize(("model", "lists", "actions", "expected"), [
    ("decline", {"allow"}, {"decline"}, ("approve", "allow_list")),
    ("approve", {"block"}, {"allow"}, ("decline", "block_list")),
    ("decline", set(), {"allow"}, ("approve", "allow_rule")),
    ("approve", set(), {"decline", "review"}, ("decline", "decline_rule")),
    ("decline", set(), {"review"}, ("decline", "model")),
    ("approve", set(), {"review", "tag"}, ("review", "review_rule")),
    ("review", set(), {"tag"}, ("review", "model")),
    ("approve", set(), {"tag"}, ("approve", "model")),
])
def test_precedence(model, lists, actions, expected):
    outcome = Outcome(fired=[{"name": a, "version": 1, "action": a, "shadow": False} for a in actions],
                      list_hits=[{"list": k, "kind": k, "field": "user_id"} for k in lists])
    assert final_decision(model, outcome) == expected


def test_shadow_rules_never_change_the_decision():
    outcome = Outcome(fired=[{"name": "x", "version": 1, "action": "decline", "shadow": True}])
    assert final_decision("approve", outcome) == ("approve", "model")


def test_csv_import_reads_values_expiry_and_reasons_and_names_a_bad_line():
    entries = read_entries_csv("value,expires_at,reason\nD1,2026-12-31T00:00:00Z,mule\nD2,,\n")
    assert [e.value for e in entries] == ["D1", "D2"]
    assert entries[0].expires_at == datetime(2026, 12, 31, tzinfo=UTC) and entries[1].expires_at is None
    with pytest.raises(RuleStoreError, match="devices.csv line 3: expires_at 'soon' is not ISO-8601"):
        read_entries_csv("value,expires_at\nD1,\nD2,soon\n", "devices.csv")
    with pytest.raises(RuleStoreError, match="header must name a 'value' column"):
        read_entries_csv("device\nD1\n")


def test_the_decided_contract_carries_the_rules_that_fired():
    record, _ = validate_message(json.dumps({
        "transaction_id": "T1", "user_id": "U1", "amount": 10.0, "currency": "USD", "merchant": "M",
        "transaction_time": "2025-01-01T00:00:00", "country": "US", "transaction_type": "purchase"}))
    fired = [{"name": "big", "version": 2, "action": "review", "shadow": False}]
    decided = {"decision": "review", "fraud_score": 0.2, "review_threshold": 0.5, "decline_threshold": 0.9,
               "model_version": "1", "feature_set_version": "fs", "features": {"amount": 10.0}, "reasons": [],
               "decided_at": "2026-12-04T00:00:00+00:00", "degraded": False, "degraded_reason": None,
               "rules_fired": fired}
    out, reason = parse_decision(decided_message(record, decided))
    assert reason is None and json.loads(out["rules_fired"]) == fired
    body = json.loads(decided_message(record, decided))
    body["decision"]["rules_fired"] = "big"
    assert parse_decision(json.dumps(body)) == (None, "bad_decision:rules_fired")
