//! Which provider pays a payout: the cheapest eligible one. Eligible: enabled, serves the
//! wallet, the amount within its limits for that wallet, open now, healthy, its float covers
//! the amount and the fee, and not already tried for this payout with a definitive failure. The choice is recorded with every other
//! provider's fee or the reason it was passed over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use cezbek_schemas::Currency;

use crate::providers::Provider;

/// A provider passed over, and why: its fee when it was eligible but dearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassedOver {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index into the providers.
    pub provider: usize,
    pub fee: i64,
    pub passed_over: Vec<PassedOver>,
}

/// Why no provider can pay now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRoute {
    /// Some provider would serve it later (closed now, or unhealthy): wait rather than fail.
    pub later: bool,
    pub passed_over: Vec<PassedOver>,
}

/// What a payout asks of a provider.
#[derive(Debug, Clone, Copy)]
pub struct Need<'a> {
    pub wallet: &'a str,
    /// What the wallet is to receive, minor units (the provider's limits apply to it).
    pub amount: i64,
    pub currency: Currency,
    /// The currency's whole unit in minor units.
    pub unit: i64,
    pub now: DateTime<Utc>,
    /// Providers that already failed this payout for certain.
    pub tried: &'a [String],
}

pub fn route(
    providers: &[Provider],
    health: &Health,
    floats: &Floats,
    need: Need<'_>,
) -> Result<Route, NoRoute> {
    let mut passed_over = Vec::new();
    let mut best: Option<(usize, i64)> = None;
    // No provider at all (none configured yet, or the rules not read): wait, never fail.
    let mut later = providers.is_empty();
    for (index, provider) in providers.iter().enumerate() {
        let name = &provider.spec.name;
        let mut pass = |reason: String| {
            passed_over.push(PassedOver { provider: name.clone(), fee: None, reason: Some(reason) })
        };
        if !provider.spec.enabled {
            pass("disabled".into());
            continue;
        }
        let Some(terms) = provider.spec.channels.get(need.wallet) else {
            pass(format!("does not serve {}", need.wallet));
            continue;
        };
        if need.tried.contains(name) {
            pass("failed this payout already".into());
            continue;
        }
        if need.amount < terms.min_amount || need.amount > terms.max_amount {
            pass(format!(
                "{} is outside its limits {}–{}",
                need.amount, terms.min_amount, terms.max_amount
            ));
            continue;
        }
        if let Some(hours) = &provider.spec.hours
            && !hours.is_open(need.now)
        {
            later = true;
            pass("closed now".into());
            continue;
        }
        if !health.is_healthy(name) {
            later = true;
            pass("unhealthy".into());
            continue;
        }
        let fee = terms.fee.fee(need.amount, need.unit);
        if let Some(float) = floats.get(name, need.currency)
            && float < need.amount.saturating_add(fee)
        {
            // A top-up may come: wait rather than fail.
            later = true;
            pass(format!("its float {float} does not cover {} and the fee {fee}", need.amount));
            continue;
        }
        match best {
            Some((_, best_fee)) if best_fee <= fee => {
                passed_over.push(PassedOver {
                    provider: name.clone(),
                    fee: Some(fee),
                    reason: None,
                });
            }
            Some((current, current_fee)) => {
                passed_over.push(PassedOver {
                    provider: providers[current].spec.name.clone(),
                    fee: Some(current_fee),
                    reason: None,
                });
                best = Some((index, fee));
            }
            None => best = Some((index, fee)),
        }
    }
    match best {
        Some((provider, fee)) => Ok(Route { provider, fee, passed_over }),
        None => Err(NoRoute { later, passed_over }),
    }
}

/// What each provider last said its float was, less what was sent through it since: a
/// provider that cannot cover a payout is not chosen for it. Unknown until first read (the
/// provider refuses for want of funds itself, a definitive failure).
#[derive(Debug, Default)]
pub struct Floats {
    known: Mutex<HashMap<(String, Currency), i64>>,
}

impl Floats {
    pub fn get(&self, provider: &str, currency: Currency) -> Option<i64> {
        let known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        known.get(&(provider.to_owned(), currency)).copied()
    }

    /// The provider's own answer replaces whatever was counted down.
    pub fn set(&self, provider: &str, currency: Currency, float: i64) {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        known.insert((provider.to_owned(), currency), float);
    }

    /// An attempt of `amount` (fee included) was recorded at the provider.
    pub fn spend(&self, provider: &str, currency: Currency, amount: i64) {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(float) = known.get_mut(&(provider.to_owned(), currency)) {
            *float -= amount;
        }
    }
}

