//! Application processors: starting them, pinging them, stopping them.
//!
//! # Start-up (Intel SDM vol. 3 §8.4.4, "MP initialization example")
//!
//! An AP waits for INIT and then a start-up IPI (SIPI), whose vector is
//! the page it starts at, in real mode. [`install_trampoline`] copies the
//! trampoline below to [`TRAMPOLINE_PHYS`] (below 1 MiB, as a SIPI needs)
//! with three page-table pages after it: a root whose kernel half is the
//! kernel's own entries and whose entry 0 maps the first 2 MiB at their
//! physical addresses, so the trampoline keeps running when paging comes
//! on. For each AP, [`start_ap`] writes the kernel's root, the AP's stack
//! and its per-CPU area into the trampoline's data, sends INIT, a SIPI, and
//! a second SIPI if the AP has not marked the trampoline within 200 µs
//! (the SDM sends two because the first may be lost on old systems), then
//! waits for the AP to come online (it sends an IPI when it is, which
//! ends the starter's halt). The SDM's 10 ms pause after INIT is
//! for processors before the P6 family; like Linux on family 6 and later,
//! Faultline does not wait.
//!
//! The AP: real mode, a flat GDT, protected mode; PAE, the trampoline's
//! root, EFER.LME and NXE (the kernel's tables use NX), paging with
//! write-protect; a 64-bit code segment; its stack; a jump to the kernel
//! half, which switches to the kernel's root (the low page is mapped no
//! more) and calls [`ap_rust_entry`]: per-CPU area in GS, its own GDT,
//! TSS and IST stacks, the IDT, the `syscall` MSRs, the FPU registers,
//! its local APIC and timer, then the main function boot registered.
//!
//! # Pings
//!
//! [`ping`] and [`ping_all_others`] ask CPUs to answer: the asker sets its
//! bit in each target's `pings` and sends [`IPI_VECTOR`]; the target's
//! handler sends an IPI back to each asker after setting its own bit in
//! the asker's `answers`; the asker's handler moves those bits to
//! `received`, which the asker waits on (halting between interrupts).
//! [`call_on`] is a ping that has the target run a function first.
//!
//! # NMIs: stopping and TLB shootdowns
//!
//! A CPU that panics or faults in the kernel calls [`stop_others`]: the
//! first to do so sends every other online CPU an NMI, whose handler halts
//! for good ([`stopped`]), and reports; any later one just halts. TLB
//! shootdowns come by NMI too (`crate::tlb` says why): the handler
//! ([`on_nmi`]) stops the CPU if a stop was asked, else carries out the
//! shootdown request pending for it, if any, and returns.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use spin::Once;

use crate::apic::{self, IPI_VECTOR};
use crate::layout::phys_to_virt;
use crate::percpu::{self, PerCpu};
use crate::trap::TrapFrame;

/// The trampoline's physical address: page 8, the SIPI's vector.
pub const TRAMPOLINE_PHYS: u64 = 0x8000;
/// Pages it takes: code and data, then the root, PDPT and PD.
pub const TRAMPOLINE_PAGES: u64 = 4;

core::arch::global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global faultline_ap_trampoline
    .global faultline_ap_trampoline_end
    .global faultline_ap_cr3
    .global faultline_ap_stack
    .global faultline_ap_cpu
    .global faultline_ap_started
faultline_ap_trampoline:
    .code16
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    movb $1, faultline_ap_started - faultline_ap_trampoline
    lgdtl ap_gdt_ptr - faultline_ap_trampoline
    movl %cr0, %eax
    orl $1, %eax                    /* protection on */
    movl %eax, %cr0
    ljmpl $0x08, $({base} + ap_protected - faultline_ap_trampoline)

    .code32
ap_protected:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $(1 << 5), %eax             /* PAE */
    movl %eax, %cr4
    movl $({base} + 0x1000), %eax   /* the trampoline's root */
    movl %eax, %cr3
    movl $0xC0000080, %ecx          /* EFER */
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax   /* long mode, no-execute */
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16)), %eax  /* paging, write-protect */
    movl %eax, %cr0
    ljmpl $0x18, $({base} + ap_long - faultline_ap_trampoline)

    .code64
