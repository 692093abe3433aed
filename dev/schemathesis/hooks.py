"""Signing for schemathesis runs against Cezbek's partner APIs (loaded through
SCHEMATHESIS_HOOKS).

Partner requests are signed: X-Cezbek-Signature is HMAC-SHA256 over the method, the request
target, a timestamp and the body's SHA-256 (see platform/src/partner_auth.rs). The runner sends
the placeholder `X-Cezbek-Signature: sign` as the operation's credentials; every request that
still carries it when it leaves is signed here over its exact target and bytes, with the key in
CEZBEK_ST_KEY (`PARTNER:KEY_ID:BASE64_SECRET`). Requests whose credentials schemathesis removed
or replaced (its authentication checks) go out unsigned, as a stranger's would. Signing happens
on the prepared request because only there are the final body bytes and query string known.

Campaignex's writes need more than a schema can say; see `map_body` and `_with_current_version`."""

import base64
import copy
import datetime
import hashlib
import hmac
import json
import os
import re
import time

import requests
import schemathesis
from schemathesis.generation import GenerationMode

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


# A replacement must name the version it replaces (If-Match), as a client that read the rule
# first does. A schema-valid If-Match that schemathesis made up names some version, rarely the
# current one: before a PUT leaves, the rule is read and the header set to its ETag, so the
# replacement itself is exercised. Missing or malformed If-Match headers go out as generated.
IF_MATCH = re.compile(r'^(W/)?"[0-9]{1,18}"$|^[0-9]{1,18}$')


def _with_current_version(session, request, **kwargs):
    if_match = request.headers.get("If-Match")
    if request.method not in ("PUT", "DELETE") or not isinstance(if_match, str) or not IF_MATCH.match(if_match):
        return
    # Built by hand, not with Request.prepare(): preparing normalises the path, and a rule whose
    # id is "." would be read at its collection's address instead (a stale If-Match, then 412).
    read = requests.PreparedRequest()
    read.method = "GET"
    read.url = request.url
    read.headers = requests.structures.CaseInsensitiveDict(
        {"Authorization": request.headers.get("Authorization", "")})
    read.body = None
    current = _signed_send(session, read, **kwargs)
    if current.status_code == 200 and current.headers.get("ETag"):
        request.headers["If-Match"] = current.headers["ETag"]


def _between_fields(path, item):
    """The rules between two fields of a body. Applied to cases of every kind, as moving a value
    that breaks only such a rule cannot hide a value that breaks the schema."""
    if path.startswith("/v1/partners/{partner}/campaigns"):
        _campaign(item)
    elif path.startswith("/v1/partners/{partner}/exclusions"):
        _after(item, "valid_from", "valid_until")
    elif path == "/v1/partners/{partner}/tiers":
        _tiers(item)
    elif path in ("/v1/partners", "/v1/partners/{partner}"):
        _payout_policy(item)
    elif path in ("/v1/providers", "/v1/providers/{name}"):
        _provider(item)
    elif path == "/v1/partners/{partner}/backtests":
        _backtest(item)


# The stateful phase fills bodies from earlier answers after the case hooks ran: the rules
# between fields are applied again as the request leaves.
TEMPLATES = [
    (re.compile(r"^/v1/partners/[^/]+/campaigns(/[^/]+)?$"), "/v1/partners/{partner}/campaigns"),
    (re.compile(r"^/v1/partners/[^/]+/exclusions(/[^/]+)?$"), "/v1/partners/{partner}/exclusions"),
    (re.compile(r"^/v1/partners/[^/]+/tiers$"), "/v1/partners/{partner}/tiers"),
    (re.compile(r"^/v1/partners$"), "/v1/partners"),
    (re.compile(r"^/v1/partners/[^/]+$"), "/v1/partners/{partner}"),
    (re.compile(r"^/v1/providers$"), "/v1/providers"),
    (re.compile(r"^/v1/partners/[^/]+/backtests$"), "/v1/partners/{partner}/backtests"),
    (re.compile(r"^/v1/providers/[^/]+$"), "/v1/providers/{name}"),
]


