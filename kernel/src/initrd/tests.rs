use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::cpio::{Archive, CpioError, Entry, HEADER_LEN, MAX_ENTRIES, MAX_NAME, TRAILER};
use super::*;
use crate::testutil::Rng;

const REG: u32 = 0o100_644;
const DIR: u32 = 0o040_755;
const LINK: u32 = 0o120_777;

/// Made by GNU cpio 2.13 from a directory holding `script.fl` (the line
/// `echo from=gnu-cpio`) and `bin/tiny` (15 bytes):
/// `find . | sort | cpio -o -H newc --owner=0:0 --reproducible`.
/// Entries `.`, `bin`, `bin/tiny`, `script.fl`, padded to 1024 bytes.
const GNU_CPIO: &[u8] = include_bytes!("testdata/gnu-cpio.newc");

/// The thirteen header fields in order; `name_size` counts the NUL.
fn fields(mode: u32, file_size: usize, name_size: usize) -> [u32; 13] {
    [
        1,
        mode,
        0,
        0,
        1,
        0,
        file_size as u32,
        0,
        0,
        0,
        0,
        name_size as u32,
        0,
    ]
}

/// Appends one entry with the header fields given as they are, so a test
/// can make them lie. `name` is written as given (a test adds the NUL).
fn raw_entry(out: &mut Vec<u8>, fields: [u32; 13], name: &[u8], data: &[u8]) {
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
    let mut nul_name = Vec::from(name.as_bytes());
    nul_name.push(0);
    raw_entry(
        out,
        fields(mode, data.len(), nul_name.len()),
        &nul_name,
        data,
    );
}

fn trailer(out: &mut Vec<u8>) {
    entry(out, TRAILER, 0, &[]);
}

/// An archive of regular files, with its trailer.
fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        entry(&mut out, name, REG, data);
    }
    trailer(&mut out);
    out
}

fn names<'a>(a: &Archive<'a>) -> Vec<&'a str> {
    a.entries().map(|e| e.name).collect()
}

fn no_builtins(_: &str) -> bool {
    false
}

fn builtin_hello(name: &str) -> bool {
    name == "hello"
}

fn read_archive(bytes: &[u8]) -> BootModule<'_> {
    read(bytes, &builtin_hello).expect("a good archive")
}

/// Where `inner` starts inside `outer`, which must contain it.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    assert!(
        i >= o && i + inner.len() <= o + outer.len(),
        "slice outside"
    );
    i - o
}

/// What every accepted archive must satisfy: entries in order, each
/// header, name and data inside the archive, none overlapping the next.
fn check_invariants(bytes: &[u8], a: &Archive<'_>) {
    let entries: Vec<Entry<'_>> = a.entries().collect();
    assert_eq!(entries.len(), a.len());
    assert!(a.len() <= MAX_ENTRIES);
    let mut end_of_previous = 0;
    for e in &entries {
        assert!(
            e.offset >= end_of_previous,
            "entry at {} overlaps",
            e.offset
        );
        assert!(e.offset.is_multiple_of(4));
        assert!(e.offset + HEADER_LEN + e.name.len() < bytes.len());
        assert_ne!(e.name, TRAILER);
        assert!(!e.name.is_empty());
        end_of_previous = e.offset + HEADER_LEN + e.name.len() + 1;
        if !e.data.is_empty() {
            let at = offset_in(bytes, e.data);
            assert!(
                at >= end_of_previous,
                "data of {} overlaps its name",
                e.name
            );
            end_of_previous = at + e.data.len();
        }
    }
}

// ---- good archives ----

