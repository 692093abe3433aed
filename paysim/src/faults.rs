//! What a test scripts a simulator to do wrong: per destination account (deterministic under
//! concurrency, whatever order payouts arrive in) or at random with a seed (the soak).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The faults of a simulator. A payout to an account with a scripted fault gets that fault;
/// any other gets the random ones, if any.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Added to the answer of every API call.
    pub latency_ms: u64,
    /// By destination account number (the customer's msisdn).
    pub by_account: HashMap<String, Fault>,
    pub random: Option<RandomFaults>,
}

/// One thing that goes wrong with a payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The first `times` create calls answer 503 without creating anything.
    ServerError { times: u32 },
    /// The first `times` create calls create the payout, then answer 504 after `delay_ms` (the
    /// caller's timeout may come first): accepted, but the caller does not know.
    AcceptThenNoAnswer { times: u32, delay_ms: u64 },
    /// Stays ACCEPTED for `ms`, then ends as `then`.
    PendingFor { ms: u64, then: Ending },
    /// Ends FAILED with this Xendit failure code (`RECIPIENT_ACCOUNT_NUMBER_ERROR`,
    /// `MAXIMUM_TRANSFER_LIMIT_ERROR`, `DESTINATION_MAINTENANCE`, …).
    Fail { code: String },
    /// The account does not exist at the wallet: an account inquiry says so, and a transfer to
    /// it fails (`INVALID_ACCOUNT`), or is refused where the API checks at once.
    InvalidAccount,
    /// Succeeds, then is REVERSED by the network `after_ms` later.
    ReverseAfter { after_ms: u64 },
    /// Every callback of the payout is sent twice.
    DuplicateCallbacks,
    /// The final callback is preceded by a stale one (the payout's earlier state) sent after it.
    OutOfOrderCallbacks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Succeeded,
    Failed,
}

/// Faults drawn at random per create call, each with its probability (0–1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomFaults {
    pub seed: u64,
    pub server_error: f64,
    pub accept_then_no_answer: f64,
    pub pending_ms: u64,
    pub pending: f64,
    pub fail: f64,
    pub duplicate_callbacks: f64,
}

/// A small deterministic generator (SplitMix64): a simulator needs reproducible draws, not
/// cryptographic ones.
#[derive(Debug, Clone)]
pub struct Draws {
    state: u64,
}

impl Draws {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A number in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.uniform() < probability
    }
}

impl RandomFaults {
    /// The fault a create call gets, if any.
    pub fn draw(&self, draws: &mut Draws) -> Option<Fault> {
        if draws.chance(self.server_error) {
            return Some(Fault::ServerError { times: 1 });
        }
        if draws.chance(self.accept_then_no_answer) {
            return Some(Fault::AcceptThenNoAnswer { times: 1, delay_ms: 0 });
        }
        if draws.chance(self.pending) {
            return Some(Fault::PendingFor { ms: self.pending_ms, then: Ending::Succeeded });
        }
        if draws.chance(self.fail) {
            return Some(Fault::Fail { code: "TEMPORARY_TRANSFER_ERROR".into() });
        }
        if draws.chance(self.duplicate_callbacks) {
            return Some(Fault::DuplicateCallbacks);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_in_range() {
        let mut first = Draws::new(7);
        let mut second = Draws::new(7);
        for _ in 0..1000 {
            let draw = first.uniform();
            assert!((0.0..1.0).contains(&draw));
            assert_eq!(draw.to_bits(), second.uniform().to_bits());
        }
        let mut draws = Draws::new(1);
        let hits = (0..10_000).filter(|_| draws.chance(0.1)).count();
        assert!((800..1200).contains(&hits), "{hits} of 10,000 at 10 %");
    }

    #[test]
    fn faults_read_from_json() {
        let faults: Faults = serde_json::from_str(
            r#"{"by_account": {"+6281": {"kind": "pending_for", "ms": 50, "then": "failed"}}}"#,
        )
        .unwrap();
        assert_eq!(faults.by_account["+6281"], Fault::PendingFor { ms: 50, then: Ending::Failed });
        assert!(serde_json::from_str::<Faults>(r#"{"latency": 1}"#).is_err());
    }
}
