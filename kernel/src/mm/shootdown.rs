//! TLB shootdown, the portable half: which CPUs a flush must reach, the
//! request they carry out, and the handshake that says they have.
//!
//! A page-table change is seen by every CPU only once each CPU that may
//! cache the old translation has dropped it. `arch::tlb::Shootdown` is the
//! [`super::tlb::TlbFlush`] of the booted kernel: it flushes locally, as
//! one CPU always did, and through [`Shootdowns::shoot`] makes the other
//! CPUs that may cache the translation flush too, and waits for them. The
//! protocol is here, free of hardware, so the host tests can drive it with
//! threads for CPUs (`tests.rs`); the machine behind it is a [`Remote`].
//!
//! # Which CPUs
//!
//! Without PCIDs a CR3 write drops every non-global translation, so the
//! CPUs that may cache a translation of the user half of root R are
//! exactly those whose CR3 holds R now. Each CPU records the root it loads
//! ([`Shootdowns::note_loaded`], a sequentially consistent store) right
//! before its CR3 write; a shooter changes the entries first, then makes a
//! sequentially consistent fence, and only then reads what each CPU
//! recorded ([`targets`]). So for a CPU whose record the shooter read as
//! another root than R:
//!
//! * either its store of R comes after the shooter's read in the single
//!   order of sequentially consistent operations, and then after the
//!   page-table change too: its CR3 write (serialising) and every walk
//!   after it see the new entries, so it caches nothing old;
//! * or it stored R before and something else since: it has written CR3
//!   with that other root, dropping R's translations, or is about to, in
//!   the few instructions of the switch between the store and the write,
//!   which touch no user address.
//!
//! The kernel half is shared by every root and its leaves are global, so
//! a page there, a flush of the kernel root's space, and a flush of
//! everything go to every CPU that is online. A CPU that is not online yet
//! is skipped: it flushes its whole TLB when it comes online (after a
//! sequentially consistent store of that fact), which by the same argument
//! drops anything the skipped flush named.
//!
//! # The handshake
//!
//! One shootdown at a time: a shooter takes the shootdown lock (spinning;
//! the machine delivers requests by NMI, so a CPU spinning here with
//! interrupts off still serves the holder), writes the request into the
//! one global slot, sets each target's `pending` generation to the new
//! one, interrupts the targets, flushes locally, and spins until each
//! target's `acknowledged` generation has caught up. A target's handler
//! ([`Shootdowns::take`]) compares the two: if they differ, it reads the
//! slot, which stays unchanged while its shooter waits for this very
//! target, carries the request out, and acknowledges that generation. The
//! handler works from generations, not from how many interrupts arrived:
//! interrupts that coalesce, or that find the work done by an earlier
//! pass, are harmless. A target that never answers within the bound the
//! caller gives is an [`Unanswered`] error naming it.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

use super::Pfn;
use super::paging::PageSize;
use super::tlb::{BATCH_PAGES, FlushPage};
use crate::sync::MAX_CPUS;
use crate::task::sched::CpuMask;

/// What a request drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The pages listed, in the space of the root (global ones included).
    Pages,
    /// Every non-global translation of the root's space; every translation
    /// when the root is the kernel's, whose leaves are all global.
    Space,
    /// Every translation of every space.
    All,
}

/// One flush, as every CPU it reaches carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    scope: Scope,
    root: Pfn,
    len: usize,
    pages: [FlushPage; BATCH_PAGES],
}

const NO_PAGE: FlushPage = FlushPage {
    va: 0,
    size: PageSize::Size4K,
};

impl Request {
    /// `pages` of the space rooted at `root`; more than [`BATCH_PAGES`]
    /// make a flush of the whole space, as a batch does.
    pub fn pages(root: Pfn, pages: &[FlushPage]) -> Request {
        if pages.len() > BATCH_PAGES {
            return Request::space(root);
        }
        let mut list = [NO_PAGE; BATCH_PAGES];
        list[..pages.len()].copy_from_slice(pages);
        Request {
            scope: Scope::Pages,
            root,
            len: pages.len(),
            pages: list,
        }
    }