ap_long:
    movq {base} + faultline_ap_stack - faultline_ap_trampoline, %rsp
    movq {base} + faultline_ap_cpu - faultline_ap_trampoline, %rdi
    movq {base} + faultline_ap_cr3 - faultline_ap_trampoline, %rbx
    movabsq $faultline_ap_high, %rax
    jmpq *%rax

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
    .quad 0x00af9a000000ffff        /* 0x18: 64-bit code */
ap_gdt_ptr:
    .word 31
    .long {base} + ap_gdt - faultline_ap_trampoline
    .balign 8
faultline_ap_cr3:     .quad 0
faultline_ap_stack:   .quad 0
faultline_ap_cpu:     .quad 0
faultline_ap_started: .quad 0
faultline_ap_trampoline_end:

    .section .text.ap_entry, "ax"
faultline_ap_high:
    movq %rbx, %cr3                 /* the kernel's own tables */
    xorl %ebp, %ebp
    movabsq ${entry}, %rax
    callq *%rax
    ud2
    "#,
    base = const TRAMPOLINE_PHYS,
    entry = sym ap_rust_entry,
    options(att_syntax)
);

unsafe extern "C" {
    static faultline_ap_trampoline: u8;
    static faultline_ap_trampoline_end: u8;
    static faultline_ap_cr3: u8;
    static faultline_ap_stack: u8;
    static faultline_ap_cpu: u8;
    static faultline_ap_started: u8;
}

/// Where a trampoline symbol lies in the installed copy (direct map).
fn installed(sym: *const u8) -> *mut u64 {
    let offset = sym as u64 - (&raw const faultline_ap_trampoline) as u64;
    phys_to_virt(TRAMPOLINE_PHYS + offset) as *mut u64
}

/// Copies the trampoline to [`TRAMPOLINE_PHYS`] and builds its tables
/// over the kernel root `kernel_root` (a physical address).
///
/// # Safety
/// The [`TRAMPOLINE_PAGES`] pages at [`TRAMPOLINE_PHYS`] must be RAM in
/// the direct map that nothing else uses, now or later.
pub unsafe fn install_trampoline(kernel_root: u64) {
    let start = (&raw const faultline_ap_trampoline) as u64;
    let len = (&raw const faultline_ap_trampoline_end) as u64 - start;
    assert!(len <= 4096, "the AP trampoline outgrew its page");
    let dst = phys_to_virt(TRAMPOLINE_PHYS) as *mut u8;
    // SAFETY: the caller gives us the pages; the source is the template in
    // the kernel's rodata, `len` bytes long, and the two do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, dst, len as usize) };
    let table = |page: u64| phys_to_virt(TRAMPOLINE_PHYS + page * 4096) as *mut u64;
    let (root, pdpt, pd) = (table(1), table(2), table(3));
    let kernel = phys_to_virt(kernel_root) as *const u64;
    const PRESENT_WRITABLE: u64 = 0x3;
    const HUGE: u64 = 0x80;
    // SAFETY: three whole pages of the caller's, and the kernel root is a
    // page-table page in the direct map; the kernel half's top-level
    // entries never change after boot (layout.rs), so the copy stays true.
    unsafe {
        core::ptr::write_bytes(root as *mut u8, 0, 3 * 4096);
        for i in 256..512 {
            root.add(i).write(kernel.add(i).read_volatile());
        }
        root.write((TRAMPOLINE_PHYS + 2 * 4096) | PRESENT_WRITABLE);
        pdpt.write((TRAMPOLINE_PHYS + 3 * 4096) | PRESENT_WRITABLE);
        pd.write(HUGE | PRESENT_WRITABLE);
    }
}

