//! Domain value types. Each one can only hold a valid value: parsing is the one way in, and a
//! failure names the field and the reason so it can be shown to the partner as it is.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::currency;

/// A value that failed validation: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValueError {
    /// The field as the user named it (`msisdn`, `mccs[2]`, …).
    pub field: String,
    /// Why the value was refused, in words a partner can act on.
    pub reason: String,
}

impl ValueError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }

    /// The same error reported against another field name (e.g. `mccs[3]` instead of `mcc`).
    #[must_use]
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

/// Implements the string conversions every value type shares, so that serde and `FromStr`
/// go through the same validating constructor.
macro_rules! string_value {
    ($type:ident) => {
        impl FromStr for $type {
            type Err = ValueError;
            fn from_str(raw: &str) -> Result<Self, ValueError> {
                Self::parse(raw)
            }
        }

        impl TryFrom<String> for $type {
            type Error = ValueError;
            fn try_from(raw: String) -> Result<Self, ValueError> {
                Self::parse(&raw)
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> String {
                value.as_str().to_owned()
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $type {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

/// A customer's phone number in E.164 form (`+` then 8–15 digits, no leading zero).
///
/// Accepted inputs: `+6281234567890`, `6281234567890`, the Indonesian national form
/// `081234567890`, the international-prefix form `006281234567890`, each with optional spaces
/// and dashes. A bare number without `+` or a leading `0` is read as already carrying its
/// country code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Msisdn(String);

/// Country code assumed for national numbers written with a leading `0`.
const NATIONAL_COUNTRY_CODE: &str = "62";
const E164_MIN_DIGITS: usize = 8;
const E164_MAX_DIGITS: usize = 15;

impl Msisdn {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let err = |reason: String| ValueError::new("msisdn", reason);
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(err("is empty".into()));
        }
        let (has_plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        // Built in place, `+` first: every transaction has one, so one allocation and no
        // formatting.
        let mut e164 = String::with_capacity(rest.len() + NATIONAL_COUNTRY_CODE.len() + 1);
        e164.push('+');
        for character in rest.chars() {
            match character {
                '0'..='9' => e164.push(character),
                ' ' | '-' => {}
                other => {
                    return Err(err(format!(
                        "contains {other:?}; only digits, spaces, dashes and a leading + are allowed"
                    )));
                }
            }
        }
        if !has_plus {
            if e164[1..].starts_with("00") {
                e164.replace_range(1..3, "");
            } else if e164[1..].starts_with('0') {
                e164.replace_range(1..2, NATIONAL_COUNTRY_CODE);
            }
        }
        if e164[1..].starts_with('0') {
            return Err(err("country code cannot start with 0".into()));
        }
        let count = e164.len() - 1;
        if !(E164_MIN_DIGITS..=E164_MAX_DIGITS).contains(&count) {
            return Err(err(format!(
                "has {count} digits with its country code; E.164 allows {E164_MIN_DIGITS} to {E164_MAX_DIGITS}"
            )));
        }
        Ok(Self(e164))
    }

    /// The E.164 form, `+62…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_value!(Msisdn);

/// A partner's code: 2–16 of `A–Z`, `0–9`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PartnerCode(String);

impl PartnerCode {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let err = |reason: String| ValueError::new("partner", reason);
        let length = raw.chars().count();
        if !(2..=16).contains(&length) {
            return Err(err(format!("has {length} characters; 2 to 16 are allowed")));
        }
        if let Some(bad) =
            raw.chars().find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(err(format!("contains {bad:?}; only A-Z, 0-9 and _ are allowed")));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_value!(PartnerCode);

/// A partner's transaction id: 1–64 characters, none of them control characters, without
/// surrounding white space (which would make two ids look equal to a person but not to us).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TransactionId(String);

impl TransactionId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let err = |reason: String| ValueError::new("transaction_id", reason);
        let length = raw.chars().count();
        if length == 0 {
            return Err(err("is empty".into()));
        }
        if length > Self::MAX_CHARS {
            return Err(err(format!(
                "has {length} characters; at most {} are allowed",
                Self::MAX_CHARS
            )));
        }
        if let Some(bad) = raw.chars().find(|c| c.is_control()) {
            return Err(err(format!("contains the control character {bad:?}")));
        }
        if raw.trim() != raw {
            return Err(err("starts or ends with white space".into()));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_value!(TransactionId);

/// A merchant category code (ISO 18245), 1–9999, written with four digits (`0742`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct Mcc(u16);

impl Mcc {
    pub const MAX: u16 = 9999;

    pub fn new(code: i64) -> Result<Self, ValueError> {
        match u16::try_from(code) {
            Ok(code) if (1..=Self::MAX).contains(&code) => Ok(Self(code)),
            _ => Err(ValueError::new("mcc", format!("is {code}; must be between 1 and 9999"))),
        }
    }

    /// Parses the decimal text form; leading zeros are allowed (`0742`).
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) || trimmed.len() > 4 {
            return Err(ValueError::new("mcc", format!("{raw:?} is not a 1 to 4 digit number")));
        }
        // At most four ASCII digits, so this parse cannot fail.
        let code: i64 = trimmed.parse().map_err(|_| ValueError::new("mcc", "is not a number"))?;
        Self::new(code)
    }

    pub fn code(self) -> u16 {
        self.0
    }
}

impl TryFrom<i32> for Mcc {
    type Error = ValueError;
    fn try_from(code: i32) -> Result<Self, ValueError> {
        Self::new(i64::from(code))
    }
}

impl From<Mcc> for i32 {
    fn from(mcc: Mcc) -> i32 {
        i32::from(mcc.0)
    }
}

impl FromStr for Mcc {
    type Err = ValueError;
    fn from_str(raw: &str) -> Result<Self, ValueError> {
        Self::parse(raw)
    }
}

impl fmt::Display for Mcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// An ISO 4217 alphabetic currency code in current use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let err = |reason: String| ValueError::new("currency", reason);
        let Ok(bytes) = <[u8; 3]>::try_from(raw.as_bytes()) else {
            return Err(err(format!("{raw:?} is not a three-letter ISO 4217 code")));
        };
        if currency::exponent_of_code(bytes).is_none() {
            return Err(err(format!("{raw:?} is not an ISO 4217 currency code in use")));
        }
        Ok(Self(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters from the ISO table get in, so this is always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// How many decimal places the minor unit has (IDR 2, JPY 0, KWD 3).
    pub fn exponent(self) -> u8 {
        currency::exponent_of_code(self.0).unwrap_or(2)
    }
}
string_value!(Currency);

impl Currency {
    /// Every code [`Currency::parse`] accepts, in order.
    pub fn known_codes() -> impl Iterator<Item = &'static str> {
        currency::ISO_4217.iter().map(|(code, _)| *code)
    }
}

/// A string schema with a pattern, for the OpenAPI documents of the services.
fn pattern_schema(
    description: &str,
    pattern: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .into()
}

impl utoipa::PartialSchema for PartnerCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        pattern_schema("2 to 16 of A-Z, 0-9 and _", "^[A-Z0-9_]{2,16}$")
    }
}
impl utoipa::ToSchema for PartnerCode {}

/// The forms [`Msisdn::parse`] reads (spaces and dashes inside a number are also read, but
/// left out of the documented form).
impl utoipa::PartialSchema for Msisdn {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        pattern_schema(
            "E.164 (+62812…) or a local form (0812…, 62812…, 0062812…); answered as +62…",
            r"^(\+[1-9][0-9]{7,14}|00[1-9][0-9]{7,14}|0[1-9][0-9]{5,12}|[1-9][0-9]{7,14})$",
        )
    }
}
impl utoipa::ToSchema for Msisdn {}

impl utoipa::PartialSchema for Mcc {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::Integer)
            .description(Some("Merchant category code (ISO 18245)"))
            .minimum(Some(1))
            .maximum(Some(Self::MAX))
            .into()
    }
}
impl utoipa::ToSchema for Mcc {}

/// In an OpenAPI document: one of the codes in use, so a generated client (or schemathesis)
/// knows which strings are valid.
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some("ISO 4217 alphabetic code in current use, e.g. IDR"))
            .enum_values(Some(Self::known_codes()))
            .into()
    }
}
impl utoipa::ToSchema for Currency {}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// An amount of money: integer minor units and a currency. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

