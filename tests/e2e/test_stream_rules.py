"""Rules and lists in the streaming job (the real Spark job, Kafka, PostgreSQL): a published
list change reaches the running job's workers within seconds, without a restart; a block list
raises an alert the model would not, an allow list clears one a review rule raised, and
rules_fired records why (in transactions and fraud_alerts)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from fraudops.contract.messages import serialize_message
from rules.store import ListEntry, RuleStore
from simulator.generator import seed_scenario_messages
from streaming.scoring_job import start_queries
from tests import streaming_support as support
from tests.e2e.test_scoring_job import job_options
from tests.polling import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

RELOAD_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def model_name(settings, history):
    name = f"fraud-detector-rules-stream-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, history)
    return name


def _message(tid: str, user: str, **changes) -> tuple[bytes, bytes]:
    body = {"transaction_id": tid, "user_id": user, "amount": 12.0, "currency": "USD", "merchant": "Grocer",
            "transaction_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "country": "US",
            "transaction_type": "purchase", **changes}
    return user.encode(), serialize_message(body)


def _stored(pg_conn, ns, tid: str):
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT t.is_fraud, t.rules_fired, a.rules_fired IS NOT NULL, t.fraud_score, t.decision_threshold '
                    f'FROM "{ns.pg_schema}".transactions t LEFT JOIN "{ns.pg_schema}".fraud_alerts a '
                    f'USING (transaction_id) WHERE t.transaction_id = %s', (tid,))
        row = cur.fetchone()
    pg_conn.rollback()
    return row


def test_published_lists_steer_the_running_jobs_alerts(spark, settings, pg_conn, namespace, model_name, history):
    from portal.users import save_user

    with pg_conn.cursor() as cur:
        cur.execute("SELECT set_config('search_path', %s, false)", (namespace.pg_schema,))
    save_user(pg_conn, "ana", "rule_author", "correct horse battery staple 42")
    store = RuleStore(pg_conn, four_eyes=True)
    store.create_list("ana", "mule_devices", "block", "device_id")
    store.create_list("ana", "vip_users", "allow", "user_id")
    store.four_eyes = False
    store.save_rule("ana", "big_ru", 'country == "RU" && amount > 1000.0', "review", 50, reason="RU wave")
    store.request("ana", "publish", "big_ru", reason="test")
    store.four_eyes = True
    fraud = seed_scenario_messages()[1]  # the seed's $3,500 RU case: the rule big_ru alerts it
    job = start_queries(spark, settings, job_options(namespace, model_name))
    try:
        support.produce(settings, namespace.topic, [
            _message("TXN_MULE_0", "USER_M", device_id="DEV_MULE"),
            (b"USER_VIP", serialize_message({**fraud, "transaction_id": "TXN_VIP_0", "user_id": "USER_VIP"}))])
        job.process_all_available()
        before_mule, before_vip = _stored(pg_conn, namespace, "TXN_MULE_0"), _stored(pg_conn, namespace, "TXN_VIP_0")
        assert before_mule[0] is False and before_mule[1] is None  # a small payment: no alert, no rules yet
        assert before_vip[0] is True, "the review rule alerts the seed's fraud case"
        assert {"name": "big_ru", "version": 1, "action": "review", "shadow": False} in before_vip[1]

        store.change_list("ana", "mule_devices", add=[ListEntry("DEV_MULE")], reason="case 9")
        store.change_list("ana", "vip_users", add=[ListEntry("USER_VIP")], reason="known customer")
        published = time.monotonic()
        sent = []

        def listed():
            i = len(sent) + 1
            sent.append(i)
            support.produce(settings, namespace.topic, [
                _message(f"TXN_MULE_{i}", "USER_M", device_id="DEV_MULE"),
                (b"USER_VIP", serialize_message({**fraud, "transaction_id": f"TXN_VIP_{i}", "user_id": "USER_VIP"}))])
            job.process_all_available()
            mule = _stored(pg_conn, namespace, f"TXN_MULE_{i}")
            return mule is not None and mule[0] is True

        assert_eventually(listed, timeout=RELOAD_WITHIN_S, interval=0.2, message="the job applied the lists")
        print(f"lists applied {time.monotonic() - published:.1f} s after the change")
        last = len(sent)
        is_fraud, rules_fired, has_alert, _, _ = _stored(pg_conn, namespace, f"TXN_MULE_{last}")
        assert is_fraud and has_alert
        assert {"name": "list:mule_devices", "version": 0, "action": "block", "shadow": False} in rules_fired
        vip = _stored(pg_conn, namespace, f"TXN_VIP_{last}")
        assert vip[0] is False and vip[2] is False, "the allow list clears the rule's alert"
        assert {"name": "list:vip_users", "version": 0, "action": "allow", "shadow": False} in vip[1]
        assert {"name": "big_ru", "version": 1, "action": "review", "shadow": False} in vip[1]  # fired, overruled
        with pg_conn.cursor() as cur:
            cur.execute(f'SELECT rules_fired FROM "{namespace.pg_schema}".fraud_alerts WHERE transaction_id = %s',
                        (f"TXN_MULE_{last}",))
            assert json.dumps(cur.fetchone()[0]) == json.dumps(rules_fired)
        pg_conn.rollback()
    finally:
        job.stop()
    assert not job.failures(), [q.exception() for q in job.failures()]
