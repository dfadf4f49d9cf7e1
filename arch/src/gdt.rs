//! Global descriptor table and task state segment.
//!
//! The segment order is fixed by `syscall`/`sysret`, which derive the user
//! selectors from one base: kernel code, kernel data, user data, user code.
//! The user segments sit where Linux has them (`__USER_DS` 0x2b, `__USER_CS`
//! 0x33), since programs see the selectors: in `%cs` and `%ss`, and in a
//! signal handler's `uc_mcontext`. The two entries before them are left
//! empty: Linux's kernel data (0x18, here at 0x10) and 32-bit user code
//! (0x23; Faultline runs no 32-bit code, so loading it is a #GP).
//! The TSS supplies the interrupt stack table: a double fault (typically a
//! kernel stack overflow), an NMI and a machine check each switch to a stack
//! of their own, so they can still be reported when the current stack is
//! unusable. Each CPU has its own GDT, TSS and IST stacks, in its per-CPU
//! area (`percpu.rs`): a TSS in use is marked busy in its descriptor, and
//! two CPUs on one IST stack would overwrite each other's frames.

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slots (1-based in the IDT, 0-based in the TSS array).
pub const IST_DOUBLE_FAULT: u16 = 0;
pub const IST_NMI: u16 = 1;
pub const IST_MACHINE_CHECK: u16 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

// Written only by the CPU when it switches to them; Rust code merely takes
// their addresses, which needs no unsafe.
static mut DOUBLE_FAULT_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);
static mut NMI_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);
static mut MACHINE_CHECK_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);

/// The address range of this CPU's double-fault stack, so the handler can
/// show that it really runs there.
pub fn double_fault_stack() -> core::ops::Range<u64> {
    crate::percpu::this_cpu().double_fault_stack()
}

/// The bootstrap CPU's double-fault stack (a static).
pub fn bsp_double_fault_stack() -> core::ops::Range<u64> {
    let start = (&raw const DOUBLE_FAULT_STACK) as u64;
    start..start + IST_STACK_SIZE as u64
}

fn stack_top(stack: *const IstStack) -> VirtAddr {
    VirtAddr::new(stack as u64 + IST_STACK_SIZE as u64)
}

/// The bootstrap CPU's IST stack tops (double fault, NMI, machine check),
/// for its per-CPU area.
pub fn bsp_ist_tops() -> [u64; 3] {
    [
        stack_top(&raw const DOUBLE_FAULT_STACK).as_u64(),
        stack_top(&raw const NMI_STACK).as_u64(),
        stack_top(&raw const MACHINE_CHECK_STACK).as_u64(),
    ]
}

/// An application processor's three IST stacks, on the heap for good
/// (zeroed in place: 48 KiB is too much to build on a stack first).
pub fn alloc_ist_stacks() -> ([u64; 3], core::ops::Range<u64>) {
    let layout = core::alloc::Layout::new::<[IstStack; 3]>();
    // SAFETY: the layout has a non-zero size; the memory is never freed,
    // and only the CPU it is given to uses it, as its IST stacks.
    let base = unsafe { alloc::alloc::alloc_zeroed(layout) } as *const IstStack;
    if base.is_null() {
        alloc::alloc::handle_alloc_error(layout);
    }
    let top = |i: usize| stack_top(base.wrapping_add(i)).as_u64();
    let tops = [top(0), top(1), top(2)];
    (tops, tops[0] - IST_STACK_SIZE as u64..tops[0])
}

/// Sets the stack the CPU switches to when an interrupt or exception
/// arrives in ring 3: the kernel stack of the task about to run.
pub fn set_kernel_stack(top: u64) {
    crate::percpu::set_kernel_stack(top);
}

/// Selectors of the loaded GDT.
#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub user_data: SegmentSelector,
    pub user_code: SegmentSelector,
    pub tss: SegmentSelector,
}

/// The user selectors, as ring 3 sees them (requested privilege 3):
/// Linux's, so that a signal frame's `cs` and `ss` read the same.
pub const USER_DS: u16 = 0x2b;
pub const USER_CS: u16 = 0x33;

/// Null, kernel code and data, two unused, user data and code, the TSS
/// (two entries).
pub(crate) const GDT_ENTRIES: usize = 9;

/// Builds a GDT around one CPU's TSS. The order, and so the selectors,
/// is the same on every CPU: `syscall` takes them from one set of MSRs.
pub(crate) fn build(
    tss: &'static TaskStateSegment,
) -> (GlobalDescriptorTable<GDT_ENTRIES>, Selectors) {
    let mut gdt = GlobalDescriptorTable::<GDT_ENTRIES>::empty();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    // Not present: a selector of either is refused when loaded.
    gdt.append(Descriptor::UserSegment(0));
    gdt.append(Descriptor::UserSegment(0));
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    let tss = gdt.append(Descriptor::tss_segment(tss));
    let selectors = Selectors {
        kernel_code,
        kernel_data,
        user_data,
        user_code,
        tss,
    };
    (gdt, selectors)
}

static SELECTORS: spin::Once<Selectors> = spin::Once::new();

/// Loads this CPU's GDT and TSS (from its per-CPU area) and reloads every
/// segment register.
pub fn init() {
    let (gdt, sel) = crate::percpu::this_cpu().gdt();
    let first = *SELECTORS.call_once(|| *sel);
    assert_eq!(
        (first.kernel_code, first.user_code, first.tss),
        (sel.kernel_code, sel.user_code, sel.tss),
        "every CPU's GDT has the same layout"
    );
    gdt.load();
    // SAFETY: the selectors come from the GDT just loaded and describe flat
    // 64-bit segments of the right privilege; the TSS descriptor points at
    // this CPU's TSS, in its per-CPU area, which lives forever.
    unsafe {
        CS::set_reg(sel.kernel_code);
        SS::set_reg(sel.kernel_data);
        DS::set_reg(sel.kernel_data);
        ES::set_reg(sel.kernel_data);
        load_tss(sel.tss);
    }
}

/// The selectors, for user-mode entry and `syscall` setup.
pub fn selectors() -> Selectors {
    match SELECTORS.get() {
        Some(s) => *s,
        None => panic!("gdt::selectors before gdt::init"),
    }
}
