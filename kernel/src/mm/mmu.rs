//! A simulated MMU, so that host tests can run memory accesses through the
//! page tables the kernel builds and see what hardware would do.
//!
//! [`SimMmu`] walks tables through the same [`PteFormat`] and [`PhysMem`] as
//! the kernel's walker, checks permissions, sets accessed and dirty bits in
//! the entries and caches what it walked. Most memory-manager bugs only show
//! through those three: a missing flush leaves a stale translation in use, a
//! lost dirty bit makes reclaim drop data, a missing accessed bit makes it
//! evict a hot page. It is not `cfg(test)` so that `arch`'s tests can run it
//! over x86 entries, and it works over any `PhysMem`, the direct map too.
//!
//! # The model (x86, Intel SDM vol. 3 §4.8 and §4.10)
//!
//! * A translation is cached per address space, keyed by the root it was
//!   walked from, as with PCIDs; switching spaces flushes nothing. A global
//!   leaf's translation serves every space. Nothing is ever evicted, so a
//!   missing flush always shows instead of now and then.
//! * Table entries met on a walk are cached as well (the paging-structure
//!   caches), even when the walk ends at a non-present entry: a later walk
//!   for an address below a cached entry starts at the table it names,
//!   without reading the levels above. That is why freed tables need a flush.
//! * Accessed and dirty are set the way the hardware's locked update does
//!   it: only when not already set, by a compare-exchange of the whole entry
//!   against the value the walk read. If the entry changed in between, the
//!   walk starts again.
//! * A TLB hit is used as it is, without reading the tables, when it allows
//!   the access. A write through a cached translation that is read-only or
//!   not yet dirty walks again (the hardware must set dirty, and checks the
//!   entry as it does so); any other access the cached translation would
//!   refuse walks again too, so a fault always reflects the tables. A cached
//!   writable translation that is already dirty is used without a walk, so a
//!   dirty bit cleared without a flush is not set again by the next write.
//! * Permissions: a user access needs `USER`; a write needs `WRITABLE` (for
//!   supervisor accesses too, as with CR0.WP); a fetch needs `EXECUTABLE`.
//!   SMEP and SMAP are not modelled. Table entries grant everything: in the
//!   portable model only leaves carry permissions.

use super::phys::PhysMem;
use super::pte::{LEVEL_BITS, LeafFlags, Pte, PteFormat, level_size};
use super::tlb::{FlushPage, TlbFlush};
use super::{PAGE_SHIFT, PAGE_SIZE, Pfn};
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ops::Range;
use spin::Mutex;

/// What an access does with the memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
    /// An instruction fetch.
    Execute,
}

/// The privilege an access is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    User,
    Supervisor,
}

/// Why an access faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// No present leaf maps the address: absent, swapped out, a marker
    /// (x86 #PF with P clear).
    NotPresent,
    /// A leaf maps the address, but not for this access (x86 #PF, P set).
    Protection,
    /// An entry on the walk is malformed for the format (x86 #PF, RSVD).
    Reserved,
    /// The address is outside the canonical range (x86 #GP, not a #PF).
    NonCanonical,
}

/// A failed access, as the fault handler would be told about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The address of the first byte that could not be accessed.
    pub va: u64,
    pub access: AccessKind,
    pub mode: Mode,
    pub kind: FaultKind,
}

/// What the MMU did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MmuStats {
    /// Translations served from the TLB without reading the tables.
    pub hits: u64,
    /// Walks of the tables (a walk restarted after a lost race counts again).
    pub walks: u64,
    /// Entries whose accessed or dirty bit the MMU set.
    pub ad_updates: u64,
    /// Pages named by `flush_pages`.
    pub page_flushes: u64,
    pub space_flushes: u64,
    pub global_flushes: u64,
}

/// A cached translation: the leaf that maps `[base, base + size)`.
#[derive(Debug, Clone, Copy)]
struct Cached {
    root: Pfn,
    base: u64,
    size: u64,
    pfn: Pfn,
    /// The leaf's flags as the walk left them (accessed and dirty included).
    flags: LeafFlags,
}

impl Cached {
    fn global(&self) -> bool {
        self.flags.contains(LeafFlags::GLOBAL)
    }

    fn serves(&self, root: Pfn, va: u64) -> bool {
        (self.root == root || self.global()) && covers(self.base, self.size, va)
    }
}

/// A cached table entry: `table`, a level-`level` table, is the one for
/// addresses in `[base, base + level_size(level + 1))` of `root`'s space.
#[derive(Debug, Clone, Copy)]
struct CachedTable {
    root: Pfn,
    level: usize,
    base: u64,
    table: Pfn,
}

impl CachedTable {
    fn size(&self) -> u64 {
        level_size(self.level + 1)
    }
}

