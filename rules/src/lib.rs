//! Cezbek's pure reward engine: the campaign, exclusion and tier models, an indexed rule
//! snapshot, and `evaluate()`. No I/O and no async: the rewarder and campaignex's dry run call
//! the same function, and replaying the transaction log with the same rule revisions gives the
//! same decisions.

mod evaluate;
pub mod keys;
mod live;
pub mod model;
pub mod openapi;
mod snapshot;
mod window;

pub use evaluate::{Decision, evaluate, local_day, local_day_at};
pub use live::{Rule, RuleError, RuleKey, RuleSet};
pub use model::{
    Campaign, CampaignStatus, Conditions, CustomerTokens, Exclusion, ExclusionTarget, NextTier,
    Partner, PartnerKey, PartnerStatus, RewardRule, Tier, TierProgram, TierProgress, TokenKey,
};
pub use snapshot::{PartnerRules, RuleSnapshot, SnapshotBuilder};
pub use window::{CustomerWindow, DailyEarned, OriginalPurchase, WindowPurchase, WindowStats};
