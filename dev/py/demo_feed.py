"""Feeds the demo's generated sample into the local stack and reports what happened:
a CSV upload to S3 (with the bucket notification that announces it on SQS), and sample
transactions on the transaction topic, written with fastavro from the .avsc files."""

import argparse
import csv
import io
import json
import os
import random
import time

import boto3
from confluent_kafka import Consumer, Producer, TopicPartition

import avro_interop

PARTNERS = ["TOKO_MAJU", "DOMPETKU"]


def sample_rows(count, rng):
    rows = []
    for index in range(count):
        rows.append({
            "transaction_id": f"DEMO-{index:05d}",
            "msisdn": f"0812{rng.randrange(10_000_000, 99_999_999)}",
            "amount": str(rng.randrange(10_000, 2_000_000)),
            "currency": "IDR",
            "quantity": str(rng.randrange(1, 4)),
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - rng.randrange(0, 86_400))),
            "merchant": rng.choice(["Kopi Kenangan", "Indomaret, Senayan", "Tokopedia"]),
            "mcc": rng.choice(["5814", "5411", "5999"]),
            "kind": "PURCHASE",
        })
    # Lines the ingestor will reject, each for its own reason.
    rows[3]["msisdn"] = "0812-CALL-ME"
    rows[5]["amount"] = "-100"
    rows[7]["currency"] = "RUPIAH"
    rows[9]["occurred_at"] = "yesterday"
    return rows


def upload_csv(args, partner, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    session = boto3.session.Session(aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                                    region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=args.s3_endpoint)
    sqs = session.client("sqs", endpoint_url=args.s3_endpoint)
    key = f"incoming/{partner}/demo-{int(time.time())}.csv"
    s3.put_object(Bucket=args.bucket, Key=key, Body=buffer.getvalue().encode())
    print(f"  uploaded s3://{args.bucket}/{key} ({len(rows)} rows, 4 of them bad on purpose)")
    messages = sqs.receive_message(QueueUrl=args.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
    for message in messages:
        for record in json.loads(message["Body"]).get("Records", []):
            print(f"  SQS notification: {record['eventName']} {record['s3']['object']['key']}")
        sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=message["ReceiptHandle"])


def produce(args, rows, partner):
    schema, fingerprint = avro_interop.load(os.path.join(args.schema_dir, "transaction.avsc"))
    producer = Producer({"bootstrap.servers": args.brokers, "acks": "all", "enable.idempotence": True})
    now = int(time.time() * 1000)
    for row in rows[:10]:
        msisdn = "+62" + row["msisdn"][1:] if row["msisdn"][1:].isdigit() else "+6281200000000"
        record = {
            "partner": partner, "transaction_id": row["transaction_id"], "kind": "PURCHASE",
            "original_transaction_id": None, "msisdn": msisdn, "amount": abs(int(row["amount"])),
            "currency": "IDR", "quantity": int(row["quantity"]), "merchant": row["merchant"],
            "mcc": int(row["mcc"]), "email": None, "wallet": None, "occurred_at": now,
            "source": {"channel": "API", "reference": "demo", "line": None}, "ingested_at": now,
        }
        body = io.BytesIO()
        avro_interop.fastavro.schemaless_writer(body, schema, record)
        producer.produce("cezbek.transactions.v1", key=f"{partner}:{msisdn}",
                         value=avro_interop.MAGIC + fingerprint + body.getvalue())
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": "demo-watermarks"})
    total = 0
    for partition in range(6):
        low, high = consumer.get_watermark_offsets(TopicPartition("cezbek.transactions.v1", partition), timeout=5)
        total += high - low
    consumer.close()
    print(f"  produced 10 Avro transactions for {partner}; cezbek.transactions.v1 now holds {total} messages")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--schema-dir", required=True)
    args = parser.parse_args()
    rng = random.Random(2026)
    rows = sample_rows(50, rng)
    upload_csv(args, PARTNERS[0], rows)
    produce(args, rows, PARTNERS[1])


if __name__ == "__main__":
    main()
