//! The x87, SSE and AVX state of user threads.
//!
//! The kernel is built soft-float (`x86_64-unknown-none`), so kernel code
//! never touches these registers: whatever ring 3 left in them is still
//! there when the kernel switches tasks. Each user thread therefore owns an
//! [`FpuArea`], which the switch saves the outgoing thread's registers into
//! and loads the incoming thread's from (eagerly, at every switch: no
//! `#NM` trap, no owner tracking). Kernel threads have no area and cost
//! nothing.
//!
//! [`init`] enables the registers for ring 3 and decides the save format:
//! XSAVE for the features enabled in XCR0 (x87, SSE, and AVX when the CPU
//! has it), with the area size CPUID reports for exactly those, or
//! FXSAVE's 512 bytes on a CPU without XSAVE.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::arch::asm;
use core::arch::x86_64::CpuidResult;
use kernel::proc::FpuImage;
use spin::Once;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::xcontrol::{XCr0, XCr0Flags};

/// What [`init`] enabled.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// XSAVE/XRSTOR with the XCR0 below; false: FXSAVE/FXRSTOR.
    pub xsave: bool,
    /// The state components saved and restored (XCR0; x87|SSE without XSAVE).
    pub xcr0: u64,
    /// Bytes of one save area.
    pub size: usize,
}

impl Features {
    /// Whether the YMM registers' upper halves are enabled and saved.
    pub fn avx(&self) -> bool {
        self.xcr0 & XCr0Flags::AVX.bits() != 0
    }
}

static FEATURES: Once<Features> = Once::new();

// Every new area starts as the state Linux gives a new thread: FCW 0x37f
// (every x87 exception masked, extended precision, round to nearest) and
// MXCSR 0x1f80 (the same for SSE); everything else zero, which in FXSAVE's
// abridged tag word means every x87 register is empty. An XSAVE header of
// zeros (XSTATE_BV = 0) tells XRSTOR that every component is in its
// initial configuration, the same clean state (registers zero, upper YMM
// halves zero); MXCSR is the exception, XRSTOR loads it from the legacy
// region regardless, so it is set there too.
const FCW_OFFSET: usize = 0;
const MXCSR_OFFSET: usize = 24;
const CLEAN_FCW: u16 = 0x37f;
const CLEAN_MXCSR: u32 = 0x1f80;

/// FXSAVE's area: the legacy region XSAVE's layout also begins with.
const FXSAVE_SIZE: usize = 512;

fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
    core::arch::x86_64::__cpuid_count(leaf, sub)
}

/// Enables the x87, SSE and (when present) AVX registers for user mode and
/// picks the save format. Call once at boot, before the first user
/// context is made.
pub fn init() -> &'static Features {
    FEATURES.call_once(|| {
        let leaf1 = cpuid(1, 0);
        let has_xsave = leaf1.ecx & (1 << 26) != 0;
        let has_avx = leaf1.ecx & (1 << 28) != 0;
        if !has_xsave {
            enable(None);
            return Features {
                xsave: false,
                xcr0: (XCr0Flags::X87 | XCr0Flags::SSE).bits(),
                size: FXSAVE_SIZE,
            };
        }
        let supported = {
            let d = cpuid(0xd, 0);
            (d.edx as u64) << 32 | d.eax as u64
        };
        let mut xcr0 = XCr0Flags::X87 | XCr0Flags::SSE;
        if has_avx && supported & XCr0Flags::AVX.bits() != 0 {
            xcr0 |= XCr0Flags::AVX;
        }
        enable(Some(xcr0));
        // Leaf 0xD's EBX is the area size for what XCR0 now enables.
        let size = cpuid(0xd, 0).ebx as usize;
        Features {
            xsave: true,
            xcr0: xcr0.bits(),
            // XSAVE always writes the legacy region and the header, so an
            // area is never smaller, whatever a hypervisor's CPUID says.
            size: size.max(FXSAVE_SIZE + 64),
        }
    })
}

/// The same registers on an application processor (CR0, CR4 and XCR0 are
/// each CPU's own), as [`init`] chose them on the bootstrap CPU: a thread
/// saved on one CPU must restore on any other.
pub fn init_ap() {
    match features() {
        Some(f) if f.xsave => enable(Some(XCr0Flags::from_bits_truncate(f.xcr0))),
        Some(_) => enable(None),
        None => panic!("fpu::init_ap before fpu::init"),
    }
}

