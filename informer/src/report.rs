//! A partner's daily report: what was decided on one partner-local day, for reconciling and
//! invoicing. Totals, then by campaign and by tier; as JSON or CSV.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use cezbek_ledger::{DayTotals, RewardRecord};
use cezbek_platform::csv_report::{Cell, CsvReport, LineEnd};
use cezbek_schemas::CampaignKind;

/// Counts and sums of a set of decisions. Amounts in minor units; `clawback` is positive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub transactions: u64,
    pub purchases: u64,
    pub refunds: u64,
    pub purchase_amount: i64,
    pub refund_amount: i64,
    pub cashback: i64,
    pub clawback: i64,
    /// Purchases an exclusion matched (they earn nothing).
    pub excluded: u64,
}

impl From<&DayTotals> for Figures {
    fn from(totals: &DayTotals) -> Self {
        Self {
            transactions: totals.transactions,
            purchases: totals.purchases,
            refunds: totals.refunds,
            purchase_amount: totals.purchase_amount,
            refund_amount: totals.refund_amount,
            cashback: totals.cashback,
            clawback: totals.clawback,
            excluded: totals.excluded,
        }
    }
}

/// One partner-local day's totals, in a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DayFigures {
    pub date: NaiveDate,
    pub totals: Figures,
}

/// A partner's totals for each day of a range (every day, those without decisions as zeros).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DaysReport {
    pub partner: String,
    pub currency: Option<String>,
    pub days: Vec<DayFigures>,
}

impl DaysReport {
    pub fn new(
        partner: &str,
        currency: Option<String>,
        from: NaiveDate,
        to: NaiveDate,
        totals: &[DayTotals],
    ) -> Self {
        let days = from
            .iter_days()
            .take_while(|day| *day <= to)
            .map(|date| DayFigures {
                date,
                totals: totals
                    .iter()
                    .find(|totals| totals.day == date)
                    .map(Figures::from)
                    .unwrap_or_default(),
            })
            .collect();
        Self { partner: partner.to_owned(), currency, days }
    }
}

/// One campaign's part of the day: the purchases it paid on and its share of their cashback.
/// Clawbacks are not split by campaign (a refund claws back the purchase's whole cashback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CampaignFigures {
    pub campaign_id: String,
    pub kind: CampaignKind,
    pub transactions: u64,
    pub cashback: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TierFigures {
    /// The customer's tier after the decision; `NONE` below the lowest tier.
    pub tier: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DailyReport {
    pub partner: String,
    pub date: NaiveDate,
    pub currency: Option<String>,
    pub totals: Figures,
    pub by_campaign: Vec<CampaignFigures>,
    pub by_tier: Vec<TierFigures>,
}

const NO_TIER: &str = "NONE";

/// A day's report added up record by record, so the day can be read a page at a time: memory
/// follows the campaigns and tiers, not the records.
#[derive(Debug, Default)]
pub struct DailyTotals {
    // Added up as the ledger adds up a day's totals (one definition of each figure).
    totals: DayTotals,
    campaigns: BTreeMap<String, CampaignFigures>,
    tiers: BTreeMap<String, DayTotals>,
}

impl DailyTotals {
    pub fn add(&mut self, record: &RewardRecord) {
        self.totals.add(record);
        let tier = record.reward.tier_after.clone().unwrap_or_else(|| NO_TIER.to_owned());
        self.tiers.entry(tier).or_default().add(record);
        for applied in &record.reward.applied_campaigns {
            let entry = self.campaigns.entry(applied.campaign_id.clone()).or_insert_with(|| {
                CampaignFigures {
                    campaign_id: applied.campaign_id.clone(),
                    kind: applied.kind,
                    transactions: 0,
                    cashback: 0,
                }
            });
            entry.transactions += 1;
            entry.cashback = entry.cashback.saturating_add(applied.amount);
        }
    }

    pub fn report(self, partner: &str, date: NaiveDate, currency: Option<String>) -> DailyReport {
        DailyReport {
            partner: partner.to_owned(),
            date,
            currency,
            totals: Figures::from(&self.totals),
            by_campaign: self.campaigns.into_values().collect(),
            by_tier: self
                .tiers
                .into_iter()
                .map(|(tier, totals)| TierFigures { tier, figures: Figures::from(&totals) })
                .collect(),
        }
    }
}

impl DailyReport {
    /// One row per group: `total`, then each campaign, then each tier. Columns that do not
    /// apply to a group are empty.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut report = CsvReport::new(LineEnd::Crlf);
        report.header(&[
            "partner",
            "date",
            "currency",
            "group",
            "name",
            "transactions",
            "purchases",
            "refunds",
            "purchase_amount",
            "refund_amount",
            "cashback",
            "clawback",
            "excluded",
        ]);
        let date = self.date.to_string();
        let currency = self.currency.as_deref().unwrap_or("");
        let prefix = [Cell::Text(&self.partner), Cell::Text(&date), Cell::Text(currency)];
        let figures_row = |report: &mut CsvReport, group: &str, name: &str, f: &Figures| {
            let mut row = prefix.to_vec();
            row.extend([
                Cell::Text(group),
                Cell::Text(name),
                Cell::Count(f.transactions),
                Cell::Count(f.purchases),
                Cell::Count(f.refunds),
                Cell::Number(f.purchase_amount),
                Cell::Number(f.refund_amount),
                Cell::Number(f.cashback),
                Cell::Number(f.clawback),
                Cell::Count(f.excluded),
            ]);
            report.row(&row);
        };
        figures_row(&mut report, "total", "", &self.totals);
        for campaign in &self.by_campaign {
            let mut row = prefix.to_vec();
            row.extend([
                Cell::Text("campaign"),
                Cell::Text(&campaign.campaign_id),
                Cell::Count(campaign.transactions),
                Cell::Empty,
                Cell::Empty,
                Cell::Empty,
                Cell::Empty,
                Cell::Number(campaign.cashback),
                Cell::Empty,
                Cell::Empty,
            ]);
            report.row(&row);
        }
        for tier in &self.by_tier {
            figures_row(&mut report, "tier", &tier.tier, &tier.figures);
        }
        report.into_bytes()
    }
}
