//! Turning a partner's raw transaction (a JSON object from the API, or a CSV row) into a
//! validated [`Transaction`]. Both channels read fields as text through [`Fields`], so a
//! transaction means the same thing however it arrives, and every problem of an item is
//! reported at once, each naming its field.

use std::borrow::Cow;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use cezbek_schemas::{
    Currency, Mcc, Msisdn, PartnerCode, Source, Transaction, TransactionId, TransactionKind,
    ValueError,
};

/// The columns (and JSON fields) of a transaction, as a partner writes them.
pub const COLUMNS: [&str; 12] = [
    "transaction_id",
    "msisdn",
    "amount",
    "currency",
    "quantity",
    "occurred_at",
    "merchant",
    "mcc",
    "kind",
    "original_transaction_id",
    "email",
    "wallet",
];

/// Columns a file must have (the others may be left out, or left empty on a row).
pub const REQUIRED_COLUMNS: [&str; 5] =
    ["transaction_id", "msisdn", "amount", "currency", "occurred_at"];

const MAX_MERCHANT_CHARS: usize = 128;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_WALLET_CHARS: usize = 32;
/// A transaction may be stamped a little ahead of our clock (partners' clocks drift), not more.
const MAX_FUTURE_SKEW: Duration = Duration::hours(1);

/// A field's raw value.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw<'a> {
    Missing,
    Text(Cow<'a, str>),
    /// A JSON value of a type no field takes (object, array, boolean).
    WrongType(&'static str),
}

/// Where the fields of one item come from.
pub trait Fields {
    fn get(&self, name: &str) -> Raw<'_>;
}

/// A JSON object of the API.
impl Fields for serde_json::Map<String, Value> {
    fn get(&self, name: &str) -> Raw<'_> {
        match serde_json::Map::get(self, name) {
            None | Some(Value::Null) => Raw::Missing,
            Some(Value::String(text)) => Raw::Text(Cow::Borrowed(text)),
            Some(Value::Number(number)) => Raw::Text(Cow::Owned(number_text(number))),
            Some(Value::Bool(_)) => Raw::WrongType("a boolean"),
            Some(Value::Array(_)) => Raw::WrongType("an array"),
            Some(Value::Object(_)) => Raw::WrongType("an object"),
        }
    }
}

/// JSON does not tell 39 from 39.0 (JSON Schema calls both integers), so a number with a zero
/// fraction is read as the whole number it is, while it is exact in a double (|n| ≤ 2^53).
/// Anything else keeps its text, and a fraction is refused where a whole number is expected.
fn number_text(number: &serde_json::Number) -> String {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match number.as_f64() {
        Some(value) if number.is_f64() && value.fract() == 0.0 && value.abs() <= EXACT => {
            format!("{}", value as i64)
        }
        _ => number.to_string(),
    }
}

/// Fields of a JSON object that are not transaction fields: a typo must not pass silently.
pub fn unknown_fields(object: &serde_json::Map<String, Value>) -> Vec<ValueError> {
    object
        .keys()
        .filter(|key| !COLUMNS.contains(&key.as_str()))
        .map(|key| {
            let reason = if key == "partner" {
                "is not accepted: the partner is the one that signed the request"
            } else {
                "is not a transaction field"
            };
            ValueError::new(key.clone(), reason)
        })
        .collect()
}

/// A CSV row, read through the file's header.
#[derive(Debug)]
pub struct Row<'a> {
    pub header: &'a Header,
    pub values: crate::csv_format::RecordFields<'a>,
}

impl Fields for Row<'_> {
    fn get(&self, name: &str) -> Raw<'_> {
        let Some(index) = self.header.index_of(name) else { return Raw::Missing };
        match self.values.get(index) {
            None | Some("") => Raw::Missing,
            Some(text) => Raw::Text(Cow::Borrowed(text)),
        }
    }
}

/// A file's header: where each known column is. Extra columns are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    positions: [Option<usize>; COLUMNS.len()],
    pub width: usize,
}

