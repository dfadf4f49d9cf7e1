//! The x86_64 page-table-entry format: 4-level paging (Intel SDM vol. 3,
//! §4.5), as a [`PteFormat`] for the kernel's generic walker.
//!
//! Pure bit logic, no hardware access, so it builds and tests on the host.
//!
//! # Present entries (bit 0 set)
//!
//! | bits   | table (levels 1..3) | 4 KiB leaf (level 0) | 2 MiB / 1 GiB leaf (levels 1, 2) |
//! |--------|---------------------|----------------------|----------------------------------|
//! | 0      | P = 1               | P = 1                | P = 1                            |
//! | 1      | RW = 1              | RW: `WRITABLE`       | RW: `WRITABLE`                   |
//! | 2      | US = 1              | US: `USER`           | US: `USER`                       |
//! | 3      | PWT = 0             | PWT = 0              | PWT = 0                          |
//! | 4      | PCD = 0             | PCD: `NO_CACHE`      | PCD: `NO_CACHE`                  |
//! | 5      | A = 1               | A: `ACCESSED`        | A: `ACCESSED`                    |
//! | 6      | 0                   | D: `DIRTY`           | D: `DIRTY`                       |
//! | 7      | PS = 0              | PAT = 0              | PS = 1                           |
//! | 8      | 0                   | G: `GLOBAL`          | G: `GLOBAL`                      |
//! | 9      | 0                   | sw: `UFFD_WP`        | sw: `UFFD_WP`                    |
//! | 10     | 0                   | sw: `SOFT_DIRTY`     | sw: `SOFT_DIRTY`                 |
//! | 11     | 0                   | 0                    | 0                                |
//! | 12     | frame               | frame                | PAT = 0                          |
//! | 13..51 | frame               | frame                | 0 below the size, then frame     |
//! | 52..62 | 0                   | 0                    | 0                                |
//! | 63     | XD = 0              | XD: not `EXECUTABLE` | XD: not `EXECUTABLE`             |
//!
//! Table entries are permissive (P|RW|US|A): the leaf alone decides the
//! access rights, so a decoded leaf's flags are the whole truth. Accessed
//! is preset because the MMU would set it on the first walk anyway.
//! Memory types beyond PCD (PWT, PAT) are never used, so bit 12 of a huge
//! leaf is PAT, not address: a huge leaf's frame is aligned to its size.
//! 1 GiB leaves need the CPU's `pdpe1gb` feature; the caller checks it.
//!
//! # Non-present entries (bit 0 clear)
//!
//! | bits   | `Absent` | `Swap`                  | `Marker`       |
//! |--------|----------|-------------------------|----------------|
//! | 0      | 0        | 0                       | 0              |
//! | 1..2   | 0        | tag 1                   | tag 2          |
//! | 3..7   | 0        | device                  | 3 `POISONED`, 4 `GUARD`, 5..7 = 0 |
//! | 8      | 0        | 0                       | 0              |
//! | 9      | 0        | `uffd_wp`               | `UFFD_WP`      |
//! | 10     | 0        | `exclusive`             | 0              |
//! | 11     | 0        | 0                       | 0              |
//! | 12..51 | 0        | offset, inverted        | all ones       |
//! | 52..63 | 0        | 0                       | 0              |
//!
//! Tag 3 is reserved. The userfault write-protect bit is bit 9 in leaves,
//! swap entries and markers alike, so it visibly survives swap-out.
//!
//! The address field of a non-present entry is stored inverted: a CPU
//! affected by L1TF may speculatively use it as a physical address even
//! though P is clear, and inverted small offsets point far above any RAM
//! (bits 51 downwards set) instead of at guest or kernel memory.
//!
//! # Strict decoding
//!
//! `decode` reads the fields and then re-encodes them: a raw value is valid
//! exactly when it is what `encode` would have written. That one rule
//! rejects reserved and unused bits, PWT/PAT, misaligned huge frames, PS in
//! the root and unknown tags, and guarantees `encode(decode(raw)) == raw`.
//!
//! Present entries, which every walk decodes at every level (four for each
//! user copy), are judged by their bits instead: which bits a valid table
//! or leaf may have is fixed, so one mask test gives the re-encoding's
//! verdict at a fraction of its cost. The tests hold the two to the same
//! answer for every state and for junk (`fast_decode_agrees`).

