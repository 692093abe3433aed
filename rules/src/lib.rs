//! Cezbek's pure reward engine: the campaign, exclusion and tier models, an indexed rule
//! snapshot, and `evaluate()`. No I/O and no async: the rewarder and campaignex's dry run call
//! the same function, and replaying the transaction log with the same rule revisions gives the
//! same decisions.

mod budget;
mod decision;
mod evaluate;
mod kept;
pub mod keys;
mod live;
pub mod model;
pub mod openapi;
pub mod payment_provider;
pub mod payout_policy;
mod replay;
mod snapshot;
mod window;

pub use budget::{Allowances, BudgetLimit};
pub use decision::{Decision, Evaluated};
pub use evaluate::{evaluate, evaluate_within, local_day};
pub use kept::KeptWindow;
pub use live::{Rule, RuleError, RuleKey, RuleSet};
pub use model::{
    Campaign, CampaignStatus, Conditions, CustomerTokens, Exclusion, ExclusionTarget, NextTier,
    Partner, PartnerKey, PartnerStatus, RewardRule, Tier, TierProgram, TierProgress, TokenKey,
};
pub use payment_provider::{AdapterKind, ChannelTerms, FeeSchedule, Hours, PaymentProvider};
pub use payout_policy::{FeeBearer, PayoutPolicy};
pub use replay::Replay;
pub use snapshot::{PartnerRules, RuleSnapshot, SnapshotBuilder};
pub use window::{CustomerWindow, DailyEarned, OriginalPurchase, WindowPurchase, WindowStats};
