//! Per-CPU data, reached through the GS base.
//!
//! Each CPU has one [`PerCpu`]: the bootstrap CPU's is a static (it is
//! needed before the heap exists, by the first lock), an application
//! processor's is made on the heap by the CPU that starts it and never
//! freed. In the kernel, `IA32_GS_BASE` holds the address of this CPU's
//! area and `IA32_KERNEL_GS_BASE` the user's GS base; every entry from ring
//! 3 (trap stubs, the `syscall` entry) and every exit to it executes
//! `swapgs`, so kernel code always finds its own area at `%gs:0`.
//!
//! The first words are read by assembly at fixed offsets ([`OFF_SELF`],
//! [`OFF_KERNEL_RSP`], [`OFF_USER_RSP`], [`OFF_INDEX`]): the `syscall`
//! entry has no stack until it loads the kernel stack top from here.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use kernel::sync::MAX_CPUS;
use spin::Once;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::{GsBase, KernelGsBase};
use x86_64::structures::gdt::GlobalDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;

use crate::gdt::Selectors;

/// One CPU's area. `repr(C)`: assembly reads the first four words.
#[repr(C)]
pub struct PerCpu {
    /// This structure's own address, so `%gs:0` turns into a pointer.
    this: AtomicU64,
    /// Top of the running task's kernel stack: where a `syscall` from ring
    /// 3 starts (the TSS's RSP0 holds the same for interrupts).
    kernel_rsp: AtomicU64,
    /// The user RSP, parked by the `syscall` entry while it switches stacks.
    user_rsp: AtomicU64,
    /// Index of this CPU: 0 for the bootstrap CPU, then in start-up order.
    index: AtomicU64,
    apic_id: AtomicU32,
    /// Set by the CPU itself once it has finished its own set-up.
    online: AtomicBool,
    /// Set just before `hlt`, cleared by the next interrupt: a timer tick
    /// that finds it set interrupted an idle CPU.
    halted: AtomicBool,
    pub(crate) stats: CpuStats,
    /// CPUs (a bit per index) waiting for this one to answer a ping.
    pub(crate) pings: AtomicU64,
    /// CPUs (a bit per index) that answered this one's ping; the answer's
    /// IPI moves the bits to `received`.
    pub(crate) answers: AtomicU64,
    /// CPUs (a bit per index) whose answering IPI this one has taken.
    pub(crate) received: AtomicU64,
    /// A function this CPU is asked to run before it answers (a
    /// `fn()` as an address; 0: none).
    pub(crate) call: AtomicUsize,
    /// The APIC id the CPU read from its own APIC once it ran.
    reported_apic_id: AtomicU32,
    /// The TSS: RSP0 and the IST pointers. Written by its own CPU only
    /// (with interrupts off) or before it is loaded.
    tss: UnsafeCell<TaskStateSegment>,
    gdt: Once<(
        GlobalDescriptorTable<{ crate::gdt::GDT_ENTRIES }>,
        Selectors,
    )>,
    /// This CPU's double-fault stack, for the fault report.
    double_fault_stack: [AtomicU64; 2],
}

// SAFETY: every field but `tss` is an atomic or a `Once`; `tss` is written
// only before its CPU loads it or by that CPU itself with interrupts off
// (`set_kernel_stack`), and read by the CPU's hardware, so no two software
// accesses to it ever race.
unsafe impl Sync for PerCpu {}

