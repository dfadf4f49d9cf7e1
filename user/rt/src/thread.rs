//! Threads running a plain `fn(u64) -> i64` on a static stack.

use core::arch::naked_asm;
use core::cell::UnsafeCell;
use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use abi::Errno;

use crate::sys::{exit_thread, spawn_thread};

/// Stack space left below the start record; less is surely a mistake.
const MIN_STACK: usize = 1024;

/// Memory for one thread's stack, to be declared as a `static`:
///
/// ```ignore
/// static STACK: rt::Stack<16384> = rt::Stack::new();
/// rt::spawn(worker, 0, STACK.take().unwrap())?;
/// ```
#[repr(C, align(16))]
pub struct Stack<const N: usize> {
    // First, so the memory shares the struct's 16-byte alignment.
    mem: UnsafeCell<[u8; N]>,
    taken: AtomicBool,
}

// SAFETY: the memory is reachable only through `take`, which hands it out
// once; the flag is atomic.
unsafe impl<const N: usize> Sync for Stack<N> {}

impl<const N: usize> Stack<N> {
    pub const fn new() -> Self {
        Stack {
            mem: UnsafeCell::new([0; N]),
            taken: AtomicBool::new(false),
        }
    }

    /// The memory, the first time; `None` afterwards.
    #[expect(
        clippy::mut_from_ref,
        reason = "the atomic flag hands the memory out once, like a OnceCell"
    )]
    pub fn take(&'static self) -> Option<&'static mut [u8]> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the flag makes this the only reference ever made to `mem`.
        Some(unsafe { &mut *self.mem.get() })
    }
}

impl<const N: usize> Default for Stack<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// `N` thread stacks of `SIZE` bytes each, as one `static`, each handed out
/// once: for programs that make many threads.
#[repr(C, align(16))]
pub struct StackPool<const N: usize, const SIZE: usize> {
    mem: UnsafeCell<[[u8; SIZE]; N]>,
    next: AtomicUsize,
}

// SAFETY: each stack is reachable only through `take`, which hands out
// every index once; the counter is atomic.
unsafe impl<const N: usize, const SIZE: usize> Sync for StackPool<N, SIZE> {}

impl<const N: usize, const SIZE: usize> StackPool<N, SIZE> {
    pub const fn new() -> Self {
        // Each stack starts 16-byte aligned only if the size keeps it so.
        const { assert!(SIZE.is_multiple_of(16)) };
        StackPool {
            mem: UnsafeCell::new([[0; SIZE]; N]),
            next: AtomicUsize::new(0),
        }
    }

    /// The next unused stack; `None` once all are taken.
    #[expect(
        clippy::mut_from_ref,
        reason = "the atomic counter hands each stack out once"
    )]
    pub fn take(&'static self) -> Option<&'static mut [u8]> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= N {
            return None;
        }
        // SAFETY: index `i` is handed out once, so this is the only
        // reference ever made to that stack.
        Some(unsafe { &mut (*self.mem.get())[i] })
    }
}

impl<const N: usize, const SIZE: usize> Default for StackPool<N, SIZE> {
    fn default() -> Self {
        Self::new()
    }
}

/// What the new thread runs, stored at the top of its own stack.
struct Start {
    f: fn(u64) -> i64,
    arg: u64,
}

/// Runs `f(arg)` in a new thread on `stack`; the thread exits with `f`'s
/// result, which [`crate::wait`] returns. The stack is consumed even if the
/// kernel refuses the thread.
pub fn spawn(f: fn(u64) -> i64, arg: u64, stack: &'static mut [u8]) -> Result<u32, Errno> {
    // The record goes at the top, 16-byte aligned; the stack grows down from it.
    let base = stack.as_mut_ptr();
    let end = base as usize + stack.len();
    let record = (end.checked_sub(size_of::<Start>()).ok_or(Errno::EINVAL)?) & !15;
    if record < base as usize + MIN_STACK {
        return Err(Errno::EINVAL);
    }
    const { assert!(align_of::<Start>() <= 16) };
    let start = base.wrapping_add(record - base as usize).cast::<Start>();
    // SAFETY: `start` lies inside `stack` (checked above), is aligned for
    // `Start`, and the slice is ours alone.
    unsafe { start.write(Start { f, arg }) };
    // SAFETY: the memory below the record is ours for good ('static, mutably
    // borrowed and given up here); the thread is its only user.
    unsafe { spawn_thread(thread_entry, record as u64, start as u64) }
}

/// Where every `spawn` thread starts, with `rdi` = its `Start` record.
#[unsafe(naked)]
extern "C" fn thread_entry(start: u64) -> ! {
    naked_asm!(
        "xor ebp, ebp",
        // The kernel jumps here with rsp = stack_top, not as a call would
        // leave it. Realign (whatever we were given) so that `thread_main`
        // sees the SysV alignment after the call.
        "and rsp, -16",
        "call {main}",
        "ud2",
        main = sym thread_main,
    )
}

extern "C" fn thread_main(start: *const Start) -> ! {
    // SAFETY: `spawn` wrote a `Start` here, above this thread's stack, and
    // nothing else touches it.
    let Start { f, arg } = unsafe { start.read() };
    exit_thread(f(arg))
}
