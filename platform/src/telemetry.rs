//! Structured logs through `tracing`: pretty for a person at a terminal, JSON (one object a
//! line) for log collectors in production.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("CEZBEK_LOG {filter:?} is not a valid tracing filter: {source}")]
    Filter { filter: String, source: tracing_subscriber::filter::ParseError },
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber. Call once, at the start of the binary.
pub fn init_tracing(config: &LogConfig) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|source| TelemetryError::Filter { filter: config.filter.clone(), source })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = if config.json {
        builder.json().flatten_event(true).with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|_| TelemetryError::AlreadyInstalled)
}
