//! Cezbek's payouts (issue #20): paying customers' cashback into their e-wallets, exactly once,
//! reconciled.
//!
//! This crate starts with its foundation, the **journal**: money is kept in double-entry
//! form, as payment ledgers do. Every movement (cashback earned, clawback, hold release, payout
//! reserve, settlement, reversal, fee) is a balanced transfer between two accounts with a
//! unique, deterministic id, so posting it twice is a no-op, and every balance is the sum of the
//! transfers. The service (`cezbek payouts`: balances fed from `cezbek.rewards.v1`, providers,
//! routing, callbacks, reconciliation) is built on it and is not here yet.

pub mod balances;
pub mod journal;

pub use journal::{Account, Discrepancy, Journal, JournalError, Transfer, TransferKind};
