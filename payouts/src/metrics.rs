//! The payouts service's metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use cezbek_platform::live_rules::RuleMetrics;

use crate::payout::Payout;

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Payout state changes, by the state reached.
    pub changes: IntCounterVec,
    /// Provider calls by provider and outcome (answered, refused, unknown).
    pub calls: IntCounterVec,
    /// Payouts unfinished longer than the stuck threshold: alert on > 0.
    pub stuck: IntGauge,
    /// Due customers skipped because no wallet is known (no transaction named one and the
    /// partner has no default).
    pub no_wallet: IntCounter,
    /// Callbacks by provider and result (accepted, refused).
    pub callbacks: IntCounterVec,
    /// Reward and transaction messages read, by what was done with them.
    pub intake: IntCounterVec,
    /// Mismatches found by the last reconciliation of each provider: alert on > 0.
    pub mismatches: IntGaugeVec,
    /// Dead letters handed to the producer and not yet acknowledged.
    pub in_flight: IntGauge,
    /// Providers configured but unusable (credentials missing, timeout too long): alert on > 0.
    pub providers_refused: IntGauge,
    /// Each provider's float as it last answered, minor units, by currency: alert when low.
    pub floats: IntGaugeVec,
    pub rules: RuleMetrics,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let changes = IntCounterVec::new(
            Opts::new("cezbek_payouts_state_changes_total", "payout state changes by new state"),
            &["state"],
        )?;
        let calls = IntCounterVec::new(
            Opts::new("cezbek_payouts_provider_calls_total", "provider calls by outcome"),
            &["provider", "outcome"],
        )?;
        let stuck = IntGauge::new(
            "cezbek_payouts_stuck",
            "payouts reserved or submitted longer ago than CEZBEK_PAYOUTS_STUCK_AFTER",
        )?;
        let no_wallet = IntCounter::new(
            "cezbek_payouts_without_wallet_total",
            "due payouts skipped for want of a wallet",
        )?;
        let callbacks = IntCounterVec::new(
            Opts::new("cezbek_payouts_callbacks_total", "provider callbacks by result"),
            &["provider", "result"],
        )?;
        let intake = IntCounterVec::new(
            Opts::new("cezbek_payouts_intake_total", "messages read from the topics, by outcome"),
            &["outcome"],
        )?;
        let mismatches = IntGaugeVec::new(
            Opts::new(
                "cezbek_payouts_reconciliation_mismatches",
                "lines not matched by the last reconciliation, by provider",
            ),
            &["provider"],
        )?;
        let in_flight = IntGauge::new(
            "cezbek_payouts_in_flight_messages",
            "dead letters handed to the producer and not yet acknowledged",
        )?;
        let providers_refused = IntGauge::new(
            "cezbek_payouts_providers_refused",
            "configured payment providers that cannot be used (see the log for why)",
        )?;
        let floats = IntGaugeVec::new(
            Opts::new(
                "cezbek_payouts_provider_float",
                "each provider's balance to pay from as it last answered, minor units",
            ),
            &["provider", "currency"],
        )?;
        let revision =
            IntGauge::new("cezbek_payouts_rules_revision", "etcd revision of the rules in use")?;
        let rejected =
            IntCounter::new("cezbek_payouts_rules_rejected_total", "invalid rule values rejected")?;
        registry.register(Box::new(changes.clone()))?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(stuck.clone()))?;
        registry.register(Box::new(no_wallet.clone()))?;
        registry.register(Box::new(callbacks.clone()))?;
        registry.register(Box::new(intake.clone()))?;
        registry.register(Box::new(mismatches.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(floats.clone()))?;
        registry.register(Box::new(providers_refused.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self {
            changes,
            calls,
            stuck,
            no_wallet,
            callbacks,
            intake,
            mismatches,
            in_flight,
            providers_refused,
            floats,
            rules: RuleMetrics { revision, rejected },
        })
    }

    pub fn changed(&self, payout: &Payout) {
        self.changes.with_label_values(&[payout.state.as_str()]).inc();
    }

    pub fn call(&self, provider: &str, outcome: &str) {
        self.calls.with_label_values(&[provider, outcome]).inc();
    }
}
