"""Cross-implementation checks of Cezbek's Avro contract, using only the .avsc files.

  decode  --schema-dir D          hex single-object messages on stdin -> JSON lines
  encode  --schema F              JSON records on stdin -> hex single-object messages
  consume --schema-dir D --brokers B --topic T --count N
                                  Kafka messages -> JSON lines {"key", "schema", "value"}

The CRC-64-AVRO fingerprint is computed here from the spec, independently of both fastavro and
the Rust codec, so a fingerprint mismatch on either side shows up."""

import argparse
import datetime
import io
import json
import os
import sys

import fastavro

MAGIC = b"\xc3\x01"
EMPTY64 = 0xC15D213AA4D7A795


def _table():
    table = []
    for index in range(256):
        fp = index
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


TABLE = _table()


def crc64_avro(data: bytes) -> bytes:
    fp = EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def load(path):
    with open(path) as handle:
        raw = json.load(handle)
    parsed = fastavro.parse_schema(raw)
    canonical = fastavro.schema.to_parsing_canonical_form(raw)
    return parsed, crc64_avro(canonical.encode())


def load_dir(folder):
    known = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".avsc"):
            parsed, fingerprint = load(os.path.join(folder, name))
            known[fingerprint] = (name[:-5], parsed)
    return known


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def to_json(value):
    if isinstance(value, datetime.datetime):
        # Integer arithmetic: float seconds would round some milliseconds away.
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    raise TypeError(f"cannot show {type(value)}")


def decode_message(known, message: bytes):
    if message[:2] != MAGIC:
        raise ValueError(f"no single-object marker: {message[:2].hex()}")
    fingerprint = message[2:10]
    if fingerprint not in known:
        raise ValueError(f"unknown fingerprint {fingerprint.hex()}")
    name, schema = known[fingerprint]
    body = io.BytesIO(message[10:])
    value = fastavro.schemaless_reader(body, schema)
    if body.read():
        raise ValueError("trailing bytes after the record")
    return name, value


def cmd_decode(args):
    known = load_dir(args.schema_dir)
    for line in sys.stdin:
        if line.strip():
            _, value = decode_message(known, bytes.fromhex(line.strip()))
            print(json.dumps(value, default=to_json, sort_keys=True))


def cmd_encode(args):
    schema, fingerprint = load(args.schema)
    for line in sys.stdin:
        if line.strip():
            body = io.BytesIO()
            fastavro.schemaless_writer(body, schema, json.loads(line))
            print((MAGIC + fingerprint + body.getvalue()).hex())


def cmd_consume(args):
    from confluent_kafka import Consumer

    known = load_dir(args.schema_dir)
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"avro-interop-{os.getpid()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    seen = 0
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=args.timeout)
    try:
        while seen < args.count and datetime.datetime.now() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                raise RuntimeError(str(message.error()))
            name, value = decode_message(known, message.value())
            print(json.dumps({"key": message.key().decode(), "schema": name, "value": value},
                             default=to_json, sort_keys=True), flush=True)
            seen += 1
    finally:
        consumer.close()
    if seen < args.count:
        sys.exit(f"only {seen} of {args.count} messages arrived within {args.timeout}s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    decode = commands.add_parser("decode")
    decode.add_argument("--schema-dir", required=True)
    decode.set_defaults(run=cmd_decode)
    encode = commands.add_parser("encode")
    encode.add_argument("--schema", required=True)
    encode.set_defaults(run=cmd_encode)
    consume = commands.add_parser("consume")
    consume.add_argument("--schema-dir", required=True)
    consume.add_argument("--brokers", required=True)
    consume.add_argument("--topic", required=True)
    consume.add_argument("--count", type=int, required=True)
    consume.add_argument("--timeout", type=float, default=30)
    consume.set_defaults(run=cmd_consume)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