use kernel::mm::Pfn;
use kernel::mm::pte::{LeafFlags, MarkerFlags, Pte, PteError, PteFormat, SwapEntry};

/// x86_64 4-level paging entries.
pub struct X86Pte;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const CACHE_DISABLE: u64 = 1 << 4;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const HUGE: u64 = 1 << 7;
const GLOBAL: u64 = 1 << 8;
const SW_UFFD_WP: u64 = 1 << 9;
const SW_SOFT_DIRTY: u64 = 1 << 10;
const NO_EXECUTE: u64 = 1 << 63;

/// Physical address bits 12..51.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The flags of every table (non-leaf) entry.
const TABLE_FLAGS: u64 = PRESENT | WRITABLE | USER | ACCESSED;

/// Leaf flags stored as set bits; `EXECUTABLE` is the odd one out (NX).
const LEAF_BITS: [(LeafFlags, u64); 8] = [
    (LeafFlags::WRITABLE, WRITABLE),
    (LeafFlags::USER, USER),
    (LeafFlags::NO_CACHE, CACHE_DISABLE),
    (LeafFlags::ACCESSED, ACCESSED),
    (LeafFlags::DIRTY, DIRTY),
    (LeafFlags::GLOBAL, GLOBAL),
    (LeafFlags::UFFD_WP, SW_UFFD_WP),
    (LeafFlags::SOFT_DIRTY, SW_SOFT_DIRTY),
];

// Non-present entries.
const TAG_SHIFT: u32 = 1;
const TAG_MASK: u64 = 0b11 << TAG_SHIFT;
const TAG_SWAP: u64 = 1;
const TAG_MARKER: u64 = 2;
const DEVICE_SHIFT: u32 = 3;
const SWAP_EXCLUSIVE: u64 = 1 << 10;

const MARKER_BITS: [(MarkerFlags, u64); 3] = [
    (MarkerFlags::POISONED, 1 << 3),
    (MarkerFlags::GUARD, 1 << 4),
    (MarkerFlags::UFFD_WP, SW_UFFD_WP),
];

/// The raw flag bits of a table entry: P|RW|US|A.
pub const fn raw_table_flags() -> u64 {
    TABLE_FLAGS
}

impl X86Pte {
    /// The largest frame an entry can name (52-bit physical addresses).
    pub const MAX_PFN: u64 = (1 << 40) - 1;
}

/// The address field for a frame.
fn frame_bits(pfn: Pfn) -> Result<u64, PteError> {
    if pfn.0 > X86Pte::MAX_PFN {
        Err(PteError::OutOfRange)
    } else {
        Ok(pfn.addr())
    }
}

/// The address field of a non-present entry, inverted (see module doc).
const fn inverted(value: u64) -> u64 {
    !(value << 12) & ADDR_MASK
}

fn leaf_bits(flags: LeafFlags) -> u64 {
    let nx = if flags.contains(LeafFlags::EXECUTABLE) {
        0
    } else {
        NO_EXECUTE
    };
    LEAF_BITS
        .iter()
        .filter(|(flag, _)| flags.contains(*flag))
        .fold(nx, |raw, (_, bit)| raw | bit)
}

#[inline]
fn leaf_flags(raw: u64) -> LeafFlags {
    let exec = if raw & NO_EXECUTE == 0 {
        LeafFlags::EXECUTABLE
    } else {
        LeafFlags::empty()
    };
    LEAF_BITS
        .iter()
        .filter(|(_, bit)| raw & bit != 0)
        .fold(exec, |flags, (flag, _)| flags | *flag)
}

fn marker_bits(flags: MarkerFlags) -> u64 {
    MARKER_BITS
        .iter()
        .filter(|(flag, _)| flags.contains(*flag))
        .fold(0, |raw, (_, bit)| raw | bit)
}

