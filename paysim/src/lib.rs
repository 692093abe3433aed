//! Simulators of the payment providers Cezbek pays out through. The real providers cannot be
//! reached from development machines or CI, so each adapter is tested against a simulator that
//! speaks that provider's documented API, keeps its own record of the money it moved (the
//! truth tests compare Cezbek's journal with) and does wrong what a test scripts it to do
//! ([`faults`]).
//!
//! Tests start them in-process ([`XenditSim::start`]); `dev/stack` runs the `cezbek-paysim`
//! binary for the demo and `cezbek dev`.

pub mod faults;
pub mod xendit;

pub use faults::{Ending, Fault, Faults, RandomFaults};
pub use xendit::{Executed, FeeRule, XenditConfig, XenditSim};
