//! Page-table entries, independent of any hardware format.
//!
//! The mm code never looks at raw entry bits. It works on [`Pte`], a decoded
//! entry that names every state an entry can be in, and a [`PteFormat`]
//! translates between `Pte` and the raw `u64` a particular MMU walks. One
//! generic walker (`paging.rs`) then serves every format: the x86_64 host
//! tables (`arch::pte::X86Pte`), later the nested (EPT) tables, and
//! `SimPte`, a deliberately different layout the host tests use to prove the
//! walker assumes nothing about x86 bits.
//!
//! # Levels
//!
//! Level 0 is the last level (4 KiB leaves), level 1 maps 2 MiB per entry,
//! level 2 1 GiB, level 3 is the x86 PML4 root (512 GiB per entry). Every
//! table has 512 entries, so each level consumes 9 bits of the address.
//!
//! # States
//!
//! | state    | present | meaning                                     | allowed at           |
//! |----------|---------|---------------------------------------------|----------------------|
//! | `Absent` | no      | nothing here; raw value 0                   | every level          |
//! | `Table`  | yes     | points to the next-level table              | every level but 0    |
//! | `Leaf`   | yes     | maps `level_size(level)` bytes, aligned     | where `leaf_allowed` |
//! | `Swap`   | no      | the page is in a swap slot (Linux swap pte) | where `leaf_allowed` |
//! | `Marker` | no      | no page, but a fact (Linux pte marker)      | where `leaf_allowed` |
//!
//! `Swap` and `Marker` stand in for a leaf that is not there, which is why
//! they are allowed exactly where a leaf is. A swap entry keeps the
//! userfault write-protect bit, so write-protection survives swap-out, and
//! an `exclusive` bit (the page was mapped by this address space only, so
//! swap-in may map it writable without a copy). A marker says "no page, but
//! remember": write-protected by userfault while unpopulated, poisoned
//! (a hardware memory error killed the page), or a guard region.
//!
//! # Contract for formats
//!
//! * raw 0 decodes as `Absent` at every level and `Absent` encodes as 0:
//!   fresh tables are zeroed frames, and the walker clears entries with 0;
//! * `decode` never panics: every raw value yields a `Pte` or an error;
//! * `decode(encode(p, l), l) == Ok(p)` for every `p` valid at level `l`;
//! * `encode` enforces the portable rules of [`PteFormat::check`] plus its
//!   own range limits (`OutOfRange`).
//!
//! [`verify_format`] checks a format against this contract.

use super::{PAGE_SIZE, Pfn};
use bitflags::bitflags;

/// Bits of the virtual address consumed by one level (512 entries).
pub const LEVEL_BITS: u32 = 9;

/// Bytes mapped by one entry at `level`: 4 KiB, 2 MiB, 1 GiB, 512 GiB, ...
///
/// `level` must be below 6 (a 5-level root entry maps 256 TiB).
pub const fn level_size(level: usize) -> u64 {
    PAGE_SIZE << (LEVEL_BITS * level as u32)
}

bitflags! {
    /// Permissions and status of a leaf mapping, in a portable positive
    /// sense: a format maps each flag to its own bits (x86 stores
    /// `EXECUTABLE` as a cleared NX bit).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct LeafFlags: u32 {
        const WRITABLE = 1 << 0;
        const USER = 1 << 1;
        const EXECUTABLE = 1 << 2;
        /// Survives address-space switches (kernel mappings).
        const GLOBAL = 1 << 3;
        /// Set by the MMU on any access.
        const ACCESSED = 1 << 4;
        /// Set by the MMU on a write.
        const DIRTY = 1 << 5;
        const NO_CACHE = 1 << 6;
        /// Software: userfault write-protect, a write must be reported.
        const UFFD_WP = 1 << 7;
        /// Software: written since soft-dirty tracking was last reset.
        const SOFT_DIRTY = 1 << 8;
    }
}

bitflags! {
    /// What a non-present marker entry remembers. At least one is set.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct MarkerFlags: u32 {
        /// Userfault write-protect on a page that is not populated.
        const UFFD_WP = 1 << 0;
        /// The page was lost to a memory error; access must fault hard.
        const POISONED = 1 << 1;
        /// A guard region: access must fault, nothing may be populated.
        const GUARD = 1 << 2;
    }
}

