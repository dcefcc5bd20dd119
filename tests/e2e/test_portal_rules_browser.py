"""The portal's rules pages in a real headless browser (Debian's chromium + chromedriver, selenium),
with the real decision service on the same schema.

A rule_author logs in, writes a rule, validates it, saves it, backtests it and requests publishing;
a rule_approver logs in and approves; within 10 s (the service reloads rules every 5 s) a
transaction sent to the decision service is declined and its decision's "rules" names the rule.
Screenshots of each page go to ``<tmp_path>/screenshots`` (the path is printed).
"""

from __future__ import annotations

import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests import decisions_support as ds
from tests import portal_support as portal
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")
AUTHOR, APPROVER = ("rita", "rita-password-123"), ("aaron", "aaron-password-123")
RULE = "portal_evil_shop"
SHOP = "Portal Evil Shop"
EXPRESSION = f'merchant == "{SHOP}" && amount > 100.0'
RELOAD_WITHIN_S = 10.0


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


def submit_and_wait(driver, by, value):
    """Click and wait until the browser has left the current page (the next one is loading or loaded)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, value).click()
    WebDriverWait(driver, 60).until(expected_conditions.staleness_of(page))


def browser_login(driver, base_url, name, password):
    driver.get(base_url + "/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    submit_and_wait(driver, By.ID, "login-button")


def text_of(driver, element_id: str) -> str:
    return assert_eventually(lambda: driver.find_element(By.ID, element_id).text or " ", timeout=60, interval=0.1,
                             message=f"element #{element_id} on {driver.current_url}")


def one(conn, sql, params=()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    conn.rollback()
    return row


@pytest.mark.timeout(1200)
def test_author_writes_and_requests_approver_approves_and_the_service_applies_it(settings, tmp_path):
    from portal.users import save_user

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    model_name = f"fraud-detector-portal-rules-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, model_name, support.small_history())
    with ds.private_space(settings, "w") as space:
        schema = space["schema"]
        conn = ds.schema_connection(settings, schema)
        for (name, password), role in ((AUTHOR, "rule_author"), (APPROVER, "rule_approver")):
            save_user(conn, name, role, password)
        for i, amount in enumerate((40.0, 400.0)):  # something for the backtest to count (resets search_path)
            portal.insert_alert(conn, schema, f"TXN_PR_{space['tag']}_{i}", amount=amount)
        site = portal.start_portal(schema, tmp_path / "portal.log", env={"RULES_FOUR_EYES": "true"})
        driver = browser(tmp_path / "chromium-profile")
        try:
            with ds.decision_service(settings, schema, space["prefix"], space["topic"],
                                     f"models:/{model_name}/Production", tmp_path / "service.log") as service:
                user = f"U_{space['tag']}_evil"
                before = service.post(ds.transaction(0, user=user, merchant=SHOP, amount=150.0)).json()
                assert not any(r["name"] == RULE for r in before["rules"])

                request_id = author_writes_and_requests(driver, site.base_url, shots)
                approver_approves(driver, site.base_url, request_id, shots)
                assert one(conn, f'SELECT state FROM "{schema}".rules WHERE'
                           "  name = %s AND version = 1", (RULE,)) == ("active",)
                assert one(conn, f'SELECT requested_by, decided_by, status FROM "{schema}".rule_change_requests '
                                 "WHERE request_id = %s", (request_id,)) == (AUTHOR[0], APPROVER[0], "applied")

                answers = []

                def decided_by_the_rule():
                    response = service.post(ds.transaction(len(answers) + 1, user=user, merchant=SHOP, amount=150.0))
                    assert response.status_code == 200, response.text
                    answers.append(response.json())
                    return any(r["name"] == RULE for r in answers[-1]["rules"])

                assert_eventually(decided_by_the_rule, timeout=RELOAD_WITHIN_S, interval=0.25,
                                  message=f"the published rule applied by the decision service ({service.log_path})")
                answer = answers[-1]
                assert {"name": RULE, "version": 1, "action": "decline", "shadow": False} in answer["rules"]
                assert answer["decision"] == "decline"
                print(f"applied after {len(answers)} request(s); rules: {answer['rules']}")
        finally:
            driver.quit()
            site.stop()
            conn.close()
    assert sorted(p.name for p in shots.iterdir()) == [
        "1_rule_checked.png", "2_rule_saved.png", "3_backtest.png", "4_requested.png", "5_approved.png"]


def author_writes_and_requests(driver, base_url, shots) -> int:
    browser_login(driver, base_url, *AUTHOR)
    submit_and_wait(driver, By.ID, "rules-link")
    driver.find_element(By.ID, "rule-name").send_keys(RULE)
    Select(driver.find_element(By.ID, "rule-action")).select_by_visible_text("decline")
    priority = driver.find_element(By.ID, "rule-priority")
    priority.clear()
    priority.send_keys("10")
    driver.find_element(By.ID, "rule-expression").send_keys(EXPRESSION)
    driver.find_element(By.ID, "rule-reason").send_keys("merchant under investigation")
    submit_and_wait(driver, By.ID, "check-button")
    assert text_of(driver, "check-result") == "ok: reads amount, merchant; lists none"
    assert driver.find_element(By.ID, "rule-expression").get_attribute("value") == EXPRESSION  # kept
    driver.save_screenshot(str(shots / "1_rule_checked.png"))

    submit_and_wait(driver, By.ID, "save-button")
    assert text_of(driver, "rule-result") == "Saved version 1 (draft)."
    assert text_of(driver, "rule-state") == "draft"
    driver.save_screenshot(str(shots / "2_rule_saved.png"))

    days = driver.find_element(By.ID, "backtest-days")
    days.clear()
    days.send_keys("7")
    submit_and_wait(driver, By.ID, "backtest-button")
    assert (text_of(driver, "bt-days"), text_of(driver, "bt-transactions"), text_of(driver, "bt-hits")) == (
        "7", "2", "0")  # the stored transactions are at "Shop"
    assert text_of(driver, "bt-precision") == "n/a"
    driver.save_screenshot(str(shots / "3_backtest.png"))

    Select(driver.find_element(By.ID, "request-kind")).select_by_visible_text("publish")
    driver.find_element(By.ID, "request-reason").send_keys("backtested: no false hits")
    submit_and_wait(driver, By.ID, "request-button")
    result = text_of(driver, "rule-result")
    assert result.startswith("Change request ") and ": pending" in result, result
    driver.save_screenshot(str(shots / "4_requested.png"))
    return int(result.split()[2].rstrip(":"))


def approver_approves(driver, base_url, request_id: int, shots) -> None:
    driver.delete_all_cookies()
    browser_login(driver, base_url, *APPROVER)
    driver.get(base_url + "/rules")
    driver.find_element(By.ID, f"decide-reason-{request_id}").send_keys("four eyes")
    submit_and_wait(driver, By.ID, f"approve-{request_id}")
    assert text_of(driver, "rules-result") == f"Change request {request_id} approved and applied."
    state = driver.find_element(By.XPATH, f"//tr[@data-rule='{RULE}']//span[@data-state]").text
    assert state == "active"
    assert not driver.find_elements(By.ID, f"approve-{request_id}")
    driver.save_screenshot(str(shots / "5_approved.png"))
