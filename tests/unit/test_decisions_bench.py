"""The pure helpers of bench.decisions_bench: pacing, percentiles, the step search, py-spy
parsing and the merge into bench/RESULTS.{json,md} (no stack needed)."""

from __future__ import annotations

import json

import pytest

from bench import decisions_bench as db

pytestmark = pytest.mark.unit


def test_latency_summary_nearest_rank():
    values = list(range(1, 101))  # 1..100 ms
    summary = db.latency_summary(values)
    assert summary["n"] == 100
    assert summary["p50"] == 50 and summary["p99"] == 99 and summary["max"] == 100
    assert db.latency_summary([]) == {"n": 0}
    assert db.latency_summary([7.0])["p99"] == 7.0


def test_send_offsets_interleave_the_processes_at_the_rate():
    rate, workers, per = 1000.0, 2, 3
    offsets = sorted(o for i in range(workers) for o in db.send_offsets(i, workers, per, rate))
    assert offsets == pytest.approx([k / rate for k in range(workers * per)])


def test_clients_for():
    assert db.clients_for(200) == 1
    assert db.clients_for(1000) == 1
    assert db.clients_for(1001) == 2
    assert db.clients_for(2000, per_process=500) == 4


def test_live_days_covers_the_stream_with_margin():
    # 20,000 customers x 2.5 tx/day = 50,000 tx per event-time day
    assert db.live_days(100_000, 20_000, margin=1.0) == pytest.approx(2.05)
    assert db.live_days(100_000, 20_000) > 2.0


def _sample(latency_s, status=200, degraded=0.0, lag_s=0.0, server=1.0):
    return (0.0, lag_s, latency_s, float(status), degraded, server)


def test_phase_summary_counts_errors_and_degraded():
    samples = [_sample(0.010)] * 97 + [_sample(0.060, degraded=1.0), _sample(0.02, status=503), _sample(0.0, 0)]
    phase = db.phase_summary(samples, rate=100.0, seconds=1.0)
    assert phase["requests"] == 100 and phase["answered"] == 99 and phase["ok"] == 98
    assert phase["errors"] == 2 and phase["degraded"] == 1
    assert phase["statuses"] == {"200": 98, "503": 1, "0": 1}
    assert phase["achieved_rps"] == 99.0
    assert phase["latency_ms"]["max"] == 60.0


def test_step_search_stops_at_the_first_miss():
    def step(rate, p99, errors=0, achieved=None):
        return {"offered_rps": rate, "latency_ms": {"p99": p99}, "errors": errors, "not_sent": 0,
                "achieved_rps": rate if achieved is None else achieved}

    steps = [step(100, 12), step(200, 30), step(400, 49.9), step(600, 80), step(800, 20)]
    for s in steps:
        s["met"] = db.step_met(s)
    assert [s["met"] for s in steps] == [True, True, True, False, True]
    assert db.max_rate_met(steps) == 400
    assert db.step_met(step(100, 10, errors=1)) is False
    assert db.step_met(step(100, 10, achieved=80)) is False
    assert db.max_rate_met([{**step(25, 70), "met": False}]) == 0.0
    assert db.max_rate_met([]) is None


def test_gil_shares_from_py_spy_raw():
    raw = ("thread (0x1): MainThread;Runner.run (asyncio/runners.py:118);post_decision (decisions/app.py:70) 30\n"
           "thread (0x2): decisions-batcher;Batcher._run (decisions/batcher.py:93);"
           "decide (decisions/engine.py:120);stream_features (features/stream.py:45) 50\n"
           "garbage line\n")
    shares = db.gil_shares(raw, duration_s=1.0, rate_hz=100)
    assert shares["samples"] == 80 and shares["gil_held_share"] == 0.8
    assert shares["threads"] == {"decisions-batcher": 0.5, "MainThread": 0.3}
    frames = shares["frames_share_of_gil"]
    assert frames["engine.decide (batch thread)"] == pytest.approx(50 / 80, abs=1e-3)
    assert frames["endpoint post_decision"] == pytest.approx(30 / 80, abs=1e-3)


def test_results_merge_keeps_other_keys_and_sections(tmp_path):
    (tmp_path / "RESULTS.json").write_text(json.dumps({"e2e_sustained_tx_per_s": 5848.9, "decision_max_rps": 1}))
    (tmp_path / "RESULTS.md").write_text("# Benchmarks\n\n## Streaming\n\ntable\n")
    result = {"phases": [{"offered_rps": 1000.0, "latency_ms": {"p50": 30.0, "p99": 70.0}},
                         {"offered_rps": 200.0, "latency_ms": {"p50": 10.0, "p99": 25.0}}],
              "steps": [{"offered_rps": 100.0, "met": True}, {"offered_rps": 200.0, "met": False}],
              "materialize": {"rows_per_s": 120_000}}
    db.write_committed(result, tmp_path)
    data = json.loads((tmp_path / "RESULTS.json").read_text())
    assert data["e2e_sustained_tx_per_s"] == 5848.9
    assert data["decision_p99_ms_at_1000"] == 70.0 and data["decision_p50_ms_at_1000"] == 30.0
    assert data["decision_p99_ms_at_200"] == 25.0 and data["decision_max_rps"] == 100.0
    assert data["materialize_rows_per_s"] == 120_000
    md = (tmp_path / "RESULTS.md").read_text()
    assert md.startswith("# Benchmarks\n\n## Streaming\n\ntable\n")
    assert md.count(db.SECTION_BEGIN) == 1 and "decision_p99_ms_at_1000" in md
    db.write_committed(result, tmp_path)  # a second run replaces its section
    assert (tmp_path / "RESULTS.md").read_text().count(db.SECTION_BEGIN) == 1


def test_carry_over_puts_back_the_previous_section(tmp_path):
    previous_md = db.replace_section("# old\n", "## Decision service\n\nnumbers\n")
    previous_json = {"decision_max_rps": 400.0, "p50_latency_s_at_2000": 9.9}
    (tmp_path / "RESULTS.md").write_text("# new\n")
    (tmp_path / "RESULTS.json").write_text(json.dumps({"p50_latency_s_at_2000": 1.2}))
    db.carry_over(tmp_path, previous_json, previous_md)
    assert json.loads((tmp_path / "RESULTS.json").read_text()) == {"p50_latency_s_at_2000": 1.2,
                                                                   "decision_max_rps": 400.0}
    md = (tmp_path / "RESULTS.md").read_text()
    assert md.startswith("# new\n") and "numbers" in md and db.existing_section(md).startswith("## Decision")
