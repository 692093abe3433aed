"""Signing for schemathesis runs against Cezbek's partner APIs (loaded through
SCHEMATHESIS_HOOKS).

Partner requests are signed: X-Cezbek-Signature is HMAC-SHA256 over the method, the request
target, a timestamp and the body's SHA-256 (see platform/src/partner_auth.rs). The runner sends
the placeholder `X-Cezbek-Signature: sign` as the operation's credentials; every request that
still carries it when it leaves is signed here over its exact target and bytes, with the key in
CEZBEK_ST_KEY (`PARTNER:KEY_ID:BASE64_SECRET`). Requests whose credentials schemathesis removed
or replaced (its authentication checks) go out unsigned, as a stranger's would. Signing happens
on the prepared request because only there are the final body bytes and query string known."""

import base64
import datetime
import hashlib
import hmac
import os
import time

import requests
import schemathesis

PLACEHOLDER = "sign"
_send = requests.Session.send


def _signed_send(session, request, **kwargs):
    if request.headers.get("X-Cezbek-Signature") == PLACEHOLDER:
        partner, key_id, secret = os.environ["CEZBEK_ST_KEY"].split(":", 2)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        timestamp = str(int(time.time()))
        message = "\n".join([request.method.upper(), request.path_url, timestamp,
                             hashlib.sha256(body).hexdigest()])
        request.headers["X-Cezbek-Partner"] = partner
        request.headers["X-Cezbek-Key-Id"] = key_id
        request.headers["X-Cezbek-Timestamp"] = timestamp
        request.headers["X-Cezbek-Signature"] = hmac.new(
            base64.b64decode(secret), message.encode(), hashlib.sha256).hexdigest()
    return _send(session, request, **kwargs)


requests.Session.send = _signed_send


# A transaction's time must lie between 1970 and an hour from now: a rule JSON Schema cannot
# state (the document says it in words). Generated times outside it are moved inside, so a
# schema-valid transaction is a valid one; malformed times stay as generated.
EARLIEST = datetime.datetime(1970, 1, 2, tzinfo=datetime.timezone.utc)


@schemathesis.hook
def map_body(context, body):
    if context.operation is None or context.operation.path != "/v1/transactions":
        return body
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict) and isinstance(item.get("occurred_at"), str):
            try:
                at = datetime.datetime.fromisoformat(item["occurred_at"])
            except ValueError:
                continue
            if at.tzinfo is not None and not EARLIEST <= at <= datetime.datetime.now(datetime.timezone.utc):
                item["occurred_at"] = "2026-01-01T00:00:00Z"
    return body


@schemathesis.hook
def map_query(context, query):
    """Two of the history's query rules lie outside JSON Schema: `cursor` is a value only the
    server mints (signed, bound to the query), and `to` must come after `from`. A generated
    cursor is dropped, and `to` is dropped when `from` is there too; both stay covered alone."""
    if context.operation is None or not context.operation.path.endswith("/rewards") or not query:
        return query
    query.pop("cursor", None)
    if "from" in query and "to" in query:
        query.pop("to")
    return query
