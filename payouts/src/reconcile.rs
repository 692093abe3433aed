//! Daily reconciliation per provider, three ways: Cezbek's attempts at the provider (what the
//! journal says was sent and charged) ↔ the provider's transaction report ↔ the balance
//! movements it reports for each payout (the payout, its fee and the VAT on it, as separate
//! lines). Each attempt created on the day (UTC, as providers report) is matched by its
//! idempotency key, which is the provider's reference. A mismatch is reported and counted; it
//! never triggers a payment by itself.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;

use cezbek_platform::csv_report::{Cell, CsvReport, LineEnd};
use cezbek_schemas::Currency;

use crate::journal::Journal;
use crate::payout::PayoutError;
use crate::providers::{Provider, ProviderStatus, ReportLine};
use crate::work::AttemptState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    Matched,
    /// Cezbek sent it (the provider accepted it, or its answer is unknown), the report lacks it.
    MissingAtProvider,
    /// In the report, not among Cezbek's attempts.
    UnknownToCezbek,
    AmountMismatch,
    FeeMismatch,
    StatusMismatch,
}

/// One attempt or report line and what reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Line {
    pub finding: Finding,
    pub idempotency_key: String,
    pub payout_id: Option<String>,
    /// Cezbek's amount sent, fee with VAT, and state.
    pub cezbek_amount: Option<i64>,
    pub cezbek_fee: Option<i64>,
    pub cezbek_state: Option<String>,
    /// The provider's amount, fee, VAT (separate balance movements) and status.
    pub provider_amount: Option<i64>,
    pub provider_fee: Option<i64>,
    pub provider_vat: Option<i64>,
    pub provider_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub provider: String,
    pub date: NaiveDate,
    pub currency: String,
    pub matched: usize,
    pub mismatched: usize,
    /// Sums of what moved, as Cezbek records it and as the provider reports it.
    pub cezbek_paid: i64,
    pub cezbek_fees: i64,
    pub provider_paid: i64,
    pub provider_fees: i64,
    pub provider_vat: i64,
    /// Every line that is not matched first, then the matched ones.
    pub lines: Vec<Line>,
}

/// Cezbek's side: an attempt at the provider.
#[derive(Debug, Clone)]
struct Sent {
    payout_id: String,
    idempotency_key: String,
    amount: i64,
    fee: i64,
    state: AttemptState,
}

fn status_name(status: &ProviderStatus) -> &'static str {
    match status {
        ProviderStatus::Pending => "PENDING",
        ProviderStatus::Succeeded => "SUCCEEDED",
        ProviderStatus::Failed { .. } => "FAILED",
        ProviderStatus::Reversed => "REVERSED",
    }
}

/// Whether Cezbek's state and the provider's status say the same about the money.
fn agree(state: AttemptState, status: &ProviderStatus) -> bool {
    matches!(
        (state, status),
        (AttemptState::Succeeded, ProviderStatus::Succeeded)
            | (AttemptState::Failed, ProviderStatus::Failed { .. })
            | (AttemptState::Reversed, ProviderStatus::Reversed)
            | (AttemptState::Pending | AttemptState::Sending, ProviderStatus::Pending)
    )
}