fn marker_flags(raw: u64) -> MarkerFlags {
    MARKER_BITS
        .iter()
        .filter(|(_, bit)| raw & bit != 0)
        .fold(MarkerFlags::empty(), |flags, (flag, _)| flags | *flag)
}

/// Reads a present entry's fields, without judging them.
fn parse_present(raw: u64, level: usize) -> Pte {
    let pfn = Pfn((raw & ADDR_MASK) >> 12);
    // PS at the root is invalid; parsing it as a leaf lets encode say so.
    if level == 0 || raw & HUGE != 0 {
        Pte::Leaf {
            pfn,
            flags: leaf_flags(raw),
        }
    } else {
        Pte::Table(pfn)
    }
}

/// Reads a non-present entry's fields, without judging them.
fn parse_non_present(raw: u64) -> Option<Pte> {
    match (raw & TAG_MASK) >> TAG_SHIFT {
        0 => Some(Pte::Absent),
        TAG_SWAP => Some(Pte::Swap(SwapEntry {
            device: ((raw >> DEVICE_SHIFT) & 0x1f) as u8,
            offset: (!raw & ADDR_MASK) >> 12,
            uffd_wp: raw & SW_UFFD_WP != 0,
            exclusive: raw & SWAP_EXCLUSIVE != 0,
        })),
        TAG_MARKER => Some(Pte::Marker(marker_flags(raw))),
        _ => None,
    }
}

/// Every bit a leaf's flags may set.
const LEAF_MASK: u64 = WRITABLE
    | USER
    | CACHE_DISABLE
    | ACCESSED
    | DIRTY
    | GLOBAL
    | SW_UFFD_WP
    | SW_SOFT_DIRTY
    | NO_EXECUTE;

/// `decode` of a present entry (`level` below LEVELS) by its bits: a table
/// is exactly the frame and TABLE_FLAGS; a leaf is the frame, PRESENT, PS
/// above level 0, and flag bits, at a level that holds leaves and with the
/// frame aligned to the page size. That is what `encode` writes, so the
/// verdict is the re-encoding's (module doc, "Strict decoding").
#[inline]
fn decode_present(raw: u64, level: usize) -> Result<Pte, PteError> {
    let frame = raw & ADDR_MASK;
    let pfn = Pfn(frame >> 12);
    if level > 0 && raw & HUGE == 0 {
        return if raw & !ADDR_MASK == TABLE_FLAGS {
            Ok(Pte::Table(pfn))
        } else {
            Err(PteError::Malformed(raw))
        };
    }
    let ps = if level > 0 { HUGE } else { 0 };
    let aligned = frame & (kernel::mm::pte::level_size(level) - 1) == 0;
    if X86Pte::leaf_allowed(level) && aligned && raw & !(ADDR_MASK | LEAF_MASK) == PRESENT | ps {
        Ok(Pte::Leaf {
            pfn,
            flags: leaf_flags(raw),
        })
    } else {
        Err(PteError::Malformed(raw))
    }
}

/// `decode` by the rule itself: parse, re-encode, compare. For entries
/// that are not present (rare on walks), and the tests' reference.
fn decode_by_encoding(raw: u64, level: usize) -> Result<Pte, PteError> {
    let parsed = if raw & PRESENT != 0 {
        Some(parse_present(raw, level))
    } else {
        parse_non_present(raw)
    };
    match parsed {
        Some(pte) if X86Pte::encode(&pte, level) == Ok(raw) => Ok(pte),
        _ => Err(PteError::Malformed(raw)),
    }
}

impl PteFormat for X86Pte {
    const LEVELS: usize = 4;
    const ENTRIES: usize = 512;

    fn leaf_allowed(level: usize) -> bool {
        level <= 2
    }

