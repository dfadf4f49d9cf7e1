//! Physical frame allocator: a binary buddy allocator over a per-frame
//! descriptor array.
//!
//! # The descriptor array
//!
//! Every frame from pfn 0 up to the end of RAM has one [`FrameDesc`]:
//! `descs[i]` describes `Pfn(i)`. It is Faultline's `struct page`: besides
//! the allocator's own state it carries the reference count (how many owners
//! hold the frame) and the map count (how many page-table entries point at
//! it), and its list links will later thread allocated frames onto LRU lists.
//! A flat array indexed by pfn makes pfn -> descriptor a bounds check and an
//! index, and lets the buddy of a block be found by arithmetic alone.
//!
//! The booted kernel carves the array out of RAM itself (see
//! [`FrameAllocator::descs_bytes`]) and then reserves those frames, so the
//! allocator needs no memory of its own: it runs before the kernel heap
//! exists and never allocates.
//!
//! # The buddy system
//!
//! Free memory is kept as blocks of 2^k frames aligned to 2^k, for
//! k in 0..=[`MAX_ORDER`], with one free list per order. `alloc(k)` takes a
//! block from the smallest non-empty list of order >= k and splits it in
//! halves, returning each unused upper half to the list one order down.
//! `free` looks at the block's buddy (the other half of the 2^(k+1) block it
//! was split from, at `pfn ^ 2^k`); if the buddy is a free block of the same
//! order the two merge and the step repeats one order up. Both operations
//! touch at most one block per order, so they cost O(MAX_ORDER) whatever the
//! size of memory, and fragmentation disappears as soon as both halves of a
//! block are free again.
//!
//! # Who carries the state
//!
//! Only the first frame of a block, its head, carries the block's state:
//! [`FrameFlags::HEAD`], [`FrameFlags::FREE`] if it is on a free list, and the
//! block's order. The other frames of a block (tails) carry no allocator
//! flags. Marking only heads keeps split, merge and allocation independent of
//! the block size, and is still enough to validate every `free`: its pfn must
//! be the head of an allocated block of exactly that order. Frames that are
//! not RAM, and RAM taken out by [`FrameAllocator::reserve`], are
//! [`FrameFlags::RESERVED`] one by one and never belong to a block.
//!
//! # Why intrusive lists
//!
//! The free lists are doubly linked through the `next`/`prev` fields of the
//! head descriptors, holding array indices rather than pointers. That needs
//! no storage beyond the array (there is no heap yet), removes an arbitrary
//! block in O(1) (needed when a block's buddy is freed and the two merge),
//! and leaves the same fields free for LRU lists once a frame is allocated.
//! Links are `u32`, so at most `u32::MAX` frames (16 TiB) are managed.
//!
//! # Locking
//!
//! One spin lock, held only inside each call, protects the free lists, the
//! counters and the allocator-owned descriptor fields (flags, order, links).
//! Those fields are atomics all the same, so that the array can be shared
//! (`Sync`) and read outside the lock through [`FrameAllocator::desc`]; under
//! the lock they use `Relaxed` ordering because the lock orders them. The
//! reference and map counts belong to the frame's owners and change without
//! the lock.

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::ops::Range;
use core::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, Ordering};

use crate::sync::IrqMutex;
use bitflags::bitflags;

use super::Pfn;

/// Largest block order: blocks of up to 2^10 frames, 4 MiB.
pub const MAX_ORDER: u32 = 10;

/// Number of free lists, one per order.
const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// The "no frame" value of a list link, and so one more than the largest
/// index the allocator manages.
const NONE: u32 = u32::MAX;

bitflags! {
    /// Per-frame state bits. Bits 0..=15 belong to the allocator (only the
    /// first four are used so far); bits 16..=31 are left for the frame's
    /// owners (LRU membership, dirty, ...). The allocator rewrites the whole
    /// word when a frame is allocated or freed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct FrameFlags: u32 {
        /// The head of a block that is on a free list.
        const FREE = 1 << 0;
        /// Never handed out: not RAM, or taken out by `reserve()`.
        const RESERVED = 1 << 1;
        /// The first frame of a block, allocated or free. Tails have no flags.
        const HEAD = 1 << 2;
        /// Not RAM at all (always together with RESERVED); such frames are
        /// not counted in the statistics.
        const HOLE = 1 << 3;
    }
}

