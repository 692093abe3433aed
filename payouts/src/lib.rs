//! Cezbek's payouts (issue #20): paying customers' cashback into their e-wallets, exactly once,
//! reconciled.
//!
//! This crate starts with its foundation, the **journal**: money is kept in double-entry
//! form, as payment ledgers do. Every movement (cashback earned, clawback, hold release, payout
//! reserve, settlement, reversal, fee) is a balanced transfer between two accounts with a
//! unique, deterministic id, so posting it twice is a no-op, and every balance is the sum of the
//! transfers. On it, payouts are reserved once per customer-day and move through their states
//! with their transfers. The service (`cezbek payouts`: balances fed from `cezbek.rewards.v1`,
//! providers, routing, callbacks, reconciliation) is built on it and is not here yet.

pub mod balances;
pub mod journal;
pub mod payout;

pub use journal::{Account, Discrepancy, Journal, JournalError, Transfer, TransferKind};
pub use payout::{Limits, Payout, PayoutError, PayoutState, Reservation, payout_id};