    pub fn space(root: Pfn) -> Request {
        Request {
            scope: Scope::Space,
            root,
            len: 0,
            pages: [NO_PAGE; BATCH_PAGES],
        }
    }

    pub fn all() -> Request {
        Request {
            scope: Scope::All,
            root: Pfn(0),
            len: 0,
            pages: [NO_PAGE; BATCH_PAGES],
        }
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    pub fn root(&self) -> Pfn {
        self.root
    }

    /// The pages of a [`Scope::Pages`] request; empty for the others.
    pub fn page_list(&self) -> &[FlushPage] {
        &self.pages[..self.len]
    }

    /// Whether any CPU may cache what the request names, whatever root it
    /// has loaded: the kernel half is in every root.
    pub fn reaches_every_cpu(&self, kernel_root: Pfn, kernel_half: u64) -> bool {
        match self.scope {
            Scope::All => true,
            Scope::Space => self.root == kernel_root,
            Scope::Pages => {
                self.root == kernel_root || self.page_list().iter().any(|p| p.va >= kernel_half)
            }
        }
    }
}

/// The CPUs besides `me` that must carry `req` out: of those `online`,
/// all of them when it names something in the kernel half (see
/// [`Request::reaches_every_cpu`]), else those whose recorded root
/// (`loaded`) is the request's. Read only after the page-table change and
/// a sequentially consistent fence (module doc).
pub fn targets(
    req: &Request,
    me: usize,
    online: CpuMask,
    loaded: impl Fn(usize) -> Pfn,
    kernel_root: Pfn,
    kernel_half: u64,
) -> CpuMask {
    let others = online.without(CpuMask::one(me));
    if req.reaches_every_cpu(kernel_root, kernel_half) {
        return others;
    }
    let mut mask = CpuMask::NONE;
    for cpu in others.iter() {
        if loaded(cpu) == req.root {
            mask.insert(cpu);
        }
    }
    mask
}

/// What the shootdown needs of the machine.
pub trait Remote {
    /// The CPUs that have finished their own set-up (and so may be asked).
    fn online(&self) -> CpuMask;
    /// Interrupts `cpu`, which then calls [`Shootdowns::take`], whatever
    /// it is doing (locks held, interrupts off): an NMI on x86. Every
    /// store made before the call is visible to the handler.
    fn interrupt(&self, cpu: usize);
    /// Carries `req` out on the calling CPU.
    fn flush_local(&self, req: &Request);
    /// A pause in a spin (lets a simulated or emulated CPU run).
    fn relax(&self);
    /// A clock, for the bound on the wait.
    fn now(&self) -> u64;
}

/// A target that did not acknowledge within the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unanswered {
    pub cpu: usize,
    /// The generation it was asked to reach, and the one it acknowledged.
    pub generation: u64,
    pub acknowledged: u64,
}

/// One CPU's words, a cache line each: the root it loaded, the request it
/// is asked to carry out and the last it did.
#[repr(align(64))]
struct CpuSlot {
    loaded: AtomicU64,
    pending: AtomicU64,
    acknowledged: AtomicU64,
}

/// The request being carried out, in atomics so that a target may read
/// it while its shooter waits. Written only by the lock's holder, and only
/// once every target of the previous request has acknowledged it.
struct RequestSlot {
    scope: AtomicUsize,
    root: AtomicU64,
    len: AtomicUsize,
    /// Each page's address with its size's code in the low bits (the
    /// address is rounded down to its 4 KiB page: any address in a page
    /// names it to INVLPG).
    pages: [AtomicU64; BATCH_PAGES],
}

const PAGE_MASK: u64 = !0xfff;

fn size_code(size: PageSize) -> u64 {
    match size {
        PageSize::Size4K => 0,
        PageSize::Size2M => 1,
        PageSize::Size1G => 2,
    }
}

fn size_of_code(code: u64) -> PageSize {
    match code {
        1 => PageSize::Size2M,
        2 => PageSize::Size1G,
        _ => PageSize::Size4K,
    }
}

