//! The memory manager's contract with the hardware, checked in the booted
//! kernel: atomic entry updates through the direct map, accessed and dirty
//! bits as the CPU sets them, TLB flushes through `arch::paging::Tlb`, the
//! simulated MMU against the real tables, and refused frees of mapped
//! frames.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;

use arch::layout::{KERNEL_BASE, KSTACK_BASE, KSTACK_SLOT, KSTACK_SLOTS};
use arch::paging::Tlb;
use arch::phys::DirectMap;
use arch::pte::X86Pte;
use boot::Booted;
use boot::memory::{self, FrameTables};
use kernel::mm::Pfn;
use kernel::mm::frame::FrameError;
use kernel::mm::mmu::{AccessKind, FaultKind, Mode, SimMmu};
use kernel::mm::paging::PageTable;
use kernel::mm::phys::PhysMem;
use kernel::mm::pte::{LeafFlags, Pte};

boot::entry!(main);

fn main(booted: &'static Booted) -> ! {
    ktest::run(
        booted,
        ktest::tests![
            direct_map_swap_and_compare_exchange,
            the_cpu_sets_accessed_and_dirty_bits,
            a_flushed_remap_is_seen_at_once,
            sim_mmu_agrees_with_the_kernel_tables,
            freeing_a_mapped_frame_is_refused_and_counted,
        ],
    )
}

/// A kernel page no one else uses: past the last task-stack slot, inside
/// the top-level entry heap and stacks share (so no new top-level entry).
const SCRATCH: u64 = KSTACK_BASE + KSTACK_SLOTS * KSTACK_SLOT + 0x10_0000;

static MEM: DirectMap = DirectMap;

/// The kernel's tables. Nothing else edits them while a test runs: the
/// test kernel runs no tasks and its interrupt handlers map nothing.
fn kernel_tables() -> PageTable<'static, X86Pte, DirectMap> {
    PageTable::from_root(&MEM, memory::kernel_root())
}

fn leaf_flags(va: u64) -> LeafFlags {
    match kernel_tables().entry(va, 0) {
        Some(Pte::Leaf { flags, .. }) => flags,
        other => panic!("{va:#x}: {other:?}"),
    }
}

fn read(va: u64) -> u64 {
    // SAFETY: the callers map `va` to a frame of their own first.
    unsafe { (va as *const u64).read_volatile() }
}

fn write(va: u64, value: u64) {
    // SAFETY: as for read, and the page is writable.
    unsafe { (va as *mut u64).write_volatile(value) }
}

/// A fresh frame whose first word is `value`.
fn frame_holding(value: u64) -> Pfn {
    let pfn = memory::frames().alloc_frame().expect("frame");
    DirectMap.zero_frame(pfn);
    DirectMap.write_u64(pfn.addr(), value);
    pfn
}

/// Unmaps SCRATCH (flushing it) and frees its frame.
fn unmap_scratch() {
    let pfn = memory::unmap_kernel_page(SCRATCH).expect("unmap");
    memory::frames().free(pfn, 0).expect("free");
}

fn direct_map_swap_and_compare_exchange(_: &'static Booted) {
    let pfn = frame_holding(0x1111);
    let pa = pfn.addr() + 8;
    DirectMap.write_u64(pa, 1);
    assert_eq!(DirectMap.swap_u64(pa, 2), 1);
    assert_eq!(DirectMap.read_u64(pa), 2);
    assert_eq!(DirectMap.compare_exchange_u64(pa, 1, 3), Err(2));
    assert_eq!(
        DirectMap.read_u64(pa),
        2,
        "a failed exchange stores nothing"
    );
    assert_eq!(DirectMap.compare_exchange_u64(pa, 2, 3), Ok(2));
    assert_eq!(DirectMap.read_u64(pa), 3);
    assert_eq!(
        DirectMap.read_u64(pfn.addr()),
        0x1111,
        "neighbour untouched"
    );
    memory::frames().free(pfn, 0).expect("free");
}

