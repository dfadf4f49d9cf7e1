//! The shootdown protocol with threads for CPUs, each with a TLB of its
//! own that keeps every translation until it is flushed (as QEMU's does),
//! and a latch for its NMI: interrupts sent while it is set coalesce, and
//! a CPU takes it between its steps, also while it spins for the
//! shootdown lock or for answers. A CPU reads an entry through its TLB and
//! checks it never sees a value older than the newest one whose shootdown
//! has returned.

use super::*;
use crate::testutil::Rng;
use std::cell::RefCell;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
const KERNEL: Pfn = Pfn(1);
const R0: Pfn = Pfn(2);
const R1: Pfn = Pfn(3);
const ROOTS: [Pfn; 3] = [KERNEL, R0, R1];

#[derive(Debug, Clone, Copy)]
struct Entry {
    root: Pfn,
    va: u64,
}

impl Entry {
    fn global(&self) -> bool {
        self.va >= KERNEL_HALF
    }
}

/// Two kernel pages (global, in every root) and user pages of two roots,
/// one address in both.
const ENTRIES: [Entry; 6] = [
    Entry {
        root: KERNEL,
        va: KERNEL_HALF + 0x1000,
    },
    Entry {
        root: KERNEL,
        va: KERNEL_HALF + 0x20_0000,
    },
    Entry {
        root: R0,
        va: 0x1000,
    },
    Entry {
        root: R0,
        va: 0x7000,
    },
    Entry {
        root: R1,
        va: 0x1000,
    },
    Entry {
        root: R1,
        va: 0x40_0000,
    },
];
const N: usize = ENTRIES.len();

fn page(va: u64) -> FlushPage {
    FlushPage {
        va,
        size: PageSize::Size4K,
    }
}

/// What the CPUs share: the shootdown state, the "page tables" (each
/// entry's current value, only ever growing), the newest value of each
/// entry whose shootdown has returned, and the NMI latches.
struct World {
    sd: Shootdowns,
    n: usize,
    latch: Vec<AtomicBool>,
    online: AtomicU64,
    table: Vec<AtomicU64>,
    floor: Vec<AtomicU64>,
    next_value: AtomicU64,
    finished: AtomicUsize,
    stale: AtomicU64,
    taken: AtomicU64,
    start: Instant,
}