/// A CPU's counters, for the `cpu` console command.
#[derive(Default)]
pub struct CpuStats {
    pub ticks: AtomicU64,
    pub switches: AtomicU64,
    pub idle_ticks: AtomicU64,
    pub ipis: AtomicU64,
    /// Shootdown NMIs this CPU sent (one per target).
    pub shootdowns_sent: AtomicU64,
    /// Shootdown requests of other CPUs this CPU carried out.
    pub shootdowns_taken: AtomicU64,
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFigures {
    pub index: usize,
    pub apic_id: u32,
    pub online: bool,
    pub ticks: u64,
    pub switches: u64,
    pub idle_ticks: u64,
    pub ipis: u64,
    pub shootdowns_sent: u64,
    pub shootdowns_taken: u64,
}

/// Offsets the assembly uses.
pub const OFF_SELF: usize = core::mem::offset_of!(PerCpu, this);
pub const OFF_KERNEL_RSP: usize = core::mem::offset_of!(PerCpu, kernel_rsp);
pub const OFF_USER_RSP: usize = core::mem::offset_of!(PerCpu, user_rsp);
pub const OFF_INDEX: usize = core::mem::offset_of!(PerCpu, index);

impl PerCpu {
    const fn new() -> PerCpu {
        PerCpu {
            this: AtomicU64::new(0),
            kernel_rsp: AtomicU64::new(0),
            user_rsp: AtomicU64::new(0),
            index: AtomicU64::new(0),
            apic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            stats: CpuStats {
                ticks: AtomicU64::new(0),
                switches: AtomicU64::new(0),
                idle_ticks: AtomicU64::new(0),
                ipis: AtomicU64::new(0),
                shootdowns_sent: AtomicU64::new(0),
                shootdowns_taken: AtomicU64::new(0),
            },
            pings: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            received: AtomicU64::new(0),
            call: AtomicUsize::new(0),
            reported_apic_id: AtomicU32::new(u32::MAX),
            tss: UnsafeCell::new(TaskStateSegment::new()),
            gdt: Once::new(),
            double_fault_stack: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// An application processor's area, with its IST stack tops (double
    /// fault, NMI, machine check) and its double-fault stack's range.
    pub fn new_ap(
        index: usize,
        apic_id: u32,
        ist_tops: [u64; 3],
        df: core::ops::Range<u64>,
    ) -> PerCpu {
        let cpu = PerCpu::new();
        cpu.index.store(index as u64, Ordering::Relaxed);
        cpu.apic_id.store(apic_id, Ordering::Relaxed);
        cpu.set_ist(ist_tops, df);
        cpu
    }

    fn set_ist(&self, tops: [u64; 3], df: core::ops::Range<u64>) {
        let tss = self.tss.get();
        for (slot, top) in tops.into_iter().enumerate() {
            // SAFETY: called before this CPU loads the TSS (new_ap, or
            // init_bsp before gdt::init), so nothing else reads it yet.
            unsafe { (*tss).interrupt_stack_table[slot] = VirtAddr::new(top) };
        }
        self.double_fault_stack[0].store(df.start, Ordering::Relaxed);
        self.double_fault_stack[1].store(df.end, Ordering::Relaxed);
    }

    pub fn index(&self) -> usize {
        self.index.load(Ordering::Relaxed) as usize
    }

    pub fn apic_id(&self) -> u32 {
        self.apic_id.load(Ordering::Relaxed)
    }

    /// The APIC id this CPU read from its own APIC (u32::MAX until then).
    pub fn reported_apic_id(&self) -> u32 {
        self.reported_apic_id.load(Ordering::Acquire)
    }

    /// Recorded by the CPU itself, from its own APIC's ID register.
    pub fn set_reported_apic_id(&self, id: u32) {
        self.reported_apic_id.store(id, Ordering::Release);
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Called by the CPU itself when its set-up is complete. Sequentially
    /// consistent: a shootdown that read it as offline skipped this CPU,
    /// and one ordered after it reaches it; the CPU then flushes its whole
    /// TLB (`crate::tlb::came_online`).
    pub fn set_online(&self) {
        self.online.store(true, Ordering::SeqCst);
        crate::tlb::came_online();
    }

    pub fn figures(&self) -> CpuFigures {
        CpuFigures {
            index: self.index(),
            apic_id: self.apic_id(),
            online: self.is_online(),
            ticks: self.stats.ticks.load(Ordering::Relaxed),
            switches: self.stats.switches.load(Ordering::Relaxed),
            idle_ticks: self.stats.idle_ticks.load(Ordering::Relaxed),
            ipis: self.stats.ipis.load(Ordering::Relaxed),
            shootdowns_sent: self.stats.shootdowns_sent.load(Ordering::Relaxed),
            shootdowns_taken: self.stats.shootdowns_taken.load(Ordering::Relaxed),
        }
    }

    /// The GDT (with this CPU's TSS) and its selectors, made once.
    pub(crate) fn gdt(
        &'static self,
    ) -> &'static (
        GlobalDescriptorTable<{ crate::gdt::GDT_ENTRIES }>,
        Selectors,
    ) {
        // SAFETY: the TSS lives as long as the area ('static); the GDT only
        // records its address, and the hardware reads it through that.
        self.gdt
            .call_once(|| crate::gdt::build(unsafe { &*self.tss.get() }))
    }

    pub fn double_fault_stack(&self) -> core::ops::Range<u64> {
        self.double_fault_stack[0].load(Ordering::Relaxed)
            ..self.double_fault_stack[1].load(Ordering::Relaxed)
    }

    /// Whether the last interrupt found this CPU halted; clears the mark.
    pub(crate) fn take_halted(&self) -> bool {
        self.halted.swap(false, Ordering::Relaxed)
    }
}

static BSP: PerCpu = PerCpu::new();

/// Every CPU's area by index; null until that CPU is registered.
static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Points GS at the bootstrap CPU's area, with its IST stacks: the first
/// thing boot does, because every lock asks which CPU it runs on.
pub fn init_bsp(ist_tops: [u64; 3], df: core::ops::Range<u64>) {
    BSP.set_ist(ist_tops, df);
    BSP.apic_id
        .store(crate::apic::id_from_cpuid(), Ordering::Relaxed);
    register(&BSP);
    install(&BSP);
}

/// Makes `cpu` findable by index (and counted) before it starts.
pub fn register(cpu: &'static PerCpu) {
    let index = cpu.index();
    assert!(index < MAX_CPUS, "CPU index {index} out of range");
    CPUS[index].store(cpu as *const PerCpu as *mut PerCpu, Ordering::Release);
    COUNT.fetch_max(index + 1, Ordering::AcqRel);
}

/// Loads GS with `cpu` on the CPU that runs this, and zeroes the user's
/// GS base (no program has one of its own yet).
pub fn install(cpu: &'static PerCpu) {
    let addr = cpu as *const PerCpu as u64;
    cpu.this.store(addr, Ordering::Relaxed);
    GsBase::write(VirtAddr::new(addr));
    KernelGsBase::write(VirtAddr::new(0));
}

/// This CPU's area. Only valid in kernel code past `install` (GS holds
/// the kernel's base there: entry stubs swap it in). Not `pure`: once
/// tasks move between CPUs, two reads around a switch may differ, so the
/// compiler must not merge them.
#[inline]
pub fn this_cpu() -> &'static PerCpu {
    let ptr: u64;
    // SAFETY: reads one word at %gs:0, which `install` made this CPU's
    // area address; the asm touches no other memory or register.
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) ptr, off = const OFF_SELF,
            options(nostack, preserves_flags, readonly))
    };
    // SAFETY: the word is the address of a 'static PerCpu (see above).
    unsafe { &*(ptr as *const PerCpu) }
}