/// The bits the allocator owns (0..=15); check() ignores the others.
const ALLOCATOR_BITS: FrameFlags = FrameFlags::from_bits_retain(0xffff);

/// Per-frame descriptor.
///
/// `#[repr(C)]` and made of atomics only, so an all-zero byte pattern is a
/// valid value (the booted kernel places the array in memory it zeroed);
/// [`FrameAllocator::new`] nevertheless initialises every field.
///
/// `mapcount` counts page-table entries mapping the frame; 0 means unmapped
/// (unlike Linux, there is no -1 bias). For a block of more than one frame,
/// the head's counts stand for the whole block.
#[repr(C)]
#[derive(Debug, Default)]
pub struct FrameDesc {
    refcount: AtomicU32,
    mapcount: AtomicI32,
    flags: AtomicU32,
    /// Index of the next frame on the same list, or u32::MAX for none.
    next: AtomicU32,
    /// Index of the previous frame on the same list, or u32::MAX for none.
    prev: AtomicU32,
    /// Block order; meaningful on heads only.
    order: AtomicU8,
}

impl FrameDesc {
    /// An all-zero descriptor, the same value as `Default`.
    pub const fn new() -> Self {
        FrameDesc {
            refcount: AtomicU32::new(0),
            mapcount: AtomicI32::new(0),
            flags: AtomicU32::new(0),
            next: AtomicU32::new(0),
            prev: AtomicU32::new(0),
            order: AtomicU8::new(0),
        }
    }

    /// Number of references held on the frame (1 right after `alloc`).
    pub fn refcount(&self) -> u32 {
        self.refcount.load(Ordering::Acquire)
    }

    /// Number of page-table entries mapping the frame; 0 = unmapped.
    pub fn mapcount(&self) -> i32 {
        self.mapcount.load(Ordering::Acquire)
    }

    /// Current state bits.
    pub fn flags(&self) -> FrameFlags {
        FrameFlags::from_bits_retain(self.flags.load(Ordering::Relaxed))
    }

    /// Block order, meaningful only on a frame with [`FrameFlags::HEAD`].
    pub fn order(&self) -> u32 {
        u32::from(self.order.load(Ordering::Relaxed))
    }

    /// Take a reference; returns the new count. Saturates (and logs) rather
    /// than wrapping, because a wrapped count would free a live frame.
    pub fn get(&self) -> u32 {
        match self
            .refcount
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_add(1))
        {
            Ok(old) => old + 1,
            Err(old) => {
                log::error!("frame: refcount overflow");
                old
            }
        }
    }

    /// Drop a reference; returns the new count. Acquire-release so that the
    /// owner seeing 0 also sees every write made under the other references.
    /// A put on a zero count is a caller bug: it is logged and ignored.
    pub fn put(&self) -> u32 {
        match self
            .refcount
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
        {
            Ok(old) => old - 1,
            Err(_) => {
                log::error!("frame: refcount underflow (put without get)");
                0
            }
        }
    }

    /// Count one more page-table entry mapping the frame; returns the new count.
    pub fn inc_mapcount(&self) -> i32 {
        match self
            .mapcount
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| m.checked_add(1))
        {
            Ok(old) => old + 1,
            Err(old) => {
                log::error!("frame: mapcount overflow");
                old
            }
        }
    }

    /// Count one page-table entry less; returns the new count. Never goes
    /// below 0 (logged instead).
    pub fn dec_mapcount(&self) -> i32 {
        match self
            .mapcount
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                if m > 0 { Some(m - 1) } else { None }
            }) {
            Ok(old) => old - 1,
            Err(old) => {
                log::error!("frame: mapcount underflow (unmap of an unmapped frame)");
                old
            }
        }
    }

    /// Put the descriptor in a fresh state: given flags, no links, no counts.
    fn reset(&self, flags: FrameFlags) {
        self.refcount.store(0, Ordering::Relaxed);
        self.mapcount.store(0, Ordering::Relaxed);
        self.flags.store(flags.bits(), Ordering::Relaxed);
        self.next.store(NONE, Ordering::Relaxed);
        self.prev.store(NONE, Ordering::Relaxed);
        self.order.store(0, Ordering::Relaxed);
    }

    fn set_state(&self, flags: FrameFlags, order: u32) {
        self.flags.store(flags.bits(), Ordering::Relaxed);
        // Orders are at most MAX_ORDER, so they always fit.
        self.order.store(order as u8, Ordering::Relaxed);
    }

    fn is_free_head(&self, order: u32) -> bool {
        self.flags() == FrameFlags::FREE | FrameFlags::HEAD && self.order() == order
    }
}

