//! The periodic timer: the 8253/8254 PIT on IRQ 0 through the 8259 PIC.
//!
//! One CPU and a fixed rate make the PIT the simplest correct choice; the
//! local APIC timer can replace it when Faultline runs on several CPUs.

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

// SAFETY: the offsets put IRQs 0-15 on vectors 32-47, clear of the CPU
// exception vectors.
static PICS: IrqMutex<ChainedPics> =
    IrqMutex::new(unsafe { ChainedPics::new(PIC_BASE, PIC_BASE + 8) });

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