impl Header {
    /// Reads the header row; names are matched without regard to case and surrounding spaces.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        let mut positions = [None; COLUMNS.len()];
        for (index, name) in names.iter().enumerate() {
            let name = name.trim().to_ascii_lowercase();
            if let Some(column) = COLUMNS.iter().position(|known| *known == name) {
                if positions[column].is_some() {
                    return Err(format!("the header names column {name:?} twice"));
                }
                positions[column] = Some(index);
            }
        }
        let header = Self { positions, width: names.len() };
        let missing: Vec<&str> = REQUIRED_COLUMNS
            .iter()
            .filter(|name| header.index_of(name).is_none())
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(format!("the header lacks required column(s): {}", missing.join(", ")));
        }
        Ok(header)
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        COLUMNS.iter().position(|known| *known == name).and_then(|column| self.positions[column])
    }
}

/// Builds the transaction, or lists every problem with it.
pub fn transaction(
    partner: &PartnerCode,
    fields: &impl Fields,
    source: Source,
    now: DateTime<Utc>,
) -> Result<Transaction, Vec<ValueError>> {
    let mut problems = Vec::new();
    let transaction_id = text(fields, &mut problems, "transaction_id", true);
    let msisdn = text(fields, &mut problems, "msisdn", true);
    let amount = text(fields, &mut problems, "amount", true);
    let currency = text(fields, &mut problems, "currency", true);
    let quantity = text(fields, &mut problems, "quantity", false);
    let occurred_at = text(fields, &mut problems, "occurred_at", true);
    let merchant = text(fields, &mut problems, "merchant", false);
    let mcc = text(fields, &mut problems, "mcc", false);
    let kind = text(fields, &mut problems, "kind", false);
    let original = text(fields, &mut problems, "original_transaction_id", false);
    let email = text(fields, &mut problems, "email", false);
    let wallet = text(fields, &mut problems, "wallet", false);

    let transaction_id =
        transaction_id.and_then(|raw| keep(&mut problems, TransactionId::parse(&raw)));
    let msisdn = msisdn.and_then(|raw| keep(&mut problems, Msisdn::parse(&raw)));
    let amount = amount.and_then(|raw| keep(&mut problems, integer("amount", &raw)));
    let currency = currency.and_then(|raw| keep(&mut problems, Currency::parse(raw.trim())));
    let quantity = match quantity {
        None => Some(1),
        Some(raw) => keep(
            &mut problems,
            integer("quantity", &raw).and_then(|value| {
                i32::try_from(value).map_err(|_| ValueError::new("quantity", "is too large"))
            }),
        ),
    };
    let occurred_at = occurred_at.and_then(|raw| keep(&mut problems, timestamp(&raw, now)));
    let merchant =
        merchant.and_then(|raw| keep(&mut problems, bounded("merchant", &raw, MAX_MERCHANT_CHARS)));
    let mcc = mcc.and_then(|raw| keep(&mut problems, Mcc::parse(&raw)));
    let kind = match kind {
        None => Some(TransactionKind::Purchase),
        Some(raw) => keep(&mut problems, transaction_kind(&raw)),
    };
    let original = original.and_then(|raw| {
        keep(
            &mut problems,
            TransactionId::parse(&raw).map_err(|error| error.at("original_transaction_id")),
        )
    });
    let email = email.and_then(|raw| keep(&mut problems, email_address(&raw)));
    let wallet =
        wallet.and_then(|raw| keep(&mut problems, bounded("wallet", &raw, MAX_WALLET_CHARS)));

    let (
        Some(transaction_id),
        Some(msisdn),
        Some(amount),
        Some(currency),
        Some(quantity),
        Some(occurred_at),
        Some(kind),
    ) = (transaction_id, msisdn, amount, currency, quantity, occurred_at, kind)
    else {
        return Err(problems);
    };
    let transaction = Transaction {
        partner: partner.clone(),
        transaction_id,
        kind,
        original_transaction_id: original,
        msisdn,
        amount,
        currency,
        quantity,
        merchant,
        mcc,
        email,
        wallet,
        occurred_at,
        source,
        ingested_at: now,
    };
    // The rules that span fields (a refund needs its original, amounts are positive …).
    if let Err(more) = transaction.validate() {
        problems.extend(more);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(transaction)
}

/// A field's text (borrowed when the source holds text), or its problem added to `problems`.
fn text<'a>(
    fields: &'a impl Fields,
    problems: &mut Vec<ValueError>,
    name: &'static str,
    required: bool,
) -> Option<Cow<'a, str>> {
    match fields.get(name) {
        Raw::Text(value) => Some(value),
        Raw::Missing if required => {
            problems.push(ValueError::new(name, "is required"));
            None
        }
        Raw::Missing => None,
        Raw::WrongType(kind) => {
            problems.push(ValueError::new(name, format!("must be text or a number, not {kind}")));
            None
        }
    }
}

