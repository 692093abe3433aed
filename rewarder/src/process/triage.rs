//! The first step of a batch: decode its messages, then sort the transactions into new ones
//! (per customer, in log order), redeliveries of decided ones, and conflicts.

use std::collections::HashMap;

use foldhash::HashMapExt;

use cezbek_ledger::{Ledger, LedgerError, content_hash};
use cezbek_schemas::{Msisdn, PartnerCode, Reward, Transaction, TransactionId, decode_transaction};

use super::{DeadLetter, Incoming};

/// The maps keyed per transaction or customer: foldhash, as SipHash was a visible share of the
/// rewarder's CPU. Keys come from partners, and the hasher is seeded per map.
pub(super) type FastMap<K, V> = foldhash::HashMap<K, V>;

/// A customer of a batch, borrowed from its decoded transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct CustomerRef<'a> {
    pub partner: &'a PartnerCode,
    pub msisdn: &'a Msisdn,
}

/// A message of the batch that decoded to a valid transaction of the customer it is keyed by.
#[derive(Debug)]
pub(super) struct Decoded<'a> {
    pub message: &'a Incoming,
    pub transaction: Transaction,
    /// What tells a redelivery from a conflicting reuse of the transaction's id.
    pub content_hash: String,
}

/// Decodes a batch; what does not decode, or is keyed by another customer than its own, goes to
/// `dead_letters`.
pub(super) fn decode<'a>(
    batch: &'a [Incoming],
    dead_letters: &mut Vec<DeadLetter>,
) -> Vec<Decoded<'a>> {
    let mut decoded = Vec::with_capacity(batch.len());
    for message in batch {
        match message.payload.as_deref().map(decode_transaction) {
            Some(Ok(transaction)) if !keyed_by_customer(message.key.as_deref(), &transaction) => {
                // One customer's transactions stay in order only on one partition, and only one
                // worker may keep the customer: the key is what places them.
                dead_letters.push(DeadLetter::new(
                    message,
                    "invalid",
                    format!(
                        "key {:?} is not the transaction's customer {}",
                        message.key.as_deref().map(String::from_utf8_lossy),
                        transaction.key()
                    ),
                ));
            }
            Some(Ok(transaction)) => {
                let content_hash = content_hash(&transaction);
                decoded.push(Decoded { message, transaction, content_hash });
            }
            Some(Err(error)) => {
                dead_letters.push(DeadLetter::new(message, "undecodable", error.to_string()));
            }
            None => {
                dead_letters.push(DeadLetter::new(message, "undecodable", "empty message".into()))
            }
        }
    }
    decoded
}

/// Whether a message's key is `"{partner}:{msisdn}"` of its transaction (checked without
/// building the key).
fn keyed_by_customer(key: Option<&[u8]>, transaction: &Transaction) -> bool {
    let Some(key) = key else { return false };
    let (partner, msisdn) = (transaction.partner.as_str(), transaction.msisdn.as_str());
    key.len() == partner.len() + 1 + msisdn.len()
        && key.starts_with(partner.as_bytes())
        && key[partner.len()] == b':'
        && key.ends_with(msisdn.as_bytes())
}

/// A transaction that passed decoding and deduplication, waiting for its decision.
#[derive(Debug)]
pub(super) struct Pending<'a> {
    pub transaction: &'a Transaction,
    pub content_hash: &'a str,
    /// Where the transaction is in its partition: recorded, so a replay decides in this order.
    pub offset: i64,
}

/// A batch's transactions sorted by what to do with them (borrowed from the decoded batch).
#[derive(Debug)]
pub(super) struct Triage<'a> {
    /// Customers in first-seen order.
    pub order: Vec<CustomerRef<'a>>,
    /// Each customer's new transactions in log order.
    pub pending: FastMap<CustomerRef<'a>, Vec<Pending<'a>>>,
    /// Decided before: their rewards, as stored, are re-emitted.
    pub redelivered: Vec<Reward>,
    pub duplicates: usize,
    pub conflicts: Vec<DeadLetter>,
}

impl<'a> Triage<'a> {
    /// Without asking the ledger (copies within the batch are still found): the first
    /// attempt at a batch, which the ledger's write checks.
    pub fn assuming_new(decoded: &'a [Decoded<'a>]) -> Self {
        Self::sort(decoded, &HashMap::new())
    }

    /// Against what the ledger has already decided.
    pub async fn against_ledger<L: Ledger>(
        decoded: &'a [Decoded<'a>],
        ledger: &L,
    ) -> Result<Self, LedgerError> {
        let transactions: Vec<&Transaction> = decoded.iter().map(|d| &d.transaction).collect();
        let existing = ledger.existing(&transactions).await?;
        Ok(Self::sort(decoded, &existing))
    }

    fn sort(
        decoded: &'a [Decoded<'a>],
        existing: &HashMap<(PartnerCode, TransactionId), cezbek_ledger::RewardRecord>,
    ) -> Self {
        let mut triage = Self {
            order: Vec::new(),
            pending: FastMap::with_capacity(decoded.len()),
            redelivered: Vec::new(),
            duplicates: 0,
            conflicts: Vec::new(),
        };
        let mut seen: FastMap<(&PartnerCode, &TransactionId), &str> =
            FastMap::with_capacity(decoded.len());
        for Decoded { message, transaction, content_hash } in decoded {
            let key = (&transaction.partner, &transaction.transaction_id);
            let stored = if existing.is_empty() {
                None
            } else {
                existing.get(&(transaction.partner.clone(), transaction.transaction_id.clone()))
            };
            let earlier = stored
                .map(|record| record.content_hash.as_str())
                .or_else(|| seen.get(&key).copied());
            match earlier {
                Some(earlier) if earlier == content_hash => {
                    // Decided before: nothing changes, but re-emit its reward (the first
                    // attempt may have crashed before publishing). A copy within this batch
                    // is published by its first occurrence.
                    if let Some(record) = stored {
                        triage.redelivered.push(record.reward.clone());
                    }
                    triage.duplicates += 1;
                }
                Some(_) => triage.conflicts.push(DeadLetter::new(
                    message,
                    "conflict",
                    format!(
                        "transaction {} of {} was already decided with different content; the first one stands",
                        transaction.transaction_id, transaction.partner
                    ),
                )),
                None => {
                    seen.insert(key, content_hash);
                    let customer =
                        CustomerRef { partner: &transaction.partner, msisdn: &transaction.msisdn };
                    let list = triage.pending.entry(customer).or_default();
                    if list.is_empty() {
                        triage.order.push(customer);
                    }
                    list.push(Pending { transaction, content_hash, offset: message.offset });
                }
            }
        }
        triage
    }

    /// A customer's pending transactions, in log order.
    pub fn of(&self, customer: &CustomerRef<'a>) -> &[Pending<'a>] {
        self.pending.get(customer).map(Vec::as_slice).unwrap_or_default()
    }
}