impl World {
    fn new(n: usize) -> World {
        let sd = Shootdowns::new(KERNEL_HALF);
        sd.set_kernel_root(KERNEL);
        World {
            sd,
            n,
            latch: (0..n).map(|_| AtomicBool::new(false)).collect(),
            online: AtomicU64::new(CpuMask::first_n(n).0),
            table: (0..N).map(|_| AtomicU64::new(0)).collect(),
            floor: (0..N).map(|_| AtomicU64::new(0)).collect(),
            next_value: AtomicU64::new(1),
            finished: AtomicUsize::new(0),
            stale: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// Changes entry `i` to a new value, as a remap would.
    fn change(&self, i: usize) -> u64 {
        let value = self.next_value.fetch_add(1, Ordering::Relaxed);
        self.table[i].fetch_max(value, Ordering::SeqCst);
        value
    }

    /// The shootdown for `value` of entry `i` has returned.
    fn flushed(&self, i: usize, value: u64) {
        self.floor[i].fetch_max(value, Ordering::Release);
    }
}

/// One simulated CPU's MMU: the root it has loaded and what it cached.
struct Tlb {
    loaded: Pfn,
    cached: [Option<u64>; N],
}

struct Cpu<'w> {
    w: &'w World,
    me: usize,
    tlb: RefCell<Tlb>,
}

impl<'w> Cpu<'w> {
    fn new(w: &'w World, me: usize) -> Cpu<'w> {
        let cpu = Cpu {
            w,
            me,
            tlb: RefCell::new(Tlb {
                loaded: KERNEL,
                cached: [None; N],
            }),
        };
        cpu.load_root(KERNEL);
        cpu
    }

    /// The switch: the record, then the CR3 write, which drops every
    /// non-global translation.
    fn load_root(&self, root: Pfn) {
        self.w.sd.note_loaded(self.me, root);
        let mut t = self.tlb.borrow_mut();
        t.loaded = root;
        for (i, e) in ENTRIES.iter().enumerate() {
            if !e.global() {
                t.cached[i] = None;
            }
        }
    }

    fn reachable(&self, i: usize) -> bool {
        ENTRIES[i].global() || ENTRIES[i].root == self.tlb.borrow().loaded
    }

    /// A read through the TLB: a hit is used, a miss walks and caches.
    fn access(&self, i: usize) -> u64 {
        assert!(self.reachable(i));
        let mut t = self.tlb.borrow_mut();
        if let Some(v) = t.cached[i] {
            return v;
        }
        let v = self.w.table[i].load(Ordering::SeqCst);
        t.cached[i] = Some(v);
        v
    }

    /// A read checked against what shootdowns that have returned promise.
    fn checked_access(&self, i: usize) {
        let floor = self.w.floor[i].load(Ordering::Acquire);
        if self.access(i) < floor {
            self.w.stale.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The NMI, if one was sent: the handler's half of the handshake.
    fn poll(&self) {
        if self.w.latch[self.me].swap(false, Ordering::SeqCst)
            && self.w.sd.take(self.me, |req| self.flush(req))
        {
            self.w.taken.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// x86's local flush of a request, as `arch::tlb` carries it out.
    fn flush(&self, req: &Request) {
        let mut t = self.tlb.borrow_mut();
        let loaded = t.loaded;
        match req.scope() {
            Scope::Pages => {
                for p in req.page_list() {
                    if loaded != req.root() && p.va < KERNEL_HALF {
                        continue;
                    }
                    // INVLPG: that address, in the loaded space or global.
                    for (i, e) in ENTRIES.iter().enumerate() {
                        if e.va == p.va && (e.global() || e.root == loaded) {
                            t.cached[i] = None;
                        }
                    }
                }
            }
            Scope::Space if req.root() != KERNEL => {
                for (i, e) in ENTRIES.iter().enumerate() {
                    if !e.global() {
                        t.cached[i] = None;
                    }
                }
            }
            Scope::Space | Scope::All => t.cached = [None; N],
        }
    }
}

impl Remote for Cpu<'_> {
    fn online(&self) -> CpuMask {
        CpuMask(self.w.online.load(Ordering::SeqCst))
    }

    fn interrupt(&self, cpu: usize) {
        self.w.latch[cpu].store(true, Ordering::SeqCst);
    }

    fn flush_local(&self, req: &Request) {
        self.flush(req);
    }

    fn relax(&self) {
        // An NMI reaches a CPU spinning with interrupts off too.
        self.poll();
        std::thread::yield_now();
    }

    fn now(&self) -> u64 {
        self.w.start.elapsed().as_nanos() as u64
    }
}

/// Far longer than any thread waits for a core on a loaded host.
const BOUND_NS: u64 = 20_000_000_000;

/// A request that covers entry `i` (and maybe more), chosen at random.
fn covering_request(rng: &mut Rng, i: usize) -> Request {
    let e = ENTRIES[i];
    match rng.below(10) {
        0 => Request::all(),
        1 => Request::space(e.root),
        // Too many pages for one request: the whole space.
        2 => Request::pages(e.root, &[page(e.va); BATCH_PAGES + 1]),
        // A kernel page named through another root's tables.
        3 if e.global() => Request::pages(ROOTS[rng.index(ROOTS.len())], &[page(e.va)]),
        _ => {
            let mut pages = vec![page(e.va)];
            for _ in 0..rng.below(4) {
                pages.insert(rng.index(pages.len() + 1), page(ENTRIES[rng.index(N)].va));
            }
            Request::pages(e.root, &pages)
        }
    }
}

/// A CPU's random life: switches, reads, changes and shootdowns, and
/// stray NMIs; then it keeps answering until every CPU is done.
fn run_cpu(w: &World, me: usize, seed: u64, steps: usize, start: &std::sync::Barrier) {
    let cpu = Cpu::new(w, me);
    let mut rng = Rng(seed ^ (me as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // All at once: a CPU done before the others start would race no one.
    start.wait();
    for _ in 0..steps {
        cpu.poll();
        match rng.below(100) {
            0..3 => cpu.load_root(ROOTS[rng.index(ROOTS.len())]),
            3..13 => {
                let i = rng.index(N);
                let value = w.change(i);
                let req = covering_request(&mut rng, i);
                if let Err(e) = w.sd.shoot(me, &req, &cpu, BOUND_NS) {
                    panic!("cpu {me}: {e:?}");
                }
                w.flushed(i, value);
            }
            13..15 => {
                // An NMI that is no shootdown's, or a late one.
                w.latch[rng.index(w.n)].store(true, Ordering::SeqCst);
            }
            _ => {
                let i = rng.index(N);
                if cpu.reachable(i) {
                    cpu.checked_access(i);
                }
            }
        }
    }
    w.finished.fetch_add(1, Ordering::SeqCst);
    while w.finished.load(Ordering::SeqCst) < w.n {
        cpu.poll();
        std::thread::yield_now();
    }
}

fn random_run(n: usize, seed: u64, steps: usize) -> World {
    let w = World::new(n);
    let start = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        for me in 0..n {
            let (w, start) = (&w, &start);
            s.spawn(move || run_cpu(w, me, seed, steps, start));
        }
    });
    w
}

#[test]
fn random_shootdowns_leave_no_stale_translation_on_two_and_four_cpus() {
    for (n, seed) in [(2, 1), (2, 0xdead_beef), (4, 7), (4, 0x1234_5678_9abc)] {
        let w = random_run(n, seed, 20_000);
        assert_eq!(
            w.stale.load(Ordering::Relaxed),
            0,
            "{n} CPUs, seed {seed:#x}: a CPU read an entry older than a returned shootdown"
        );
        assert!(
            w.taken.load(Ordering::Relaxed) > 0,
            "{n} CPUs, seed {seed:#x}: no request ever reached another CPU"
        );
    }
}

/// Lock-step, no timing: CPU 1 caches entry `i` (with `root` loaded),
/// CPU 0 changes it and shoots it down, then CPU 1 reads it again. Returns
/// what CPU 1 read the second time and the newest value.
fn lockstep(i: usize, root: Pfn, skip_remote: bool) -> (u64, u64) {
    let w = World::new(2);
    w.sd.set_skip_remote(skip_remote);
    let step = AtomicUsize::new(0);
    let seen = AtomicU64::new(u64::MAX);
    let wait_for = |cpu: &Cpu, n: usize| {
        while step.load(Ordering::SeqCst) < n {
            cpu.relax();
        }
    };
    let mut newest = 0;
    let mut asked = Ok(CpuMask::NONE);
    std::thread::scope(|s| {
        s.spawn(|| {
            let cpu = Cpu::new(&w, 1);
            cpu.load_root(root);
            cpu.access(i);
            step.store(1, Ordering::SeqCst);
            wait_for(&cpu, 2);
            seen.store(cpu.access(i), Ordering::SeqCst);
            step.store(3, Ordering::SeqCst);
        });
        let cpu = Cpu::new(&w, 0);
        wait_for(&cpu, 1);
        newest = w.change(i);
        let req = Request::pages(ENTRIES[i].root, &[page(ENTRIES[i].va)]);
        asked = w.sd.shoot(0, &req, &cpu, BOUND_NS);
        // Whatever came of it, CPU 1 goes on (a failed check must not
        // leave it waiting).
        step.store(2, Ordering::SeqCst);
        wait_for(&cpu, 3);
    });
    assert_eq!(asked, Ok(CpuMask::one(1)), "CPU 1 may cache entry {i}");
    (seen.load(Ordering::SeqCst), newest)
}

#[test]
fn without_the_interrupt_the_old_translation_is_seen() {
    // A user page of the root CPU 1 runs, and a kernel page it runs
    // under any root: the check that passes above fails when the
    // interrupt is left out, so it can fail.
    for (i, root) in [(2, R0), (0, R1)] {
        let (seen, newest) = lockstep(i, root, true);
        assert_eq!(seen, 0, "entry {i}: the stale value, {newest} is newer");
        let (seen, newest) = lockstep(i, root, false);
        assert_eq!(seen, newest, "entry {i}: flushed on CPU 1");
    }
}

#[test]
fn a_cpu_that_never_answers_is_named() {
    let w = World::new(3);
    let cpu = Cpu::new(&w, 0);
    // CPU 2 recorded the root and never takes its NMI; CPU 1 runs another.
    w.sd.note_loaded(1, R1);
    w.sd.note_loaded(2, R0);
    let req = Request::pages(R0, &[page(0x1000)]);
    let err = w.sd.shoot(0, &req, &cpu, 1_000_000).unwrap_err();
    assert_eq!(
        err,
        Unanswered {
            cpu: 2,
            generation: 1,
            acknowledged: 0
        }
    );
    assert!(w.latch[2].load(Ordering::SeqCst) && !w.latch[1].load(Ordering::SeqCst));
}

#[test]
fn coalesced_and_stray_interrupts_do_the_work_once() {
    let w = World::new(2);
    let mut runs = 0;
    assert!(!w.sd.take(1, |_| runs += 1), "nothing pending");
    // Two requests published before the target's handler ran (as when the
    // second NMI came while the first was being handled): one pass
    // carries out the latest, and the next interrupt finds nothing.
    for generation in 1..=2 {
        w.sd.generation.store(generation, Ordering::Relaxed);
        w.sd.request.store(&Request::space(Pfn(generation)));
        w.sd.cpus[1].pending.store(generation, Ordering::Release);
    }
    let mut roots = Vec::new();
    assert!(w.sd.take(1, |r| roots.push(r.root())));
    assert_eq!(roots, [Pfn(2)]);
    assert!(!w.sd.take(1, |_| runs += 1));
    assert_eq!(runs, 0);
}

#[test]
fn requests_survive_the_slot() {
    let mut rng = Rng(0x5eed);
    let slot = RequestSlot::new();
    for _ in 0..500 {
        let n = rng.index(BATCH_PAGES + 1);
        let pages: Vec<FlushPage> = (0..n)
            .map(|_| FlushPage {
                va: (rng.next() & 0x0000_7fff_ffff_f000)
                    | if rng.chance(50) { KERNEL_HALF } else { 0 },
                size: PageSize::ALL[rng.index(3)],
            })
            .collect();
        let req = match rng.below(4) {
            0 => Request::space(Pfn(rng.below(1 << 40))),
            1 => Request::all(),
            _ => Request::pages(Pfn(rng.below(1 << 40)), &pages),
        };
        slot.store(&req);
        assert_eq!(slot.load(), req);
    }
    // An address inside a page names that page.
    slot.store(&Request::pages(R0, &[page(0x1234)]));
    assert_eq!(slot.load().page_list(), [page(0x1000)]);
    let big = Request::pages(R0, &[page(0x1000); BATCH_PAGES + 1]);
    assert_eq!(big.scope(), Scope::Space);
    assert_eq!(big.root(), R0);
}

/// Random machines: every CPU that holds a translation a request names is
/// asked (or is the shooter), none that is offline or is the shooter is,
/// and a request of the user half asks no CPU that runs another root.
#[test]
fn targets_are_the_cpus_that_may_cache_the_request() {
    let mut rng = Rng(0x007a_59e7);
    for _ in 0..20_000 {
        let n = 1 + rng.index(MAX_CPUS);
        let me = rng.index(n);
        let online = CpuMask(rng.next())
            .and(CpuMask::first_n(n))
            .or(CpuMask::one(me));
        let loaded: Vec<Pfn> = (0..n).map(|_| ROOTS[rng.index(3)]).collect();
        let i = rng.index(N);
        let req = covering_request(&mut rng, i);
        let t = targets(&req, me, online, |c| loaded[c], KERNEL, KERNEL_HALF);
        assert!(!t.contains(me));
        assert_eq!(t.without(online), CpuMask::NONE, "only online CPUs");
        for c in online.iter().filter(|&c| c != me) {
            // CPU c may hold entry i's translation if it is global or of
            // the root c has loaded.
            let may_hold = ENTRIES[i].global() || ENTRIES[i].root == loaded[c];
            assert!(!may_hold || t.contains(c), "cpu {c} missed: {req:?}");
            let user_only = req.scope() != Scope::All
                && req.root() != KERNEL
                && req.page_list().iter().all(|p| p.va < KERNEL_HALF);
            if user_only && loaded[c] != req.root() {
                assert!(!t.contains(c), "cpu {c} asked for no reason: {req:?}");
            }
        }
    }
}
