"""The console's pages timed in headless Chromium with a million rewards in the ledger (see
dev/console-e2e/bench): seeds the rewards with one INSERT … SELECT unless they are there, then
opens each page three times and prints how long it took until its content showed."""
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from conftest import CHROMIUM_ARGS, CONSOLE  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

PARTNER = "BENCH"
REWARDS = int(os.environ.get("CONSOLE_BENCH_REWARDS", "1000000"))
CUSTOMERS = 20_000
TOKEN = os.environ["CONSOLE_ADMIN_TOKEN"]


def campaignex(method, path, body=None):
    request = urllib.request.Request(os.environ["CAMPAIGNEX_URL"] + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def psql(sql):
    env = dict(os.environ, PGPASSWORD="cezbek", PGOPTIONS="-c search_path=console_bench")
    port = os.environ.get("CEZBEK_STACK_POSTGRES_PORT", "5544")
    return subprocess.run(["psql", "-h", "127.0.0.1", "-p", port, "-U", "cezbek", "-d", "cezbek", "-X", "-q",
                           "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def seed():
    campaignex("POST", "/v1/partners", {"code": PARTNER, "name": "Bench", "currency": "IDR", "time_zone": "Asia/Jakarta"})
    campaignex("POST", f"/v1/partners/{PARTNER}/campaigns", {
        "id": "base", "name": "Everyday 1 %", "kind": "BASE", "status": "ACTIVE", "reward": {"percent_bp": 100},
        "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z", "conditions": {"currency": "IDR"}})
    have = int(psql(f"SELECT count(*) FROM rewards WHERE partner = '{PARTNER}'"))
    if have >= REWARDS:
        return have, 0.0
    started = time.monotonic()
    # Spread over the last 30 days, 50 rewards a customer; every tenth excluded, the rest earn 1 %.
    psql(f"""
        DELETE FROM rewards WHERE partner = '{PARTNER}';
        INSERT INTO rewards (partner, transaction_id, msisdn, kind, amount, currency, merchant, mcc, outcome,
                             cashback, tier_after, applied_campaigns, rules_revision, explanation, occurred_at,
                             decided_at, local_day, content_hash, quantity)
        SELECT '{PARTNER}', 'bench-' || n, '+62812' || lpad((n % {CUSTOMERS})::text, 7, '0'), 'PURCHASE',
               10000 + (n % 997) * 100, 'IDR', 'Kopi', 5814,
               CASE WHEN n % 10 = 0 THEN 'EXCLUDED' ELSE 'REWARDED' END,
               CASE WHEN n % 10 = 0 THEN 0 ELSE (10000 + (n % 997) * 100) / 100 END, NULL,
               CASE WHEN n % 10 = 0 THEN '[]'::jsonb
                    ELSE jsonb_build_array(jsonb_build_object('campaign_id', 'base', 'kind', 'BASE',
                                                             'amount', (10000 + (n % 997) * 100) / 100)) END,
               1, 'BASE base 100 bp', at, at, (at AT TIME ZONE 'Asia/Jakarta')::date, md5(n::text), 1
          FROM generate_series(1, {REWARDS}) AS n,
               LATERAL (SELECT now() - (n::double precision / {REWARDS}) * interval '30 days' AS at) AS t;
        ANALYZE rewards;""")
    return REWARDS, time.monotonic() - started


def main():
    count, seconds = seed()
    print(f"ledger: {count} rewards of {PARTNER} over 30 days" + (f" (seeded in {seconds:.0f} s)" if seconds else ""))
    customer = "0812" + "0000042"
    pages = [
        ("overview", "overview", lambda p: p.get_by_role("img").first),
        ("overview, 30-day chart of BENCH", f"overview/{PARTNER}", lambda p: p.get_by_role("img").first),
        ("partners", "partners", lambda p: p.get_by_role("table", name="Partners")),
        ("rules", f"rules/{PARTNER}", lambda p: p.get_by_role("table", name="Budgets")),
        ("customers (50 rewards)", f"customers/{PARTNER}/{customer}", lambda p: p.get_by_role("table", name="Rewards, newest first")),
        ("reports (today)", f"reports/{PARTNER}", lambda p: p.get_by_role("table", name="By campaign")),
        ("audit", "audit", lambda p: p.locator(".audit li").first),
        ("uploads", f"uploads/{PARTNER}", lambda p: p.get_by_label("CSV file")),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(60_000)
        page.goto(CONSOLE + "/")
        page.get_by_label("Admin or viewer token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("navigation", name="Main").wait_for()
        print(f"{'page':34} {'median ms':>10} {'max ms':>8}  (until its content shows; 3 loads each)")
        for name, route, ready in pages:
            times = []
            for _ in range(3):
                page.goto("about:blank")
                started = time.monotonic()
                page.goto(f"{CONSOLE}/#/{route}")
                ready(page).wait_for()
                times.append((time.monotonic() - started) * 1000)
            print(f"{name:34} {statistics.median(times):10.0f} {max(times):8.0f}")
        browser.close()


if __name__ == "__main__":
    main()
