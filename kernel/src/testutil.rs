//! Helpers shared by the host tests.

/// xorshift64: a tiny deterministic PRNG, so a failing random test
/// reproduces from its seed. Not for anything but tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index into something of length `len`.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with the given chance in percent.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The test binary's allocator: the system's, with a switch per thread
/// that either counts allocations or makes them all fail, so a test can
/// prove that a call allocates nothing, or survives having no memory.
/// Other threads (tests running in parallel) are not affected.
pub mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Normal,
        Count,
        Fail,
    }

    thread_local! {
        // Const-initialised and without Drop, so reaching them from inside
        // the allocator allocates nothing itself.
        static MODE: Cell<Mode> = const { Cell::new(Mode::Normal) };
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    /// Whether this allocation may go ahead (counting it if asked).
    fn admit() -> bool {
        match MODE.try_with(Cell::get).unwrap_or(Mode::Normal) {
            Mode::Normal => true,
            Mode::Count => {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
                true
            }
            Mode::Fail => false,
        }
    }

    struct Switched;

    // GlobalAlloc is an unsafe trait; this only forwards to System, and
    // exists only in the host test binary, never in the kernel.
    #[allow(unsafe_code)]
    // SAFETY: every pointer handed out comes from System with the same
    // layout, and is given back to System; a refusal is a null pointer,
    // which GlobalAlloc allows.
    unsafe impl GlobalAlloc for Switched {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if !admit() {
                return core::ptr::null_mut();
            }
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if !admit() {
                return core::ptr::null_mut();
            }
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if !admit() {
                return core::ptr::null_mut();
            }
            // SAFETY: the caller's contract, passed on; `ptr` came from System.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract, passed on; `ptr` came from System.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Switched = Switched;

    /// Puts the mode back when the closure returns or unwinds.
    struct Restore(Mode);

    impl Drop for Restore {
        fn drop(&mut self) {
            MODE.with(|m| m.set(self.0));
        }
    }

    fn with_mode<R>(mode: Mode, f: impl FnOnce() -> R) -> R {
        let _restore = Restore(MODE.with(|m| m.replace(mode)));
        f()
    }

    /// Runs `f`, returning its result and how many allocations (reallocs
    /// included) it made on this thread.
    pub fn count<R>(f: impl FnOnce() -> R) -> (R, u64) {
        let before = COUNT.with(Cell::get);
        let r = with_mode(Mode::Count, f);
        (r, COUNT.with(Cell::get) - before)
    }

    /// Runs `f` with allocations working again, inside `failing` or
    /// `count`: for the host tests' stand-ins for hardware (a thread for a
    /// kernel stack), whose allocations are not the kernel's.
    pub fn normal<R>(f: impl FnOnce() -> R) -> R {
        with_mode(Mode::Normal, f)
    }

    /// Runs `f` with every allocation on this thread failing. An infallible
    /// allocation inside then aborts the test binary, which fails the run.
    pub fn failing<R>(f: impl FnOnce() -> R) -> R {
        with_mode(Mode::Fail, f)
    }

    #[test]
    fn counts_and_fails_this_thread_only() {
        let (v, n) = count(|| Vec::<u8>::with_capacity(3));
        assert_eq!((v.capacity(), n), (3, 1));
        let (_, n) = count(|| 1 + 1);
        assert_eq!(n, 0);
        let mut v: Vec<u64> = Vec::new();
        assert!(failing(|| v.try_reserve(1)).is_err());
        assert!(v.try_reserve(1).is_ok(), "the failing mode ended");
        let (other, n) = count(|| {
            let other = std::thread::spawn(|| Vec::<u8>::with_capacity(1).capacity());
            other.join().map_err(|_| ())
        });
        assert_eq!(other, Ok(1), "another thread allocates as usual");
        assert!(n >= 1, "spawning a thread allocates on this one");
    }
}
