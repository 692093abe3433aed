"""Feeds the demo's sample through the ingestor, the way partners do: a generated CSV (with
some bad lines) uploaded to a presigned URL, and signed API batches. Prints the ingest summary,
where the reject report is, and what the API answered. Standard library only, plus boto3 to
read the report back."""

import argparse
import csv
import hashlib
import hmac
import io
import json
import random
import time
import urllib.error
import urllib.request
from base64 import b64decode

import boto3


def sign(key, method, path, body):
    timestamp = str(int(time.time()))
    canonical = f"{method}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
    secret = b64decode(key["secret"] + "=" * (-len(key["secret"]) % 4))
    signature = hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()
    return {"X-Cezbek-Key-Id": key["key_id"], "X-Cezbek-Timestamp": timestamp, "X-Cezbek-Signature": signature}


def call(base, partner, key, method, path, body=b""):
    headers = {"X-Cezbek-Partner": partner, "Content-Type": "application/json", **sign(key, method, path, body)}
    request = urllib.request.Request(base + path, data=body if method != "GET" else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


WALLETS = ["OVO", "GOPAY", "DANA"]


def wallet_of(msisdn):
    """Each customer's e-wallet, the same in every transaction: the providers are cheapest for
    different wallets, so the payouts show the routing."""
    return WALLETS[int("".join(ch for ch in msisdn if ch.isdigit())) % len(WALLETS)]


def sample_rows(count, rng):
    rows = []
    for index in range(count):
        rows.append({
            "transaction_id": f"CSV-{int(time.time())}-{index:05d}",
            "msisdn": f"0812{rng.randrange(1000, 1020):04d}{rng.randrange(1000, 9999)}",
            "amount": str(rng.randrange(10_000, 2_000_000)),
            "currency": "IDR",
            "quantity": str(rng.randrange(1, 4)),
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - rng.randrange(0, 86_400))),
            "merchant": rng.choice(["Kopi Kenangan", "Indomaret, Senayan", "Tokopedia"]),
            "mcc": rng.choice(["5814", "5411", "5999"]),
            "email": f"customer{index % 7}@example.com",
        })
        rows[-1]["wallet"] = wallet_of(rows[-1]["msisdn"])
    # Lines the ingestor will reject, each for its own reason.
    rows[3]["msisdn"] = "0812-CALL-ME"
    rows[5]["amount"] = "-100"
    rows[7]["currency"] = "RUPIAH"
    rows[9]["occurred_at"] = "yesterday"
    rows[11]["mcc"] = "12345"
    return rows


def upload(args, keys, rng):
    partner = "TOKO_MAJU"
    status, upload = call(args.ingestor, partner, keys[partner], "POST", "/v1/uploads", b"{}")
    if status != 201:
        raise SystemExit(f"POST /v1/uploads: {status} {upload}")
    rows = sample_rows(200, rng)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    # An explicit type: urllib would send a form type, which moto reads as an empty form.
    put = urllib.request.Request(upload["url"], data=buffer.getvalue().encode(), method="PUT",
                                 headers={"Content-Type": "text/csv"})
    with urllib.request.urlopen(put) as response:
        assert response.status == 200, response.status
    print(f"  {partner} uploaded {len(rows)} rows (5 bad on purpose) to a presigned URL → {upload['key']}")
    path = f"/v1/uploads/{upload['upload_id']}"
    for _ in range(150):
        time.sleep(0.2)
        status, state = call(args.ingestor, partner, keys[partner], "GET", path)
        if state.get("status") in ("done", "failed"):
            break
    summary = state["summary"]
    print(f"  GET {path}: {state['status']}: {summary['rows']} rows, {summary['accepted']} accepted, "
          f"{summary['rejected']} rejected {json.dumps(summary['reasons'])}")
    print(f"  reject report: s3://{args.bucket}/{summary['rejects_report']}; the file is now "
          f"s3://{args.bucket}/{summary['processed_object']}")
    s3 = boto3.session.Session(aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                               region_name="us-east-1").client("s3", endpoint_url=args.s3_endpoint)
    report = s3.get_object(Bucket=args.bucket, Key=summary["rejects_report"])["Body"].read().decode()
    for line in report.splitlines()[:4]:
        print(f"    {line}")


def batches(args, keys, rng):
    partner = "DOMPETKU"
    stamp = int(time.time())
    for number in range(2):
        items = [{
            "transaction_id": f"API-{stamp}-{number}-{index}",
            "msisdn": f"+62812{rng.randrange(1000, 1005)}0000",
            "amount": rng.randrange(10_000, 500_000), "currency": "IDR",
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "merchant": "Warung Sate", "mcc": 5812, "email": f"wallet{index}@example.com",
        } for index in range(10)]
        for item in items:
            item["wallet"] = wallet_of(item["msisdn"])
        items[4]["amount"] = 12.5
        body = json.dumps(items).encode()
        status, outcome = call(args.ingestor, partner, keys[partner], "POST", "/v1/transactions", body)
        rejected = [f"#{item['index']} {error['field']}: {error['reason']}"
                    for item in outcome.get("rejected", []) for error in item["errors"]]
        print(f"  {partner} signed batch {number + 1}: HTTP {status}, {len(outcome.get('accepted', []))} acknowledged "
              f"by the broker, rejected {rejected}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ingestor", required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    args = parser.parse_args()
    with open(args.keys) as source:
        keys = json.load(source)
    rng = random.Random(2026)
    upload(args, keys, rng)
    batches(args, keys, rng)


if __name__ == "__main__":
    main()