/// Sets this CPU's control registers for user FPU state: XSAVE with
/// `xcr0` when given (CPUID reported XSAVE), FXSAVE otherwise.
fn enable(xcr0: Option<XCr0Flags>) {
    // EM clear: x87 instructions run instead of trapping to an
    // emulator. MP with TS: WAIT traps like the rest when TS is set
    // (it never is, saving is eager). NE: x87 errors are #MF in the
    // faulting thread, not an external interrupt the kernel would
    // have to route.
    // SAFETY: only the FPU-related bits change; paging, protection
    // and write-protect stay as boot set them.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
        })
    };
    // OSFXSR: SSE instructions run and FXSAVE saves the XMM registers.
    // OSXMMEXCPT: an unmasked SSE exception is #XM, not #UD.
    let mut cr4 = Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE;
    if xcr0.is_some() {
        cr4 |= Cr4Flags::OSXSAVE;
    }
    // SAFETY: every x86_64 CPU has FXSR and SSE, and OSXSAVE is set
    // only when CPUID reports XSAVE; the other CR4 bits are kept.
    unsafe { Cr4::update(|f| f.insert(cr4)) };
    if let Some(xcr0) = xcr0 {
        // SAFETY: CR4.OSXSAVE is set, and x87|SSE(|AVX when both CPUID
        // leaves report it) is a combination the CPU accepts.
        unsafe { XCr0::write(xcr0) };
    }
}

/// What [`init`] enabled; None before it ran.
pub fn features() -> Option<&'static Features> {
    FEATURES.get()
}

/// 64 bytes aligned as XSAVE requires, so that a slice of them is a
/// correctly aligned area without raw allocation.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Block([u8; 64]);

/// One user thread's saved x87/SSE/AVX registers. Its bytes are private:
/// only [`FpuArea::new`] and the CPU's own save write them, so what
/// [`FpuArea::restore`] loads is always an image the CPU accepts.
pub struct FpuArea {
    blocks: Box<[Block]>,
    features: &'static Features,
}

/// No memory for a save area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMemory;

impl FpuArea {
    /// An area holding the clean state of a new thread. Fails instead of
    /// panicking when the heap is short, so making a thread can be
    /// refused with ENOMEM.
    ///
    /// Panics if [`init`] has not run: a boot-order bug.
    pub fn new() -> Result<FpuArea, NoMemory> {
        let Some(f) = features() else {
            panic!("FpuArea::new before fpu::init");
        };
        let n = f.size.div_ceil(64);
        let mut blocks = Vec::new();
        // Exactly `n`: the boxed slice below then needs no reallocation,
        // which could not fail gracefully.
        blocks.try_reserve_exact(n).map_err(|_| NoMemory)?;
        blocks.resize(n, Block([0; 64]));
        let legacy = &mut blocks[0].0;
        legacy[FCW_OFFSET..FCW_OFFSET + 2].copy_from_slice(&CLEAN_FCW.to_le_bytes());
        legacy[MXCSR_OFFSET..MXCSR_OFFSET + 4].copy_from_slice(&CLEAN_MXCSR.to_le_bytes());
        Ok(FpuArea {
            blocks: blocks.into_boxed_slice(),
            features: f,
        })
    }

    /// Stores the registers into the area.
    pub fn save(&mut self) {
        // SAFETY: the area is 64-byte aligned and at least `size` bytes
        // long, which CPUID reported for exactly the components in `xcr0`.
        unsafe { save_at(self.blocks.as_mut_ptr().cast(), self.features) }
    }

    /// Loads the registers from the area.
    pub fn restore(&self) {
        // SAFETY: aligned and sized as in `save`; the image was made by
        // `new` (header zero, MXCSR valid) or by the CPU's own save with
        // the same mask, and nothing else can write it.
        unsafe { restore_at(self.blocks.as_ptr().cast(), self.features) }
    }
}

// ---- Signal frames ----
//
// A signal handler's frame holds the interrupted thread's registers as
// Linux's does: XSAVE's standard form for the components in XCR0 where
// XSAVE is used (the AVX upper halves included), FXSAVE's layout
// otherwise; the handler starts from the clean state. The registers are
// the running thread's own whenever the kernel runs for it (see above).

/// The clean state as XRSTOR reads it: the legacy region and a zero
/// header (every component in its initial configuration).
#[repr(C, align(64))]
struct Clean([u8; FXSAVE_SIZE + 64]);

