//! The kernel's virtual address layout (x86_64, 4-level paging).
//!
//! | range (start)           | what                                   |
//! |-------------------------|----------------------------------------|
//! | `0` .. `0x8000_0000_0000` | user half: each process's own        |
//! | `DIRECT_MAP_BASE`       | all physical memory, linearly          |
//! | `HEAP_BASE`             | kernel heap, grown page by page        |
//! | `KSTACK_BASE`           | task kernel stacks, each with a guard  |
//! | `MMIO_BASE`             | device registers (the local APIC), uncached |
//! | `KERNEL_BASE`           | kernel image (top 2 GiB, code-model=kernel) |

/// Physical address `pa` is at virtual `DIRECT_MAP_BASE + pa`.
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
/// The direct map may cover at most this much physical memory (64 TiB).
pub const DIRECT_MAP_SIZE: u64 = 1 << 46;
/// Start of the kernel heap.
pub const HEAP_BASE: u64 = 0xffff_c000_0000_0000;
/// The heap never grows beyond this many bytes.
pub const HEAP_MAX: u64 = 1 << 38;
/// Task kernel stacks, one slot each: the stack at the top of its slot and
/// the rest left unmapped, so an overflow faults instead of overwriting a
/// neighbour. Heap and stacks share one top-level entry, created when the
/// heap's first chunk is mapped at boot: address spaces copy the kernel's
/// top-level entries, so the kernel half must need no new ones after boot.
pub const KSTACK_BASE: u64 = HEAP_BASE + HEAP_MAX;
/// Bytes of virtual space per task stack (stack plus guard).
pub const KSTACK_SLOT: u64 = 32 * 1024;
/// Number of stack slots (comfortably above the scheduler's task bound).
pub const KSTACK_SLOTS: u64 = 8192;
/// Device registers, mapped uncached at boot: the last GiB of the top-level
/// entry the heap and the stacks share (so, like them, it needs no new
/// top-level entry after boot), far above the stack slots.
pub const MMIO_BASE: u64 = HEAP_BASE + (1 << 39) - MMIO_SIZE;
/// Bytes of the MMIO window.
pub const MMIO_SIZE: u64 = 1 << 30;
/// Where the local APIC's register page is mapped (every CPU sees its own
/// APIC at the same physical address).
pub const LAPIC_VA: u64 = MMIO_BASE;
/// The kernel image is linked at `KERNEL_BASE + physical address`.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// The first address of the kernel half.
pub const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// Virtual address of physical address `pa` in the direct map.
pub const fn phys_to_virt(pa: u64) -> u64 {
    DIRECT_MAP_BASE + pa
}

/// End of the task-stack region.
pub const KSTACK_END: u64 = KSTACK_BASE + KSTACK_SLOTS * KSTACK_SLOT;

/// End of the MMIO window.
pub const MMIO_END: u64 = MMIO_BASE + MMIO_SIZE;

// The stacks end below the MMIO window, and heap, stacks and MMIO share
// one top-level (512 GiB) entry.
const _: () = assert!(KSTACK_END <= MMIO_BASE && HEAP_BASE >> 39 == (MMIO_END - 1) >> 39);

/// Which region of the layout `va` lies in, for fault reports: a stack
/// overflow names the stack by where its guard is (`task_stacks` for a
/// task's, `kernel_image` for the boot stack's).
pub fn region_name(va: u64) -> &'static str {
    match va {
        0..0x0000_8000_0000_0000 => "user",
        DIRECT_MAP_BASE..HEAP_BASE if va - DIRECT_MAP_BASE < DIRECT_MAP_SIZE => "direct_map",
        HEAP_BASE..KSTACK_BASE => "heap",
        KSTACK_BASE..KSTACK_END => "task_stacks",
        MMIO_BASE..MMIO_END => "mmio",
        KERNEL_BASE.. => "kernel_image",
        0x0000_8000_0000_0000..KERNEL_HALF => "non_canonical",
        _ => "unused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_meet_without_gaps_or_overlaps() {
        assert_eq!(region_name(0), "user");
        assert_eq!(region_name(0x7fff_ffff_ffff), "user");
        assert_eq!(region_name(0x8000_0000_0000), "non_canonical");
        assert_eq!(region_name(KERNEL_HALF - 1), "non_canonical");
        assert_eq!(region_name(DIRECT_MAP_BASE), "direct_map");
        assert_eq!(
            region_name(DIRECT_MAP_BASE + DIRECT_MAP_SIZE - 1),
            "direct_map"
        );
        // The direct map's 64 TiB end exactly where the heap begins.
        assert_eq!(DIRECT_MAP_BASE + DIRECT_MAP_SIZE, HEAP_BASE);
        assert_eq!(region_name(HEAP_BASE), "heap");
        assert_eq!(region_name(KSTACK_BASE - 1), "heap");
        assert_eq!(region_name(KSTACK_BASE), "task_stacks");
        assert_eq!(region_name(KSTACK_END - 1), "task_stacks");
        assert_eq!(region_name(KSTACK_END), "unused");
        assert_eq!(region_name(MMIO_BASE - 1), "unused");
        assert_eq!(region_name(MMIO_BASE), "mmio");
        assert_eq!(region_name(MMIO_END - 1), "mmio");
        assert_eq!(region_name(MMIO_END), "unused");
        assert_eq!(region_name(KERNEL_BASE - 1), "unused");
        assert_eq!(region_name(KERNEL_BASE), "kernel_image");
        assert_eq!(region_name(u64::MAX), "kernel_image");
    }
}