/// What an AP runs once set up, with interrupts off (boot's).
static AP_MAIN: Once<fn(&'static PerCpu) -> !> = Once::new();

/// Registers the function every AP ends in; it calls [`report_online`]
/// once it has said what it has to say.
pub fn set_ap_main(main: fn(&'static PerCpu) -> !) {
    AP_MAIN.call_once(|| main);
}

/// Called by an AP: its set-up is complete. Wakes the CPU that started
/// it, which halts while it waits.
pub fn report_online(cpu: &'static PerCpu) {
    cpu.set_online();
    if let Some(bsp) = percpu::cpu(0) {
        apic::send_ipi(bsp.apic_id(), IPI_VECTOR);
    }
}

/// Why an AP did not come online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// It never reached the trampoline (no SIPI arrived or it is not there).
    NoStart,
    /// It ran the trampoline but did not finish its set-up in time.
    NotOnline,
}

/// Starts the AP whose area is `cpu` (registered, not yet running) on the
/// stack whose top is `stack_top`, and waits until it is online.
///
/// # Safety
/// [`install_trampoline`] must have run; `stack_top` must be the top of a
/// mapped kernel stack that only this AP will use; `kernel_root` the
/// kernel's page-table root.
pub unsafe fn start_ap(
    cpu: &'static PerCpu,
    stack_top: u64,
    kernel_root: u64,
) -> Result<(), StartError> {
    let started = installed(&raw const faultline_ap_started);
    // SAFETY: words of the installed trampoline's data (the caller
    // installed it); no AP runs it now: the previous one is online, past
    // the trampoline, before the next is started.
    unsafe {
        installed(&raw const faultline_ap_cr3).write_volatile(kernel_root);
        installed(&raw const faultline_ap_stack).write_volatile(stack_top);
        installed(&raw const faultline_ap_cpu).write_volatile(cpu as *const PerCpu as u64);
        started.write_volatile(0);
    }
    let page = (TRAMPOLINE_PHYS >> 12) as u8;
    apic::send_init(cpu.apic_id());
    apic::send_startup(cpu.apic_id(), page);
    // SAFETY: as above; the AP writes this word in real mode.
    let ran = || unsafe { started.read_volatile() } != 0;
    if !wait_for_us(200, ran) {
        apic::send_startup(cpu.apic_id(), page);
        if !wait_for_us(START_TIMEOUT_US, ran) {
            return Err(StartError::NoStart);
        }
    }
    if wait_for_us(START_TIMEOUT_US, || cpu.is_online()) {
        Ok(())
    } else {
        Err(StartError::NotOnline)
    }
}

/// How long an AP may take to start and to come online. Generous: under
/// TCG on a loaded host a virtual CPU's thread may wait long for a core.
const START_TIMEOUT_US: u64 = 10_000_000;

/// Waits until `cond` holds or `us` microseconds have passed by the TSC.
/// With interrupts on it halts between checks, woken by an IPI (an AP
/// that comes online sends one, so does an answer) or the next tick:
/// under QEMU's round-robin TCG (`-icount`) a spinning CPU would keep the
/// others from running until its time slice ends. With them off it spins.
fn wait_for_us(us: u64, mut cond: impl FnMut() -> bool) -> bool {
    if !crate::cpu::interrupts_enabled() {
        return spin_for_us(us, cond);
    }
    let limit = apic::tsc_hz() / 1_000_000 * us;
    let start = crate::cpu::rdtsc();
    loop {
        // Checked with interrupts off, then `sti; hlt`: a wake-up that
        // arrives after the check still ends the halt.
        crate::cpu::disable_interrupts();
        if cond() {
            crate::cpu::enable_interrupts();
            return true;
        }
        if crate::cpu::rdtsc().wrapping_sub(start) >= limit {
            crate::cpu::enable_interrupts();
            return cond();
        }
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// Spins until `cond` or `us` microseconds by the TSC (calibrated).
fn spin_for_us(us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let cycles = apic::tsc_hz() / 1_000_000 * us;
    let start = crate::cpu::rdtsc();
    while crate::cpu::rdtsc().wrapping_sub(start) < cycles {
        if cond() {
            return true;
        }
        core::hint::spin_loop();
    }
    cond()
}

/// An AP's first Rust code, on its own stack and the kernel's tables,
/// interrupts off, GS not yet set.
extern "C" fn ap_rust_entry(cpu: &'static PerCpu) -> ! {
    percpu::install(cpu);
    // The trampoline loaded the kernel's root itself, with GS not set yet.
    crate::tlb::note_loaded(crate::paging::current_root());
    crate::gdt::init();
    crate::trap::init();
    crate::syscall::init_cpu();
    crate::fpu::init_ap();
    apic::init_cpu();
    cpu.set_reported_apic_id(apic::id());
    apic::start_timer();
    match AP_MAIN.get() {
        Some(main) => main(cpu),
        None => crate::cpu::halt_forever(),
    }
}

/// What a reschedule IPI runs on the CPU it reaches: the scheduler's look
/// at its run queue, set once by boot.
static RESCHEDULE: Once<fn()> = Once::new();

/// Sets what [`kick`] makes its target run.
pub fn set_reschedule_hook(hook: fn()) {
    RESCHEDULE.call_once(|| hook);
}

/// Asks CPU `index` to run the reschedule hook: one IPI, sent and not
/// waited for (so it may be sent with interrupts off and locks held; it
/// takes none). Nothing for an index with no CPU.
pub fn kick(index: usize) {
    if let Some(cpu) = percpu::cpu(index) {
        apic::send_ipi(cpu.apic_id(), apic::RESCHEDULE_VECTOR);
    }
}

fn on_reschedule(_: &mut TrapFrame) {
    percpu::this_cpu()
        .stats
        .ipis
        .fetch_add(1, Ordering::Relaxed);
    // End of interrupt first, as for the tick: the hook may switch tasks.
    apic::eoi();
    if let Some(hook) = RESCHEDULE.get() {
        hook();
    }
}

/// Installs the handlers of the APIC's own vectors: IPIs, errors and
/// spurious interrupts. Every CPU shares them (one IDT).
pub fn init_vectors() {
    crate::trap::set_handler(IPI_VECTOR, on_ipi);
    crate::trap::set_handler(apic::RESCHEDULE_VECTOR, on_reschedule);
    crate::trap::set_handler(apic::ERROR_VECTOR, |_| {
        log::warn!("local APIC error on cpu {}", percpu::index());
        apic::eoi();
    });
    // A spurious interrupt is not in service: no EOI (SDM §11.9).
    crate::trap::set_handler(apic::SPURIOUS_VECTOR, |_| {});
}

fn on_ipi(_: &mut TrapFrame) {
    let me = percpu::this_cpu();
    me.stats.ipis.fetch_add(1, Ordering::Relaxed);
    let answers = me.answers.swap(0, Ordering::AcqRel);
    me.received.fetch_or(answers, Ordering::AcqRel);
    let call = me.call.swap(0, Ordering::AcqRel);
    if call != 0 {
        // SAFETY: only `call_on` stores here, always a `fn()`'s address.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(call) };
        f();
    }
    let mut asked = me.pings.swap(0, Ordering::AcqRel);
    while asked != 0 {
        let index = asked.trailing_zeros() as usize;
        asked &= asked - 1;
        if let Some(asker) = percpu::cpu(index) {
            asker.answers.fetch_or(1 << me.index(), Ordering::AcqRel);
            apic::send_ipi(asker.apic_id(), IPI_VECTOR);
        }
    }
    apic::eoi();
}

/// Why a ping got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingError {
    /// Interrupts are off here: the answer could never be taken.
    InterruptsOff,
    /// The target is this CPU, or not an online CPU.
    BadTarget,
    /// Some CPU (a bit per index) did not answer in time.
    NoAnswer(u64),
    /// The target has a call from another CPU still to run.
    Busy,
}

/// Pings `target` and waits (halting) for its answer, at most
/// `timeout_us` microseconds. Returns the round trip in TSC cycles.
pub fn ping(target: &PerCpu, timeout_us: u64) -> Result<u64, PingError> {
    let me = percpu::this_cpu();
    if target.index() == me.index() || !target.is_online() {
        return Err(PingError::BadTarget);
    }
    let bit = 1u64 << target.index();
    ask(bit, timeout_us, || {
        target.pings.fetch_or(1 << me.index(), Ordering::AcqRel);
        apic::send_ipi(target.apic_id(), IPI_VECTOR);
    })
}

/// Runs `f` on `target`, in its IPI handler (interrupts off there), and
/// waits until it has returned: the ping's answer comes after the call.
/// Returns the round trip in TSC cycles.
pub fn call_on(target: &PerCpu, f: fn(), timeout_us: u64) -> Result<u64, PingError> {
    let me = percpu::this_cpu();
    if target.index() == me.index() || !target.is_online() {
        return Err(PingError::BadTarget);
    }
    if !crate::cpu::interrupts_enabled() {
        return Err(PingError::InterruptsOff);
    }
    target
        .call
        .compare_exchange(0, f as usize, Ordering::AcqRel, Ordering::Acquire)
        .map_err(|_| PingError::Busy)?;
    ping(target, timeout_us)
}

/// Pings every other online CPU with one broadcast IPI and waits for all
/// answers. Returns how many answered. Refused while a registered CPU is
/// not yet online: the broadcast would reach it before it has an IDT.
pub fn ping_all_others(timeout_us: u64) -> Result<usize, PingError> {
    let me = percpu::this_cpu();
    if percpu::all().any(|c| !c.is_online()) {
        return Err(PingError::BadTarget);
    }
    let others: u64 = percpu::all()
        .filter(|c| c.index() != me.index())
        .map(|c| 1u64 << c.index())
        .sum();
    if others == 0 {
        return Ok(0);
    }
    ask(others, timeout_us, || {
        for c in percpu::all().filter(|c| c.index() != me.index()) {
            c.pings.fetch_or(1 << me.index(), Ordering::AcqRel);
        }
        apic::send_ipi_all_others(IPI_VECTOR);
    })?;
    Ok(others.count_ones() as usize)
}

/// Sends with `send`, then waits until every CPU in `expect` answered.
/// Returns the TSC cycles from the send to the answers.
fn ask(expect: u64, timeout_us: u64, send: impl FnOnce()) -> Result<u64, PingError> {
    if !crate::cpu::interrupts_enabled() {
        return Err(PingError::InterruptsOff);
    }
    let me = percpu::this_cpu();
    me.received.fetch_and(!expect, Ordering::AcqRel);
    let start = crate::cpu::rdtsc();
    send();
    let got = || me.received.load(Ordering::Acquire) & expect == expect;
    let answered = wait_for_us(timeout_us, got);
    let elapsed = crate::cpu::rdtsc().wrapping_sub(start);
    if answered {
        Ok(elapsed)
    } else {
        let missing = expect & !me.received.load(Ordering::Acquire);
        Err(PingError::NoAnswer(missing))
    }
}

static STOPPING: AtomicBool = AtomicBool::new(false);
static STOPPED: AtomicUsize = AtomicUsize::new(0);
/// The index of the CPU that stopped the others (u64::MAX: none).
static STOPPER: AtomicU64 = AtomicU64::new(u64::MAX);

/// Whether a CPU has asked the others to stop.
pub fn stop_requested() -> bool {
    STOPPING.load(Ordering::Acquire)
}

/// The index of the CPU that is reporting a failure, if one is.
pub fn stopper() -> Option<usize> {
    let s = STOPPER.load(Ordering::Acquire);
    (s != u64::MAX).then_some(s as usize)
}

/// For a CPU about to report a failure: stops every other online CPU and
/// returns this CPU's area, or None when another CPU got there first (it
/// will report; the caller should halt in [`stopped`]). Call with
/// interrupts off.
pub fn stop_others() -> Option<&'static PerCpu> {
    let me = percpu::this_cpu();
    if STOPPING.swap(true, Ordering::AcqRel) {
        return None;
    }
    STOPPER.store(me.index() as u64, Ordering::Release);
    if !apic::is_mapped() {
        return Some(me);
    }
    let mut sent = 0;
    for c in percpu::all().filter(|c| c.index() != me.index() && c.is_online()) {
        apic::send_nmi(c.apic_id());
        sent += 1;
    }
    // Bounded: a CPU that cannot take the NMI must not hide the report.
    spin_for_us(100_000, || STOPPED.load(Ordering::Acquire) >= sent);
    Some(me)
}

/// How many CPUs have taken the stop NMI so far.
pub fn stopped_count() -> usize {
    STOPPED.load(Ordering::Acquire)
}

/// The NMI handler, on the NMI's own stack with GS this CPU's. A stop
/// comes first: a CPU reporting a failure wants the others still. An NMI
/// that finds neither a stop nor a request is a shootdown's whose work an
/// earlier pass did (NMIs coalesce, and the handler works off
/// generations), or no one's: it returns either way.
pub(crate) fn on_nmi() {
    if stop_requested() {
        stopped();
    }
    crate::tlb::on_nmi();
}

/// Where a stopped CPU ends: NMIs stay blocked (no iretq ever comes), and
/// interrupts are off.
pub fn stopped() -> ! {
    STOPPED.fetch_add(1, Ordering::AcqRel);
    crate::cpu::halt_forever()
}
