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
//! unusable.

use spin::Lazy;
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

/// The address range of the double-fault stack, so the handler can show
/// that it really runs there.
pub fn double_fault_stack() -> core::ops::Range<u64> {
    let start = (&raw const DOUBLE_FAULT_STACK) as u64;
    start..start + IST_STACK_SIZE as u64
}

fn stack_top(stack: *const IstStack) -> VirtAddr {
    VirtAddr::new(stack as u64 + IST_STACK_SIZE as u64)
}

// The CPU reads the TSS on every ring transition and interrupt-stack switch;
// Faultline writes it only through `set_kernel_stack`, on one CPU, with
// interrupts off.
static mut TSS: TaskStateSegment = TaskStateSegment::new();

fn init_tss() -> &'static TaskStateSegment {
    let tss = &raw mut TSS;
    // SAFETY: runs once, from the GDT's lazy initialiser, before the TSS is
    // loaded, so nothing else reads or writes it; the reference handed out
    // afterwards is only read by the descriptor constructor.
    unsafe {
        (*tss).interrupt_stack_table[IST_DOUBLE_FAULT as usize] =
            stack_top(&raw const DOUBLE_FAULT_STACK);
        (*tss).interrupt_stack_table[IST_NMI as usize] = stack_top(&raw const NMI_STACK);
        (*tss).interrupt_stack_table[IST_MACHINE_CHECK as usize] =
            stack_top(&raw const MACHINE_CHECK_STACK);
        &*tss
    }
}

/// Sets the stack the CPU switches to when an interrupt or exception
/// arrives in ring 3: the kernel stack of the task about to run.
pub fn set_kernel_stack(top: u64) {
    crate::cpu::without_interrupts(|| {
        // SAFETY: one CPU and interrupts off, so no ring transition reads
        // rsp0 while it is written; the field is a plain u64 in a static.
        unsafe { TSS.privilege_stack_table[0] = VirtAddr::new(top) };
    });
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

/// The user selectors, as ring 3 sees them (requested privilege 3).
pub const USER_DS: u16 = 0x2b;
pub const USER_CS: u16 = 0x33;

/// Null, kernel code and data, two unused, user data and code, the TSS
/// (two entries).
const GDT_ENTRIES: usize = 9;

static GDT: Lazy<(GlobalDescriptorTable<GDT_ENTRIES>, Selectors)> = Lazy::new(|| {
    let mut gdt = GlobalDescriptorTable::<GDT_ENTRIES>::empty();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    // Not present: a selector of either is refused when loaded.
    gdt.append(Descriptor::UserSegment(0));
    gdt.append(Descriptor::UserSegment(0));
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    let tss = gdt.append(Descriptor::tss_segment(init_tss()));
    let selectors = Selectors {
        kernel_code,
        kernel_data,
        user_data,
        user_code,
        tss,
    };
    (gdt, selectors)
});

/// Loads the GDT and TSS and reloads every segment register.
pub fn init() {
    GDT.0.load();
    let sel = &GDT.1;
    // SAFETY: the selectors come from the GDT just loaded and describe flat
    // 64-bit segments of the right privilege; the TSS descriptor points at a
    // static TSS that lives forever.
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
    GDT.1
}
