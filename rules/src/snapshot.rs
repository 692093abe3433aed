//! An immutable, indexed view of every partner's rules at one etcd revision. Indexes are built
//! once here, so `evaluate()` only looks things up: campaigns by partner and MCC, exclusions by
//! MCC, merchant and msisdn.

use std::collections::{BTreeMap, HashMap};

use chrono_tz::Tz;

use cezbek_schemas::{Mcc, Msisdn, PartnerCode};

use crate::model::{
    Campaign, CampaignStatus, Exclusion, ExclusionTarget, Partner, TierProgram, normalize_merchant,
};
use crate::payment_provider::PaymentProvider;

/// A campaign with its merchant list normalised once.
#[derive(Debug, Clone)]
pub(crate) struct IndexedCampaign {
    pub campaign: Campaign,
    pub merchants: Vec<String>,
}

/// One partner's rules, indexed.
#[derive(Debug, Clone, Default)]
pub struct PartnerRules {
    pub(crate) partner: Option<Partner>,
    pub(crate) time_zone: Option<Tz>,
    pub(crate) campaigns: Vec<IndexedCampaign>,
    /// Campaigns that list this MCC.
    pub(crate) campaigns_by_mcc: HashMap<Mcc, Vec<usize>>,
    /// Campaigns with no MCC condition.
    pub(crate) campaigns_any_mcc: Vec<usize>,
    pub(crate) exclusions: Vec<Exclusion>,
    pub(crate) exclusions_by_mcc: HashMap<Mcc, Vec<usize>>,
    pub(crate) exclusions_by_merchant: HashMap<String, Vec<usize>>,
    pub(crate) exclusions_by_msisdn: HashMap<Msisdn, Vec<usize>>,
    pub(crate) tiers: Option<TierProgram>,
}

impl PartnerRules {
    pub fn partner(&self) -> Option<&Partner> {
        self.partner.as_ref()
    }

    /// The partner's time zone; UTC until a partner record says otherwise.
    pub fn time_zone(&self) -> Tz {
        self.time_zone.unwrap_or(Tz::UTC)
    }

    pub fn tiers(&self) -> Option<&TierProgram> {
        self.tiers.as_ref()
    }

    /// A campaign by id (whatever its status), e.g. to name it in a digest.
    pub fn campaign(&self, id: &str) -> Option<&Campaign> {
        self.campaigns.iter().map(|indexed| &indexed.campaign).find(|campaign| campaign.id == id)
    }

    /// The active campaigns with a money budget (total or daily).
    pub fn budgeted_campaigns(&self) -> impl Iterator<Item = &Campaign> {
        self.campaigns
            .iter()
            .map(|indexed| &indexed.campaign)
            .filter(|campaign| campaign.budget.is_some() || campaign.budget_per_day.is_some())
    }

    pub fn campaign_count(&self) -> usize {
        self.campaigns.len()
    }
}

/// Every partner's rules at one revision. Cheap to share (`Arc`) and never changed: a new
/// revision builds a new snapshot, which the rewarder swaps in atomically.
#[derive(Debug, Clone, Default)]
pub struct RuleSnapshot {
    revision: i64,
    partners: HashMap<PartnerCode, PartnerRules>,
    /// The payment providers, by name (in name order: routing ties never depend on arrival).
    providers: BTreeMap<String, PaymentProvider>,
}

impl RuleSnapshot {
    pub fn builder() -> SnapshotBuilder {
        SnapshotBuilder::default()
    }

    /// The etcd revision the rules were read at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn partner_rules(&self, partner: &PartnerCode) -> Option<&PartnerRules> {
        self.partners.get(partner)
    }

    pub fn partners(&self) -> impl Iterator<Item = &PartnerRules> {
        self.partners.values()
    }

    /// The payment providers, in name order.
    pub fn providers(&self) -> impl Iterator<Item = &PaymentProvider> {
        self.providers.values()
    }

    /// How many days of a customer's purchases a decision can read: the partner's tier window,
    /// or a month for a partner without a tier program (what a decider keeps of them).
    pub fn window_days(&self, partner: &PartnerCode) -> u32 {
        self.partner_rules(partner)
            .and_then(PartnerRules::tiers)
            .map_or(DEFAULT_WINDOW_DAYS, |program| program.window_days)
    }
}

/// How long purchases are kept for partners without a tier program.
const DEFAULT_WINDOW_DAYS: u32 = 31;

/// Collects rules (already validated) and indexes them.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    partners: Vec<Partner>,
    campaigns: Vec<Campaign>,
    exclusions: Vec<Exclusion>,
    tiers: Vec<TierProgram>,
    providers: Vec<PaymentProvider>,
}

impl SnapshotBuilder {
    pub fn provider(mut self, provider: PaymentProvider) -> Self {
        self.providers.push(provider);
        self
    }

    pub fn partner(mut self, partner: Partner) -> Self {
        self.partners.push(partner);
        self
    }

    pub fn campaign(mut self, campaign: Campaign) -> Self {
        self.campaigns.push(campaign);
        self
    }

    pub fn exclusion(mut self, exclusion: Exclusion) -> Self {
        self.exclusions.push(exclusion);
        self
    }

    pub fn tiers(mut self, program: TierProgram) -> Self {
        self.tiers.push(program);
        self
    }

    pub fn build(self, revision: i64) -> RuleSnapshot {
        let mut partners: HashMap<PartnerCode, PartnerRules> = HashMap::new();
        for partner in self.partners {
            let rules = partners.entry(partner.code.clone()).or_default();
            rules.time_zone = partner.time_zone.parse().ok();
            rules.partner = Some(partner);
        }
        // Sorted by id so that ties and explanations never depend on arrival order.
        let mut campaigns = self.campaigns;
        campaigns.sort_by(|a, b| a.id.cmp(&b.id));
        for campaign in campaigns.into_iter().filter(|c| c.status == CampaignStatus::Active) {
            let rules = partners.entry(campaign.partner.clone()).or_default();
            let index = rules.campaigns.len();
            if campaign.conditions.mccs.is_empty() {
                rules.campaigns_any_mcc.push(index);
            }
            for mcc in &campaign.conditions.mccs {
                let list = rules.campaigns_by_mcc.entry(*mcc).or_default();
                if list.last() != Some(&index) {
                    list.push(index);
                }
            }
            let merchants =
                campaign.conditions.merchants.iter().map(|m| normalize_merchant(m)).collect();
            rules.campaigns.push(IndexedCampaign { campaign, merchants });
        }
        let mut exclusions = self.exclusions;
        exclusions.sort_by(|a, b| a.id.cmp(&b.id));
        for exclusion in exclusions {
            let rules = partners.entry(exclusion.partner.clone()).or_default();
            let index = rules.exclusions.len();
            match &exclusion.target {
                ExclusionTarget::Mcc(mcc) => {
                    rules.exclusions_by_mcc.entry(*mcc).or_default().push(index)
                }
                ExclusionTarget::Merchant(merchant) => {
                    rules
                        .exclusions_by_merchant
                        .entry(normalize_merchant(merchant))
                        .or_default()
                        .push(index);
                }
                ExclusionTarget::Msisdn(msisdn) => {
                    rules.exclusions_by_msisdn.entry(msisdn.clone()).or_default().push(index);
                }
            }
            rules.exclusions.push(exclusion);
        }
        for program in self.tiers {
            let partner = program.partner.clone();
            partners.entry(partner).or_default().tiers = Some(program);
        }
        let providers =
            self.providers.into_iter().map(|provider| (provider.name.clone(), provider)).collect();
        RuleSnapshot { revision, partners, providers }
    }
}
