//! What every user address space of a machine shares: the zero page and
//! the memory manager's event counters.
//!
//! # The zero page
//!
//! A read of anonymous memory nobody wrote maps one frame of zeros,
//! read-only, for the whole kernel (Linux's `ZERO_PAGE`); the first write
//! replaces it with a frame of the address space's own. It is allocated
//! once, never freed, and mapped without counts: its refcount stays the
//! one the allocator gave it, its mapcount 0, and it is never counted as
//! anonymous memory (Linux maps it as a special entry, which
//! `vm_normal_page` does not see).
//!
//! # Counters
//!
//! [`VmStats`] holds what a later `/proc/vmstat` will print, under
//! Linux's names. They are atomics, changed under the address-space lock
//! of whoever counts and read without it.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::Pfn;
use super::frame::FrameAllocator;
use super::phys::PhysMem;

/// The memory manager's counters (Linux's `/proc/vmstat` names).
#[derive(Debug, Default)]
pub struct VmStats {
    /// Page faults handled: a user's, and the kernel's on a user's
    /// behalf (Linux's `pgfault`).
    pub pgfault: AtomicU64,
    /// Frames mapped as anonymous memory: counted when a frame's first
    /// mapping appears, uncounted when its last goes (Linux's
    /// `nr_anon_pages`). The zero page never counts.
    pub nr_anon_pages: AtomicU64,
    /// Reads resolved with the zero page.
    pub zero_page_maps: AtomicU64,
    /// Processes ended for want of memory (Linux's `oom_kill`).
    pub oom_kill: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmSnapshot {
    pub pgfault: u64,
    pub nr_anon_pages: u64,
    pub zero_page_maps: u64,
    pub oom_kill: u64,
}

impl fmt::Display for VmSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pgfault={} nr_anon_pages={} zero_page_maps={} oom_kill={}",
            self.pgfault, self.nr_anon_pages, self.zero_page_maps, self.oom_kill
        )
    }
}

impl VmStats {
    pub const fn new() -> VmStats {
        VmStats {
            pgfault: AtomicU64::new(0),
            nr_anon_pages: AtomicU64::new(0),
            zero_page_maps: AtomicU64::new(0),
            oom_kill: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self) -> VmSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        VmSnapshot {
            pgfault: get(&self.pgfault),
            nr_anon_pages: get(&self.nr_anon_pages),
            zero_page_maps: get(&self.zero_page_maps),
            oom_kill: get(&self.oom_kill),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Never below 0: a bug in the counting is logged, not wrapped.
    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        if counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(n))
            .is_err()
        {
            log::error!("vm: a counter went below 0");
        }
    }
}

/// The zero page and the counters. See the module doc.
#[derive(Debug)]
pub struct Shared {
    zero: Pfn,
    pub stats: VmStats,
}

impl Shared {
    /// Takes a frame for the zero page and zeroes it; None without one.
    pub fn new(frames: &FrameAllocator<'_>, mem: &impl PhysMem) -> Option<Shared> {
        let zero = frames.alloc_frame().ok()?;
        mem.zero_frame(zero);
        Some(Shared {
            zero,
            stats: VmStats::new(),
        })
    }

    /// The zero page's frame.
    pub fn zero_page(&self) -> Pfn {
        self.zero
    }
}
