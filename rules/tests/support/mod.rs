//! The rule and transaction builders of the test kit: readable defaults, overridden per test.

#![allow(unused_imports)]

pub use cezbek_testkit::fixtures::*;
