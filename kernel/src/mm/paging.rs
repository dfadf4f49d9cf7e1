//! Page tables: one generic walker for every entry format.
//!
//! [`PageTable`] edits a radix tree of 512-entry tables through a
//! [`PteFormat`] (which raw bits mean what) and a [`PhysMem`] (how to reach
//! a physical address). The same code therefore builds the kernel's x86_64
//! tables, will build nested tables for guests, and runs in host tests over
//! simulated memory with a deliberately un-x86 format.
//!
//! # Walks
//!
//! A virtual address is split into 9-bit indices, one per level, from the
//! root (level `LEVELS - 1`) down to level 0, above the 12-bit page offset.
//! With 4 levels that covers 48 bits; addresses must be canonical (bits
//! 48..63 copies of bit 47). A walk stops at the first entry that is not a
//! [`Pte::Table`]: a leaf maps the address, `Absent`, `Swap` and `Marker`
//! do not.
//!
//! # Updates are single stores
//!
//! The MMU walks these tables concurrently with us, so every change becomes
//! visible in one 8-byte store:
//!
//! * a mapping that needs new tables gets them built, zeroed and filled
//!   while still unreachable, then linked by one store into the first empty
//!   entry on the path. A failure before that store (no memory, a table
//!   frame the format cannot address) frees what was allocated: a failed
//!   `map` changes nothing and leaves no empty tables behind;
//! * `unmap`, `protect` and `set_entry` replace an entry with an atomic
//!   swap, so an accessed or dirty bit the MMU sets at the last moment is
//!   returned, not lost.
//!
//! Software writers are serialised by `&mut self`.
//!
//! # Freeing tables
//!
//! `unmap` never frees tables: that keeps it O(levels), and the next mapping
//! nearby is likely to reuse them. [`PageTable::prune`] unlinks empty tables
//! in a range and hands them back as [`PrunedTables`], freed only after the
//! flush; [`PageTable::destroy`] frees them all. The tables must form a tree
//! (no table linked twice).
//!
//! # Flushes
//!
//! Nothing here flushes a TLB, but nothing lets the caller forget to:
//! `unmap`, `protect` and `set_entry` return a [`PageFlush`] token and
//! `prune` its [`PrunedTables`], which must be consumed (see
//! [`super::tlb`]). `map` fills only empty entries, which no TLB caches, so
//! it needs no flush. A mapped frame must not be reused before its flush.
//!
//! # Malformed entries
//!
//! An entry the format cannot decode never causes a panic. A walk that meets
//! one stops: mutating operations return `MapError::Pte(Malformed(raw))` and
//! change nothing, `translate` and `entry` answer `None`, and
//! `for_each_leaf`, `prune` and `destroy` skip it. Frames behind a malformed
//! entry are never freed, since nothing is known about them.

use super::phys::PhysMem;
use super::pte::{LEVEL_BITS, LeafFlags, Pte, PteError, PteFormat, level_size};
use super::tlb::{PageFlush, TlbFlush, forgotten};
use super::{PAGE_SHIFT, PAGE_SIZE, Pfn};
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::marker::PhantomData;
use spin::Mutex;

/// The sizes a leaf can map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    Size4K,
    Size2M,
    Size1G,
}

impl PageSize {
    /// Smallest first.
    pub const ALL: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

    pub const fn bytes(self) -> u64 {
        level_size(self.level())
    }

    /// The level whose entries map pages of this size.
    pub const fn level(self) -> usize {
        match self {
            PageSize::Size4K => 0,
            PageSize::Size2M => 1,
            PageSize::Size1G => 2,
        }
    }

    pub const fn from_level(level: usize) -> Option<PageSize> {
        match level {
            0 => Some(PageSize::Size4K),
            1 => Some(PageSize::Size2M),
            2 => Some(PageSize::Size1G),
            _ => None,
        }
    }

