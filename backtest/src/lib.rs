//! Backtests: a partner's decided history replayed under other rules, compared with what the
//! ledger recorded (what was actually paid). Nothing is written and nothing is published.
//!
//! The history is read from the ledger, which holds every decided transaction for as long as
//! Cezbek runs (the transaction topic only within its retention). Each customer's decisions
//! are replayed in the order the rewarder made them (their log offsets), starting from a window
//! rebuilt from the decisions of the tier window before the period, so tiers start right.
//!
//! Two kinds of replay ([`Rules`]): under a draft (the rules a partner is considering, as if
//! they had been live for the whole period), or as recorded (each transaction under the rule
//! revision its decision names, from the rule history campaignex keeps), which must give the
//! ledger back to the unit: the proof that the log and the rule history rebuild the ledger.

mod draft;
mod period;
mod replay;
mod report;
mod rule_history;
mod run;

pub use draft::{Draft, DraftError};
pub use period::Period;
pub use replay::{Replayer, Rules};
pub use report::{
    CampaignRow, CustomerRow, DayRow, Example, ExclusionRow, MigrationRow, PercentileRow, Report,
    Side, Table, TierRow, Totals,
};
pub use rule_history::{RuleChange, RuleHistory};
pub use run::{Progress, RunError, run};