#[test]
fn reads_an_archive_made_by_gnu_cpio() {
    let a = Archive::parse(GNU_CPIO).expect("GNU cpio's archive");
    assert_eq!(names(&a), [".", "bin", "bin/tiny", "script.fl"]);
    check_invariants(GNU_CPIO, &a);
    let tiny = a.entries().nth(2).unwrap();
    assert!(tiny.is_regular() && !tiny.is_dir());
    assert_eq!(tiny.data, b"\x7fELF-not-really");
    assert!(a.entries().nth(1).unwrap().is_dir());

    let m = read_archive(GNU_CPIO);
    assert!(m.archive);
    assert_eq!(m.script, Some("echo from=gnu-cpio\n"));
    assert_eq!(
        m.programs,
        [ModuleProgram {
            name: "tiny",
            image: b"\x7fELF-not-really"
        }]
    );
    assert_eq!(m.skipped, []);
}

#[test]
fn an_empty_archive_has_no_script_and_no_programs() {
    let mut bytes = Vec::new();
    trailer(&mut bytes);
    let a = Archive::parse(&bytes).unwrap();
    assert!(a.is_empty());
    let m = read_archive(&bytes);
    assert_eq!(
        m,
        BootModule {
            archive: true,
            ..BootModule::default()
        }
    );
}

#[test]
fn every_data_length_is_padded_right() {
    // Lengths around each padding case, with names of every length mod 4.
    for len in 0..=9usize {
        for name_len in 1..=5usize {
            let name: String = "bin/".chars().chain((0..name_len).map(|_| 'n')).collect();
            let data: Vec<u8> = (0..len as u8).collect();
            let bytes = archive(&[(&name, &data), ("script.fl", b"mem\n")]);
            let a = Archive::parse(&bytes).unwrap();
            check_invariants(&bytes, &a);
            let got: Vec<_> = a.entries().map(|e| (e.name, e.data)).collect();
            assert_eq!(got, [(name.as_str(), &data[..]), ("script.fl", b"mem\n")]);
        }
    }
}

#[test]
fn trailer_padding_may_be_missing_and_bytes_after_the_trailer_are_ignored() {
    let mut bytes = archive(&[("bin/a", b"xyz")]);
    // TRAILER!!! and its NUL end at HEADER_LEN + 11 from its header.
    let trailer_at = bytes.len() - (HEADER_LEN + 11).next_multiple_of(4);
    bytes.truncate(trailer_at + HEADER_LEN + 11);
    assert_eq!(Archive::parse(&bytes).unwrap().len(), 1);
    bytes.extend_from_slice(&[0; 509]);
    bytes.extend_from_slice(b"anything at all after the trailer");
    assert_eq!(Archive::parse(&bytes).unwrap().len(), 1);
}

#[test]
fn hex_fields_are_read_in_either_case() {
    let mut bytes = archive(&[("bin/a", &[7; 0x1a])]);
    let size_field = 6 + 8 * 6;
    assert_eq!(&bytes[size_field..size_field + 8], b"0000001A");
    bytes[size_field + 7] = b'a';
    let a = Archive::parse(&bytes).unwrap();
    assert_eq!(a.entries().next().unwrap().data.len(), 0x1a);
}

#[test]
fn parsing_allocates_nothing() {
    let (result, allocations) = crate::testutil::alloc::count(|| {
        let a = Archive::parse(GNU_CPIO).map(|a| a.entries().count());
        let bad = Archive::parse(&GNU_CPIO[..300]).is_err();
        (a, bad)
    });
    assert_eq!(result, (Ok(4), true));
    assert_eq!(allocations, 0);
}

#[test]
fn exactly_max_entries_are_accepted() {
    let mut bytes = Vec::new();
    for i in 0..MAX_ENTRIES {
        entry(&mut bytes, &format!("f{i}"), REG, b"");
    }
    trailer(&mut bytes);
    assert_eq!(Archive::parse(&bytes).unwrap().len(), MAX_ENTRIES);
}

// ---- what boot module 0 holds ----

