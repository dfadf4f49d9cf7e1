//! The local APIC, in xAPIC mode: one page of registers at the physical
//! address `IA32_APIC_BASE` names, the same on every CPU (each sees its
//! own APIC there), mapped uncached at [`LAPIC_VA`] by boot.
//!
//! QEMU 7.2's TCG has no x2APIC, so the registers are memory-mapped; each
//! is a 32-bit word at a 16-byte-aligned offset (Intel SDM vol. 3 §11.4.1,
//! table 11-1). Here: enabling a CPU's APIC, its timer (calibrated once
//! against the PIT, the same count on every CPU: all APIC timers run from
//! one bus clock), end of interrupt, and inter-processor interrupts.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;

use crate::layout::LAPIC_VA;

/// The APIC timer's vector, on every CPU.
pub const TIMER_VECTOR: u8 = 0xf0;
/// Inter-processor interrupts (`smp.rs`: pings and their answers).
pub const IPI_VECTOR: u8 = 0xf1;
/// The scheduler's kick: look at the run queue ([`crate::smp::kick`]).
pub const RESCHEDULE_VECTOR: u8 = 0xf2;
/// The APIC's own error interrupt.
pub const ERROR_VECTOR: u8 = 0xfe;
/// Spurious interrupts (SDM §11.9): no EOI is due for them.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const REG_ID: usize = 0x20;
const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_ESR: usize = 0x280;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_LVT_LINT0: usize = 0x350;
const REG_LVT_ERROR: usize = 0x370;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

const IA32_APIC_BASE: u32 = 0x1b;
const LVT_MASKED: u32 = 1 << 16;
const TIMER_PERIODIC: u32 = 1 << 17;
/// Divide configuration 0b0011: the bus clock divided by 16.
const DIVIDE_BY_16: u32 = 0x3;
const SVR_ENABLE: u32 = 1 << 8;

// ICR fields (SDM §11.6.1).
const ICR_FIXED: u32 = 0;
const ICR_NMI: u32 = 0b100 << 8;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_PENDING: u32 = 1 << 12;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;

/// Whether boot mapped the registers (before that no IPI can be sent).
static MAPPED: AtomicBool = AtomicBool::new(false);
/// The calibrated timer count for one tick, the same on every CPU.
static TICK_COUNT: AtomicU32 = AtomicU32::new(0);
/// TSC cycles per second, measured with the same PIT window.
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Physical address of the APIC's registers, from `IA32_APIC_BASE`
/// (bits 12 and up; bit 11 is the global enable).
pub fn phys_base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; reading it has no
    // side effect.
    let v = unsafe { Msr::new(IA32_APIC_BASE).read() };
    v & 0x000f_ffff_ffff_f000
}

/// Called by boot once the register page is mapped at [`LAPIC_VA`].
pub fn set_mapped() {
    MAPPED.store(true, Ordering::Release);
}

pub fn is_mapped() -> bool {
    MAPPED.load(Ordering::Acquire)
}

fn reg(offset: usize) -> *mut u32 {
    (LAPIC_VA as usize + offset) as *mut u32
}

fn read(offset: usize) -> u32 {
    // SAFETY: boot mapped the APIC's page uncached at LAPIC_VA before any
    // caller runs (`set_mapped`); `offset` is one of the register offsets
    // above, 16-byte aligned inside the page. Volatile: a device register.
    unsafe { reg(offset).read_volatile() }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; writes to these registers change only the
    // APIC's own state.
    unsafe { reg(offset).write_volatile(value) }
}

/// This CPU's APIC id as CPUID leaf 1 reports it (the initial id): for
/// the bootstrap CPU before the registers are mapped.
pub fn id_from_cpuid() -> u32 {
    core::arch::x86_64::__cpuid(1).ebx >> 24
}

/// This CPU's APIC id, from its ID register.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Enables this CPU's APIC: spurious vector and software enable, every
/// priority accepted, LINT0 masked (the PIC's virtual wire: the PIC is
/// masked once the APIC timers run), errors on their own vector.
pub fn init_cpu() {
    write(REG_SVR, SVR_ENABLE | SPURIOUS_VECTOR as u32);
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_ERROR, ERROR_VECTOR as u32);
    // The error status register latches on a write (SDM §11.5.3).
    write(REG_ESR, 0);
    write(REG_ESR, 0);
}

/// Ends the interrupt being handled (not for spurious ones).
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Starts this CPU's timer: periodic, [`TIMER_VECTOR`], the calibrated
/// count (see [`calibrate`]).
pub fn start_timer() {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, TIMER_PERIODIC | TIMER_VECTOR as u32);
    write(REG_TIMER_INITIAL, TICK_COUNT.load(Ordering::Relaxed));
}

/// This CPU's timer as its registers say: (LVT entry, divide
/// configuration, initial count). Tests compare them across CPUs.
pub fn timer_registers() -> (u32, u32, u32) {
    (
        read(REG_LVT_TIMER),
        read(REG_TIMER_DIVIDE),
        read(REG_TIMER_INITIAL),
    )
}