/// A page that lives in a swap slot instead of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapEntry {
    /// Swap device, `0..=MAX_DEVICE`.
    pub device: u8,
    /// Slot on the device, `0..=MAX_OFFSET`.
    pub offset: u64,
    /// Userfault write-protect carried over from the leaf.
    pub uffd_wp: bool,
    /// Only this address space maps the page: swap-in may map it writable.
    pub exclusive: bool,
}

impl SwapEntry {
    pub const MAX_DEVICE: u8 = 31;
    pub const MAX_OFFSET: u64 = (1 << 40) - 1;

    /// An entry for `offset` on `device` with both bits clear.
    pub const fn new(device: u8, offset: u64) -> SwapEntry {
        SwapEntry {
            device,
            offset,
            uffd_wp: false,
            exclusive: false,
        }
    }
}

/// A decoded page-table entry. See the module doc for the states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pte {
    Absent,
    Table(Pfn),
    Leaf { pfn: Pfn, flags: LeafFlags },
    Swap(SwapEntry),
    Marker(MarkerFlags),
}

impl Pte {
    /// Would the MMU follow this entry (table or leaf)?
    pub const fn is_present(&self) -> bool {
        matches!(self, Pte::Table(_) | Pte::Leaf { .. })
    }
}

/// Why an entry cannot be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PteError {
    /// The level is not below the format's `LEVELS`.
    BadLevel,
    /// A leaf, swap entry or marker at a level that cannot hold a leaf.
    LeafNotAllowed,
    /// A table pointer at level 0.
    TableNotAllowed,
    /// A huge leaf's frame is not aligned to the leaf's size.
    Misaligned,
    /// A frame, swap offset, swap device or flag bit the format cannot hold.
    OutOfRange,
    /// A marker with no flags: it would remember nothing.
    EmptyMarker,
    /// A raw value that is no valid state at that level.
    Malformed(u64),
}

impl core::fmt::Display for PteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PteError::BadLevel => f.write_str("no such page-table level"),
            PteError::LeafNotAllowed => f.write_str("no leaf allowed at this level"),
            PteError::TableNotAllowed => f.write_str("no table allowed at level 0"),
            PteError::Misaligned => f.write_str("huge leaf frame not aligned to its size"),
            PteError::OutOfRange => f.write_str("value too large for the entry format"),
            PteError::EmptyMarker => f.write_str("marker entry without flags"),
            PteError::Malformed(raw) => write!(f, "malformed page-table entry {raw:#x}"),
        }
    }
}

/// A hardware (or simulated) page-table-entry format.
pub trait PteFormat {
    /// Levels of tables, root included (4 for x86_64 4-level paging).
    const LEVELS: usize;
    /// Entries per table; the walker requires 512.
    const ENTRIES: usize;

    /// Can an entry at `level` map a page? Always true for level 0, always
    /// false for levels `>= LEVELS`.
    fn leaf_allowed(level: usize) -> bool;

    /// The state `raw` holds at `level`. Never panics.
    fn decode(raw: u64, level: usize) -> Result<Pte, PteError>;

    /// The raw value for `pte` at `level`.
    fn encode(pte: &Pte, level: usize) -> Result<u64, PteError>;

