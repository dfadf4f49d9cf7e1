//! The kernel heap: `linked_list_allocator` over a virtual range that grows.
//!
//! The heap starts with [`INITIAL_BYTES`] at `HEAP_BASE`. When an
//! allocation does not fit, fresh frames are mapped right after the current
//! end and the allocator is extended, so the heap is one contiguous virtual
//! range no matter where its frames lie. Growth takes frames and page-table
//! frames from the frame allocator, which never uses the heap itself.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use arch::layout::{HEAP_BASE, HEAP_MAX};
use kernel::mm::pte::LeafFlags;
use kernel::mm::tlb::{BATCH_PAGES, FlushBatch};
use kernel::mm::{PAGE_SIZE, Pfn};
use kernel::sync::IrqMutex;
use linked_list_allocator::Heap;

use crate::memory;

/// Bytes mapped when the heap is created.
pub const INITIAL_BYTES: u64 = 64 * 1024;
/// Growth happens in at least this many bytes, to keep it rare.
const MIN_GROWTH: u64 = 64 * 1024;

struct GrowingHeap {
    heap: IrqMutex<Heap>,
}

#[global_allocator]
static ALLOCATOR: GrowingHeap = GrowingHeap {
    heap: IrqMutex::ranked(kernel::sync::rank::HEAP, Heap::empty()),
};

static GROWTHS: AtomicU64 = AtomicU64::new(0);

/// Heap figures for `mem`.
#[derive(Debug, Clone, Copy)]
pub struct HeapStats {
    /// Bytes mapped for the heap.
    pub bytes: u64,
    /// Bytes handed out.
    pub used: u64,
    /// How often the heap grew after its first chunk.
    pub growths: u64,
}

pub fn stats() -> HeapStats {
    let heap = ALLOCATOR.heap.lock();
    HeapStats {
        bytes: heap.size() as u64,
        used: heap.used() as u64,
        growths: GROWTHS.load(Ordering::Relaxed),
    }
}

/// Maps the first chunk and hands it to the allocator.
pub fn init() -> Result<(), kernel::mm::paging::MapError> {
    map_pages(HEAP_BASE, INITIAL_BYTES)?;
    let mut heap = ALLOCATOR.heap.lock();
    // SAFETY: [HEAP_BASE, +INITIAL_BYTES) was just mapped read-write to
    // frames owned by nothing else, and the heap is still empty.
    unsafe { heap.init(HEAP_BASE as *mut u8, INITIAL_BYTES as usize) };
    Ok(())
}

/// Maps fresh frames at [va, va + bytes). All or nothing: on failure the
/// pages mapped so far are unmapped and their frames given back, so a
/// growth that runs out of memory half-way costs nothing (found by the
/// memory-exhaustion test, which lost 7 frames to one).
fn map_pages(va: u64, bytes: u64) -> Result<(), kernel::mm::paging::MapError> {
    let flags = LeafFlags::WRITABLE | LeafFlags::GLOBAL;
    for offset in (0..bytes).step_by(PAGE_SIZE as usize) {
        let mapped = memory::frames()
            .alloc_frame()
            .map_err(|_| kernel::mm::paging::MapError::NoMemory)
            .and_then(|pfn| {
                memory::map_kernel_page(va + offset, pfn, flags).inspect_err(|_| {
                    let _ = memory::frames().free(pfn, 0);
                })
            });
        if let Err(e) = mapped {
            unmap_pages(va, offset);
            return Err(e);
        }
    }
    Ok(())
}

/// Undoes `map_pages` for its first `bytes`: one shootdown per batch of
/// pages, then their frames go back. Without the heap (it is the heap's
/// own failure path), so in batches of a fixed size.
fn unmap_pages(va: u64, bytes: u64) {
    let pages = bytes / PAGE_SIZE;
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(BATCH_PAGES as u64);
        let mut batch = FlushBatch::new();
        let mut gone = [Pfn(0); BATCH_PAGES];
        let mut k = 0;
        memory::unmap_kernel_pages(va + done * PAGE_SIZE, n, &mut batch, |pfn| {
            gone[k] = pfn;
            k += 1;
        });
        batch.flush(&arch::tlb::SHOOTDOWN);
        for &pfn in &gone[..k] {
            if let Err(e) = memory::frames().free(pfn, 0) {
                log::error!("heap: freeing a frame of a failed growth: {e}");
            }
        }
        done += n;
    }
}

/// Extends the heap by at least `needed` bytes.
fn grow(heap: &mut Heap, needed: u64) -> bool {
    let by = needed.max(MIN_GROWTH).next_multiple_of(PAGE_SIZE);
    let top = heap.top() as u64;
    if top - HEAP_BASE + by > HEAP_MAX || map_pages(top, by).is_err() {
        return false;
    }
    // SAFETY: [top, top + by) directly follows the heap and was just mapped
    // read-write to frames nothing else owns.
    unsafe { heap.extend(by as usize) };
    GROWTHS.fetch_add(1, Ordering::Relaxed);
    true
}

// SAFETY: all access to the heap goes through its lock, taken with
// interrupts off so an interrupt handler cannot deadlock on it.
unsafe impl GlobalAlloc for GrowingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.heap.lock();
        if let Ok(p) = heap.allocate_first_fit(layout) {
            return p.as_ptr();
        }
        // Room for the block, its alignment, and the allocator's own
        // bookkeeping at the boundary.
        let needed = (layout.size() + layout.align() + 64) as u64;
        if grow(&mut heap, needed)
            && let Ok(p) = heap.allocate_first_fit(layout)
        {
            return p.as_ptr();
        }
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(ptr) = NonNull::new(ptr) else {
            return;
        };
        // SAFETY: GlobalAlloc's contract: ptr came from alloc with this
        // layout and is freed once.
        unsafe { self.heap.lock().deallocate(ptr, layout) }
    }
}
