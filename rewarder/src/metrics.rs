//! The rewarder's metrics.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use cezbek_platform::live_rules;

use crate::process::ProcessMetrics;

#[derive(Clone)]
pub(crate) struct Metrics {
    pub process: ProcessMetrics,
    pub dead_lettered: IntCounterVec,
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub lag: IntGaugeVec,
    pub in_flight: IntGauge,
    pub rules: live_rules::RuleMetrics,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "cezbek_rewarder_transactions_total",
                "transactions by what happened to them",
            ),
            &["event"],
        )?;
        let dead_lettered = IntCounterVec::new(
            Opts::new("cezbek_rewarder_dead_lettered_total", "messages sent to the DLQ"),
            &["reason"],
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("cezbek_rewarder_batch_transactions", "transactions per batch")
                .buckets(vec![1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0]),
        )?;
        let batch_seconds = Histogram::with_opts(HistogramOpts::new(
            "cezbek_rewarder_batch_seconds",
            "time to decide, write, publish, commit",
        ))?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "cezbek_rewarder_consumer_lag_messages",
                "high watermark minus committed offset",
            ),
            &["partition"],
        )?;
        let in_flight = IntGauge::new(
            "cezbek_rewarder_in_flight_messages",
            "rewards and dead letters handed to the producer and not yet acknowledged",
        )?;
        let revision =
            IntGauge::new("cezbek_rewarder_rules_revision", "etcd revision of the rules in use")?;
        let rejected = prometheus::IntCounter::new(
            "cezbek_rewarder_rules_rejected_total",
            "invalid rule values rejected",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(dead_lettered.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self {
            process: ProcessMetrics { events },
            dead_lettered,
            batch_size,
            batch_seconds,
            lag,
            in_flight,
            rules: live_rules::RuleMetrics { revision, rejected },
        })
    }
}