    /// Frames per page.
    const fn frames(self) -> u64 {
        self.bytes() / PAGE_SIZE
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// The address is outside the canonical range the tables translate.
    NonCanonical,
    /// An address or frame is not aligned to the page size, or an address
    /// is inside a huge leaf rather than at its start.
    Misaligned,
    /// The entry is taken (by a leaf, a table, a swap entry or a marker).
    AlreadyMapped,
    /// No leaf maps the address.
    NotMapped,
    /// The table allocator is out of frames.
    NoMemory,
    /// A huge leaf (or a non-present entry at a huge level) covers the
    /// range where a smaller mapping or a table is needed.
    HugeInTheWay,
    /// The format refused an entry, or a walk met a malformed one.
    Pte(PteError),
}

impl From<PteError> for MapError {
    fn from(e: PteError) -> MapError {
        MapError::Pte(e)
    }
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::NonCanonical => f.write_str("non-canonical virtual address"),
            MapError::Misaligned => f.write_str("address or frame not aligned to the page size"),
            MapError::AlreadyMapped => f.write_str("already mapped"),
            MapError::NotMapped => f.write_str("not mapped"),
            MapError::NoMemory => f.write_str("out of page-table frames"),
            MapError::HugeInTheWay => f.write_str("a huge mapping covers the range"),
            MapError::Pte(e) => write!(f, "page-table entry: {e}"),
        }
    }
}

/// A failed [`PageTable::map_range`]: why, and the flush its rollback
/// owes (the pages it had mapped may have been used meanwhile): one page,
/// or the whole space for more, since failing is rare.
#[must_use = "the rollback's flush is still owed"]
#[derive(Debug)]
pub struct RangeError {
    pub error: MapError,
    pub flush: PageFlush,
}

impl RangeError {
    /// Flushes the rollback and returns the error.
    pub fn flush(self, tlb: &dyn TlbFlush) -> MapError {
        self.flush.flush(tlb);
        self.error
    }

    /// Returns the error; the tables were never loaded (see
    /// [`PageFlush::ignore_fresh_table`]).
    pub fn ignore_fresh_table(self) -> MapError {
        self.flush.ignore_fresh_table();
        self.error
    }
}

/// Empty tables [`PageTable::prune`] unlinked. They are still allocated:
/// a CPU may hold a cached table entry leading into them, so they may be
/// freed only after a flush. Must be consumed like a flush token.
#[must_use = "unlinked tables may still be walked: flush, then free them"]
#[derive(Debug)]
pub struct PrunedTables {
    root: Pfn,
    tables: Vec<Pfn>,
}

impl PrunedTables {
    /// Tables unlinked.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Flushes the space (when anything was unlinked), then frees the
    /// tables. Returns how many were freed.
    pub fn flush_and_free(mut self, tlb: &dyn TlbFlush, alloc: &dyn TableAlloc) -> usize {
        if !self.tables.is_empty() {
            tlb.flush_space(self.root);
        }
        Self::free(core::mem::take(&mut self.tables), alloc)
    }

    /// Frees the tables without a flush, because no CPU has ever loaded
    /// this tree (see [`PageFlush::ignore_fresh_table`]).
    pub fn free_fresh_table(mut self, alloc: &dyn TableAlloc) -> usize {
        Self::free(core::mem::take(&mut self.tables), alloc)
    }

    fn free(tables: Vec<Pfn>, alloc: &dyn TableAlloc) -> usize {
        tables.iter().for_each(|&t| alloc.free_table(t));
        tables.len()
    }
}

impl Drop for PrunedTables {
    fn drop(&mut self) {
        if !self.tables.is_empty() {
            forgotten("PrunedTables", self.root);
        }
    }
}

/// Where page-table frames come from. The booted kernel passes its frame
/// allocator; tests pass [`SimTableAlloc`].
pub trait TableAlloc {
    /// A frame for a table; the walker zeroes it.
    fn alloc_table(&self) -> Result<Pfn, MapError>;
    fn free_table(&self, pfn: Pfn);
}

