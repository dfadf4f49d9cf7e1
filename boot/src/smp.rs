//! Several CPUs: the bootstrap CPU's local APIC and timer, then every
//! application processor the MADT lists, started one after the other.
//!
//! Each AP, once set up, joins the scheduler on the stack it was started
//! on (that context becomes its idle task) and idles: its own timer ticks
//! and the kicks of other CPUs make it pick tasks from the run queue.

use alloc::boxed::Box;
use alloc::vec::Vec;

use arch::percpu::{self, PerCpu};
use kernel::bootinfo::BootInfo;
use kernel::cpus::{CpuList, MadtCpu};
use kernel::mm::{PAGE_SIZE, Pfn};
use spin::Once;

use crate::memory;

/// What bring-up found, for the console and tests.
#[derive(Debug, Clone)]
pub struct SmpInfo {
    /// The CPUs the MADT listed to start, by index (the BSP first).
    pub list: CpuList,
    pub calibration: arch::apic::Calibration,
}

static INFO: Once<SmpInfo> = Once::new();

/// The result of bring-up; None when it could not run (no MADT: one CPU).
pub fn info() -> Option<&'static SmpInfo> {
    INFO.get()
}

/// The bootstrap CPU's local APIC: registers mapped, enabled, its timer
/// calibrated against the PIT and ticking in place of the PIT, the PIC
/// masked. Runs with interrupts off, before they are first enabled.
pub fn init_bsp() -> arch::apic::Calibration {
    let pa = arch::apic::phys_base();
    if let Err(e) = memory::map_mmio_page(arch::layout::LAPIC_VA, pa) {
        panic!("mapping the local APIC at {pa:#x}: {e:?}");
    }
    arch::apic::set_mapped();
    // The PIC first, while LINT0 still passes its line through (ExtINT):
    // a PIT interrupt raised since `timer::init` is withdrawn with it.
    // Masking LINT0 first would leave that interrupt pending at the CPU
    // with nobody to name its vector (QEMU then raises a #GP at `sti`).
    arch::timer::mask_pic();
    arch::apic::init_cpu();
    let bsp = percpu::this_cpu();
    assert_eq!(
        arch::apic::id(),
        bsp.apic_id(),
        "the bootstrap CPU's APIC id register disagrees with CPUID"
    );
    let cal = arch::apic::calibrate();
    log::info!(
        "local APIC at {pa:#x}: {} timer counts per tick (bus/16), tsc {} kHz, {} tries",
        cal.tick_count,
        cal.tsc_hz / 1000,
        cal.tries
    );
    arch::smp::init_vectors();
    arch::timer::switch_to_apic();
    arch::apic::start_timer();
    bsp.set_reported_apic_id(arch::apic::id());
    bsp.set_online();
    cal
}

/// Starts every AP the MADT lists, one at a time, each on a stack of its
/// own. Runs with interrupts on (the waits halt between checks). A CPU
/// that does not come online is reported and the boot fails: `-smp N`
/// means N CPUs.
pub fn start_aps(info: &BootInfo, calibration: arch::apic::Calibration) {
    let handler = arch::acpi::DirectMapHandler {
        ensure: memory::ensure_direct_mapped,
    };
    let mut entries = Vec::new();
    let madt = match arch::acpi::madt_cpus(info.rsdp, handler, |c| entries.push(c)) {
        Ok(m) => m,
        Err(e) => {
            log::warn!("no CPU list ({e}): running on the bootstrap CPU alone");
            return;
        }
    };
    if madt.lapic_address != arch::apic::phys_base() {
        log::warn!(
            "the MADT puts the local APICs at {:#x}, IA32_APIC_BASE at {:#x}",
            madt.lapic_address,
            arch::apic::phys_base()
        );
    }
    let bsp = percpu::this_cpu();
    let list = CpuList::new(bsp.apic_id(), entries.iter().copied());
    log_list(&list, &entries);
    if list.len() > 1 {
        install_trampoline(info);
        arch::smp::set_ap_main(ap_main);
        let root = memory::kernel_root().addr();
        for (index, &apic_id) in list.apic_ids().iter().enumerate().skip(1) {
            start_one(index, apic_id, root);
        }
    }
    log::info!(
        "{} CPUs online",
        percpu::all().filter(|c| c.is_online()).count()
    );
    INFO.call_once(|| SmpInfo { list, calibration });
}

