//! Access to physical memory by physical address.
//!
//! The mm code never dereferences pointers: it names memory by physical
//! address and goes through [`PhysMem`]. The booted kernel implements the
//! trait over its direct map (in `arch`/`boot`, with `unsafe`); host tests
//! and in-QEMU tests of the mm logic use [`SimMemory`], a sparse simulated
//! memory. That split is what lets this crate deny `unsafe`.
//!
//! All methods take `&self`: page tables are edited through shared handles,
//! and the MMU of another CPU may update accessed/dirty bits at any moment,
//! so an implementation needs interior mutability (atomics) anyway.

use super::{PAGE_SIZE, Pfn};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use spin::Mutex;

/// Words in a frame.
const WORDS: usize = (PAGE_SIZE / 8) as usize;

/// Access to physical memory by physical address.
///
/// The `u64` methods take 8-byte-aligned addresses and must be single,
/// untorn accesses, because the MMU reads page-table entries concurrently.
pub trait PhysMem {
    fn read_u64(&self, pa: u64) -> u64;
    fn write_u64(&self, pa: u64, value: u64);
    fn zero_frame(&self, pfn: Pfn);
    fn copy_frame(&self, dst: Pfn, src: Pfn);

    /// Atomically stores `value` and returns the previous contents. The
    /// walker swaps entries out so that an accessed/dirty bit the MMU sets
    /// at the last moment is returned rather than lost.
    ///
    /// The default reads, then writes. That is only atomic while nothing
    /// else can change the word in between: one CPU, or tables no CPU is
    /// using. Live tables shared by several CPUs need an override with a
    /// locked instruction (x86 `xchg`).
    fn swap_u64(&self, pa: u64, value: u64) -> u64 {
        let old = self.read_u64(pa);
        self.write_u64(pa, value);
        old
    }

    /// Atomically stores `new` if the contents are `current`. Returns the
    /// previous contents, `Ok` when the store happened. The default has
    /// the same limits as `swap_u64`'s (x86 `lock cmpxchg` lifts them).
    fn compare_exchange_u64(&self, pa: u64, current: u64, new: u64) -> Result<u64, u64> {
        let old = self.read_u64(pa);
        if old == current {
            self.write_u64(pa, new);
            Ok(old)
        } else {
            Err(old)
        }
    }

    /// Reads `buf.len()` bytes starting at `pa`. The default goes word by
    /// word; implementations with a direct map should copy directly.
    fn read_bytes(&self, pa: u64, buf: &mut [u8]) {
        let mut at = 0;
        while at < buf.len() {
            let addr = pa + at as u64;
            let off = (addr & 7) as usize;
            let n = (8 - off).min(buf.len() - at);
            let word = self.read_u64(addr & !7).to_le_bytes();
            buf[at..at + n].copy_from_slice(&word[off..off + n]);
            at += n;
        }
    }

    /// Writes `data` starting at `pa`. The default goes word by word and
    /// read-modify-writes the partial words at either end, so it is not
    /// safe against concurrent writers of neighbouring bytes; never use it
    /// on page tables.
    fn write_bytes(&self, pa: u64, data: &[u8]) {
        let mut at = 0;
        while at < data.len() {
            let addr = pa + at as u64;
            let off = (addr & 7) as usize;
            let n = (8 - off).min(data.len() - at);
            let mut word = if n == 8 {
                [0; 8]
            } else {
                self.read_u64(addr & !7).to_le_bytes()
            };
            word[off..off + n].copy_from_slice(&data[at..at + n]);
            self.write_u64(addr & !7, u64::from_le_bytes(word));
            at += n;
        }
    }
}

/// One recorded store to simulated memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRecord {
    pub pa: u64,
    pub old: u64,
    pub new: u64,
}

/// Simulated physical memory for tests: a sparse map of frames in which
/// memory never written reads as zero.
///
/// It counts accesses (one per call, whatever its size) and, when asked,
/// records every word store as a [`WriteRecord`] so that tests can check
/// the order and atomicity of page-table updates. Whole-frame operations
/// (`zero_frame`, `copy_frame`) are counted but not recorded: the walker
/// uses them only on frames no one else can see yet.
///
/// An unaligned `u64` access panics: it is a bug in the caller, and the
/// real implementation could not do it atomically either.
pub struct SimMemory {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    frames: BTreeMap<u64, Box<[u64; WORDS]>>,
    reads: u64,
    writes: u64,
    history: Option<Vec<WriteRecord>>,
}

impl Inner {
    fn word(&self, pa: u64) -> u64 {
        let (pfn, index) = split(pa);
        self.frames.get(&pfn).map_or(0, |f| f[index])
    }