/// A radix tree of page tables rooted at `root`.
///
/// The handle does not own the frames: dropping it frees nothing, and
/// [`PageTable::destroy`] frees the tables (never the mapped frames).
pub struct PageTable<'m, F: PteFormat, M: PhysMem> {
    root: Pfn,
    mem: &'m M,
    _f: PhantomData<F>,
}

/// The end of a walk towards the entry for an address at some level.
enum Slot {
    /// The entry exists, at this physical address.
    Here(u64),
    /// A table on the way is missing: the `Absent` entry at `pa`, at
    /// `level`, is where it would be linked.
    Gap { pa: u64, level: usize },
}

/// The entry that ends a walk: the first one that is not a table.
struct Stop {
    level: usize,
    pa: u64,
    pte: Pte,
}

/// A leaf found by a walk.
struct LeafAt {
    level: usize,
    pa: u64,
    pfn: Pfn,
    size: PageSize,
}

impl<'m, F: PteFormat, M: PhysMem> PageTable<'m, F, M> {
    /// Evaluated (and so checked at compile time) by the constructors.
    const SHAPE: () = assert!(
        F::ENTRIES == 512 && F::LEVELS >= 2 && F::LEVELS <= 5,
        "the walker needs 512-entry tables and 2 to 5 levels"
    );
    /// Virtual-address bits translated: 48 with 4 levels.
    const VA_BITS: u32 = PAGE_SHIFT + LEVEL_BITS * F::LEVELS as u32;
    const ROOT_LEVEL: usize = F::LEVELS - 1;

    /// A new, empty table tree: allocates and zeroes a root.
    pub fn new(mem: &'m M, alloc: &dyn TableAlloc) -> Result<Self, MapError> {
        let root = alloc.alloc_table()?;
        mem.zero_frame(root);
        Ok(Self::from_root(mem, root))
    }

    /// A handle on an existing tree.
    pub fn from_root(mem: &'m M, root: Pfn) -> Self {
        let () = Self::SHAPE;
        PageTable {
            root,
            mem,
            _f: PhantomData,
        }
    }

    pub fn root(&self) -> Pfn {
        self.root
    }

    /// Maps the page of `size` at `va` to the frames starting at `pfn`.
    ///
    /// Missing tables are allocated (see the module doc: a failure leaves
    /// nothing behind). An occupied entry, including an empty table where a
    /// huge leaf should go, is `AlreadyMapped`; a huge entry above the
    /// target level is `HugeInTheWay`.
    pub fn map(
        &mut self,
        va: u64,
        pfn: Pfn,
        size: PageSize,
        flags: LeafFlags,
        alloc: &dyn TableAlloc,
    ) -> Result<(), MapError> {
        self.check_canonical(va)?;
        if !va.is_multiple_of(size.bytes()) || !pfn.0.is_multiple_of(size.frames()) {
            return Err(MapError::Misaligned);
        }
        let level = size.level();
        // Encoding first: a refused entry must not cost any table.
        let raw = F::encode(&Pte::Leaf { pfn, flags }, level)?;
        match self.locate(va, level)? {
            Slot::Here(pa) => match self.read(pa, level)? {
                Pte::Absent => self.mem.write_u64(pa, raw),
                _ => return Err(MapError::AlreadyMapped),
            },
            Slot::Gap { pa, level: gap } => self.publish(pa, gap, va, level, raw, alloc)?,
        }
        Ok(())
    }

    /// Maps `len` bytes at `va` to physical `pa`, each step with the largest
    /// page size up to `max` that the format allows and that alignment and
    /// the remaining length permit. Returns the number of pages mapped.
    ///
    /// All or nothing: on failure the pages mapped so far are unmapped
    /// again (tables allocated for them stay, empty), and the error carries
    /// the flush it owes. The range may end at the very top of the
    /// address space.
    pub fn map_range(
        &mut self,
        va: u64,
        pa: u64,
        len: u64,
        flags: LeafFlags,
        max: PageSize,
        alloc: &dyn TableAlloc,
    ) -> Result<u64, RangeError> {
        let refuse = |error| RangeError {
            error,
            flush: PageFlush::nothing(self.root),
        };
        if !(va | pa | len).is_multiple_of(PAGE_SIZE) {
            return Err(refuse(MapError::Misaligned));
        }
        if pa.checked_add(len).is_none() {
            return Err(refuse(MapError::Pte(PteError::OutOfRange)));
        }
        let (mut done, mut pages) = (0, 0);
        while done < len {
            let (v, p) = (va.wrapping_add(done), pa + done);
            let size = Self::largest_fit(v, p, len - done, max);
            if let Err(error) = self.map(v, Pfn::containing(p), size, flags, alloc) {
                let flush = self.unmap_prefix(va, done);
                return Err(RangeError { error, flush });
            }
            done += size.bytes();
            pages += 1;
        }
        Ok(pages)
    }

