//! Loading static x86_64 executables.
//!
//! [`parse`] reads an ELF image and decides, without touching anything,
//! whether the kernel will run it; a refusal names the reason
//! ([`ElfError`]). [`load`] then maps the segments into a [`UserSpace`].
//!
//! # What is accepted
//!
//! A 64-bit little-endian x86_64 `ET_EXEC` file whose `PT_LOAD` segments
//!
//! * lie in the user half, above the null page (`0..0x1000` stays unmapped
//!   so that null pointers fault),
//! * share no page with each other (each page gets one set of permissions),
//! * are not both writable and executable,
//! * hold no more file bytes than memory bytes, all inside the file,
//! * together need at most [`MAX_PROGRAM_BYTES`],
//!
//! and whose entry point is inside an executable segment. A program that
//! asks for a dynamic linker (`PT_INTERP`) is refused; other program
//! headers (notes, `PT_GNU_STACK`, ...) are ignored. Segments need not be
//! page-aligned in the file, since they are copied, not mapped from it.
//!
//! # Hostile input
//!
//! The image comes from a user (or a boot module) and may be anything.
//! xmas-elf reads headers in place and *panics* on input it cannot handle:
//! a header or program-header table that is misaligned, too short, or
//! outside the file. So the ELF identification is checked first (it decides
//! the header layout), the input is made 8-byte aligned, and the program
//! header table's size, alignment and bounds are checked before xmas-elf
//! reads a single entry. All arithmetic on file values is checked.

use core::fmt;
use core::mem::size_of;

use abi::{Errno, USER_END};
use alloc::vec::Vec;
use xmas_elf::ElfFile;
use xmas_elf::header::{self, Machine};
use xmas_elf::program::{self, ProgramHeader, ProgramHeader64};

use super::aspace::{Alloc, UserSpace};
use super::uaccess::{Faulting, fill_user};
use crate::mm::PAGE_SIZE;
use crate::mm::phys::PhysMem;
use crate::mm::pte::{LeafFlags, PteFormat};
use crate::mm::region::{Backing, Region, VmFlags};

/// The most memory a program's segments may take together: 64 MiB.
pub const MAX_PROGRAM_BYTES: u64 = 64 << 20;

/// Size of the ELF64 file header.
const EHDR_SIZE: usize = 64;
/// Where the ident bytes and `e_machine` sit in the file header.
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const EI_NIDENT: usize = 16;
const E_MACHINE: usize = 18;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
/// What xmas-elf needs its headers aligned to (their u64 fields).
const ALIGN: usize = 8;