impl Journal {
    async fn attempts_between(
        &self,
        provider: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Sent>, PayoutError> {
        let rows = sqlx::query(
            "SELECT payout_id, idempotency_key, amount, fee, state \
             FROM payout_attempts WHERE provider = $1 AND created_at >= $2 AND created_at < $3",
        )
        .bind(provider)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut sent = Vec::with_capacity(rows.len());
        for row in rows {
            let payout_id: String = row.try_get("payout_id")?;
            let state: String = row.try_get("state")?;
            let state = AttemptState::parse(&state).ok_or_else(|| PayoutError::Corrupt {
                id: payout_id.clone(),
                what: "attempt state".into(),
            })?;
            sent.push(Sent {
                idempotency_key: row.try_get("idempotency_key")?,
                amount: row.try_get("amount")?,
                fee: row.try_get("fee")?,
                state,
                payout_id,
            });
        }
        Ok(sent)
    }
}

/// Reconciles `provider`'s payouts of `date` (UTC).
pub async fn reconcile(
    journal: &Journal,
    provider: &Provider,
    http: &reqwest::Client,
    currency: Currency,
    date: NaiveDate,
) -> Result<Reconciliation, ReconcileError> {
    let from = date.and_time(chrono::NaiveTime::MIN).and_utc();
    let to = from + chrono::Duration::days(1);
    let sent = journal.attempts_between(&provider.spec.name, from, to).await?;
    let report = provider.report(http, currency, from, to).await.map_err(ReconcileError::Report)?;
    let result = compare(&provider.spec.name, date, currency, &sent, &report);
    // A payout paid here that the provider reports returned (a SNAP refund, which nobody calls
    // back about) is asked about again, as a callback would have it: the status query decides
    // and posts the reversal; the report alone changes nothing.
    for line in &result.lines {
        let returned = matches!(line.provider_status.as_deref(), Some("REVERSED" | "FAILED"));
        if line.finding == Finding::StatusMismatch
            && returned
            && line.cezbek_state.as_deref() == Some(AttemptState::Succeeded.as_str())
        {
            journal.notice(&line.idempotency_key).await?;
        }
    }
    Ok(result)
}

fn compare(
    provider: &str,
    date: NaiveDate,
    currency: Currency,
    sent: &[Sent],
    report: &[ReportLine],
) -> Reconciliation {
    let reported: std::collections::HashMap<&str, &ReportLine> =
        report.iter().map(|line| (line.idempotency_key.as_str(), line)).collect();
    let mut lines = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for attempt in sent {
        let line = reported.get(attempt.idempotency_key.as_str()).copied();
        // Refused on create, or failed: no money moved, and reports of balance movements
        // (Iris's statement, SNAP's bank statement) have no line for it.
        if line.is_none() && attempt.state == AttemptState::Failed {
            continue;
        }
        seen.insert(attempt.idempotency_key.as_str());
        let finding = match line {
            None => Finding::MissingAtProvider,
            Some(line) if !agree(attempt.state, &line.status) => Finding::StatusMismatch,
            Some(line) if line.amount != attempt.amount => Finding::AmountMismatch,
            Some(line)
                if matches!(line.status, ProviderStatus::Succeeded)
                    && line.fee + line.vat != attempt.fee =>
            {
                Finding::FeeMismatch
            }
            Some(_) => Finding::Matched,
        };
        lines.push(Line {
            finding,
            idempotency_key: attempt.idempotency_key.clone(),
            payout_id: Some(attempt.payout_id.clone()),
            cezbek_amount: Some(attempt.amount),
            cezbek_fee: Some(attempt.fee),
            cezbek_state: Some(attempt.state.as_str().to_owned()),
            provider_amount: line.map(|line| line.amount),
            provider_fee: line.map(|line| line.fee),
            provider_vat: line.map(|line| line.vat),
            provider_status: line.map(|line| status_name(&line.status).to_owned()),
        });
    }
    for line in report {
        if seen.contains(line.idempotency_key.as_str()) {
            continue;
        }
        lines.push(Line {
            finding: Finding::UnknownToCezbek,
            idempotency_key: line.idempotency_key.clone(),
            payout_id: None,
            cezbek_amount: None,
            cezbek_fee: None,
            cezbek_state: None,
            provider_amount: Some(line.amount),
            provider_fee: Some(line.fee),
            provider_vat: Some(line.vat),
            provider_status: Some(status_name(&line.status).to_owned()),
        });
    }
    lines.sort_by(|a, b| {
        (a.finding == Finding::Matched, &a.idempotency_key)
            .cmp(&(b.finding == Finding::Matched, &b.idempotency_key))
    });
    let paid = |state: AttemptState| state == AttemptState::Succeeded;
    let succeeded = |line: &&ReportLine| line.status == ProviderStatus::Succeeded;
    let matched = lines.iter().filter(|line| line.finding == Finding::Matched).count();
    Reconciliation {
        provider: provider.to_owned(),
        date,
        currency: currency.as_str().to_owned(),
        matched,
        mismatched: lines.len() - matched,
        cezbek_paid: sent.iter().filter(|a| paid(a.state)).map(|a| a.amount).sum(),
        cezbek_fees: sent.iter().filter(|a| paid(a.state)).map(|a| a.fee).sum(),
        provider_paid: report.iter().filter(succeeded).map(|line| line.amount).sum(),
        provider_fees: report.iter().filter(succeeded).map(|line| line.fee).sum(),
        provider_vat: report.iter().filter(succeeded).map(|line| line.vat).sum(),
        lines,
    }
}

impl Reconciliation {
    pub fn to_csv(&self) -> Vec<u8> {
        let mut csv = CsvReport::new(LineEnd::Crlf);
        csv.header(&[
            "finding",
            "idempotency_key",
            "payout_id",
            "cezbek_amount",
            "cezbek_fee",
            "cezbek_state",
            "provider_amount",
            "provider_fee",
            "provider_vat",
            "provider_status",
        ]);
        let number = |value: Option<i64>| value.map_or(Cell::Empty, Cell::Number);
        fn text(value: &Option<String>) -> Cell<'_> {
            value.as_deref().map_or(Cell::Empty, Cell::Text)
        }
        for line in &self.lines {
            let finding = serde_json::to_value(line.finding).unwrap_or_default();
            csv.row(&[
                Cell::Text(finding.as_str().unwrap_or_default()),
                Cell::Text(&line.idempotency_key),
                text(&line.payout_id),
                number(line.cezbek_amount),
                number(line.cezbek_fee),
                text(&line.cezbek_state),
                number(line.provider_amount),
                number(line.provider_fee),
                number(line.provider_vat),
                text(&line.provider_status),
            ]);
        }
        csv.into_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Payouts(#[from] PayoutError),
    #[error("the provider's report cannot be read: {0}")]
    Report(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(key: &str, amount: i64, fee: i64, state: AttemptState) -> Sent {
        Sent {
            payout_id: key.trim_end_matches("#1").into(),
            idempotency_key: key.into(),
            amount,
            fee,
            state,
        }
    }

    fn line(key: &str, amount: i64, fee: i64, status: ProviderStatus) -> ReportLine {
        ReportLine {
            idempotency_key: key.into(),
            provider_reference: format!("disb-{key}"),
            amount,
            fee: fee - fee / 10,
            vat: fee / 10,
            status,
            created: Utc::now(),
        }
    }

    #[test]
    fn every_kind_of_difference_is_found_and_matched_lines_come_last() {
        let ok = ProviderStatus::Succeeded;
        let ours = [
            sent("a#1", 100, 20, AttemptState::Succeeded),
            sent("b#1", 100, 20, AttemptState::Succeeded),
            sent("c#1", 100, 20, AttemptState::Succeeded),
            sent("d#1", 100, 20, AttemptState::Succeeded),
            sent("e#1", 100, 20, AttemptState::Succeeded),
            sent("f#1", 100, 20, AttemptState::Failed),
        ];
        let theirs = [
            line("a#1", 100, 20, ok.clone()),
            line("b#1", 90, 20, ok.clone()),
            line("c#1", 100, 30, ok.clone()),
            line("d#1", 100, 20, ProviderStatus::Failed { reason: "X".into() }),
            line("z#1", 100, 20, ok.clone()),
        ];
        let date = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        let idr = Currency::parse("IDR").unwrap();
        let result = compare("p", date, idr, &ours, &theirs);
        let found: Vec<(&str, Finding)> =
            result.lines.iter().map(|l| (l.idempotency_key.as_str(), l.finding)).collect();
        assert_eq!(
            found,
            [
                ("b#1", Finding::AmountMismatch),
                ("c#1", Finding::FeeMismatch),
                ("d#1", Finding::StatusMismatch),
                ("e#1", Finding::MissingAtProvider),
                ("z#1", Finding::UnknownToCezbek),
                ("a#1", Finding::Matched),
            ],
            "a failed attempt (f) moved no money: expected in no balance report"
        );
        assert_eq!((result.matched, result.mismatched), (1, 5));
        assert_eq!((result.cezbek_paid, result.provider_paid), (500, 390));
        let csv = String::from_utf8(result.to_csv()).unwrap();
        assert!(csv.starts_with("finding,idempotency_key,payout_id,"), "{csv}");
        assert!(csv.contains("amount_mismatch,b#1,b,100,20,SUCCEEDED,90,18,2,SUCCEEDED"), "{csv}");
    }
}
