"""The analyst portal in a real headless browser (Debian's chromium + chromedriver, selenium),
with the streaming job running (spark-submit) on its own namespace.

An analyst logs in; a transaction the model flags is produced to Kafka; the alert appears in the
open queue page without a reload (server-sent events); the analyst opens it and confirms it; the
label, the alert's status and the audit row are then in PostgreSQL. A viewer's review is refused
(403); ten wrong passwords throttle the login. A transaction the decision service declined (its
decided message on the decisions topic) shows its "decline" badge in the queue and its thresholds
in the detail; the stream's own alert shows "stream". Screenshots of each page go to
``<tmp_path>/screenshots`` (the path is printed).
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pandas as pd
import pytest
from selenium.webdriver.common.by import By

from fraudops.contract.decisions import decided_message
from fraudops.contract.messages import serialize_message
from tests import portal_support as portal
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")
ANALYST, VIEWER, EVE = ("ana", "ana-password-123"), ("vera", "vera-password-123"), ("eve", "eve-password-123")
WARMUP_ROWS = 400
FLAG_SCORE = 0.8  # the target transaction scores at least this (threshold 0.5)


def browser(profile_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def browser_login(driver, base_url, name, password):
    driver.get(base_url + "/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    submit_and_wait(driver, By.ID, "login-button")


def text_of(driver, element_id: str) -> str:
    """The text of the element once the (possibly still loading) page has it."""
    return assert_eventually(lambda: driver.find_element(By.ID, element_id).text or " ", timeout=60, interval=0.1,
                             message=f"element #{element_id} on {driver.current_url}")


def submit_and_wait(driver, by, value):
    """Click and wait until the browser has left the current page (the next one is loading or loaded)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, value).click()
    WebDriverWait(driver, 60).until(expected_conditions.staleness_of(page))


def flagged_target(model_name, history):
    """(warm-up rows, target row): the first fraud after the warm-up that the registered model
    scores >= FLAG_SCORE with the stream's features (all of its user's earlier rows are streamed
    before it, and the stream has no labels: merchants at the prior)."""
    import mlflow

    from features.batch import compute_features
    from features.definition import CATEGORICAL_FEATURES, NUMERIC_FEATURES
    from fraudops.modeling.model import prepare_model_input

    rows = history.sort_values("transaction_time").reset_index(drop=True).head(WARMUP_ROWS + 400)
    featured = compute_features(rows, use_history_labels=False).set_index("transaction_id").loc[rows["transaction_id"]]
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/Production")
    scores = pd.Series(model.predict(prepare_model_input(featured, NUMERIC_FEATURES, CATEGORICAL_FEATURES)),
                       index=rows.index)
    candidates = rows.index[(rows.index >= WARMUP_ROWS) & rows["is_fraud"].astype(bool) & (scores >= FLAG_SCORE)]
    assert len(candidates), "no fraud of the simulated history scores high enough"
    target = int(candidates[0])
    return rows.iloc[:target], rows.iloc[target]


def messages(rows: pd.DataFrame):
    return [(r["user_id"].encode(), serialize_message(r)) for r in rows.to_dict("records")]


def declined(history, target) -> tuple[str, bytes, bytes]:
    """(transaction_id, key, value): a decided message as the decision service publishes it, declining a
    transaction of another user than the target's (it never touches the target's features)."""
    row = history.loc[history["user_id"] != target["user_id"]].iloc[[-1]].to_dict("records")[0]
    row["transaction_id"] = f"TXN_DECIDED_{uuid.uuid4().hex[:8]}"
    decided = {"decision": "decline", "fraud_score": 0.97, "review_threshold": 0.5, "decline_threshold": 0.9,
               "model_version": "1", "feature_set_version": "test", "features": {"amount": float(row["amount"])},
               "reasons": [], "decided_at": pd.Timestamp.now(tz="UTC").isoformat(), "degraded": False,
               "degraded_reason": None}
    return row["transaction_id"], row["user_id"].encode(), decided_message(row, decided)


def decision_badge(driver, tid: str) -> str:
    """The decision badge of ``tid``'s row in the open queue page (once the row is there)."""
    return assert_eventually(
        lambda: driver.find_element(By.XPATH, f"//tr[.//a[text()='{tid}']]//span[@data-decision]").text,
        timeout=30, interval=0.1, message=f"decision badge of {tid} in the queue")