    /// Removes the leaf that maps `va`, which must be the leaf's first
    /// address, and returns its frame, size and flags (with the MMU's final
    /// accessed/dirty bits) and the flush the frame must wait for. Tables
    /// are not freed.
    pub fn unmap(&mut self, va: u64) -> Result<(Pfn, PageSize, LeafFlags, PageFlush), MapError> {
        let leaf = self.find_leaf(va)?;
        let raw = self.mem.swap_u64(leaf.pa, 0);
        let (pfn, flags) = Self::leaf_of(raw, leaf.level)?;
        let flush = PageFlush::page(self.root, va, leaf.size);
        Ok((pfn, leaf.size, flags, flush))
    }

    /// The physical address, flags and page size that `va` translates to.
    pub fn translate(&self, va: u64) -> Option<(u64, LeafFlags, PageSize)> {
        let stop = self.find(va).ok()?;
        let Pte::Leaf { pfn, flags } = stop.pte else {
            return None;
        };
        let size = PageSize::from_level(stop.level)?;
        // The frame is aligned to the size, so or-ing in the offset is exact.
        Some((pfn.addr() | (va & (size.bytes() - 1)), flags, size))
    }

    /// The entry at `level` on `va`'s path: `Some(Absent)` for an empty
    /// slot, `None` when no table holds such an entry (missing, or covered
    /// by a huge entry above) or the walk met a malformed entry.
    pub fn entry(&self, va: u64, level: usize) -> Option<Pte> {
        match self.locate(va, level) {
            Ok(Slot::Here(pa)) => self.read(pa, level).ok(),
            _ => None,
        }
    }

    /// Stores any valid entry at `level` on `va`'s path and returns the old
    /// one (a leaf with the MMU's final accessed/dirty bits), allocating
    /// missing tables on the way (none for `Absent`), and the flush the old
    /// entry needs: none for an entry that was not present, the page for a
    /// leaf, the whole space for a table.
    ///
    /// This is the raw tool for swap entries, markers and table surgery: it
    /// frees nothing, so a replaced table or leaf is the caller's to handle.
    /// A malformed old entry is refused, since it could not be returned.
    pub fn set_entry(
        &mut self,
        va: u64,
        level: usize,
        pte: Pte,
        alloc: &dyn TableAlloc,
    ) -> Result<(Pte, PageFlush), MapError> {
        let raw = F::encode(&pte, level)?;
        match self.locate(va, level)? {
            Slot::Here(pa) => {
                // Refuse to replace what could not be returned.
                self.read(pa, level)?;
                let old = F::decode(self.mem.swap_u64(pa, raw), level)?;
                let start = va & !(level_size(level) - 1);
                let flush = match (old, PageSize::from_level(level)) {
                    (Pte::Leaf { .. }, Some(size)) => PageFlush::page(self.root, start, size),
                    (Pte::Table(_), _) => PageFlush::space(self.root),
                    _ => PageFlush::nothing(self.root),
                };
                Ok((old, flush))
            }
            Slot::Gap { .. } if pte == Pte::Absent => {
                Ok((Pte::Absent, PageFlush::nothing(self.root)))
            }
            Slot::Gap { pa, level: gap } => {
                self.publish(pa, gap, va, level, raw, alloc)?;
                Ok((Pte::Absent, PageFlush::nothing(self.root)))
            }
        }
    }

