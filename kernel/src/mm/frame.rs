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

/// Why an allocator call failed. A failed call has changed nothing.
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
}

impl fmt::Display for FrameStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frames_total={} frames_free={} frames_reserved={} frames_used={}",
            self.total, self.free, self.reserved, self.allocated
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
            state: IrqMutex::new(State {
                heads: [NONE; NR_ORDERS],
                lens: [0; NR_ORDERS],
                stats: FrameStats::default(),
            }),
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
    /// reference is gone (typically when `put` returns 0).
    pub fn free(&self, pfn: Pfn, order: u32) -> Result<(), FrameError> {
        let mut st = self.state.lock();
        let head = self.allocated_head(pfn, order)?;
        let d = self.at(head);
        if d.refcount() > 1 || d.mapcount() != 0 {
            log::warn!(
                "frame: freeing pfn {head:#x} with refcount {} mapcount {}",
                d.refcount(),
                d.mapcount()
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
mod tests {
    use super::*;
    use crate::testutil::Rng;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn descs(n: usize) -> Vec<FrameDesc> {
        (0..n).map(|_| FrameDesc::default()).collect()
    }

    fn pfns(start: u64, end: u64) -> Range<Pfn> {
        Pfn(start)..Pfn(end)
    }

    /// All free blocks as (pfn, order), sorted, read from the lists
    /// themselves rather than from the counters.
    fn free_blocks(a: &FrameAllocator) -> Vec<(u64, u32)> {
        let st = a.state.lock();
        let mut blocks = Vec::new();
        for order in 0..=MAX_ORDER {
            let mut cur = st.heads[order as usize];
            while cur != NONE {
                blocks.push((u64::from(cur), order));
                cur = a.descs[cur as usize].next.load(Ordering::Relaxed);
                assert!(blocks.len() <= a.descs.len(), "cycle in free list");
            }
        }
        blocks.sort();
        blocks
    }

    /// Everything a rejected call must leave alone.
    fn snapshot(a: &FrameAllocator) -> (FrameStats, Vec<(u64, u32)>) {
        (a.stats(), free_blocks(a))
    }

    fn assert_consistent(a: &FrameAllocator) {
        if let Err(e) = a.check() {
            panic!("check failed: {e}");
        }
        let s = a.stats();
        assert_eq!(s.free + s.reserved + s.allocated, s.total, "{s}");
    }

    /// Allocate order-0 frames until the allocator runs dry.
    fn drain(a: &FrameAllocator) -> Vec<u64> {
        let mut got = Vec::new();
        loop {
            match a.alloc_frame() {
                Ok(p) => got.push(p.0),
                Err(e) => {
                    assert_eq!(e, FrameError::OutOfMemory);
                    return got;
                }
            }
        }
    }

    #[test]
    fn descs_bytes_counts_one_descriptor_per_frame() {
        let size = core::mem::size_of::<FrameDesc>() as u64;
        assert_eq!(FrameAllocator::descs_bytes(0), 0);
        assert_eq!(FrameAllocator::descs_bytes(1000), 1000 * size);
        assert_eq!(FrameAllocator::descs_bytes(u64::MAX), u64::MAX);
        // Usable in a const context, where the boot code sizes the array.
        const BYTES: u64 = FrameAllocator::descs_bytes(4);
        assert_eq!(BYTES, 4 * size);
    }

    #[test]
    fn new_splits_ram_into_maximal_blocks() {
        let d = descs(4096);
        let a = FrameAllocator::new(&d, &[pfns(0, 4096)]);
        assert_consistent(&a);
        assert_eq!(
            free_blocks(&a),
            [(0, 10), (1024, 10), (2048, 10), (3072, 10)]
        );
        assert_eq!(
            a.stats(),
            FrameStats {
                total: 4096,
                free: 4096,
                reserved: 0,
                allocated: 0
            }
        );
    }

    #[test]
    fn new_handles_holes_and_unaligned_starts() {
        let d = descs(64);
        let a = FrameAllocator::new(&d, &[pfns(3, 17), pfns(40, 41)]);
        assert_consistent(&a);
        assert_eq!(free_blocks(&a), [(3, 0), (4, 2), (8, 3), (16, 0), (40, 0)]);
        assert_eq!(a.stats().total, 15);
        assert_eq!(a.stats().reserved, 0);
        let hole = FrameFlags::RESERVED | FrameFlags::HOLE;
        for p in [0, 2, 17, 39, 41, 63] {
            assert_eq!(a.desc(Pfn(p)).map(|d| d.flags()), Some(hole), "pfn {p}");
        }
        let mut got = drain(&a);
        got.sort();
        let want: Vec<u64> = (3..17).chain(40..41).collect();
        assert_eq!(got, want);
        assert_consistent(&a);
    }

    #[test]
    fn new_unions_overlapping_unsorted_ranges_and_clips() {
        let d = descs(64);
        #[allow(clippy::reversed_empty_ranges)]
        let usable = [
            pfns(10, 20),
            pfns(0, 12),
            pfns(15, 16),
            pfns(60, 200),
            pfns(30, 25),
            pfns(100, 300),
        ];
        let a = FrameAllocator::new(&d, &usable);
        assert_consistent(&a);
        assert_eq!(free_blocks(&a), [(0, 4), (16, 2), (60, 2)]);
        assert_eq!(a.stats().total, 24);
        assert!(a.desc(Pfn(63)).is_some());
        assert!(a.desc(Pfn(64)).is_none());
        assert!(a.desc(Pfn(u64::MAX)).is_none());
    }

    #[test]
    fn new_ignores_previous_descriptor_contents() {
        let d = descs(256);
        for (i, x) in d.iter().enumerate() {
            x.refcount.store(7, Ordering::Relaxed);
            x.mapcount.store(-3, Ordering::Relaxed);
            x.flags.store(u32::MAX, Ordering::Relaxed);
            x.next.store(i as u32 ^ 5, Ordering::Relaxed);
            x.prev.store(12345, Ordering::Relaxed);
            x.order.store(200, Ordering::Relaxed);
        }
        let a = FrameAllocator::new(&d, &[pfns(0, 128)]);
        assert_consistent(&a);
        assert_eq!(free_blocks(&a), [(0, 7)]);
        assert_eq!(a.desc(Pfn(5)).map(|d| d.refcount()), Some(0));
        assert_eq!(drain(&a).len(), 128);
    }

    #[test]
    fn alloc_returns_aligned_distinct_blocks() {
        let d = descs(1024);
        let a = FrameAllocator::new(&d, &[pfns(0, 1024)]);
        let mut owned = [false; 1024];
        let mut live = 0;
        for order in (0..=4).cycle() {
            let Ok(p) = a.alloc(order) else { break };
            let size = 1u64 << order;
            assert_eq!(p.0 % size, 0, "block {p:?} of order {order} misaligned");
            let desc = a.desc(p).expect("allocated pfn has a descriptor");
            assert_eq!(desc.refcount(), 1);
            assert_eq!(desc.mapcount(), 0);
            assert_eq!(desc.flags(), FrameFlags::HEAD);
            assert_eq!(desc.order(), order);
            for f in p.0..p.0 + size {
                assert!(!owned[f as usize], "pfn {f} handed out twice");
                owned[f as usize] = true;
            }
            live += size;
            assert_eq!(a.stats().allocated, live);
            assert_consistent(&a);
        }
        // The loop only stops on failure; what is left is too small for the
        // order that failed.
        assert!(
            live > 1024 - 16,
            "gave up early with {live} frames handed out"
        );
    }

    #[test]
    fn alloc_rejects_bad_order() {
        let d = descs(2048);
        let a = FrameAllocator::new(&d, &[pfns(0, 2048)]);
        let before = snapshot(&a);
        assert_eq!(a.alloc(MAX_ORDER + 1), Err(FrameError::BadOrder));
        assert_eq!(a.alloc(u32::MAX), Err(FrameError::BadOrder));
        assert_eq!(snapshot(&a), before);
        let p = a.alloc(MAX_ORDER).expect("a whole max-order block is free");
        assert_eq!(p.0 % 1024, 0);
        assert_consistent(&a);
    }

    #[test]
    fn free_coalesces_back_to_maximal_blocks() {
        let d = descs(2048);
        // Starting at 1 makes the initial shape uneven: one block per order.
        let a = FrameAllocator::new(&d, &[pfns(1, 2048)]);
        let initial = free_blocks(&a);
        assert_eq!(initial.len(), 11);
        let mut frames = drain(&a);
        assert_eq!(frames.len(), 2047);
        assert_eq!(free_blocks(&a), []);
        // Free in a scrambled order so merges happen in every pattern.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in (1..frames.len()).rev() {
            frames.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for (n, p) in frames.iter().enumerate() {
            assert_eq!(a.free(Pfn(*p), 0), Ok(()));
            if n % 64 == 0 {
                assert_consistent(&a);
            }
        }
        assert_consistent(&a);
        assert_eq!(free_blocks(&a), initial);
        assert_eq!(a.alloc(MAX_ORDER), Ok(Pfn(1024)));
        assert_eq!(a.alloc(MAX_ORDER), Err(FrameError::OutOfMemory));
    }

    #[test]
    fn split_blocks_merge_when_freed() {
        let d = descs(1024);
        let a = FrameAllocator::new(&d, &[pfns(0, 1024)]);
        let big = a.alloc(3).expect("alloc order 3");
        let small = a.alloc(0).expect("alloc order 0");
        // Both came out of splits; every unused half is listed.
        assert_eq!(
            free_blocks(&a),
            [
                (9, 0),
                (10, 1),
                (12, 2),
                (16, 4),
                (32, 5),
                (64, 6),
                (128, 7),
                (256, 8),
                (512, 9)
            ]
        );
        assert_eq!((big, small), (Pfn(0), Pfn(8)));
        assert_eq!(a.free(small, 0), Ok(()));
        assert_eq!(a.free(big, 3), Ok(()));
        assert_eq!(free_blocks(&a), [(0, 10)]);
        assert_consistent(&a);
    }

    #[test]
    fn exhaustion_returns_oom_and_allocator_recovers() {
        let d = descs(64);
        let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
        let blocks: Vec<Pfn> = (0..8).map(|_| a.alloc(3).expect("alloc order 3")).collect();
        let full = snapshot(&a);
        assert_eq!(full.0.free, 0);
        for order in [0, 1, 3, MAX_ORDER] {
            assert_eq!(a.alloc(order), Err(FrameError::OutOfMemory));
        }
        assert_eq!(snapshot(&a), full);
        assert_consistent(&a);

        assert_eq!(a.free(blocks[5], 3), Ok(()));
        let p = a.alloc_frame().expect("a frame after freeing a block");
        assert!((blocks[5].0..blocks[5].0 + 8).contains(&p.0));
        assert_eq!(a.alloc(3), Err(FrameError::OutOfMemory));
        assert_eq!(a.alloc(2), Ok(Pfn(blocks[5].0 + 4)));
        assert_consistent(&a);
    }

    #[test]
    fn double_free_is_rejected_and_changes_nothing() {
        let d = descs(16);
        let a = FrameAllocator::new(&d, &[pfns(0, 16)]);
        let x = a.alloc_frame().expect("alloc");
        let y = Pfn(x.0 ^ 1);
        assert_eq!(a.alloc_frame(), Ok(y), "the buddy is next on the list");
        assert_eq!(a.free(x, 0), Ok(()));
        let before = snapshot(&a);
        assert_eq!(a.free(x, 0), Err(FrameError::NotAllocated));
        assert_eq!(snapshot(&a), before);
        assert_consistent(&a);
        // Once merged, one of the two is a free head and the other a tail.
        assert_eq!(a.free(y, 0), Ok(()));
        let before = snapshot(&a);
        assert_eq!(a.free(x, 0), Err(FrameError::NotAllocated));
        assert_eq!(a.free(y, 0), Err(FrameError::NotAllocated));
        assert_eq!(a.free(Pfn(0), 4), Err(FrameError::NotAllocated));
        assert_eq!(snapshot(&a), before);
        assert_eq!(before.1, [(0, 4)]);
        assert_consistent(&a);
    }

    #[test]
    fn misaligned_free_is_rejected_and_changes_nothing() {
        let d = descs(64);
        let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
        let p = a.alloc(2).expect("alloc order 2");
        let before = snapshot(&a);
        assert_eq!(a.free(Pfn(p.0 + 1), 2), Err(FrameError::Misaligned));
        assert_eq!(a.free(Pfn(p.0 + 2), 2), Err(FrameError::Misaligned));
        // Aligned for order 1, but a tail of the block.
        assert_eq!(a.free(Pfn(p.0 + 2), 1), Err(FrameError::NotAllocated));
        assert_eq!(a.free(Pfn(p.0 + 3), 0), Err(FrameError::NotAllocated));
        assert_eq!(snapshot(&a), before);
        assert_consistent(&a);
        assert_eq!(a.free(p, 2), Ok(()));
        assert_eq!(free_blocks(&a), [(0, 6)]);
    }

    #[test]
    fn wrong_order_free_is_rejected_and_changes_nothing() {
        let d = descs(64);
        let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
        let p = a.alloc(2).expect("alloc order 2");
        let before = snapshot(&a);
        assert_eq!(a.free(p, 0), Err(FrameError::BadOrder));
        assert_eq!(a.free(p, 1), Err(FrameError::BadOrder));
        assert_eq!(a.free(p, MAX_ORDER + 1), Err(FrameError::BadOrder));
        assert_eq!(a.free(p, u32::MAX), Err(FrameError::BadOrder));
        assert_eq!(snapshot(&a), before);
        assert_consistent(&a);
        assert_eq!(a.free(p, 2), Ok(()));
        assert_consistent(&a);
    }

    #[test]
    fn free_of_reserved_hole_free_or_unmanaged_frame_is_rejected() {
        let d = descs(64);
        let a = FrameAllocator::new(&d, &[pfns(0, 32)]);
        assert_eq!(a.reserve(pfns(4, 6)), Ok(()));
        let _held = a.alloc_frame().expect("alloc");
        let before = snapshot(&a);
        let cases = [
            (Pfn(4), FrameError::NotAllocated),  // reserved
            (Pfn(5), FrameError::NotAllocated),  // reserved
            (Pfn(16), FrameError::NotAllocated), // head of a free block
            (Pfn(40), FrameError::NotManaged),   // hole
            (Pfn(64), FrameError::NotManaged),   // past the array
            (Pfn(u64::MAX), FrameError::NotManaged),
        ];
        for (p, err) in cases {
            assert_eq!(a.free(p, 0), Err(err), "free({p:?}, 0)");
        }
        assert_eq!(snapshot(&a), before);
        assert_consistent(&a);
    }

    #[test]
    fn reserve_in_middle_of_free_block() {
        let d = descs(1024);
        let a = FrameAllocator::new(&d, &[pfns(0, 1024)]);
        assert_eq!(a.reserve(pfns(100, 300)), Ok(()));
        assert_consistent(&a);
        assert_eq!(
            a.stats(),
            FrameStats {
                total: 1024,
                free: 824,
                reserved: 200,
                allocated: 0
            }
        );
        let want = [
            (0, 6),
            (64, 5),
            (96, 2),
            (300, 2),
            (304, 4),
            (320, 6),
            (384, 7),
            (512, 9),
        ];
        assert_eq!(free_blocks(&a), want);
        for p in [100, 150, 299] {
            assert_eq!(
                a.desc(Pfn(p)).map(|d| d.flags()),
                Some(FrameFlags::RESERVED)
            );
        }
        let frames = drain(&a);
        assert_eq!(frames.len(), 824);
        assert!(frames.iter().all(|p| !(100..300).contains(p)));
        for p in frames {
            assert_eq!(a.free(Pfn(p), 0), Ok(()));
        }
        assert_eq!(free_blocks(&a), want, "reserved frames must not merge back");
        assert_consistent(&a);
    }

    #[test]
    fn reserve_of_allocated_frame_is_in_use_and_changes_nothing() {
        let d = descs(64);
        let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
        let p = a.alloc(2).expect("alloc order 2");
        let before = snapshot(&a);
        let (lo, hi) = (p.0.saturating_sub(8), p.0 + 12);
        assert_eq!(a.reserve(pfns(lo, hi)), Err(FrameError::InUse));
        assert_eq!(a.reserve(pfns(p.0 + 3, p.0 + 4)), Err(FrameError::InUse));
        assert_eq!(a.reserve(pfns(0, 64)), Err(FrameError::InUse));
        assert_eq!(snapshot(&a), before);
        assert_consistent(&a);
        // Right next to the block is fine.
        assert_eq!(a.reserve(pfns(p.0 + 4, p.0 + 5)), Ok(()));
        assert_eq!(a.stats().reserved, 1);
        assert_consistent(&a);
    }

    #[test]
    fn reserve_skips_holes_and_already_reserved_frames() {
        let d = descs(64);
        let a = FrameAllocator::new(&d, &[pfns(0, 16), pfns(32, 48)]);
        assert_eq!(a.reserve(pfns(8, 40)), Ok(()));
        assert_eq!(a.stats().reserved, 16);
        assert_eq!(
            a.reserve(pfns(8, 40)),
            Ok(()),
            "reserving twice is harmless"
        );
        assert_eq!(a.stats().reserved, 16);
        assert_eq!(
            a.desc(Pfn(20)).map(|d| d.flags()),
            Some(FrameFlags::RESERVED | FrameFlags::HOLE),
            "a hole stays a hole"
        );
        let before = snapshot(&a);
        assert_eq!(a.reserve(pfns(100, 200)), Ok(()));
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = pfns(12, 10);
        assert_eq!(a.reserve(backwards), Ok(()));
        assert_eq!(snapshot(&a), before);
        assert_eq!(a.reserve(pfns(0, u64::MAX)), Ok(()));
        assert_eq!(
            a.stats(),
            FrameStats {
                total: 32,
                free: 0,
                reserved: 32,
                allocated: 0
            }
        );
        assert_eq!(a.alloc_frame(), Err(FrameError::OutOfMemory));
        assert_consistent(&a);
    }

    #[test]
    fn free_clears_counts_left_by_owners() {
        let d = descs(16);
        let a = FrameAllocator::new(&d, &[pfns(0, 16)]);
        let p = a.alloc(1).expect("alloc");
        let desc = a.desc(p).expect("desc");
        assert_eq!(desc.get(), 2);
        assert_eq!(desc.inc_mapcount(), 1);
        // A tail touched by an owner must not leak into a later free head.
        let tail = a.desc(Pfn(p.0 + 1)).expect("desc");
        tail.get();
        assert_eq!(a.free(p, 1), Ok(()));
        assert_consistent(&a);
        let q = a.alloc_frame().expect("alloc");
        let r = a.alloc_frame().expect("alloc");
        for f in [q, r] {
            let desc = a.desc(f).expect("desc");
            assert_eq!((desc.refcount(), desc.mapcount()), (1, 0), "{f:?}");
        }
        assert_consistent(&a);
    }

    #[test]
    fn refcount_and_mapcount_never_wrap() {
        let d = FrameDesc::default();
        assert_eq!(
            (d.refcount(), d.mapcount(), d.flags()),
            (0, 0, FrameFlags::empty())
        );
        assert_eq!(d.get(), 1);
        assert_eq!(d.get(), 2);
        assert_eq!(d.put(), 1);
        assert_eq!(d.put(), 0);
        assert_eq!(d.put(), 0, "put on zero saturates");
        assert_eq!(d.refcount(), 0);
        d.refcount.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(d.get(), u32::MAX, "get on max saturates");

        assert_eq!(d.inc_mapcount(), 1);
        assert_eq!(d.dec_mapcount(), 0);
        assert_eq!(d.dec_mapcount(), 0, "unmap of an unmapped frame saturates");
        assert_eq!(d.mapcount(), 0);
    }

    #[test]
    fn stats_display_format() {
        let s = FrameStats {
            total: 10,
            free: 4,
            reserved: 3,
            allocated: 3,
        };
        assert_eq!(
            s.to_string(),
            "frames_total=10 frames_free=4 frames_reserved=3 frames_used=3"
        );
        let d = descs(64);
        let a = FrameAllocator::new(&d, &[pfns(0, 64)]);
        a.reserve(pfns(0, 3)).expect("reserve");
        a.alloc(2).expect("alloc");
        assert_eq!(
            a.stats().to_string(),
            "frames_total=64 frames_free=57 frames_reserved=3 frames_used=4"
        );
    }

    #[test]
    fn error_messages_are_distinct() {
        let all = [
            FrameError::OutOfMemory,
            FrameError::BadOrder,
            FrameError::NotManaged,
            FrameError::Misaligned,
            FrameError::NotAllocated,
            FrameError::InUse,
        ];
        let msgs: Vec<String> = all.iter().map(|e| e.to_string()).collect();
        for (i, m) in msgs.iter().enumerate() {
            assert!(!m.is_empty());
            assert!(!msgs[..i].contains(m), "duplicate message {m:?}");
        }
    }

    #[test]
    fn check_detects_corruption() {
        type Corrupt = fn(&FrameAllocator);
        let corruptions: [(&str, Corrupt); 8] = [
            ("free head loses FREE", |a| {
                a.descs[0].set_state(FrameFlags::HEAD, 6);
            }),
            ("tail gains HEAD", |a| {
                a.descs[5].set_state(FrameFlags::HEAD, 0)
            }),
            ("allocated head loses HEAD", |a| {
                a.descs[200].set_state(FrameFlags::empty(), 0);
            }),
            ("stats drift", |a| a.state.lock().stats.free -= 1),
            ("list length drift", |a| a.state.lock().lens[6] += 1),
            ("broken prev links", |a| {
                a.descs[0].prev.store(3, Ordering::Relaxed);
                a.descs[128].prev.store(3, Ordering::Relaxed);
            }),
            ("cycle on a list", |a| {
                a.descs[0].next.store(0, Ordering::Relaxed);
                a.descs[128].next.store(128, Ordering::Relaxed);
            }),
            ("unmerged buddies", |a| {
                let mut st = a.state.lock();
                a.unlink(&mut st, 0, 6);
                a.make_free(&mut st, 0, 5);
                a.make_free(&mut st, 32, 5);
            }),
        ];
        for (what, corrupt) in corruptions {
            let d = descs(256);
            // Two order-6 blocks that are not buddies share list 6.
            let a = FrameAllocator::new(&d, &[pfns(0, 64), pfns(128, 192), pfns(200, 201)]);
            assert_eq!(free_blocks(&a), [(0, 6), (128, 6), (200, 0)]);
            assert_eq!(a.alloc_frame(), Ok(Pfn(200)));
            assert_consistent(&a);
            corrupt(&a);
            assert!(a.check().is_err(), "check() missed: {what}");
        }
    }

    #[test]
    fn allocator_can_be_shared_between_threads() {
        fn assert_sync<T: Sync + Send>() {}
        assert_sync::<FrameAllocator<'static>>();

        let d = descs(4096);
        let a = FrameAllocator::new(&d, &[pfns(0, 4096)]);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let a = &a;
                s.spawn(move || {
                    let mut rng = Rng(t + 1);
                    let mut held = Vec::new();
                    for _ in 0..2000 {
                        if held.len() < 32 && rng.below(2) == 0 {
                            let order = rng.below(4) as u32;
                            if let Ok(p) = a.alloc(order) {
                                held.push((p, order));
                            }
                        } else if let Some((p, order)) = held.pop() {
                            assert_eq!(a.free(p, order), Ok(()));
                        }
                    }
                    for (p, order) in held {
                        assert_eq!(a.free(p, order), Ok(()));
                    }
                });
            }
        });
        assert_consistent(&a);
        assert_eq!(
            free_blocks(&a),
            [(0, 10), (1024, 10), (2048, 10), (3072, 10)]
        );
    }

    /// What the model in the stress test knows about each frame.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Cell {
        Hole,
        Free,
        Used,
        Reserved,
    }

    /// An independent model of the allocator: one cell per frame.
    struct Model {
        cells: Vec<Cell>,
        live: Vec<(u64, u32)>,
        /// How often each kind of step ran: allocs, OOMs, frees, refused
        /// reserves, reserves, refused frees.
        seen: [u32; 6],
    }

    impl Model {
        fn count(&self, c: Cell) -> u64 {
            self.cells.iter().filter(|&&x| x == c).count() as u64
        }

        /// Is there an aligned run of 2^order free frames? With complete
        /// merging, alloc(order) must succeed exactly when there is.
        fn has_free_run(&self, order: u32) -> bool {
            let size = 1usize << order;
            self.cells
                .chunks_exact(size)
                .any(|run| run.iter().all(|&c| c == Cell::Free))
        }

        fn set(&mut self, start: u64, order: u32, from: Cell, to: Cell) {
            for f in start..start + (1 << order) {
                let cell = &mut self.cells[f as usize];
                assert_eq!(*cell, from, "pfn {f}");
                *cell = to;
            }
        }
    }

    const STRESS_FRAMES: usize = 3000;

    fn stress_alloc(a: &FrameAllocator, m: &mut Model, rng: &mut Rng, step: usize) {
        // Mostly small orders, now and then any order.
        let order = if rng.below(8) == 0 {
            rng.below(u64::from(MAX_ORDER) + 1) as u32
        } else {
            rng.below(3) as u32
        };
        match a.alloc(order) {
            Ok(p) => {
                assert_eq!(p.0 % (1 << order), 0, "step {step}");
                m.set(p.0, order, Cell::Free, Cell::Used);
                m.live.push((p.0, order));
                m.seen[0] += 1;
            }
            Err(e) => {
                assert_eq!(e, FrameError::OutOfMemory, "step {step}");
                assert!(!m.has_free_run(order), "step {step}: OOM with free run");
                m.seen[1] += 1;
            }
        }
    }

    fn stress_free(a: &FrameAllocator, m: &mut Model, rng: &mut Rng, step: usize) {
        if m.live.is_empty() {
            return;
        }
        let (p, order) = m.live.swap_remove(rng.below(m.live.len() as u64) as usize);
        assert_eq!(a.free(Pfn(p), order), Ok(()), "step {step}");
        m.set(p, order, Cell::Used, Cell::Free);
        m.seen[2] += 1;
    }

    /// Reserve a few frames; must fail exactly when one of them is in use.
    fn stress_reserve(a: &FrameAllocator, m: &mut Model, rng: &mut Rng, step: usize) {
        let n = STRESS_FRAMES as u64;
        let start = rng.below(n + 10);
        let end = start + 1 + rng.below(8);
        let cells = (start.min(n) as usize)..(end.min(n) as usize);
        let before = snapshot(a);
        let got = a.reserve(Pfn(start)..Pfn(end));
        if m.cells[cells.clone()].contains(&Cell::Used) {
            assert_eq!(got, Err(FrameError::InUse), "step {step}");
            assert_eq!(snapshot(a), before, "step {step}");
            m.seen[3] += 1;
        } else {
            assert_eq!(got, Ok(()), "step {step}");
            for c in &mut m.cells[cells] {
                if *c == Cell::Free {
                    *c = Cell::Reserved;
                }
            }
            m.seen[4] += 1;
        }
    }

    /// A free that must be refused: a live block with the pfn or the order
    /// off, or any (pfn, order) that is not a live block.
    fn stress_bad_free(a: &FrameAllocator, m: &mut Model, rng: &mut Rng, step: usize) {
        let (p, order) = match m.live.get(rng.below(m.live.len() as u64 + 1) as usize) {
            Some(&(p, order)) if rng.below(2) == 0 => (p + 1 + rng.below(1 << order), order),
            Some(&(p, order)) => (p, (order + 1 + rng.below(3) as u32) % (MAX_ORDER + 3)),
            None => (
                rng.below(STRESS_FRAMES as u64 + 10),
                rng.below(u64::from(MAX_ORDER) + 3) as u32,
            ),
        };
        if m.live.contains(&(p, order)) {
            return;
        }
        let before = snapshot(a);
        assert!(
            a.free(Pfn(p), order).is_err(),
            "step {step}: free({p}, {order})"
        );
        assert_eq!(snapshot(a), before, "step {step}");
        m.seen[5] += 1;
    }

    fn stress(seed: u64, steps: usize) {
        let d = descs(STRESS_FRAMES);
        let usable = [pfns(1000, 1700), pfns(5, 1500), pfns(1600, 2900)];
        let a = FrameAllocator::new(&d, &usable);
        let mut m = Model {
            cells: vec![Cell::Hole; STRESS_FRAMES],
            live: Vec::new(),
            seen: [0; 6],
        };
        m.cells[5..2900].fill(Cell::Free);
        let mut rng = Rng(seed);
        for step in 0..steps {
            // Alternate filling and draining phases so that both the nearly
            // empty and the exhausted allocator get exercised.
            let alloc_per_mille = if (step / 700) % 2 == 0 { 700 } else { 300 };
            let roll = rng.below(1000);
            if roll < 15 {
                stress_reserve(&a, &mut m, &mut rng, step);
            } else if roll < 60 {
                stress_bad_free(&a, &mut m, &mut rng, step);
            } else if roll < 60 + alloc_per_mille {
                stress_alloc(&a, &mut m, &mut rng, step);
            } else {
                stress_free(&a, &mut m, &mut rng, step);
            }
            if let Err(e) = a.check() {
                panic!("seed {seed} step {step}: {e}");
            }
            let want = FrameStats {
                total: 2895,
                free: m.count(Cell::Free),
                reserved: m.count(Cell::Reserved),
                allocated: m.count(Cell::Used),
            };
            assert_eq!(a.stats(), want, "seed {seed} step {step}");
        }
        // Every kind of step must have happened, or the test proves little.
        assert!(m.seen.iter().all(|&n| n > 0), "seed {seed}: {:?}", m.seen);
        for (p, order) in core::mem::take(&mut m.live) {
            assert_eq!(a.free(Pfn(p), order), Ok(()));
            m.set(p, order, Cell::Used, Cell::Free);
        }
        assert_consistent(&a);
        assert_eq!(a.stats().allocated, 0);
        assert_eq!(drain(&a).len() as u64, m.count(Cell::Free));
    }

    #[test]
    fn random_stress_against_model() {
        for seed in [1, 0xdead_beef, 0x1234_5678_9abc_def0] {
            stress(seed, 6000);
        }
    }
}