fn log_list(list: &CpuList, entries: &[MadtCpu]) {
    log::info!(
        "MADT: {} processor entries, starting {} CPUs (apic ids {:?}); {} not enabled, {} duplicates, {} past the limit",
        entries.len(),
        list.len(),
        list.apic_ids(),
        list.disabled,
        list.duplicates,
        list.over_limit
    );
    if !list.bsp_listed {
        log::warn!("the MADT does not list the bootstrap CPU");
    }
}

/// The trampoline's pages must be RAM nothing else has: the first MiB is
/// reserved from the frame allocator for good, and the boot information
/// (start info, map, command line) has been copied out of it by now.
fn install_trampoline(info: &BootInfo) {
    let first = Pfn::containing(arch::smp::TRAMPOLINE_PHYS);
    let last = Pfn(first.0 + arch::smp::TRAMPOLINE_PAGES - 1);
    let usable = info
        .usable_pfn_ranges()
        .any(|r| r.start <= first && last < r.end);
    let clear_of_modules = info
        .modules()
        .iter()
        .all(|m| m.start + m.len <= first.addr() || m.start >= (last.0 + 1) * PAGE_SIZE);
    if !usable || !clear_of_modules {
        panic!(
            "the AP trampoline's pages {:#x}..{:#x} are not free RAM",
            first.addr(),
            (last.0 + 1) * PAGE_SIZE
        );
    }
    // SAFETY: checked above: usable RAM in the first MiB, which the frame
    // allocator never hands out (memory.rs reserves it) and no module
    // overlaps; the direct map covers every usable region.
    unsafe { arch::smp::install_trampoline(memory::kernel_root().addr()) };
}

fn start_one(index: usize, apic_id: u32, root: u64) {
    let (ist_tops, df) = arch::gdt::alloc_ist_stacks();
    let cpu: &'static PerCpu = Box::leak(Box::new(PerCpu::new_ap(index, apic_id, ist_tops, df)));
    percpu::register(cpu);
    let stack = match crate::task::cpu_stack() {
        Ok(top) => top,
        Err(e) => panic!("no stack for cpu {index}: {}", e.name()),
    };
    // SAFETY: the trampoline is installed (start_aps), the stack was just
    // made for this CPU alone, `root` is the kernel's root.
    if let Err(e) = unsafe { arch::smp::start_ap(cpu, stack, root) } {
        panic!("cpu {index} (apic id {apic_id}) did not come online: {e:?}");
    }
}

/// Where every AP ends up once its set-up is done, interrupts still off:
/// it joins the scheduler, reports in, and goes on as its idle task,
/// halting between interrupts (its ticks and kicks switch it to tasks).
fn ap_main(cpu: &'static PerCpu) -> ! {
    // Joined before it reports in: the starter waits for that before it
    // starts the next AP, so CPUs join in index order, as `join_cpu` wants.
    match crate::task::running_context() {
        Ok(ctx) => {
            if let Err(e) = crate::task::system().join_cpu(ctx) {
                panic!("cpu {} could not join the scheduler: {e:?}", cpu.index());
            }
        }
        Err(e) => panic!(
            "cpu {}: no memory for its idle task: {}",
            cpu.index(),
            e.name()
        ),
    }
    log::info!(
        "cpu {} online: apic_id={}",
        cpu.index(),
        cpu.reported_apic_id()
    );
    arch::smp::report_online(cpu);
    kernel::sync::start_of_task();
    loop {
        arch::cpu::wait_for_interrupt();
    }
}
