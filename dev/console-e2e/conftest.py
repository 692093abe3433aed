"""The browser, the pages and what they share: Debian's Chromium driven by Playwright, an axe
audit of every page, screenshots of every step, and how long each page took to be usable."""
import json
import os
import pathlib
import time
import urllib.request

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import sync_playwright

CONSOLE = os.environ["CONSOLE_URL"]
SCREENSHOTS = pathlib.Path(os.environ["CONSOLE_SCREENSHOTS"])
# Chromium's connections to Google's services are refused on a closed network; these flags
# keep it from trying (and from slowing every start).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                             args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


OPEN_PAGES = []


def new_page(browser, width=1280, height=900):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    page = context.new_page()
    OPEN_PAGES.append(page)
    page.set_default_timeout(15_000)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    return page


@pytest.fixture(scope="session")
def admin(browser):
    page = new_page(browser)
    sign_in(page, os.environ["CONSOLE_ADMIN_TOKEN"])
    yield page
    assert page.errors == [], f"script errors on the admin's pages: {page.errors}"
    page.context.close()


def sign_in(page, token):
    page.goto(CONSOLE + "/")
    page.get_by_label("Admin or viewer token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Main").wait_for()


def shot(page, name, of=None):
    """A screenshot of what the window shows, or of one part of the page (`of`, a locator)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = str(SCREENSHOTS / f"{name}.png")
    if of is None:
        page.screenshot(path=path)
    else:
        of.screenshot(path=path)


AXE = Axe()
# Rules about page-level landmarks that a single-page app's transient states trip over are
# kept: everything axe reports as serious or critical fails the test.
BLOCKING = {"serious", "critical"}


def audit(page, name):
    """axe-core on the page as it is now: no serious or critical violation."""
    results = AXE.run(page)
    blocking = [v for v in results.response["violations"] if v["impact"] in BLOCKING]
    report = [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}" for v in blocking]
    assert not blocking, f"accessibility on {name}:\n" + "\n".join(report)


TIMINGS = []


def visit(page, route, ready):
    """Opens a route and waits until `ready` (a locator) shows; records how long that took."""
    target = f"{CONSOLE}/#/{route}"
    started = time.monotonic()
    if page.url == target:
        page.reload()  # the same route again: read it afresh
    else:
        page.goto(target)
    ready.wait_for()
    elapsed = (time.monotonic() - started) * 1000
    TIMINGS.append((route, elapsed))
    return elapsed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test leaves a screenshot of every page still open, to see what it saw."""
    report = yield
    if report.failed and call.when == "call":
        for number, page in enumerate(p for p in OPEN_PAGES if not p.is_closed()):
            shot(page, f"FAILED-{item.name}-{number}")
    return report


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_line("console pages, time until usable (ms): " + ", ".join(
            f"{route.split('/')[0]} {elapsed:.0f}" for route, elapsed in TIMINGS))


def campaignex(method, path, token, body=None, headers=None):
    """A call straight to campaignex, as another admin with curl would make it."""
    request = urllib.request.Request(os.environ["CAMPAIGNEX_URL"] + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                              **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response), response.headers