fn the_cpu_sets_accessed_and_dirty_bits(_: &'static Booted) {
    let ad = LeafFlags::ACCESSED | LeafFlags::DIRTY;
    memory::map_kernel_page(SCRATCH, frame_holding(7), LeafFlags::WRITABLE).expect("map");
    assert_eq!(leaf_flags(SCRATCH) & ad, LeafFlags::empty());
    assert_eq!(read(SCRATCH), 7);
    assert_eq!(leaf_flags(SCRATCH) & ad, LeafFlags::ACCESSED);
    write(SCRATCH, 8);
    assert_eq!(leaf_flags(SCRATCH) & ad, ad);
    // Cleaned as write-back would: the swap returns the CPU's bits, and
    // after the flush the next write sets dirty again.
    let (old, flush) = kernel_tables()
        .protect(SCRATCH, LeafFlags::WRITABLE)
        .expect("protect");
    assert_eq!(old, LeafFlags::WRITABLE | ad);
    flush.flush(&Tlb);
    assert_eq!(leaf_flags(SCRATCH) & ad, LeafFlags::empty());
    write(SCRATCH, 9);
    assert_eq!(leaf_flags(SCRATCH) & ad, ad);
    unmap_scratch();
}

fn a_flushed_remap_is_seen_at_once(_: &'static Booted) {
    let (a, b) = (frame_holding(0xaaaa), frame_holding(0xbbbb));
    memory::map_kernel_page(SCRATCH, a, LeafFlags::WRITABLE).expect("map");
    // Twice, so the translation is certainly in the TLB.
    assert_eq!(read(SCRATCH), 0xaaaa);
    assert_eq!(read(SCRATCH), 0xaaaa);
    let moved = Pte::Leaf {
        pfn: b,
        flags: LeafFlags::WRITABLE,
    };
    let (old, flush) = kernel_tables()
        .set_entry(SCRATCH, 0, moved, &FrameTables)
        .expect("remap");
    assert!(matches!(old, Pte::Leaf { pfn, .. } if pfn == a));
    let stale = read(SCRATCH);
    flush.flush(&Tlb);
    assert_eq!(
        read(SCRATCH),
        0xbbbb,
        "the flush did not drop the old translation"
    );
    arch::println!("    before the flush the CPU read {stale:#x}");
    unmap_scratch();
    memory::frames().free(a, 0).expect("free");
}

fn sim_mmu_agrees_with_the_kernel_tables(_: &'static Booted) {
    unsafe extern "C" {
        static __text_start: u8;
        static __rodata_start: u8;
        static __data_start: u8;
    }
    let mmu = SimMmu::<X86Pte, DirectMap>::new(&MEM);
    let root = memory::kernel_root();
    let text = (&raw const __text_start) as u64;
    let rodata = (&raw const __rodata_start) as u64;
    let data = (&raw const __data_start) as u64;
    let access = |va, kind| mmu.access(root, va, kind, Mode::Supervisor);
    let fault = |va, kind| access(va, kind).map_err(|f| f.kind);
    assert_eq!(access(text, AccessKind::Execute), Ok(text - KERNEL_BASE));
    assert_eq!(access(data, AccessKind::Write), Ok(data - KERNEL_BASE));
    // The CPU enforces the same W^X on these tables (basics checks it).
    assert_eq!(fault(text, AccessKind::Write), Err(FaultKind::Protection));
    assert_eq!(fault(rodata, AccessKind::Write), Err(FaultKind::Protection));
    assert_eq!(fault(data, AccessKind::Execute), Err(FaultKind::Protection));
    assert_eq!(fault(0, AccessKind::Read), Err(FaultKind::NotPresent));
    // Kernel pages are not for user mode.
    let user = mmu.access(root, data, AccessKind::Read, Mode::User);
    assert_eq!(user.map_err(|f| f.kind), Err(FaultKind::Protection));
    // What the simulated MMU reads is what the CPU reads there.
    let mut word = [0; 8];
    let pa = access(data, AccessKind::Read).expect("data");
    MEM.read_bytes(pa, &mut word);
    assert_eq!(u64::from_le_bytes(word), read(data));
}

fn freeing_a_mapped_frame_is_refused_and_counted(_: &'static Booted) {
    let frames = memory::frames();
    let before = frames.stats();
    let pfn = frames.alloc_frame().expect("frame");
    let desc = frames.desc(pfn).expect("desc");
    desc.inc_mapcount();
    assert_eq!(frames.free(pfn, 0), Err(FrameError::Mapped));
    let now = frames.stats();
    assert_eq!(now.mapped_frees, before.mapped_frees + 1);
    assert_eq!(
        now.allocated,
        before.allocated + 1,
        "the frame stays allocated"
    );
    let shown = format!("{now}");
    let want = format!("frames_mapped_frees={}", now.mapped_frees);
    assert!(shown.contains(&want), "mem shows {shown}");
    desc.dec_mapcount();
    frames.free(pfn, 0).expect("free");
    assert_eq!(frames.stats().allocated, before.allocated);
    frames.check().expect("consistent");
}
