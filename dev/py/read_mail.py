"""Reads .eml files (the SMTP capture server's, or the notifier's file outbox) and prints them
as JSON, for tests and the demo: one object per message whose To ends with --to-suffix, oldest first, with the
headers that matter and both parts decoded (quoted-printable, base64) by Python's own MIME
parser."""

import argparse
import email
import email.policy
import json
import os


def parts(message):
    text, html = None, None
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and text is None:
            text = part.get_content()
        elif kind == "text/html" and html is None:
            html = part.get_content()
    return text, html


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--to-suffix", default="")
    args = parser.parse_args()
    found = []
    # Flat (the capture server's arrival-ordered names) or nested (the notifier's file outbox,
    # PARTNER/DAY/MSISDN.eml): every finished .eml below --dir, in path order.
    names = sorted(
        os.path.relpath(os.path.join(folder, name), args.dir)
        for folder, _, files in os.walk(args.dir)
        for name in files
        if name.endswith(".eml") and not name.startswith(".")
    )
    for name in names:
        with open(os.path.join(args.dir, name), "rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        to = str(message.get("To", ""))
        if not to.rstrip(">").endswith(args.to_suffix):
            continue
        text, html = parts(message)
        found.append(
            {
                "file": name,
                "to": to,
                "from": str(message.get("From", "")),
                "subject": str(message.get("Subject", "")),
                "message_id": str(message.get("Message-ID", "")),
                "list_unsubscribe": str(message.get("List-Unsubscribe", "")),
                "list_unsubscribe_post": str(message.get("List-Unsubscribe-Post", "")),
                "text": text,
                "html": html,
            }
        )
    print(json.dumps(found))


if __name__ == "__main__":
    main()