/// Why an image is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// The file header, the program-header table or a segment's file bytes
    /// reach beyond the end of the file.
    Truncated,
    /// No ELF magic number.
    NotElf,
    /// No memory to read it with (the kernel's heap is exhausted).
    NoMemory,
    Not64Bit,
    NotLittleEndian,
    /// `e_machine` is not x86_64 (62).
    WrongMachine(u16),
    /// `e_type` is not `ET_EXEC` (2).
    NotExecutable(u16),
    /// No `PT_LOAD` segment with memory.
    NoSegments,
    /// A segment reaches at or above `USER_END`, or wraps.
    KernelAddress {
        vaddr: u64,
    },
    /// A segment starts below 0x1000.
    NullPage,
    /// Two segments, starting at `a` and `b`, share a page.
    Overlapping {
        a: u64,
        b: u64,
    },
    FileLargerThanMemory,
    /// A segment both writable and executable.
    WriteAndExecute,
    /// The entry point is not inside an executable segment.
    EntryOutside(u64),
    /// The segments need more than [`MAX_PROGRAM_BYTES`].
    TooLarge,
    /// Anything else wrong with the headers.
    Malformed(&'static str),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Truncated => {
                f.write_str("file is truncated: it ends inside a header or segment")
            }
            ElfError::NotElf => f.write_str("not an ELF file (bad magic number)"),
            ElfError::Not64Bit => f.write_str("not a 64-bit ELF file"),
            ElfError::NotLittleEndian => f.write_str("not a little-endian ELF file"),
            ElfError::WrongMachine(m) => write!(f, "built for machine {m}, not x86_64 (62)"),
            ElfError::NotExecutable(t) => {
                write!(f, "ELF type {t} is not a static executable (ET_EXEC)")
            }
            ElfError::NoSegments => f.write_str("no loadable segments"),
            ElfError::KernelAddress { vaddr } if *vaddr >= USER_END => {
                write!(f, "segment at {vaddr:#x} lies in the kernel half")
            }
            ElfError::KernelAddress { vaddr } => {
                write!(f, "segment at {vaddr:#x} runs past the end of user space")
            }
            ElfError::NullPage => f.write_str("a segment maps the null page (below 0x1000)"),
            ElfError::Overlapping { a, b } => {
                write!(f, "segments at {a:#x} and {b:#x} share a page")
            }
            ElfError::FileLargerThanMemory => {
                f.write_str("a segment has more file bytes than memory bytes")
            }
            ElfError::WriteAndExecute => f.write_str("a segment is both writable and executable"),
            ElfError::EntryOutside(entry) => {
                write!(f, "entry point {entry:#x} is not in an executable segment")
            }
            ElfError::TooLarge => {
                let mib = MAX_PROGRAM_BYTES >> 20;
                write!(f, "program needs more than {mib} MiB of memory")
            }
            ElfError::Malformed(why) => write!(f, "malformed ELF: {why}"),
            ElfError::NoMemory => f.write_str("no memory to read the program"),
        }
    }
}

/// One `PT_LOAD` segment: `mem_size` bytes at `vaddr`, the first
/// `file_size` of them from the file at `offset`, the rest zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub mem_size: u64,
    pub offset: u64,
    pub file_size: u64,
    pub writable: bool,
    pub executable: bool,
}

impl Segment {
    /// The page-aligned range `[start, end)` the segment occupies; `None`
    /// if it wraps.
    fn pages(&self) -> Option<(u64, u64)> {
        let end = self.vaddr.checked_add(self.mem_size)?;
        let end = end.checked_next_multiple_of(PAGE_SIZE)?;
        Some((self.vaddr & !(PAGE_SIZE - 1), end))
    }

    /// The segment's bytes in the file, if they are there and fit its memory.
    fn file_bytes<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        if self.file_size > self.mem_size {
            return None;
        }
        let start = usize::try_from(self.offset).ok()?;
        let len = usize::try_from(self.file_size).ok()?;
        bytes.get(start..start.checked_add(len)?)
    }

    fn leaf_flags(&self) -> LeafFlags {
        let mut flags = LeafFlags::empty();
        flags.set(LeafFlags::WRITABLE, self.writable);
        flags.set(LeafFlags::EXECUTABLE, self.executable);
        flags
    }

    /// The region it becomes: a private mapping of the program's file on
    /// Linux, readable, and charged when writable.
    fn region(&self) -> Option<Region> {
        let (start, end) = self.pages()?;
        let mut flags = VmFlags::READ | VmFlags::MAY;
        flags.set(VmFlags::WRITE, self.writable);
        flags.set(VmFlags::EXEC, self.executable);
        flags.set(VmFlags::ACCOUNT, self.writable);
        Some(Region {
            start,
            end,
            flags,
            backing: Backing::Image,
            pgoff: self.offset / PAGE_SIZE,
            anon: 0,
        })
    }

    fn contains(&self, va: u64) -> bool {
        va >= self.vaddr && va - self.vaddr < self.mem_size
    }
}

/// A program ready to load: its entry point and its segments, sorted by
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// Where the program headers are once loaded (for `AT_PHDR`): inside
    /// the `PT_LOAD` segment whose file bytes hold them, as Linux finds
    /// them; 0 if none does.
    pub phdr: u64,
    /// How many program headers there are (`AT_PHNUM`).
    pub phnum: u16,
}