/// Why an allocator call failed. A failed call has changed nothing but
/// the [`FrameStats::mapped_frees`] counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// No free block of the requested order (or larger) is left.
    OutOfMemory,
    /// The order exceeds [`MAX_ORDER`], or differs from the order the block
    /// was allocated with.
    BadOrder,
    /// The pfn lies outside the descriptor array or is not RAM.
    NotManaged,
    /// The pfn is not aligned to the block size.
    Misaligned,
    /// The frame is not the head of an allocated block: a double free, a
    /// free of a block's tail, or of a reserved frame.
    NotAllocated,
    /// A frame to reserve is allocated.
    InUse,
    /// The frame to free is still mapped by a page-table entry (mapcount
    /// not 0). It stays allocated: freed, it would be handed out again
    /// while the old mapping still reaches it.
    Mapped,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            FrameError::OutOfMemory => "out of physical memory",
            FrameError::BadOrder => "bad block order",
            FrameError::NotManaged => "frame not managed (outside RAM)",
            FrameError::Misaligned => "frame not aligned to the block size",
            FrameError::NotAllocated => "frame is not an allocated block",
            FrameError::InUse => "frame is in use",
            FrameError::Mapped => "frame is still mapped",
        };
        f.write_str(msg)
    }
}

/// Frame counts. Always `free + reserved + allocated == total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameStats {
    /// Usable RAM frames given to [`FrameAllocator::new`].
    pub total: u64,
    /// Frames on the free lists.
    pub free: u64,
    /// RAM frames taken out by [`FrameAllocator::reserve`].
    pub reserved: u64,
    /// Frames in blocks handed out by [`FrameAllocator::alloc`].
    pub allocated: u64,
    /// Frees refused because the frame was still mapped: each one is a bug
    /// in a caller, which the console's `mem` shows.
    pub mapped_frees: u64,
}

impl fmt::Display for FrameStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frames_total={} frames_free={} frames_reserved={} frames_used={} frames_mapped_frees={}",
            self.total, self.free, self.reserved, self.allocated, self.mapped_frees
        )
    }
}

/// Everything the lock protects besides the descriptors themselves.
struct State {
    /// First block of each free list, or NONE.
    heads: [u32; NR_ORDERS],
    /// Blocks on each free list; lets check() cross-check the links.
    lens: [u64; NR_ORDERS],
    stats: FrameStats,
}

/// Stand-in for an out-of-range index, so that a corrupted link degrades
/// into lost frames (which check() reports) instead of a panic.
static SINK: FrameDesc = FrameDesc::new();

/// A binary buddy allocator of physical frames. See the module comment.
pub struct FrameAllocator<'a> {
    descs: &'a [FrameDesc],
    /// Interrupt-safe: tasks allocate with interrupts on, and so does
    /// code that runs with them off (heap growth, the scheduler's exits).
    state: IrqMutex<State>,
}

impl<'a> FrameAllocator<'a> {
    /// Bytes of descriptor array needed to describe pfns `0..end_pfn`
    /// (not rounded up to a page).
    pub const fn descs_bytes(end_pfn: u64) -> u64 {
        end_pfn.saturating_mul(core::mem::size_of::<FrameDesc>() as u64)
    }