impl RequestSlot {
    const fn new() -> RequestSlot {
        RequestSlot {
            scope: AtomicUsize::new(0),
            root: AtomicU64::new(0),
            len: AtomicUsize::new(0),
            pages: [const { AtomicU64::new(0) }; BATCH_PAGES],
        }
    }

    /// Relaxed: published by the `pending` store (release) that follows.
    fn store(&self, req: &Request) {
        let scope = match req.scope {
            Scope::Pages => 0,
            Scope::Space => 1,
            Scope::All => 2,
        };
        self.scope.store(scope, Ordering::Relaxed);
        self.root.store(req.root.0, Ordering::Relaxed);
        self.len.store(req.len, Ordering::Relaxed);
        for (slot, page) in self.pages.iter().zip(req.page_list()) {
            slot.store(
                (page.va & PAGE_MASK) | size_code(page.size),
                Ordering::Relaxed,
            );
        }
    }

    /// Relaxed: read after the `pending` load (acquire) that published it.
    fn load(&self) -> Request {
        let scope = match self.scope.load(Ordering::Relaxed) {
            0 => Scope::Pages,
            1 => Scope::Space,
            _ => Scope::All,
        };
        let len = self.len.load(Ordering::Relaxed).min(BATCH_PAGES);
        let mut pages = [NO_PAGE; BATCH_PAGES];
        for (page, slot) in pages.iter_mut().zip(&self.pages[..len]) {
            let word = slot.load(Ordering::Relaxed);
            *page = FlushPage {
                va: word & PAGE_MASK,
                size: size_of_code(word & !PAGE_MASK),
            };
        }
        Request {
            scope,
            root: Pfn(self.root.load(Ordering::Relaxed)),
            len,
            pages,
        }
    }
}

/// The shootdown state of a machine: one per kernel, shared by every CPU.
pub struct Shootdowns {
    /// The shootdown lock: held from the request's publication until every
    /// target acknowledged it.
    busy: AtomicBool,
    generation: AtomicU64,
    request: RequestSlot,
    cpus: [CpuSlot; MAX_CPUS],
    /// The kernel's root (`u64::MAX` until known: no root is that).
    kernel_root: AtomicU64,
    /// The first address of the kernel half.
    kernel_half: u64,
    /// Test switch: the shooter flushes locally only, as if the
    /// interrupts were left out. What the tests that must catch a missing
    /// shootdown turn on.
    skip_remote: AtomicBool,
    /// The targets of the last shootdown, for tests and figures.
    last_targets: AtomicU64,
}

/// "No root recorded": a frame number no table has.
const NO_ROOT: u64 = u64::MAX;

impl Shootdowns {
    /// For a machine whose kernel half starts at `kernel_half`.
    pub const fn new(kernel_half: u64) -> Shootdowns {
        Shootdowns {
            busy: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            request: RequestSlot::new(),
            cpus: [const {
                CpuSlot {
                    loaded: AtomicU64::new(NO_ROOT),
                    pending: AtomicU64::new(0),
                    acknowledged: AtomicU64::new(0),
                }
            }; MAX_CPUS],
            kernel_root: AtomicU64::new(NO_ROOT),
            kernel_half,
            skip_remote: AtomicBool::new(false),
            last_targets: AtomicU64::new(0),
        }
    }

    /// Records the kernel's root, once its tables are built.
    pub fn set_kernel_root(&self, root: Pfn) {
        self.kernel_root.store(root.0, Ordering::SeqCst);
    }

    pub fn kernel_root(&self) -> Pfn {
        Pfn(self.kernel_root.load(Ordering::Relaxed))
    }

    /// CPU `cpu` is about to load `root` into its MMU: called right
    /// before the CR3 write, by the CPU itself. Sequentially consistent,
    /// for the argument of the module doc.
    pub fn note_loaded(&self, cpu: usize, root: Pfn) {
        if let Some(slot) = self.cpus.get(cpu) {
            slot.loaded.store(root.0, Ordering::SeqCst);
        }
    }

    /// The root CPU `cpu` recorded last.
    pub fn loaded(&self, cpu: usize) -> Pfn {
        Pfn(self
            .cpus
            .get(cpu)
            .map_or(NO_ROOT, |s| s.loaded.load(Ordering::SeqCst)))
    }

