//! The periodic timer: the 8253/8254 PIT on IRQ 0 through the 8259 PIC.
//!
//! The PIT ticks from `init` until the local APIC timers take over
//! (`switch_to_apic`, from SMP bring-up): then each CPU's own APIC timer
//! ticks at [`HZ`], calibrated against the PIT's channel 2 (`apic.rs`),
//! the PIC is masked, each CPU's ticks drive its scheduler, and the
//! bootstrap CPU's also drive the clock.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::sync::IrqMutex;
use pic8259::ChainedPics;
use x86_64::instructions::port::Port;

use crate::trap::{self, TrapFrame};

/// Timer interrupts per second.
pub const HZ: u64 = 100;
/// First vector of the remapped PIC; IRQ n arrives on vector 32 + n, above
/// the exceptions the CPU reserves.
pub const PIC_BASE: u8 = 32;
/// The timer's vector.
pub const TIMER_VECTOR: u8 = PIC_BASE;

const PIT_HZ: u64 = 1_193_182;
const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;

static PICS: IrqMutex<ChainedPics> = IrqMutex::ranked(
    kernel::sync::rank::PIC,
    // SAFETY: the offsets put IRQs 0-15 on vectors 32-47, clear of the CPU
    // exception vectors.
    unsafe { ChainedPics::new(PIC_BASE, PIC_BASE + 8) },
);

static TICKS: AtomicU64 = AtomicU64::new(0);
static TICK_HOOK: spin::Once<fn(&mut TrapFrame)> = spin::Once::new();

/// Remaps the PIC, masks everything but the timer, programs the PIT to
/// [`HZ`] and installs the tick handler. Interrupts stay off until the
/// caller enables them.
pub fn init() {
    let mut pics = PICS.lock();
    // SAFETY: the PIC ports exist on every PC; remapping before interrupts
    // are enabled means no IRQ arrives on an exception vector.
    unsafe {
        pics.initialize();
        pics.write_masks(!0x01, 0xff);
    }
    drop(pics);
    program_pit();
    trap::set_handler(TIMER_VECTOR, on_tick);
}

fn program_pit() {
    let divisor = (PIT_HZ / HZ) as u16;
    let mut command = Port::<u8>::new(PIT_COMMAND);
    let mut data = Port::<u8>::new(PIT_CHANNEL0);
    // SAFETY: channel 0, lobyte/hibyte, mode 2 (rate generator): only the
    // timer's period changes.
    unsafe {
        command.write(0x34);
        data.write(divisor as u8);
        data.write((divisor >> 8) as u8);
    }
}

/// Registers the function called on every tick (the scheduler, later).
pub fn set_tick_hook(hook: fn(&mut TrapFrame)) {
    TICK_HOOK.call_once(|| hook);
}

fn on_tick(frame: &mut TrapFrame) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    // End of interrupt first: a hook that switches tasks must not leave the
    // PIC waiting.
    // SAFETY: we are handling the timer vector, which the PIC delivered.
    unsafe { PICS.lock().notify_end_of_interrupt(TIMER_VECTOR) };
    if let Some(hook) = TICK_HOOK.get() {
        hook(frame);
    }
}

/// Timer ticks since `init`.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Nanoseconds since `init`, at tick resolution.
pub fn uptime_ns() -> u64 {
    ticks() * (1_000_000_000 / HZ)
}

// ---- The local APIC timers (several CPUs) ----

/// Channel 2 (the speaker's, gated through port 0x61) counts `count` PIT
/// periods once, from now: [`pit_one_shot_done`] says when it has.
pub(crate) fn pit_start_one_shot(count: u16) {
    let mut control = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(PIT_COMMAND);
    let mut data = Port::<u8>::new(0x42);
    // SAFETY: port 0x61 bit 0 gates channel 2 and bit 1 drives the
    // speaker (kept off); channel 2, lobyte/hibyte, mode 0 (interrupt on
    // terminal count, which only shows in port 0x61 bit 5: channel 2 has
    // no IRQ). Channel 0 is untouched.
    unsafe {
        let v = control.read();
        control.write((v & !0x02) | 0x01);
        command.write(0xb0);
        data.write(count as u8);
        data.write((count >> 8) as u8);
    }
}

/// Whether channel 2's count since [`pit_start_one_shot`] has run out.
pub(crate) fn pit_one_shot_done() -> bool {
    // SAFETY: reading port 0x61 has no side effect.
    unsafe { Port::<u8>::new(0x61).read() & 0x20 != 0 }
}

/// PIT input clock periods in one tick.
pub(crate) const PIT_TICK_COUNT: u64 = PIT_HZ / HZ;
pub(crate) const PIT_CLOCK_HZ: u64 = PIT_HZ;

/// Masks every PIC line: the local APIC timers tick from now on (the PIC
/// stays remapped, so a spurious IRQ still lands above the exceptions).
pub fn mask_pic() {
    // SAFETY: writing the mask registers only silences the PIC's lines.
    unsafe { PICS.lock().write_masks(0xff, 0xff) };
}

/// Moves the tick from the PIT to this CPU's local APIC timer: the PIC is
/// masked, and every CPU's timer vector runs [`on_apic_tick`].
pub fn switch_to_apic() {
    trap::set_handler(crate::apic::TIMER_VECTOR, on_apic_tick);
    mask_pic();
}

/// A local APIC timer tick, on any CPU: counted in the CPU's area (idle
/// when it woke a halted CPU) and passed to the tick hook (the scheduler
/// of that CPU); on the bootstrap CPU it also advances the clock, as the
/// PIT's tick did.
fn on_apic_tick(frame: &mut TrapFrame) {
    let cpu = crate::percpu::this_cpu();
    cpu.stats.ticks.fetch_add(1, Ordering::Relaxed);
    if cpu.take_halted() {
        cpu.stats.idle_ticks.fetch_add(1, Ordering::Relaxed);
    }
    // End of interrupt first, as for the PIT: a hook that switches tasks
    // must not leave the APIC waiting.
    crate::apic::eoi();
    if cpu.index() == 0 {
        TICKS.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(hook) = TICK_HOOK.get() {
        hook(frame);
    }
}

/// The two PICs' interrupt masks (master, slave), as the PICs report them.
pub fn pic_masks() -> (u8, u8) {
    // SAFETY: reading the mask registers (OCW1) has no side effect.
    let [master, slave] = unsafe { PICS.lock().read_masks() };
    (master, slave)
}