    /// Build the allocator over `descs`, where `descs[i]` describes `Pfn(i)`.
    ///
    /// `usable` are half-open pfn ranges of RAM, in any order and possibly
    /// overlapping (their union counts); parts beyond the array are ignored.
    /// Every descriptor is initialised, whatever it held: frames outside
    /// `usable` become RESERVED holes, the rest go on the free lists in
    /// maximal aligned blocks.
    pub fn new(descs: &'a [FrameDesc], usable: &[Range<Pfn>]) -> Self {
        // Indices must fit a u32 link with NONE to spare.
        let descs = descs.get(..NONE as usize).unwrap_or(descs);
        let alloc = FrameAllocator {
            descs,
            state: IrqMutex::ranked(
                crate::sync::rank::FRAMES,
                State {
                    heads: [NONE; NR_ORDERS],
                    lens: [0; NR_ORDERS],
                    stats: FrameStats::default(),
                },
            ),
        };
        for d in descs {
            d.reset(FrameFlags::RESERVED | FrameFlags::HOLE);
        }
        // Empty flags mark RAM not yet on a list; marking first is what
        // makes overlapping and unsorted ranges harmless.
        for range in usable {
            for d in &descs[alloc.clip(range)] {
                d.set_state(FrameFlags::empty(), 0);
            }
        }
        alloc.add_ram(&mut alloc.state.lock());
        alloc
    }

    /// Put every run of frames marked RAM by new() on the free lists.
    fn add_ram(&self, st: &mut State) {
        let is_ram = |i: usize| self.at(i).flags().is_empty();
        let mut i = 0;
        while i < self.descs.len() {
            if !is_ram(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < self.descs.len() && is_ram(i) {
                i += 1;
            }
            let frames = (i - start) as u64;
            st.stats.total += frames;
            st.stats.free += frames;
            self.free_range(st, start..i);
        }
    }

    /// Take usable frames out of circulation for good (kernel image, the
    /// descriptor array, boot page tables). Free frames in `range` become
    /// reserved, splitting the free blocks around them; frames that are not
    /// RAM, lie outside the array or are already reserved are skipped. If
    /// any frame is allocated, returns [`FrameError::InUse`] and changes
    /// nothing.
    pub fn reserve(&self, range: Range<Pfn>) -> Result<(), FrameError> {
        let range = self.clip(&range);
        let mut st = self.state.lock();
        // Look before touching anything, so that an error leaves no trace.
        self.check_reservable(range.clone())?;
        let mut i = range.start;
        while i < range.end {
            if self.at(i).flags().contains(FrameFlags::RESERVED) {
                i += 1;
                continue;
            }
            // check_reservable() found this block already, so this cannot fail.
            let (head, order) = self.block_of(i).ok_or(FrameError::NotManaged)?;
            let block = head..head + (1 << order);
            // i is the block's first frame inside the range: the range's
            // frames before i are reserved by now, and a free block holds
            // no reserved frame.
            let taken = i..block.end.min(range.end);
            self.unlink(&mut st, head, order);
            for j in taken.clone() {
                self.at(j).set_state(FrameFlags::RESERVED, 0);
            }
            self.free_range(&mut st, block.start..taken.start);
            self.free_range(&mut st, taken.end..block.end);
            let n = taken.len() as u64;
            st.stats.free = st.stats.free.saturating_sub(n);
            st.stats.reserved += n;
            i = taken.end;
        }
        Ok(())
    }

    /// Err(InUse) if some frame in `range` is allocated.
    fn check_reservable(&self, range: Range<usize>) -> Result<(), FrameError> {
        let mut i = range.start;
        while i < range.end {
            if self.at(i).flags().contains(FrameFlags::RESERVED) {
                i += 1;
                continue;
            }
            let Some((head, order)) = self.block_of(i) else {
                log::error!("frame: pfn {i} is in no block; allocator corrupt");
                return Err(FrameError::NotManaged);
            };
            if !self.at(head).flags().contains(FrameFlags::FREE) {
                return Err(FrameError::InUse);
            }
            i = head + (1 << order);
        }
        Ok(())
    }

    /// Allocate 2^order contiguous frames aligned to 2^order. The head's
    /// refcount is 1 and its mapcount 0.
    pub fn alloc(&self, order: u32) -> Result<Pfn, FrameError> {
        if order > MAX_ORDER {
            return Err(FrameError::BadOrder);
        }
        let mut st = self.state.lock();
        let (head, mut k) = (order..=MAX_ORDER)
            .find_map(|k| self.pop(&mut st, k).map(|head| (head, k)))
            .ok_or(FrameError::OutOfMemory)?;
        // Hand back the upper half until the block has the size asked for.
        while k > order {
            k -= 1;
            self.make_free(&mut st, head + (1 << k), k);
        }
        let d = self.at(head);
        d.set_state(FrameFlags::HEAD, order);
        d.mapcount.store(0, Ordering::Relaxed);
        d.refcount.store(1, Ordering::Release);
        let n = 1u64 << order;
        st.stats.free = st.stats.free.saturating_sub(n);
        st.stats.allocated += n;
        Ok(Pfn(head as u64))
    }

    /// Allocate a single frame.
    pub fn alloc_frame(&self) -> Result<Pfn, FrameError> {
        self.alloc(0)
    }

    /// Return the block of 2^order frames at `pfn` and merge it with free
    /// buddies. `pfn` and `order` must be exactly what `alloc` returned and
    /// was given; anything else is reported and changes nothing. The
    /// refcount is not consulted: the caller decides when the last
    /// reference is gone (typically when `put` returns 0). A block that is
    /// still mapped is refused with [`FrameError::Mapped`] and counted in
    /// [`FrameStats::mapped_frees`]: the mapping must go first.
    pub fn free(&self, pfn: Pfn, order: u32) -> Result<(), FrameError> {
        let mut st = self.state.lock();
        let head = self.allocated_head(pfn, order)?;
        let d = self.at(head);
        if d.mapcount() != 0 {
            st.stats.mapped_frees += 1;
            log::error!(
                "frame: refusing to free pfn {head:#x}, mapped {} times",
                d.mapcount()
            );
            return Err(FrameError::Mapped);
        }
        if d.refcount() > 1 {
            log::warn!(
                "frame: freeing pfn {head:#x} with refcount {}",
                d.refcount()
            );
        }
        self.release(&mut st, head, order);
        let n = 1u64 << order;
        st.stats.allocated = st.stats.allocated.saturating_sub(n);
        st.stats.free += n;
        Ok(())
    }

    /// The index of `pfn` if it heads an allocated block of `order`.
    fn allocated_head(&self, pfn: Pfn, order: u32) -> Result<usize, FrameError> {
        if order > MAX_ORDER {
            return Err(FrameError::BadOrder);
        }
        let head = self.index(pfn).ok_or(FrameError::NotManaged)?;
        if !head.is_multiple_of(1 << order) {
            return Err(FrameError::Misaligned);
        }
        let d = self.at(head);
        let flags = d.flags();
        if flags.contains(FrameFlags::HOLE) {
            return Err(FrameError::NotManaged);
        }
        if flags.intersects(FrameFlags::RESERVED | FrameFlags::FREE)
            || !flags.contains(FrameFlags::HEAD)
        {
            return Err(FrameError::NotAllocated);
        }
        if d.order() != order {
            return Err(FrameError::BadOrder);
        }
        Ok(head)
    }

    /// Current frame counts.
    pub fn stats(&self) -> FrameStats {
        self.state.lock().stats
    }

    /// The descriptor of `pfn`, if the array covers it.
    pub fn desc(&self, pfn: Pfn) -> Option<&'a FrameDesc> {
        self.index(pfn).map(|i| self.at(i))
    }