/// Arithmetic on money that would mix currencies or overflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("cannot combine {left} with {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("amount overflows 64-bit minor units")]
    Overflow,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            });
        }
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }
}

impl fmt::Display for Money {
    /// `IDR 1500.00`, `JPY 300`: the major units with the currency's own number of decimals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = u32::from(self.currency.exponent());
        let sign = if self.minor < 0 { "-" } else { "" };
        let magnitude = self.minor.unsigned_abs();
        if exponent == 0 {
            return write!(f, "{} {sign}{magnitude}", self.currency);
        }
        let scale = 10u64.pow(exponent);
        let width = exponent as usize;
        write!(f, "{} {sign}{}.{:0width$}", self.currency, magnitude / scale, magnitude % scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msisdn_accepts_the_documented_forms_and_normalises_to_e164() {
        for raw in [
            "+6281234567890",
            "6281234567890",
            "081234567890",
            "0812-3456-7890",
            " +62 812 3456 7890 ",
            "006281234567890",
        ] {
            assert_eq!(
                Msisdn::parse(raw).map(|m| m.0),
                Ok("+6281234567890".to_owned()),
                "input {raw:?}"
            );
        }
        assert_eq!(Msisdn::parse("14155550100").map(|m| m.0), Ok("+14155550100".to_owned()));
        assert_eq!(Msisdn::parse("0 0 1 415-555-01").map(|m| m.0), Ok("+141555501".to_owned()));
        assert_eq!(Msisdn::parse("0-812 345").map(|m| m.0), Ok("+62812345".to_owned()));
    }

    #[test]
    fn msisdn_rejections_name_the_field_and_reason() {
        let letters = Msisdn::parse("0812abc4567").unwrap_err();
        assert_eq!(letters.field, "msisdn");
        assert!(letters.reason.contains("'a'"), "{letters}");
        let short = Msisdn::parse("+62812").unwrap_err();
        assert!(short.reason.contains("5 digits"), "{short}");
        let long = Msisdn::parse("+6281234567890123").unwrap_err();
        assert!(long.reason.contains("16 digits"), "{long}");
        assert!(Msisdn::parse("").is_err());
        assert!(Msisdn::parse("+").is_err());
        assert!(Msisdn::parse("+0812345678").is_err());
        assert!(Msisdn::parse("++6281234567").is_err());
    }

    #[test]
    fn partner_code_pattern() {
        assert!(PartnerCode::parse("TOKO_1").is_ok());
        assert!(PartnerCode::parse("AB").is_ok());
        assert!(PartnerCode::parse("A").unwrap_err().reason.contains("1 characters"));
        assert!(PartnerCode::parse("toko").unwrap_err().reason.contains("'t'"));
        assert!(PartnerCode::parse("ABCDEFGHIJKLMNOPQ").is_err());
        assert!(PartnerCode::parse("AB-C").is_err());
    }

    #[test]
    fn transaction_id_limits() {
        assert!(TransactionId::parse("INV/2026/11/0001").is_ok());
        assert!(TransactionId::parse(&"x".repeat(64)).is_ok());
        assert!(
            TransactionId::parse(&"é".repeat(64)).is_ok(),
            "the limit is in characters, not bytes"
        );
        assert!(TransactionId::parse(&"x".repeat(65)).unwrap_err().reason.contains("65"));
        assert!(TransactionId::parse("").is_err());
        assert!(TransactionId::parse("a\nb").unwrap_err().reason.contains("control"));
        assert!(TransactionId::parse(" a").is_err());
    }

    #[test]
    fn mcc_range_and_text_form() {
        assert_eq!(Mcc::parse("0742").map(Mcc::code), Ok(742));
        assert_eq!(Mcc::new(9999).map(|m| m.to_string()), Ok("9999".to_owned()));
        assert_eq!(Mcc::new(1).map(|m| m.to_string()), Ok("0001".to_owned()));
        assert!(Mcc::new(0).unwrap_err().reason.contains("between 1 and 9999"));
        assert!(Mcc::new(10000).is_err());
        assert!(Mcc::new(-5).is_err());
        assert!(Mcc::parse("12a").is_err());
        assert!(Mcc::parse("00001").is_err());
    }

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::parse("IDR").map(|c| c.to_string()), Ok("IDR".to_owned()));
        assert!(Currency::parse("idr").is_err());
        assert!(Currency::parse("XYZ").unwrap_err().reason.contains("not an ISO 4217"));
        assert!(Currency::parse("RUPIAH").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn money_display_and_arithmetic() {
        let idr = Currency::parse("IDR").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(Money::new(150_000, idr).to_string(), "IDR 1500.00");
        assert_eq!(Money::new(-5, idr).to_string(), "IDR -0.05");
        assert_eq!(Money::new(300, jpy).to_string(), "JPY 300");
        assert_eq!(Money::new(1_234, kwd).to_string(), "KWD 1.234");
        assert_eq!(Money::new(1, idr).checked_add(Money::new(2, idr)), Ok(Money::new(3, idr)));
        assert!(matches!(
            Money::new(1, idr).checked_add(Money::new(1, jpy)),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        assert_eq!(
            Money::new(i64::MAX, idr).checked_add(Money::new(1, idr)),
            Err(MoneyError::Overflow)
        );
    }
}
