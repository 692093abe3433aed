//! glibc keeps what the C libraries free (a block beyond its default mapping threshold stays
//! resident after `free`) once `keep_freed_memory` ran, unless `GLIBC_TUNABLES` is set.
#![cfg(all(target_os = "linux", target_env = "gnu"))]
// The test calls glibc's malloc itself, as librdkafka does.
#![allow(unsafe_code)]

use std::process::Command;

use cezbek_allocator::{GLIBC_TUNABLES_VARIABLE, keep_freed_memory};

const BLOCK: usize = 16 << 20;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("rss");
    pages * 4096
}

/// Run in a child process (malloc's options are per process): allocates, touches and frees a
/// 16 MiB block through glibc, and says whether it stayed resident.
#[test]
#[ignore = "run in a child process by the tests below"]
fn child_frees_a_block() {
    if std::env::var_os("CEZBEK_ALLOCATOR_KEEP").is_some() {
        keep_freed_memory();
    }
    // SAFETY: a block this test owns, written within its size and freed once.
    let kept = unsafe {
        let block = libc::malloc(BLOCK).cast::<u8>();
        assert!(!block.is_null());
        std::ptr::write_bytes(block, 1, BLOCK);
        let before_free = resident_bytes();
        libc::free(block.cast());
        before_free.saturating_sub(resident_bytes()) < BLOCK / 2
    };
    eprintln!("kept after free: {kept}");
}

fn child(keep: bool, tunables: Option<&str>) -> bool {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args(["--exact", "child_frees_a_block", "--nocapture", "--test-threads=1", "--ignored"])
        .env_remove(GLIBC_TUNABLES_VARIABLE)
        .env_remove("CEZBEK_ALLOCATOR_KEEP");
    if keep {
        command.env("CEZBEK_ALLOCATOR_KEEP", "1");
    }
    if let Some(value) = tunables {
        command.env(GLIBC_TUNABLES_VARIABLE, value);
    }
    let output = command.output().expect("the child runs");
    assert!(output.status.success(), "child failed: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    match stderr.lines().find_map(|line| line.strip_prefix("kept after free: ")) {
        Some("true") => true,
        Some("false") => false,
        _ => panic!("no report in {stderr}"),
    }
}

#[test]
fn glibc_gives_a_large_freed_block_back_by_default() {
    assert!(!child(false, None));
}

#[test]
fn glibc_keeps_it_once_told() {
    assert!(child(true, None));
}

#[test]
fn the_operators_tunables_stand() {
    assert!(!child(true, Some("glibc.malloc.tcache_count=7")));
}