    /// The rules every format shares; `encode` calls this first.
    fn check(pte: &Pte, level: usize) -> Result<(), PteError> {
        if level >= Self::LEVELS {
            return Err(PteError::BadLevel);
        }
        let leafy = Self::leaf_allowed(level);
        match *pte {
            Pte::Absent => Ok(()),
            Pte::Table(_) if level == 0 => Err(PteError::TableNotAllowed),
            Pte::Table(_) => Ok(()),
            _ if !leafy => Err(PteError::LeafNotAllowed),
            Pte::Leaf { pfn, flags } => {
                if !pfn.0.is_multiple_of(level_size(level) / PAGE_SIZE) {
                    Err(PteError::Misaligned)
                } else if LeafFlags::from_bits(flags.bits()).is_none() {
                    Err(PteError::OutOfRange)
                } else {
                    Ok(())
                }
            }
            Pte::Swap(e) => {
                if e.device > SwapEntry::MAX_DEVICE || e.offset > SwapEntry::MAX_OFFSET {
                    Err(PteError::OutOfRange)
                } else {
                    Ok(())
                }
            }
            Pte::Marker(m) => {
                if m.is_empty() {
                    Err(PteError::EmptyMarker)
                } else if MarkerFlags::from_bits(m.bits()).is_none() {
                    Err(PteError::OutOfRange)
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Checks `F` against the contract in the module doc, by enumerating every
/// state at every level with boundary values (frames up to `max_pfn`, the
/// largest frame `F` can hold) and by decoding bit-flipped and random raw
/// values. Panics on the first violation. Meant for each format's tests.
pub fn verify_format<F: PteFormat>(max_pfn: u64) {
    assert!(F::leaf_allowed(0), "level 0 must hold leaves");
    assert!(!F::leaf_allowed(F::LEVELS), "no leaves beyond LEVELS");
    assert_eq!(F::encode(&Pte::Absent, F::LEVELS), Err(PteError::BadLevel));
    assert_eq!(F::decode(0, F::LEVELS), Err(PteError::BadLevel));
    for level in 0..F::LEVELS {
        assert_eq!(F::decode(0, level), Ok(Pte::Absent), "decode(0) at {level}");
        assert_eq!(F::encode(&Pte::Absent, level), Ok(0), "Absent at {level}");
        verify_tables::<F>(level, max_pfn);
        verify_leaves::<F>(level, max_pfn);
        verify_swap::<F>(level);
        verify_markers::<F>(level);
        verify_junk::<F>(level, max_pfn);
    }
}

/// Encodes `pte`, decodes it back and returns the raw value.
fn round_trip<F: PteFormat>(pte: Pte, level: usize) -> u64 {
    let raw = F::encode(&pte, level).unwrap_or_else(|e| panic!("{pte:?} at {level}: {e:?}"));
    assert_eq!(F::decode(raw, level), Ok(pte), "raw {raw:#x} at {level}");
    raw
}

fn expect_err<F: PteFormat>(pte: Pte, level: usize, err: PteError) {
    assert_eq!(F::encode(&pte, level), Err(err), "{pte:?} at {level}");
}

fn verify_tables<F: PteFormat>(level: usize, max_pfn: u64) {
    for pfn in [0, 1, max_pfn / 3, max_pfn] {
        let pte = Pte::Table(Pfn(pfn));
        if level == 0 {
            expect_err::<F>(pte, level, PteError::TableNotAllowed);
        } else {
            round_trip::<F>(pte, level);
        }
    }
    if level > 0 {
        expect_err::<F>(Pte::Table(Pfn(max_pfn + 1)), level, PteError::OutOfRange);
    }
}

fn verify_leaves<F: PteFormat>(level: usize, max_pfn: u64) {
    let align = level_size(level) / PAGE_SIZE;
    let top = max_pfn - max_pfn % align;
    let leaf = |pfn, flags| Pte::Leaf {
        pfn: Pfn(pfn),
        flags,
    };
    if !F::leaf_allowed(level) {
        expect_err::<F>(leaf(0, LeafFlags::empty()), level, PteError::LeafNotAllowed);
        return;
    }
    for bits in 0..=LeafFlags::all().bits() {
        let flags = LeafFlags::from_bits_truncate(bits);
        for pfn in [0, align, (top / 3) & !(align - 1), top] {
            round_trip::<F>(leaf(pfn, flags), level);
        }
    }
    if align > 1 {
        expect_err::<F>(
            leaf(align / 2, LeafFlags::empty()),
            level,
            PteError::Misaligned,
        );
        expect_err::<F>(
            leaf(top + 1, LeafFlags::empty()),
            level,
            PteError::Misaligned,
        );
    }
    expect_err::<F>(
        leaf(top + align, LeafFlags::empty()),
        level,
        PteError::OutOfRange,
    );
    let unknown = LeafFlags::from_bits_retain(1 << 31);
    expect_err::<F>(leaf(0, unknown), level, PteError::OutOfRange);
}

fn verify_swap<F: PteFormat>(level: usize) {
    if !F::leaf_allowed(level) {
        expect_err::<F>(
            Pte::Swap(SwapEntry::new(0, 0)),
            level,
            PteError::LeafNotAllowed,
        );
        return;
    }
    for device in [0, 1, SwapEntry::MAX_DEVICE] {
        for offset in [0, 1, 0x1234_5678, SwapEntry::MAX_OFFSET] {
            for bits in 0..4 {
                let e = SwapEntry {
                    device,
                    offset,
                    uffd_wp: bits & 1 != 0,
                    exclusive: bits & 2 != 0,
                };
                round_trip::<F>(Pte::Swap(e), level);
            }
        }
    }
    let bad_device = SwapEntry::new(SwapEntry::MAX_DEVICE + 1, 0);
    let bad_offset = SwapEntry::new(0, SwapEntry::MAX_OFFSET + 1);
    expect_err::<F>(Pte::Swap(bad_device), level, PteError::OutOfRange);
    expect_err::<F>(Pte::Swap(bad_offset), level, PteError::OutOfRange);
}

fn verify_markers<F: PteFormat>(level: usize) {
    for bits in 0..=MarkerFlags::all().bits() {
        let pte = Pte::Marker(MarkerFlags::from_bits_truncate(bits));
        if !F::leaf_allowed(level) {
            expect_err::<F>(pte, level, PteError::LeafNotAllowed);
        } else if bits == 0 {
            expect_err::<F>(pte, level, PteError::EmptyMarker);
        } else {
            round_trip::<F>(pte, level);
        }
    }
    if F::leaf_allowed(level) {
        let unknown = MarkerFlags::from_bits_retain(1 << 31 | 1);
        expect_err::<F>(Pte::Marker(unknown), level, PteError::OutOfRange);
    }
}

/// Decoding arbitrary values must never panic, and whatever decodes must
/// be a valid state that encodes back to a value decoding the same way.
fn verify_junk<F: PteFormat>(level: usize, max_pfn: u64) {
    let decodes_sanely = |raw: u64| {
        if let Ok(pte) = F::decode(raw, level) {
            let again = F::encode(&pte, level).map(|r| F::decode(r, level));
            assert_eq!(again, Ok(Ok(pte)), "raw {raw:#x} at {level}");
        }
    };
    // Every single-bit flip of every kind of valid value.
    let samples = [
        Pte::Table(Pfn(max_pfn)),
        Pte::Leaf {
            pfn: Pfn(0),
            flags: LeafFlags::all(),
        },
        Pte::Swap(SwapEntry::new(SwapEntry::MAX_DEVICE, 0x55_5555)),
        Pte::Marker(MarkerFlags::all()),
    ];
    for pte in samples {
        if let Ok(raw) = F::encode(&pte, level) {
            (0..64).for_each(|bit| decodes_sanely(raw ^ (1 << bit)));
        }
    }
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..20_000 {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        decodes_sanely(x);
        decodes_sanely(x & 0xfff);
    }
}

/// A simulation format with a layout unlike x86, so that the walker's tests
/// catch any x86 assumption (a present bit at bit 0, an address mask, ...):
///
/// | bits   | Absent | Table | Leaf      | Swap                                   | Marker      |
/// |--------|--------|-------|-----------|----------------------------------------|-------------|
/// | 60..63 | 0      | 1     | 2         | 3                                      | 4           |
/// | 0..47  | 0      | pfn   | pfn       | 0..39 offset, 40..44 device            | 0           |
/// | 48..59 | 0      | 0     | LeafFlags | 45 uffd_wp, 46 exclusive               | MarkerFlags |
///
/// Unused bits must be zero; other kinds are malformed. Leaves are allowed
/// at levels 0..=2, like x86.
#[cfg(test)]
pub struct SimPte;

#[cfg(test)]
impl SimPte {
    pub const MAX_PFN: u64 = (1 << 48) - 1;
    const KIND_SHIFT: u32 = 60;
    const FLAG_SHIFT: u32 = 48;

    /// Reads the fields without judging them; `decode` re-encodes to judge.
    fn parse(raw: u64) -> Option<Pte> {
        let low = raw & Self::MAX_PFN;
        let flags = ((raw >> Self::FLAG_SHIFT) & 0xfff) as u32;
        Some(match raw >> Self::KIND_SHIFT {
            0 => Pte::Absent,
            1 => Pte::Table(Pfn(low)),
            2 => Pte::Leaf {
                pfn: Pfn(low),
                flags: LeafFlags::from_bits_truncate(flags),
            },
            3 => Pte::Swap(SwapEntry {
                device: ((raw >> 40) & 0x1f) as u8,
                offset: raw & SwapEntry::MAX_OFFSET,
                uffd_wp: raw & 1 << 45 != 0,
                exclusive: raw & 1 << 46 != 0,
            }),
            4 => Pte::Marker(MarkerFlags::from_bits_truncate(flags)),
            _ => return None,
        })
    }
}

#[cfg(test)]
impl PteFormat for SimPte {
    const LEVELS: usize = 4;
    const ENTRIES: usize = 512;

    fn leaf_allowed(level: usize) -> bool {
        level <= 2
    }

    fn decode(raw: u64, level: usize) -> Result<Pte, PteError> {
        if level >= Self::LEVELS {
            return Err(PteError::BadLevel);
        }
        // Valid exactly when it is what encode would write.
        match Self::parse(raw) {
            Some(pte) if Self::encode(&pte, level) == Ok(raw) => Ok(pte),
            _ => Err(PteError::Malformed(raw)),
        }
    }

    fn encode(pte: &Pte, level: usize) -> Result<u64, PteError> {
        Self::check(pte, level)?;
        let kind = |k: u64| k << Self::KIND_SHIFT;
        let pfn = |p: Pfn| {
            if p.0 > Self::MAX_PFN {
                Err(PteError::OutOfRange)
            } else {
                Ok(p.0)
            }
        };
        Ok(match *pte {
            Pte::Absent => 0,
            Pte::Table(p) => kind(1) | pfn(p)?,
            Pte::Leaf { pfn: p, flags } => {
                kind(2) | (flags.bits() as u64) << Self::FLAG_SHIFT | pfn(p)?
            }
            Pte::Swap(e) => {
                kind(3)
                    | (e.exclusive as u64) << 46
                    | (e.uffd_wp as u64) << 45
                    | (e.device as u64) << 40
                    | e.offset
            }
            Pte::Marker(m) => kind(4) | (m.bits() as u64) << Self::FLAG_SHIFT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_sizes() {
        assert_eq!(level_size(0), 4 << 10);
        assert_eq!(level_size(1), 2 << 20);
        assert_eq!(level_size(2), 1 << 30);
        assert_eq!(level_size(3), 512 << 30);
    }

    #[test]
    fn sim_format_meets_contract() {
        verify_format::<SimPte>(SimPte::MAX_PFN);
    }

    #[test]
    fn check_rejects_each_invalid_combination() {
        let leaf = |pfn| Pte::Leaf {
            pfn: Pfn(pfn),
            flags: LeafFlags::WRITABLE,
        };
        let check = SimPte::check;
        assert_eq!(check(&Pte::Absent, 4), Err(PteError::BadLevel));
        assert_eq!(
            check(&Pte::Table(Pfn(1)), 0),
            Err(PteError::TableNotAllowed)
        );
        assert_eq!(check(&leaf(0), 3), Err(PteError::LeafNotAllowed));
        let swap = Pte::Swap(SwapEntry::new(0, 0));
        assert_eq!(check(&swap, 3), Err(PteError::LeafNotAllowed));
        let marker = Pte::Marker(MarkerFlags::GUARD);
        assert_eq!(check(&marker, 3), Err(PteError::LeafNotAllowed));
        assert_eq!(
            check(&Pte::Marker(MarkerFlags::empty()), 0),
            Err(PteError::EmptyMarker)
        );
        assert_eq!(check(&leaf(1), 1), Err(PteError::Misaligned));
        assert_eq!(check(&leaf(512), 1), Ok(()));
        assert_eq!(check(&leaf(512), 2), Err(PteError::Misaligned));
        assert_eq!(check(&leaf(1 << 18), 2), Ok(()));
        // The level is judged before the frame: a misaligned root leaf is
        // reported as the leaf it cannot be.
        assert_eq!(check(&leaf(1), 3), Err(PteError::LeafNotAllowed));
        let big = Pte::Swap(SwapEntry::new(32, 0));
        assert_eq!(check(&big, 0), Err(PteError::OutOfRange));
    }

    #[test]
    fn sim_pfn_range() {
        let top = Pte::Table(Pfn(SimPte::MAX_PFN + 1));
        assert_eq!(SimPte::encode(&top, 1), Err(PteError::OutOfRange));
        assert_eq!(
            SimPte::decode(5 << 60, 0),
            Err(PteError::Malformed(5 << 60))
        );
        // A table kind at level 0 is valid bits but not a valid state there.
        assert_eq!(
            SimPte::decode(1 << 60, 0),
            Err(PteError::Malformed(1 << 60))
        );
    }

    #[test]
    fn presence() {
        assert!(Pte::Table(Pfn(0)).is_present());
        assert!(!Pte::Swap(SwapEntry::new(0, 0)).is_present());
        assert!(!Pte::Absent.is_present());
    }
}