def _between_fields_on_the_wire(request):
    if request.method not in ("POST", "PUT") or not request.body:
        return
    path = requests.utils.urlparse(request.url).path
    template = next((name for pattern, name in TEMPLATES if pattern.match(path)), None)
    if template is None:
        return
    try:
        body = json.loads(request.body)
    except ValueError:
        return
    if isinstance(body, dict):
        _between_fields(template, body)
        _path_names(request.method, path, body)
        request.prepare_body(data=None, files=None, json=body)


# A replacement's id (or a provider's name) may be left out, or must be the path's. The stateful
# phase fills bodies from other rules' answers: a schema-valid id naming another rule is set to
# the path's, as a client replacing the rule it read would send.
PATH_NAMES = [
    (re.compile(r"^/v1/partners/[^/]+/(campaigns|exclusions)/([^/]+)$"), "id"),
    (re.compile(r"^/v1/providers/([^/]+)$"), "name"),
]


def _path_names(method, path, body):
    if method != "PUT":
        return
    for pattern, field in PATH_NAMES:
        match = pattern.match(path)
        if match and isinstance(body.get(field), str) and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", body[field]):
            body[field] = requests.utils.unquote(match.groups()[-1])


def _send_current(session, request, **kwargs):
    _between_fields_on_the_wire(request)
    _with_current_version(session, request, **kwargs)
    return _signed_send(session, request, **kwargs)


requests.Session.send = _send_current


# A transaction's time must lie between 1970 and an hour from now: a rule JSON Schema cannot
# state (the document says it in words). Generated times outside it are moved inside, so a
# schema-valid transaction is a valid one; malformed times stay as generated.
EARLIEST = datetime.datetime(1970, 1, 2, tzinfo=datetime.timezone.utc)


