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

/// An etcd client that connects on first use and reconnects after a failure, so a service
/// starts and keeps serving while etcd is down, and picks etcd up again when it returns.
#[derive(Clone)]
pub struct EtcdHandle {
    config: EtcdConfig,
    client: std::sync::Arc<tokio::sync::Mutex<Option<Client>>>,
}

impl std::fmt::Debug for EtcdHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHandle")
            .field("endpoints", &self.config.endpoints)
            .finish_non_exhaustive()
    }
}

impl EtcdHandle {
    pub fn new(config: EtcdConfig) -> Self {
        Self { config, client: std::sync::Arc::default() }
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// A connected client (cheap to clone: it shares one channel).
    pub async fn client(&self) -> Result<Client, etcd_client::Error> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = connect(&self.config).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Drops the connection after an error, so the next call connects afresh.
    pub async fn reset(&self) {
        *self.client.lock().await = None;
    }
}
