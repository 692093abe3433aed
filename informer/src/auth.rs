//! Who is asking. Three kinds of callers, checked in this order:
//! - a partner, by the ingestor's HMAC signature scheme (`X-Cezbek-*` headers): sees its own
//!   customers, transactions and reports;
//! - an admin, by a bearer token from `CEZBEK_ADMIN_TOKENS`: sees everything;
//! - a customer, by a bearer JWT from the partner's identity provider, verified with that
//!   partner's own keys (see `customer_tokens`), carrying `partner` and `msisdn` claims: sees
//!   their own rewards, summary and transactions.

use axum::http::{HeaderMap, header};

use cezbek_schemas::{Msisdn, PartnerCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin { name: String },
    Partner(PartnerCode),
    Customer { partner: PartnerCode, msisdn: Msisdn },
}

impl Caller {
    /// Partner-wide data: reports, any transaction, any customer.
    pub fn may_read_partner(&self, partner: &PartnerCode) -> bool {
        match self {
            Self::Admin { .. } => true,
            Self::Partner(own) => own == partner,
            Self::Customer { .. } => false,
        }
    }

    /// One customer's rewards and summary.
    pub fn may_read_customer(&self, partner: &PartnerCode, msisdn: &Msisdn) -> bool {
        match self {
            Self::Customer { partner: own_partner, msisdn: own } => {
                own_partner == partner && own == msisdn
            }
            _ => self.may_read_partner(partner),
        }
    }

    /// The label metrics and logs use.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Admin { .. } => "admin",
            Self::Partner(_) => "partner",
            Self::Customer { .. } => "customer",
        }
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