    /// Check that the free lists, the descriptors and the counters agree.
    /// Returns a description of the first inconsistency found. O(frames).
    pub fn check(&self) -> Result<(), String> {
        let st = self.state.lock();
        self.check_lists(&st)?;
        self.check_frames(&st)
    }

    /// Every listed block is a free head of the list's order, aligned and in
    /// range, the links are acyclic and mirror each other, and the lengths
    /// and the free count match.
    fn check_lists(&self, st: &State) -> Result<(), String> {
        let mut free = 0;
        for order in 0..=MAX_ORDER {
            let (mut prev, mut cur, mut len) = (NONE, st.heads[order as usize], 0u64);
            while cur != NONE {
                len += 1;
                if len > self.descs.len() as u64 {
                    return Err(format!("free list {order} has a cycle"));
                }
                let i = cur as usize;
                let Some(d) = self.descs.get(i) else {
                    return Err(format!(
                        "free list {order} links to index {cur}, out of range"
                    ));
                };
                if !d.is_free_head(order) {
                    return Err(format!(
                        "pfn {i:#x} on free list {order} has flags {:?} order {}",
                        d.flags(),
                        d.order()
                    ));
                }
                if !i.is_multiple_of(1 << order) || i + (1 << order) > self.descs.len() {
                    return Err(format!("free block {i:#x} of order {order} misplaced"));
                }
                if d.prev.load(Ordering::Relaxed) != prev {
                    return Err(format!("free block {i:#x}: prev link broken"));
                }
                (prev, cur) = (cur, d.next.load(Ordering::Relaxed));
            }
            if len != st.lens[order as usize] {
                return Err(format!(
                    "free list {order} holds {len} blocks, counted {}",
                    st.lens[order as usize]
                ));
            }
            free += len << order;
        }
        if free != st.stats.free {
            return Err(format!(
                "free lists hold {free} frames, stats say {}",
                st.stats.free
            ));
        }
        Ok(())
    }

