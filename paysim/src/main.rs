//! `cezbek-paysim`: the payment-provider simulators for the local stack, one per API, each on
//! its own port. Configured from the environment (defaults in brackets):
//!
//! - `CEZBEK_PAYSIM_XENDIT_LISTEN` [127.0.0.1:4610], `…_SECRET_KEY`, `…_CALLBACK_TOKEN`,
//!   `…_CALLBACK_URL`, `…_FEE` (the fixed fee per payout in whole rupiah, plus 11 % VAT [2500]);
//! - `CEZBEK_PAYSIM_IRIS_LISTEN` [127.0.0.1:4611], `…_CREATOR_KEY`, `…_APPROVER_KEY`,
//!   `…_MERCHANT_KEY`, `…_CALLBACK_URL`, `…_FEE`;
//! - `CEZBEK_PAYSIM_SNAP_LISTEN` [127.0.0.1:4612], `…_CLIENT_KEY`, `…_CLIENT_SECRET`,
//!   `…_PUBLIC_KEY` (the partner's RSA public key, a PKCS#1 PEM file), `…_FEE`; without a key
//!   file the SNAP simulator is not started.
//!
//! Runs until interrupted.

use cezbek_paysim::{Api, IrisKeys, SimConfig, Simulator, SnapKeys, XenditKeys};
use tokio_util::sync::CancellationToken;

fn variable(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn config(prefix: &str, default_listen: &str) -> Result<SimConfig, Box<dyn std::error::Error>> {
    let mut config = SimConfig::local();
    config.listen = variable(&format!("{prefix}_LISTEN"), default_listen).parse()?;
    config.callback_url = std::env::var(format!("{prefix}_CALLBACK_URL")).ok();
    config.fee.fixed = variable(&format!("{prefix}_FEE"), "2500").parse()?;
    Ok(config)
}

/// The DER body of a PEM file's first block.
fn pem_body(text: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use base64::Engine;
    let body: String = text.lines().filter(|line| !line.starts_with("-----")).collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(body.trim())?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = CancellationToken::new();
    let xendit = XenditKeys {
        secret_key: variable("CEZBEK_PAYSIM_XENDIT_SECRET_KEY", "xnd_development_cezbek"),
        callback_token: variable("CEZBEK_PAYSIM_XENDIT_CALLBACK_TOKEN", "cezbek-callback-token"),
    };
    let config_xendit = config("CEZBEK_PAYSIM_XENDIT", "127.0.0.1:4610")?;
    let simulator = Simulator::start(config_xendit, Api::Xendit(xendit), shutdown.clone()).await?;
    eprintln!("Xendit-style payouts simulator on {}", simulator.url);

    let iris = IrisKeys {
        creator_key: variable("CEZBEK_PAYSIM_IRIS_CREATOR_KEY", "IRIS-creator-cezbek"),
        approver_key: variable("CEZBEK_PAYSIM_IRIS_APPROVER_KEY", "IRIS-approver-cezbek"),
        merchant_key: variable("CEZBEK_PAYSIM_IRIS_MERCHANT_KEY", "IRIS-merchant-cezbek"),
    };
    let config_iris = config("CEZBEK_PAYSIM_IRIS", "127.0.0.1:4611")?;
    let simulator = Simulator::start(config_iris, Api::Iris(iris), shutdown.clone()).await?;
    eprintln!("Iris-style payouts simulator on {}", simulator.url);

    if let Ok(path) = std::env::var("CEZBEK_PAYSIM_SNAP_PUBLIC_KEY") {
        let snap = SnapKeys {
            client_key: variable("CEZBEK_PAYSIM_SNAP_CLIENT_KEY", "cezbek-snap-client"),
            client_secret: variable("CEZBEK_PAYSIM_SNAP_CLIENT_SECRET", "cezbek-snap-secret"),
            public_key_der: pem_body(&std::fs::read_to_string(path)?)?,
        };
        let config_snap = config("CEZBEK_PAYSIM_SNAP", "127.0.0.1:4612")?;
        let simulator = Simulator::start(config_snap, Api::Snap(snap), shutdown.clone()).await?;
        eprintln!("SNAP-style wallet top-up simulator on {}", simulator.url);
    }
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    Ok(())
}
