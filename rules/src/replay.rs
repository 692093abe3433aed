//! A log decided in order with every customer's whole history in view: the definition of the
//! right answer, which the rewarder must reach whatever it kept in memory, and what a replay of
//! history (a backtest) computes.

use std::collections::HashMap;

use cezbek_schemas::{Msisdn, PartnerCode, Transaction};

use crate::decision::Evaluated;
use crate::kept::KeptWindow;
use crate::snapshot::RuleSnapshot;
use crate::window::CustomerWindow;

#[derive(Debug, Clone, Default)]
pub struct Replay {
    customers: HashMap<(PartnerCode, Msisdn), KeptWindow>,
}

impl Replay {
    /// Decides the next transaction of the log under `rules`, after every earlier one of its
    /// customer.
    pub fn decide(&mut self, transaction: &Transaction, rules: &RuleSnapshot) -> Evaluated {
        let customer = (transaction.partner.clone(), transaction.msisdn.clone());
        self.customers.entry(customer).or_default().decide(transaction, rules)
    }

    /// Each customer's window after the transactions decided so far.
    pub fn windows(&self) -> impl Iterator<Item = (&PartnerCode, &Msisdn, &CustomerWindow)> {
        self.customers.iter().map(|((partner, msisdn), kept)| (partner, msisdn, kept.window()))
    }
}
