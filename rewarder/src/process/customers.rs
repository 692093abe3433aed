//! The customers a processor keeps in memory between batches, and how they are loaded from the
//! ledger when they are not kept, or not far back enough.

use std::collections::HashMap;

use chrono::Utc;

use cezbek_ledger::{CustomerState, Ledger, LedgerError, ShardLease};
use cezbek_rules::{KeptWindow, RuleSnapshot};
use cezbek_schemas::{Msisdn, PartnerCode};

use super::triage::{CustomerRef, FastMap, Triage};

/// A customer kept in memory.
#[derive(Debug)]
pub(super) struct Kept {
    pub tier: Option<String>,
    pub email: Option<String>,
    pub window: KeptWindow,
    /// The batch that last used it: the least recently used go first when memory is full.
    used: u64,
}

/// Customers by partner and number: looked up by reference, without building a key.
#[derive(Debug)]
pub(super) struct Customers {
    by_partner: FastMap<PartnerCode, FastMap<Msisdn, Kept>>,
    /// Kept before the least recently used are evicted.
    limit: usize,
    /// Batches seen: the clock of the least-recently-used order.
    batches: u64,
}

impl Customers {
    pub fn new(limit: usize) -> Self {
        Self { by_partner: FastMap::default(), limit: limit.max(1), batches: 0 }
    }

    pub fn len(&self) -> usize {
        self.by_partner.values().map(FastMap::len).sum()
    }

    pub fn clear(&mut self) {
        self.by_partner.clear();
    }

    pub fn next_batch(&mut self) {
        self.batches += 1;
    }

    /// Loads the customers of `triage` that are not kept, or whose window does not reach back
    /// far enough for one of their pending transactions (unknown ones start empty), with the
    /// window rebuilt from the decisions it can need.
    pub async fn load<L: Ledger>(
        &mut self,
        ledger: &L,
        lease: &ShardLease,
        triage: &Triage<'_>,
        rules: &RuleSnapshot,
    ) -> Result<(), LedgerError> {
        let mut missing: HashMap<&PartnerCode, Vec<Msisdn>> = HashMap::new();
        for customer in &triage.order {
            let usable = self.get(customer).is_some_and(|kept| {
                triage.of(customer).iter().all(|p| kept.window.covers(p.transaction, rules))
            });
            if !usable {
                missing.entry(customer.partner).or_default().push(customer.msisdn.clone());
            }
        }
        for (partner, msisdns) in missing {
            let earliest = msisdns
                .iter()
                .flat_map(|msisdn| triage.of(&CustomerRef { partner, msisdn }))
                .map(|p| p.transaction.occurred_at)
                .min()
                .unwrap_or_else(Utc::now);
            let since = KeptWindow::load_since(rules, partner, earliest);
            let mut loaded: HashMap<Msisdn, CustomerState> = ledger
                .load_customers(partner, &msisdns, since, lease)
                .await?
                .into_iter()
                .filter_map(|state| state.msisdn.clone().map(|m| (m, state)))
                .collect();
            let numbers = self.by_partner.entry(partner.clone()).or_default();
            for msisdn in msisdns {
                let state = loaded.remove(&msisdn).unwrap_or_default();
                let window = KeptWindow::loaded(state.window, rules, partner, since);
                numbers
                    .insert(msisdn, Kept { tier: state.tier, email: state.email, window, used: 0 });
            }
        }
        Ok(())
    }

    fn get(&self, customer: &CustomerRef<'_>) -> Option<&Kept> {
        self.by_partner.get(customer.partner).and_then(|numbers| numbers.get(customer.msisdn))
    }

    /// Takes a customer out, with its key (a window is not cloned per decision): it goes back
    /// with [`Customers::put_back`] once the ledger accepted the decisions; otherwise it is
    /// loaded again, from the ledger that has what memory had.
    pub fn take(&mut self, customer: &CustomerRef<'_>) -> Option<(Msisdn, Kept)> {
        let (msisdn, mut kept) = self
            .by_partner
            .get_mut(customer.partner)
            .and_then(|numbers| numbers.remove_entry(customer.msisdn))?;
        kept.used = self.batches;
        Some((msisdn, kept))
    }

    pub fn put_back(&mut self, partner: PartnerCode, msisdn: Msisdn, kept: Kept) {
        match self.by_partner.get_mut(&partner) {
            Some(numbers) => numbers.insert(msisdn, kept),
            None => self.by_partner.entry(partner).or_default().insert(msisdn, kept),
        };
    }

    /// Keeps memory within its limit: the least recently used customers go, down to nine
    /// tenths of it, so that eviction is not paid for on every batch. Which ones go changes no
    /// decision: a customer not kept is loaded from the ledger.
    pub fn evict(&mut self) {
        let count = self.len();
        if count <= self.limit {
            return;
        }
        let keep = self.limit - self.limit / 10;
        let mut ages: Vec<u64> =
            self.by_partner.values().flat_map(|numbers| numbers.values()).map(|k| k.used).collect();
        let (_, threshold, _) = ages.select_nth_unstable(count - keep);
        // Customers used after the threshold stay, and enough of those used at it.
        let threshold = *threshold;
        let mut to_drop = count - keep;
        for numbers in self.by_partner.values_mut() {
            numbers.retain(|_, kept| {
                if to_drop > 0 && kept.used <= threshold {
                    to_drop -= 1;
                    return false;
                }
                true
            });
        }
        self.by_partner.retain(|_, numbers| !numbers.is_empty());
    }
}
