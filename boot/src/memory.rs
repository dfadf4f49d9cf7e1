//! Early memory setup: the frame allocator over the boot map and the
//! kernel's own page tables.
//!
//! The trampoline's tables map the first 4 GiB at the direct-map base, which
//! is enough to place the frame descriptors and build the real tables.
//! Those map every region of the boot map at the direct-map base (never
//! executable) and the kernel image section by section: text read-execute,
//! rodata read-only, data and bss read-write, the boot stack read-write
//! above one unmapped guard page. Nothing maps low addresses any more, so a
//! null pointer faults.

use core::fmt;
use core::ops::Range;

use arch::layout::{DIRECT_MAP_SIZE, KERNEL_BASE, phys_to_virt};
use arch::phys::{DIRECT_MAP, DirectMap};
use arch::pte::X86Pte;
use kernel::bootinfo::{BootInfo, MAX_MODULES, MAX_REGIONS};
use kernel::mm::frame::{FrameAllocator, FrameDesc, FrameError};
use kernel::mm::paging::{MapError, PageSize, PageTable, RangeError, TableAlloc};
use kernel::mm::pte::{LeafFlags, Pte};
use kernel::mm::tlb::FlushBatch;
use kernel::mm::{PAGE_SIZE, Pfn};
use kernel::sync::{IrqMutex, rank};
use spin::Once;

/// Why memory setup failed; boot reports it and powers off.
#[derive(Debug)]
pub enum SetupError {
    NoRoomForDescriptors { bytes: u64 },
    Frames(FrameError),
    Map(MapError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NoRoomForDescriptors { bytes } => {
                write!(
                    f,
                    "no usable region below 4 GiB holds the {bytes} bytes of frame descriptors"
                )
            }
            SetupError::Frames(e) => write!(f, "frame allocator: {e}"),
            SetupError::Map(e) => write!(f, "kernel page tables: {e:?}"),
        }
    }
}

impl From<FrameError> for SetupError {
    fn from(e: FrameError) -> Self {
        SetupError::Frames(e)
    }
}

impl From<MapError> for SetupError {
    fn from(e: MapError) -> Self {
        SetupError::Map(e)
    }
}

impl From<RangeError> for SetupError {
    /// Boot builds its tables before CR3 points at them, so a failed range
    /// left nothing any TLB could hold.
    fn from(e: RangeError) -> Self {
        SetupError::Map(e.ignore_fresh_table())
    }
}

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
    static __image_end: u8;
}

/// The kernel image's physical start (the low boot section included), as
/// linker.ld places it. Not read from a symbol: one linked at a physical
/// address is out of reach of code-model=kernel references.
fn image_phys_start() -> u64 {
    0x10_0000
}

fn sym(s: *const u8) -> u64 {
    s as u64
}

/// Physical end of the image, stack included.
fn image_phys_end() -> u64 {
    sym(&raw const __image_end) - KERNEL_BASE
}

static FRAMES: Once<FrameAllocator<'static>> = Once::new();
static KERNEL_ROOT: Once<Pfn> = Once::new();
/// Serialises edits of the kernel's page tables (heap growth, later MMIO).
static KERNEL_PT_LOCK: IrqMutex<()> = IrqMutex::ranked(rank::KERNEL_PAGE_TABLES, ());
/// Frames the boot map calls usable, before anything was reserved.
static BOOT_MAP_FRAMES: Once<u64> = Once::new();

/// The frame allocator. Panics only if called before `init`, a boot-order bug.
pub fn frames() -> &'static FrameAllocator<'static> {
    FRAMES
        .get()
        .expect("frame allocator used before memory::init")
}

/// Usable frames according to the boot memory map.
pub fn boot_map_frames() -> u64 {
    BOOT_MAP_FRAMES.get().copied().unwrap_or(0)
}

/// Tables made for the kernel half after boot (new heap or stack-slot
/// regions), which stay for good: leak checks count them as owned.
static KERNEL_TABLES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Kernel-half table frames made after boot.
pub fn kernel_table_frames() -> u64 {
    KERNEL_TABLES.load(core::sync::atomic::Ordering::Relaxed)
}

/// Tables for `map_kernel_page`: from the frame allocator, counted.
struct KernelTables;

impl TableAlloc for KernelTables {
    fn alloc_table(&self) -> Result<Pfn, MapError> {
        let pfn = FrameTables.alloc_table()?;
        KERNEL_TABLES.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        Ok(pfn)
    }

    fn free_table(&self, pfn: Pfn) {
        KERNEL_TABLES.fetch_sub(1, core::sync::atomic::Ordering::Relaxed);
        FrameTables.free_table(pfn)
    }
}

