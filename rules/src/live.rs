//! The live rules as etcd holds them: parsing a key and its JSON value into a rule, and a
//! [`RuleSet`] that follows puts and deletes from a watch and builds snapshots. An invalid value
//! is rejected with a reason and the previous rule for that key is kept.

use std::collections::BTreeMap;

use cezbek_schemas::{PartnerCode, ValueError};

use crate::keys;
use crate::model::{Campaign, Exclusion, Partner, TierProgram, validate_rule_id};
use crate::payment_provider::PaymentProvider;
use crate::snapshot::RuleSnapshot;

/// Which rule a key names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleKey {
    Partner(PartnerCode),
    Campaign(PartnerCode, String),
    Exclusion(PartnerCode, String),
    Tiers(PartnerCode),
    /// A payment provider, by name (not a partner's).
    Provider(String),
}

/// A rule value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Partner(Partner),
    Campaign(Campaign),
    Exclusion(Exclusion),
    Tiers(TierProgram),
    Provider(PaymentProvider),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("key {0:?} is not under the rules prefix or not in the layout")]
    UnknownKey(String),
    #[error("key {key:?}: {source}")]
    BadKeyPart { key: String, source: ValueError },
    #[error("value of {key:?} is not valid JSON for its kind: {reason}")]
    BadJson { key: String, reason: String },
    #[error("value of {key:?} is invalid: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid { key: String, problems: Vec<ValueError> },
    #[error("value of {key:?} names {found:?}, but the key says {expected:?}")]
    Mismatch { key: String, expected: String, found: String },
}

impl RuleKey {
    /// Reads a key of the layout `{prefix}partners/{p}`, `{prefix}campaigns/{p}/{id}`,
    /// `{prefix}exclusions/{p}/{id}`, `{prefix}tiers/{p}`, `{prefix}providers/{name}`.
    pub fn parse(prefix: &str, key: &str) -> Result<Self, RuleError> {
        let unknown = || RuleError::UnknownKey(key.to_owned());
        let rest = key.strip_prefix(prefix).ok_or_else(unknown)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let partner = |raw: &str| {
            PartnerCode::parse(raw)
                .map_err(|source| RuleError::BadKeyPart { key: key.to_owned(), source })
        };
        let id = |raw: &str| match validate_rule_id("id", raw) {
            None => Ok(raw.to_owned()),
            Some(source) => Err(RuleError::BadKeyPart { key: key.to_owned(), source }),
        };
        match parts.as_slice() {
            ["partners", code] => Ok(Self::Partner(partner(code)?)),
            ["tiers", code] => Ok(Self::Tiers(partner(code)?)),
            ["campaigns", code, campaign] => Ok(Self::Campaign(partner(code)?, id(campaign)?)),
            ["exclusions", code, exclusion] => Ok(Self::Exclusion(partner(code)?, id(exclusion)?)),
            ["providers", name] => Ok(Self::Provider(id(name)?)),
            _ => Err(unknown()),
        }
    }

    /// The etcd key under `prefix`.
    pub fn path(&self, prefix: &str) -> String {
        match self {
            Self::Partner(partner) => keys::partner(prefix, partner),
            Self::Campaign(partner, id) => keys::campaign(prefix, partner, id),
            Self::Exclusion(partner, id) => keys::exclusion(prefix, partner, id),
            Self::Tiers(partner) => keys::tiers(prefix, partner),
            Self::Provider(name) => keys::provider(prefix, name),
        }
    }
}

impl Rule {
    /// The key this rule lives at.
    pub fn key(&self) -> RuleKey {
        match self {
            Self::Partner(partner) => RuleKey::Partner(partner.code.clone()),
            Self::Campaign(campaign) => {
                RuleKey::Campaign(campaign.partner.clone(), campaign.id.clone())
            }
            Self::Exclusion(exclusion) => {
                RuleKey::Exclusion(exclusion.partner.clone(), exclusion.id.clone())
            }
            Self::Tiers(program) => RuleKey::Tiers(program.partner.clone()),
            Self::Provider(provider) => RuleKey::Provider(provider.name.clone()),
        }
    }

