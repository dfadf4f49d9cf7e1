//! The foundation, checked in the booted kernel: timer, traps, frames, the
//! kernel's page tables, the heap.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use arch::layout::{KERNEL_BASE, phys_to_virt};
use arch::phys::DirectMap;
use arch::pte::X86Pte;
use boot::Booted;
use kernel::mm::paging::PageTable;
use kernel::mm::phys::PhysMem;
use kernel::mm::pte::LeafFlags;
use kernel::mm::{PAGE_SIZE, Pfn};

boot::entry!(main);

fn main(booted: &'static Booted) -> ! {
    ktest::run(
        booted,
        ktest::tests![
            timer_interrupt_fires,
            wait_until_gives_up_at_its_deadline,
            wait_until_takes_a_deadline_past_the_end_of_time,
            breakpoint_exception_returns,
            mem_accounts_for_all_usable_memory,
            frames_are_usable_through_the_direct_map,
            frame_exhaustion_is_an_error,
            kernel_sections_are_write_xor_execute,
            null_page_and_stack_guard_are_unmapped,
            heap_grows_past_its_first_chunk,
        ],
    )
}

/// TSC cycles to wait for a few timer ticks: seconds on any host (under TCG
/// the guest's TSC runs at the host's rate, a few GHz), where 3 ticks take
/// 30 ms, and well inside run.sh's timeout, so a dead timer is a named
/// failure rather than a hang.
const TSC_BUDGET: u64 = 20_000_000_000;

/// Judged by the TSC, a clock the timer does not drive: waiting on ticks
/// for ticks would hang, never fail, if the timer were dead.
fn timer_interrupt_fires(_: &'static Booted) {
    assert!(arch::cpu::interrupts_enabled(), "boot left interrupts off");
    let start = arch::timer::ticks();
    let fired = ktest::spin_until(TSC_BUDGET, || arch::timer::ticks() >= start + 3);
    assert!(
        fired,
        "fewer than 3 timer ticks in {TSC_BUDGET} TSC cycles (ticks {start} -> {})",
        arch::timer::ticks()
    );
}

fn wait_until_gives_up_at_its_deadline(_: &'static Booted) {
    let start = arch::timer::ticks();
    assert!(!ktest::wait_until(3, || false), "a false condition held");
    assert!(
        arch::timer::ticks() >= start + 3,
        "gave up before its deadline"
    );
    assert!(
        ktest::wait_until(3, || true),
        "a true condition did not hold"
    );
}

/// `ticks() + u64::MAX` overflows once the clock has moved at all.
fn wait_until_takes_a_deadline_past_the_end_of_time(_: &'static Booted) {
    let started = ktest::spin_until(TSC_BUDGET, || arch::timer::ticks() > 0);
    assert!(started, "the clock never moved");
    let mut calls = 0;
    let held = ktest::wait_until(u64::MAX, || {
        calls += 1;
        calls == 3
    });
    assert!(held && calls == 3, "held={held} after {calls} calls");
}

fn breakpoint_exception_returns(_: &'static Booted) {
    let before = arch::trap::BREAKPOINTS.load(Ordering::Relaxed);
    arch::cpu::breakpoint();
    arch::cpu::breakpoint();
    let after = arch::trap::BREAKPOINTS.load(Ordering::Relaxed);
    assert_eq!(
        after,
        before + 2,
        "each int3 must reach the handler once and return"
    );
}

fn mem_accounts_for_all_usable_memory(booted: &'static Booted) {
    let stats = boot::memory::frames().stats();
    assert_eq!(
        stats.total,
        booted.info.usable_frames(),
        "frames_total != usable frames in the boot map"
    );
    assert_eq!(stats.free + stats.reserved + stats.allocated, stats.total);
    assert!(stats.reserved > 0, "the kernel image must be reserved");
    assert!(
        stats.free > stats.total / 2,
        "most memory should be free after boot"
    );
    boot::memory::frames()
        .check()
        .expect("allocator consistent");
}

fn frames_are_usable_through_the_direct_map(_: &'static Booted) {
    let frames = boot::memory::frames();
    let before = frames.stats();
    let pfn = frames.alloc(2).expect("four frames");
    assert_eq!(pfn.0 % 4, 0, "an order-2 block is 4-frame aligned");
    for i in 0..4 {
        let pa = Pfn(pfn.0 + i).addr();
        DirectMap.write_u64(pa + 8, 0x5a5a_0000 + i);
        assert_eq!(DirectMap.read_u64(pa + 8), 0x5a5a_0000 + i);
    }
    frames.free(pfn, 2).expect("free");
    assert_eq!(
        frames.free(pfn, 2),
        Err(kernel::mm::frame::FrameError::NotAllocated)
    );
    assert_eq!(frames.stats(), before);
}