    /// Replaces the flags of the leaf starting at `va` and returns the old
    /// ones, including accessed/dirty bits the MMU set until the swap, and
    /// the flush without which the MMU keeps using the old flags (and sets
    /// no new accessed or dirty bit). `flags` is the complete new set (pass
    /// `ACCESSED`/`DIRTY` to keep them).
    pub fn protect(
        &mut self,
        va: u64,
        flags: LeafFlags,
    ) -> Result<(LeafFlags, PageFlush), MapError> {
        let leaf = self.find_leaf(va)?;
        let pte = Pte::Leaf {
            pfn: leaf.pfn,
            flags,
        };
        let raw = F::encode(&pte, leaf.level)?;
        let old = self.mem.swap_u64(leaf.pa, raw);
        let flush = PageFlush::page(self.root, va, leaf.size);
        Ok((Self::leaf_of(old, leaf.level)?.1, flush))
    }

    /// Sets the accessed bit of the leaf mapping `va`, and the dirty bit
    /// too for a write, as the MMU does on an access: only when not set
    /// yet, by a compare-exchange of the whole entry (the MMU may set them
    /// at the same time; a lost race reads again). Adding them needs no
    /// flush: a TLB holding the entry without them walks again to set
    /// them itself. `NotMapped` when no leaf maps `va`.
    pub fn touch(&self, va: u64, write: bool) -> Result<(), MapError> {
        let mut want = LeafFlags::ACCESSED;
        want.set(LeafFlags::DIRTY, write);
        loop {
            let Stop { level, pa, .. } = self.find(va)?;
            // The raw entry itself, to compare against: re-encoding the
            // decoded one could differ in bits the format ignores.
            let old = self.mem.read_u64(pa);
            let Pte::Leaf { pfn, flags } = F::decode(old, level)? else {
                return Err(MapError::NotMapped);
            };
            if flags.contains(want) {
                return Ok(());
            }
            let new = F::encode(
                &Pte::Leaf {
                    pfn,
                    flags: flags | want,
                },
                level,
            )?;
            if self.mem.compare_exchange_u64(pa, old, new).is_ok() {
                return Ok(());
            }
        }
    }

