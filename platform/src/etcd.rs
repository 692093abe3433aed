//! The etcd client for the live rules.

use etcd_client::{Client, ConnectOptions};

use tokio_util::sync::CancellationToken;

use crate::config::EtcdConfig;
use crate::http::{Readiness, spawn_readiness_check};

pub async fn connect(config: &EtcdConfig) -> Result<Client, etcd_client::Error> {
    let options = ConnectOptions::new()
        .with_connect_timeout(config.connect_timeout)
        .with_keep_alive(std::time::Duration::from_secs(10), std::time::Duration::from_secs(5));
    Client::connect(&config.endpoints, Some(options)).await
}

/// Keeps the `etcd` readiness component current.
pub fn watch_readiness(readiness: &Readiness, config: &EtcdConfig, shutdown: &CancellationToken) {
    let config = config.clone();
    spawn_readiness_check(readiness.clone(), "etcd", shutdown.clone(), move || {
        let config = config.clone();
        async move { check(&config).await }
    });
}

/// Readiness: a fresh connection gets the cluster status. A fresh one, because the check must
/// also pass after etcd comes back, whatever state a long-lived client is in.
pub async fn check(config: &EtcdConfig) -> Result<(), String> {
    let mut client = connect(config).await.map_err(|error| error.to_string())?;
    client.status().await.map(drop).map_err(|error| error.to_string())
}