impl Program {
    /// Where its last segment ends: the heap starts on the page after.
    pub fn end(&self) -> u64 {
        let ends = self.segments.iter().filter_map(|s| s.pages().map(|p| p.1));
        ends.max().unwrap_or(0)
    }
}

/// Reads and checks an executable (see the module doc for the rules).
/// Touches nothing and never panics, whatever `bytes` holds.
pub fn parse(bytes: &[u8]) -> Result<Program, ElfError> {
    check_ident(bytes)?;
    let image = Aligned::new(bytes)?;
    let file = ElfFile::new(image.bytes()).map_err(ElfError::Malformed)?;
    check_file_header(&file, bytes)?;
    let count = check_program_header_table(&file, bytes.len())?;
    let mut segments = Vec::new();
    for index in 0..count {
        let ph = match file.program_header(index) {
            Ok(ProgramHeader::Ph64(ph)) => ph,
            Ok(ProgramHeader::Ph32(_)) => return Err(ElfError::Malformed("32-bit program header")),
            Err(why) => return Err(ElfError::Malformed(why)),
        };
        match ph.get_type() {
            Ok(program::Type::Load) => {
                if let Some(seg) = segment_of(ph, bytes.len())? {
                    segments.try_reserve(1).map_err(|_| ElfError::NoMemory)?;
                    segments.push(seg);
                }
            }
            Ok(program::Type::Interp) => {
                return Err(ElfError::Malformed("needs a dynamic linker (PT_INTERP)"));
            }
            // Nothing to load; unknown kinds too, as Linux does.
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    segments.sort_unstable_by_key(|s| s.vaddr);
    check_layout(&segments)?;
    let entry = file.header.pt2.entry_point();
    if !segments.iter().any(|s| s.executable && s.contains(entry)) {
        return Err(ElfError::EntryOutside(entry));
    }
    let phoff = file.header.pt2.ph_offset();
    let phdr = segments
        .iter()
        .find(|s| s.offset <= phoff && phoff - s.offset < s.file_size)
        .map_or(0, |s| s.vaddr + (phoff - s.offset));
    Ok(Program {
        entry,
        segments,
        phdr,
        phnum: count,
    })
}

/// Maps `program`'s segments into `space` and fills them: file bytes
/// copied from `bytes` (the image `program` was parsed from), the rest
/// zeroed. Pages are `USER`, plus `WRITABLE` or `EXECUTABLE` as the segment
/// says, read-only otherwise; each segment is a region of the space too.
/// Returns the entry point.
///
/// On error everything this call mapped is unmapped and freed again.
/// `EINVAL`: a segment's file bytes are not in `bytes` or exceed its
/// memory size; otherwise the errors of [`UserSpace::map_zeroed`]
/// (`ENOMEM`, `EEXIST`, `EFAULT`).
pub fn load<F: PteFormat, M: PhysMem>(
    program: &Program,
    bytes: &[u8],
    space: &mut UserSpace<'_, F, M>,
    alloc: Alloc<'_>,
) -> Result<u64, Errno> {
    // Everything that needs no memory is judged before anything is mapped.
    let mut plan = Vec::new();
    plan.try_reserve_exact(program.segments.len())
        .map_err(|_| Errno::ENOMEM)?;
    for seg in &program.segments {
        seg.pages().ok_or(Errno::EFAULT)?;
        plan.push((seg, seg.file_bytes(bytes).ok_or(Errno::EINVAL)?));
    }
    for (done, &(seg, data)) in plan.iter().enumerate() {
        if let Err(e) = map_segment(seg, data, space, alloc) {
            for &(earlier, _) in &plan[..done] {
                unmap_segment(earlier, space, alloc);
            }
            return Err(e);
        }
    }
    Ok(program.entry)
}

/// Maps one segment's pages and copies its file bytes in; all or nothing.
fn map_segment<F: PteFormat, M: PhysMem>(
    seg: &Segment,
    data: &[u8],
    space: &mut UserSpace<'_, F, M>,
    alloc: Alloc<'_>,
) -> Result<(), Errno> {
    let (start, end) = seg.pages().ok_or(Errno::EFAULT)?;
    let region = seg.region().ok_or(Errno::EFAULT)?;
    space.add_region(region)?;
    let (frames, tables) = (alloc.frames, alloc.tables);
    if let Err(e) = space.map_zeroed(start, end - start, seg.leaf_flags(), frames, tables) {
        space.drop_regions(start, end);
        return Err(e);
    }
    // The pages are user pages we just mapped, so only a caller passing
    // the wrong memory could make this fail.
    if let Err(e) = fill_user(&mut Faulting { space, alloc }, seg.vaddr, data) {
        unmap_segment(seg, space, alloc);
        return Err(e);
    }
    Ok(())
}

/// Undoes a successful `map_segment`.
fn unmap_segment<F: PteFormat, M: PhysMem>(
    seg: &Segment,
    space: &mut UserSpace<'_, F, M>,
    alloc: Alloc<'_>,
) {
    if let Some((start, end)) = seg.pages() {
        // Cannot fail: map_zeroed accepted the same range.
        let _ = space.unmap_range(start, end - start, alloc.frames, alloc.tables);
        space.drop_regions(start, end);
    }
}

// ---- parsing, step by step ----

/// The identification bytes, which decide how the rest is laid out. Read
/// by hand because xmas-elf picks the header layout from the class byte
/// and reports a bad class and a short file alike.
fn check_ident(bytes: &[u8]) -> Result<(), ElfError> {
    // Any prefix of the magic number is a truncated ELF file.
    let magic = &header::MAGIC[..bytes.len().min(header::MAGIC.len())];
    if !bytes.starts_with(magic) {
        return Err(ElfError::NotElf);
    }
    let ident = bytes.get(..EI_NIDENT).ok_or(ElfError::Truncated)?;
    if ident[EI_CLASS] != ELFCLASS64 {
        return Err(ElfError::Not64Bit);
    }
    if ident[EI_DATA] != ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian);
    }
    if bytes.len() < EHDR_SIZE {
        return Err(ElfError::Truncated);
    }
    Ok(())
}