/// Page-table frames come from the frame allocator.
pub struct FrameTables;

impl TableAlloc for FrameTables {
    fn alloc_table(&self) -> Result<Pfn, MapError> {
        frames().alloc_frame().map_err(|_| MapError::NoMemory)
    }

    fn free_table(&self, pfn: Pfn) {
        if let Err(e) = frames().free(pfn, 0) {
            log::error!("freeing page-table frame {pfn:?}: {e}");
        }
    }
}

/// Sets up frames and the kernel's page tables, then switches to them.
pub fn init(info: &BootInfo) -> Result<(), SetupError> {
    init_frames(info)?;
    let root = build_kernel_tables(info)?;
    arch::tlb::set_kernel_root(root);
    // SAFETY: the new tables map the kernel image (text, rodata, data, bss,
    // stack) at the addresses it runs at and all RAM at the direct-map base,
    // which is everything touched from here on.
    unsafe { arch::paging::load_root(root) };
    KERNEL_ROOT.call_once(|| root);
    let stats = frames().stats();
    log::info!("memory: {stats}");
    Ok(())
}

fn usable_ranges(info: &BootInfo) -> ([Range<Pfn>; MAX_REGIONS], usize) {
    let mut ranges: [Range<Pfn>; MAX_REGIONS] = core::array::from_fn(|_| Pfn(0)..Pfn(0));
    let mut n = 0;
    let limit = Pfn(DIRECT_MAP_SIZE / PAGE_SIZE);
    for r in info.usable_pfn_ranges() {
        let end = r.end.min(limit);
        if r.start < end && n < MAX_REGIONS {
            ranges[n] = r.start..end;
            n += 1;
        }
    }
    (ranges, n)
}

fn init_frames(info: &BootInfo) -> Result<(), SetupError> {
    let (ranges, n) = usable_ranges(info);
    let ranges = &ranges[..n];
    BOOT_MAP_FRAMES.call_once(|| ranges.iter().map(|r| r.end.0 - r.start.0).sum());
    let end_pfn = ranges.iter().map(|r| r.end.0).max().unwrap_or(0);
    let bytes = FrameAllocator::descs_bytes(end_pfn);
    let descs_at = place_descriptors(info, ranges, bytes)?;
    let descs = descriptor_array(descs_at, bytes, end_pfn);
    let alloc = FRAMES.call_once(|| FrameAllocator::new(descs, ranges));
    for r in reserved_ranges(info, descs_at, bytes).iter().flatten() {
        alloc.reserve(r.clone())?;
    }
    Ok(())
}

/// Ranges taken for good at boot: the first MiB (firmware data, the start
/// info), the kernel image, the descriptor array, and the boot modules.
fn reserved_ranges(
    info: &BootInfo,
    descs_at: u64,
    bytes: u64,
) -> [Option<Range<Pfn>>; 3 + MAX_MODULES] {
    let mut out: [Option<Range<Pfn>>; 3 + MAX_MODULES] = Default::default();
    out[0] = Some(Pfn(0)..Pfn::containing(image_phys_start()));
    out[1] = Some(Pfn::containing(image_phys_start())..pfn_up(image_phys_end()));
    out[2] = Some(Pfn::containing(descs_at)..pfn_up(descs_at + bytes));
    for (slot, m) in out[3..].iter_mut().zip(info.modules()) {
        *slot = Some(Pfn::containing(m.start)..pfn_up(m.start + m.len));
    }
    out
}

fn pfn_up(pa: u64) -> Pfn {
    Pfn(pa.div_ceil(PAGE_SIZE))
}

/// Finds room for the descriptors in usable RAM below 4 GiB (the early
/// direct map's reach), clear of the image and the modules.
fn place_descriptors(
    info: &BootInfo,
    ranges: &[Range<Pfn>],
    bytes: u64,
) -> Result<u64, SetupError> {
    let busy = |start: u64, end: u64| {
        let hits_image = start < image_phys_end() && image_phys_start() < end;
        let hits_module = info
            .modules()
            .iter()
            .any(|m| start < m.start + m.len && m.start < end);
        hits_image || hits_module || start < image_phys_start()
    };
    for r in ranges {
        let mut start = r.start.addr();
        while start + bytes <= r.end.addr() && start + bytes <= 1 << 32 {
            if !busy(start, start + bytes) {
                return Ok(start);
            }
            start += PAGE_SIZE;
        }
    }
    Err(SetupError::NoRoomForDescriptors { bytes })
}