#[test]
fn a_module_without_cpio_magic_is_a_text_script() {
    let m = read(b"mem\nexpect frames_free > 1\n", &no_builtins).unwrap();
    assert_eq!(
        m,
        BootModule {
            script: Some("mem\nexpect frames_free > 1\n"),
            ..BootModule::default()
        }
    );
    assert_eq!(read(b"", &no_builtins).unwrap().script, Some(""));
    let err = read(b"mem\n\xff\xfe", &no_builtins).unwrap_err();
    assert_eq!(err, ModuleError::NotText { valid_up_to: 4 });
    assert!(format!("{err}").contains("not a text script (invalid UTF-8 at byte 4)"));
}

#[test]
fn programs_and_script_are_found_and_other_entries_skipped_with_a_reason() {
    let mut bytes = Vec::new();
    entry(&mut bytes, ".", DIR, b"");
    entry(&mut bytes, "./bin", DIR, b"");
    entry(&mut bytes, "./bin/mine", REG, b"\x7fELF mine");
    entry(&mut bytes, "bin/other-1.2_x+y", REG, b"other");
    entry(&mut bytes, "bin/hello", REG, b"shadow?");
    entry(&mut bytes, "bin/link", LINK, b"mine");
    entry(&mut bytes, "README", REG, b"hi");
    entry(&mut bytes, "bin/empty", REG, b"");
    entry(&mut bytes, "script.fl", REG, b"programs\n");
    trailer(&mut bytes);
    let m = read_archive(&bytes);
    assert_eq!(m.script, Some("programs\n"));
    let programs: Vec<_> = m.programs.iter().map(|p| (p.name, p.image)).collect();
    assert_eq!(
        programs,
        [
            ("mine", &b"\x7fELF mine"[..]),
            ("other-1.2_x+y", b"other"),
            // Contents are the loader's business: an empty file is listed.
            ("empty", b""),
        ]
    );
    assert_eq!(
        m.skipped,
        [
            Skipped::BuiltinName("hello"),
            Skipped::NotRegular("bin/link"),
            Skipped::Unknown("README"),
        ]
    );
    let said: Vec<String> = m.skipped.iter().map(|s| format!("{s}")).collect();
    assert!(said[0].contains("'hello' is the name of a built-in program"));
    assert!(said[1].contains("not a regular file"));
    assert!(said[2].contains("ignored"));
}

#[test]
fn program_names_that_cannot_be_typed_are_refused() {
    let long = format!("bin/{}", "x".repeat(MAX_PROGRAM_NAME + 1));
    let longest = format!("bin/{}", "x".repeat(MAX_PROGRAM_NAME));
    for (path, ok) in [
        ("bin/", false),
        ("bin/a/b", false),
        ("bin/$tid", false),
        ("bin/has space", false),
        ("bin/tab\t", false),
        ("bin/café", false),
        (long.as_str(), false),
        (longest.as_str(), true),
        ("bin/A-z_0.9+", true),
    ] {
        let bytes = archive(&[(path, b"x")]);
        let m = read_archive(&bytes);
        assert_eq!(m.programs.len(), usize::from(ok), "{path}");
        if !ok {
            assert!(
                matches!(m.skipped[..], [Skipped::BadName { path: p, .. }] if p == path),
                "{path}: {:?}",
                m.skipped
            );
        }
    }
}

#[test]
fn duplicate_names_refuse_the_whole_archive() {
    for (a, b) in [
        ("bin/x", "bin/x"),
        ("bin/x", "./bin/x"),
        ("script.fl", "./script.fl"),
    ] {
        let bytes = archive(&[(a, b"1"), ("bin/y", b"2"), (b, b"3")]);
        let err = read(&bytes, &no_builtins).unwrap_err();
        assert_eq!(err, ModuleError::Duplicate(normalise(a)));
        assert!(format!("{err}").contains("names must be unique"));
    }
}

#[test]
fn a_script_that_is_not_text_refuses_the_archive() {
    let bytes = archive(&[("bin/a", b"ok"), ("script.fl", b"mem\n\xc3")]);
    let err = read(&bytes, &no_builtins).unwrap_err();
    assert_eq!(err, ModuleError::ScriptNotText { valid_up_to: 4 });
}

