"""LOG_FORMAT=json: the services log one JSON object a line, with the transaction or batch id as a
field of its own (fraudops.logs); text stays the default."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from fraudops.logs import JsonFormatter, configure_logging, formatter_for
from fraudops.settings import PROJECT_ROOT, Settings, load_settings

pytestmark = pytest.mark.unit


def record(message="batch %s: %d scored", args=(7, 40), **extra) -> logging.LogRecord:
    made = logging.LogRecord("streaming.batch_handlers", logging.INFO, __file__, 1, message, args, None)
    for key, val in extra.items():
        setattr(made, key, val)
    return made


def test_a_json_line_carries_the_ids_as_fields():
    line = json.loads(JsonFormatter().format(record(batch_id=7, query="scoring", model_version="3")))
    assert line["message"] == "batch 7: 40 scored" and line["level"] == "INFO"
    assert line["logger"] == "streaming.batch_handlers" and line["time"].endswith("+00:00")
    assert (line["batch_id"], line["query"], line["model_version"]) == (7, "scoring", "3")
    assert "transaction_id" not in line  # only the ids the call gave


def test_a_transaction_id_and_an_exception():
    try:
        raise RuntimeError("feature store down")
    except RuntimeError:
        failed = record("degraded decision for %s", ("TXN_1",), transaction_id="TXN_1", status=200)
        failed.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(failed))
    assert line["transaction_id"] == "TXN_1" and line["status"] == 200
    assert "RuntimeError: feature store down" in line["exc_info"]


def test_the_setting_chooses_the_format():
    assert Settings().log_format == "text"
    assert load_settings({"LOG_FORMAT": "json"}).log_format == "json"
    assert isinstance(formatter_for("json"), JsonFormatter)
    assert not isinstance(formatter_for("text"), JsonFormatter)
    with pytest.raises(ValueError, match="LOG_FORMAT='yaml'"):
        formatter_for("yaml")


def test_configure_logging_replaces_its_own_handler_only(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    foreign = logging.NullHandler()  # e.g. a test runner's capture
    try:
        root.addHandler(foreign)
        configure_logging("text")
        configure_logging("json")  # twice: still one line per record, in the last format
        logging.getLogger("decisions.app").warning("degraded decision %s", "TXN_9", extra={"transaction_id": "TXN_9"})
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(line["transaction_id"], line["level"]) for line in lines] == [("TXN_9", "WARNING")]
        assert foreign in root.handlers
    finally:
        root.handlers[:], root.level = saved


def test_a_service_logs_json_lines_with_the_setting(tmp_path):
    """A real process: LOG_FORMAT=json in the environment, the decision service's answer logger."""
    code = ("import logging; from fraudops.logs import configure_logging; from fraudops.settings import load_settings;"
            "configure_logging(load_settings().log_format);"
            "from decisions.app import _log_answer;"
            "_log_answer(200, {'transaction_id': 'TXN_42', 'decision': 'review', 'degraded': True,"
            " 'degraded_reason': 'feature_store_unavailable'})")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                          env={"LOG_FORMAT": "json", "PATH": "/usr/bin:/bin", "FRAUDOPS_ENV_FILE": str(tmp_path / "none")})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(x["transaction_id"], x["reason"], x["logger"]) for x in lines] == [
        ("TXN_42", "feature_store_unavailable", "decisions.app")]
    text = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "FRAUDOPS_ENV_FILE": str(tmp_path / "none")})
    assert "WARNING decisions.app: degraded decision review for TXN_42" in text.stderr