fn descriptor_array(pa: u64, bytes: u64, count: u64) -> &'static [FrameDesc] {
    let ptr = phys_to_virt(pa) as *mut u8;
    // SAFETY: [pa, pa + bytes) is usable RAM that nothing else uses (checked
    // by place_descriptors, reserved right after), reachable through the
    // early direct map, page-aligned, and large enough for `count`
    // descriptors; FrameDesc is made of atomics, for which all-zero bytes
    // are a valid value, and the memory is zeroed before the slice exists.
    // It is never freed, so 'static holds.
    unsafe {
        core::ptr::write_bytes(ptr, 0, bytes as usize);
        core::slice::from_raw_parts(ptr as *const FrameDesc, count as usize)
    }
}

fn build_kernel_tables(info: &BootInfo) -> Result<Pfn, SetupError> {
    let mut pt = PageTable::<X86Pte, DirectMap>::new(&DIRECT_MAP, &FrameTables)?;
    let (spans, n) = direct_map_spans(info);
    let data = LeafFlags::WRITABLE | LeafFlags::GLOBAL;
    for &(start, end) in &spans[..n] {
        pt.map_range(
            phys_to_virt(start),
            start,
            end - start,
            data,
            PageSize::Size2M,
            &FrameTables,
        )?;
    }
    let text = LeafFlags::EXECUTABLE | LeafFlags::GLOBAL;
    map_image(
        &mut pt,
        &raw const __text_start,
        &raw const __text_end,
        text,
    )?;
    map_image(
        &mut pt,
        &raw const __rodata_start,
        &raw const __rodata_end,
        LeafFlags::GLOBAL,
    )?;
    map_image(
        &mut pt,
        &raw const __data_start,
        &raw const __data_end,
        data,
    )?;
    map_image(
        &mut pt,
        &raw const __stack_bottom,
        &raw const __stack_top,
        data,
    )?;
    Ok(pt.root())
}

fn map_image(
    pt: &mut PageTable<X86Pte, DirectMap>,
    start: *const u8,
    end: *const u8,
    flags: LeafFlags,
) -> Result<(), SetupError> {
    let (start, end) = (sym(start), sym(end));
    pt.map_range(
        start,
        start - KERNEL_BASE,
        end - start,
        flags,
        PageSize::Size4K,
        &FrameTables,
    )?;
    Ok(())
}

/// The boot map's regions rounded out to whole pages, sorted and merged, so
/// that neighbours sharing a partial page do not map it twice.
fn direct_map_spans(info: &BootInfo) -> ([(u64, u64); MAX_REGIONS], usize) {
    let mut spans = [(0u64, 0u64); MAX_REGIONS];
    let mut n = 0;
    for r in info.regions() {
        let start = r.start & !(PAGE_SIZE - 1);
        let end = r.end().min(DIRECT_MAP_SIZE).next_multiple_of(PAGE_SIZE);
        if start < end && n < MAX_REGIONS {
            spans[n] = (start, end);
            n += 1;
        }
    }
    spans[..n].sort_unstable();
    let mut merged = 0;
    for i in 0..n {
        let (s, e) = spans[i];
        if merged > 0 && s <= spans[merged - 1].1 {
            spans[merged - 1].1 = spans[merged - 1].1.max(e);
        } else {
            spans[merged] = (s, e);
            merged += 1;
        }
    }
    (spans, merged)
}

/// The kernel's page-table root; its top-level entries never change after
/// boot, so address spaces can share the kernel half by copying them.
pub fn kernel_root() -> Pfn {
    KERNEL_ROOT
        .get()
        .copied()
        .unwrap_or_else(arch::paging::current_root)
}

/// Maps one 4 KiB kernel page (heap growth). The caller owns `pfn`.
pub fn map_kernel_page(va: u64, pfn: Pfn, flags: LeafFlags) -> Result<(), MapError> {
    let root = *KERNEL_ROOT.get().ok_or(MapError::NotMapped)?;
    let _guard = KERNEL_PT_LOCK.lock();
    let mut pt = PageTable::<X86Pte, DirectMap>::from_root(&DIRECT_MAP, root);
    pt.map(va, pfn, PageSize::Size4K, flags, &KernelTables)
}

/// Unmaps one 4 KiB kernel page and flushes it; returns its frame, which
/// the caller now owns again.
pub fn unmap_kernel_page(va: u64) -> Result<Pfn, MapError> {
    let root = *KERNEL_ROOT.get().ok_or(MapError::NotMapped)?;
    let (pfn, flush) = {
        let _guard = KERNEL_PT_LOCK.lock();
        let mut pt = PageTable::<X86Pte, DirectMap>::from_root(&DIRECT_MAP, root);
        pt.unmap(va).map(|(pfn, _, _, flush)| (pfn, flush))?
    };
    // Kernel pages live in every address space: every CPU drops it before
    // the caller may reuse the frame (a task's stack, freed under the
    // scheduler's lock, among others).
    flush.flush(&arch::tlb::SHOOTDOWN);
    Ok(pfn)
}