#[derive(Default)]
struct State {
    tlb: Vec<Cached>,
    tables: Vec<CachedTable>,
    stats: MmuStats,
}

/// The leaf a walk ended at.
struct Walked {
    /// Where the entry is, and what the walk read there.
    pa: u64,
    raw: u64,
    level: usize,
    pfn: Pfn,
    flags: LeafFlags,
}

fn covers(base: u64, size: u64, va: u64) -> bool {
    va >= base && va - base < size
}

fn overlaps(base: u64, size: u64, page: &FlushPage) -> bool {
    let (last, page_last) = (base + (size - 1), page.va + (page.size.bytes() - 1));
    base <= page_last && page.va <= last
}

fn permits(flags: LeafFlags, kind: AccessKind, mode: Mode) -> bool {
    if mode == Mode::User && !flags.contains(LeafFlags::USER) {
        return false;
    }
    match kind {
        AccessKind::Read => true,
        AccessKind::Write => flags.contains(LeafFlags::WRITABLE),
        AccessKind::Execute => flags.contains(LeafFlags::EXECUTABLE),
    }
}

/// A simulated MMU with a TLB over the tables in `mem`. See the module doc.
///
/// It is also the [`TlbFlush`] of the simulated machine: flush tokens
/// flushed through it drop its cached translations.
pub struct SimMmu<'m, F: PteFormat, M: PhysMem> {
    mem: &'m M,
    state: Mutex<State>,
    _f: PhantomData<fn() -> F>,
}

impl<'m, F: PteFormat, M: PhysMem> SimMmu<'m, F, M> {
    const ROOT_LEVEL: usize = F::LEVELS - 1;
    const VA_BITS: u32 = PAGE_SHIFT + LEVEL_BITS * F::LEVELS as u32;

    /// An MMU with an empty TLB.
    pub fn new(mem: &'m M) -> Self {
        SimMmu {
            mem,
            state: Mutex::new(State::default()),
            _f: PhantomData,
        }
    }

