//! The ingestor's Prometheus metrics.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use cezbek_platform::live_rules::RuleMetrics;

#[derive(Debug, Clone)]
pub struct Metrics {
    /// API requests by outcome: accepted, partial, rejected, unauthorized, too_large, invalid,
    /// unavailable.
    pub requests: IntCounterVec,
    pub auth_failures: IntCounterVec,
    /// Items (API) and rows (CSV) read, by channel; and by channel and outcome (accepted,
    /// rejected). Apart, so that summing the outcomes never counts an item twice.
    pub items_read: IntCounterVec,
    pub items: IntCounterVec,
    /// Rejections by channel and the field at fault (`line` for a row that cannot be split).
    pub rejections: IntCounterVec,
    pub produce_seconds: Histogram,
    pub in_flight: IntGauge,
    /// Files finished, by state (done, failed).
    pub files: IntCounterVec,
    /// Files being ingested now.
    pub files_active: IntGaugeVec,
    /// Bytes of CSV files read, and left to read in the files being ingested now: their ratio
    /// to `rate(…bytes_read_total)` is the time left.
    pub csv_bytes_read: IntCounter,
    pub csv_bytes_remaining: IntGauge,
    pub rules: RuleMetrics,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("cezbek_ingestor_requests_total", "publish API requests by outcome"),
            &["outcome"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new("cezbek_ingestor_auth_failures_total", "rejected signatures by reason"),
            &["reason"],
        )?;
        let items_read = IntCounterVec::new(
            Opts::new("cezbek_ingestor_items_read_total", "transactions read"),
            &["channel"],
        )?;
        let items = IntCounterVec::new(
            Opts::new("cezbek_ingestor_items_total", "transactions accepted and rejected"),
            &["channel", "outcome"],
        )?;
        let rejections = IntCounterVec::new(
            Opts::new("cezbek_ingestor_rejections_total", "rejected items by field at fault"),
            &["channel", "field"],
        )?;
        let produce_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "cezbek_ingestor_produce_seconds",
                "time from send to broker acknowledgement",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
        )?;
        let in_flight = IntGauge::new(
            "cezbek_ingestor_in_flight_messages",
            "messages sent but not yet acknowledged",
        )?;
        let files = IntCounterVec::new(
            Opts::new("cezbek_ingestor_files_total", "CSV files finished, by state"),
            &["state"],
        )?;
        let files_active = IntGaugeVec::new(
            Opts::new("cezbek_ingestor_files_active", "CSV files being ingested"),
            &["partner"],
        )?;
        let csv_bytes_read =
            IntCounter::new("cezbek_ingestor_csv_read_bytes_total", "bytes of CSV files read")?;
        let csv_bytes_remaining = IntGauge::new(
            "cezbek_ingestor_csv_remaining_bytes",
            "bytes left to read in the CSV files being ingested",
        )?;
        let revision = IntGauge::new(
            "cezbek_ingestor_rules_revision",
            "etcd revision of the partners in use",
        )?;
        let rejected = IntCounter::new(
            "cezbek_ingestor_rules_rejected_total",
            "invalid partner values rejected",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(items_read.clone()))?;
        registry.register(Box::new(items.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(produce_seconds.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(files.clone()))?;
        registry.register(Box::new(files_active.clone()))?;
        registry.register(Box::new(csv_bytes_read.clone()))?;
        registry.register(Box::new(csv_bytes_remaining.clone()))?;
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self {
            requests,
            auth_failures,
            items_read,
            items,
            rejections,
            produce_seconds,
            in_flight,
            files,
            files_active,
            csv_bytes_read,
            csv_bytes_remaining,
            rules: RuleMetrics { revision, rejected },
        })
    }
}
