//! What a backtest answers: the baseline (what the ledger recorded) against the replay, in
//! totals and by day, campaign and tier, with tier migrations, the spread of cashback per
//! customer, exclusions, and the customers whose cashback changes most. Every amount is in
//! minor units; shares are in basis points.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use cezbek_platform::csv_report::{Cell, CsvReport, LineEnd};
use cezbek_rules::Decision;
use cezbek_schemas::{RewardOutcome, TransactionKind};

use crate::period::Period;

/// One side's figures (baseline or replay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Side {
    /// Cashback earned by purchases.
    pub earned: i64,
    /// Cashback refunds took back (a positive number).
    pub clawed_back: i64,
    /// Earned less clawed back.
    pub net: i64,
    /// Purchases that earned cashback.
    pub rewarded: u64,
    /// Purchases an exclusion stopped.
    pub excluded: u64,
    /// `excluded` in basis points of the purchases.
    pub excluded_share_bp: u64,
}

impl Side {
    fn add(&mut self, kind: TransactionKind, outcome: RewardOutcome, cashback: i64) {
        if cashback >= 0 {
            self.earned = self.earned.saturating_add(cashback);
        } else {
            self.clawed_back = self.clawed_back.saturating_add(-cashback);
        }
        self.net = self.net.saturating_add(cashback);
        if kind == TransactionKind::Purchase && cashback > 0 {
            self.rewarded += 1;
        }
        if outcome == RewardOutcome::Excluded {
            self.excluded += 1;
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Totals {
    /// Transactions of the period replayed (purchases and refunds).
    pub transactions: u64,
    pub purchases: u64,
    pub refunds: u64,
    /// Customers with a transaction in the period.
    pub customers: u64,
    /// What the ledger recorded.
    pub baseline: Side,
    /// What the replay decided.
    pub replay: Side,
    /// `replay.net - baseline.net`.
    pub difference: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayRow {
    /// Partner-local day.
    pub day: NaiveDate,
    pub transactions: u64,
    pub baseline: i64,
    pub replay: i64,
    pub difference: i64,
}

/// What campaigns paid before tier benefits and caps (the amounts each decision lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignRow {
    pub campaign_id: String,
    pub baseline: i64,
    pub replay: i64,
    pub difference: i64,
    pub baseline_transactions: u64,
    pub replay_transactions: u64,
}

/// Cashback by the tier each decision left the customer in, and customers by the tier they
/// ended the period in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierRow {
    /// `null`: no tier.
    pub tier: Option<String>,
    pub baseline: i64,
    pub replay: i64,
    pub baseline_customers: u64,
    pub replay_customers: u64,
}

/// Customers who ended the period in `baseline_tier` as recorded and in `replay_tier` in the
/// replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MigrationRow {
    pub baseline_tier: Option<String>,
    pub replay_tier: Option<String>,
    pub customers: u64,
}

/// Net cashback per customer over the period, at a percentile (nearest rank; 100 is the most).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PercentileRow {
    pub percentile: u8,
    pub baseline: i64,
    pub replay: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExclusionRow {
    pub exclusion_id: String,
    pub baseline_transactions: u64,
    pub replay_transactions: u64,
}

/// One transaction of a customer where the two sides differ most, with both explanations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Example {
    pub transaction_id: String,
    pub baseline_cashback: i64,
    pub replay_cashback: i64,
    /// As the ledger recorded it.
    pub baseline_explanation: String,
    pub replay_explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CustomerRow {
    pub msisdn: String,
    pub baseline: i64,
    pub replay: i64,
    pub difference: i64,
    pub example: Option<Example>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub period: Period,
    pub totals: Totals,
    pub days: Vec<DayRow>,
    pub campaigns: Vec<CampaignRow>,
    pub tiers: Vec<TierRow>,
    pub tier_migrations: Vec<MigrationRow>,
    pub percentiles: Vec<PercentileRow>,
    pub exclusions: Vec<ExclusionRow>,
    /// The customers whose cashback changes most (at most 20), largest change first.
    pub customers: Vec<CustomerRow>,
    /// Decisions replayed "as recorded" whose rule revision predates the rule history (they
    /// were replayed under the oldest rules known, and may differ for that reason alone).
    pub unknown_revisions: u64,
}

/// The customers a report names.
pub const TOP_CUSTOMERS: usize = 20;
const PERCENTILES: [u8; 7] = [10, 25, 50, 75, 90, 99, 100];

/// One customer's figures while it is replayed.
#[derive(Debug, Default)]
pub(crate) struct CustomerTally {
    pub baseline: i64,
    pub replay: i64,
    pub baseline_tier: Option<String>,
    pub replay_tier: Option<String>,
    pub example: Option<Example>,
    example_gap: i64,
}

impl CustomerTally {
    /// Keeps the transaction as the customer's example when the sides differ more on it than
    /// on any before it.
    fn consider(&mut self, transaction_id: &str, baseline: i64, decision: &Decision) {
        let gap = (decision.cashback - baseline).abs();
        if gap == 0 || gap <= self.example_gap {
            return;
        }
        self.example_gap = gap;
        self.example = Some(Example {
            transaction_id: transaction_id.to_owned(),
            baseline_cashback: baseline,
            replay_cashback: decision.cashback,
            baseline_explanation: String::new(),
            replay_explanation: decision.explanation.clone(),
        });
    }
}

/// A customer in the running for the largest changes, ordered by the size of the change.
#[derive(Debug, PartialEq, Eq)]
struct Ranked {
    change: u64,
    msisdn: String,
    row: CustomerRow,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Ties go to the smaller msisdn, so the list never depends on reading order.
        (self.change, Reverse(&self.msisdn)).cmp(&(other.change, Reverse(&other.msisdn)))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
struct Pair {
    baseline: i64,
    replay: i64,
    baseline_count: u64,
    replay_count: u64,
}

/// Everything a report sums, as a replay goes.
#[derive(Debug, Default)]
pub(crate) struct Accumulator {
    totals: Totals,
    days: BTreeMap<NaiveDate, (u64, i64, i64)>,
    campaigns: HashMap<String, Pair>,
    tiers: HashMap<Option<String>, Pair>,
    migrations: HashMap<(Option<String>, Option<String>), u64>,
    exclusions: HashMap<String, (u64, u64)>,
    baseline_per_customer: Vec<i64>,
    replay_per_customer: Vec<i64>,
    /// The largest changes so far, smallest first (a min-heap of at most [`TOP_CUSTOMERS`]).
    top: BinaryHeap<Reverse<Ranked>>,
    pub unknown_revisions: u64,
}

/// What the ledger recorded for one transaction, as a report needs it.
pub(crate) struct Recorded<'a> {
    pub transaction_id: &'a str,
    pub kind: TransactionKind,
    pub day: NaiveDate,
    pub decision: &'a cezbek_schemas::Reward,
}

impl Accumulator {
    /// One transaction of the period: the recorded decision against the replayed one.
    pub fn add(
        &mut self,
        recorded: &Recorded<'_>,
        replayed: &Decision,
        customer: &mut CustomerTally,
    ) {
        let baseline = recorded.decision;
        let totals = &mut self.totals;
        totals.transactions += 1;
        match recorded.kind {
            TransactionKind::Purchase => totals.purchases += 1,
            TransactionKind::Refund => totals.refunds += 1,
        }
        totals.baseline.add(recorded.kind, baseline.outcome, baseline.cashback);
        totals.replay.add(recorded.kind, replayed.outcome, replayed.cashback);
        let day = self.days.entry(recorded.day).or_default();
        day.0 += 1;
        day.1 = day.1.saturating_add(baseline.cashback);
        day.2 = day.2.saturating_add(replayed.cashback);
        for applied in &baseline.applied_campaigns {
            let pair = self.campaigns.entry(applied.campaign_id.clone()).or_default();
            pair.baseline = pair.baseline.saturating_add(applied.amount);
            pair.baseline_count += 1;
        }
        for applied in &replayed.applied_campaigns {
            let pair = self.campaigns.entry(applied.campaign_id.clone()).or_default();
            pair.replay = pair.replay.saturating_add(applied.amount);
            pair.replay_count += 1;
        }
        if baseline.cashback != 0 {
            let tier = self.tiers.entry(baseline.tier_after.clone()).or_default();
            tier.baseline = tier.baseline.saturating_add(baseline.cashback);
        }
        if replayed.cashback != 0 {
            let tier = self.tiers.entry(replayed.tier_after.clone()).or_default();
            tier.replay = tier.replay.saturating_add(replayed.cashback);
        }
        if let Some(exclusion) = &baseline.exclusion_id {
            self.exclusions.entry(exclusion.clone()).or_default().0 += 1;
        }
        if let Some(exclusion) = &replayed.exclusion_id {
            self.exclusions.entry(exclusion.clone()).or_default().1 += 1;
        }
        customer.baseline = customer.baseline.saturating_add(baseline.cashback);
        customer.replay = customer.replay.saturating_add(replayed.cashback);
        customer.baseline_tier.clone_from(&baseline.tier_after);
        customer.replay_tier.clone_from(&replayed.tier_after);
        customer.consider(recorded.transaction_id, baseline.cashback, replayed);
    }

