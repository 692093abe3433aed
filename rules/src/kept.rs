//! A customer's window as a long-running decider keeps it between batches: the decisions it
//! holds and how far back they are complete.
//!
//! A decision never depends on what happens to be kept: a transaction that needs anything
//! earlier than the window holds (a backdated purchase, a tier window that grew) is not
//! [covered](KeptWindow::covers), and the caller loads the customer again from its store first.
//! So a decider may keep as few customers as it likes and drop any of them at any time.

use chrono::{DateTime, Days, NaiveDate, Utc};

use cezbek_schemas::{PartnerCode, Reward, Transaction};

use crate::budget::Allowances;
use crate::decision::Evaluated;
use crate::evaluate::{evaluate_within, local_day_at};
use crate::snapshot::RuleSnapshot;
use crate::window::{CustomerWindow, OriginalPurchase};

#[derive(Debug, Clone)]
pub struct KeptWindow {
    window: CustomerWindow,
    /// The window holds every purchase that occurred from this time on…
    purchases_since: DateTime<Utc>,
    /// …and every day's earnings from this partner-local day on.
    days_since: NaiveDate,
}

impl KeptWindow {
    /// From when a customer's decisions must be read to decide their transactions from
    /// `earliest` on: a tier window before it, and a day more (the partner-local day of a
    /// transaction starts less than a day before it).
    pub fn load_since(
        rules: &RuleSnapshot,
        partner: &PartnerCode,
        earliest: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let days = rules.window_days(partner).max(1) + 1;
        earliest.checked_sub_days(Days::new(u64::from(days))).unwrap_or(earliest)
    }

    /// The window rebuilt from every decision of the customer since `since` (see
    /// [`KeptWindow::load_since`]).
    pub fn loaded(
        window: CustomerWindow,
        rules: &RuleSnapshot,
        partner: &PartnerCode,
        since: DateTime<Utc>,
    ) -> Self {
        // The day `since` falls in is only partly read.
        let first_full_day =
            local_day_at(rules, partner, since).succ_opt().unwrap_or(NaiveDate::MAX);
        Self { window, purchases_since: since, days_since: first_full_day }
    }

    /// Whether the window has everything a decision on `transaction` reads: the purchases of
    /// its tier window and the earnings of its partner-local day.
    pub fn covers(&self, transaction: &Transaction, rules: &RuleSnapshot) -> bool {
        let window_days = rules.window_days(&transaction.partner);
        let tier_window_start = transaction
            .occurred_at
            .checked_sub_days(Days::new(u64::from(window_days)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        tier_window_start >= self.purchases_since
            && local_day_at(rules, &transaction.partner, transaction.occurred_at) >= self.days_since
    }

    /// Decides `transaction` and records the decision, so the customer's next transaction sees
    /// it.
    pub fn decide(&mut self, transaction: &Transaction, rules: &RuleSnapshot) -> Evaluated {
        self.decide_within(transaction, rules, &Allowances::unlimited())
    }

    /// [`KeptWindow::decide`] with what each budgeted campaign may pay.
    pub fn decide_within(
        &mut self,
        transaction: &Transaction,
        rules: &RuleSnapshot,
        allowances: &Allowances<'_>,
    ) -> Evaluated {
        let evaluated = self.evaluate_within(transaction, rules, allowances);
        self.apply(transaction, &evaluated);
        evaluated
    }

    /// The decision on `transaction` without recording it (a caller that may decide again with
    /// more budget records the one it keeps with [`KeptWindow::apply`]).
    pub fn evaluate_within(
        &self,
        transaction: &Transaction,
        rules: &RuleSnapshot,
        allowances: &Allowances<'_>,
    ) -> Evaluated {
        evaluate_within(transaction, rules, &self.window, allowances)
    }

    /// Records a decision, so the customer's next transaction sees it.
    pub fn apply(&mut self, transaction: &Transaction, evaluated: &Evaluated) {
        self.window.apply(transaction, &evaluated.decision, evaluated.local_day);
    }

    /// Forgets what no transaction after `latest` (decided on `latest_day`) needs. What is
    /// forgotten is no longer covered: a later transaction that needs it (a backdated one)
    /// makes the caller load the customer again.
    pub fn forget_before(
        &mut self,
        latest: &Transaction,
        latest_day: NaiveDate,
        rules: &RuleSnapshot,
    ) {
        let window_days = rules.window_days(&latest.partner);
        let since = latest
            .occurred_at
            .checked_sub_days(Days::new(u64::from(window_days)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let day = latest_day.pred_opt().unwrap_or(latest_day);
        self.window.prune(since, day);
        self.purchases_since = self.purchases_since.max(since);
        self.days_since = self.days_since.max(day);
    }

    /// Records a decision made before (as the ledger keeps it) without deciding it again: how a
    /// replay brings a customer's window up to the start of its period.
    pub fn record(&mut self, decided: &Reward, day: NaiveDate) {
        self.window.record(decided, day);
    }

    /// Whether a refund of `transaction_id` finds its original here (otherwise the caller looks
    /// it up in its store and [adds](KeptWindow::add_original) it).
    pub fn has_original(&self, transaction_id: &str) -> bool {
        self.window.originals.contains_key(transaction_id)
    }

    pub fn add_original(&mut self, transaction_id: String, original: OriginalPurchase) {
        self.window.originals.insert(transaction_id, original);
    }

    pub fn window(&self) -> &CustomerWindow {
        &self.window
    }
}

/// A customer with no decisions before: the window is complete from the beginning (a replay
/// of a whole history starts here).
impl Default for KeptWindow {
    fn default() -> Self {
        Self {
            window: CustomerWindow::default(),
            purchases_since: DateTime::<Utc>::MIN_UTC,
            days_since: NaiveDate::MIN,
        }
    }
}
