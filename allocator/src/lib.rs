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

pub use mimalloc::MiMalloc;

/// The environment variable through which mimalloc reads the option itself; when it is set,
/// the operator's value stands.
pub const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (its 16th entry, after the
/// deprecated ones the enum keeps); libmimalloc-sys names no constant for it. The tests check
/// this index against the environment variable mimalloc reads for the same option.
pub const PURGE_DELAY_OPTION: i32 = 15;

/// Freed memory stays with the process (mimalloc's -1: never purge), unless
/// `MIMALLOC_PURGE_DELAY` says otherwise. Call first thing in `main`.
pub fn keep_freed_memory() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_some() {
        return;
    }
    set_option(PURGE_DELAY_OPTION, -1);
}

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