static CLEAN: Clean = {
    let mut b = [0u8; FXSAVE_SIZE + 64];
    let fcw = CLEAN_FCW.to_le_bytes();
    b[FCW_OFFSET] = fcw[0];
    b[FCW_OFFSET + 1] = fcw[1];
    let mxcsr = CLEAN_MXCSR.to_le_bytes();
    let mut i = 0;
    while i < 4 {
        b[MXCSR_OFFSET + i] = mxcsr[i];
        i += 1;
    }
    Clean(b)
};

/// The MXCSR bits this CPU accepts (FXSAVE's MXCSR_MASK; 0 there means
/// the architectural default 0xffbf).
fn mxcsr_mask() -> u32 {
    static MASK: Once<u32> = Once::new();
    *MASK.call_once(|| {
        let mut area = FpuImage::zeroed();
        // SAFETY: 512 bytes and more, 64-byte aligned, CR4.OSFXSR set by
        // init.
        unsafe {
            asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack, preserves_flags))
        };
        match u32::from_le_bytes([area.0[28], area.0[29], area.0[30], area.0[31]]) {
            0 => 0xffbf,
            m => m,
        }
    })
}

/// Offsets in an XSAVE area: the header's XSTATE_BV, XCOMP_BV and the
/// reserved word XRSTOR checks.
const XSTATE_BV: usize = FXSAVE_SIZE;
const XCOMP_BV: usize = FXSAVE_SIZE + 8;
const XHEADER_RESERVED: usize = FXSAVE_SIZE + 16;
const XHEADER_SIZE: usize = 64;
/// x87 and SSE, the components of the legacy region.
const FP_SSE: u64 = 0b11;

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The signal frame's image: (bytes, XSAVE components), the components
/// 0 for FXSAVE's layout.
pub fn signal_format() -> (usize, u64) {
    match features() {
        Some(f) if f.xsave => (f.size, f.xcr0),
        _ => (FXSAVE_SIZE, 0),
    }
}

/// Stores the live registers into `out` in the format [`signal_format`]
/// gives; every byte the instruction does not write (the software bytes
/// 464..512, the header's reserved part) is zero.
pub fn save_signal_image(out: &mut FpuImage) {
    let Some(f) = features() else {
        return;
    };
    assert!(
        f.size <= FpuImage::SIZE,
        "an FPU image does not fit FpuImage"
    );
    out.0.fill(0);
    // SAFETY: FpuImage is 64-byte aligned and holds `f.size` bytes (see
    // the assertion), and its header was zeroed above, as XSAVE's
    // standard form expects.
    unsafe { save_at(out.0.as_mut_ptr(), f) }
}

/// Loads an image a program may have written (Linux's sigreturn):
/// `Some(components)`: those of an XSAVE image, the others of XCR0 to
/// their initial state; None: the legacy region (FXRSTOR's part), the
/// rest initial. Returns false, loading nothing, for an image the
/// instruction would refuse with #GP: MXCSR bits outside the CPU's mask;
/// for an XSAVE image, XSTATE_BV bits outside XCR0, a non-zero XCOMP_BV
/// (the compacted form is not taken) or reserved header word. The
/// instruction itself only ever sees a header made here.
pub fn restore_signal_image(image: &FpuImage, components: Option<u64>) -> bool {
    let Some(f) = features() else {
        return false;
    };
    let b = &image.0;
    let mxcsr = u32::from_le_bytes([
        b[MXCSR_OFFSET],
        b[MXCSR_OFFSET + 1],
        b[MXCSR_OFFSET + 2],
        b[MXCSR_OFFSET + 3],
    ]);
    if mxcsr & !mxcsr_mask() != 0 {
        return false;
    }
    if !f.xsave {
        // SAFETY: aligned as FXRSTOR requires, and MXCSR has no bit the
        // CPU refuses; every other legacy field is accepted as it is.
        unsafe { restore_at(b.as_ptr(), f) };
        return true;
    }
    let present = match components {
        None => FP_SSE,
        Some(wanted) => {
            let bv = u64_at(b, XSTATE_BV);
            if bv & !f.xcr0 != 0 || u64_at(b, XCOMP_BV) != 0 || u64_at(b, XHEADER_RESERVED) != 0 {
                return false;
            }
            bv & wanted
        }
    };
    let mut area = *image;
    area.0[XSTATE_BV..XSTATE_BV + XHEADER_SIZE].fill(0);
    area.0[XSTATE_BV..XSTATE_BV + 8].copy_from_slice(&present.to_le_bytes());
    // SAFETY: 64-byte aligned and `f.size` bytes long; the header is the
    // standard form's with only XCR0's components marked present (the
    // others of XCR0 are put in their initial state), and MXCSR was
    // checked above.
    unsafe { restore_at(area.0.as_ptr(), f) };
    true
}