/// Providers whose calls keep ending unknown are left alone for a while: after
/// [`Health::THRESHOLD`] unknown outcomes in a row, for [`Health::COOL_DOWN`]. A provider
/// that answers is healthy again at once.
#[derive(Debug, Default)]
pub struct Health {
    unknown_in_a_row: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Health {
    pub const THRESHOLD: u32 = 5;
    pub const COOL_DOWN: Duration = Duration::from_secs(30);

    pub fn is_healthy(&self, provider: &str) -> bool {
        let map = self.unknown_in_a_row.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(provider) {
            Some((count, last)) => *count < Self::THRESHOLD || last.elapsed() > Self::COOL_DOWN,
            None => true,
        }
    }

    pub fn answered(&self, provider: &str) {
        let mut map =
            self.unknown_in_a_row.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(provider);
    }

    pub fn unknown(&self, provider: &str) {
        let mut map =
            self.unknown_in_a_row.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = map.entry(provider.to_owned()).or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::NaiveTime;

    use super::*;
    use crate::providers::{AdapterKind, ChannelTerms, FeeSchedule, Hours, ProviderSpec};

    fn provider(name: &str, fixed: i64, wallets: &[&str]) -> Provider {
        let terms = ChannelTerms {
            fee: FeeSchedule { fixed, basis_points: 0, vat_basis_points: 0 },
            min_amount: 1_000_000,
            max_amount: 200_000_000,
        };
        let spec = ProviderSpec {
            name: name.into(),
            adapter: AdapterKind::Xendit,
            base_url: "http://127.0.0.1:1".into(),
            credentials: BTreeMap::new(),
            channels: wallets
                .iter()
                .map(|wallet| ((*wallet).to_owned(), terms))
                .collect::<BTreeMap<_, _>>(),
            hours: None,
            enabled: true,
            timeout_ms: 1_000,
        };
        let credentials = [("secret_key", "x"), ("callback_token", "y")]
            .map(|(role, value)| (role.to_owned(), value.to_owned()));
        Provider::new(spec, credentials.into_iter().collect()).unwrap()
    }

    fn idr() -> Currency {
        Currency::parse("IDR").unwrap()
    }

    fn need<'a>(wallet: &'a str, amount: i64, tried: &'a [String]) -> Need<'a> {
        let now = "2026-12-07T03:00:00Z".parse().unwrap();
        Need { wallet, amount, currency: idr(), unit: 100, now, tried }
    }

    #[test]
    fn the_cheapest_eligible_provider_is_chosen_and_the_others_recorded() {
        let providers = [
            provider("dear", 300_000, &["OVO", "DANA"]),
            provider("cheap", 150_000, &["OVO"]),
            provider("middle", 200_000, &["OVO", "DANA"]),
        ];
        let health = Health::default();
        let route =
            route(&providers, &health, &Floats::default(), need("OVO", 5_000_000, &[])).unwrap();
        assert_eq!((route.provider, route.fee), (1, 150_000));
        let fees: Vec<(String, Option<i64>)> =
            route.passed_over.iter().map(|p| (p.provider.clone(), p.fee)).collect();
        assert_eq!(fees, [("dear".into(), Some(300_000)), ("middle".into(), Some(200_000))]);

        let on_dana =
            super::route(&providers, &health, &Floats::default(), need("DANA", 5_000_000, &[]))
                .unwrap();
        assert_eq!(on_dana.provider, 2, "cheap does not serve DANA");

        let tried = ["cheap".to_owned()];
        let fallback =
            super::route(&providers, &health, &Floats::default(), need("OVO", 5_000_000, &tried))
                .unwrap();
        assert_eq!(fallback.provider, 2, "the next cheapest after a definitive failure");
    }

    #[test]
    fn limits_hours_health_and_missing_channels_pass_a_provider_over() {
        let mut closed = provider("closed", 100_000, &["OVO"]);
        closed.spec.hours = Some(Hours {
            open: NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
            close: NaiveTime::from_hms_opt(21, 0, 0).unwrap(),
            time_zone: "Asia/Jakarta".into(),
        });
        let flaky = provider("flaky", 120_000, &["OVO"]);
        let providers = [closed, flaky];
        let health = Health::default();
        for _ in 0..Health::THRESHOLD {
            health.unknown("flaky");
        }
        let refused = route(&providers, &health, &Floats::default(), need("OVO", 5_000_000, &[]))
            .unwrap_err();
        assert!(refused.later, "closed and unhealthy providers are waited for");
        health.answered("flaky");
        assert_eq!(
            route(&providers, &health, &Floats::default(), need("OVO", 5_000_000, &[]))
                .unwrap()
                .provider,
            1
        );

        let too_big = route(&providers, &health, &Floats::default(), need("OVO", 300_000_000, &[]))
            .unwrap_err();
        assert!(!too_big.later);
        let nobody = route(&providers, &health, &Floats::default(), need("GOPAY", 5_000_000, &[]))
            .unwrap_err();
        assert!(!nobody.later);
        assert!(nobody.passed_over[0].reason.as_deref().unwrap().contains("does not serve"));
    }

    #[test]
    fn a_float_that_cannot_cover_amount_and_fee_passes_over_until_topped_up() {
        let providers = [provider("cheap", 100_000, &["OVO"]), provider("dear", 200_000, &["OVO"])];
        let health = Health::default();
        let floats = Floats::default();
        // Rp 50,000 + the Rp 1,000 fee is 5,100,000 minor units; Rp 1 short.
        floats.set("cheap", idr(), 5_099_999);
        let chosen = route(&providers, &health, &floats, need("OVO", 5_000_000, &[])).unwrap();
        assert_eq!(chosen.provider, 1, "the dearer one, whose float is unknown");
        assert!(chosen.passed_over[0].reason.as_deref().unwrap().contains("float"));
        floats.set("dear", idr(), 1_000);
        let none = route(&providers, &health, &floats, need("OVO", 5_000_000, &[])).unwrap_err();
        assert!(none.later, "a top-up may come: wait, do not fail");
        floats.set("cheap", idr(), 5_100_000);
        let chosen = route(&providers, &health, &floats, need("OVO", 5_000_000, &[])).unwrap();
        assert_eq!(chosen.provider, 0);
        floats.spend("cheap", idr(), 1);
        assert!(route(&providers, &health, &floats, need("OVO", 5_000_000, &[])).is_err());
    }
}
