//! The waits between attempts to reach a dependency that failed: exponential from `first`,
//! capped at `cap`, with random jitter (up to as much again), so that instances which lost the
//! same dependency at the same moment do not all retry in step. `backon` computes them; the
//! loops that retry keep their own shutdown handling.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays for retrying forever: call `next()` before each wait, and start a new one after a
/// success.
pub fn delays(first: Duration, cap: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(cap)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The next wait; the iterator never ends, but a bound is given in case.
pub fn next_delay(delays: &mut impl Iterator<Item = Duration>, cap: Duration) -> Duration {
    delays.next().unwrap_or(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_with_jitter_and_never_end() {
        let (first, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = delays(first, cap).take(12).collect();
        assert_eq!(waits.len(), 12);
        // Each wait is its exponential step plus up to as much again.
        let mut step = first;
        for wait in &waits {
            assert!(*wait >= step && *wait <= step * 2, "{wait:?} for a step of {step:?}");
            step = (step * 2).min(cap);
        }
        // Jitter: two instances do not wait alike.
        let other: Vec<Duration> = delays(first, cap).take(12).collect();
        assert_ne!(waits, other);
    }
}