    /// Calls `f(va, pfn, size, flags)` for every leaf overlapping
    /// `[start, end)`, in address order, with the leaf's first address.
    /// `end == 0` stands for 2^64, so the top page can be included.
    pub fn for_each_leaf(
        &self,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, Pfn, PageSize, LeafFlags),
    ) {
        if let Some(last) = Self::last_of(start, end) {
            self.visit(self.root, Self::ROOT_LEVEL, 0, (start, last), f);
        }
    }

    /// Unlinks every table, other than the root, that overlaps
    /// `[start, end)` and holds only `Absent` entries once its own empty
    /// children are gone, and returns them to be freed after a flush.
    /// `end == 0` stands for 2^64.
    pub fn prune(&mut self, start: u64, end: u64) -> PrunedTables {
        let mut tables = Vec::new();
        if let Some(last) = Self::last_of(start, end) {
            self.prune_below(self.root, Self::ROOT_LEVEL, 0, (start, last), &mut tables);
        }
        PrunedTables {
            root: self.root,
            tables,
        }
    }

    /// Frees every table frame, the root included. Mapped frames, swap
    /// slots and anything behind a malformed entry are left alone. The tree
    /// must not be in use by any CPU, and a TLB that tags translations by
    /// address space must have flushed it (`TlbFlush::flush_space`).
    pub fn destroy(self, alloc: &dyn TableAlloc) {
        self.free_tree(self.root, Self::ROOT_LEVEL, alloc);
    }

    // ---- addresses ----

    fn sign_extend(va: u64) -> u64 {
        let unused = 64 - Self::VA_BITS;
        (((va << unused) as i64) >> unused) as u64
    }

    fn check_canonical(&self, va: u64) -> Result<(), MapError> {
        if Self::sign_extend(va) == va {
            Ok(())
        } else {
            Err(MapError::NonCanonical)
        }
    }

    /// Physical address of the entry for `va` in `table`, a level-`level`
    /// table.
    fn slot(table: Pfn, va: u64, level: usize) -> u64 {
        let index = (va >> (PAGE_SHIFT + LEVEL_BITS * level as u32)) % 512;
        table.addr() + index * 8
    }

    /// `[start, end)` as an inclusive range, `None` when empty.
    fn last_of(start: u64, end: u64) -> Option<u64> {
        (end == 0 || end > start).then(|| end.wrapping_sub(1))
    }

    fn largest_fit(va: u64, pa: u64, remaining: u64, max: PageSize) -> PageSize {
        PageSize::ALL
            .into_iter()
            .rev()
            .find(|&s| {
                s <= max
                    && F::leaf_allowed(s.level())
                    && (va | pa).is_multiple_of(s.bytes())
                    && s.bytes() <= remaining
            })
            .unwrap_or(PageSize::Size4K)
    }

    // ---- walks ----

    // Inlined: a walk reads an entry per level, and the call with its
    // result through memory cost more than the decode (`./run.sh bench`).
    #[inline(always)]
    fn read(&self, pa: u64, level: usize) -> Result<Pte, MapError> {
        Ok(F::decode(self.mem.read_u64(pa), level)?)
    }

    /// Walks `va` down to the first entry that is not a table.
    fn find(&self, va: u64) -> Result<Stop, MapError> {
        self.check_canonical(va)?;
        let (mut table, mut level) = (self.root, Self::ROOT_LEVEL);
        loop {
            let pa = Self::slot(table, va, level);
            match self.read(pa, level)? {
                // The level test keeps a broken format from walking below 0.
                Pte::Table(next) if level > 0 => (table, level) = (next, level - 1),
                pte => return Ok(Stop { level, pa, pte }),
            }
        }
    }

    /// Like `find`, but insists on a leaf that starts at `va`.
    fn find_leaf(&self, va: u64) -> Result<LeafAt, MapError> {
        let Stop { level, pa, pte } = self.find(va)?;
        let Pte::Leaf { pfn, .. } = pte else {
            return Err(MapError::NotMapped);
        };
        let size = PageSize::from_level(level).ok_or(PteError::LeafNotAllowed)?;
        if !va.is_multiple_of(size.bytes()) {
            return Err(MapError::Misaligned);
        }
        Ok(LeafAt {
            level,
            pa,
            pfn,
            size,
        })
    }

    /// Walks `va` towards its entry at `target`, without allocating.
    fn locate(&self, va: u64, target: usize) -> Result<Slot, MapError> {
        if target > Self::ROOT_LEVEL {
            return Err(MapError::Pte(PteError::BadLevel));
        }
        self.check_canonical(va)?;
        let mut table = self.root;
        for level in (target + 1..=Self::ROOT_LEVEL).rev() {
            let pa = Self::slot(table, va, level);
            match self.read(pa, level)? {
                Pte::Table(next) => table = next,
                Pte::Absent => return Ok(Slot::Gap { pa, level }),
                _ => return Err(MapError::HugeInTheWay),
            }
        }
        Ok(Slot::Here(Self::slot(table, va, target)))
    }

    /// The frame and flags of a leaf just swapped out. Only a concurrent
    /// software writer, which `&mut self` excludes, could make it anything
    /// but the leaf the walk found.
    fn leaf_of(raw: u64, level: usize) -> Result<(Pfn, LeafFlags), MapError> {
        match F::decode(raw, level) {
            Ok(Pte::Leaf { pfn, flags }) => Ok((pfn, flags)),
            _ => Err(MapError::Pte(PteError::Malformed(raw))),
        }
    }

    // ---- building ----

    /// Fills the gap at `gap` (an `Absent` entry at `gap_level`) with new
    /// tables down to `target`, whose entry for `va` becomes `raw`. The
    /// tables are complete before the one store that links them.
    fn publish(
        &self,
        gap: u64,
        gap_level: usize,
        va: u64,
        target: usize,
        raw: u64,
        alloc: &dyn TableAlloc,
    ) -> Result<(), MapError> {
        let link = self.build(va, gap_level, target, raw, alloc)?;
        self.mem.write_u64(gap, link);
        Ok(())
    }

    /// Allocates the table that an entry at `level` will point to, and
    /// below it everything down to `target`. Returns the raw entry linking
    /// it at `level`; on failure everything allocated is freed again.
    fn build(
        &self,
        va: u64,
        level: usize,
        target: usize,
        raw: u64,
        alloc: &dyn TableAlloc,
    ) -> Result<u64, MapError> {
        let table = alloc.alloc_table()?;
        let built = self.fill(table, va, level - 1, target, raw, alloc);
        if built.is_err() {
            alloc.free_table(table);
        }
        built
    }

    /// Makes `table` (a level-`level` table) hold only the entry for `va`.
    fn fill(
        &self,
        table: Pfn,
        va: u64,
        level: usize,
        target: usize,
        raw: u64,
        alloc: &dyn TableAlloc,
    ) -> Result<u64, MapError> {
        // Before building below: a frame the format cannot point to must
        // fail while nothing else depends on it.
        let link = F::encode(&Pte::Table(table), level + 1)?;
        let entry = if level == target {
            raw
        } else {
            self.build(va, level, target, raw, alloc)?
        };
        self.mem.zero_frame(table);
        self.mem.write_u64(Self::slot(table, va, level), entry);
        Ok(link)
    }

    /// Undoes the first `len` bytes of a failed `map_range`.
    fn unmap_prefix(&mut self, va: u64, len: u64) -> PageFlush {
        let (mut done, mut owed) = (0, PageFlush::nothing(self.root));
        while done < len {
            let v = va.wrapping_add(done);
            // Every page here was mapped by us a moment ago.
            done += match self.unmap(v) {
                Ok((_, size, _, flush)) => {
                    owed = owed.merge(flush);
                    size.bytes()
                }
                Err(_) => PAGE_SIZE,
            };
        }
        owed
    }

    // ---- whole-tree traversals ----

    /// The first address of entry `index` of a table that starts at `base`
    /// (kept without sign extension so that sums never overflow).
    fn entry_base(base: u64, index: u64, level: usize) -> u64 {
        base + index * level_size(level)
    }

    /// The indices of the entries of a level-`level` table starting at
    /// `base` that overlap the inclusive `range`. Entries' first addresses
    /// rise with the index (sign extension keeps the order), so the
    /// overlapping ones are one run, found by two binary searches rather
    /// than a test of all 512: a walk over a small range costs a few
    /// entries per level (the memory calls make many such walks).
    fn overlapping(base: u64, level: usize, range: (u64, u64)) -> core::ops::Range<u64> {
        let (start, last) = range;
        let size = level_size(level);
        let first = |i: u64| Self::sign_extend(Self::entry_base(base, i, level));
        let lo = partition(512, |i| first(i) + (size - 1) < start);
        let hi = partition(512, |i| first(i) <= last);
        lo..hi.max(lo)
    }

    /// Does the entry starting at `base` overlap the inclusive `range`?
    /// (What `overlapping` finds, entry by entry: its tests' oracle.)
    #[cfg(test)]
    fn overlaps(base: u64, level: usize, (start, last): (u64, u64)) -> bool {
        let first = Self::sign_extend(base);
        first <= last && first + (level_size(level) - 1) >= start
    }

    fn visit(
        &self,
        table: Pfn,
        level: usize,
        base: u64,
        range: (u64, u64),
        f: &mut dyn FnMut(u64, Pfn, PageSize, LeafFlags),
    ) {
        for index in Self::overlapping(base, level, range) {
            let at = Self::entry_base(base, index, level);
            match self.read(table.addr() + index * 8, level) {
                Ok(Pte::Table(next)) if level > 0 => self.visit(next, level - 1, at, range, f),
                Ok(Pte::Leaf { pfn, flags }) => {
                    if let Some(size) = PageSize::from_level(level) {
                        f(Self::sign_extend(at), pfn, size, flags);
                    }
                }
                _ => {}
            }
        }
    }

    fn prune_below(
        &self,
        table: Pfn,
        level: usize,
        base: u64,
        range: (u64, u64),
        unlinked: &mut Vec<Pfn>,
    ) {
        if level == 0 {
            return;
        }
        for index in Self::overlapping(base, level, range) {
            let at = Self::entry_base(base, index, level);
            let pa = table.addr() + index * 8;
            let Ok(Pte::Table(child)) = self.read(pa, level) else {
                continue;
            };
            self.prune_below(child, level - 1, at, range, unlinked);
            // With no room to remember it, an empty table stays linked:
            // harmless, and freed by a later prune or with the tree.
            if self.is_empty(child) && unlinked.try_reserve(1).is_ok() {
                self.mem.write_u64(pa, 0);
                unlinked.push(child);
            }
        }
    }

    /// Absent is raw 0 in every format, so no decoding is needed.
    fn is_empty(&self, table: Pfn) -> bool {
        (0..512).all(|index| self.mem.read_u64(table.addr() + index * 8) == 0)
    }

    fn free_tree(&self, table: Pfn, level: usize, alloc: &dyn TableAlloc) {
        if level > 0 {
            for index in 0..512 {
                if let Ok(Pte::Table(child)) = self.read(table.addr() + index * 8, level) {
                    self.free_tree(child, level - 1, alloc);
                }
            }
        }
        alloc.free_table(table);
    }
}

