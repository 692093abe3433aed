//! The informer's Prometheus metrics.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use cezbek_platform::live_rules::RuleMetrics;

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Latency by route pattern, method and status.
    pub request_seconds: HistogramVec,
    pub auth_failures: IntCounterVec,
    pub unsubscribes: IntCounter,
    pub rules: RuleMetrics,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        // Fine buckets at the bottom: the goal is a p99 of a few milliseconds.
        let buckets = vec![
            0.000_5, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5,
        ];
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("cezbek_informer_request_seconds", "API latency by route")
                .buckets(buckets),
            &["route", "method", "status"],
        )?;
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
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(unsubscribes.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self {
            request_seconds,
            auth_failures,
            unsubscribes,
            rules: RuleMetrics { revision, rejected },
        })
    }
}