/// The calibrated timer count per tick (0 before [`calibrate`]).
pub fn tick_count() -> u32 {
    TICK_COUNT.load(Ordering::Relaxed)
}

/// TSC cycles per second (0 before [`calibrate`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// What [`calibrate`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    pub tick_count: u32,
    pub tsc_hz: u64,
    /// Measurements made: a window whose edges took too long to read
    /// (the host preempted QEMU there) is measured again.
    pub tries: u32,
}

/// Measures the APIC timer (divided by 16) and the TSC over one tick of
/// the PIT's channel 2, on this CPU with interrupts off, and keeps the
/// results for every CPU.
///
/// Each edge of the window is read as "TSC, PIT, APIC count, TSC"; the
/// window counts only if both edges took under 1/200 of it (on real
/// hardware they always do; under TCG a host that preempts QEMU right
/// there would skew the count), else it is measured again, up to 8 times,
/// keeping the tightest. Under `-icount` every try gives the same figures.
pub fn calibrate() -> Calibration {
    const TRIES: u32 = 8;
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED);
    let window = crate::timer::PIT_TICK_COUNT;
    // (edge time per mille of the window, APIC counts, TSC cycles)
    let mut best: Option<(u64, u64, u64)> = None;
    let mut tries = 0;
    for _ in 0..TRIES {
        tries += 1;
        write(REG_TIMER_INITIAL, u32::MAX);
        let t0 = crate::cpu::rdtsc();
        crate::timer::pit_start_one_shot(window as u16);
        let a0 = read(REG_TIMER_CURRENT);
        let t1 = crate::cpu::rdtsc();
        // The TSC before the last read that still saw the count running:
        // the count ran out between it and the read that saw it done.
        let mut running = t0;
        let (a1, t3) = loop {
            let t2 = crate::cpu::rdtsc();
            let done = crate::timer::pit_one_shot_done();
            let a1 = read(REG_TIMER_CURRENT);
            let t3 = crate::cpu::rdtsc();
            if done {
                break (a1, t3);
            }
            running = t2;
        };
        let edges = (t1 - t0) + (t3 - running);
        let cycles = (t3 + running) / 2 - (t0 + t1) / 2;
        let counts = (a0 - a1) as u64;
        let ratio = edges * 1000 / cycles.max(1);
        if best.is_none_or(|(r, ..)| ratio < r) {
            best = Some((ratio, counts, cycles));
        }
        if edges * 200 < cycles {
            break;
        }
    }
    let (_, counts, cycles) = best.unwrap_or((0, 0, 0));
    let hz = crate::timer::HZ;
    let pit = crate::timer::PIT_CLOCK_HZ;
    // The window is PIT_TICK_COUNT periods of the PIT's clock, a hair
    // under one tick: scale to exactly 1/HZ seconds.
    let tick_count = (counts as u128 * pit as u128 / (hz as u128 * window as u128)) as u32;
    let tsc_hz = (cycles as u128 * pit as u128 / window as u128) as u64;
    write(REG_TIMER_INITIAL, 0);
    TICK_COUNT.store(tick_count.max(1), Ordering::Relaxed);
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    Calibration {
        tick_count,
        tsc_hz,
        tries,
    }
}

/// Writes the ICR: destination first, then the low word, which sends.
/// Interrupts are off in between, so an interrupt handler sending an IPI
/// of its own cannot change the destination under this one.
fn send(apic_id: u32, low: u32) {
    crate::cpu::without_interrupts(|| {
        wait_idle();
        write(REG_ICR_HIGH, apic_id << 24);
        write(REG_ICR_LOW, low);
        wait_idle();
    });
}

/// Waits (boundedly) until the APIC has sent the last IPI: xAPICs want
/// no new one while the delivery status says pending.
fn wait_idle() {
    for _ in 0..1_000_000 {
        if read(REG_ICR_LOW) & ICR_PENDING == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// A fixed interrupt on `vector` to the CPU with APIC id `apic_id`.
pub fn send_ipi(apic_id: u32, vector: u8) {
    send(apic_id, ICR_FIXED | ICR_ASSERT | vector as u32);
}

/// A fixed interrupt on `vector` to every CPU but this one.
pub fn send_ipi_all_others(vector: u8) {
    send(0, ICR_ALL_BUT_SELF | ICR_FIXED | ICR_ASSERT | vector as u32);
}

/// An NMI to one CPU: it arrives even where interrupts are off (the stop
/// of a failing kernel).
pub fn send_nmi(apic_id: u32) {
    send(apic_id, ICR_NMI | ICR_ASSERT);
}

/// INIT to one CPU: it resets and waits for a start-up IPI.
pub fn send_init(apic_id: u32) {
    send(apic_id, ICR_INIT | ICR_ASSERT);
}

/// A start-up IPI: the CPU starts in real mode at `page << 12`.
pub fn send_startup(apic_id: u32, page: u8) {
    send(apic_id, ICR_STARTUP | ICR_ASSERT | page as u32);
}