#[test]
fn other_cpio_formats_are_refused_by_name() {
    let mut bytes = archive(&[("bin/a", b"ok")]);
    bytes[5] = b'2';
    let err = read(&bytes, &no_builtins).unwrap_err();
    assert_eq!(
        err,
        ModuleError::Archive(CpioError::BadMagic {
            offset: 0,
            found: *b"070702"
        })
    );
    let said = format!("{err}");
    assert!(said.contains("malformed cpio archive"), "{said}");
    assert!(
        said.contains("'070702', not the newc magic '070701'"),
        "{said}"
    );
}

// ---- malformed archives: each refused as a whole, with its reason ----

fn parse_err(bytes: &[u8]) -> CpioError<'_> {
    let err = Archive::parse(bytes).expect_err("a malformed archive");
    // Whatever the error, saying it must work too.
    assert!(!format!("{err}").is_empty());
    err
}

#[test]
fn every_truncation_is_refused() {
    let bytes = archive(&[("script.fl", b"mem\n"), ("bin/prog", &[0x90; 33])]);
    let trailer_at = bytes.len() - (HEADER_LEN + 11).next_multiple_of(4);
    let whole_trailer = trailer_at + HEADER_LEN + 11;
    for len in 0..whole_trailer {
        let err = parse_err(&bytes[..len]);
        assert!(
            matches!(
                err,
                CpioError::TruncatedHeader { .. }
                    | CpioError::TruncatedName { .. }
                    | CpioError::TruncatedData { .. }
                    | CpioError::NoTrailer { .. }
            ),
            "cut at {len}: {err:?}"
        );
    }
    assert_eq!(
        parse_err(&bytes[..10]),
        CpioError::TruncatedHeader {
            offset: 0,
            left: 10
        }
    );
    assert!(format!("{}", parse_err(&bytes[..200])).starts_with("truncated"));
}

#[test]
fn an_archive_without_its_trailer_is_refused() {
    let mut bytes = Vec::new();
    entry(&mut bytes, "bin/a", REG, b"abcd");
    let end = bytes.len();
    assert_eq!(parse_err(&bytes), CpioError::NoTrailer { offset: end });
}

#[test]
fn a_bad_magic_number_anywhere_is_refused() {
    let good = archive(&[("bin/a", b"abcd"), ("bin/b", b"efgh")]);
    // The first entry: header and "bin/a\0" padded to 4, then 4 bytes.
    let second = (HEADER_LEN + 6).next_multiple_of(4) + 4;
    for at in [0, second] {
        let mut bytes = good.clone();
        assert_eq!(&bytes[at..at + 6], b"070701", "header at {at}");
        bytes[at + 3] = b'X';
        assert!(matches!(
            parse_err(&bytes),
            CpioError::BadMagic { offset, found } if offset == at && found == *b"070X01"
        ));
    }
    // A short tail that is no header at all.
    let mut bytes = Vec::new();
    entry(&mut bytes, "bin/a", REG, b"abcd");
    bytes.extend_from_slice(b"\xff\x00");
    assert!(matches!(parse_err(&bytes), CpioError::BadMagic { .. }));
}

#[test]
fn a_field_that_is_not_eight_hex_digits_is_refused_by_name() {
    let good = archive(&[("bin/a", b"abcd")]);
    let names = [
        "ino",
        "mode",
        "uid",
        "gid",
        "nlink",
        "mtime",
        "filesize",
        "devmajor",
        "devminor",
        "rdevmajor",
        "rdevminor",
        "namesize",
        "check",
    ];
    for (index, name) in names.iter().enumerate() {
        for bad in [b'g', b' ', b'-', b'x', 0, 0xff] {
            let mut bytes = good.clone();
            bytes[6 + 8 * index + 3] = bad;
            assert_eq!(
                parse_err(&bytes),
                CpioError::BadField {
                    offset: 0,
                    field: name
                }
            );
        }
    }
}