    /// A customer's last transaction of the period was added.
    pub fn customer_done(&mut self, msisdn: &str, customer: CustomerTally) {
        self.totals.customers += 1;
        self.baseline_per_customer.push(customer.baseline);
        self.replay_per_customer.push(customer.replay);
        self.tiers.entry(customer.baseline_tier.clone()).or_default().baseline_count += 1;
        self.tiers.entry(customer.replay_tier.clone()).or_default().replay_count += 1;
        *self.migrations.entry((customer.baseline_tier, customer.replay_tier)).or_default() += 1;
        let change = customer.replay.abs_diff(customer.baseline);
        if change == 0 {
            return;
        }
        let ranked = Ranked {
            change,
            msisdn: msisdn.to_owned(),
            row: CustomerRow {
                msisdn: msisdn.to_owned(),
                baseline: customer.baseline,
                replay: customer.replay,
                difference: customer.replay.saturating_sub(customer.baseline),
                example: customer.example,
            },
        };
        if self.top.len() < TOP_CUSTOMERS {
            self.top.push(Reverse(ranked));
        } else if self.top.peek().is_some_and(|Reverse(smallest)| ranked > *smallest) {
            self.top.pop();
            self.top.push(Reverse(ranked));
        }
    }

    pub fn report(mut self, period: Period) -> Report {
        let mut totals = self.totals;
        totals.difference = totals.replay.net.saturating_sub(totals.baseline.net);
        for side in [&mut totals.baseline, &mut totals.replay] {
            side.excluded_share_bp =
                (side.excluded * 10_000).checked_div(totals.purchases).unwrap_or(0);
        }
        let days = self
            .days
            .into_iter()
            .map(|(day, (transactions, baseline, replay))| DayRow {
                day,
                transactions,
                baseline,
                replay,
                difference: replay.saturating_sub(baseline),
            })
            .collect();
        let mut campaigns: Vec<CampaignRow> = self
            .campaigns
            .into_iter()
            .map(|(campaign_id, pair)| CampaignRow {
                campaign_id,
                baseline: pair.baseline,
                replay: pair.replay,
                difference: pair.replay.saturating_sub(pair.baseline),
                baseline_transactions: pair.baseline_count,
                replay_transactions: pair.replay_count,
            })
            .collect();
        campaigns.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
        let mut tiers: Vec<TierRow> = self
            .tiers
            .into_iter()
            .map(|(tier, pair)| TierRow {
                tier,
                baseline: pair.baseline,
                replay: pair.replay,
                baseline_customers: pair.baseline_count,
                replay_customers: pair.replay_count,
            })
            .collect();
        tiers.sort_by(|a, b| a.tier.cmp(&b.tier));
        let mut tier_migrations: Vec<MigrationRow> = self
            .migrations
            .into_iter()
            .map(|((baseline_tier, replay_tier), customers)| MigrationRow {
                baseline_tier,
                replay_tier,
                customers,
            })
            .collect();
        tier_migrations.sort_by(|a, b| {
            (&a.baseline_tier, &a.replay_tier).cmp(&(&b.baseline_tier, &b.replay_tier))
        });
        self.baseline_per_customer.sort_unstable();
        self.replay_per_customer.sort_unstable();
        let percentiles = PERCENTILES
            .iter()
            .map(|&percentile| PercentileRow {
                percentile,
                baseline: nearest_rank(&self.baseline_per_customer, percentile),
                replay: nearest_rank(&self.replay_per_customer, percentile),
            })
            .collect();
        let mut exclusions: Vec<ExclusionRow> = self
            .exclusions
            .into_iter()
            .map(|(exclusion_id, (baseline, replay))| ExclusionRow {
                exclusion_id,
                baseline_transactions: baseline,
                replay_transactions: replay,
            })
            .collect();
        exclusions.sort_by(|a, b| a.exclusion_id.cmp(&b.exclusion_id));
        let customers =
            self.top.into_sorted_vec().into_iter().map(|Reverse(ranked)| ranked.row).collect();
        Report {
            period,
            totals,
            days,
            campaigns,
            tiers,
            tier_migrations,
            percentiles,
            exclusions,
            customers,
            unknown_revisions: self.unknown_revisions,
        }
    }
}

/// The value at `percentile` of sorted `values` by nearest rank (0 when there are none).
fn nearest_rank(sorted: &[i64], percentile: u8) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (usize::from(percentile) * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// The tables a report has, each downloadable as CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Totals,
    Days,
    Campaigns,
    Tiers,
    TierMigrations,
    Percentiles,
    Exclusions,
    Customers,
}

impl Report {
    /// One table as CSV (text from admins and partners guarded against formula injection).
    pub fn csv(&self, table: Table) -> Vec<u8> {
        let mut csv = CsvReport::new(LineEnd::Crlf);
        let tier = |tier: &Option<String>| tier.as_deref().unwrap_or("").to_owned();
        match table {
            Table::Totals => {
                csv.header(&["figure", "baseline", "replay", "difference"]);
                let (b, r) = (&self.totals.baseline, &self.totals.replay);
                let rows: [(&str, i64, i64); 6] = [
                    ("earned", b.earned, r.earned),
                    ("clawed_back", b.clawed_back, r.clawed_back),
                    ("net", b.net, r.net),
                    ("rewarded", count(b.rewarded), count(r.rewarded)),
                    ("excluded", count(b.excluded), count(r.excluded)),
                    ("excluded_share_bp", count(b.excluded_share_bp), count(r.excluded_share_bp)),
                ];
                for (figure, baseline, replay) in rows {
                    csv.row(&[
                        Cell::Text(figure),
                        Cell::Number(baseline),
                        Cell::Number(replay),
                        Cell::Number(replay.saturating_sub(baseline)),
                    ]);
                }
                for (figure, value) in [
                    ("transactions", self.totals.transactions),
                    ("purchases", self.totals.purchases),
                    ("refunds", self.totals.refunds),
                    ("customers", self.totals.customers),
                ] {
                    csv.row(&[
                        Cell::Text(figure),
                        Cell::Count(value),
                        Cell::Count(value),
                        Cell::Number(0),
                    ]);
                }
            }
            Table::Days => {
                csv.header(&["day", "transactions", "baseline", "replay", "difference"]);
                for row in &self.days {
                    csv.row(&[
                        Cell::Text(&row.day.to_string()),
                        Cell::Count(row.transactions),
                        Cell::Number(row.baseline),
                        Cell::Number(row.replay),
                        Cell::Number(row.difference),
                    ]);
                }
            }
            Table::Campaigns => {
                csv.header(&[
                    "campaign_id",
                    "baseline",
                    "replay",
                    "difference",
                    "baseline_transactions",
                    "replay_transactions",
                ]);
                for row in &self.campaigns {
                    csv.row(&[
                        Cell::Text(&row.campaign_id),
                        Cell::Number(row.baseline),
                        Cell::Number(row.replay),
                        Cell::Number(row.difference),
                        Cell::Count(row.baseline_transactions),
                        Cell::Count(row.replay_transactions),
                    ]);
                }
            }
            Table::Tiers => {
                csv.header(&[
                    "tier",
                    "baseline",
                    "replay",
                    "baseline_customers",
                    "replay_customers",
                ]);
                for row in &self.tiers {
                    csv.row(&[
                        Cell::Text(&tier(&row.tier)),
                        Cell::Number(row.baseline),
                        Cell::Number(row.replay),
                        Cell::Count(row.baseline_customers),
                        Cell::Count(row.replay_customers),
                    ]);
                }
            }
            Table::TierMigrations => {
                csv.header(&["baseline_tier", "replay_tier", "customers"]);
                for row in &self.tier_migrations {
                    csv.row(&[
                        Cell::Text(&tier(&row.baseline_tier)),
                        Cell::Text(&tier(&row.replay_tier)),
                        Cell::Count(row.customers),
                    ]);
                }
            }
            Table::Percentiles => {
                csv.header(&["percentile", "baseline", "replay"]);
                for row in &self.percentiles {
                    csv.row(&[
                        Cell::Count(u64::from(row.percentile)),
                        Cell::Number(row.baseline),
                        Cell::Number(row.replay),
                    ]);
                }
            }
            Table::Exclusions => {
                csv.header(&["exclusion_id", "baseline_transactions", "replay_transactions"]);
                for row in &self.exclusions {
                    csv.row(&[
                        Cell::Text(&row.exclusion_id),
                        Cell::Count(row.baseline_transactions),
                        Cell::Count(row.replay_transactions),
                    ]);
                }
            }
            Table::Customers => {
                csv.header(&[
                    "msisdn",
                    "baseline",
                    "replay",
                    "difference",
                    "example_transaction_id",
                    "example_baseline_cashback",
                    "example_replay_cashback",
                    "example_baseline_explanation",
                    "example_replay_explanation",
                ]);
                for row in &self.customers {
                    let example = row.example.as_ref();
                    csv.row(&[
                        Cell::Text(&row.msisdn),
                        Cell::Number(row.baseline),
                        Cell::Number(row.replay),
                        Cell::Number(row.difference),
                        example.map_or(Cell::Empty, |e| Cell::Text(&e.transaction_id)),
                        example.map_or(Cell::Empty, |e| Cell::Number(e.baseline_cashback)),
                        example.map_or(Cell::Empty, |e| Cell::Number(e.replay_cashback)),
                        example.map_or(Cell::Empty, |e| Cell::Text(&e.baseline_explanation)),
                        example.map_or(Cell::Empty, |e| Cell::Text(&e.replay_explanation)),
                    ]);
                }
            }
        }
        csv.into_bytes()
    }
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::nearest_rank;

    #[test]
    fn percentiles_are_nearest_ranks() {
        let values: Vec<i64> = (1..=10).collect();
        assert_eq!(nearest_rank(&values, 10), 1);
        assert_eq!(nearest_rank(&values, 50), 5);
        assert_eq!(nearest_rank(&values, 99), 10);
        assert_eq!(nearest_rank(&values, 100), 10);
        assert_eq!(nearest_rank(&[], 50), 0);
        assert_eq!(nearest_rank(&[7], 10), 7);
    }
}