    /// Test switch: see the field.
    pub fn set_skip_remote(&self, skip: bool) {
        self.skip_remote.store(skip, Ordering::SeqCst);
    }

    /// The CPUs the last shootdown asked (before any test switch).
    pub fn last_targets(&self) -> CpuMask {
        CpuMask(self.last_targets.load(Ordering::Relaxed))
    }

    /// Carries `req` out on CPU `me` (with `hw.flush_local`) and on every
    /// other CPU that may cache what it names, and returns once all have;
    /// `Unanswered` names a CPU that did not within `bound` ticks of
    /// `hw.now()`. The caller has changed the page tables already, and
    /// stays on CPU `me` throughout (interrupts off). Returns the CPUs
    /// asked.
    pub fn shoot(
        &self,
        me: usize,
        req: &Request,
        hw: &impl Remote,
        bound: u64,
    ) -> Result<CpuMask, Unanswered> {
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // The holder may be waiting for this CPU: its request arrives
            // by `interrupt`, which reaches a CPU spinning here too.
            hw.relax();
        }
        // The caller's page-table change, then this fence, then the
        // reads of who may cache it: see the module doc.
        fence(Ordering::SeqCst);
        let asked = targets(
            req,
            me,
            hw.online(),
            |cpu| self.loaded(cpu),
            self.kernel_root(),
            self.kernel_half,
        );
        self.last_targets.store(asked.0, Ordering::Relaxed);
        let remote = if self.skip_remote.load(Ordering::Relaxed) {
            CpuMask::NONE
        } else {
            asked
        };
        let result = if remote.is_empty() {
            hw.flush_local(req);
            Ok(asked)
        } else {
            // Only the lock's holder writes it.
            let generation = self.generation.load(Ordering::Relaxed) + 1;
            self.generation.store(generation, Ordering::Relaxed);
            self.request.store(req);
            for cpu in remote.iter() {
                self.cpus[cpu].pending.store(generation, Ordering::Release);
            }
            for cpu in remote.iter() {
                hw.interrupt(cpu);
            }
            // While the targets take their interrupts.
            hw.flush_local(req);
            self.wait(remote, generation, hw, bound).map(|()| asked)
        };
        self.busy.store(false, Ordering::Release);
        result
    }

    fn wait(
        &self,
        mut left: CpuMask,
        generation: u64,
        hw: &impl Remote,
        bound: u64,
    ) -> Result<(), Unanswered> {
        let start = hw.now();
        loop {
            for cpu in left.iter() {
                // Acquire: the target's flush came before its answer.
                if self.cpus[cpu].acknowledged.load(Ordering::Acquire) >= generation {
                    left.remove(cpu);
                }
            }
            let Some(cpu) = left.first() else {
                return Ok(());
            };
            if hw.now().wrapping_sub(start) > bound {
                return Err(Unanswered {
                    cpu,
                    generation,
                    acknowledged: self.cpus[cpu].acknowledged.load(Ordering::Acquire),
                });
            }
            hw.relax();
        }
    }

    /// The handler's half, on CPU `me`: carries out with `flush` whatever
    /// request is pending for it, and acknowledges it. Returns whether
    /// there was one (an interrupt that finds none is a late or coalesced
    /// one, or not a shootdown's). Takes no lock and allocates nothing:
    /// it runs in an NMI.
    pub fn take(&self, me: usize, mut flush: impl FnMut(&Request)) -> bool {
        let Some(slot) = self.cpus.get(me) else {
            return false;
        };
        let mut took = false;
        loop {
            let pending = slot.pending.load(Ordering::Acquire);
            if pending == slot.acknowledged.load(Ordering::Relaxed) {
                return took;
            }
            // The slot holds request `pending`: its shooter is waiting
            // for this CPU, and no later one is written before it is done.
            flush(&self.request.load());
            slot.acknowledged.store(pending, Ordering::Release);
            took = true;
        }
    }
}

#[cfg(test)]
mod tests;
