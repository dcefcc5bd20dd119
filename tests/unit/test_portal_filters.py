"""The portal's pure parts: queue filters and cursor parsing, live-row matching, chart escaping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from portal.charts import bar_chart, line_chart
from portal.filters import AlertFilters, Cursor, FilterError, parse_filters
from portal.reviews import ReviewRefused, alert_state, check_review_input

pytestmark = pytest.mark.unit


def test_empty_values_mean_no_filter():
    assert parse_filters({"status": "", "country": "  ", "min_score": ""}) == AlertFilters()


def test_filters_are_parsed_and_normalised():
    f = parse_filters({"status": "pending", "country": "de", "min_score": "0.2", "max_score": "1",
                       "since": "2026-01-02T03:04", "limit": "10", "model_version": "3"})
    assert (f.status, f.country, f.min_score, f.max_score, f.limit, f.model_version) == ("pending", "DE", 0.2, 1.0,
                                                                                         10, "3")
    assert f.since == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)  # naive means UTC


@pytest.mark.parametrize("params", [{"status": "deleted"}, {"min_score": "inf"}, {"min_score": "-0.1"},
                                    {"country": "U1"}, {"until": "tomorrow"}, {"before": "2026-01-01"},
                                    {"limit": "-1"}, {"model_version": "a b"}, {"min_score": "0.5", "max_score": "0.4"},
                                    {"decision": "bogus"}, {"decision": "DECLINE"}, {"decision": "null"}])
def test_malformed_filters_name_the_parameter(params):
    with pytest.raises(FilterError) as error:
        parse_filters(params)
    assert any(name in str(error.value) for name in params)


@pytest.mark.parametrize("decision", ["approve", "review", "decline", "stream"])
def test_the_decision_filter_is_parsed_and_kept_in_the_query_string(decision):
    f = parse_filters({"decision": f" {decision} ", "country": "FR"})
    assert f.decision == decision
    assert f"decision={decision}" in f.query_string() and parse_filters({"decision": ""}).decision is None


def test_a_bad_decision_names_the_filter_and_its_values():
    with pytest.raises(FilterError, match=r"decision='maybe' must be one of approve, review, decline, stream"):
        parse_filters({"decision": "maybe"})


def test_the_cursor_round_trips_through_the_query_string():
    cursor = Cursor(datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), 42)
    query = AlertFilters(country="FR", before=cursor).query_string()
    parsed = parse_filters(dict(part.split("=", 1) for part in query.replace("%3A", ":").replace("%2B", "+")
                                .split("&")))
    assert parsed.before == cursor and parsed.country == "FR"


def test_live_rows_are_matched_against_the_pages_filters():
    row = {"alert_status": "pending", "fraud_score": 0.8, "country": "FR", "model_version": "2",
           "detection_time": datetime(2026, 5, 1, tzinfo=UTC)}
    assert AlertFilters(country="FR", min_score=0.5).matches(row)
    assert not AlertFilters(country="DE").matches(row)
    assert not AlertFilters(status="confirmed").matches(row)
    assert not AlertFilters(until=datetime(2026, 4, 1, tzinfo=UTC)).matches(row)


def test_review_input_is_checked():
    assert check_review_input("confirmed", "  ") is None
    for decision, note in (("approve", None), ("confirmed", "x" * 2001)):
        with pytest.raises(ReviewRefused) as error:
            check_review_input(decision, note)
        assert error.value.status == 400
    assert alert_state("pending", None) == "pending|"


def test_chart_text_is_escaped():
    svg = bar_chart([("<script>", 3.0)], "<b>title</b>") + line_chart({"<i>": [(datetime.now(UTC), 1.0)]}, "t")
    assert "<script>" not in svg and "<b>" not in svg and "<i>" not in svg


def test_live_rows_are_matched_against_the_decision_filter():
    base = {"alert_status": "pending", "fraud_score": 0.8, "country": "FR",
            "detection_time": datetime(2026, 5, 1, tzinfo=UTC)}
    decided, stream_only = {**base, "decision": "decline"}, {**base, "decision": None}
    assert AlertFilters(decision="decline").matches(decided) and not AlertFilters(decision="review").matches(decided)
    assert AlertFilters(decision="stream").matches(stream_only) and not AlertFilters(decision="stream").matches(decided)
    assert not AlertFilters(decision="decline").matches(stream_only) and AlertFilters().matches(stream_only)
