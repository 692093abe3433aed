//! The informer's Prometheus metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use cezbek_platform::live_rules::RuleMetrics;

#[derive(Debug, Clone)]
pub struct Metrics {
    pub auth_failures: IntCounterVec,
    pub unsubscribes: IntCounter,
    pub rules: RuleMetrics,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let auth_failures = IntCounterVec::new(
            Opts::new("cezbek_informer_auth_failures_total", "refused callers by reason"),
            &["reason"],
        )?;
        let unsubscribes =
            IntCounter::new("cezbek_informer_unsubscribes_total", "digest opt-outs recorded")?;
        let revision = IntGauge::new(
            "cezbek_informer_rules_revision",
            "etcd revision of the partners in use",
        )?;
        let rejected = IntCounter::new(
            "cezbek_informer_rules_rejected_total",
            "rule values from etcd refused as invalid",
        )?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(unsubscribes.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self { auth_failures, unsubscribes, rules: RuleMetrics { revision, rejected } })
    }
}
