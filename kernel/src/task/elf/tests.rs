use super::*;
use crate::mm::frame::FrameStats;
use crate::task::aspace::Alloc;
use crate::task::aspace::testing::{Space, World};
use crate::task::uaccess::{Strict, copy_from_user};
use crate::testutil::Rng;
use alloc::collections::BTreeMap;
use alloc::string::ToString;
use std::panic::{AssertUnwindSafe, catch_unwind};

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

// Field offsets in the file header and in a program header.
const E_TYPE: usize = 16;
const E_ENTRY: usize = 24;
const E_PHOFF: usize = 32;
const E_PHENTSIZE: usize = 54;
const E_PHNUM: usize = 56;
const P_OFFSET: usize = 8;
const P_FILESZ: usize = 32;

/// One program header and the bytes it loads from the file.
#[derive(Clone)]
struct Seg {
    kind: u32,
    flags: u32,
    vaddr: u64,
    data: Vec<u8>,
    mem_size: u64,
}

/// What an image is built from; `valid()` is a good one, and tests
/// change fields to make bad ones.
#[derive(Clone)]
struct Spec {
    class: u8,
    data: u8,
    kind: u16,
    machine: u16,
    entry: u64,
    /// Bytes between the file header and the program headers.
    ph_gap: usize,
    segs: Vec<Seg>,
}

const TEXT: u64 = 0x40_0000;
const RODATA: u64 = 0x40_2000;
const DATA: u64 = 0x40_3010;
const ENTRY: u64 = TEXT + 0x100;
/// Pages the valid program occupies: 2 text, 1 rodata, 4 data + bss.
const PAGES: u64 = 7;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 1)
        .collect()
}

fn load_seg(flags: u32, vaddr: u64, data: Vec<u8>, mem_size: u64) -> Seg {
    Seg {
        kind: PT_LOAD,
        flags,
        vaddr,
        data,
        mem_size,
    }
}

fn valid() -> Spec {
    Spec {
        class: 2,
        data: 1,
        kind: ET_EXEC,
        machine: EM_X86_64,
        entry: ENTRY,
        ph_gap: 0,
        segs: vec![
            load_seg(PF_R | PF_X, TEXT, pattern(0x1800, 1), 0x1800),
            load_seg(PF_R, RODATA, pattern(0x100, 2), 0x100),
            load_seg(PF_R | PF_W, DATA, pattern(0x20, 3), 0x3000),
            Seg {
                kind: PT_GNU_STACK,
                flags: PF_R | PF_W,
                vaddr: 0,
                data: Vec::new(),
                mem_size: 0,
            },
        ],
    }
}

