//! Shared plumbing for the Cezbek services: typed configuration from `CEZBEK_…` variables,
//! tracing and Prometheus metrics, the ops HTTP endpoints, graceful shutdown, and the
//! constructors of the Kafka, etcd, S3 and PostgreSQL clients with the settings the design
//! requires. Services get their clients here so those settings live in one place.

pub mod auth;
pub mod aws;
pub mod config;
pub mod csv_report;
pub mod etcd;
pub mod http;
pub mod kafka;
pub mod live_rules;
pub mod openapi;
pub mod partner_auth;
pub mod postgres;
pub mod producer;
pub mod retry;
pub mod s3;
pub mod shutdown;
pub mod sqs;
pub mod telemetry;
pub mod unsubscribe;

pub use config::{ConfigError, Env};
pub use http::Readiness;
pub use shutdown::{CancellationToken, shutdown_on_signals};
