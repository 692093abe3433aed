//! The rules of any past revision, rebuilt from the changes campaignex recorded: every put and
//! delete under the rules prefix with the etcd revision it went live at. The rules at revision
//! R are, for each key, its last change at or before R, read the way the rewarder read them
//! (an invalid value is refused and the key keeps what it held), so a replay "as recorded"
//! decides each transaction under the very rules its decision names.

use std::collections::HashMap;
use std::sync::Arc;

use cezbek_rules::{RuleKey, RuleSet, RuleSnapshot, TierProgram};

/// One recorded change of a key: its value from `revision` on (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    pub revision: i64,
    pub key: String,
    pub value: Option<String>,
}

/// A partner's rule changes, oldest first, and the snapshots built from them so far.
#[derive(Debug)]
pub struct RuleHistory {
    prefix: String,
    changes: Vec<RuleChange>,
    /// The first revision from which the history is complete: rules of an earlier revision
    /// are not known.
    complete_since: i64,
    snapshots: HashMap<i64, Arc<RuleSnapshot>>,
}

impl RuleHistory {
    pub fn new(
        prefix: impl Into<String>,
        mut changes: Vec<RuleChange>,
        complete_since: i64,
    ) -> Self {
        changes.sort_by_key(|change| change.revision);
        Self { prefix: prefix.into(), changes, complete_since, snapshots: HashMap::new() }
    }

    /// Whether the rules of `revision` are known.
    pub fn knows(&self, revision: i64) -> bool {
        revision >= self.complete_since
    }

    /// The rules as they were at `revision` (built once per revision asked for).
    pub fn at(&mut self, revision: i64) -> Arc<RuleSnapshot> {
        if let Some(snapshot) = self.snapshots.get(&revision) {
            return Arc::clone(snapshot);
        }
        let mut rules = RuleSet::new(self.prefix.clone());
        for change in self.changes.iter().take_while(|change| change.revision <= revision) {
            match &change.value {
                Some(value) => {
                    if let Err(error) = rules.put(&change.key, value.as_bytes()) {
                        tracing::debug!(%error, revision = change.revision, "a recorded rule the rewarder refused too");
                    }
                }
                None => rules.delete(&change.key),
            }
        }
        let snapshot = Arc::new(rules.snapshot(revision));
        self.snapshots.insert(revision, Arc::clone(&snapshot));
        snapshot
    }

    /// The longest tier window of any revision in the history, and at least the window a
    /// partner without a tier program keeps (what a replay must read before its period so
    /// every revision's tiers start right). One pass over the recorded tier programs.
    pub fn longest_window_days(&self, partner: &cezbek_schemas::PartnerCode) -> u32 {
        let tiers = RuleKey::Tiers(partner.clone()).path(&self.prefix);
        let recorded = self
            .changes
            .iter()
            .filter(|change| change.key == tiers)
            .filter_map(|change| change.value.as_deref())
            .filter_map(|value| serde_json::from_str::<TierProgram>(value).ok())
            .map(|program| program.window_days);
        recorded.fold(RuleSnapshot::default().window_days(partner), u32::max)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cezbek_schemas::PartnerCode;

    use super::*;

    fn partner_json(cap: i64) -> String {
        format!(
            r#"{{"code":"TOKO","name":"Toko","status":"ACTIVE","currency":"IDR","time_zone":"Asia/Jakarta","max_cashback_per_transaction":{cap}}}"#
        )
    }

    #[test]
    fn each_revision_sees_the_last_change_at_or_before_it() {
        let key = "/p/partners/TOKO".to_owned();
        let mut history = RuleHistory::new(
            "/p/",
            vec![
                RuleChange { revision: 9, key: key.clone(), value: None },
                RuleChange { revision: 3, key: key.clone(), value: Some(partner_json(100)) },
                RuleChange { revision: 6, key: key.clone(), value: Some(partner_json(200)) },
                // Refused (not JSON): the key keeps 200, as the rewarder's would.
                RuleChange { revision: 7, key: key.clone(), value: Some("{".into()) },
            ],
            3,
        );
        let toko = PartnerCode::parse("TOKO").unwrap();
        let cap = |history: &mut RuleHistory, revision| {
            history.at(revision).partner_rules(&toko).and_then(|rules| {
                rules.partner().and_then(|partner| partner.max_cashback_per_transaction)
            })
        };
        assert_eq!(cap(&mut history, 2), None);
        assert_eq!(cap(&mut history, 3), Some(100));
        assert_eq!(cap(&mut history, 5), Some(100));
        assert_eq!(cap(&mut history, 6), Some(200));
        assert_eq!(cap(&mut history, 8), Some(200));
        assert_eq!(cap(&mut history, 9), None);
        assert_eq!(history.at(8).revision(), 8);
        assert!(history.knows(3) && !history.knows(2));
        // No tier program recorded: a month, what a partner without one keeps.
        assert_eq!(history.longest_window_days(&toko), 31);
    }
}