    // Inline across crates: the walker decodes an entry per level.
    #[inline]
    fn decode(raw: u64, level: usize) -> Result<Pte, PteError> {
        if level >= Self::LEVELS {
            return Err(PteError::BadLevel);
        }
        if raw & PRESENT != 0 {
            return decode_present(raw, level);
        }
        decode_by_encoding(raw, level)
    }

    fn encode(pte: &Pte, level: usize) -> Result<u64, PteError> {
        Self::check(pte, level)?;
        Ok(match *pte {
            Pte::Absent => 0,
            Pte::Table(pfn) => frame_bits(pfn)? | TABLE_FLAGS,
            Pte::Leaf { pfn, flags } => {
                let huge = if level > 0 { HUGE } else { 0 };
                frame_bits(pfn)? | PRESENT | huge | leaf_bits(flags)
            }
            Pte::Swap(e) => {
                let mut raw = TAG_SWAP << TAG_SHIFT | inverted(e.offset);
                raw |= (e.device as u64) << DEVICE_SHIFT;
                if e.uffd_wp {
                    raw |= SW_UFFD_WP;
                }
                if e.exclusive {
                    raw |= SWAP_EXCLUSIVE;
                }
                raw
            }
            Pte::Marker(m) => TAG_MARKER << TAG_SHIFT | inverted(0) | marker_bits(m),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::mm::mmu::{AccessKind, FaultKind, Mode, SimMmu};
    use kernel::mm::paging::{MapError, PageSize, PageTable, SimTableAlloc};
    use kernel::mm::phys::{PhysMem, SimMemory};
    use kernel::mm::pte::verify_format;
    use kernel::mm::tlb::TlbFlush;

    const RW: LeafFlags = LeafFlags::WRITABLE;

    fn leaf(pfn: u64, flags: LeafFlags) -> Pte {
        Pte::Leaf {
            pfn: Pfn(pfn),
            flags,
        }
    }

    fn enc(pte: Pte, level: usize) -> Result<u64, PteError> {
        X86Pte::encode(&pte, level)
    }

    fn malformed(raw: u64, level: usize) {
        let got = X86Pte::decode(raw, level);
        assert_eq!(got, Err(PteError::Malformed(raw)), "{raw:#x} at {level}");
    }

    #[test]
    fn meets_the_pte_format_contract() {
        verify_format::<X86Pte>(X86Pte::MAX_PFN);
    }

    #[test]
    fn known_leaf_values() {
        let user_rw = RW | LeafFlags::USER;
        assert_eq!(enc(leaf(0x1234, user_rw), 0), Ok(0x8000_0000_0123_4007));
        let ad = user_rw | LeafFlags::ACCESSED | LeafFlags::DIRTY;
        assert_eq!(enc(leaf(0x1234, ad), 0), Ok(0x8000_0000_0123_4067));
        let kernel_text = LeafFlags::EXECUTABLE | LeafFlags::GLOBAL;
        assert_eq!(enc(leaf(0x1234, kernel_text), 0), Ok(0x0123_4101));
        let mmio = RW | LeafFlags::NO_CACHE;
        assert_eq!(enc(leaf(0xfee00, mmio), 0), Ok(0x8000_0000_fee0_0013));
        let soft = LeafFlags::UFFD_WP | LeafFlags::SOFT_DIRTY;
        assert_eq!(enc(leaf(1, soft), 0), Ok(0x8000_0000_0000_1601));
        let raw = 0x8000_0000_0123_4007;
        assert_eq!(X86Pte::decode(raw, 0), Ok(leaf(0x1234, user_rw)));
        assert_eq!(enc(leaf(X86Pte::MAX_PFN, RW), 0), Ok(0x800f_ffff_ffff_f003));
    }

    #[test]
    fn huge_leaves_carry_ps() {
        let rwx = RW | LeafFlags::EXECUTABLE;
        assert_eq!(enc(leaf(0x200, rwx), 1), Ok(0x20_0083));
        assert_eq!(enc(leaf(0x4_0000, rwx), 2), Ok(0x4000_0083));
        assert_eq!(X86Pte::decode(0x4000_0083, 2), Ok(leaf(0x4_0000, rwx)));
        // Without PS the same address is a table.
        assert_eq!(X86Pte::decode(0x20_0027, 1), Ok(Pte::Table(Pfn(0x200))));
        let user = RW | LeafFlags::USER | LeafFlags::ACCESSED | LeafFlags::EXECUTABLE;
        assert_eq!(X86Pte::decode(0x20_00a7, 1), Ok(leaf(0x200, user)));
    }

    #[test]
    fn bit_7_is_pat_in_4k_leaves_and_reserved_in_the_root() {
        malformed(0x1234_0083, 0);
        malformed(0x1234_00a7, 3);
        assert_eq!(enc(leaf(0, RW), 3), Err(PteError::LeafNotAllowed));
    }

    #[test]
    fn huge_pat_bit_is_not_address() {
        // Bit 12 of a 2 MiB leaf is PAT: not frame 0x201.
        malformed(0x20_1083, 1);
        malformed(0x4000_1083, 2);
        // Nor may the reserved bits below the alignment be set.
        malformed(0x20_2083, 1);
        malformed(0x4010_0083, 2);
        assert_eq!(enc(leaf(0x201, RW), 1), Err(PteError::Misaligned));
        assert_eq!(enc(leaf(0x200, RW), 2), Err(PteError::Misaligned));
    }

    #[test]
    fn table_entries_are_permissive() {
        assert_eq!(raw_table_flags(), 0x27);
        assert_eq!(enc(Pte::Table(Pfn(0x1234)), 3), Ok(0x123_4027));
        assert_eq!(enc(Pte::Table(Pfn(0)), 1), Ok(0x27));
        // A restrictive table entry would make the leaf's flags lie.
        malformed(0x123_4025, 3); // read-only
        malformed(0x123_4023, 2); // supervisor
        malformed(0x8000_0000_0123_4027, 1); // no-execute
        malformed(0x123_4037, 3); // cache disabled
        assert_eq!(enc(Pte::Table(Pfn(1)), 0), Err(PteError::TableNotAllowed));
        assert_eq!(enc(Pte::Table(Pfn(1 << 40)), 1), Err(PteError::OutOfRange));
    }

    #[test]
    fn non_present_layouts() {
        assert_eq!(X86Pte::decode(0, 0), Ok(Pte::Absent));
        let swap = SwapEntry {
            device: 5,
            offset: 0x1234,
            uffd_wp: true,
            exclusive: true,
        };
        assert_eq!(enc(Pte::Swap(swap), 0), Ok(0x000f_ffff_fedc_b62a));
        assert_eq!(
            X86Pte::decode(0x000f_ffff_fedc_b62a, 1),
            Ok(Pte::Swap(swap))
        );
        let top = SwapEntry::new(31, SwapEntry::MAX_OFFSET);
        assert_eq!(enc(Pte::Swap(top), 2), Ok(0xfa));
        let wp = Pte::Marker(MarkerFlags::UFFD_WP);
        assert_eq!(enc(wp, 0), Ok(0x000f_ffff_ffff_f204));
        let gone = Pte::Marker(MarkerFlags::POISONED | MarkerFlags::GUARD);
        assert_eq!(enc(gone, 0), Ok(0x000f_ffff_ffff_f01c));
    }

    #[test]
    fn non_present_addresses_point_above_ram() {
        // L1TF: small offsets must not name plausible physical memory.
        for offset in [0, 1, 0x1234_5678, (1 << 39) - 1] {
            let raw = enc(Pte::Swap(SwapEntry::new(0, offset)), 0).unwrap();
            assert!(raw & ADDR_MASK >= 1 << 51, "{offset:#x}: {raw:#x}");
        }
        let raw = enc(Pte::Marker(MarkerFlags::GUARD), 0).unwrap();
        assert_eq!(raw & ADDR_MASK, ADDR_MASK);
    }

    #[test]
    fn non_present_junk_is_malformed() {
        malformed(0x6, 0); // reserved tag 3
        malformed(0x100, 0); // tag 0 but not zero
        malformed(0x8000_0000_0000_0000, 0);
        malformed(0x000f_ffff_ffff_f104, 0); // marker with bit 8
        malformed(0x000f_ffff_ffff_f604, 0); // marker with bit 10
        malformed(0x000f_ffff_ffff_f004, 1); // marker with no flags
        malformed(0x000e_ffff_ffff_f204, 0); // marker with an address
        malformed(0x0010_0000_0000_0002, 0); // swap with bit 52
        malformed(0x0000_0000_0000_0802, 0); // swap with bit 11
        // A swap entry or marker stands in for a leaf: never in the root.
        malformed(0x000f_ffff_ffff_f204, 3);
        malformed(0x2, 3);
        assert_eq!(
            X86Pte::decode(0x2, 2),
            Ok(Pte::Swap(SwapEntry::new(0, SwapEntry::MAX_OFFSET)))
        );
    }

    #[test]
    fn encode_refusals() {
        let swap = |device, offset| Pte::Swap(SwapEntry::new(device, offset));
        assert_eq!(enc(Pte::Absent, 4), Err(PteError::BadLevel));
        assert_eq!(X86Pte::decode(0, 4), Err(PteError::BadLevel));
        assert_eq!(enc(leaf(1 << 40, RW), 0), Err(PteError::OutOfRange));
        assert_eq!(enc(swap(32, 0), 0), Err(PteError::OutOfRange));
        assert_eq!(enc(swap(0, 1 << 40), 0), Err(PteError::OutOfRange));
        assert_eq!(enc(swap(0, 0), 3), Err(PteError::LeafNotAllowed));
        let empty = Pte::Marker(MarkerFlags::empty());
        assert_eq!(enc(empty, 0), Err(PteError::EmptyMarker));
    }

    /// Whatever decodes, encodes back to exactly the same bits.
    #[test]
    fn decode_is_exact() {
        let mut x = 0x853c_49e6_748f_ea9b_u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Bias towards plausible entries: few high bits, some low ones.
            for raw in [
                x,
                x & 0x800f_ffff_ffff_f7ff,
                x & 0x7ff,
                x & !0x0ff0_0000_0000_0000,
            ] {
                for level in 0..4 {
                    if let Ok(pte) = X86Pte::decode(raw, level) {
                        assert_eq!(enc(pte, level), Ok(raw), "{raw:#x} at {level}");
                    }
                }
            }
        }
    }

    /// The mask tests of present entries give the re-encoding's verdict:
    /// on every valid state (with each of its bits flipped, and the
    /// alignment bits of huge frames) and on random junk.
    #[test]
    fn fast_decode_agrees() {
        let same = |raw: u64| {
            for level in 0..4 {
                let fast = X86Pte::decode(raw, level);
                assert_eq!(fast, decode_by_encoding(raw, level), "{raw:#x} at {level}");
            }
        };
        let flags = [
            LeafFlags::empty(),
            RW | LeafFlags::USER,
            LeafFlags::all(),
            LeafFlags::EXECUTABLE | LeafFlags::GLOBAL | LeafFlags::NO_CACHE,
        ];
        let mut valid = Vec::new();
        for level in 0..4 {
            let align = kernel::mm::pte::level_size(level) / 4096;
            for pfn in [0, align, 0x1234 * align, X86Pte::MAX_PFN / align * align] {
                valid.extend(enc(Pte::Table(Pfn(pfn)), level));
                for f in flags {
                    valid.extend(enc(leaf(pfn, f), level));
                }
            }
        }
        assert!(valid.len() > 40);
        for raw in valid {
            same(raw);
            for bit in 0..64 {
                same(raw ^ 1 << bit);
            }
        }
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for raw in [
                x,
                x & 0x800f_ffff_ffff_f7ff,
                x & 0x8000_0000_ffe0_01ff,
                x & 0x1ff,
            ] {
                same(raw | 1);
            }
        }
    }

    // ---- the generic walker over real x86 entries ----

    type X86Table<'m> = PageTable<'m, X86Pte, SimMemory>;

    fn entry_word(mem: &SimMemory, table: Pfn, index: u64) -> u64 {
        mem.read_u64(table.addr() + index * 8)
    }

    #[test]
    fn walker_writes_x86_entries() {
        let (mem, alloc) = (SimMemory::new(), SimTableAlloc::new(Pfn(0x8_0000)));
        let mut pt = X86Table::new(&mem, &alloc).unwrap();
        let va = 0xffff_8000_4020_3000; // indices 256, 1, 1, 3
        pt.map(va, Pfn(0x1234), PageSize::Size4K, RW, &alloc)
            .unwrap();
        let root = pt.root();
        let (l2, l1, l0) = (Pfn(0x8_0001), Pfn(0x8_0002), Pfn(0x8_0003));
        assert_eq!(entry_word(&mem, root, 256), l2.addr() | 0x27);
        assert_eq!(entry_word(&mem, l2, 1), l1.addr() | 0x27);
        assert_eq!(entry_word(&mem, l1, 1), l0.addr() | 0x27);
        assert_eq!(entry_word(&mem, l0, 3), 0x8000_0000_0123_4003);
        assert_eq!(
            pt.translate(va + 0x10),
            Some((0x123_4010, RW, PageSize::Size4K))
        );
        let rx = LeafFlags::EXECUTABLE;
        pt.map(va & !0x3fff_ffff, Pfn(0), PageSize::Size2M, rx, &alloc)
            .unwrap();
        assert_eq!(entry_word(&mem, l1, 0), 0x81);
        let gib = 0xffff_8000_8000_0000;
        pt.map(gib, Pfn(0x4_0000), PageSize::Size1G, RW, &alloc)
            .unwrap();
        assert_eq!(entry_word(&mem, l2, 2), 0x8000_0000_4000_0083);
        assert_eq!(
            pt.translate(gib + 0x1234_5678).map(|t| t.0),
            Some(0x5234_5678)
        );
        // The MMU sets accessed and dirty in bits 5 and 6; unmap reports them.
        let mmu = SimMmu::<X86Pte, SimMemory>::new(&mem);
        let written = mmu.access(root, va + 8, AccessKind::Write, Mode::Supervisor);
        assert_eq!(written, Ok(0x123_4008));
        assert_eq!(entry_word(&mem, l0, 3), 0x8000_0000_0123_4063);
        let ad = RW | LeafFlags::ACCESSED | LeafFlags::DIRTY;
        let (pfn, size, flags, flush) = pt.unmap(va).unwrap();
        flush.flush(&mmu);
        assert_eq!((pfn, size, flags), (Pfn(0x1234), PageSize::Size4K, ad));
        assert_eq!(entry_word(&mem, l0, 3), 0);
        let swap = Pte::Swap(SwapEntry::new(2, 77));
        let (_, flush) = pt.set_entry(va, 0, swap, &alloc).unwrap();
        flush.ignore_fresh_table();
        assert_eq!(pt.entry(va, 0), Some(swap));
        assert_eq!(pt.translate(va), None);
        pt.destroy(&alloc);
        alloc.assert_no_leaks();
    }

    /// The simulated MMU over x86 entries: user and NX bits as the
    /// hardware reads them, accessed/dirty where it writes them.
    #[test]
    fn sim_mmu_walks_x86_entries() {
        let (mem, alloc) = (SimMemory::new(), SimTableAlloc::new(Pfn(0x8_0000)));
        let mut pt = X86Table::new(&mem, &alloc).unwrap();
        let mmu = SimMmu::<X86Pte, SimMemory>::new(&mem);
        let root = pt.root();
        let (code, data) = (0x40_0000, 0x60_0000);
        let rx = LeafFlags::USER | LeafFlags::EXECUTABLE;
        pt.map(code, Pfn(0x10), PageSize::Size4K, rx, &alloc)
            .unwrap();
        let urw = LeafFlags::USER | RW;
        pt.map(data, Pfn(0x11), PageSize::Size4K, urw, &alloc)
            .unwrap();
        let entry = |va: u64| {
            let Some(Pte::Table(l0)) = pt.entry(va, 1) else {
                panic!("no level-0 table")
            };
            entry_word(&mem, l0, (va >> 12) % 512)
        };
        let mut buf = [0; 8];
        mmu.fetch(root, code, &mut buf).unwrap();
        assert_eq!(entry(code), 0x1_0025, "P|US|A, executable");
        let fault = mmu.fetch(root, data, &mut buf).unwrap_err();
        assert_eq!(
            (fault.kind, fault.access),
            (FaultKind::Protection, AccessKind::Execute)
        );
        mmu.write(root, data, b"x86").unwrap();
        assert_eq!(entry(data), 0x8000_0000_0001_1067, "NX|D|A|US|RW|P");
        let fault = mmu.write(root, code, b"x").unwrap_err();
        assert_eq!(fault.kind, FaultKind::Protection);
        // Write-protected without a flush, the cached dirty translation
        // still writes; flushed, the write faults.
        let (old, flush) = pt.protect(data, LeafFlags::USER).unwrap();
        assert_eq!(old, urw | LeafFlags::ACCESSED | LeafFlags::DIRTY);
        assert_eq!(mmu.write(root, data, b"y"), Ok(()));
        flush.flush(&mmu);
        assert_eq!(
            mmu.write(root, data, b"z").map_err(|f| f.kind),
            Err(FaultKind::Protection)
        );
        mmu.flush_all();
        pt.destroy(&alloc);
        alloc.assert_no_leaks();
    }

    #[test]
    fn walker_builds_an_x86_direct_map() {
        let (mem, alloc) = (SimMemory::new(), SimTableAlloc::new(Pfn(0x8_0000)));
        let mut pt = X86Table::new(&mem, &alloc).unwrap();
        let base = 0xffff_8880_0000_0000;
        // 4 GiB + 6 MiB + 20 KiB of RAM starting at 1 MiB.
        let (pa, len) = (0x10_0000, (4 << 30) + (6 << 20) + 0x5000);
        let flags = RW | LeafFlags::GLOBAL;
        let pages = (pt.map_range(base + pa, pa, len, flags, PageSize::Size1G, &alloc))
            .map_err(|e| e.ignore_fresh_table());
        // 256 4 KiB pages up to 2 MiB, 511 2 MiB pages up to 1 GiB, three
        // 1 GiB pages up to 4 GiB, then 7 MiB + 20 KiB: three 2 MiB pages
        // and 261 4 KiB pages.
        assert_eq!(pages, Ok(256 + 511 + 3 + 3 + 261));
        let mut sizes = [0u32; 3];
        let mut prev = 0;
        pt.for_each_leaf(base, 0, &mut |va, pfn, size, f| {
            assert!(va >= prev && f == flags);
            assert_eq!(pfn.addr(), va - base);
            sizes[size.level()] += 1;
            prev = va;
        });
        assert_eq!(sizes, [256 + 261, 511 + 3, 3]);
        let mut x = 7u64;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let off = (x >> 11) % len;
            assert_eq!(pt.translate(base + pa + off).map(|t| t.0), Some(pa + off));
        }
        assert_eq!(pt.translate(base + pa - 1), None);
        assert_eq!(pt.translate(base + pa + len), None);
        let err = pt.map(base, Pfn(0), PageSize::Size2M, RW, &alloc);
        assert_eq!(err, Err(MapError::AlreadyMapped));
        let starts: Vec<u64> = {
            let mut v = Vec::new();
            pt.for_each_leaf(0, 0, &mut |va, _, _, _| v.push(va));
            v
        };
        for va in starts {
            pt.unmap(va).unwrap().3.ignore_fresh_table();
        }
        let live = alloc.live();
        assert_eq!(pt.prune(0, 0).free_fresh_table(&alloc), live - 1);
        assert_eq!(alloc.live(), 1);
        pt.destroy(&alloc);
        alloc.assert_no_leaks();
    }
}