def _time(value):
    """An RFC 3339 time with its offset, or None."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _transaction_time(item):
    value = item.get("occurred_at")
    at = _time(value)
    if isinstance(value, str) and (at is None or not EARLIEST <= at <= datetime.datetime.now(datetime.timezone.utc)):
        item["occurred_at"] = "2026-01-01T00:00:00Z"


def _times(item, *fields):
    """The coverage phase does not check formats: in a schema-valid case, a text that is no
    time is made one."""
    for field in fields:
        if isinstance(item.get(field), str) and _time(item[field]) is None:
            item[field] = "2026-01-01T00:00:00Z"


def _after(item, start, end):
    """`end` must come after `start`: a generated end at or before the start is moved."""
    began, ended = _time(item.get(start)), _time(item.get(end))
    if began is not None and ended is not None and ended <= began:
        if began.year >= 9999:
            item[start] = "2026-01-01T00:00:00Z"
            began = _time(item[start])
        item[end] = (began + datetime.timedelta(days=1)).isoformat()


def _campaign(body):
    _after(body, "starts_at", "ends_at")
    conditions = body.get("conditions")
    if isinstance(conditions, dict):
        low, high = conditions.get("min_amount"), conditions.get("max_amount")
        numbers = all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in (low, high))
        if numbers and low > high:
            conditions["min_amount"], conditions["max_amount"] = high, low


def _date(value):
    try:
        return datetime.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _backtest(body):
    """A backtest's period ends on or after its first day and spans at most 366 days; a draft's
    rules keep their own rules between fields, and a draft names each campaign and exclusion
    once."""
    began, ended = _date(body.get("from")), _date(body.get("to"))
    if began is not None and ended is not None:
        if ended < began:
            body["to"] = began.isoformat()
        elif (ended - began).days >= 366:
            body["to"] = (began + datetime.timedelta(days=365)).isoformat()
    draft = body.get("draft")
    if not isinstance(draft, dict):
        return
    for field, rule in (("campaigns", _campaign), ("exclusions", lambda item: _after(item, "valid_from", "valid_until"))):
        items = draft.get(field)
        if not isinstance(items, list):
            continue
        seen = set()
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            rule(item)
            if isinstance(item.get("id"), str):
                if item["id"] in seen:
                    item["id"] = f"draft-{index}"
                seen.add(item["id"])
    if isinstance(draft.get("tiers"), dict):
        _tiers(draft["tiers"])


def _draft_times(body):
    """A draft's rules' times, as for the rules themselves (schema-valid cases only)."""
    draft = body.get("draft")
    if not isinstance(draft, dict):
        return
    for field, times in (("campaigns", ("starts_at", "ends_at")), ("exclusions", ("valid_from", "valid_until"))):
        for item in draft.get(field) if isinstance(draft.get(field), list) else []:
            if isinstance(item, dict):
                _times(item, *times)


def _draft_partner(case, body):
    """A draft's rules belong to the path's partner: one that names a partner names that one."""
    draft = body.get("draft")
    partner = case.path_parameters.get("partner")
    if not isinstance(draft, dict) or not isinstance(partner, str):
        return
    rules = [draft.get("tiers")]
    for field in ("campaigns", "exclusions"):
        if isinstance(draft.get(field), list):
            rules.extend(draft[field])
    for rule in rules:
        if isinstance(rule, dict) and isinstance(rule.get("partner"), str):
            rule["partner"] = partner


def _payout_policy(body):
    policy = body.get("payout_policy")
    if not isinstance(policy, dict):
        return
    low, high = policy.get("minimum"), policy.get("maximum_per_day")
    # Whole numbers may come as 231.0, which the API reads as 231.
    numbers = all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in (low, high))
    if numbers and low > high:
        policy["minimum"], policy["maximum_per_day"] = high, low


# The credentials each adapter names (no more, no fewer), as the description of the schema says.
CREDENTIALS = {
    "xendit": ["secret_key", "callback_token"],
    "iris": ["creator_key", "approver_key", "merchant_key"],
    "snap": ["client_key", "client_secret", "private_key"],
}


VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


def _clock(text):
    """A time of day `HH:MM[:SS]` as seconds, or None."""
    match = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?", text) if isinstance(text, str) else None
    if match is None:
        return None
    return int(match[1]) * 3600 + int(match[2]) * 60 + int(match[3] or 0)


def _provider(body):
    """A provider's credentials are exactly its adapter's roles (missing ones named, others'
    dropped, but only where that cannot mend a value that breaks the schema); a channel's
    maximum is at least its minimum; hours never open and close at the same time."""
    adapter = body.get("adapter")
    roles = CREDENTIALS.get(adapter) if isinstance(adapter, str) else None
    credentials = body.get("credentials")
    if roles is not None and isinstance(credentials, dict):
        for role in list(credentials):
            if role not in roles and isinstance(credentials[role], str) and VARIABLE.match(credentials[role]):
                del credentials[role]
        for role in roles:
            credentials.setdefault(role, f"{role.upper()}_VARIABLE")
    channels = body.get("channels")
    for terms in (channels.values() if isinstance(channels, dict) else []):
        if not isinstance(terms, dict):
            continue
        low, high = terms.get("min_amount"), terms.get("max_amount")
        numbers = all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in (low, high))
        if numbers and low > high:
            terms["min_amount"], terms["max_amount"] = high, low
    hours = body.get("hours")
    if isinstance(hours, dict):
        opened, closed = _clock(hours.get("open")), _clock(hours.get("close"))
        if opened is not None and opened == closed:
            hours["close"] = "12:00" if opened == 0 else "00:00"


def _tiers(body):
    tiers = body.get("tiers")
    if not isinstance(tiers, list):
        return
    seen = set()
    for index, tier in enumerate(tiers):
        if not isinstance(tier, dict):
            continue
        if isinstance(tier.get("name"), str):
            if tier["name"] in seen:
                tier["name"] = f"T{index}"[:32]
            seen.add(tier["name"])
        if tier.get("min_purchases") is None and tier.get("min_spend") is None:
            tier["min_purchases"] = 1


# A PEM is a public key only if it is one: a generated "-----BEGIN…" string is replaced with a
# real key of the algorithm's type (made by the runner).
PEM_FOR = {"RS": "RSA", "PS": "RSA", "ES256": "P256", "ES384": "P384", "EdDSA": "ED25519"}


def _customer_tokens(body):
    tokens = body.get("customer_tokens")
    if not isinstance(tokens, dict) or not isinstance(tokens.get("keys"), list):
        return
    algorithm = tokens.get("algorithm")
    if not isinstance(algorithm, str):
        return
    kind = PEM_FOR.get(algorithm) or PEM_FOR.get(algorithm[:2])
    for key in tokens["keys"]:
        if kind and isinstance(key, dict) and isinstance(key.get("pem"), str):
            key["pem"] = os.environ[f"CEZBEK_ST_PEM_{kind}"]


def _sample(body):
    _transaction_time(body)
    original = body.get("original_transaction_id")
    if body.get("kind") == "REFUND" and original is None:
        body["original_transaction_id"] = "sample-original"
    elif body.get("kind") in (None, "PURCHASE") and isinstance(original, str):
        del body["original_transaction_id"]


# What the path decides, a body may repeat only as the path says it.
PATH_FIELDS = {"partner": ("partner", "code"), "id": ("id",)}


def _path_fields(case, body):
    for parameter, fields in PATH_FIELDS.items():
        value = case.path_parameters.get(parameter)
        for field in fields:
            if field == "code" and case.operation.path != "/v1/partners/{partner}":
                continue
            if isinstance(value, str) and isinstance(body.get(field), str):
                body[field] = value


def _days_query(query):
    """A range of report days: `to` not before `from` and at most 92 days in all, which a JSON
    Schema cannot state. A schema-valid range that breaks it ends on its first day instead."""
    began, ended = _date(query.get("from")), _date(query.get("to"))
    if began and ended and not datetime.timedelta(0) <= ended - began < datetime.timedelta(days=92):
        query["to"] = query["from"]


@schemathesis.hook
def map_case(context, case):
    """Rules that span fields, or a field and the path, which a JSON Schema cannot state (the
    documents say them in words): a schema-valid case that breaks one is moved just inside it.
    Cases generated to break the schema go out as generated. (A case hook, because the coverage
    phase applies no body hooks.)"""
    meta = case.meta
    if meta is not None and meta.generation.mode == GenerationMode.NEGATIVE:
        return case
    path = case.operation.path
    if path.endswith("/rewards") and isinstance(case.query, dict):
        case.query = dict(case.query)
        _history_query(case.query)
    if path.endswith("/reports/days") and isinstance(case.query, dict):
        case.query = dict(case.query)
        _days_query(case.query)
    # Cases may share parts of their bodies: each gets its own before it is changed.
    # (Only JSON bodies: "no body" is a marker object that must stay itself.)
    if isinstance(case.body, (dict, list)):
        case.body = copy.deepcopy(case.body)
    for item in case.body if isinstance(case.body, list) else [case.body]:
        if not isinstance(item, dict):
            continue
        if path == "/v1/transactions":
            _transaction_time(item)
            continue
        if path.startswith("/v1/partners/{partner}"):
            _path_fields(case, item)
        if path == "/v1/partners/{partner}/backtests":
            _draft_partner(case, item)
            _draft_times(item)
        if path.startswith("/v1/partners/{partner}/campaigns"):
            _times(item, "starts_at", "ends_at")
        elif path.startswith("/v1/partners/{partner}/exclusions"):
            _times(item, "valid_from", "valid_until")
        _between_fields(path, item)
        if path == "/v1/partners/{partner}/evaluate":
            _sample(item)
        elif path in ("/v1/partners", "/v1/partners/{partner}"):
            _customer_tokens(item)
    return case


def _history_query(query):
    """Two of the history's query rules lie outside JSON Schema: `cursor` is a value only the
    server mints (signed, bound to the query), and `to` must come after `from`. A generated
    cursor is dropped, and `to` is dropped when `from` is there too; both stay covered alone."""
    query.pop("cursor", None)
    if "from" in query and "to" in query:
        query.pop("to")