    /// Stores `new` at `pa`, returning the old value.
    fn store(&mut self, pa: u64, new: u64) -> u64 {
        as_hardware(|| {
            let (pfn, index) = split(pa);
            let frame = self
                .frames
                .entry(pfn)
                .or_insert_with(|| Box::new([0; WORDS]));
            let old = core::mem::replace(&mut frame[index], new);
            self.writes += 1;
            if let Some(history) = &mut self.history {
                history.push(WriteRecord { pa, old, new });
            }
            old
        })
    }
}

/// Runs `f` as hardware: the simulation's own allocations (a frame of
/// simulated RAM appearing on first write) are not the kernel's, so host
/// tests that make the kernel's heap fail must not fail these.
pub(crate) fn as_hardware<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(test)]
    {
        crate::testutil::alloc::normal(f)
    }
    #[cfg(not(test))]
    {
        f()
    }
}

/// Splits an aligned physical address into frame number and word index.
fn split(pa: u64) -> (u64, usize) {
    assert!(pa.is_multiple_of(8), "unaligned u64 access at {pa:#x}");
    (pa / PAGE_SIZE, ((pa % PAGE_SIZE) / 8) as usize)
}

impl SimMemory {
    pub fn new() -> SimMemory {
        SimMemory {
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Reads so far (calls, not bytes).
    pub fn reads(&self) -> u64 {
        self.inner.lock().reads
    }

    /// Writes so far (calls, not bytes).
    pub fn writes(&self) -> u64 {
        self.inner.lock().writes
    }

    pub fn reset_counts(&self) {
        let mut inner = self.inner.lock();
        inner.reads = 0;
        inner.writes = 0;
    }

    /// Starts (`true`, with an empty history) or stops recording stores.
    pub fn record_writes(&self, on: bool) {
        self.inner.lock().history = on.then(Vec::new);
    }

    /// The stores recorded since the last call; recording continues.
    pub fn take_history(&self) -> Vec<WriteRecord> {
        match &mut self.inner.lock().history {
            Some(history) => core::mem::take(history),
            None => Vec::new(),
        }
    }

    /// Frames written since they were last zeroed (zeroing drops a frame).
    pub fn frames_in_use(&self) -> usize {
        self.inner.lock().frames.len()
    }
}

impl Default for SimMemory {
    fn default() -> SimMemory {
        SimMemory::new()
    }
}

impl PhysMem for SimMemory {
    fn read_u64(&self, pa: u64) -> u64 {
        let mut inner = self.inner.lock();
        inner.reads += 1;
        inner.word(pa)
    }

    fn write_u64(&self, pa: u64, value: u64) {
        self.inner.lock().store(pa, value);
    }

    fn swap_u64(&self, pa: u64, value: u64) -> u64 {
        let mut inner = self.inner.lock();
        inner.reads += 1;
        inner.store(pa, value)
    }

    fn compare_exchange_u64(&self, pa: u64, current: u64, new: u64) -> Result<u64, u64> {
        let mut inner = self.inner.lock();
        inner.reads += 1;
        let old = inner.word(pa);
        if old != current {
            return Err(old);
        }
        inner.store(pa, new);
        Ok(old)
    }

    fn zero_frame(&self, pfn: Pfn) {
        let mut inner = self.inner.lock();
        inner.writes += 1;
        // Absent frames read as zero, so zeroing is forgetting.
        inner.frames.remove(&pfn.0);
    }

    fn copy_frame(&self, dst: Pfn, src: Pfn) {
        let mut inner = self.inner.lock();
        inner.reads += 1;
        inner.writes += 1;
        as_hardware(|| match inner.frames.get(&src.0).cloned() {
            Some(frame) => inner.frames.insert(dst.0, frame),
            None => inner.frames.remove(&dst.0),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_copies_of_any_alignment_touch_only_their_bytes() {
        let mem = SimMemory::new();
        let fill: Vec<u8> = (0..64).map(|i| 0xa0 ^ i).collect();
        for start in 0..9u64 {
            for len in [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 30] {
                mem.write_bytes(0x3000, &fill);
                let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(13) | 1).collect();
                mem.write_bytes(0x3000 + 8 + start, &data);
                let mut all = [0u8; 64];
                mem.read_bytes(0x3000, &mut all);
                let mut want = fill.clone();
                want[8 + start as usize..8 + start as usize + len].copy_from_slice(&data);
                assert_eq!(all[..], want[..], "start {start} len {len}");
                let mut back = vec![0; len];
                mem.read_bytes(0x3000 + 8 + start, &mut back);
                assert_eq!(back, data);
            }
        }
        // Across a frame's end, too.
        mem.write_bytes(0x4ffd, b"abcdef");
        let mut b = [0; 6];
        mem.read_bytes(0x4ffd, &mut b);
        assert_eq!(&b, b"abcdef");
    }

    #[test]
    fn unwritten_memory_reads_zero() {
        let mem = SimMemory::new();
        assert_eq!(mem.read_u64(0x1234_5000), 0);
        assert_eq!(mem.frames_in_use(), 0);
    }

    #[test]
    fn words_read_back() {
        let mem = SimMemory::new();
        mem.write_u64(0x2008, 7);
        mem.write_u64(0x2ff8, 9);
        assert_eq!(mem.read_u64(0x2008), 7);
        assert_eq!(mem.read_u64(0x2ff8), 9);
        assert_eq!(mem.read_u64(0x2000), 0);
        assert_eq!(mem.frames_in_use(), 1);
    }

    #[test]
    fn swap_and_compare_exchange() {
        let mem = SimMemory::new();
        mem.write_u64(0x10, 1);
        assert_eq!(mem.swap_u64(0x10, 2), 1);
        assert_eq!(mem.compare_exchange_u64(0x10, 1, 3), Err(2));
        assert_eq!(mem.compare_exchange_u64(0x10, 2, 3), Ok(2));
        assert_eq!(mem.read_u64(0x10), 3);
    }

    #[test]
    fn zero_and_copy_frames() {
        let mem = SimMemory::new();
        mem.write_u64(Pfn(3).addr() + 16, 0xabc);
        mem.copy_frame(Pfn(4), Pfn(3));
        assert_eq!(mem.read_u64(Pfn(4).addr() + 16), 0xabc);
        mem.zero_frame(Pfn(3));
        assert_eq!(mem.read_u64(Pfn(3).addr() + 16), 0);
        mem.copy_frame(Pfn(4), Pfn(3));
        assert_eq!(mem.read_u64(Pfn(4).addr() + 16), 0);
        assert_eq!(mem.frames_in_use(), 0);
    }

    #[test]
    fn bytes_cross_word_boundaries() {
        let mem = SimMemory::new();
        mem.write_bytes(0x1005, b"faultline");
        let mut buf = [0; 11];
        mem.read_bytes(0x1004, &mut buf);
        assert_eq!(&buf, b"\0faultline\0");
        assert_eq!(mem.read_u64(0x1000), u64::from_le_bytes(*b"\0\0\0\0\0fau"));
    }

    #[test]
    fn counts_and_history() {
        let mem = SimMemory::new();
        mem.write_u64(0x18, 5);
        mem.record_writes(true);
        mem.write_u64(0x18, 6);
        mem.swap_u64(0x18, 7);
        assert_eq!(mem.compare_exchange_u64(0x18, 0, 8), Err(7));
        mem.read_u64(0x18);
        let expect = [(6, 5), (7, 6)].map(|(new, old)| WriteRecord { pa: 0x18, old, new });
        assert_eq!(mem.take_history(), expect);
        assert_eq!(mem.take_history(), []);
        assert_eq!((mem.reads(), mem.writes()), (3, 3));
        mem.reset_counts();
        mem.record_writes(false);
        mem.write_u64(0x18, 9);
        assert_eq!(mem.take_history(), []);
        assert_eq!((mem.reads(), mem.writes()), (0, 1));
    }

    /// Only the required methods, to exercise the provided ones.
    struct Minimal(SimMemory);

    impl PhysMem for Minimal {
        fn read_u64(&self, pa: u64) -> u64 {
            self.0.read_u64(pa)
        }
        fn write_u64(&self, pa: u64, value: u64) {
            self.0.write_u64(pa, value)
        }
        fn zero_frame(&self, pfn: Pfn) {
            self.0.zero_frame(pfn)
        }
        fn copy_frame(&self, dst: Pfn, src: Pfn) {
            self.0.copy_frame(dst, src)
        }
    }

    #[test]
    fn provided_methods_work_on_the_required_ones() {
        let mem = Minimal(SimMemory::new());
        mem.write_u64(0x20, 1);
        assert_eq!(mem.swap_u64(0x20, 2), 1);
        assert_eq!(mem.compare_exchange_u64(0x20, 1, 3), Err(2));
        assert_eq!(mem.compare_exchange_u64(0x20, 2, 3), Ok(2));
        assert_eq!(mem.read_u64(0x20), 3);
        mem.write_bytes(0x27, &[0xaa, 0xbb]);
        assert_eq!(mem.read_u64(0x20), 0xaa00_0000_0000_0003);
        assert_eq!(mem.read_u64(0x28), 0xbb);
    }

    #[test]
    #[should_panic(expected = "unaligned")]
    fn unaligned_word_access_panics() {
        SimMemory::new().read_u64(0x1003);
    }
}
