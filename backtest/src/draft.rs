//! A draft: the rules a partner is considering, each part either as today or changed. Campaigns
//! and exclusions are replaced as whole lists (absent: today's); the tier program and the
//! partner's per-transaction cap are replaced, removed (`null`) or kept (absent).

use std::collections::HashSet;

use serde::{Deserialize, Deserializer, Serialize};

use cezbek_rules::{Campaign, Exclusion, Partner, Rule, RuleSnapshot, TierProgram};
use cezbek_schemas::{PartnerCode, ValueError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    /// Every campaign the draft runs (absent: today's). Each campaign's `partner` may be left
    /// out.
    #[serde(default)]
    pub campaigns: Option<Vec<Campaign>>,
    /// Every exclusion the draft applies (absent: today's).
    #[serde(default)]
    pub exclusions: Option<Vec<Exclusion>>,
    /// The tier program (absent: today's; `null`: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<TierProgram>)]
    pub tiers: Option<Option<TierProgram>>,
    /// The cap on any one transaction's cashback, minor units (absent: today's; `null`: none).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub max_cashback_per_transaction: Option<Option<i64>>,
}

/// A field that is present, whether `null` or a value (absent fields stay `None` by `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the draft is invalid: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct DraftError {
    /// Each problem names its field from the draft (`draft.campaigns[1].reward`).
    pub problems: Vec<ValueError>,
}

impl Draft {
    /// The rules the draft replays under: `live` (the partner's rules today) with the draft's
    /// changes, as one snapshot at `revision`.
    pub fn snapshot(
        &self,
        partner: &PartnerCode,
        live: &[Rule],
        revision: i64,
    ) -> Result<RuleSnapshot, DraftError> {
        let mut problems = Vec::new();
        let within = |prefix: String, errors: Vec<ValueError>| {
            errors.into_iter().map(move |error| {
                let field = if error.field.is_empty() {
                    prefix.clone()
                } else {
                    format!("{prefix}.{}", error.field)
                };
                ValueError::new(field, error.reason)
            })
        };
        let mut partner_rule: Option<Partner> = None;
        let mut campaigns = Vec::new();
        let mut exclusions = Vec::new();
        let mut tiers = None;
        for rule in live {
            match rule {
                Rule::Partner(found) if found.code == *partner => {
                    partner_rule = Some(found.clone())
                }
                Rule::Campaign(found) if found.partner == *partner => campaigns.push(found.clone()),
                Rule::Exclusion(found) if found.partner == *partner => {
                    exclusions.push(found.clone());
                }
                Rule::Tiers(found) if found.partner == *partner => tiers = Some(found.clone()),
                _ => {}
            }
        }
        if let Some(drafted) = &self.campaigns {
            campaigns = drafted.clone();
            let mut ids = HashSet::new();
            for (index, campaign) in campaigns.iter_mut().enumerate() {
                let at = format!("draft.campaigns[{index}]");
                owned_by(&mut campaign.partner, partner, &at, &mut problems);
                if !ids.insert(campaign.id.clone()) {
                    problems
                        .push(ValueError::new(format!("{at}.id"), "appears twice in the draft"));
                }
                if let Err(errors) = Rule::Campaign(campaign.clone()).validate() {
                    problems.extend(within(at, errors));
                }
            }
        }
        if let Some(drafted) = &self.exclusions {
            exclusions = drafted.clone();
            let mut ids = HashSet::new();
            for (index, exclusion) in exclusions.iter_mut().enumerate() {
                let at = format!("draft.exclusions[{index}]");
                owned_by(&mut exclusion.partner, partner, &at, &mut problems);
                if !ids.insert(exclusion.id.clone()) {
                    problems
                        .push(ValueError::new(format!("{at}.id"), "appears twice in the draft"));
                }
                if let Err(errors) = Rule::Exclusion(exclusion.clone()).validate() {
                    problems.extend(within(at, errors));
                }
            }
        }
        if let Some(drafted) = &self.tiers {
            tiers = drafted.clone();
            if let Some(program) = &mut tiers {
                owned_by(&mut program.partner, partner, "draft.tiers", &mut problems);
                if let Err(errors) = Rule::Tiers(program.clone()).validate() {
                    problems.extend(within("draft.tiers".into(), errors));
                }
            }
        }
        if let Some(cap) = self.max_cashback_per_transaction {
            if cap.is_some_and(|cap| cap <= 0) {
                problems.push(ValueError::new(
                    "draft.max_cashback_per_transaction",
                    "must be greater than 0, or null for no cap",
                ));
            }
            match &mut partner_rule {
                Some(found) => found.max_cashback_per_transaction = cap,
                None => problems.push(ValueError::new(
                    "draft.max_cashback_per_transaction",
                    format!("partner {partner} has no record to cap"),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(DraftError { problems });
        }
        let mut builder = RuleSnapshot::builder();
        if let Some(found) = partner_rule {
            builder = builder.partner(found);
        }
        for campaign in campaigns {
            builder = builder.campaign(campaign);
        }
        for exclusion in exclusions {
            builder = builder.exclusion(exclusion);
        }
        if let Some(program) = tiers {
            builder = builder.tiers(program);
        }
        Ok(builder.build(revision))
    }
}

/// A drafted rule belongs to the partner of the backtest (the API fills in a partner left
/// out); another partner's is refused.
fn owned_by(
    rule_partner: &mut PartnerCode,
    partner: &PartnerCode,
    at: &str,
    problems: &mut Vec<ValueError>,
) {
    if rule_partner == partner {
        return;
    }
    problems.push(ValueError::new(
        format!("{at}.partner"),
        format!("is {rule_partner}; a draft of {partner} holds only {partner}'s rules"),
    ));
}
