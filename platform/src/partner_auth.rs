//! The partner signature scheme, shared by every API a partner calls (the ingestor's publish
//! and upload endpoints, the informer's reads).
//!
//! A request carries `X-Cezbek-Partner`, `X-Cezbek-Key-Id`, `X-Cezbek-Timestamp` (unix
//! seconds) and `X-Cezbek-Signature`: lowercase hex HMAC-SHA256 over
//! `"{METHOD}\n{PATH}\n{TIMESTAMP}\n{hex sha256(body)}"`, keyed with the base64-decoded secret
//! of one of the partner's keys. `PATH` is the request target as sent: the path, plus `?` and
//! the query string when there is one, so query parameters are signed too.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, PoisonError};

use axum::http::HeaderMap;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use cezbek_rules::{PartnerStatus, RuleSnapshot};
use cezbek_schemas::PartnerCode;

pub const PARTNER_HEADER: &str = "x-cezbek-partner";
pub const KEY_ID_HEADER: &str = "x-cezbek-key-id";
pub const TIMESTAMP_HEADER: &str = "x-cezbek-timestamp";
pub const SIGNATURE_HEADER: &str = "x-cezbek-signature";

/// How far a request's timestamp may be from our clock, either way.
pub const MAX_SKEW_SECONDS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Why a request was not authenticated. Each one is a 401; the reason is a metric label and,
/// in words, the problem detail (which never says more than the caller could know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error(
        "the X-Cezbek-Partner, X-Cezbek-Key-Id, X-Cezbek-Timestamp and X-Cezbek-Signature headers are required"
    )]
    MissingHeaders,
    #[error("unknown partner")]
    UnknownPartner,
    #[error("unknown key id for this partner")]
    UnknownKey,
    #[error("this key has expired; sign with a current key")]
    ExpiredKey,
    #[error("the partner is suspended")]
    SuspendedPartner,
    #[error("X-Cezbek-Timestamp must be unix seconds within 300 s of the server's clock")]
    StaleTimestamp,
    #[error("the signature does not match the request")]
    BadSignature,
    #[error("this signature was already used; sign each request afresh")]
    Replay,
}

impl AuthFailure {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingHeaders => "missing_headers",
            Self::UnknownPartner => "unknown_partner",
            Self::UnknownKey => "unknown_key",
            Self::ExpiredKey => "expired_key",
            Self::SuspendedPartner => "suspended_partner",
            Self::StaleTimestamp => "stale_timestamp",
            Self::BadSignature => "bad_signature",
            Self::Replay => "replay",
        }
    }
}

/// The string that is signed.
pub fn canonical_request(method: &str, path: &str, timestamp: i64, body: &[u8]) -> String {
    format!("{method}\n{path}\n{timestamp}\n{}", hex::encode(Sha256::digest(body)))
}

/// Signs a request: what a partner's client (and `cezbek sign`) computes.
pub fn sign(secret: &[u8], method: &str, path: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(canonical_request(method, path, timestamp, body).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Decodes a partner key's secret (standard base64, padding optional).
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let trimmed = secret.trim().trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed).ok()
}

fn new_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// Remembers the signatures seen within the timestamp window, so each can be used once.
/// Signatures are kept in 10-second buckets of their request timestamp; a bucket is dropped
/// once every timestamp in it is outside the window, so memory follows the request rate.
/// Each instance remembers its own requests: behind a load balancer, a replay sent to another
/// replica within the window is not caught (sticky routing per partner closes that gap).
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<BTreeMap<i64, HashSet<[u8; 32]>>>,
}

const REPLAY_BUCKET_SECONDS: i64 = 10;

impl ReplayGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a signature; false if it was already recorded.
    fn first_use(&self, timestamp: i64, signature: [u8; 32], now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest_live_bucket = (now - MAX_SKEW_SECONDS).div_euclid(REPLAY_BUCKET_SECONDS);
        while let Some(entry) = seen.first_entry() {
            if *entry.key() >= oldest_live_bucket {
                break;
            }
            entry.remove();
        }
        seen.entry(timestamp.div_euclid(REPLAY_BUCKET_SECONDS)).or_default().insert(signature)
    }

    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the signature headers of a request say, checked as far as they can be without the
/// body: the partner and key exist, the timestamp is fresh, the signature is well-formed. A
/// service checks this before it reads a body, so an unsigned caller cannot make it read (and
/// hash) a megabyte first.
#[derive(Debug)]
pub struct SignedHeaders {
    partner: PartnerCode,
    /// The key's secret, decoded (`None`: it does not decode, so it cannot have signed).
    secret: Option<Vec<u8>>,
    timestamp: i64,
    signature: [u8; 32],
    expired: bool,
    suspended: bool,
}

