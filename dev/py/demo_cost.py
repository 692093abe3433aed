"""Campaign cost through campaignex: a budgeted campaign's spend, a backtest "as recorded" (the
ledger rebuilt from the log and the rule history, to the unit) and a backtest of a draft."""
import argparse
import json
import time
import urllib.request


def call(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def backtest(base, token, partner, body):
    job = call(base, token, "POST", "/v1/partners/%s/backtests" % partner, body)
    path = "/v1/partners/%s/backtests/%s" % (partner, job["id"])
    for _ in range(600):
        job = call(base, token, "GET", path)
        if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return job
        time.sleep(0.1)
    raise SystemExit("backtest still %s" % job["state"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--campaignex", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--partner", required=True)
    parser.add_argument("--from", dest="start", required=True)
    parser.add_argument("--to", dest="end", required=True)
    args = parser.parse_args()
    base, token, partner = args.campaignex, args.token, args.partner

    print("  GET /v1/partners/%s/budgets" % partner)
    for status in call(base, token, "GET", "/v1/partners/%s/budgets" % partner)["items"]:
        if status["remaining"] == 0:
            outlook = "exhausted: the campaign pays no more"
        else:
            outlook = "runs out %s" % (status["projected_exhaustion"] or "never at this rate")
        print("    %s: spent %d of %d, %d left; spent in the last hour %d; %s" % (
            status["campaign_id"], status["spent"], status["budget"] or 0, status["remaining"] or 0,
            status["spent_last_hour"], outlook))

    period = {"from": args.start, "to": args.end}
    print("  POST /v1/partners/%s/backtests %s (as recorded)" % (partner, json.dumps(period)))
    job = backtest(base, token, partner, period)
    totals = job["report"]["totals"]
    print("    %s: %d transactions read; recorded net %d, replayed %d, difference %d" % (
        job["state"], job["progress"]["read"], totals["baseline"]["net"], totals["replay"]["net"],
        totals["difference"]))

    campaigns = call(base, token, "GET", "/v1/partners/%s/campaigns" % partner)["items"]
    drafted = []
    for campaign in campaigns:
        campaign = {k: v for k, v in campaign.items() if k not in ("version", "updated_at")}
        if campaign["kind"] == "BASE" and "percent_bp" in campaign["reward"]:
            campaign["reward"] = {"percent_bp": campaign["reward"]["percent_bp"] * 2}
        drafted.append(campaign)
    print("  POST /v1/partners/%s/backtests (a draft: every base campaign's percentage doubled;"
          " drafts are replayed without budgets, so the draft shows what it would cost uncapped)" % partner)
    job = backtest(base, token, partner, dict(period, draft={"campaigns": drafted}))
    report = job["report"]
    totals = report["totals"]
    print("    %s: recorded net %d, draft %d, difference %+d" % (
        job["state"], totals["baseline"]["net"], totals["replay"]["net"], totals["difference"]))
    for row in report["campaigns"]:
        print("    campaign %-12s recorded %9d  draft %9d" % (row["campaign_id"], row["baseline"], row["replay"]))
    if report["customers"]:
        first = report["customers"][0]
        example = first["example"] or {}
        print("    most changed: %s %+d; e.g. %s" % (first["msisdn"], first["difference"], example.get("transaction_id")))
        print("      recorded: %s" % example.get("baseline_explanation"))
        print("      draft:    %s" % example.get("replay_explanation"))


if __name__ == "__main__":
    main()
