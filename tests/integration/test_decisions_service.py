"""The decision service against the real stack: Redis feature store, PostgreSQL, Kafka, MLflow.

Each module run has its own PostgreSQL schema, feature-store prefix, decisions topic and
registered model; the service runs as its own process (python -m decisions serve)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest

from fraudops.contract.messages import validate_message
from tests import decisions_support as ds
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def model_name(settings):
    name = f"fraud-detector-decisions-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, support.small_history())
    return name


@pytest.fixture(scope="module")
def space(settings):
    with ds.private_space(settings) as created:
        yield created


@pytest.fixture(scope="module")
def service(settings, space, model_name, tmp_path_factory):
    slow_key = ds.create_key(settings, space["schema"], "slow-client", rate_limit=2.0)
    log_path = tmp_path_factory.mktemp("decisions") / "service.log"
    with ds.decision_service(settings, space["schema"], space["prefix"], space["topic"],
                             f"models:/{model_name}/Production", log_path) as running:
        running.slow_key = slow_key
        yield running


@pytest.fixture(scope="module")
def fs_client(settings):
    from features.online import FeatureStoreTarget

    client = FeatureStoreTarget(settings.feature_store_host, settings.feature_store_port,
                                settings.feature_store_password).connect()
    yield client
    client.close()


def published(settings, topic: str, ids: set[str], timeout: float = 60.0) -> dict[str, dict]:
    """transaction_id -> decided message of ``ids`` on ``topic`` (the last copy of each)."""
    messages = support.consume_all(settings, topic, f"g-{uuid.uuid4().hex[:8]}", 1, timeout)
    found: dict[str, dict] = {}

    def more():
        for m in messages:
            body = json.loads(m.value())
            found[body["transaction_id"]] = body
        if ids <= found.keys():
            return True
        messages[:] = support.consume_all(settings, topic, f"g-{uuid.uuid4().hex[:8]}", len(found) + 1, 10)
        return ids <= found.keys()

    assert_eventually(more, timeout=timeout, interval=0.5, message=f"{len(ids)} decisions on {topic}")
    return {tid: found[tid] for tid in ids}


def test_a_decision_carries_the_served_models_score_thresholds_and_reasons(settings, service, space, model_name):
    import mlflow.pyfunc

    from features.definition import CATEGORICAL_FEATURES, FEATURE_COLUMNS

    bodies = [ds.transaction(0, user=f"U_{space['tag']}_a", amount=3500.0, country="RU", merchant="Unknown Shop"),
              ds.transaction(1, user=f"U_{space['tag']}_b", amount=12.5)]
    answers = [service.post(b) for b in bodies]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    out = [a.json() for a in answers]
    for body, answer in zip(bodies, out, strict=True):
        assert answer["transaction_id"] == body["transaction_id"]
        assert answer["decision"] in ("approve", "review", "decline")
        assert answer["thresholds"] == {"review": 0.5, "decline": 0.9}  # no decline tag: the fallback
        assert answer["model_version"] == "1" and answer["degraded"] is False and answer["replayed"] is False
        assert 0.0 <= answer["score"] <= 1.0 and answer["latency_ms"] > 0
        expected = "decline" if answer["score"] >= 0.9 else "review" if answer["score"] >= 0.5 else "approve"
        assert answer["decision"] == expected
        assert bool(answer["reasons"]) == (answer["decision"] != "approve")
    # the score is the registry pyfunc's P(fraud) of the features the service published
    messages = published(settings, space["topic"], {b["transaction_id"] for b in bodies})
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/1")
    for answer in out:
        decided = messages[answer["transaction_id"]]["decision"]
        assert decided["fraud_score"] == answer["score"] and decided["decision"] == answer["decision"]
        row = pd.DataFrame([decided["features"]])[FEATURE_COLUMNS]
        for name in FEATURE_COLUMNS:
            if name not in CATEGORICAL_FEATURES:
                row[name] = row[name].astype("float64")
        np.testing.assert_allclose(model.predict(row), [answer["score"]], rtol=0, atol=1e-12)


def test_the_same_request_returns_the_stored_decision_and_adds_nothing(service, space, fs_client):
    user = f"U_{space['tag']}_idem"
    body = ds.transaction(2, user=user)
    first = service.post(body).json()
    key = f"{space['prefix']}fs:user:{user}"
    assert fs_client.zcard(key) == 1
    again = service.post(json.dumps(body, indent=2).encode())  # other whitespace: the same transaction
    assert again.status_code == 200
    assert {**again.json(), "replayed": False, "latency_ms": 0} == {**first, "latency_ms": 0}
    assert again.json()["replayed"] is True
    assert fs_client.zcard(key) == 1
    conflict = service.post({**body, "amount": body["amount"] + 1})
    assert conflict.status_code == 409 and conflict.json()["reason"] == "transaction_id_conflict"
    assert fs_client.zcard(key) == 1


def test_the_customers_next_transaction_a_millisecond_later_sees_the_first(settings, service, space):
    user = f"U_{space['tag']}_next"
    t0 = pd.Timestamp.now(tz="UTC").floor("s")
    first = ds.transaction(3, user=user, transaction_time=t0.strftime("%Y-%m-%dT%H:%M:%S.%f"))
    second = ds.transaction(4, user=user, transaction_time=(t0 + pd.Timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f"))
    assert service.post(first).status_code == 200
    assert service.post(second).status_code == 200
    messages = published(settings, space["topic"], {first["transaction_id"], second["transaction_id"]})
    assert messages[first["transaction_id"]]["decision"]["features"]["user_txn_count_1h"] == 0
    features = messages[second["transaction_id"]]["decision"]["features"]
    assert features["user_txn_count_1h"] == 1 and features["user_seconds_since_prev"] == pytest.approx(0.001)


@pytest.mark.parametrize("body", [
    b'{"transaction_id": "TXN_DUP", "user_id": "U_BAD", "amount": 1, "amount": 2, "currency": "USD", '
    b'"merchant": "m", "transaction_time": "2026-01-01T00:00:00", "country": "US", "transaction_type": "purchase"}',
    json.dumps({**ds.transaction(5, user="U_BAD"), "currency": "usd"}).encode(),
    json.dumps({k: v for k, v in ds.transaction(6, user="U_BAD").items() if k != "amount"}).encode(),
    json.dumps({**ds.transaction(7, user="U_BAD"), "amount": -3}).encode(),
    b"not json",
])
def test_an_invalid_transaction_gets_the_quarantine_reason_and_writes_nothing(service, space, fs_client, body):
    _, reason = validate_message(body)
    assert reason is not None
    answer = service.post(body)
    assert answer.status_code == 422
    assert answer.json() == {"error": "invalid_transaction", "reason": reason}
    assert not list(fs_client.scan_iter(f"{space['prefix']}fs:user:U_BAD*"))
    assert not list(fs_client.scan_iter(f"{space['prefix']}decision:TXN_DUP"))


def refusals(settings, schema: str) -> list[str]:
    from fraudops.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT details->>'reason' FROM \"{schema}\".audit_log "
                        "WHERE event_type = 'decision_request_refused'")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def test_unauthenticated_oversized_and_too_fast_requests_are_refused_and_logged(settings, service, space):
    body = ds.transaction(8, user=f"U_{space['tag']}_auth")
    assert service.post(body, key="").status_code == 401
    assert service.post(body, key="fdk_not-a-key").status_code == 401
    big = json.dumps({**body, "padding": "x" * 20_000}).encode()
    assert service.post(big).status_code == 413
    statuses = [service.post(ds.transaction(9 + i, user=f"U_{space['tag']}_slow{i}"), key=service.slow_key).status_code
                for i in range(6)]
    assert 429 in statuses and statuses[0] == 200  # 2/s: the burst is spent within the loop
    assert_eventually(lambda: sorted(set(refusals(settings, space["schema"]))) ==
                      ["oversized_message", "rate_limited", "unauthenticated"], timeout=30,
                      message="each refusal in audit_log")
    assert refusals(settings, space["schema"]).count("unauthenticated") == 2


def test_a_promotion_is_served_without_a_restart_and_audited(settings, service, space, model_name):
    assert service.health().json()["model_version"] == "1"
    support.train_and_register(settings, model_name, support.small_history(seed=11), seed=3, threshold=0.6)
    assert_eventually(lambda: service.health().json()["model_version"] == "2", timeout=120, interval=0.5,
                      message="version 2 served")
    answer = service.post(ds.transaction(20, user=f"U_{space['tag']}_v2")).json()
    assert answer["model_version"] == "2" and answer["thresholds"]["review"] == 0.6
    from fraudops.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT actor, details->>'to_version' FROM \"{space['schema']}\".audit_log "
                        "WHERE event_type = 'model_switch'")
            assert ("decision-service", "2") in cur.fetchall()
    finally:
        conn.close()
    assert service.proc.poll() is None


@pytest.mark.parametrize("mode,expected", [("review", "review"), ("approve-and-flag", "approve")])
def test_without_a_model_every_answer_is_the_degraded_mode(settings, space, tmp_path, mode, expected):
    with ds.decision_service(settings, space["schema"], space["prefix"] + "nomodel:", space["topic"],
                             f"models:/no-such-model-{uuid.uuid4().hex[:6]}/Production", tmp_path / "s.log",
                             ready=False, extra=("--degraded-mode", mode)) as running:
        health = running.health()
        assert health.status_code == 503 and health.json()["model_version"] is None
        body = ds.transaction(30, user=f"U_{space['tag']}_nomodel")
        answer = running.post(body)
        assert answer.status_code == 200
        assert answer.json()["decision"] == expected and answer.json()["degraded"] is True
        assert answer.json()["degraded_reason"] == "model_unavailable" and answer.json()["score"] is None
    message = published(settings, space["topic"], {body["transaction_id"]})[body["transaction_id"]]
    assert message["decision"]["degraded"] is True and message["decision"]["decision"] == expected


def test_with_the_feature_store_stopped_the_answer_is_degraded_then_normal_again(settings, space, model_name,
                                                                                 tmp_path):
    from tests.reliability.reliability_support import private_service

    with private_service("feature-store") as store:
        env = store.env()
        with ds.decision_service(settings, space["schema"], space["prefix"] + "fsdown:", space["topic"],
                                 f"models:/{model_name}/Production", tmp_path / "s.log", env=env) as running:
            user = f"U_{space['tag']}_fsdown"
            assert running.post(ds.transaction(40, user=user)).json()["degraded"] is False
            store.stop("feature-store")
            answer = running.post(ds.transaction(41, user=user))
            assert answer.status_code == 200, answer.text
            assert answer.json()["degraded"] is True
            assert answer.json()["degraded_reason"] == "feature_store_unavailable"
            assert answer.json()["decision"] == "review"
            assert running.health().json()["feature_store"] == "down"
            store.start("feature-store")
            assert_eventually(lambda: running.post(ds.transaction(42, user=user)).json()["degraded"] is False,
                              timeout=60, interval=0.5, message="normal decisions once the store is back")


def test_a_request_still_queued_past_its_budget_gets_the_degraded_answer_and_keeps_it(settings, space, model_name,
                                                                                       tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ds.decision_service(settings, space["schema"], space["prefix"] + "budget:", space["topic"],
                             f"models:/{model_name}/Production", tmp_path / "s2.log",
                             extra=("--timeout-ms", "1")) as running:
        bodies = [ds.transaction(50 + i, user=f"U_{space['tag']}_budget{i % 3}") for i in range(40)]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda b: running.post(b), bodies))
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
        timed_out = [(b, a.json()) for b, a in zip(bodies, answers, strict=True) if a.json()["degraded"]]
        assert timed_out, "no request waited past a 1 ms budget"
        for _body, answer in timed_out:
            assert answer["degraded_reason"] == "timeout" and answer["decision"] == "review"
        body, answer = timed_out[0]
        again = running.post(body).json()  # the answer given is the answer kept
        assert again["replayed"] is True and again["degraded"] is True and again["decision"] == answer["decision"]
