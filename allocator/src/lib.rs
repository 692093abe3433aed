//! The allocator of every Cezbek binary and benchmark: mimalloc, told to keep the memory it
//! frees.
//!
//! The services allocate many small, short-lived buffers per message; mimalloc keeps that
//! cheap where glibc's allocator spent a large share of the rewarder's time consolidating. By
//! default mimalloc gives freed pages back to the kernel soon after they empty (a second, in
//! mimalloc 3), so a process that frees and allocates at a steady rate faults the same memory
//! in again and again, each page zeroed by the kernel (and, in a VM that reports free pages to
//! its host, by the host as well). Kept, the memory stays at what the process needed at its
//! peak, which for these services is bounded by their configured caches and batch sizes.
//!
//! The C libraries linked in (librdkafka: every produced message and request buffer) allocate
//! through glibc's malloc, which does the same by default: it gives the top of its heaps back
//! once 128 KiB or more is free there, and serves large blocks with their own mappings. A CSV
//! job's producer took most of its page faults there. Both thresholds are raised, unless
//! `GLIBC_TUNABLES` is set.

pub use mimalloc::MiMalloc;

/// The environment variable through which mimalloc reads the option itself; when it is set,
/// the operator's value stands.
pub const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (its 16th entry, after the
/// deprecated ones the enum keeps); libmimalloc-sys names no constant for it. The tests check
/// this index against the environment variable mimalloc reads for the same option.
pub const PURGE_DELAY_OPTION: i32 = 15;

/// glibc reads its own options from this variable; when it is set, glibc is left alone.
pub const GLIBC_TUNABLES_VARIABLE: &str = "GLIBC_TUNABLES";

/// glibc gives the top of a heap back once this much is free there.
pub const GLIBC_TRIM_THRESHOLD: i32 = 256 << 20;

/// glibc serves blocks this large and larger with mappings of their own (unmapped when
/// freed); its maximum.
pub const GLIBC_MMAP_THRESHOLD: i32 = 32 << 20;

/// Freed memory stays with the process: mimalloc's never purges (-1) unless
/// `MIMALLOC_PURGE_DELAY` says otherwise, and glibc's thresholds are raised unless
/// `GLIBC_TUNABLES` is set. Call first thing in `main`.
pub fn keep_freed_memory() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_none() {
        set_option(PURGE_DELAY_OPTION, -1);
    }
    if std::env::var_os(GLIBC_TUNABLES_VARIABLE).is_none() {
        keep_glibc_freed_memory();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_glibc_freed_memory() {
    for (parameter, value) in [
        (libc::M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD),
        (libc::M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD),
    ] {
        // SAFETY: mallopt takes no pointers and may be called at any time; it returns 0 when
        // it refuses a value, and the defaults then stay, which is harmless.
        #[allow(unsafe_code)]
        let accepted = unsafe { libc::mallopt(parameter, value) };
        if accepted == 0 {
            eprintln!("glibc refused malloc option {parameter} = {value}; its default stays");
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_glibc_freed_memory() {}

/// The current value of a mimalloc option.
pub fn option(option: i32) -> std::ffi::c_long {
    // SAFETY: reading an option takes no pointers; any index within the enum is valid.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(option)
    }
}

fn set_option(option: i32, value: i32) {
    // SAFETY: setting an option takes no pointers and may be done at any time; mimalloc reads
    // the purge delay each time it considers purging.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(option, value.into())
    };
}
