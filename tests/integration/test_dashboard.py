"""The watchlists (the page's Watchlists tab; `/dashboard` redirects there) in a real browser
(headless Debian chromium through chromedriver), against the running app: add a watch, see it
listed, its trend drawn, the alerts with their emerging terms, a clear message for bad input,
and remove it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis

from serve_app.domain.tasks import TASKS
from tests.integration.page_browser import start_browser
from tests.integration.test_watchlists import SPIKE_TERM, monitor_pass, spike_history

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    # Under CI=true a missing Chromium fails the run (start_browser), never skips it.
    driver = start_browser(tmp_path_factory.mktemp("downloads"))
    yield driver
    driver.quit()


def wait_until(fn: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception:  # the DOM is being replaced under us: look again
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("the page did not get there in time")
        time.sleep(0.2)


def test_dashboard_in_a_real_browser(
    browser: Any, serve_url: str, app_pg_url: str, clean_cache: redis.Redis
) -> None:
    from selenium.webdriver.common.by import By

    client = httpx.Client(base_url=serve_url, timeout=60)
    for w in client.get("/watch").json()["watches"]:
        client.delete(f"/watch/{w['keyword']}")
    with psycopg.connect(app_pg_url, autocommit=True) as c:
        c.execute("TRUNCATE alerts")
    spike_history(app_pg_url, "tea time", time.time())

    browser.get(serve_url + "/dashboard")
    assert "watchlists" in browser.title
    wait_until(lambda: browser.find_element(By.ID, "no-watches").is_displayed())

    # Bad input: the API's own message appears, nothing is added.
    browser.find_element(By.ID, "watch-keyword").send_keys("tea time")
    every = browser.find_element(By.ID, "watch-every")
    every.clear()
    every.send_keys("30")
    browser.find_element(By.ID, "watch-add").click()
    error = wait_until(lambda: browser.find_element(By.ID, "watch-error").text)
    assert "422" in error and "every_s" in error

    every.clear()
    every.send_keys("120")
    browser.find_element(By.ID, "watch-add").click()
    row = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, '#watches tr[data-keyword="tea time"]'))
    assert "120 s" in row[0].text and "never" in row[0].text

    # The trend of the selected keyword: a line per emotion label, in the registry's order.
    lines = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#trend-chart polyline"))
    assert [ln.get_attribute("data-label") for ln in lines] == list(TASKS["emotion"].labels)
    assert "posts in" in browser.find_element(By.ID, "trend-summary").text

    # The monitor raises the spike; the page shows it on its next refresh.
    monitor_pass()
    browser.refresh()
    alert = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#alerts tr[data-alert]"))
    assert "tea time" in alert[0].text and "anger (emotion)" in alert[0].text and "50.0%" in alert[0].text
    # What the spike is about: the alert's emerging terms, with their post counts.
    assert SPIKE_TERM in alert[0].find_element(By.CSS_SELECTOR, "td.emerging").text

    # Sentiment trend on demand.
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "trend-task")).select_by_value("sentiment")
    wait_until(lambda: "(sentiment)" in browser.find_element(By.ID, "trend-title").text)

    browser.find_element(By.CSS_SELECTOR, '[data-remove="tea time"]').click()
    wait_until(lambda: not browser.find_elements(By.CSS_SELECTOR, '#watches tr[data-keyword="tea time"]'))
    assert client.get("/watch").json()["watches"] == []