#[test]
fn empty_and_absurdly_long_names_are_refused() {
    for size in [0usize, 1] {
        let mut bytes = Vec::new();
        raw_entry(&mut bytes, fields(REG, 0, size), b"\0", b"");
        trailer(&mut bytes);
        assert_eq!(parse_err(&bytes), CpioError::EmptyName { offset: 0 });
    }
    for size in [MAX_NAME + 1, u32::MAX as usize] {
        let mut bytes = Vec::new();
        raw_entry(&mut bytes, fields(REG, 0, size), b"bin/a\0", b"");
        trailer(&mut bytes);
        assert_eq!(
            parse_err(&bytes),
            CpioError::NameTooLong {
                offset: 0,
                size: size as u32
            }
        );
    }
    // Long, but allowed; then cut off by the end of the archive.
    let mut bytes = Vec::new();
    raw_entry(&mut bytes, fields(REG, 0, MAX_NAME), b"bin/a\0", b"");
    assert_eq!(
        parse_err(&bytes),
        CpioError::TruncatedName {
            offset: 0,
            size: MAX_NAME as u32
        }
    );
}

#[test]
fn names_must_be_nul_terminated_utf8() {
    for name in [&b"bin/ab"[..], b"bin\0ab\0", b"\0bin/a\0"] {
        let mut bytes = Vec::new();
        raw_entry(&mut bytes, fields(REG, 0, name.len()), name, b"");
        trailer(&mut bytes);
        assert_eq!(
            parse_err(&bytes),
            CpioError::NameNotTerminated { offset: 0 },
            "{name:?}"
        );
    }
    let mut bytes = Vec::new();
    raw_entry(&mut bytes, fields(REG, 0, 6), b"bin/\xff\0", b"");
    trailer(&mut bytes);
    assert_eq!(parse_err(&bytes), CpioError::NameNotUtf8 { offset: 0 });
}

#[test]
fn data_sizes_that_do_not_fit_are_refused() {
    for size in [5usize, 1000, u32::MAX as usize] {
        let mut bytes = Vec::new();
        raw_entry(&mut bytes, fields(REG, size, 6), b"bin/a\0", b"abcd");
        // No trailer: the claimed data would have to cover it anyway.
        let err = parse_err(&bytes);
        assert!(
            matches!(err, CpioError::TruncatedData { offset: 0, name: "bin/a", size: s, left: 4 } if s as usize == size),
            "{size}: {err:?}"
        );
    }
    let err = {
        let mut bytes = Vec::new();
        raw_entry(
            &mut bytes,
            fields(REG, u32::MAX as usize, 6),
            b"bin/a\0",
            b"",
        );
        format!("{}", parse_err(&bytes))
    };
    assert!(err.contains("entry 'bin/a' at byte 0 has 4294967295 bytes of data, 0 are left"));
}

#[test]
fn a_size_that_reaches_into_the_next_entry_is_refused() {
    // Sizes that claim part of the next header, or leave a tail of the data
    // where the next header should be: either way the next "header" is not
    // one, so the entries can never overlap.
    for (claimed, real) in [(40usize, 8usize), (8, 40), (9, 8), (8, 12)] {
        let mut bytes = Vec::new();
        raw_entry(
            &mut bytes,
            fields(REG, claimed, 6),
            b"bin/a\0",
            &vec![b'd'; real],
        );
        entry(&mut bytes, "bin/b", REG, b"bbbb");
        trailer(&mut bytes);
        let err = parse_err(&bytes);
        assert!(
            matches!(
                err,
                CpioError::BadMagic { .. } | CpioError::TruncatedHeader { .. }
            ),
            "claimed {claimed}, real {real}: {err:?}"
        );
    }
}

#[test]
fn too_many_entries_are_refused() {
    let mut bytes = Vec::new();
    for i in 0..=MAX_ENTRIES {
        entry(&mut bytes, &format!("f{i}"), REG, b"");
    }
    trailer(&mut bytes);
    assert_eq!(parse_err(&bytes), CpioError::TooManyEntries);
}

