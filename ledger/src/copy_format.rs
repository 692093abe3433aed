//! Rewards as the rows of PostgreSQL's `COPY … FROM STDIN (FORMAT csv)`: the ledger's write
//! path for batches of new decisions (and the bench's baseline, so both send the same bytes).

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

use cezbek_schemas::{RewardOutcome, TransactionId, TransactionKind};

use crate::types::RewardRecord;

/// The reward columns, in the order of the table's definition and of every statement that
/// names them all. `$applied` is how `applied_campaigns` (jsonb) is named: a read takes it as
/// text.
macro_rules! reward_columns {
    () => {
        reward_columns!("applied_campaigns")
    };
    ($applied:literal) => {
        concat!(
            "partner, transaction_id, msisdn, kind, original_transaction_id, amount, currency, ",
            "merchant, mcc, outcome, cashback, tier_before, tier_after, ",
            $applied,
            ", exclusion_id, rules_revision, explanation, occurred_at, decided_at, local_day, ",
            "content_hash, quantity, log_offset, budget_limits"
        )
    };
}
pub(crate) use reward_columns;

/// The statement [`reward_rows`] feeds.
pub const COPY_REWARDS: &str =
    concat!("COPY rewards (", reward_columns!(), ") FROM STDIN (FORMAT csv)");

pub(crate) fn kind_text(kind: TransactionKind) -> &'static str {
    match kind {
        TransactionKind::Purchase => "PURCHASE",
        TransactionKind::Refund => "REFUND",
    }
}

pub(crate) fn outcome_text(outcome: RewardOutcome) -> &'static str {
    match outcome {
        RewardOutcome::Rewarded => "REWARDED",
        RewardOutcome::NoMatch => "NO_MATCH",
        RewardOutcome::Excluded => "EXCLUDED",
        RewardOutcome::Clawback => "CLAWBACK",
        RewardOutcome::OriginalNotFound => "ORIGINAL_NOT_FOUND",
    }
}

/// The budget limits as stored (JSON).
pub(crate) fn budget_limits_json(limits: &[cezbek_rules::BudgetLimit]) -> String {
    serde_json::to_string(limits).unwrap_or_else(|_| "[]".into())
}

