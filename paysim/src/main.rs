//! `cezbek-paysim`: the payment-provider simulators for the local stack. Configured from the
//! environment (`CEZBEK_PAYSIM_XENDIT_LISTEN`, `…_SECRET_KEY`, `…_CALLBACK_URL`,
//! `…_CALLBACK_TOKEN`); runs until interrupted.

use std::net::SocketAddr;

use cezbek_paysim::{XenditConfig, XenditSim};
use tokio_util::sync::CancellationToken;

fn variable(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = variable("CEZBEK_PAYSIM_XENDIT_LISTEN", "127.0.0.1:4610").parse()?;
    let mut config = XenditConfig::local(
        &variable("CEZBEK_PAYSIM_XENDIT_SECRET_KEY", "xnd_development_cezbek"),
        &variable("CEZBEK_PAYSIM_XENDIT_CALLBACK_TOKEN", "cezbek-callback-token"),
    );
    config.listen = listen;
    config.callback_url = std::env::var("CEZBEK_PAYSIM_XENDIT_CALLBACK_URL").ok();
    let shutdown = CancellationToken::new();
    let simulator = XenditSim::start(config, shutdown.clone()).await?;
    eprintln!("Xendit-style payouts simulator on {}", simulator.url);
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    Ok(())
}
