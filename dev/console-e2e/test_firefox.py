"""The console in Firefox: Debian's Firefox ESR driven over WebDriver (geckodriver, built from
crates.io by dev/stack; Selenium from PyPI), since Playwright drives only a Firefox of its own.
Every page opens and shows its content, amounts read in the partner's locale, and a write goes
through the session's CSRF token as in Chromium. Runs after test_console.py, whose partner,
upload and campaign it looks at."""
import os
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.firefox.options import Options
from selenium.webdriver.firefox.service import Service
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait

from conftest import CONSOLE, SCREENSHOTS
from test_console import ADMIN, CUSTOMER_LOCAL, PARTNER

GECKODRIVER = os.environ.get("CEZBEK_GECKODRIVER") or shutil.which("geckodriver")
FIREFOX = os.environ.get("FIREFOX", "/usr/bin/firefox-esr")


@pytest.fixture(scope="module")
def firefox():
    assert GECKODRIVER, "geckodriver is not installed (dev/stack install installs it)"
    options = Options()
    options.add_argument("-headless")
    options.binary_location = FIREFOX
    # No update checks, telemetry or other calls out of a closed network.
    for name, value in [("app.update.enabled", False), ("datareporting.policy.dataSubmissionEnabled", False),
                        ("toolkit.telemetry.enabled", False), ("network.captive-portal-service.enabled", False),
                        ("browser.shell.checkDefaultBrowser", False), ("intl.accept_languages", "en-GB")]:
        options.set_preference(name, value)
    driver = webdriver.Firefox(options=options, service=Service(executable_path=GECKODRIVER))
    driver.set_window_size(1280, 900)
    yield driver
    driver.quit()


def wait(driver, condition, seconds=20):
    return WebDriverWait(driver, seconds).until(condition)


def page_failed(driver):
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "main .error") if "This page failed" in e.text]


def test_every_page_works_in_firefox(firefox):
    driver = firefox
    driver.get(CONSOLE + "/")
    token = wait(driver, shown.presence_of_element_located((By.CSS_SELECTOR, "input[type=password]")))
    token.send_keys(ADMIN)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, shown.presence_of_element_located((By.CSS_SELECTOR, "nav[aria-label=Main] a")))
    assert "e2e-admin" in driver.find_element(By.ID, "who").text

    pages = [
        ("overview", "table caption", "Services"),
        ("partners", "table caption", "Partners"),
        (f"rules/{PARTNER}", "table caption", "Campaigns"),
        (f"uploads/{PARTNER}", "label", "CSV file"),
        (f"customers/{PARTNER}/{CUSTOMER_LOCAL}", "table caption", "Rewards, newest first"),
        (f"reports/{PARTNER}", "table caption", "By campaign"),
        ("audit", ".audit > li", "by e2e-admin"),
    ]
    for route, selector, text in pages:
        driver.get(f"{CONSOLE}/#/{route}")
        wait(driver, lambda d: any(text in e.text for e in d.find_elements(By.CSS_SELECTOR, selector)))
        assert not page_failed(driver), f"{route}: {page_failed(driver)}"
    # The customer's rewards in the partner's locale, as in Chromium (WebDriver's element text
    # reads the no-break space after "Rp" as a space).
    driver.get(f"{CONSOLE}/#/customers/{PARTNER}/{CUSTOMER_LOCAL}")
    wait(driver, lambda d: "Rp 50,00" in d.find_element(By.TAG_NAME, "main").text)
    # The tier program test_console.py made (GOLD at 20 purchases): only what is missing.
    assert "To reach GOLD: 10 more purchases in the window." in driver.find_element(By.TAG_NAME, "main").text
    driver.find_element(By.CSS_SELECTOR, "details.why summary").click()
    wait(driver, lambda d: "e2e-base" in d.find_element(By.CSS_SELECTOR, "details.why[open]").text)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / "13-firefox-customer.png"))

    # A write from Firefox: the dry run, with the session's CSRF token, and a decision back.
    driver.get(f"{CONSOLE}/#/rules/{PARTNER}")
    dry_run = wait(driver, shown.presence_of_element_located((By.CSS_SELECTOR, "form[aria-label='Dry run']")))
    amount = dry_run.find_element(By.NAME, "amount")
    amount.clear()
    amount.send_keys("100000")
    dry_run.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, lambda d: "e2e-base" in d.find_element(By.CSS_SELECTOR, "form[aria-label='Dry run'] .decision").text)
    assert not page_failed(driver)
