//! The notifier's Prometheus metrics.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use cezbek_platform::live_rules::RuleMetrics;

use crate::digest::SkipReason;

#[derive(Debug, Clone)]
pub struct Metrics {
    pub sent: IntCounter,
    /// Digests re-sent because an interrupted run left them pending.
    pub resent: IntCounter,
    pub skipped: IntCounterVec,
    /// Messages the relay refused or that could not be handed over.
    pub failures: IntCounterVec,
    /// Wall time of one partner-day run, by pass.
    pub run_seconds: HistogramVec,
    /// 1 while this instance holds the leadership.
    pub leader: IntGauge,
    pub rules: RuleMetrics,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let sent = IntCounter::new(
            "cezbek_notifier_digests_sent_total",
            "digests handed to the transport",
        )?;
        let resent = IntCounter::new(
            "cezbek_notifier_digests_resent_total",
            "digests sent again because an interrupted run left them pending",
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "cezbek_notifier_digests_skipped_total",
                "customers without a digest, by reason",
            ),
            &["reason"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "cezbek_notifier_digest_failures_total",
                "digests that could not be sent, by kind",
            ),
            &["kind"],
        )?;
        let run_seconds = HistogramVec::new(
            HistogramOpts::new("cezbek_notifier_run_seconds", "wall time of one partner-day run")
                .buckets(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]),
            &["pass"],
        )?;
        let leader = IntGauge::new("cezbek_notifier_leader", "1 while this instance leads")?;
        let revision = IntGauge::new(
            "cezbek_notifier_rules_revision",
            "etcd revision of the partners in use",
        )?;
        let rejected = IntCounter::new(
            "cezbek_notifier_rules_rejected_total",
            "rule values from etcd refused as invalid",
        )?;
        // Every reason from the start, so dashboards see zeros rather than gaps.
        for reason in SkipReason::ALL {
            skipped.with_label_values(&[reason.as_str()]);
        }
        for kind in ["permanent", "transient"] {
            failures.with_label_values(&[kind]);
        }
        registry.register(Box::new(sent.clone()))?;
        registry.register(Box::new(resent.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(run_seconds.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self {
            sent,
            resent,
            skipped,
            failures,
            run_seconds,
            leader,
            rules: RuleMetrics { revision, rejected },
        })
    }
}
