//! What one customer's digest says, or why they get none. Pure: the ledger's records and state
//! and the partner's rules in, the template's data or a skip reason out.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use cezbek_ledger::{CustomerState, RewardRecord};
use cezbek_rules::PartnerRules;
use cezbek_schemas::{Msisdn, PartnerCode, RewardOutcome, TransactionKind};

use crate::money_format;

/// Why a customer gets no digest for a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The day's cashback, net of clawbacks, is not above zero.
    NothingEarned,
    /// No transaction of theirs carried an email address.
    NoEmail,
    /// The address on file is not one an email can go to.
    InvalidEmail,
    /// They followed an unsubscribe link.
    OptedOut,
    /// This day's digest went out before (an earlier pass or run).
    AlreadySent,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] =
        [Self::NothingEarned, Self::NoEmail, Self::InvalidEmail, Self::OptedOut, Self::AlreadySent];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NothingEarned => "nothing_earned",
            Self::NoEmail => "no_email",
            Self::InvalidEmail => "invalid_email",
            Self::OptedOut => "opted_out",
            Self::AlreadySent => "already_sent",
        }
    }
}

/// The data a digest template sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    pub partner: PartnerView,
    pub msisdn: String,
    pub email: String,
    /// The partner-local day, `YYYY-MM-DD`.
    pub day: String,
    pub time_zone: String,
    /// Oldest first.
    pub transactions: Vec<Line>,
    /// The day's cashback net of clawbacks, in the partner's currency and its locale
    /// (`Rp 1.500,00`).
    pub total: String,
    pub total_minor: i64,
    pub currency: String,
    pub tier: Option<TierView>,
    pub unsubscribe_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartnerView {
    pub code: String,
    /// The partner's display name; its code when it has none.
    pub name: String,
}

/// One rewarded purchase or clawed-back refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub transaction_id: String,
    /// Partner-local `HH:MM` with the zone's abbreviation (`09:05 WIB`).
    pub time: String,
    pub merchant: String,
    pub kind: &'static str,
    pub amount: String,
    /// Negative for a clawback.
    pub cashback: String,
    pub cashback_minor: i64,
    /// The campaigns' names, comma-separated; for a refund, what it refunded.
    pub campaigns: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierView {
    /// None below the lowest tier.
    pub name: Option<String>,
    pub window_days: u32,
    pub window_purchases: u64,
    pub window_spend: String,
    pub next: Option<NextTierView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextTierView {
    pub name: String,
    pub purchases_needed: u64,
    pub spend_needed: String,
    /// 0 when the spend threshold is met (or the tier has none): the digest leaves it out.
    pub spend_needed_minor: i64,
}

/// A customer's rewards of one day, as the sender groups them.
#[derive(Debug, Clone, Copy)]
pub struct CustomerDay<'a> {
    pub partner: &'a PartnerCode,
    pub msisdn: &'a Msisdn,
    pub day: NaiveDate,
    /// Every decision of theirs that day.
    pub records: &'a [RewardRecord],
}

impl CustomerDay<'_> {
    /// The day's cashback net of clawbacks, minor units.
    pub fn net_cashback(&self) -> i64 {
        self.records.iter().map(|record| record.reward.cashback).fold(0, i64::saturating_add)
    }
}

/// Whether a digest goes out, before any bookkeeping: the reasons that need no ledger write.
pub fn skip_reason(
    customer: &CustomerDay<'_>,
    state: Option<&CustomerState>,
) -> Option<SkipReason> {
    if customer.net_cashback() <= 0 {
        return Some(SkipReason::NothingEarned);
    }
    let Some(state) = state else { return Some(SkipReason::NoEmail) };
    if state.opted_out {
        return Some(SkipReason::OptedOut);
    }
    match state.email.as_deref().map(str::trim) {
        None | Some("") => Some(SkipReason::NoEmail),
        Some(email) if email.parse::<lettre::Address>().is_err() => Some(SkipReason::InvalidEmail),
        Some(_) => None,
    }
}

