"""Prints one customer's reward history and summary as the informer serves them."""
import argparse
import json
import urllib.parse
import urllib.request


def get(base, token, path):
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--informer", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--partner", required=True)
    parser.add_argument("--msisdn", required=True)
    args = parser.parse_args()
    customer = "/v1/partners/%s/customers/%s" % (args.partner, urllib.parse.quote(args.msisdn, safe=""))

    print("  GET %s/rewards?limit=3" % customer)
    page = get(args.informer, args.token, customer + "/rewards?limit=3")
    for reward in page["rewards"]:
        print("    %s  %-14s %9d %s  cashback %6d  %s" % (
            reward["occurred_at"], reward["transaction_id"], reward["amount"], reward["currency"],
            reward["cashback"], reward["outcome"]))
    print("    next_cursor: %s" % ("yes (more pages)" if page["next_cursor"] else "none (last page)"))

    print("  GET %s/summary" % customer)
    summary = get(args.informer, args.token, customer + "/summary")
    upcoming = summary["next_tier"]
    progress = ("; next %s needs %d more purchases and %d more spend"
                % (upcoming["name"], upcoming["purchases_needed"], upcoming["spend_needed"])
                if upcoming else "; no tier above")
    print("    tier %s%s" % (summary["tier"] or "none yet", progress))
    print("    cashback: last 30 days %d, lifetime %d %s; %d transactions" % (
        summary["cashback_last_30_days"], summary["cashback_lifetime"], summary["currency"],
        summary["transactions"]))


if __name__ == "__main__":
    main()