/// Records as `COPY … (FORMAT csv)` rows. Text is always quoted (a quote doubled), so an empty
/// string stays distinct from NULL, which is an unquoted empty field. Hand-formatted where the
/// general formatters showed in profiles: this runs for every decision.
///
/// `rows` is how many records there are (for one allocation rather than a doubling series).
pub fn reward_rows<'a>(records: impl IntoIterator<Item = &'a RewardRecord>, rows: usize) -> String {
    use std::fmt::Write;

    fn text(out: &mut String, value: &str) {
        out.push('"');
        if value.contains('"') {
            for part in value.split_inclusive('"') {
                out.push_str(part);
                if part.ends_with('"') {
                    out.push('"');
                }
            }
        } else {
            out.push_str(value);
        }
        out.push_str("\",");
    }
    fn optional(out: &mut String, value: Option<&str>) {
        match value {
            Some(value) => text(out, value),
            None => out.push(','),
        }
    }
    /// `value` in `width` digits, zero-padded (`value` has no more digits than that).
    fn digits(out: &mut String, value: u32, width: u32) {
        for place in (0..width).rev() {
            let digit = (value / 10_u32.pow(place)) % 10;
            out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
        }
    }
    /// ISO `YYYY-MM-DD`; years outside four digits (never in practice) through chrono.
    fn date(out: &mut String, day: NaiveDate) {
        let Ok(year @ 0..=9999) = u32::try_from(day.year()) else {
            let _ = write!(out, "{day}");
            return;
        };
        digits(out, year, 4);
        out.push('-');
        digits(out, day.month(), 2);
        out.push('-');
        digits(out, day.day(), 2);
    }
    // Microseconds, truncated like the binary encoding of the UNNEST path, in UTC (a leap
    // second's extra fraction is clamped: PostgreSQL has no 61st second).
    fn timestamp(out: &mut String, at: DateTime<Utc>) {
        date(out, at.date_naive());
        out.push(' ');
        digits(out, at.hour(), 2);
        out.push(':');
        digits(out, at.minute(), 2);
        out.push(':');
        digits(out, at.second(), 2);
        out.push('.');
        digits(out, at.timestamp_subsec_micros().min(999_999), 6);
        out.push_str("+00,");
    }

    // About 300 bytes a row.
    let mut out = String::with_capacity(rows * 320);
    let mut json = Vec::new();
    for record in records {
        let r = &record.reward;
        text(&mut out, r.partner.as_str());
        text(&mut out, r.transaction_id.as_str());
        text(&mut out, r.msisdn.as_str());
        text(&mut out, kind_text(r.kind));
        optional(&mut out, r.original_transaction_id.as_ref().map(TransactionId::as_str));
        let _ = write!(out, "{},", r.amount);
        text(&mut out, r.currency.as_str());
        optional(&mut out, r.merchant.as_deref());
        match record.mcc {
            Some(mcc) => {
                let _ = write!(out, "{},", i32::from(mcc));
            }
            None => out.push(','),
        }
        text(&mut out, outcome_text(r.outcome));
        let _ = write!(out, "{},", r.cashback);
        optional(&mut out, r.tier_before.as_deref());
        optional(&mut out, r.tier_after.as_deref());
        json.clear();
        let applied = match serde_json::to_writer(&mut json, &r.applied_campaigns) {
            Ok(()) => std::str::from_utf8(&json).unwrap_or("[]"),
            Err(_) => "[]",
        };
        text(&mut out, applied);
        optional(&mut out, r.exclusion_id.as_deref());
        let _ = write!(out, "{},", r.rules_revision);
        text(&mut out, &r.explanation);
        timestamp(&mut out, r.occurred_at);
        timestamp(&mut out, r.decided_at);
        date(&mut out, record.local_day);
        out.push(',');
        text(&mut out, &record.content_hash);
        let _ = write!(out, "{},", record.quantity);
        if let Some(offset) = record.log_offset {
            let _ = write!(out, "{offset},");
        } else {
            out.push(',');
        }
        if record.budget_limits.is_empty() {
            out.push(',');
        } else {
            text(&mut out, &budget_limits_json(&record.budget_limits));
        }
        // The last field's separator becomes the row's end.
        out.pop();
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use cezbek_schemas::{AppliedCampaign, CampaignKind, Currency, Msisdn, PartnerCode, Reward};

    use super::*;

    fn record() -> RewardRecord {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        RewardRecord {
            reward: Reward {
                partner: PartnerCode::parse("TOKO").unwrap(),
                transaction_id: TransactionId::parse("t-1").unwrap(),
                msisdn: Msisdn::parse("+6281234567890").unwrap(),
                kind: TransactionKind::Purchase,
                original_transaction_id: None,
                amount: 150_000,
                currency: Currency::parse("IDR").unwrap(),
                merchant: Some(String::new()),
                outcome: RewardOutcome::Rewarded,
                cashback: 7_500,
                tier_before: None,
                tier_after: Some("SILVER".into()),
                applied_campaigns: vec![AppliedCampaign {
                    campaign_id: "c1".into(),
                    kind: CampaignKind::Base,
                    amount: 7_500,
                }],
                exclusion_id: None,
                rules_revision: 42,
                explanation: "5% \"welcome\", capped".into(),
                occurred_at: at,
                decided_at: at + chrono::Duration::microseconds(1_234_567),
            },
            mcc: None,
            quantity: 3,
            log_offset: Some(1_234),
            budget_limits: Vec::new(),
            local_day: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            content_hash: "abc".into(),
        }
    }

    /// The fields of one row as PostgreSQL's csv format reads them: a quoted field (a doubled
    /// quote is one quote) is text, even empty; an unquoted empty field is NULL (`None`).
    fn fields(row: &str) -> Vec<Option<String>> {
        let mut fields = Vec::new();
        let mut rest = row.trim_end_matches('\n');
        loop {
            let field = if let Some(quoted) = rest.strip_prefix('"') {
                let mut text = String::new();
                let mut chars = quoted.char_indices().peekable();
                let mut end = quoted.len();
                while let Some((at, c)) = chars.next() {
                    if c != '"' {
                        text.push(c);
                    } else if chars.peek().is_some_and(|(_, next)| *next == '"') {
                        text.push('"');
                        chars.next();
                    } else {
                        end = at + 1;
                        break;
                    }
                }
                rest = &quoted[end..];
                Some(text)
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                let value = &rest[..end];
                rest = &rest[end..];
                (!value.is_empty()).then(|| value.to_owned())
            };
            fields.push(field);
            match rest.strip_prefix(',') {
                Some(more) => rest = more,
                None => return fields,
            }
        }
    }

    #[test]
    fn a_row_has_every_column_in_order() {
        let rows = reward_rows([&record()], 1);
        assert!(rows.ends_with('\n') && rows.matches('\n').count() == 1, "{rows}");
        let fields = fields(&rows);
        let columns: Vec<&str> = reward_columns!().split(", ").collect();
        assert_eq!(fields.len(), columns.len());
        let field = |name: &str| fields[columns.iter().position(|c| *c == name).unwrap()].clone();
        assert_eq!(field("partner").as_deref(), Some("TOKO"));
        assert_eq!(field("kind").as_deref(), Some("PURCHASE"));
        assert_eq!(field("amount").as_deref(), Some("150000"));
        assert_eq!(field("outcome").as_deref(), Some("REWARDED"));
        assert_eq!(field("rules_revision").as_deref(), Some("42"));
        assert_eq!(field("local_day").as_deref(), Some("2026-03-01"));
        assert_eq!(field("content_hash").as_deref(), Some("abc"));
        assert_eq!(field("quantity").as_deref(), Some("3"));
        assert_eq!(field("log_offset").as_deref(), Some("1234"));
        let applied: serde_json::Value =
            serde_json::from_str(&field("applied_campaigns").unwrap()).unwrap();
        assert_eq!(applied[0]["campaign_id"], "c1");
    }

    #[test]
    fn quotes_are_doubled_and_null_differs_from_empty() {
        let rows = reward_rows([&record()], 1);
        let columns: Vec<&str> = reward_columns!().split(", ").collect();
        let fields = fields(&rows);
        let field = |name: &str| fields[columns.iter().position(|c| *c == name).unwrap()].clone();
        assert!(rows.contains(r#""5% ""welcome"", capped""#), "{rows}");
        assert_eq!(field("explanation").as_deref(), Some(r#"5% "welcome", capped"#));
        // An empty merchant is an empty string; an absent one (and an absent mcc) is NULL.
        assert!(rows.contains(r#","","#), "{rows}");
        assert_eq!(field("merchant").as_deref(), Some(""));
        assert_eq!(field("original_transaction_id"), None);
        assert_eq!(field("mcc"), None);
        assert_eq!(field("tier_before"), None);
        assert_eq!(field("tier_after").as_deref(), Some("SILVER"));
        let unplaced = RewardRecord { log_offset: None, ..record() };
        let rows = reward_rows([&unplaced], 1);
        assert!(rows.ends_with(",3,,\n"), "an unknown offset and no limits are NULL: {rows}");
    }

    #[test]
    fn timestamps_are_utc_microseconds_truncated() {
        let mut leap = record();
        // 23:59:59 plus a leap second's fraction: PostgreSQL has no 61st second.
        leap.reward.occurred_at = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        let rows = reward_rows([&record(), &leap], 2);
        let lines: Vec<&str> = rows.lines().collect();
        let columns: Vec<&str> = reward_columns!().split(", ").collect();
        let at = |line: &str, name: &str| {
            fields(line)[columns.iter().position(|c| *c == name).unwrap()].clone().unwrap()
        };
        assert_eq!(at(lines[0], "occurred_at"), "2026-03-01 10:00:00.000000+00");
        // 1,234,567 µs later: the sub-microsecond part was never there, the rest is kept.
        assert_eq!(at(lines[0], "decided_at"), "2026-03-01 10:00:01.234567+00");
        assert_eq!(at(lines[1], "occurred_at"), "2016-12-31 23:59:59.999999+00");
    }

    #[test]
    fn the_copy_statement_names_every_column_once() {
        let columns: Vec<&str> = reward_columns!().split(", ").collect();
        assert_eq!(columns.len(), 24);
        let unique: std::collections::HashSet<&&str> = columns.iter().collect();
        assert_eq!(unique.len(), columns.len());
        assert!(COPY_REWARDS.starts_with("COPY rewards (partner, "));
        assert!(COPY_REWARDS.ends_with(", budget_limits) FROM STDIN (FORMAT csv)"));
    }
}
