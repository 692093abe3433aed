//! The conformance suite against ScyllaDB. Scylla cannot run on these machines: the checks
//! run when `CEZBEK_SCYLLA_NODES` names a cluster (e.g. `docker compose up scylla`, then
//! `CEZBEK_SCYLLA_NODES=127.0.0.1:9042 cargo test -p cezbek-ledger --test scylla`), and say
//! that they skipped otherwise. These are the only tests allowed to skip.

// In a test a failed unwrap is a failed test, with its location: the clearest report.
#![allow(clippy::unwrap_used)]

mod conformance;

use cezbek_ledger::{ScyllaConfig, ScyllaLedger};

/// A ledger in a keyspace of this test's own, or `None` without a cluster.
async fn ledger(name: &str) -> Option<ScyllaLedger> {
    let Ok(nodes) = std::env::var("CEZBEK_SCYLLA_NODES") else {
        eprintln!("skipped {name}: CEZBEK_SCYLLA_NODES is not set (no Scylla runs here)");
        return None;
    };
    let suffix: String = std::process::id().to_string();
    let config = ScyllaConfig {
        nodes: nodes.split(',').map(str::trim).map(str::to_owned).collect(),
        keyspace: format!(
            "t_{}_{suffix}",
            name.chars().filter(char::is_ascii_alphanumeric).take(30).collect::<String>()
        ),
        replication: 1,
    };
    Some(ScyllaLedger::connect(&config).await.unwrap())
}

conformance::every_check!(ledger);
