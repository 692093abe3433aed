//! Simulators of the payment providers Cezbek pays out through. The real providers cannot be
//! reached from development machines or CI, so each adapter is tested against a simulator that
//! speaks that provider's documented API ([`xendit`], [`iris`], [`snap`]), keeps its own record
//! of the money it moved (the truth tests compare Cezbek's journal with) and does wrong what a
//! test scripts it to do ([`faults`]). What they share — the book, the float, the timeline of a
//! transfer — is [`core`].
//!
//! Tests start them in-process ([`Simulator::start`]); `dev/stack` runs the `cezbek-paysim`
//! binary, one simulator per API, for the demo and `cezbek dev`.

pub mod core;
pub mod faults;
pub mod iris;
pub mod snap;
pub mod xendit;

use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use crate::core::{Executed, FeeRule, Phase, SimConfig, Transfer};
pub use faults::{Ending, Fault, Faults, RandomFaults};
pub use iris::IrisKeys;
pub use snap::SnapKeys;
pub use xendit::XenditKeys;

/// Which API a simulator speaks, with the credentials it expects.
#[derive(Debug, Clone)]
pub enum Api {
    Xendit(XenditKeys),
    Iris(IrisKeys),
    Snap(SnapKeys),
}

/// A running simulator.
#[derive(Debug, Clone)]
pub struct Simulator {
    pub url: String,
    core: Arc<core::Core>,
}

impl Simulator {
    /// Binds and serves until `shutdown`.
    pub async fn start(
        config: SimConfig,
        api: Api,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let core = core::Core::new(config, shutdown.clone());
        let routes = match api {
            Api::Xendit(keys) => xendit::router(core.clone(), keys),
            Api::Iris(keys) => iris::router(core.clone(), keys),
            Api::Snap(keys) => snap::router(core.clone(), keys),
        };
        let app = routes.merge(core::control_routes(core.clone()));
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "a payment-provider simulator stopped");
            }
        });
        Ok(Self { url, core })
    }

    pub fn set_faults(&self, faults: Faults) {
        self.core.set_faults(faults);
    }

    /// Every transfer that moved money, once each.
    pub fn executed(&self) -> Vec<Executed> {
        self.core.executed()
    }

    /// Every transfer asked for, in order.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.core.transfers(|_| true)
    }

    /// The float, whole currency units.
    pub fn balance(&self) -> i64 {
        self.core.balance()
    }

    pub fn set_balance(&self, balance: i64) {
        self.core.set_balance(balance);
    }

    /// Shows `value` in place of the fields it names in the report line of the transfer the
    /// caller referenced `reference` (a test's injected mismatch).
    pub fn tamper_report(&self, reference: &str, value: Value) {
        self.core.tamper(reference, value);
    }
}
