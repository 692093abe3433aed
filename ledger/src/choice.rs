//! Which backend a service reads and writes: chosen by configuration, shared by the rewarder
//! (writes) and the informer and notifier (reads).

use cezbek_env::Env;

use crate::ScyllaConfig;

/// Where decisions live: PostgreSQL (single node, the default) or Scylla (scale-out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerChoice {
    Postgres,
    Scylla(ScyllaConfig),
}

impl LedgerChoice {
    /// `CEZBEK_LEDGER` (`postgres` | `scylla`); for Scylla `CEZBEK_SCYLLA_NODES` (required),
    /// `CEZBEK_SCYLLA_KEYSPACE` (`cezbek`) and `CEZBEK_SCYLLA_REPLICATION` (3).
    pub fn from_env(env: &mut Env) -> Self {
        match env.string("CEZBEK_LEDGER", "postgres").as_str() {
            "postgres" => Self::Postgres,
            "scylla" => Self::Scylla(ScyllaConfig {
                nodes: env.list("CEZBEK_SCYLLA_NODES", ""),
                keyspace: env.string("CEZBEK_SCYLLA_KEYSPACE", "cezbek"),
                replication: env.parse("CEZBEK_SCYLLA_REPLICATION", 3u32),
            }),
            other => {
                env.problem("CEZBEK_LEDGER", format!("{other:?} is neither postgres nor scylla"));
                Self::Postgres
            }
        }
    }
}