/// Puts the registers in the clean state a new thread starts with (the
/// upper YMM halves too, where XSAVE is used).
pub fn reset() {
    let Some(f) = features() else {
        return;
    };
    // SAFETY: 64-byte aligned; a clean image with a valid MXCSR whose
    // XSAVE header is zero, so XRSTOR reads no component area, only the
    // legacy region's MXCSR and the header.
    unsafe { restore_at(CLEAN.0.as_ptr(), f) }
}

/// Stores the registers at `ptr` in `f`'s format: XSAVE for the
/// components in XCR0, or FXSAVE. The 64-bit forms keep 64-bit x87
/// instruction and operand pointers.
///
/// # Safety
/// `ptr` is 64-byte aligned and writable for `f.size` bytes, and `f` is
/// what `init` enabled on this CPU (CR4.OSXSAVE or OSFXSR set).
unsafe fn save_at(ptr: *mut u8, f: &Features) {
    if f.xsave {
        // SAFETY: the caller's contract: aligned, `f.size` bytes, which
        // CPUID reported for exactly the components in `xcr0` (EDX:EAX).
        unsafe {
            asm!(
                "xsave64 [{}]",
                in(reg) ptr,
                in("eax") f.xcr0 as u32,
                in("edx") (f.xcr0 >> 32) as u32,
                options(nostack, preserves_flags)
            )
        }
    } else {
        // SAFETY: the caller's contract: 512 bytes, aligned.
        unsafe { asm!("fxsave64 [{}]", in(reg) ptr, options(nostack, preserves_flags)) }
    }
}

/// Loads the registers from the image at `ptr`, in `f`'s format.
///
/// # Safety
/// As for [`save_at`] (readable rather than writable), and the image is
/// one the CPU accepts: MXCSR within its mask and, for XSAVE, a standard
/// header naming only components of XCR0.
unsafe fn restore_at(ptr: *const u8, f: &Features) {
    if f.xsave {
        // SAFETY: the caller's contract.
        unsafe {
            asm!(
                "xrstor64 [{}]",
                in(reg) ptr,
                in("eax") f.xcr0 as u32,
                in("edx") (f.xcr0 >> 32) as u32,
                options(nostack, preserves_flags, readonly)
            )
        }
    } else {
        // SAFETY: the caller's contract.
        unsafe { asm!("fxrstor64 [{}]", in(reg) ptr, options(nostack, preserves_flags, readonly)) }
    }
}

/// The `si_code` of a floating-point exception (#MF, vector 16, or #XM,
/// vector 19), read from the unmasked exception flags as Linux does; 0
/// when none is found.
pub fn exception_code(vector: u64) -> i32 {
    // (flags, masks): the low six bits of each are one exception apiece.
    let (flags, masks) = if vector == 19 {
        let mut mxcsr = 0u32;
        // SAFETY: stores MXCSR into a local; CR4.OSFXSR is set.
        unsafe { asm!("stmxcsr [{}]", in(reg) &mut mxcsr, options(nostack, preserves_flags)) };
        (mxcsr, mxcsr >> 7)
    } else {
        let (mut sw, mut cw) = (0u16, 0u16);
        // SAFETY: stores the x87 status and control words into locals.
        unsafe {
            asm!("fnstsw [{}]", in(reg) &mut sw, options(nostack, preserves_flags));
            asm!("fnstcw [{}]", in(reg) &mut cw, options(nostack, preserves_flags));
        }
        (u32::from(sw), u32::from(cw))
    };
    let err = flags & !masks & 0x3f;
    // Linux's order (fpu__exception_code): invalid, divide, overflow,
    // underflow or denormal, precision.
    if err & 0x01 != 0 {
        7 // FPE_FLTINV
    } else if err & 0x04 != 0 {
        3 // FPE_FLTDIV
    } else if err & 0x08 != 0 {
        4 // FPE_FLTOVF
    } else if err & 0x12 != 0 {
        5 // FPE_FLTUND
    } else if err & 0x20 != 0 {
        6 // FPE_FLTRES
    } else {
        0
    }
}
