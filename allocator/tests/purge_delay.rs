//! The purge-delay option index is the one mimalloc reads `MIMALLOC_PURGE_DELAY` into, and
//! `keep_freed_memory` sets it only when the operator did not.

use std::process::Command;

use cezbek_allocator::{PURGE_DELAY_OPTION, PURGE_DELAY_VARIABLE, keep_freed_memory, option};

/// Run in a child process (mimalloc reads its environment once, at start): prints the option
/// before and after `keep_freed_memory`. Ignored: the two tests below run it.
#[test]
#[ignore = "run in a child process by the tests below"]
fn child_reports_the_purge_delay() {
    let before = option(PURGE_DELAY_OPTION);
    keep_freed_memory();
    eprintln!("purge delay: {before} -> {}", option(PURGE_DELAY_OPTION));
}

fn child(variable: Option<&str>) -> String {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "--exact",
            "child_reports_the_purge_delay",
            "--nocapture",
            "--test-threads=1",
            "--ignored",
        ])
        .env_remove(PURGE_DELAY_VARIABLE);
    if let Some(value) = variable {
        command.env(PURGE_DELAY_VARIABLE, value);
    }
    let output = command.output().expect("the child runs");
    assert!(output.status.success(), "child failed: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("purge delay: "))
        .unwrap_or_else(|| panic!("no report in {stderr}"))
        .to_owned()
}

#[test]
fn the_option_index_is_the_one_the_environment_sets() {
    // The variable moves the option this crate names, and the operator's value stands.
    assert_eq!(child(Some("1234")), "1234 -> 1234");
}

#[test]
fn freed_memory_is_kept_unless_the_operator_says_otherwise() {
    let report = child(None);
    let (default, kept) = report.split_once(" -> ").expect("before -> after");
    assert_ne!(default, "-1", "mimalloc purges by default");
    assert_eq!(kept, "-1");
}