    /// The frames split exactly into reserved frames and blocks, every free
    /// block is listed and unmergeable, and the counters match.
    fn check_frames(&self, st: &State) -> Result<(), String> {
        let mut seen = FrameStats::default();
        let mut free_blocks = 0u64;
        let mut i = 0;
        while i < self.descs.len() {
            let d = self.at(i);
            let flags = d.flags() & ALLOCATOR_BITS;
            if flags.contains(FrameFlags::RESERVED) {
                if flags.intersects(FrameFlags::FREE | FrameFlags::HEAD) {
                    return Err(format!("reserved pfn {i:#x} has flags {flags:?}"));
                }
                if !flags.contains(FrameFlags::HOLE) {
                    seen.total += 1;
                    seen.reserved += 1;
                }
                i += 1;
                continue;
            }
            let size = self.check_block(i)?;
            seen.total += size as u64;
            if flags.contains(FrameFlags::FREE) {
                seen.free += size as u64;
                free_blocks += 1;
            } else {
                seen.allocated += size as u64;
            }
            i += size;
        }
        let listed: u64 = st.lens.iter().sum();
        if free_blocks != listed {
            return Err(format!(
                "{free_blocks} free blocks but {listed} on the free lists"
            ));
        }
        // Refusals leave no trace in the descriptors.
        seen.mapped_frees = st.stats.mapped_frees;
        if seen != st.stats {
            return Err(format!("descriptors say {seen}, stats say {}", st.stats));
        }
        if seen.free + seen.reserved + seen.allocated != seen.total {
            return Err(format!("counts do not add up: {seen}"));
        }
        Ok(())
    }

    /// Check the block headed by frame `i`; returns its size in frames.
    fn check_block(&self, i: usize) -> Result<usize, String> {
        let d = self.at(i);
        let flags = d.flags() & ALLOCATOR_BITS;
        let order = d.order();
        if !flags.contains(FrameFlags::HEAD) || flags.contains(FrameFlags::HOLE) {
            return Err(format!("pfn {i:#x} belongs to no block (flags {flags:?})"));
        }
        let size = 1usize << order.min(MAX_ORDER);
        if order > MAX_ORDER || !i.is_multiple_of(size) || i + size > self.descs.len() {
            return Err(format!("block {i:#x} of order {order} misplaced"));
        }
        for t in i + 1..i + size {
            let tail = self.at(t).flags() & ALLOCATOR_BITS;
            if !tail.is_empty() {
                return Err(format!("pfn {t:#x} inside block {i:#x} has flags {tail:?}"));
            }
        }
        if flags.contains(FrameFlags::FREE) {
            if d.refcount() != 0 || d.mapcount() != 0 {
                return Err(format!("free block {i:#x} has references"));
            }
            if order < MAX_ORDER && self.is_free_block(i ^ size, order) {
                return Err(format!("free buddies {i:#x}, {:#x} not merged", i ^ size));
            }
        }
        Ok(size)
    }

    // ---- Blocks ----

    /// Free the block at `head` (no longer on any list), merging it with its
    /// buddy as long as the buddy is a whole free block of the same order.
    fn release(&self, st: &mut State, mut head: usize, mut order: u32) {
        while order < MAX_ORDER {
            let buddy = head ^ (1 << order);
            if !self.is_free_block(buddy, order) {
                break;
            }
            self.unlink(st, buddy, order);
            // The upper half becomes a tail of the merged block.
            self.at(head.max(buddy)).set_state(FrameFlags::empty(), 0);
            head = head.min(buddy);
            order += 1;
        }
        self.make_free(st, head, order);
    }