fn put16(img: &mut [u8], at: usize, v: u16) {
    img[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(img: &mut [u8], at: usize, v: u64) {
    img[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

impl Spec {
    fn phoff(&self) -> usize {
        EHDR_SIZE + self.ph_gap
    }

    /// Offset of program header `i`.
    fn ph(&self, i: usize) -> usize {
        self.phoff() + i * 56
    }

    /// The ELF64 header, the program headers, then each segment's
    /// bytes, in that order.
    fn build(&self) -> Vec<u8> {
        let payload_at = self.ph(self.segs.len());
        let payload: usize = self.segs.iter().map(|s| s.data.len()).sum();
        let mut img = vec![0; payload_at + payload];
        img[..4].copy_from_slice(&header::MAGIC);
        img[EI_CLASS] = self.class;
        img[EI_DATA] = self.data;
        img[6] = 1; // EI_VERSION
        put16(&mut img, E_TYPE, self.kind);
        put16(&mut img, E_MACHINE, self.machine);
        put32(&mut img, 20, 1); // e_version
        put64(&mut img, E_ENTRY, self.entry);
        put64(&mut img, E_PHOFF, self.phoff() as u64);
        put16(&mut img, 52, EHDR_SIZE as u16); // e_ehsize
        put16(&mut img, E_PHENTSIZE, 56);
        put16(&mut img, E_PHNUM, self.segs.len() as u16);
        let mut offset = payload_at;
        for (i, seg) in self.segs.iter().enumerate() {
            let ph = self.ph(i);
            put32(&mut img, ph, seg.kind);
            put32(&mut img, ph + 4, seg.flags);
            put64(&mut img, ph + P_OFFSET, offset as u64);
            put64(&mut img, ph + 16, seg.vaddr);
            put64(&mut img, ph + 24, seg.vaddr); // p_paddr
            put64(&mut img, ph + P_FILESZ, seg.data.len() as u64);
            put64(&mut img, ph + 40, seg.mem_size);
            put64(&mut img, ph + 48, PAGE_SIZE);
            img[offset..offset + seg.data.len()].copy_from_slice(&seg.data);
            offset += seg.data.len();
        }
        img
    }

    fn with(mut self, f: impl FnOnce(&mut Spec)) -> Spec {
        f(&mut self);
        self
    }
}

fn valid_image() -> Vec<u8> {
    valid().build()
}

fn parse_spec(spec: Spec) -> Result<Program, ElfError> {
    parse(&spec.build())
}

// ---- parsing ----

#[test]
fn valid_program_parses() {
    let img = valid_image();
    let payload = valid().ph(4);
    let seg = |vaddr, mem_size, offset, file_size, writable, executable| Segment {
        vaddr,
        mem_size,
        offset,
        file_size,
        writable,
        executable,
    };
    let want = Program {
        entry: ENTRY,
        segments: vec![
            seg(TEXT, 0x1800, payload as u64, 0x1800, false, true),
            seg(RODATA, 0x100, payload as u64 + 0x1800, 0x100, false, false),
            seg(DATA, 0x3000, payload as u64 + 0x1900, 0x20, true, false),
        ],
        // No segment's file bytes hold the headers here.
        phdr: 0,
        phnum: 4,
    };
    assert_eq!(parse(&img), Ok(want));
}

/// As linkers lay a program out, the first segment maps the file from
/// offset 0, headers included: AT_PHDR is then their address in memory.
#[test]
fn program_headers_inside_a_segment_give_their_address() {
    let spec = valid();
    let mut img = spec.build();
    let ph = spec.ph(0);
    put64(&mut img, ph + P_OFFSET, 0);
    let program = parse(&img).expect("parse");
    assert_eq!(program.phdr, TEXT + spec.phoff() as u64);
    assert_eq!(program.phnum, 4);
}

#[test]
fn segments_come_out_sorted() {
    let spec = valid().with(|s| s.segs.reverse());
    let program = parse_spec(spec).expect("parse");
    let starts: Vec<u64> = program.segments.iter().map(|s| s.vaddr).collect();
    assert_eq!(starts, [TEXT, RODATA, DATA]);
}

#[test]
fn truncated_images_are_refused() {
    let img = valid_image();
    let spec = valid();
    let cuts = [
        0,
        1,
        3,
        4,
        10,
        EI_NIDENT - 1,
        EI_NIDENT,
        40,
        EHDR_SIZE - 1,
        EHDR_SIZE,
        spec.ph(1) + 20,
        spec.ph(4) - 1,
        spec.ph(4),
        spec.ph(4) + 0x800,
        spec.ph(4) + 0x1800 + 0x80,
        img.len() - 1,
    ];
    for cut in cuts {
        assert_eq!(parse(&img[..cut]), Err(ElfError::Truncated), "cut at {cut}");
    }
    assert!(parse(&img).is_ok());
}

#[test]
fn file_ranges_beyond_the_file_are_truncated() {
    let spec = valid();
    for offset in [u64::MAX, u64::MAX - 0x10, 1 << 40] {
        let mut img = spec.build();
        put64(&mut img, spec.ph(1) + P_OFFSET, offset);
        assert_eq!(parse(&img), Err(ElfError::Truncated), "{offset:#x}");
    }
    for phoff in [u64::MAX - 7, 1 << 40] {
        let mut img = spec.build();
        put64(&mut img, E_PHOFF, phoff);
        assert_eq!(parse(&img), Err(ElfError::Truncated), "{phoff:#x}");
    }
    let mut img = spec.build();
    put16(&mut img, E_PHNUM, 0xffff);
    assert_eq!(parse(&img), Err(ElfError::Truncated));
}

#[test]
fn header_refusals() {
    let cases: [(&str, Spec, ElfError); 9] = [
        ("32-bit", valid().with(|s| s.class = 1), ElfError::Not64Bit),
        (
            "no class",
            valid().with(|s| s.class = 0),
            ElfError::Not64Bit,
        ),
        (
            "big-endian",
            valid().with(|s| s.data = 2),
            ElfError::NotLittleEndian,
        ),
        (
            "aarch64",
            valid().with(|s| s.machine = EM_AARCH64),
            ElfError::WrongMachine(EM_AARCH64),
        ),
        (
            "i386",
            valid().with(|s| s.machine = 3),
            ElfError::WrongMachine(3),
        ),
        (
            "unknown machine",
            valid().with(|s| s.machine = 0xbeef),
            ElfError::WrongMachine(0xbeef),
        ),
        (
            "ET_DYN",
            valid().with(|s| s.kind = ET_DYN),
            ElfError::NotExecutable(ET_DYN),
        ),
        (
            "ET_REL",
            valid().with(|s| s.kind = 1),
            ElfError::NotExecutable(1),
        ),
        (
            "no program headers",
            valid().with(|s| s.segs.clear()),
            ElfError::NoSegments,
        ),
    ];
    for (what, spec, want) in cases {
        assert_eq!(parse_spec(spec), Err(want), "{what}");
    }
    let mut img = valid_image();
    img[1] = b'e';
    assert_eq!(parse(&img), Err(ElfError::NotElf));
    assert_eq!(parse(b"#!/bin/sh\n"), Err(ElfError::NotElf));
    assert_eq!(parse(b"\x7fELX"), Err(ElfError::NotElf));
}

#[test]
fn segment_refusals() {
    let kernel = 0xffff_8000_0000_0000;
    let top = USER_END - 0x1000;
    let with_seg = |i: usize, f: fn(&mut Seg)| valid().with(|s| f(&mut s.segs[i]));
    let cases: [(&str, Spec, ElfError); 13] = [
        (
            "kernel half",
            with_seg(2, |g| g.vaddr = 0xffff_8000_0000_0000),
            ElfError::KernelAddress { vaddr: kernel },
        ),
        (
            "reaches USER_END",
            with_seg(2, |g| g.vaddr = USER_END - 0x1000),
            ElfError::KernelAddress { vaddr: top },
        ),
        (
            "wraps",
            with_seg(2, |g| g.mem_size = u64::MAX - 0x100),
            ElfError::KernelAddress { vaddr: DATA },
        ),
        (
            "null page",
            with_seg(1, |g| g.vaddr = 0),
            ElfError::NullPage,
        ),
        (
            "below 0x1000",
            with_seg(1, |g| g.vaddr = 0xfff),
            ElfError::NullPage,
        ),
        (
            "overlap",
            with_seg(1, |g| g.vaddr = TEXT + 0x1900),
            ElfError::Overlapping {
                a: TEXT,
                b: TEXT + 0x1900,
            },
        ),
        (
            "shared page, disjoint bytes",
            with_seg(1, |g| g.vaddr = TEXT + 0x1800),
            ElfError::Overlapping {
                a: TEXT,
                b: TEXT + 0x1800,
            },
        ),
        (
            "inside another",
            with_seg(2, |g| g.vaddr = TEXT + 0x10),
            ElfError::Overlapping {
                a: TEXT,
                b: TEXT + 0x10,
            },
        ),
        (
            "W+X",
            with_seg(0, |g| g.flags = PF_R | PF_W | PF_X),
            ElfError::WriteAndExecute,
        ),
        (
            "file larger than memory",
            with_seg(1, |g| g.mem_size = 0xff),
            ElfError::FileLargerThanMemory,
        ),
        (
            "too large",
            with_seg(2, |g| g.mem_size = MAX_PROGRAM_BYTES),
            ElfError::TooLarge,
        ),
        (
            "only an empty load segment",
            valid().with(|s| {
                s.segs = vec![load_seg(PF_R | PF_X, TEXT, Vec::new(), 0)];
            }),
            ElfError::NoSegments,
        ),
        (
            "interpreter",
            with_seg(3, |g| g.kind = PT_INTERP),
            ElfError::Malformed("needs a dynamic linker (PT_INTERP)"),
        ),
    ];
    for (what, spec, want) in cases {
        assert_eq!(parse_spec(spec), Err(want), "{what}");
    }
    // Exactly at the limits is fine.
    let spec = with_seg(2, |g| g.mem_size = MAX_PROGRAM_BYTES - 4 * PAGE_SIZE);
    assert!(parse_spec(spec).is_ok());
    let spec = with_seg(2, |g| g.vaddr = USER_END - 0x3000);
    assert!(parse_spec(spec).is_ok());
    assert!(parse_spec(with_seg(1, |g| g.vaddr = 0x1000)).is_ok());
}

#[test]
fn entry_must_be_in_an_executable_segment() {
    for entry in [RODATA, DATA + 8, TEXT + 0x1800, TEXT - 1, 0, u64::MAX] {
        let spec = valid().with(|s| s.entry = entry);
        assert_eq!(parse_spec(spec), Err(ElfError::EntryOutside(entry)));
    }
    for entry in [TEXT, TEXT + 0x17ff] {
        let spec = valid().with(|s| s.entry = entry);
        assert_eq!(parse_spec(spec).map(|p| p.entry), Ok(entry));
    }
}

#[test]
fn program_header_table_must_be_readable() {
    let spec = valid();
    let mut img = spec.build();
    put16(&mut img, E_PHENTSIZE, 32);
    let why = "program header entries are not 56 bytes";
    assert_eq!(parse(&img), Err(ElfError::Malformed(why)));
    let mut img = spec.build();
    put16(&mut img, E_PHENTSIZE, 64);
    assert_eq!(parse(&img), Err(ElfError::Malformed(why)));
    for phoff in [0, 8, 63] {
        let mut img = spec.build();
        put64(&mut img, E_PHOFF, phoff);
        let why = "program headers overlap the file header";
        assert_eq!(parse(&img), Err(ElfError::Malformed(why)), "{phoff}");
    }
    let spec = valid().with(|s| s.ph_gap = 4);
    let why = "program headers are not 8-byte aligned";
    assert_eq!(parse_spec(spec), Err(ElfError::Malformed(why)));
    // Any other gap is fine.
    assert!(parse_spec(valid().with(|s| s.ph_gap = 24)).is_ok());
}

/// A copy of `bytes` that starts one byte past an 8-byte boundary.
fn misaligned_copy(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut buf = vec![0; bytes.len() + ALIGN];
    let start = (ALIGN + 1 - buf.as_ptr() as usize % ALIGN) % ALIGN;
    buf[start..start + bytes.len()].copy_from_slice(bytes);
    (buf, start)
}

#[test]
fn misaligned_input_parses_the_same() {
    let img = valid_image();
    let (buf, start) = misaligned_copy(&img);
    let input = &buf[start..start + img.len()];
    assert!(!is_aligned(input));
    assert_eq!(parse(input), parse(&img));
    assert!(parse(input).is_ok());
    let cut = &input[..valid().ph(2) + 3];
    assert_eq!(parse(cut), Err(ElfError::Truncated));
}

#[test]
fn display_is_one_readable_line() {
    let all = [
        ElfError::Truncated,
        ElfError::NotElf,
        ElfError::Not64Bit,
        ElfError::NotLittleEndian,
        ElfError::WrongMachine(183),
        ElfError::NotExecutable(3),
        ElfError::NoSegments,
        ElfError::KernelAddress {
            vaddr: 0xffff_8000_0000_0000,
        },
        ElfError::KernelAddress {
            vaddr: USER_END - 0x1000,
        },
        ElfError::NullPage,
        ElfError::Overlapping {
            a: 0x1000,
            b: 0x1800,
        },
        ElfError::FileLargerThanMemory,
        ElfError::WriteAndExecute,
        ElfError::EntryOutside(0x42),
        ElfError::TooLarge,
        ElfError::Malformed("odd"),
    ];
    let msgs: Vec<_> = all.iter().map(|e| e.to_string()).collect();
    for (i, m) in msgs.iter().enumerate() {
        assert!(!m.is_empty() && !m.contains('\n'), "{m:?}");
        assert!(!msgs[..i].contains(m), "duplicate {m:?}");
    }
    assert_eq!(
        msgs[7],
        "segment at 0xffff800000000000 lies in the kernel half"
    );
    assert_eq!(msgs[4], "built for machine 183, not x86_64 (62)");
    assert_eq!(msgs[10], "segments at 0x1000 and 0x1800 share a page");
    assert_eq!(msgs[13], "entry point 0x42 is not in an executable segment");
}

// ---- fuzzing ----

/// Values that sit on the checks' boundaries.
const INTERESTING: [u64; 10] = [
    0,
    1,
    0xfff,
    0x1000,
    0x40_0000,
    USER_END - 0x1000,
    USER_END,
    0xffff_8000_0000_0000,
    u64::MAX - 7,
    u64::MAX,
];

/// Damages `img` a little: mostly in the headers, where the checks are.
fn mutate(img: &mut Vec<u8>, rng: &mut Rng, headers: usize) {
    for _ in 0..1 + rng.below(4) {
        if img.is_empty() {
            return;
        }
        let len = img.len() as u64;
        let at = if rng.below(4) == 0 {
            rng.below(len)
        } else {
            rng.below(headers.min(img.len()) as u64)
        } as usize;
        match rng.below(10) {
            0..=3 => img[at] ^= 1 << rng.below(8),
            4..=5 => img[at] = [0, 1, 2, 0x3e, 0x7f, 0x80, 0xff][rng.below(7) as usize],
            6..=8 => {
                // An interesting value over a whole aligned field.
                let at = at & !7;
                let value = INTERESTING[rng.below(10) as usize];
                let n = img.len().saturating_sub(at).min(8);
                img[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
            }
            _ => img.truncate(rng.below(len + 1) as usize),
        }
    }
}

/// What every accepted program must satisfy, whatever the input.
fn assert_sane(program: &Program, file_len: usize, what: &str) {
    assert!(!program.segments.is_empty(), "{what}");
    let mut prev_end = 0;
    let mut total = 0;
    for s in &program.segments {
        let end = s.vaddr + s.mem_size;
        assert!(s.vaddr >= PAGE_SIZE && end <= USER_END, "{what}: {s:?}");
        assert!(s.file_size <= s.mem_size && s.mem_size > 0, "{what}: {s:?}");
        assert!(!(s.writable && s.executable), "{what}: {s:?}");
        if s.file_size > 0 {
            assert!(s.offset + s.file_size <= file_len as u64, "{what}: {s:?}");
        }
        let start = s.vaddr & !(PAGE_SIZE - 1);
        assert!(start >= prev_end, "{what}: overlap at {s:?}");
        prev_end = end.next_multiple_of(PAGE_SIZE);
        total += prev_end - start;
    }
    assert!(total <= MAX_PROGRAM_BYTES, "{what}");
    let entry = program.entry;
    assert!(
        (program.segments.iter()).any(|s| s.executable && s.contains(entry)),
        "{what}"
    );
}

fn kind(result: &Result<Program, ElfError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ElfError::Truncated) => "truncated",
        Err(ElfError::NotElf) => "not elf",
        Err(ElfError::Not64Bit) => "not 64-bit",
        Err(ElfError::NotLittleEndian) => "big-endian",
        Err(ElfError::WrongMachine(_)) => "machine",
        Err(ElfError::NotExecutable(_)) => "type",
        Err(ElfError::NoSegments) => "no segments",
        Err(ElfError::KernelAddress { .. }) => "kernel address",
        Err(ElfError::NullPage) => "null page",
        Err(ElfError::Overlapping { .. }) => "overlap",
        Err(ElfError::FileLargerThanMemory) => "file > memory",
        Err(ElfError::WriteAndExecute) => "w+x",
        Err(ElfError::EntryOutside(_)) => "entry",
        Err(ElfError::TooLarge) => "too large",
        Err(ElfError::Malformed(_)) => "malformed",
        Err(ElfError::NoMemory) => "no memory",
    }
}

/// With the heap exhausted, reading a program (from an address that needs
/// the aligned copy) is a refusal, not an aborted kernel.
#[test]
fn no_memory_to_read_a_program_is_an_error() {
    let img = valid_image();
    let (buf, start) = misaligned_copy(&img);
    let input = &buf[start..start + img.len()];
    let result = crate::testutil::alloc::failing(|| parse(input));
    assert_eq!(result, Err(ElfError::NoMemory));
    assert!(parse(input).is_ok());
}

/// Random damage to a valid image never makes `parse` panic, whatever
/// it accepts is sane, and small accepted programs load and unload
/// without leaks.
#[test]
fn fuzzed_images_never_panic() {
    let base = valid_image();
    let headers = valid().ph(4);
    let w = World::new(64);
    let mut tally: BTreeMap<&str, u32> = BTreeMap::new();
    let mut loads = 0;
    for seed in [1, 0x9e37_79b9_7f4a_7c15, 0xfa17_11e5_0bad_cafe] {
        let mut rng = Rng(seed);
        for round in 0..20_000 {
            let mut img = base.clone();
            mutate(&mut img, &mut rng, headers);
            // Now and then from an odd address, for the copying path.
            let (buf, start) = misaligned_copy(&img);
            let input = match round % 16 {
                0 => &buf[start..start + img.len()],
                _ => &img[..],
            };
            let what = std::format!("seed {seed:#x} round {round}");
            let result = catch_unwind(AssertUnwindSafe(|| parse(input)))
                .unwrap_or_else(|_| panic!("{what}: parse panicked on {input:02x?}"));
            *tally.entry(kind(&result)).or_default() += 1;
            if let Ok(program) = &result {
                assert_sane(program, input.len(), &what);
                if loads < 300 && program_pages(program) <= 16 {
                    loads += 1;
                    check_load_and_destroy(&w, program, input, &what);
                }
            }
        }
    }
    // The damage must reach most checks, or the test proves little.
    for k in [
        "ok",
        "truncated",
        "not elf",
        "not 64-bit",
        "big-endian",
        "machine",
        "type",
        "no segments",
        "kernel address",
        "null page",
        "overlap",
        "file > memory",
        "w+x",
        "entry",
        "too large",
        "malformed",
    ] {
        assert!(tally.get(k).copied().unwrap_or(0) >= 5, "{k}: {tally:?}");
    }
    assert!(loads >= 100, "{loads} loads");
}

fn program_pages(program: &Program) -> u64 {
    let spans = program.segments.iter().filter_map(Segment::pages);
    spans.map(|(s, e)| (e - s) / PAGE_SIZE).sum()
}

/// Loads `program` into a fresh space of `w`, checks the file bytes
/// arrived, and destroys the space again without leaking.
fn check_load_and_destroy(w: &World, program: &Program, bytes: &[u8], what: &str) {
    let before = w.stats();
    let mut space = w.space();
    let entry = load(
        program,
        bytes,
        &mut space,
        Alloc {
            frames: &w.frames,
            tables: &w.tables(),
        },
    );
    assert_eq!(entry, Ok(program.entry), "{what}");
    for s in &program.segments {
        let want = s.file_bytes(bytes).expect("file bytes");
        assert_eq!(read(w, &space, s.vaddr, want.len()), want, "{what}");
    }
    space.destroy(&w.frames, &w.tables());
    assert_eq!(w.stats(), before, "{what}");
}

// ---- loading ----

fn read(w: &World, space: &Space, va: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    copy_from_user(
        &mut Strict {
            pt: space.page_table(),
            mem: w.mem,
        },
        va,
        &mut buf,
    )
    .expect("readable");
    buf
}

fn flags_at(space: &Space, va: u64) -> Option<LeafFlags> {
    space.page_table().translate(va).map(|t| t.1)
}

#[test]
fn valid_program_loads() {
    let img = valid_image();
    let program = parse(&img).expect("parse");
    let w = World::new(64);
    w.dirty_free_frames();
    let before = w.stats();
    let mut space = w.space();
    let entry = load(
        &program,
        &img,
        &mut space,
        Alloc {
            frames: &w.frames,
            tables: &w.tables(),
        },
    );
    assert_eq!(entry, Ok(ENTRY));
    assert_eq!(space.mapped_pages(), PAGES);
    let spec = valid();
    // File bytes arrive at their addresses.
    for (seg, va) in spec.segs[..3].iter().zip([TEXT, RODATA, DATA]) {
        assert_eq!(read(&w, &space, va, seg.data.len()), seg.data);
    }
    // Everything else in the pages is zero: bss, the page head before
    // an unaligned segment, the tails after the file bytes.
    let zeroed = [
        (DATA + 0x20, 0x3000 - 0x20 + 0xff0),
        (DATA & !0xfff, 0x10),
        (TEXT + 0x1800, 0x800),
        (RODATA + 0x100, 0xf00),
    ];
    for (va, len) in zeroed {
        let bytes = read(&w, &space, va, len as usize);
        assert!(bytes.iter().all(|&b| b == 0), "{va:#x} not zeroed");
    }
    let user = LeafFlags::USER;
    let expect = [
        (TEXT, user | LeafFlags::EXECUTABLE),
        (TEXT + 0x1000, user | LeafFlags::EXECUTABLE),
        (RODATA, user),
        (DATA, user | LeafFlags::WRITABLE),
        (DATA + 0x3000, user | LeafFlags::WRITABLE),
    ];
    // The loader's copy sets accessed and dirty, as a store would.
    let status = LeafFlags::ACCESSED | LeafFlags::DIRTY;
    for (va, flags) in expect {
        let got = flags_at(&space, va).map(|f| f.difference(status));
        assert_eq!(got, Some(flags), "{va:#x}");
    }
    assert!(flags_at(&space, TEXT).is_some_and(|f| f.contains(status)));
    for va in [TEXT - 1, 0x40_7000, 0x40_0000_0000] {
        assert_eq!(flags_at(&space, va), None, "{va:#x}");
    }
    assert_eq!(space.destroy(&w.frames, &w.tables()), PAGES);
    assert_eq!(w.stats(), before);
}

/// Loads with only `keep` frames free; returns the result and whether
/// the allocator ended where it started.
fn load_with(keep: u64) -> (Result<u64, Errno>, FrameStats, FrameStats, u64) {
    let img = valid_image();
    let program = parse(&img).expect("parse");
    let w = World::new(64);
    let mut space = w.space();
    let held = w.hog(keep);
    let before = w.stats();
    let got = load(
        &program,
        &img,
        &mut space,
        Alloc {
            frames: &w.frames,
            tables: &w.tables(),
        },
    );
    let after = w.stats();
    let pages = space.mapped_pages();
    w.unhog(held);
    space.destroy(&w.frames, &w.tables());
    (got, before, after, pages)
}

#[test]
fn load_out_of_frames_leaks_nothing() {
    // 7 pages and 3 tables (levels 2, 1 and 0 below the root).
    let needed = PAGES + 3;
    for keep in 0..needed {
        let (got, before, after, pages) = load_with(keep);
        assert_eq!(got, Err(Errno::ENOMEM), "keep {keep}");
        assert_eq!(after, before, "keep {keep}: leaked");
        assert_eq!(pages, 0, "keep {keep}");
    }
    let (got, _, _, pages) = load_with(needed);
    assert_eq!((got, pages), (Ok(ENTRY), PAGES));
}

#[test]
fn load_collision_unmaps_earlier_segments() {
    let img = valid_image();
    let program = parse(&img).expect("parse");
    let w = World::new(64);
    let mut space = w.space();
    let (frames, t) = (&w.frames, w.tables());
    // Something already lives where the data segment goes.
    space
        .map_zeroed(DATA & !0xfff, 0x1000, LeafFlags::WRITABLE, frames, &t)
        .unwrap();
    let before = w.stats();
    let got = load(&program, &img, &mut space, Alloc { frames, tables: &t });
    assert_eq!(got, Err(Errno::EEXIST));
    assert_eq!(w.stats(), before);
    assert_eq!(space.mapped_pages(), 1);
    space.destroy(frames, &t);
}

#[test]
fn load_refuses_programs_that_do_not_match_the_bytes() {
    let img = valid_image();
    let program = parse(&img).expect("parse");
    let w = World::new(64);
    let mut space = w.space();
    let before = w.stats();
    let short = &img[..img.len() - 1];
    let got = load(
        &program,
        short,
        &mut space,
        Alloc {
            frames: &w.frames,
            tables: &w.tables(),
        },
    );
    assert_eq!(got, Err(Errno::EINVAL));
    let mut bad = program.clone();
    bad.segments[1].file_size = bad.segments[1].mem_size + 1;
    let got = load(
        &bad,
        &img,
        &mut space,
        Alloc {
            frames: &w.frames,
            tables: &w.tables(),
        },
    );
    assert_eq!(got, Err(Errno::EINVAL));
    let mut bad = program.clone();
    bad.segments[2].vaddr = USER_END - 0x1000;
    let got = load(
        &bad,
        &img,
        &mut space,
        Alloc {
            frames: &w.frames,
            tables: &w.tables(),
        },
    );
    assert_eq!(got, Err(Errno::EFAULT));
    let mut bad = program;
    bad.segments[2].mem_size = u64::MAX;
    let got = load(
        &bad,
        &img,
        &mut space,
        Alloc {
            frames: &w.frames,
            tables: &w.tables(),
        },
    );
    assert_eq!(got, Err(Errno::EFAULT));
    assert_eq!((w.stats(), space.mapped_pages()), (before, 0));
    space.destroy(&w.frames, &w.tables());
}