/// Checks the signature headers against the partners in `rules` (see [`SignedHeaders`]).
pub fn check_headers(
    rules: &RuleSnapshot,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<SignedHeaders, AuthFailure> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let (Some(partner), Some(key_id), Some(timestamp), Some(signature)) = (
        header(PARTNER_HEADER),
        header(KEY_ID_HEADER),
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
    ) else {
        return Err(AuthFailure::MissingHeaders);
    };
    let code = PartnerCode::parse(partner).map_err(|_| AuthFailure::UnknownPartner)?;
    let record = rules.partner_rules(&code).and_then(|rules| rules.partner());
    let Some(record) = record else {
        return Err(AuthFailure::UnknownPartner);
    };
    let Some(key) = record.keys.iter().find(|key| key.key_id == key_id) else {
        return Err(AuthFailure::UnknownKey);
    };
    let timestamp: i64 = timestamp.trim().parse().map_err(|_| AuthFailure::StaleTimestamp)?;
    // Checked: the header is the caller's, and i64::MIN or MAX must be a 401, not a panic.
    let skew = now.timestamp().checked_sub(timestamp).map(i64::unsigned_abs);
    if skew.is_none_or(|skew| skew > MAX_SKEW_SECONDS.unsigned_abs()) {
        return Err(AuthFailure::StaleTimestamp);
    }
    let mut signature_bytes = [0u8; 32];
    hex::decode_to_slice(signature.trim(), &mut signature_bytes)
        .map_err(|_| AuthFailure::BadSignature)?;
    Ok(SignedHeaders {
        partner: code,
        secret: decode_secret(&key.secret),
        timestamp,
        signature: signature_bytes,
        expired: key.not_after.is_some_and(|not_after| not_after <= now),
        suspended: record.status == PartnerStatus::Suspended,
    })
}

impl SignedHeaders {
    /// Checks the signature over the request; returns the partner. `replay` remembers
    /// signatures for requests that change state; reads pass `None` (a signature covers only
    /// method, target, second and body, so two identical reads within a second would
    /// otherwise be refused).
    ///
    /// The signature is checked before the key's expiry and the partner's status, so a
    /// caller without a valid signature learns nothing about either.
    pub fn verify(
        self,
        method: &str,
        path: &str,
        body: &[u8],
        now: DateTime<Utc>,
        replay: Option<&ReplayGuard>,
    ) -> Result<PartnerCode, AuthFailure> {
        let secret = self.secret.as_deref().ok_or(AuthFailure::BadSignature)?;
        let mut mac = new_mac(secret);
        mac.update(canonical_request(method, path, self.timestamp, body).as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&self.signature).map_err(|_| AuthFailure::BadSignature)?;
        if self.expired {
            return Err(AuthFailure::ExpiredKey);
        }
        if self.suspended {
            return Err(AuthFailure::SuspendedPartner);
        }
        if let Some(replay) = replay
            && !replay.first_use(self.timestamp, self.signature, now.timestamp())
        {
            return Err(AuthFailure::Replay);
        }
        Ok(self.partner)
    }
}