/// The value, or its problem added to `problems`.
fn keep<T>(problems: &mut Vec<ValueError>, result: Result<T, ValueError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}

fn integer(field: &str, raw: &str) -> Result<i64, ValueError> {
    let trimmed = raw.trim();
    trimmed.parse::<i64>().map_err(|_| {
        let reason = if trimmed.contains(['.', 'e', 'E']) {
            format!("{raw:?} is not a whole number; amounts are integer minor units (IDR 15000, USD cents)")
        } else {
            format!("{raw:?} is not a whole number")
        };
        ValueError::new(field, reason)
    })
}

fn timestamp(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ValueError> {
    let parsed = DateTime::parse_from_rfc3339(raw.trim()).map_err(|error| {
        ValueError::new(
            "occurred_at",
            format!("{raw:?} is not an RFC 3339 time such as 2026-03-01T10:15:00+07:00 ({error})"),
        )
    })?;
    let at = parsed.with_timezone(&Utc);
    if at > now + MAX_FUTURE_SKEW {
        return Err(ValueError::new("occurred_at", format!("{raw:?} is in the future")));
    }
    Ok(at)
}

fn transaction_kind(raw: &str) -> Result<TransactionKind, ValueError> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "PURCHASE" => Ok(TransactionKind::Purchase),
        "REFUND" => Ok(TransactionKind::Refund),
        _ => Err(ValueError::new("kind", format!("{raw:?} is neither PURCHASE nor REFUND"))),
    }
}

fn bounded(field: &str, raw: &str, max_chars: usize) -> Result<String, ValueError> {
    let value = raw.trim();
    let count = value.chars().count();
    if count > max_chars {
        return Err(ValueError::new(
            field,
            format!("has {count} characters; at most {max_chars} are allowed"),
        ));
    }
    // Line breaks and tabs are text (a quoted CSV field may hold them); other controls are not.
    if value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(ValueError::new(field, "contains control characters"));
    }
    Ok(value.to_owned())
}

fn email_address(raw: &str) -> Result<String, ValueError> {
    let value = bounded("email", raw, MAX_EMAIL_CHARS)?;
    let plausible = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(char::is_whitespace)
        }
        None => false,
    };
    if !plausible {
        return Err(ValueError::new("email", format!("{value:?} is not an email address")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str) -> Raw<'static> {
        let object: serde_json::Map<String, Value> =
            serde_json::from_str(&format!(r#"{{"amount": {json}}}"#)).unwrap();
        match Fields::get(&object, "amount") {
            Raw::Text(text) => Raw::Text(Cow::Owned(text.into_owned())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_json_number_with_a_zero_fraction_is_the_whole_number_and_a_fraction_is_kept() {
        assert_eq!(field("39.0"), Raw::Text("39".into()));
        assert_eq!(field("3.9e1"), Raw::Text("39".into()));
        assert_eq!(field("39"), Raw::Text("39".into()));
        assert_eq!(field("39.5"), Raw::Text("39.5".into()));
        // Past 2^53 a double is not exact: the text stays, and is refused as not whole.
        assert_eq!(field("1e300"), Raw::Text("1e+300".into()));
        assert!(integer("amount", "39.5").is_err());
    }
}
