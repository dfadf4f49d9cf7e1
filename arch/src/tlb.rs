//! TLB shootdown: the [`TlbFlush`] the booted kernel flushes through.
//!
//! [`Shootdown`] flushes this CPU's TLB as [`Tlb`] does, and makes every
//! other CPU that may cache what the flush names do the same before it
//! returns: `kernel::mm::shootdown` decides which (the root each CPU
//! loaded, recorded by [`crate::paging::load_root`] right before its CR3
//! write; every online CPU for the kernel half) and runs the handshake;
//! this module delivers the requests and carries them out.
//!
//! # Why NMIs
//!
//! Every lock of this kernel is an `IrqMutex`, held with interrupts off,
//! and shootdowns happen under locks (a kernel stack is freed under the
//! scheduler's; later munmap under the process lock's). A target spinning
//! with interrupts off for a lock the shooter holds would never take an
//! ordinary IPI, and the shooter would wait for it for ever. An NMI
//! reaches a CPU whatever it does, so requests go by NMI, and the shooter
//! itself may wait for the shootdown lock or for answers with interrupts
//! off. The handler ([`on_nmi`], through `smp::on_nmi`) takes no lock,
//! allocates nothing and cannot fault (it touches its per-CPU area, the
//! shootdown statics and the TLB): an `iretq` from a nested exception
//! would unblock NMIs early, and a second NMI would overwrite the first's
//! frame on the one NMI stack.

use core::sync::atomic::Ordering;

use kernel::mm::Pfn;
use kernel::mm::shootdown::{Remote, Request, Scope, Shootdowns};
use kernel::mm::tlb::{FlushPage, TlbFlush};
use kernel::task::sched::CpuMask;

use crate::layout::KERNEL_HALF;
use crate::paging::{self, Tlb};
use crate::percpu;

static SHOOTDOWNS: Shootdowns = Shootdowns::new(KERNEL_HALF);

/// Every CPU's TLB that may cache a translation, as one [`TlbFlush`].
pub struct Shootdown;

/// The one the kernel uses (`BootMachine::tlb`, the kernel half's edits).
pub static SHOOTDOWN: Shootdown = Shootdown;

impl TlbFlush for Shootdown {
    fn flush_pages(&self, root: Pfn, pages: &[FlushPage]) {
        shoot(&Request::pages(root, pages));
    }

    fn flush_space(&self, root: Pfn) {
        shoot(&Request::space(root));
    }

    fn flush_all(&self) {
        shoot(&Request::all());
    }
}

/// How long a target may take to answer: seconds, since under TCG on a
/// loaded host a virtual CPU may wait long for a core. One that takes
/// longer is stuck, and a panic naming it beats a hang.
const ANSWER_SECONDS: u64 = 10;

fn shoot(req: &Request) {
    if !percpu::ready() {
        // Before the first CPU's area: one CPU, and no index to name it.
        carry_out(req);
        return;
    }
    // One CPU from the fence to the last answer: its own index and TLB.
    crate::cpu::without_interrupts(|| {
        let me = percpu::index();
        let bound = match crate::apic::tsc_hz() {
            // Not calibrated: no other CPU is online yet either.
            0 => u64::MAX,
            hz => hz.saturating_mul(ANSWER_SECONDS),
        };
        if let Err(e) = SHOOTDOWNS.shoot(me, req, &Machine, bound) {
            panic!(
                "TLB shootdown from cpu {me}: cpu {} did not answer in {ANSWER_SECONDS} s \
                 (asked for generation {}, acknowledged {})",
                e.cpu, e.generation, e.acknowledged
            );
        }
    });
}

struct Machine;

impl Remote for Machine {
    fn online(&self) -> CpuMask {
        let mut mask = CpuMask::NONE;
        for cpu in percpu::all().filter(|c| c.is_online()) {
            mask.insert(cpu.index());
        }
        mask
    }

    fn interrupt(&self, cpu: usize) {
        if let Some(target) = percpu::cpu(cpu) {
            percpu::this_cpu()
                .stats
                .shootdowns_sent
                .fetch_add(1, Ordering::Relaxed);
            // The request's stores are ordered before the ICR write, an
            // uncached store (x86 keeps stores in order).
            crate::apic::send_nmi(target.apic_id());
        }
    }

    fn flush_local(&self, req: &Request) {
        carry_out(req);
    }

    fn relax(&self) {
        // PAUSE: under TCG's round robin (-icount) it also lets the other
        // virtual CPUs run, which the wait is for.
        core::hint::spin_loop();
    }

    fn now(&self) -> u64 {
        crate::cpu::rdtsc()
    }
}

/// One CPU's part of a request: its own TLB. A space flush of the
/// kernel's root drops global translations too, since every kernel leaf is
/// global and a CR3 reload would keep them all.
fn carry_out(req: &Request) {
    match req.scope() {
        Scope::Pages => Tlb.flush_pages(req.root(), req.page_list()),
        Scope::Space if req.root() == SHOOTDOWNS.kernel_root() => paging::flush_all(),
        Scope::Space => Tlb.flush_space(req.root()),
        Scope::All => paging::flush_all(),
    }
}

/// The NMI handler's TLB half: carries out what is pending for this CPU.
/// Returns whether there was anything.
pub(crate) fn on_nmi() -> bool {
    let me = percpu::this_cpu();
    let took = SHOOTDOWNS.take(me.index(), carry_out);
    if took {
        me.stats.shootdowns_taken.fetch_add(1, Ordering::Relaxed);
    }
    took
}

/// This CPU is about to load `root` into CR3 (see `kernel::mm::shootdown`
/// for why right before).
pub(crate) fn note_loaded(root: Pfn) {
    if percpu::ready() {
        SHOOTDOWNS.note_loaded(percpu::index(), root);
    }
}

/// Records the kernel's root: its space is every CPU's.
pub fn set_kernel_root(root: Pfn) {
    SHOOTDOWNS.set_kernel_root(root);
}

/// For a CPU that has just marked itself online (a sequentially
/// consistent store): shootdowns before that store skipped it, so it drops
/// everything it may have cached while it started.
pub(crate) fn came_online() {
    paging::flush_all();
}

/// The root CPU `cpu` loaded last, as shootdowns see it.
pub fn loaded_root(cpu: usize) -> Pfn {
    SHOOTDOWNS.loaded(cpu)
}

/// The CPUs the last shootdown asked (test switch or not).
pub fn last_targets() -> CpuMask {
    SHOOTDOWNS.last_targets()
}

/// Test kernels only: shootdowns flush this CPU alone, as if the NMIs were
/// left out, so a test can show that it catches the stale translation
/// they leave behind.
#[cfg(feature = "test-hooks")]
pub fn set_skip_remote_for_test(skip: bool) {
    SHOOTDOWNS.set_skip_remote(skip);
}