/// Authenticates a signed request against the partners in `rules`; returns the partner:
/// [`check_headers`], then [`SignedHeaders::verify`].
pub fn verify(
    rules: &RuleSnapshot,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
    now: DateTime<Utc>,
    replay: Option<&ReplayGuard>,
) -> Result<PartnerCode, AuthFailure> {
    check_headers(rules, headers, now)?.verify(method, path, body, now, replay)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use chrono::TimeZone;

    use cezbek_rules::{Partner, PartnerKey};
    use cezbek_schemas::Currency;

    use super::*;

    const SECRET_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0).single().unwrap()
    }

    fn rules(status: PartnerStatus, not_after: Option<DateTime<Utc>>) -> RuleSnapshot {
        let partner = Partner {
            code: PartnerCode::parse("TOKO").unwrap(),
            name: String::new(),
            status,
            currency: Currency::parse("IDR").unwrap(),
            time_zone: "Asia/Jakarta".into(),
            max_cashback_per_transaction: None,
            keys: vec![PartnerKey { key_id: "k1".into(), secret: SECRET_B64.into(), not_after }],
            customer_tokens: None,
            payout_policy: None,
        };
        RuleSnapshot::builder().partner(partner).build(7)
    }

    fn headers(partner: &str, key: &str, timestamp: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (PARTNER_HEADER, partner.to_owned()),
            (KEY_ID_HEADER, key.to_owned()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, signature.to_owned()),
        ] {
            headers.insert(name, HeaderValue::from_str(&value).unwrap());
        }
        headers
    }

    fn signed(timestamp: i64, body: &[u8]) -> HeaderMap {
        let secret = decode_secret(SECRET_B64).unwrap();
        let signature = sign(&secret, "POST", "/v1/transactions", timestamp, body);
        headers("TOKO", "k1", timestamp, &signature)
    }

    fn check(
        rules: &RuleSnapshot,
        headers: &HeaderMap,
        guard: &ReplayGuard,
    ) -> Result<(), AuthFailure> {
        verify(rules, headers, "POST", "/v1/transactions", b"{}", now(), Some(guard)).map(drop)
    }

    #[test]
    fn the_signature_matches_an_independent_hmac() {
        // Computed with: printf 'POST\n/v1/transactions\n1700000000\n%s' "$(printf '{}' | sha256sum | cut -d' ' -f1)"
        //   | openssl dgst -sha256 -mac HMAC -macopt key:0123456789abcdef0123456789abcdef
        let secret = decode_secret(SECRET_B64).unwrap();
        assert_eq!(secret, b"0123456789abcdef0123456789abcdef");
        assert_eq!(
            sign(&secret, "POST", "/v1/transactions", 1_700_000_000, b"{}"),
            "3ec0c378799daea91ab64529762738e9afac190325100a1504d759d1b84f35b1"
        );
    }

    #[test]
    fn a_valid_request_passes_once() {
        let rules = rules(PartnerStatus::Active, None);
        let guard = ReplayGuard::new();
        let request = signed(now().timestamp() - 100, b"{}");
        assert_eq!(check(&rules, &request, &guard), Ok(()));
        assert_eq!(check(&rules, &request, &guard), Err(AuthFailure::Replay));
        // Without a guard (reads), the same signed request passes again.
        let again = verify(&rules, &request, "POST", "/v1/transactions", b"{}", now(), None);
        assert_eq!(again.map(drop), Ok(()));
    }

    #[test]
    fn every_failure_has_its_reason() {
        let active = rules(PartnerStatus::Active, None);
        let guard = ReplayGuard::new();
        let ts = now().timestamp();
        let good = signed(ts, b"{}");
        let signature = good.get(SIGNATURE_HEADER).unwrap().to_str().unwrap().to_owned();

        assert_eq!(check(&active, &HeaderMap::new(), &guard), Err(AuthFailure::MissingHeaders));
        let unknown = headers("WARUNG", "k1", ts, &signature);
        assert_eq!(check(&active, &unknown, &guard), Err(AuthFailure::UnknownPartner));
        let bad_code = headers("not a code", "k1", ts, &signature);
        assert_eq!(check(&active, &bad_code, &guard), Err(AuthFailure::UnknownPartner));
        let other_key = headers("TOKO", "k2", ts, &signature);
        assert_eq!(check(&active, &other_key, &guard), Err(AuthFailure::UnknownKey));
        assert_eq!(
            check(&active, &signed(ts - 301, b"{}"), &guard),
            Err(AuthFailure::StaleTimestamp)
        );
        assert_eq!(
            check(&active, &signed(ts + 301, b"{}"), &guard),
            Err(AuthFailure::StaleTimestamp)
        );
        // Signed over another body.
        assert_eq!(check(&active, &signed(ts, b"[]"), &guard), Err(AuthFailure::BadSignature));
        let garbage = headers("TOKO", "k1", ts, "zz");
        assert_eq!(check(&active, &garbage, &guard), Err(AuthFailure::BadSignature));

        let suspended = rules(PartnerStatus::Suspended, None);
        assert_eq!(check(&suspended, &good, &guard), Err(AuthFailure::SuspendedPartner));
        let expired = rules(PartnerStatus::Active, Some(now()));
        assert_eq!(check(&expired, &good, &guard), Err(AuthFailure::ExpiredKey));
        // None of the failures above used up the signature.
        assert_eq!(check(&active, &good, &guard), Ok(()));
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let active = rules(PartnerStatus::Active, None);
        let guard = ReplayGuard::new();
        for timestamp in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX] {
            let request = signed(timestamp, b"{}");
            assert_eq!(check(&active, &request, &guard), Err(AuthFailure::StaleTimestamp));
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever a caller puts in the headers and the body, verification answers (it
            /// never panics), and an unsigned request never passes.
            #[test]
            fn any_headers_get_an_answer(
                partner in prop_oneof![Just("TOKO".to_owned()), "\\PC{0,20}"],
                key_id in prop_oneof![Just("k1".to_owned()), "\\PC{0,10}"],
                timestamp in prop_oneof![
                    any::<i64>().prop_map(|t| t.to_string()),
                    "\\PC{0,30}",
                    (-400i64..400).prop_map(|d| (1_700_000_000 + d).to_string()),
                ],
                signature in "[0-9a-f]{64}|\\PC{0,70}",
                body in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let active = rules(PartnerStatus::Active, None);
                let mut headers = HeaderMap::new();
                for (name, value) in [
                    (PARTNER_HEADER, partner),
                    (KEY_ID_HEADER, key_id),
                    (TIMESTAMP_HEADER, timestamp),
                    (SIGNATURE_HEADER, signature),
                ] {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        headers.insert(name, value);
                    }
                }
                let answer =
                    verify(&active, &headers, "POST", "/v1/transactions", &body, now(), None);
                prop_assert!(answer.is_err(), "an unsigned request passed: {headers:?}");
            }
        }
    }

    #[test]
    fn the_replay_guard_forgets_what_the_window_no_longer_accepts() {
        let guard = ReplayGuard::new();
        let t = 1_700_000_000;
        assert!(guard.first_use(t, [1; 32], t));
        assert!(guard.first_use(t, [2; 32], t));
        assert!(!guard.first_use(t, [1; 32], t + 10));
        assert_eq!(guard.len(), 2);
        // Long after, the old bucket is gone and only the new signature is kept.
        assert!(guard.first_use(t + 400, [3; 32], t + 400));
        assert_eq!(guard.len(), 1);
    }
}