fn check_file_header(file: &ElfFile<'_>, bytes: &[u8]) -> Result<(), ElfError> {
    let pt2 = &file.header.pt2;
    if pt2.machine().as_machine() != Machine::X86_64 {
        // xmas-elf names the machine but hides the number; read it.
        let raw = bytes
            .get(E_MACHINE..E_MACHINE + 2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
        return Err(ElfError::WrongMachine(raw));
    }
    let kind = pt2.type_();
    if kind.as_type() != header::Type::Executable {
        return Err(ElfError::NotExecutable(kind.0));
    }
    Ok(())
}

/// Checks that xmas-elf can read every program header without panicking:
/// entries of the right size, the table aligned and inside the file.
/// Returns the number of entries.
fn check_program_header_table(file: &ElfFile<'_>, file_len: usize) -> Result<u16, ElfError> {
    let pt2 = &file.header.pt2;
    let (offset, entry_size, count) = (pt2.ph_offset(), pt2.ph_entry_size(), pt2.ph_count());
    if count == 0 {
        return Err(ElfError::NoSegments);
    }
    if usize::from(entry_size) != size_of::<ProgramHeader64>() {
        return Err(ElfError::Malformed(
            "program header entries are not 56 bytes",
        ));
    }
    if offset < EHDR_SIZE as u64 {
        return Err(ElfError::Malformed(
            "program headers overlap the file header",
        ));
    }
    if !offset.is_multiple_of(ALIGN as u64) {
        return Err(ElfError::Malformed(
            "program headers are not 8-byte aligned",
        ));
    }
    let table_len = u64::from(count) * u64::from(entry_size);
    match offset.checked_add(table_len) {
        Some(end) if end <= file_len as u64 => Ok(count),
        _ => Err(ElfError::Truncated),
    }
}

/// A `PT_LOAD` entry as a checked segment; `None` if it maps nothing.
fn segment_of(ph: &ProgramHeader64, file_len: usize) -> Result<Option<Segment>, ElfError> {
    let seg = Segment {
        vaddr: ph.virtual_addr,
        mem_size: ph.mem_size,
        offset: ph.offset,
        file_size: ph.file_size,
        writable: ph.flags.is_write(),
        executable: ph.flags.is_execute(),
    };
    if seg.file_size > seg.mem_size {
        return Err(ElfError::FileLargerThanMemory);
    }
    if seg.mem_size == 0 {
        return Ok(None);
    }
    if seg.vaddr < PAGE_SIZE {
        return Err(ElfError::NullPage);
    }
    match seg.vaddr.checked_add(seg.mem_size) {
        Some(end) if end <= USER_END => {}
        _ => return Err(ElfError::KernelAddress { vaddr: seg.vaddr }),
    }
    if seg.writable && seg.executable {
        return Err(ElfError::WriteAndExecute);
    }
    if seg.file_size > 0 {
        match seg.offset.checked_add(seg.file_size) {
            Some(end) if end <= file_len as u64 => {}
            _ => return Err(ElfError::Truncated),
        }
    }
    Ok(Some(seg))
}

/// Segments sorted by address share no page and fit the size limit.
fn check_layout(segments: &[Segment]) -> Result<(), ElfError> {
    let mut total: u64 = 0;
    let mut previous: Option<(&Segment, u64)> = None;
    for seg in segments {
        // segment_of() kept every segment below USER_END, so no wrap.
        let (start, end) = seg
            .pages()
            .ok_or(ElfError::KernelAddress { vaddr: seg.vaddr })?;
        if let Some((prev, prev_end)) = previous
            && start < prev_end
        {
            return Err(ElfError::Overlapping {
                a: prev.vaddr,
                b: seg.vaddr,
            });
        }
        total = total.saturating_add(end - start);
        previous = Some((seg, end));
    }
    if total > MAX_PROGRAM_BYTES {
        return Err(ElfError::TooLarge);
    }
    Ok(())
}

/// The input, 8-byte aligned for xmas-elf: borrowed when it already is,
/// otherwise copied once into a buffer with room to align the start.
enum Aligned<'a> {
    Borrowed(&'a [u8]),
    Copied {
        buf: Vec<u8>,
        start: usize,
        len: usize,
    },
}

impl<'a> Aligned<'a> {
    fn new(bytes: &'a [u8]) -> Result<Aligned<'a>, ElfError> {
        if is_aligned(bytes) {
            return Ok(Aligned::Borrowed(bytes));
        }
        // The copy is as large as the program: with memory short it must
        // be a refusal, not a failed allocation.
        let mut buf = Vec::new();
        buf.try_reserve_exact(bytes.len() + ALIGN - 1)
            .map_err(|_| ElfError::NoMemory)?;
        buf.resize(bytes.len() + ALIGN - 1, 0);
        let start = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
        buf[start..start + bytes.len()].copy_from_slice(bytes);
        Ok(Aligned::Copied {
            buf,
            start,
            len: bytes.len(),
        })
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Aligned::Borrowed(bytes) => bytes,
            Aligned::Copied { buf, start, len } => &buf[*start..*start + *len],
        }
    }
}

fn is_aligned(bytes: &[u8]) -> bool {
    (bytes.as_ptr() as usize).is_multiple_of(ALIGN)
}

#[cfg(test)]
mod tests;
