"""Sets up the demo's partners and rules through campaignex's admin API (never by writing
etcd directly), then asks campaignex to evaluate a sample purchase against the live rules."""

import argparse
import json
import urllib.error
import urllib.request


class Api:
    def __init__(self, base, token):
        self.base = base
        self.token = token

    def call(self, method, path, body=None, if_match=None):
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", "application/json")
        if if_match is not None:
            request.add_header("If-Match", f'"{if_match}"')
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def ensure(self, collection, item, body):
        """Creates `body`, or replaces what a previous demo run left with it."""
        status, created = self.call("POST", collection, body)
        if status == 201:
            return created
        if status != 409:
            raise SystemExit(f"POST {collection} -> {status}: {created}")
        status, current = self.call("GET", item)
        status, updated = self.call("PUT", item, body, if_match=current["version"])
        if status != 200:
            raise SystemExit(f"PUT {item} -> {status}: {updated}")
        return updated


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--campaignex", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--keys-out", required=True, help="where to write each partner's signing key (JSON)")
    parser.add_argument("--providers", help="payment providers to register (a JSON list)")
    args = parser.parse_args()
    api = Api(args.campaignex, args.token)
    keys = {}

    # The payment providers payouts route through (the stack's simulators): credentials are
    # named by the environment variables holding them, never sent.
    if args.providers:
        with open(args.providers) as source:
            for provider in json.load(source):
                api.ensure("/v1/providers", f"/v1/providers/{provider['name']}", provider)
                wallets = ", ".join(sorted(provider["channels"]))
                print(f"  provider {provider['name']} ({provider['adapter']}): {wallets}")

    # Payouts: the demo pays at once (no hold), anything from Rp 100, into OVO unless a
    # transaction named another wallet. (The sample's cashback is small; a real policy's minimum
    # sits well above the provider's fee, Rp 2,775 a payout here, which the partner bears.)
    payout_policy = {"hold_days": 0, "minimum": 10000, "maximum_per_day": 100000000,
                     "pay_at": "00:00", "fee_bearer": "PARTNER", "default_wallet": "OVO"}
    for code, name in [("TOKO_MAJU", "Toko Maju marketplace"), ("DOMPETKU", "Dompetku wallet")]:
        partner = {"code": code, "name": name, "currency": "IDR", "time_zone": "Asia/Jakarta",
                   "payout_policy": payout_policy}
        status, body = api.call("POST", "/v1/partners", partner)
        if status == 409:
            # Left by an earlier run: its payout policy as this run sets it.
            _, current = api.call("GET", f"/v1/partners/{code}")
            replaced, answer = api.call("PUT", f"/v1/partners/{code}", partner, if_match=current["version"])
            if replaced != 200:
                raise SystemExit(f"replacing {code}: {replaced} {answer}")
        if status == 201:
            print(f"  partner {code} created; signing key {body['signing_key']['key_id']} (secret shown once)")
        elif status == 409:
            # The secret was shown once, at creation: rotate to get one for this run.
            status, body = api.call("POST", f"/v1/partners/{code}/keys", {"retire_after_seconds": 60})
            if status != 201:
                raise SystemExit(f"rotating the key of {code}: {status} {body}")
            print(f"  partner {code} exists; rotated to signing key {body['signing_key']['key_id']}")
        else:
            raise SystemExit(f"creating {code}: {status} {body}")
        keys[code] = {"key_id": body["signing_key"]["key_id"], "secret": body["signing_key"]["secret"]}

    window = {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}
    campaigns = {
        "TOKO_MAJU": [
            {"id": "everyday-1", "name": "1% on everything", "kind": "BASE", "status": "ACTIVE", **window,
             "conditions": {"currency": "IDR"}, "reward": {"percent_bp": 100}, "max_per_transaction": 50000},
            {"id": "coffee-5k", "name": "Rp 50 back on coffee", "kind": "BONUS", "status": "ACTIVE", **window,
             "conditions": {"currency": "IDR", "mccs": [5814], "min_amount": 20000}, "reward": {"fixed": 5000},
             "max_per_customer_per_day": 10000, "budget": 60000},
        ],
        "DOMPETKU": [
            {"id": "wallet-2", "name": "2% paying with Dompetku", "kind": "BASE", "status": "ACTIVE", **window,
             "conditions": {"currency": "IDR"}, "reward": {"percent_bp": 200}, "max_per_transaction": 20000},
        ],
    }
    for code, items in campaigns.items():
        for campaign in items:
            api.ensure(f"/v1/partners/{code}/campaigns", f"/v1/partners/{code}/campaigns/{campaign['id']}", campaign)
            print(f"  campaign {code}/{campaign['id']}: {campaign['name']}")
    exclusion = {"id": "no-gambling", "mcc": 7995, "valid_from": "2026-01-01T00:00:00Z", "reason": "policy"}
    api.ensure("/v1/partners/TOKO_MAJU/exclusions", "/v1/partners/TOKO_MAJU/exclusions/no-gambling", exclusion)
    print("  exclusion TOKO_MAJU/no-gambling: MCC 7995 earns nothing")
    program = {"window_days": 30, "tiers": [
        {"name": "SILVER", "min_purchases": 3, "multiplier_bp": 11000},
        {"name": "GOLD", "min_purchases": 10, "min_spend": 5000000, "multiplier_bp": 12500, "fixed_bonus": 1000}]}
    status, current = api.call("GET", "/v1/partners/TOKO_MAJU/tiers")
    status, body = api.call("PUT", "/v1/partners/TOKO_MAJU/tiers", program,
                            if_match=current["version"] if status == 200 else None)
    if status not in (200, 201):
        raise SystemExit(f"tiers: {status} {body}")
    print("  tiers TOKO_MAJU: SILVER (3 purchases in 30 days, x1.1), GOLD (10 purchases and Rp 50,000, x1.25 +Rp 10)")

    sample = {"msisdn": "0812-3456-7890", "amount": 250000, "mcc": 5814, "merchant": "Kopi Kenangan",
              "occurred_at": "2026-11-21T03:00:00Z"}
    status, body = api.call("POST", "/v1/partners/TOKO_MAJU/evaluate", sample)
    decision = body["decision"]
    print(f"  dry run of a Rp 2,500.00 coffee at TOKO_MAJU: cashback {decision['cashback']} "
          f"(rules revision {decision['rules_revision']})")
    print(f"    {decision['explanation']}")
    status, body = api.call("GET", "/v1/audit?limit=3")
    print(f"  audit trail: {len(body['items'])} latest changes by "
          f"{', '.join(sorted({item['actor'] for item in body['items']}))}")
    with open(args.keys_out, "w") as out:
        json.dump(keys, out)


if __name__ == "__main__":
    main()