/// Unmaps the 4 KiB kernel pages of `[start, start + pages * 4 KiB)`
/// that are mapped (the others are skipped), handing each one's frame to
/// `unmapped` and its old translation to `batch`: the caller shoots them
/// down in one go (through [`arch::tlb::SHOOTDOWN`]), for a whole range or
/// several, instead of once per page.
pub fn unmap_kernel_pages(
    start: u64,
    pages: u64,
    batch: &mut FlushBatch,
    mut unmapped: impl FnMut(Pfn),
) {
    let Some(&root) = KERNEL_ROOT.get() else {
        return;
    };
    let _guard = KERNEL_PT_LOCK.lock();
    let mut pt = PageTable::<X86Pte, DirectMap>::from_root(&DIRECT_MAP, root);
    for i in 0..pages {
        if let Ok((pfn, _, _, flush)) = pt.unmap(start + i * PAGE_SIZE) {
            batch.add(flush);
            unmapped(pfn);
        }
    }
}

/// Points the mapped 4 KiB kernel page at `va` to `pfn` with `flags`, in
/// one store, and shoots the old translation down; returns the old frame,
/// which no CPU reaches through `va` any more and the caller owns again.
pub fn remap_kernel_page(va: u64, pfn: Pfn, flags: LeafFlags) -> Result<Pfn, MapError> {
    let root = *KERNEL_ROOT.get().ok_or(MapError::NotMapped)?;
    let (old, flush) = {
        let _guard = KERNEL_PT_LOCK.lock();
        let mut pt = PageTable::<X86Pte, DirectMap>::from_root(&DIRECT_MAP, root);
        // Only over a leaf: a store into a hole would build tables.
        if !matches!(pt.entry(va, 0), Some(Pte::Leaf { .. })) {
            return Err(MapError::NotMapped);
        }
        pt.set_entry(va, 0, Pte::Leaf { pfn, flags }, &KernelTables)?
    };
    flush.flush(&arch::tlb::SHOOTDOWN);
    match old {
        Pte::Leaf { pfn, .. } => Ok(pfn),
        // Not after the check above, under the lock.
        _ => Err(MapError::NotMapped),
    }
}

/// A boot module's bytes through the direct map, if it lies in RAM.
pub fn phys_slice(pa: u64, len: u64) -> Option<&'static [u8]> {
    let end = pa.checked_add(len)?;
    if end > DIRECT_MAP_SIZE {
        return None;
    }
    let ptr = phys_to_virt(pa) as *const u8;
    // SAFETY: callers pass boot modules, which BootInfo::parse checked lie in
    // usable RAM and init reserved for good, so the bytes stay valid and
    // unaliased by any allocation for the kernel's lifetime.
    Some(unsafe { core::slice::from_raw_parts(ptr, len as usize) })
}

/// Maps the device page at physical `pa` uncached at `va` (the local
/// APIC's registers in the MMIO window).
pub fn map_mmio_page(va: u64, pa: u64) -> Result<(), MapError> {
    let flags = LeafFlags::WRITABLE | LeafFlags::NO_CACHE | LeafFlags::GLOBAL;
    map_kernel_page(va, Pfn::containing(pa), flags)
}

/// Makes sure `[pa, pa + len)` is readable through the direct map: firmware
/// tables (ACPI's) may lie in a range the boot map did not list, which the
/// direct map then lacks; such pages are mapped read-only. False when the
/// range is beyond the direct map or a page could not be mapped.
pub fn ensure_direct_mapped(pa: u64, len: u64) -> bool {
    let Some(&root) = KERNEL_ROOT.get() else {
        return false;
    };
    let Some(end) = pa.checked_add(len.max(1)) else {
        return false;
    };
    if end > DIRECT_MAP_SIZE {
        return false;
    }
    let _guard = KERNEL_PT_LOCK.lock();
    let mut pt = PageTable::<X86Pte, DirectMap>::from_root(&DIRECT_MAP, root);
    let first = pa & !(PAGE_SIZE - 1);
    (first..end).step_by(PAGE_SIZE as usize).all(|page| {
        let va = phys_to_virt(page);
        pt.translate(va).is_some()
            || pt
                .map(
                    va,
                    Pfn::containing(page),
                    PageSize::Size4K,
                    LeafFlags::GLOBAL,
                    &KernelTables,
                )
                .is_ok()
    })
}