/// The template data of a customer who gets a digest (see [`skip_reason`]).
pub fn build(
    customer: &CustomerDay<'_>,
    email: &str,
    state: Option<&CustomerState>,
    rules: Option<&PartnerRules>,
    unsubscribe_url: String,
    now: DateTime<Utc>,
) -> Digest {
    let time_zone = rules.map(PartnerRules::time_zone).unwrap_or(chrono_tz::UTC);
    let partner_record = rules.and_then(PartnerRules::partner);
    // A partner has one currency; its rewards carry it too, so either names it.
    let currency = customer
        .records
        .first()
        .map(|record| record.reward.currency)
        .or(partner_record.map(|partner| partner.currency));
    let money = |minor: i64| match currency {
        Some(currency) => money_format::localized(minor, currency),
        None => minor.to_string(),
    };

    let mut records: Vec<&RewardRecord> =
        customer.records.iter().filter(|record| record.reward.cashback != 0).collect();
    records.sort_by(|a, b| {
        (a.reward.occurred_at, a.reward.transaction_id.as_str())
            .cmp(&(b.reward.occurred_at, b.reward.transaction_id.as_str()))
    });
    let transactions = records
        .into_iter()
        .map(|record| {
            let reward = &record.reward;
            let campaigns = match (reward.outcome, &reward.original_transaction_id) {
                (RewardOutcome::Clawback, Some(original)) => format!("refund of {original}"),
                _ => reward
                    .applied_campaigns
                    .iter()
                    .map(|applied| {
                        rules
                            .and_then(|rules| rules.campaign(&applied.campaign_id))
                            .map(|campaign| campaign.name.trim())
                            .filter(|name| !name.is_empty())
                            .unwrap_or(&applied.campaign_id)
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            Line {
                transaction_id: reward.transaction_id.to_string(),
                time: reward.occurred_at.with_timezone(&time_zone).format("%H:%M %Z").to_string(),
                merchant: reward.merchant.clone().unwrap_or_default(),
                kind: match reward.kind {
                    TransactionKind::Purchase => "purchase",
                    TransactionKind::Refund => "refund",
                },
                amount: money(reward.amount),
                cashback: money(reward.cashback),
                cashback_minor: reward.cashback,
                campaigns,
            }
        })
        .collect();

    let tier = rules.and_then(PartnerRules::tiers).map(|program| {
        let window = state.map(|state| state.window.stats(now, program.window_days));
        let progress = program.progress(window.unwrap_or_default());
        TierView {
            name: progress.tier,
            window_days: progress.window_days,
            window_purchases: progress.window_purchases,
            window_spend: money(progress.window_spend),
            next: progress.next.map(|next| NextTierView {
                name: next.name,
                purchases_needed: next.purchases_needed,
                spend_needed: money(next.spend_needed),
                spend_needed_minor: next.spend_needed,
            }),
        }
    });

    let total_minor = customer.net_cashback();
    Digest {
        partner: PartnerView {
            code: customer.partner.to_string(),
            name: partner_record
                .map(|partner| partner.name.trim())
                .filter(|name| !name.is_empty())
                .unwrap_or(customer.partner.as_str())
                .to_owned(),
        },
        msisdn: customer.msisdn.to_string(),
        email: email.trim().to_owned(),
        day: customer.day.to_string(),
        time_zone: time_zone.name().to_owned(),
        transactions,
        total: money(total_minor),
        total_minor,
        currency: currency.map(|currency| currency.to_string()).unwrap_or_default(),
        tier,
        unsubscribe_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cezbek_schemas::{AppliedCampaign, CampaignKind, Currency, Reward, TransactionId};
    use chrono::TimeZone;

    fn record(id: &str, cashback: i64, refund: bool) -> RewardRecord {
        let at = Utc.with_ymd_and_hms(2026, 11, 20, 5, 30, 0).unwrap();
        RewardRecord {
            reward: Reward {
                partner: PartnerCode::parse("TOKO").unwrap(),
                transaction_id: TransactionId::parse(id).unwrap(),
                kind: if refund { TransactionKind::Refund } else { TransactionKind::Purchase },
                original_transaction_id: refund.then(|| TransactionId::parse("p-1").unwrap()),
                msisdn: Msisdn::parse("+6281200000001").unwrap(),
                amount: 100_000,
                currency: Currency::parse("IDR").unwrap(),
                merchant: Some("Kopi".into()),
                outcome: if refund { RewardOutcome::Clawback } else { RewardOutcome::Rewarded },
                cashback,
                tier_before: None,
                tier_after: None,
                applied_campaigns: if refund {
                    Vec::new()
                } else {
                    vec![AppliedCampaign {
                        campaign_id: "base".into(),
                        kind: CampaignKind::Base,
                        amount: cashback,
                    }]
                },
                exclusion_id: None,
                rules_revision: 1,
                explanation: String::new(),
                occurred_at: at,
                decided_at: at,
            },
            mcc: None,
            quantity: 1,
            log_offset: None,
            local_day: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            content_hash: id.into(),
            budget_limits: Vec::new(),
        }
    }

    fn state(email: Option<&str>, opted_out: bool) -> CustomerState {
        CustomerState { email: email.map(str::to_owned), opted_out, ..CustomerState::default() }
    }

    #[test]
    fn who_is_skipped_and_why() {
        let partner = PartnerCode::parse("TOKO").unwrap();
        let msisdn = Msisdn::parse("+6281200000001").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let earned = [record("p-1", 1_000, false)];
        let clawed_back = [record("p-1", 1_000, false), record("r-1", -1_000, true)];
        let customer = |records| CustomerDay { partner: &partner, msisdn: &msisdn, day, records };
        let good = state(Some("a@example.com"), false);

        assert_eq!(skip_reason(&customer(&earned), Some(&good)), None);
        assert_eq!(
            skip_reason(&customer(&clawed_back), Some(&good)),
            Some(SkipReason::NothingEarned)
        );
        assert_eq!(skip_reason(&customer(&earned), None), Some(SkipReason::NoEmail));
        assert_eq!(
            skip_reason(&customer(&earned), Some(&state(Some("  "), false))),
            Some(SkipReason::NoEmail)
        );
        assert_eq!(
            skip_reason(&customer(&earned), Some(&state(Some("not an address"), false))),
            Some(SkipReason::InvalidEmail)
        );
        assert_eq!(
            skip_reason(&customer(&earned), Some(&state(Some("a@example.com"), true))),
            Some(SkipReason::OptedOut)
        );
    }

    #[test]
    fn the_digest_lists_purchases_and_clawbacks_in_local_time_with_the_net_total() {
        let partner = PartnerCode::parse("TOKO").unwrap();
        let msisdn = Msisdn::parse("+6281200000001").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let mut refund = record("r-1", -400, true);
        refund.reward.occurred_at += chrono::Duration::hours(2);
        let records = [refund, record("p-1", 1_000, false), record("n-1", 0, false)];
        let customer = CustomerDay { partner: &partner, msisdn: &msisdn, day, records: &records };
        let digest =
            build(&customer, " a@example.com ", None, None, "https://u".into(), Utc::now());
        assert_eq!(digest.total_minor, 600);
        assert_eq!(digest.total, "Rp 6,00");
        assert_eq!(digest.email, "a@example.com");
        // No rules: UTC and the campaign id; zero-cashback decisions are left out; oldest first.
        let lines: Vec<(&str, &str, &str)> = digest
            .transactions
            .iter()
            .map(|line| (line.time.as_str(), line.cashback.as_str(), line.campaigns.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![("05:30 UTC", "Rp 10,00", "base"), ("07:30 UTC", "-Rp 4,00", "refund of p-1")]
        );
        assert_eq!(digest.partner.name, "TOKO");
        assert_eq!(digest.tier, None);
    }
}