// ---- fuzz: seeded, reproducible from the seed in the message ----

/// A random well-formed archive: random names (some bad as program names),
/// modes and data lengths.
fn random_archive(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..rng.below(6) {
        let name = match rng.below(5) {
            0 => String::from("script.fl"),
            1 => format!("./bin/p{i}"),
            2 => format!("bin/{}", "q".repeat(rng.index(40))),
            3 => String::from("bin"),
            _ => format!("other{i}"),
        };
        let mode = [REG, DIR, LINK][rng.index(3)];
        let data: Vec<u8> = (0..rng.below(70)).map(|_| rng.next() as u8).collect();
        entry(&mut bytes, &name, mode, &data);
    }
    trailer(&mut bytes);
    bytes
}

/// One random change: bytes flipped, cut, inserted, a field rewritten.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.push(rng.next() as u8);
        return;
    }
    let at = rng.index(bytes.len());
    match rng.below(6) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes[at] = rng.next() as u8,
        2 => bytes.truncate(at),
        3 => bytes.insert(at, rng.next() as u8),
        4 => {
            let len = rng.index(bytes.len() - at) + 1;
            bytes.drain(at..at + len);
        }
        _ => {
            // Eight hex digits over whatever is there: a plausible field.
            let v = match rng.below(3) {
                0 => rng.below(16) as u32,
                1 => rng.below(5000) as u32,
                _ => rng.next() as u32,
            };
            let digits = format!("{v:08x}");
            for (i, d) in digits.bytes().enumerate() {
                if let Some(b) = bytes.get_mut(at + i) {
                    *b = d;
                }
            }
        }
    }
}

#[test]
fn fuzz_never_panics_and_accepted_archives_are_consistent() {
    let (mut accepted, mut refused) = (0u32, 0u32);
    for seed in [0x2545_f491_4f6c_dd1d_u64, 0x9e37_79b9_7f4a_7c15, 7, 0xc910] {
        let mut rng = Rng(seed);
        for round in 0..4000 {
            let mut bytes = if round % 10 == 0 {
                GNU_CPIO.to_vec()
            } else {
                random_archive(&mut rng)
            };
            assert!(
                Archive::parse(&bytes).is_ok(),
                "seed {seed:#x} round {round}"
            );
            for _ in 0..rng.below(4) + 1 {
                mutate(&mut rng, &mut bytes);
            }
            match Archive::parse(&bytes) {
                Ok(a) => {
                    accepted += 1;
                    check_invariants(&bytes, &a);
                }
                Err(e) => {
                    refused += 1;
                    assert!(!format!("{e}").is_empty());
                }
            }
            // The layer above must cope with anything the parser passes.
            match read(&bytes, &builtin_hello) {
                Ok(m) => {
                    for p in &m.programs {
                        assert!(check_program_name(p.name).is_ok(), "seed {seed:#x}");
                        assert!(!builtin_hello(p.name));
                        if !p.image.is_empty() {
                            offset_in(&bytes, p.image);
                        }
                    }
                }
                Err(e) => assert!(!format!("{e}").is_empty()),
            }
        }
    }
    // Both outcomes must be common, or the fuzz is not exploring.
    assert!(
        accepted > 1000 && refused > 1000,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn fuzz_random_bytes_after_the_magic_never_panic() {
    let mut rng = Rng(0x5eed_cafe);
    for round in 0..20_000 {
        let len = rng.index(400);
        let mut bytes: Vec<u8> = b"070701".to_vec();
        bytes.extend((0..len).map(|_| {
            // Mostly hex digits, so headers often parse some way in.
            if rng.chance(80) {
                b"0123456789abcdefABCDEF"[rng.index(22)]
            } else {
                rng.next() as u8
            }
        }));
        if let Ok(a) = Archive::parse(&bytes) {
            check_invariants(&bytes, &a);
        }
        let _ = read(&bytes, &no_builtins).map_err(|e| format!("{e} {round}"));
    }
}