/// Takes every free frame, chaining them through their own first word so
/// the test needs no heap, then gives them all back.
fn frame_exhaustion_is_an_error(_: &'static Booted) {
    let frames = boot::memory::frames();
    let before = frames.stats();
    let mut head: u64 = u64::MAX;
    let mut taken = 0u64;
    while let Ok(pfn) = frames.alloc_frame() {
        DirectMap.write_u64(pfn.addr(), head);
        head = pfn.0;
        taken += 1;
    }
    assert_eq!(
        frames.alloc_frame(),
        Err(kernel::mm::frame::FrameError::OutOfMemory)
    );
    assert_eq!(frames.stats().free, 0);
    assert_eq!(taken, before.free);
    while head != u64::MAX {
        let next = DirectMap.read_u64(Pfn(head).addr());
        frames.free(Pfn(head), 0).expect("give back");
        head = next;
    }
    assert_eq!(frames.stats(), before);
    frames.check().expect("consistent after exhaustion");
}

unsafe extern "C" {
    static __text_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
    static __stack_guard: u8;
    static __stack_bottom: u8;
}

fn kernel_tables() -> PageTable<'static, X86Pte, DirectMap> {
    static MEM: DirectMap = DirectMap;
    PageTable::from_root(&MEM, arch::paging::current_root())
}

fn kernel_sections_are_write_xor_execute(_: &'static Booted) {
    let pt = kernel_tables();
    let text = (&raw const __text_start) as u64;
    let rodata = (&raw const __rodata_start) as u64;
    let data = (&raw const __data_start) as u64;
    let (pa, flags, _) = pt.translate(text).expect("text mapped");
    assert_eq!(pa, text - KERNEL_BASE);
    assert!(flags.contains(LeafFlags::EXECUTABLE) && !flags.contains(LeafFlags::WRITABLE));
    let (_, flags, _) = pt.translate(rodata).expect("rodata mapped");
    assert!(!flags.contains(LeafFlags::EXECUTABLE) && !flags.contains(LeafFlags::WRITABLE));
    let (_, flags, _) = pt.translate(data).expect("data mapped");
    assert!(!flags.contains(LeafFlags::EXECUTABLE) && flags.contains(LeafFlags::WRITABLE));
    // Every leaf of the whole kernel half: never writable and executable.
    let mut leaves = 0u64;
    pt.for_each_leaf(
        arch::layout::KERNEL_HALF,
        u64::MAX,
        &mut |va, _, _, flags| {
            leaves += 1;
            assert!(
                !(flags.contains(LeafFlags::WRITABLE) && flags.contains(LeafFlags::EXECUTABLE)),
                "W+X mapping at {va:#x}"
            );
        },
    );
    assert!(leaves > 0);
    // The direct map is data: the first usable frame is there, not executable.
    let (pa, flags, _) = pt.translate(phys_to_virt(0x20_0000)).expect("direct map");
    assert_eq!(pa, 0x20_0000);
    assert!(!flags.contains(LeafFlags::EXECUTABLE));
}

fn null_page_and_stack_guard_are_unmapped(_: &'static Booted) {
    let pt = kernel_tables();
    assert!(pt.translate(0).is_none(), "page 0 must fault");
    assert!(
        pt.translate(0x10_0000).is_none(),
        "the low identity map must be gone"
    );
    let guard = (&raw const __stack_guard) as u64;
    let bottom = (&raw const __stack_bottom) as u64;
    assert_eq!(bottom - guard, PAGE_SIZE);
    assert!(
        pt.translate(guard).is_none(),
        "stack guard page must be unmapped"
    );
    assert!(pt.translate(bottom).is_some());
}

fn heap_grows_past_its_first_chunk(_: &'static Booted) {
    let before = boot::heap::stats();
    let words = (4 * boot::heap::INITIAL_BYTES / 8) as usize;
    let mut v: Vec<u64> = Vec::with_capacity(words);
    for i in 0..words as u64 {
        v.push(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    let after = boot::heap::stats();
    assert!(after.bytes > boot::heap::INITIAL_BYTES, "heap did not grow");
    assert!(after.growths > before.growths);
    for (i, x) in v.iter().enumerate() {
        assert_eq!(*x, (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    drop(v);
    assert!(boot::heap::stats().used < after.used);
}