/// This CPU's index: the kernel's `IrqHooks::cpu_index`.
#[inline]
pub fn index() -> usize {
    let index: u64;
    // SAFETY: as in `this_cpu`, one word of this CPU's area.
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) index, off = const OFF_INDEX,
            options(nostack, preserves_flags, readonly))
    };
    index as usize
}

/// Whether the bootstrap CPU's area is in place (GS usable).
pub fn ready() -> bool {
    COUNT.load(Ordering::Acquire) > 0
}

/// The area of CPU `index`, once registered.
pub fn cpu(index: usize) -> Option<&'static PerCpu> {
    let ptr = CPUS.get(index)?.load(Ordering::Acquire);
    // SAFETY: only `register` stores here, always a 'static PerCpu.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// Registered CPUs (online or being started), in index order.
pub fn all() -> impl Iterator<Item = &'static PerCpu> {
    (0..COUNT.load(Ordering::Acquire)).filter_map(cpu)
}

/// The registered CPU with this APIC id.
pub fn by_apic_id(apic_id: u32) -> Option<&'static PerCpu> {
    all().find(|c| c.apic_id() == apic_id)
}

/// For fatal paths, which may run with the user's GS base (a fault on the
/// `iretq` back to ring 3, after its `swapgs`): if GS does not hold a
/// registered area, swap it in. Such a path never returns to where GS
/// mattered, so the swap is not undone.
pub fn repair_gs() {
    let gs = GsBase::read().as_u64();
    if !all().any(|c| c as *const PerCpu as u64 == gs) {
        // SAFETY: swapgs exchanges two MSRs; KERNEL_GS_BASE holds this
        // CPU's area whenever GS_BASE holds the user's.
        unsafe { core::arch::asm!("swapgs", options(nostack, preserves_flags)) };
    }
}

/// Sets the stack the CPU switches to on a trap or `syscall` from ring 3:
/// the TSS's RSP0 and the area's `kernel_rsp`.
pub fn set_kernel_stack(top: u64) {
    crate::cpu::without_interrupts(|| {
        let cpu = this_cpu();
        // SAFETY: this CPU's own TSS with interrupts off: no ring
        // transition on this CPU reads RSP0 while it is written, and no
        // other CPU touches it.
        unsafe { (*cpu.tss.get()).privilege_stack_table[0] = VirtAddr::new(top) };
        cpu.kernel_rsp.store(top, Ordering::Relaxed);
    });
}

/// Counts a context switch on this CPU.
#[inline]
pub fn count_switch() {
    this_cpu().stats.switches.fetch_add(1, Ordering::Relaxed);
}

/// Halts until the next interrupt, marking the CPU idle for the tick
/// accounting. Returns with interrupts enabled.
pub fn idle_halt() {
    x86_64::instructions::interrupts::disable();
    this_cpu().halted.store(true, Ordering::Relaxed);
    // sti's one-instruction shadow: no interrupt between it and hlt, so
    // none is missed and the mark is only seen by one that woke us.
    x86_64::instructions::interrupts::enable_and_hlt();
    this_cpu().halted.store(false, Ordering::Relaxed);
}
