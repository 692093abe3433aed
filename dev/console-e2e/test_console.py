"""The console in a real browser against the real stack, in the order a new partner's first day
goes: sign in, create the partner, a campaign (with a validation error first) tried in a dry
run, a CSV upload with bad lines, a customer's rewards and why, a stale edit, what a viewer
can do, and signing out. The tests share one partner and run in this order."""
import os
import random
import string
import time
from datetime import datetime, timedelta, timezone

from playwright.sync_api import expect

from conftest import CONSOLE, audit, campaignex, new_page, shot, sign_in, visit

ADMIN = os.environ["CONSOLE_ADMIN_TOKEN"]
VIEWER = os.environ["CONSOLE_VIEWER_TOKEN"]
PARTNER = "E2E" + "".join(random.choices(string.ascii_uppercase + string.digits, k=6))
CUSTOMER_LOCAL = "0812" + "".join(random.choices(string.digits, k=8))
CUSTOMER = "+62" + CUSTOMER_LOCAL[1:]


def test_sign_in_refuses_a_wrong_token_next_to_the_field_and_sets_a_strict_http_only_cookie(browser):
    page = new_page(browser)
    page.goto(CONSOLE + "/")
    token = page.get_by_label("Admin or viewer token")
    audit(page, "sign-in")
    token.fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(token).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field-error")).to_contain_text("none of the configured")
    shot(page, "01-sign-in-refused")
    token.fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    cookie, = [c for c in page.context.cookies() if c["name"] == "cezbek_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    page.context.close()


def test_the_overview_shows_each_services_readiness(admin):
    elapsed = visit(admin, "overview", admin.get_by_role("table", name="Services"))
    services = admin.get_by_role("table", name="Services")
    for service in ("ingestor", "campaignex", "informer", "rewarder", "payouts"):
        expect(services.get_by_role("row").filter(has_text=service)).to_contain_text("ready")
    expect(admin.get_by_text("consumer lag")).to_be_visible()
    admin.get_by_role("img").first.wait_for()  # the 30-day chart
    shot(admin, "02-overview")
    audit(admin, "overview")
    assert elapsed < 5000, f"the overview took {elapsed:.0f} ms"


def test_a_new_partners_signing_secret_is_shown_once_with_the_recipe(admin):
    visit(admin, "partners", admin.get_by_role("table", name="Partners"))
    form = admin.locator("form").filter(has=admin.get_by_role("button", name="Create partner"))
    form.get_by_label("Code", exact=True).fill(PARTNER)
    form.get_by_label("Name", exact=True).fill("End-to-end test partner")
    form.get_by_role("button", name="Create partner").click()
    notice = admin.get_by_role("region", name="New signing key")
    expect(notice).to_contain_text("only now")
    first_key = notice.locator("code").first.inner_text()
    expect(notice).to_contain_text(f"X-Cezbek-Partner: {PARTNER}")
    secret = notice.locator("code.secret").inner_text()
    assert len(secret) >= 43, secret
    expect(notice.get_by_role("button", name="Copy the secret")).to_be_visible()
    shot(admin, "03-partner-created", of=notice)
    audit(admin, "partners")
    # Shown once: the partner list never carries it.
    visit(admin, "partners", admin.get_by_role("table", name="Partners"))
    expect(admin.get_by_role("row").filter(has_text=PARTNER)).to_be_visible()
    assert secret not in admin.content()
    # A rotation shows the new key's secret, once, in the same way.
    admin.get_by_role("row").filter(has_text=PARTNER).get_by_role("button", name="Rotate key").click()
    rotated = admin.get_by_role("region", name="New signing key")
    expect(rotated).to_contain_text("A new signing key")
    assert rotated.locator("code").first.inner_text() != first_key
    assert rotated.locator("code.secret").inner_text() != secret


def test_a_campaign_with_an_error_is_fixed_and_decides_live_in_a_dry_run(admin):
    visit(admin, f"rules/{PARTNER}", admin.get_by_role("heading", name="Campaigns"))
    admin.get_by_role("button", name="New campaign").click()
    form = admin.get_by_role("form", name="New campaign")
    form.get_by_label("Id", exact=True).fill("e2e-base")
    form.get_by_label("Name", exact=True).fill("Everyday 5 %")
    form.get_by_label("Kind").select_option("BASE")
    # From yesterday: the purchases uploaded below happened in the last hour.
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    form.get_by_label("Starts at").fill(yesterday.strftime("%Y-%m-%dT%H:%M:%SZ"))
    reward = form.get_by_label("Reward value")
    reward.fill("0")
    form.get_by_role("button", name="Create").click()
    expect(reward).to_have_attribute("aria-invalid", "true")
    error = form.locator(".field-error:visible")
    expect(error).to_have_count(1)
    shot(admin, "04-campaign-validation-error", of=form)
    audit(admin, "rules with an error")
    reward.fill("500")
    form.get_by_label("Budget (minor units)").fill("10000000")  # Rp 100.000,00 in all
    form.get_by_role("button", name="Create").click()
    campaigns = admin.get_by_role("table", name="Campaigns")
    expect(campaigns.get_by_role("row").filter(has_text="e2e-base")).to_contain_text("5 %")

    dry_run = admin.get_by_role("form", name="Dry run")
    dry_run.get_by_label("Customer (msisdn)").fill(CUSTOMER_LOCAL)
    dry_run.get_by_label("Amount").fill("100000")
    decision = dry_run.locator(".decision")
    # Live once campaignex's own watch of etcd has the new campaign: a moment.
    deadline = time.monotonic() + 20
    while True:
        dry_run.get_by_role("button", name="Try it").click()
        decision.wait_for()
        if "e2e-base" in decision.inner_text() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(decision).to_contain_text("REWARDED")
    # 5 % of Rp 1.000,00 in the partner's currency and locale.
    expect(decision.locator(".cashback")).to_have_text("Rp\u00a050,00")
    shot(admin, "05-dry-run", of=dry_run)
    audit(admin, "rules")


def test_a_csv_upload_shows_progress_then_the_rejected_lines_and_their_reasons(admin):
    visit(admin, f"uploads/{PARTNER}", admin.get_by_label("CSV file"))
    now = datetime.now(timezone.utc)
    lines = ["transaction_id,msisdn,amount,currency,quantity,occurred_at,merchant,mcc"]
    for index in range(10):
        at = (now - timedelta(minutes=60 - index)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{PARTNER}-{index},{CUSTOMER_LOCAL},100000,IDR,1,{at},\"Kopi, Senayan\",5814")
    lines.append(f"{PARTNER}-bad-1,0812-CALL-ME,100000,IDR,1,{now:%Y-%m-%dT%H:%M:%SZ},Kopi,5814")
    # A line that starts like a spreadsheet formula: its download must not run as one.
    lines.append(f"=1+1,{CUSTOMER_LOCAL},-5,IDR,1,{now:%Y-%m-%dT%H:%M:%SZ},Kopi,5814")
    admin.get_by_label("CSV file").set_input_files(files=[{
        "name": "e2e.csv", "mimeType": "text/csv", "buffer": ("\r\n".join(lines) + "\r\n").encode()}])
    expect(admin.get_by_role("progressbar", name="Uploading")).to_be_visible()
    expect(admin.get_by_role("heading", name="Done")).to_be_visible(timeout=60_000)
    summary = admin.locator(".summary")
    expect(summary).to_contain_text("12 rows")
    expect(summary).to_contain_text("10 accepted")
    expect(summary).to_contain_text("2 rejected")
    rejects = admin.get_by_role("table", name="Rejected lines")
    expect(rejects.locator("tbody tr")).to_have_count(2)
    expect(rejects.locator("tbody tr").first).to_contain_text("msisdn")
    expect(rejects.locator("tbody tr").nth(1)).to_contain_text("amount")
    shot(admin, "06-upload-rejects")
    audit(admin, "uploads")
    with admin.expect_download() as download:
        admin.get_by_role("button", name="Download the rejected lines (CSV)").click()
    text = open(download.value.path(), encoding="utf-8").read()
    assert text.startswith("line,raw,reasons\n"), text
    # The line a spreadsheet would run as a formula is text in the download.
    assert "\n13,\"'=1+1," in text, text


def test_a_customer_found_by_a_local_number_shows_rewards_and_why(admin):
    visit(admin, f"customers/{PARTNER}", admin.get_by_role("search"))
    admin.get_by_label("Customer (msisdn, any form)").fill(CUSTOMER_LOCAL)
    admin.get_by_role("button", name="Look up").click()
    history = admin.get_by_role("table", name="Rewards, newest first")
    # The rewarder decides the uploaded lines within moments; look again until all ten are in.
    deadline = time.monotonic() + 60
    while history.locator("tbody tr").filter(has_text=f"{PARTNER}-").count() < 10:
        assert time.monotonic() < deadline, "the uploaded transactions were not decided in time"
        time.sleep(1)
        admin.reload()
        history.wait_for()
    expect(admin.get_by_role("heading", name=f"Customer {CUSTOMER}")).to_be_visible()
    first = history.locator("tbody tr").first
    expect(first).to_contain_text("Rp\u00a050,00")
    first.get_by_text("Why?").click()
    expect(first.locator("details p").first).to_contain_text("e2e-base")
    expect(admin.get_by_role("table", name="Balance")).to_be_visible()
    shot(admin, "07-customer-why")
    audit(admin, "customers")


def test_exclusions_and_the_tier_program_are_edited_with_errors_next_to_their_fields(admin):
    visit(admin, f"rules/{PARTNER}", admin.get_by_role("form", name="New exclusion"))
    form = admin.get_by_role("form", name="New exclusion")
    form.get_by_label("Id", exact=True).fill("no-gambling")
    form.get_by_label("Excludes").select_option("mcc")
    value = form.get_by_label("Value")
    value.fill("99999")
    form.get_by_role("button", name="Add the exclusion").click()
    expect(value).to_have_attribute("aria-invalid", "true")
    value.fill("7995")
    form.get_by_label("Reason").fill("Gambling")
    form.get_by_role("button", name="Add the exclusion").click()
    exclusions = admin.get_by_role("table", name="Exclusions")
    expect(exclusions.get_by_role("row").filter(has_text="no-gambling")).to_contain_text("MCC 7995")

    tiers = admin.get_by_role("form", name="Tier program")
    window = tiers.get_by_label("Window (days)")
    window.fill("0")
    tiers.get_by_role("button", name="Save the tier program").click()
    expect(window).to_have_attribute("aria-invalid", "true")
    window.fill("30")
    tiers.get_by_role("button", name="Save the tier program").click()
    expect(admin.get_by_role("table", name="Tiers over 30 days")).to_contain_text("GOLD")
    audit(admin, "rules with exclusions and tiers")

    # And gone again, with its version: the uploads' customer stays as the other tests expect.
    admin.get_by_role("button", name="Delete exclusion no-gambling").click()
    expect(admin.get_by_role("table", name="Exclusions")).to_contain_text("No exclusions.")


def test_a_stale_edit_shows_the_conflict_and_can_overwrite(admin):
    visit(admin, f"rules/{PARTNER}", admin.get_by_role("table", name="Campaigns"))
    # The budget: what the ten uploaded purchases spent of it, and what is left.
    budget = admin.get_by_role("table", name="Budgets").get_by_role("row").filter(has_text="e2e-base")
    expect(budget).to_contain_text("Rp\u00a0500,00")
    expect(budget).to_contain_text("Rp\u00a099.500,00")
    admin.get_by_role("button", name="Edit e2e-base").click()
    form = admin.get_by_role("form", name="Edit campaign e2e-base")
    form.get_by_label("Name", exact=True).fill("Mine: everyday 5 %")
    # Meanwhile another admin changes it with curl.
    current, headers = campaignex("GET", f"/v1/partners/{PARTNER}/campaigns/e2e-base", ADMIN)
    theirs = {k: v for k, v in current.items() if k not in ("version", "updated_at")}
    theirs["name"] = "Theirs"
    campaignex("PUT", f"/v1/partners/{PARTNER}/campaigns/e2e-base", ADMIN, theirs, {"If-Match": headers["ETag"]})
    form.get_by_role("button", name="Save").click()
    dialog = admin.get_by_role("alertdialog", name="Someone else changed this campaign")
    expect(dialog).to_contain_text(f"version {current['version'] + 1}")
    expect(dialog.get_by_role("button", name="Reload theirs (drop my edits)")).to_be_visible()
    shot(admin, "08-stale-edit", of=form)
    audit(admin, "conflict")
    dialog.get_by_role("button", name="Overwrite with mine").click()
    campaigns = admin.get_by_role("table", name="Campaigns")
    expect(campaigns.get_by_role("row").filter(has_text="e2e-base")).to_contain_text("Mine: everyday 5 %")
    saved, _ = campaignex("GET", f"/v1/partners/{PARTNER}/campaigns/e2e-base", ADMIN)
    assert saved["name"] == "Mine: everyday 5 %" and saved["version"] == current["version"] + 2, saved


def test_a_backtest_as_recorded_shows_its_progress_and_no_difference(admin):
    visit(admin, f"rules/{PARTNER}", admin.get_by_role("form", name="Backtest"))
    form = admin.get_by_role("form", name="Backtest")
    form.get_by_label("Draft campaigns (JSON)").fill("")  # as recorded
    form.get_by_role("button", name="Run the backtest").click()
    stats = form.locator(".stats")
    expect(stats).to_contain_text("recorded", timeout=60_000)
    # The ledger rebuilt from the log and the rule history: to the unit.
    expect(stats.locator("li").nth(0)).to_contain_text("Rp 500,00".replace(" ", "\u00a0"))
    expect(stats.locator("li").nth(2)).to_contain_text("Rp 0,00".replace(" ", "\u00a0"))
    expect(form.get_by_role("img")).to_be_visible()
    expect(form.get_by_role("table", name="Tier migrations")).to_be_visible()
    shot(admin, "09-backtest", of=form)
    audit(admin, "backtest")


def test_a_partners_payout_policy_is_edited_with_its_version(admin):
    visit(admin, "partners", admin.get_by_role("table", name="Partners"))
    row = admin.get_by_role("row").filter(has_text=PARTNER)
    row.get_by_role("button", name="Payout policy").click()
    form = admin.locator("form").filter(has=admin.get_by_role("button", name="Save the policy"))
    form.get_by_label("Hold days").fill("100")
    form.get_by_role("button", name="Save the policy").click()
    hold = form.get_by_label("Hold days")
    expect(hold).to_have_attribute("aria-invalid", "true")
    hold.fill("3")
    form.get_by_label("Default wallet").select_option("OVO")
    form.get_by_role("button", name="Save the policy").click()
    expect(admin.get_by_role("row").filter(has_text=PARTNER)).to_contain_text("hold 3 d")
    saved, _ = campaignex("GET", f"/v1/partners/{PARTNER}", ADMIN)
    assert saved["payout_policy"]["hold_days"] == 3 and saved["payout_policy"]["default_wallet"] == "OVO", saved


def test_reports_and_the_audit_trail(admin):
    visit(admin, f"reports/{PARTNER}", admin.get_by_role("table", name="By campaign"))
    expect(admin.get_by_role("table", name="By campaign").get_by_role("row").filter(has_text="e2e-base")).to_be_visible()
    expect(admin.get_by_role("heading", name="Partner statement")).to_be_visible()
    shot(admin, "10-report")
    audit(admin, "reports")
    visit(admin, "audit", admin.locator(".audit li").first)
    # Filtered to the campaign, as a link would open it.
    trail = admin.get_by_role("search", name="Filter the audit trail")
    trail.get_by_label("Kind").select_option("campaign")
    trail.get_by_label("Rule").fill(f"{PARTNER}/e2e-base")
    trail.get_by_role("button", name="Filter").click()
    expect(admin.locator(".audit > li")).to_have_count(3)  # created, theirs, mine
    entry = admin.locator(".audit > li").filter(has_text=f"update campaign {PARTNER}/e2e-base").first
    expect(entry).to_contain_text("by e2e-admin")
    expect(entry.get_by_role("row").filter(has_text="name")).to_contain_text("Theirs")
    shot(admin, "11-audit")
    audit(admin, "audit")


def test_every_write_needs_the_sessions_csrf_token(admin):
    status = admin.evaluate("""async () => (await fetch('/api/campaignex/v1/partners', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({code: 'NOCSRF', currency: 'IDR',
        time_zone: 'Asia/Jakarta'})})).status""")
    assert status == 403


def test_a_viewer_sees_everything_and_can_change_nothing(browser):
    page = new_page(browser, width=768, height=1024)  # a tablet
    sign_in(page, VIEWER)
    expect(page.locator("#who")).to_contain_text("viewer")
    visit(page, "partners", page.get_by_role("table", name="Partners"))
    expect(page.get_by_role("row").filter(has_text=PARTNER)).to_be_visible()
    expect(page.get_by_role("button", name="Create partner")).to_have_count(0)
    expect(page.get_by_role("button", name="Rotate key")).to_have_count(0)
    visit(page, f"rules/{PARTNER}", page.get_by_role("table", name="Campaigns"))
    expect(page.get_by_role("button", name="New campaign")).to_have_count(0)
    expect(page.get_by_role("button", name="Edit e2e-base")).to_have_count(0)
    # The dry run changes nothing: a viewer may use it.
    dry_run = page.get_by_role("form", name="Dry run")
    dry_run.get_by_label("Customer (msisdn)").fill(CUSTOMER_LOCAL)
    dry_run.get_by_role("button", name="Try it").click()
    expect(dry_run.locator(".decision")).to_contain_text("e2e-base")
    # And the server refuses what the page does not offer, CSRF token and all.
    answer = page.evaluate("""async (partner) => {
        const session = await (await fetch('/session')).json();
        const response = await fetch(`/api/campaignex/v1/partners/${partner}/suspend`, {method: 'POST',
            headers: {'X-CSRF-Token': session.csrf_token}});
        return [response.status, (await response.json()).detail];
    }""", PARTNER)
    assert answer[0] == 403 and "viewer" in answer[1], answer
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the rules page scrolls sideways on a tablet: {width}"
    shot(page, "12-viewer-tablet")
    audit(page, "rules as a viewer")
    page.context.close()


def test_signing_out_ends_the_session_on_the_server(browser):
    page = new_page(browser)
    sign_in(page, ADMIN)
    cookie, = [c for c in page.context.cookies() if c["name"] == "cezbek_console"]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Admin or viewer token")).to_be_visible()
    # The old cookie is worthless now, even sent again by hand.
    page.context.add_cookies([{**cookie}])
    status = page.evaluate("async () => (await fetch('/session')).status")
    assert status == 401
    page.context.close()
