//! History cursors: opaque to clients, verifiable by the server. A cursor carries where the
//! last page ended plus the query it belongs to (partner, customer, range), signed with
//! HMAC-SHA256; a tampered cursor, or one reused for another customer or range, is a 400.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use cezbek_ledger::HistoryCursor;
use cezbek_schemas::{Msisdn, PartnerCode};

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("is not a cursor this server issued")]
    Invalid,
    #[error("belongs to another customer or date range; start again without a cursor")]
    OtherQuery,
}

/// What a history page was asked for; a cursor is only good for the same query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryScope<'a> {
    pub partner: &'a PartnerCode,
    pub msisdn: &'a Msisdn,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    /// Scope: partner, msisdn, from and to (microseconds).
    p: String,
    m: String,
    f: Option<i64>,
    t: Option<i64>,
    /// Position: the last record's occurred_at (microseconds) and id.
    at: i64,
    id: String,
}

#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CursorCodec(…)")
    }
}

impl CursorCodec {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    pub fn encode(&self, scope: &QueryScope<'_>, position: &HistoryCursor) -> String {
        let body = Body {
            p: scope.partner.to_string(),
            m: scope.msisdn.to_string(),
            f: scope.from.map(|at| at.timestamp_micros()),
            t: scope.to.map(|at| at.timestamp_micros()),
            at: position.occurred_at.timestamp_micros(),
            id: position.transaction_id.clone(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap_or_default());
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    pub fn decode(
        &self,
        scope: &QueryScope<'_>,
        cursor: &str,
    ) -> Result<HistoryCursor, CursorError> {
        let (payload, signature) = cursor.split_once('.').ok_or(CursorError::Invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| CursorError::Invalid)?;
        // verify_slice compares in constant time.
        self.mac(payload).verify_slice(&signature).map_err(|_| CursorError::Invalid)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| CursorError::Invalid)?;
        let body: Body = serde_json::from_slice(&json).map_err(|_| CursorError::Invalid)?;
        let same_query = body.p == scope.partner.as_str()
            && body.m == scope.msisdn.as_str()
            && body.f == scope.from.map(|at| at.timestamp_micros())
            && body.t == scope.to.map(|at| at.timestamp_micros());
        if !same_query {
            return Err(CursorError::OtherQuery);
        }
        let occurred_at = DateTime::from_timestamp_micros(body.at).ok_or(CursorError::Invalid)?;
        Ok(HistoryCursor { occurred_at, transaction_id: body.id })
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(payload.as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> (PartnerCode, Msisdn, Msisdn) {
        let parse = |text| Msisdn::parse(text).unwrap_or_else(|_| unreachable!());
        let partner = PartnerCode::parse("TOKO").unwrap_or_else(|_| unreachable!());
        (partner, parse("081200000001"), parse("081200000002"))
    }

    #[test]
    fn a_cursor_round_trips_and_refuses_tampering_and_other_queries() {
        let (partner, alice, bob) = parts();
        let codec = CursorCodec::new(b"key");
        let scope = QueryScope { partner: &partner, msisdn: &alice, from: None, to: None };
        let position = HistoryCursor {
            occurred_at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap_or_default(),
            transaction_id: "t-42".into(),
        };
        let cursor = codec.encode(&scope, &position);
        assert_eq!(codec.decode(&scope, &cursor), Ok(position.clone()));

        let bobs = QueryScope { msisdn: &bob, ..scope.clone() };
        assert_eq!(codec.decode(&bobs, &cursor), Err(CursorError::OtherQuery));
        let ranged = QueryScope { from: Some(position.occurred_at), ..scope.clone() };
        assert_eq!(codec.decode(&ranged, &cursor), Err(CursorError::OtherQuery));

        let mut tampered = cursor.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap_or_default();
        assert_eq!(codec.decode(&scope, &tampered), Err(CursorError::Invalid));
        assert_eq!(CursorCodec::new(b"other").decode(&scope, &cursor), Err(CursorError::Invalid));
        for garbage in ["", ".", "abc", "abc.def", "%%%.###"] {
            assert_eq!(codec.decode(&scope, garbage), Err(CursorError::Invalid), "{garbage:?}");
        }
    }
}