    /// Free the frames of `range` (none on a list) as the fewest aligned blocks.
    fn free_range(&self, st: &mut State, range: Range<usize>) {
        let mut i = range.start;
        while i < range.end {
            let order = largest_block(i, range.end);
            self.release(st, i, order);
            i += 1 << order;
        }
    }

    /// Make `head` the head of a free block of `order` and list it.
    fn make_free(&self, st: &mut State, head: usize, order: u32) {
        let d = self.at(head);
        d.set_state(FrameFlags::FREE | FrameFlags::HEAD, order);
        // Owners may have left counts behind; a free block holds no references.
        d.refcount.store(0, Ordering::Relaxed);
        d.mapcount.store(0, Ordering::Relaxed);
        self.push(st, head, order);
    }

    fn is_free_block(&self, head: usize, order: u32) -> bool {
        self.descs.get(head).is_some_and(|d| d.is_free_head(order))
    }

    /// The block (head, order) that frame `i` belongs to. Blocks are aligned
    /// to their size, so the head is `i` rounded down to some order's size.
    fn block_of(&self, i: usize) -> Option<(usize, u32)> {
        (0..=MAX_ORDER).find_map(|order| {
            let head = i & !((1usize << order) - 1);
            let d = self.descs.get(head)?;
            (d.flags().contains(FrameFlags::HEAD) && d.order() == order).then_some((head, order))
        })
    }

    // ---- Free lists ----

    fn push(&self, st: &mut State, i: usize, order: u32) {
        let o = order as usize;
        let d = self.at(i);
        let first = st.heads[o];
        d.prev.store(NONE, Ordering::Relaxed);
        d.next.store(first, Ordering::Relaxed);
        if first != NONE {
            self.at(first as usize)
                .prev
                .store(link(i), Ordering::Relaxed);
        }
        st.heads[o] = link(i);
        st.lens[o] += 1;
    }

    fn unlink(&self, st: &mut State, i: usize, order: u32) {
        let o = order as usize;
        let d = self.at(i);
        let prev = d.prev.swap(NONE, Ordering::Relaxed);
        let next = d.next.swap(NONE, Ordering::Relaxed);
        if prev == NONE {
            st.heads[o] = next;
        } else {
            self.at(prev as usize).next.store(next, Ordering::Relaxed);
        }
        if next != NONE {
            self.at(next as usize).prev.store(prev, Ordering::Relaxed);
        }
        st.lens[o] = st.lens[o].saturating_sub(1);
    }

    fn pop(&self, st: &mut State, order: u32) -> Option<usize> {
        let first = st.heads[order as usize];
        if first == NONE {
            return None;
        }
        self.unlink(st, first as usize, order);
        Some(first as usize)
    }

    // ---- Indices ----

    fn at(&self, i: usize) -> &'a FrameDesc {
        match self.descs.get(i) {
            Some(d) => d,
            None => {
                log::error!("frame: index {i} out of range; allocator corrupt");
                &SINK
            }
        }
    }

    fn index(&self, pfn: Pfn) -> Option<usize> {
        usize::try_from(pfn.0)
            .ok()
            .filter(|&i| i < self.descs.len())
    }

    /// `range` as indices, cut to the array.
    fn clip(&self, range: &Range<Pfn>) -> Range<usize> {
        let len = self.descs.len() as u64;
        let end = range.end.0.min(len) as usize;
        let start = (range.start.0.min(len) as usize).min(end);
        start..end
    }
}

/// The order of the largest block that starts at `start` (so is aligned
/// there) and ends by `end`.
fn largest_block(start: usize, end: usize) -> u32 {
    let mut order = 0;
    while order < MAX_ORDER && start.is_multiple_of(2 << order) && start + (2 << order) <= end {
        order += 1;
    }
    order
}

/// `i` as a list link; callers only pass indices into the array, which fit.
fn link(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(NONE)
}

#[cfg(test)]
mod tests;