    /// The memory the MMU walks and accesses.
    pub fn mem(&self) -> &'m M {
        self.mem
    }

    /// Reads `buf.len()` bytes at `va` as a user-mode program would.
    /// Page by page: on a fault, the pages before the faulting one are read.
    pub fn read(&self, root: Pfn, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.pages(root, va, buf.len(), AccessKind::Read, &mut |pa, range| {
            self.mem.read_bytes(pa, &mut buf[range])
        })
    }

    /// Writes `data` at `va` as a user-mode program would, page by page.
    pub fn write(&self, root: Pfn, va: u64, data: &[u8]) -> Result<(), Fault> {
        self.pages(root, va, data.len(), AccessKind::Write, &mut |pa, range| {
            self.mem.write_bytes(pa, &data[range])
        })
    }

    /// Fetches `buf.len()` bytes of instructions at `va` in user mode.
    pub fn fetch(&self, root: Pfn, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.pages(
            root,
            va,
            buf.len(),
            AccessKind::Execute,
            &mut |pa, range| self.mem.read_bytes(pa, &mut buf[range]),
        )
    }

    /// Translates one access to `va` and returns the physical address,
    /// setting accessed/dirty bits and filling the TLB as the access would.
    pub fn access(&self, root: Pfn, va: u64, kind: AccessKind, mode: Mode) -> Result<u64, Fault> {
        // The TLB's memory is the simulated CPU's, never the kernel heap's.
        crate::mm::phys::as_hardware(|| self.access_inner(root, va, kind, mode))
    }

    fn access_inner(&self, root: Pfn, va: u64, kind: AccessKind, mode: Mode) -> Result<u64, Fault> {
        let fault = |why| Fault {
            va,
            access: kind,
            mode,
            kind: why,
        };
        if Self::sign_extend(va) != va {
            return Err(fault(FaultKind::NonCanonical));
        }
        let mut st = self.state.lock();
        if let Some(i) = st.tlb.iter().position(|e| e.serves(root, va)) {
            let e = st.tlb[i];
            let needs_dirty = kind == AccessKind::Write && !e.flags.contains(LeafFlags::DIRTY);
            if permits(e.flags, kind, mode) && !needs_dirty {
                st.stats.hits += 1;
                return Ok(e.pfn.addr() + (va - e.base));
            }
            st.tlb.swap_remove(i);
        }
        loop {
            st.stats.walks += 1;
            let leaf = self.walk(&mut st, root, va).map_err(fault)?;
            if !permits(leaf.flags, kind, mode) {
                return Err(fault(FaultKind::Protection));
            }
            let mut flags = leaf.flags | LeafFlags::ACCESSED;
            if kind == AccessKind::Write {
                flags |= LeafFlags::DIRTY;
            }
            if flags != leaf.flags {
                let pte = Pte::Leaf {
                    pfn: leaf.pfn,
                    flags,
                };
                let raw = F::encode(&pte, leaf.level).map_err(|_| fault(FaultKind::Reserved))?;
                if self
                    .mem
                    .compare_exchange_u64(leaf.pa, leaf.raw, raw)
                    .is_err()
                {
                    // Software changed the entry since the walk read it.
                    continue;
                }
                st.stats.ad_updates += 1;
            }
            let size = level_size(leaf.level);
            let base = va & !(size - 1);
            st.tlb.push(Cached {
                root,
                base,
                size,
                pfn: leaf.pfn,
                flags,
            });
            return Ok(leaf.pfn.addr() + (va - base));
        }
    }

    /// The translation the TLB holds for `va` in `root`'s space, as
    /// (physical address, cached flags), without touching anything.
    pub fn cached(&self, root: Pfn, va: u64) -> Option<(u64, LeafFlags)> {
        let st = self.state.lock();
        let e = st.tlb.iter().find(|e| e.serves(root, va))?;
        Some((e.pfn.addr() + (va - e.base), e.flags))
    }

    /// Translations and table entries cached, in that order.
    pub fn cache_sizes(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.tlb.len(), st.tables.len())
    }

    pub fn stats(&self) -> MmuStats {
        self.state.lock().stats
    }

    /// Walks from the deepest cached table for `va`, caching the tables
    /// passed on the way, to the leaf that maps `va`.
    fn walk(&self, st: &mut State, root: Pfn, va: u64) -> Result<Walked, FaultKind> {
        let start = (st.tables.iter())
            .filter(|c| c.root == root && covers(c.base, c.size(), va))
            .min_by_key(|c| c.level)
            .map(|c| (c.table, c.level));
        let (mut table, mut level) = start.unwrap_or((root, Self::ROOT_LEVEL));
        loop {
            let index = (va >> (PAGE_SHIFT + LEVEL_BITS * level as u32)) % 512;
            let pa = table.addr() + index * 8;
            let raw = self.mem.read_u64(pa);
            match F::decode(raw, level) {
                Err(_) => return Err(FaultKind::Reserved),
                Ok(Pte::Table(next)) if level > 0 => {
                    level -= 1;
                    let base = va & !(level_size(level + 1) - 1);
                    st.tables
                        .retain(|c| !(c.root == root && c.level == level && c.base == base));
                    st.tables.push(CachedTable {
                        root,
                        level,
                        base,
                        table: next,
                    });
                    table = next;
                }
                Ok(Pte::Leaf { pfn, flags }) => {
                    return Ok(Walked {
                        pa,
                        raw,
                        level,
                        pfn,
                        flags,
                    });
                }
                Ok(_) => return Err(FaultKind::NotPresent),
            }
        }
    }

    /// Runs `op(pa, range)` for each page-sized piece of `[va, va + len)`,
    /// translating each with `kind` in user mode.
    fn pages(
        &self,
        root: Pfn,
        va: u64,
        len: usize,
        kind: AccessKind,
        op: &mut dyn FnMut(u64, Range<usize>),
    ) -> Result<(), Fault> {
        let mut done = 0;
        while done < len {
            let Some(at) = va.checked_add(done as u64) else {
                return Err(Fault {
                    va: va.wrapping_add(done as u64),
                    access: kind,
                    mode: Mode::User,
                    kind: FaultKind::NonCanonical,
                });
            };
            let chunk = (len - done).min((PAGE_SIZE - at % PAGE_SIZE) as usize);
            let pa = self.access(root, at, kind, Mode::User)?;
            op(pa, done..done + chunk);
            done += chunk;
        }
        Ok(())
    }

    fn sign_extend(va: u64) -> u64 {
        let unused = 64 - Self::VA_BITS;
        (((va << unused) as i64) >> unused) as u64
    }
}

impl<F: PteFormat, M: PhysMem + Sync> TlbFlush for SimMmu<'_, F, M> {
    fn flush_pages(&self, root: Pfn, pages: &[FlushPage]) {
        let mut st = self.state.lock();
        st.stats.page_flushes += pages.len() as u64;
        for page in pages {
            st.tlb.retain(|e| {
                let mine = e.root == root || e.global();
                !(mine && overlaps(e.base, e.size, page))
            });
            st.tables
                .retain(|c| !(c.root == root && overlaps(c.base, c.size(), page)));
        }
    }

    fn flush_space(&self, root: Pfn) {
        let mut st = self.state.lock();
        st.stats.space_flushes += 1;
        st.tlb.retain(|e| e.root != root || e.global());
        st.tables.retain(|c| c.root != root);
    }

    fn flush_all(&self) {
        let mut st = self.state.lock();
        st.stats.global_flushes += 1;
        st.tlb.clear();
        st.tables.clear();
    }
}

#[cfg(test)]
mod tests;