def one(pg_conn, sql, params=()):
    with pg_conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    pg_conn.rollback()
    return row


@pytest.mark.timeout(1800)
def test_analyst_sees_a_live_alert_confirms_it_and_the_loop_records_it(settings, pg_conn, unique_name, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    history = support.small_history()
    model_name = f"fraud-detector-portal-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, model_name, history)
    warmup, target = flagged_target(model_name, history)
    ns = support.make_namespace(pg_conn, settings, unique_name, tmp_path)
    for (name, password), role in ((ANALYST, "analyst"), (VIEWER, "viewer"), (EVE, "analyst")):
        assert portal.add_user(ns.pg_schema, name, role, password).returncode == 0
    site = portal.start_portal(ns.pg_schema, tmp_path / "portal.log", env={"MODEL_NAME": model_name})
    job = support.spark_submit(ns, model_name, tmp_path / "job.log")
    driver = browser(tmp_path / "chromium-profile")
    try:
        # the job is up and scoring: the warm-up (the target user's earlier rows among them) is in
        support.produce(settings, ns.topic, messages(warmup))
        assert_eventually(lambda: support.count(pg_conn, ns, "transactions") >= len(warmup), timeout=900,
                          interval=1.0, message=f"warm-up scored (log {tmp_path / 'job.log'})")

        browser_login(driver, site.base_url, *ANALYST)
        assert_eventually(lambda: driver.find_element(By.ID, "live-state").text == "live", timeout=30,
                          interval=0.2, message="queue page connected to the live stream")
        driver.save_screenshot(str(shots / "1_queue.png"))
        driver.execute_script("window.portalTestMarker = 'same page';")  # gone if the page reloads

        tid = target["transaction_id"]
        support.produce(settings, ns.topic, messages(target.to_frame().T))
        seen = {}

        def alert_committed_and_shown():
            now = time.monotonic()
            if "db" not in seen and support.count(pg_conn, ns, "fraud_alerts", f"transaction_id = '{tid}'"):
                seen["db"] = now
            if "page" not in seen and driver.find_elements(By.LINK_TEXT, tid):
                seen["page"] = now
            return len(seen) == 2

        assert_eventually(alert_committed_and_shown, timeout=600, interval=0.05,
                          message=f"alert {tid} committed and shown in the open queue")
        assert driver.execute_script("return window.portalTestMarker;") == "same page", "the queue page reloaded"
        print(f"alert {tid}: shown {seen['page'] - seen['db']:+.2f} s after it was visible in PostgreSQL "
              "(poll every 0.05 s)")
        assert decision_badge(driver, tid) == "stream"  # alerted by the stream alone
        decided_tid, key, value = declined(history, target)
        support.produce(settings, ns.decisions_topic, [(key, value)])
        assert_eventually(lambda: driver.find_elements(By.LINK_TEXT, decided_tid), timeout=600, interval=0.1,
                          message=f"declined transaction {decided_tid} shown in the open queue")
        assert decision_badge(driver, decided_tid) == "decline"
        driver.save_screenshot(str(shots / "2_queue_live_alert.png"))

        submit_and_wait(driver, By.LINK_TEXT, tid)
        assert text_of(driver, "alert-status") == "pending"
        stored = one(pg_conn, f'SELECT reasons FROM "{ns.pg_schema}".fraud_alerts WHERE transaction_id = %s', (tid,))[0]
        shown = text_of(driver, "reasons")  # the job's top contributing features, or the fallback text
        assert all(r["name"] in shown for r in stored) if stored else "no reasons recorded" in shown
        driver.save_screenshot(str(shots / "3_alert_detail.png"))
        driver.find_element(By.ID, "note").send_keys("customer confirmed the card was stolen")
        submit_and_wait(driver, By.ID, "confirm-button")
        assert text_of(driver, "review-result") == "Review recorded."
        assert text_of(driver, "alert-status") == "confirmed"
        driver.save_screenshot(str(shots / "4_alert_confirmed.png"))

        schema = ns.pg_schema
        assert one(pg_conn, f'SELECT is_fraud, source FROM "{schema}".labels WHERE transaction_id = %s',
                   (tid,)) == (True, "analyst")
        assert one(pg_conn, f'SELECT alert_status, reviewed_by, notes, reviewed_at IS NOT NULL FROM "{schema}"'
                            ".fraud_alerts WHERE transaction_id = %s", (tid,)) == (
            "confirmed", ANALYST[0], "customer confirmed the card was stolen", True)
        assert one(pg_conn, f'SELECT count(*) FROM "{schema}".audit_log WHERE event_type = \'alert_reviewed\' '
                            "AND actor = %s AND details->>'transaction_id' = %s AND details->>'status' = 'confirmed'",
                   (ANALYST[0], tid)) == (1,)

        driver.get(f"{site.base_url}/alerts/{decided_tid}")
        assert text_of(driver, "decision") == "decline"
        assert (text_of(driver, "review-threshold"), text_of(driver, "decline-threshold")) == ("0.500", "0.900")
        assert text_of(driver, "decided-at").endswith("UTC") and not driver.find_elements(By.ID, "degraded")
        driver.save_screenshot(str(shots / "4_decided_alert_detail.png"))

        driver.get(site.base_url + "/models")
        assert text_of(driver, "production") == "v1"  # the test's model (MODEL_NAME)
        driver.save_screenshot(str(shots / "6_models.png"))
        submit_and_wait(driver, By.ID, "challenger-link")  # the test's model has no challenger
        assert text_of(driver, "champion-version") == "v1" and text_of(driver, "challenger-version") == "none"
        assert text_of(driver, "challenger-state").startswith("no challenger")
        driver.save_screenshot(str(shots / "6_models_challenger.png"))
        driver.get(site.base_url + "/dashboard")
        assert_eventually(lambda: driver.find_element(By.ID, "production-version").text == "v1", timeout=60,
                          interval=1.0, message="dashboard shows the Production version (background refresh)")
        driver.save_screenshot(str(shots / "5_dashboard.png"))

        viewer_is_refused(driver, site.base_url, tid, shots)
        ten_wrong_passwords_throttle(driver, site.base_url, shots)
    finally:
        driver.quit()
        site.stop()
        stop_job_group(job)
        support.drop_namespace(pg_conn, ns)
    assert sorted(p.name for p in shots.iterdir()) == [
        "1_queue.png", "2_queue_live_alert.png", "3_alert_detail.png", "4_alert_confirmed.png",
        "4_decided_alert_detail.png", "5_dashboard.png", "6_models.png", "6_models_challenger.png", "7_viewer_review_403.png", "8_login_throttled.png"]


def stop_job_group(job) -> None:
    """SIGTERM to the job's process group (as `make stream-stop`); SIGKILL whatever is left after 120 s
    (the Python driver included: nothing of the job may outlive the test)."""
    if support.group_alive(job.pid):
        os.killpg(job.pid, signal.SIGTERM)
    try:
        assert_eventually(lambda: not support.group_alive(job.pid), timeout=120, interval=0.5,
                          message="the job's processes ended after SIGTERM")
    except AssertionError:
        os.killpg(job.pid, signal.SIGKILL)
    job.wait(30)


def viewer_is_refused(driver, base_url, tid, shots):
    """The viewer sees no review form; a review posted anyway (a hand-made form) gets 403."""
    driver.delete_all_cookies()
    browser_login(driver, base_url, *VIEWER)
    driver.get(f"{base_url}/alerts/{tid}")
    assert not driver.find_elements(By.ID, "review-form")
    status = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const token = document.querySelector('input[name=csrf_token]').value;
        const body = new URLSearchParams({csrf_token: token, state: 'confirmed|', decision: 'false_positive'});
        fetch(location.pathname + '/review', {method: 'POST', body: body, credentials: 'same-origin'})
            .then(r => r.text().then(text => { document.open(); document.write(text); document.close(); done(r.status); }));
    """)
    assert status == 403
    assert "viewer" in text_of(driver, "error-message")
    driver.save_screenshot(str(shots / "7_viewer_review_403.png"))


def ten_wrong_passwords_throttle(driver, base_url, shots):
    driver.delete_all_cookies()
    for attempt in range(10):
        browser_login(driver, base_url, EVE[0], f"not-the-password-{attempt}")
        assert "Wrong user name or password" in text_of(driver, "login-message")
    browser_login(driver, base_url, *EVE)  # the right password, but too late
    assert "Too many failed logins" in text_of(driver, "login-message")
    driver.save_screenshot(str(shots / "8_login_throttled.png"))
