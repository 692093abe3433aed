"""Creates what Cezbek needs on the local stack: the Kafka topics, the S3 bucket, the SQS queue
and the bucket's event notifications to it. Safe to run again: existing things are kept."""

import argparse
import boto3
from confluent_kafka.admin import AdminClient, NewTopic

TOPICS = {
    "cezbek.transactions.v1": 6,
    "cezbek.rewards.v1": 6,
    "cezbek.payouts.v1": 6,
    "cezbek.payouts.dlq.v1": 1,
    "cezbek.transactions.dlq.v1": 1,
}


def create_topics(brokers):
    admin = AdminClient({"bootstrap.servers": brokers})
    existing = admin.list_topics(timeout=10).topics
    wanted = [NewTopic(name, num_partitions=count, replication_factor=1)
              for name, count in TOPICS.items() if name not in existing]
    if wanted:
        for name, future in admin.create_topics(wanted, operation_timeout=10).items():
            future.result()
            print(f"topic {name} created")
    for name in TOPICS:
        if name in existing:
            print(f"topic {name} exists")


def create_bucket_and_queue(endpoint, region, bucket, queue, cors_origins):
    session = boto3.session.Session(aws_access_key_id="cezbek", aws_secret_access_key="cezbek-secret",
                                    region_name=region)
    s3 = session.client("s3", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    # The console's uploads page PUTs files from the browser straight to presigned URLs.
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": cors_origins,
        "AllowedMethods": ["PUT"],
        "AllowedHeaders": ["content-type"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3000,
    }]})
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{
            "Id": "cezbek-incoming",
            "QueueArn": queue_arn,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
        }]},
    )
    print(f"bucket {bucket} with notifications to {queue_url}")
    return queue_url


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", help="create the topics on these brokers (skipped when absent)")
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--bucket", default="cezbek")
    parser.add_argument("--queue", default="cezbek-incoming")
    parser.add_argument("--cors-origins", default="http://127.0.0.1:8087,http://localhost:8087,http://127.0.0.1:8287",
                        help="origins whose pages may PUT uploads: the console of the demo and of its browser tests")
    args = parser.parse_args()
    if args.brokers:
        create_topics(args.brokers)
    create_bucket_and_queue(args.s3_endpoint, args.region, args.bucket, args.queue,
                            args.cors_origins.split(","))


if __name__ == "__main__":
    main()