    pub fn validate(&self) -> Result<(), Vec<ValueError>> {
        match self {
            Self::Partner(partner) => partner.validate(),
            Self::Campaign(campaign) => campaign.validate(),
            Self::Exclusion(exclusion) => exclusion.validate(),
            Self::Tiers(program) => program.validate(),
            Self::Provider(provider) => provider.validate(),
        }
    }

    /// The JSON that etcd holds.
    pub fn to_json(&self) -> String {
        let json = match self {
            Self::Partner(partner) => serde_json::to_string(partner),
            Self::Campaign(campaign) => serde_json::to_string(campaign),
            Self::Exclusion(exclusion) => serde_json::to_string(exclusion),
            Self::Tiers(program) => serde_json::to_string(program),
            Self::Provider(provider) => serde_json::to_string(provider),
        };
        // Plain structs of strings and numbers always serialise.
        json.unwrap_or_default()
    }

    /// Parses and validates the value of `key`, and checks that it names the same rule.
    pub fn parse(prefix: &str, key: &str, value: &[u8]) -> Result<Self, RuleError> {
        let rule_key = RuleKey::parse(prefix, key)?;
        let rule = Self::from_json(&rule_key, value)
            .map_err(|reason| RuleError::BadJson { key: key.to_owned(), reason })?;
        let found = rule.key();
        if found != rule_key {
            return Err(RuleError::Mismatch {
                key: key.to_owned(),
                expected: rule_key.path(prefix),
                found: found.path(prefix),
            });
        }
        rule.validate().map_err(|problems| RuleError::Invalid { key: key.to_owned(), problems })?;
        Ok(rule)
    }

    /// Reads the JSON of the kind of rule `key` names (no validation).
    pub fn from_json(key: &RuleKey, value: &[u8]) -> Result<Self, String> {
        let rule = match key {
            RuleKey::Partner(_) => serde_json::from_slice(value).map(Self::Partner),
            RuleKey::Campaign(..) => serde_json::from_slice(value).map(Self::Campaign),
            RuleKey::Exclusion(..) => serde_json::from_slice(value).map(Self::Exclusion),
            RuleKey::Tiers(_) => serde_json::from_slice(value).map(Self::Tiers),
            RuleKey::Provider(_) => serde_json::from_slice(value).map(Self::Provider),
        };
        rule.map_err(|error| error.to_string())
    }
}

/// Every rule under one prefix, kept current from a prefix Get and then a Watch.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    prefix: String,
    rules: BTreeMap<RuleKey, Rule>,
}

impl RuleSet {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), rules: BTreeMap::new() }
    }

    /// Applies a put. An invalid value is rejected and whatever the key held before stays.
    pub fn put(&mut self, key: &str, value: &[u8]) -> Result<(), RuleError> {
        let rule = Rule::parse(&self.prefix, key, value)?;
        self.rules.insert(rule.key(), rule);
        Ok(())
    }

    /// Applies a delete. Keys outside the layout are ignored.
    pub fn delete(&mut self, key: &str) {
        if let Ok(rule_key) = RuleKey::parse(&self.prefix, key) {
            self.rules.remove(&rule_key);
        }
    }

    pub fn get(&self, key: &RuleKey) -> Option<&Rule> {
        self.rules.get(key)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RuleKey, &Rule)> {
        self.rules.iter()
    }

    /// An immutable, indexed snapshot of the current rules at `revision`.
    pub fn snapshot(&self, revision: i64) -> RuleSnapshot {
        let mut builder = RuleSnapshot::builder();
        for rule in self.rules.values() {
            builder = match rule.clone() {
                Rule::Partner(partner) => builder.partner(partner),
                Rule::Campaign(campaign) => builder.campaign(campaign),
                Rule::Exclusion(exclusion) => builder.exclusion(exclusion),
                Rule::Tiers(program) => builder.tiers(program),
                Rule::Provider(provider) => builder.provider(provider),
            };
        }
        builder.build(revision)
    }
}