/// The first `i` in `0..n` for which `pred` is false, `pred` being true
/// for a prefix of `0..n` and false after it.
fn partition(n: u64, pred: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// A [`TableAlloc`] for tests: hands out consecutive frames and never
/// reuses one, counts what is live, can be told to run out, and panics on
/// a double free or a free of a frame it never handed out.
pub struct SimTableAlloc {
    state: Mutex<AllocState>,
}

struct AllocState {
    next: u64,
    live: BTreeSet<u64>,
    allocated: u64,
    /// Allocations that may still succeed; `None` for no limit.
    budget: Option<u64>,
}

impl SimTableAlloc {
    /// Frames will be `first`, `first + 1`, ...
    pub fn new(first: Pfn) -> SimTableAlloc {
        SimTableAlloc {
            state: Mutex::new(AllocState {
                next: first.0,
                live: BTreeSet::new(),
                allocated: 0,
                budget: None,
            }),
        }
    }

    /// After `Some(n)`, `n` more allocations succeed and the rest fail
    /// with `NoMemory`.
    pub fn set_budget(&self, budget: Option<u64>) {
        self.state.lock().budget = budget;
    }

    /// Frames allocated and not freed.
    pub fn live(&self) -> usize {
        self.state.lock().live.len()
    }

    pub fn is_live(&self, pfn: Pfn) -> bool {
        self.state.lock().live.contains(&pfn.0)
    }

    /// Successful allocations so far.
    pub fn allocated(&self) -> u64 {
        self.state.lock().allocated
    }

    /// Panics, listing them, if any frames are still live.
    pub fn assert_no_leaks(&self) {
        let state = self.state.lock();
        assert!(
            state.live.is_empty(),
            "leaked table frames: {:x?}",
            state.live
        );
    }
}

impl TableAlloc for SimTableAlloc {
    fn alloc_table(&self) -> Result<Pfn, MapError> {
        let mut state = self.state.lock();
        if let Some(budget) = &mut state.budget {
            if *budget == 0 {
                return Err(MapError::NoMemory);
            }
            *budget -= 1;
        }
        let pfn = state.next;
        state.next += 1;
        state.allocated += 1;
        state.live.insert(pfn);
        Ok(Pfn(pfn))
    }

    fn free_table(&self, pfn: Pfn) {
        let freed = self.state.lock().live.remove(&pfn.0);
        assert!(freed, "free of table frame {:#x} that is not live", pfn.0);
    }
}

#[cfg(test)]
mod tests;
