//! Threads running a plain `fn(u64) -> i64` on a static stack: Linux
//! threads (`clone`), joined through their `CLONE_CHILD_CLEARTID` futex
//! word as `pthread_join` does.

use core::arch::naked_asm;
use core::cell::UnsafeCell;
use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};

use abi::{Errno, decode};

use crate::sys::{exit_thread, futex_wait};

/// Stack space left below the start record; less is surely a mistake.
const MIN_STACK: usize = 1024;

/// Memory for one thread's stack, to be declared as a `static`:
///
/// ```ignore
/// static STACK: rt::Stack<16384> = rt::Stack::new();
/// let t = rt::spawn(worker, 0, STACK.take().unwrap())?;
/// let result = rt::join(t);
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

/// What a thread runs and what it leaves for its joiner, at the top of
/// its own stack.
#[repr(C)]
struct Record {
    f: fn(u64) -> i64,
    arg: u64,
    /// The thread's id while it lives: the kernel stores it before the
    /// thread can run (`CLONE_PARENT_SETTID`), and at the thread's exit
    /// stores 0 and wakes one waiter here (`CLONE_CHILD_CLEARTID`).
    tid: AtomicU32,
    /// `f`'s result, stored before the thread exits.
    result: AtomicI64,
}

/// A thread made by [`spawn`]; [`join`] waits for it and returns its
/// result.
pub struct Thread {
    tid: u32,
    record: &'static Record,
}

impl Thread {
    /// The thread's id, as `gettid` says it in the thread.
    pub fn tid(&self) -> u32 {
        self.tid
    }
}

/// The flags of glibc's `pthread_create`: shared memory, descriptors and
/// signal handlers, a thread of this process, the tid stored for the
/// parent and cleared for the joiner. rt keeps no thread-local storage,
/// so the new FS base is 0, as the main thread's is.
const FLAGS: u32 = abi::clone::GLIBC_PTHREAD;

/// Runs `f(arg)` in a new thread on `stack` (`clone`). The stack is
/// consumed even if the kernel refuses the thread.
pub fn spawn(f: fn(u64) -> i64, arg: u64, stack: &'static mut [u8]) -> Result<Thread, Errno> {
    // The record goes at the top, 16-byte aligned; the stack grows down from it.
    let base = stack.as_mut_ptr();
    let end = base as usize + stack.len();
    let at = (end.checked_sub(size_of::<Record>()).ok_or(Errno::EINVAL)?) & !15;
    if at < base as usize + MIN_STACK {
        return Err(Errno::EINVAL);
    }
    const { assert!(align_of::<Record>() <= 16) };
    let ptr = base.wrapping_add(at - base as usize).cast::<Record>();
    // SAFETY: `ptr` lies inside `stack` (checked above), is aligned for
    // `Record`, and the slice is ours alone.
    unsafe {
        ptr.write(Record {
            f,
            arg,
            tid: AtomicU32::new(u32::MAX),
            result: AtomicI64::new(0),
        })
    };
    // SAFETY: initialised just above; the stack is 'static and given up
    // to the thread, which only reads `f` and `arg` and stores `result`
    // and (through the kernel) `tid`, all through shared atomics.
    let record: &'static Record = unsafe { &*ptr };
    let tid_word = record.tid.as_ptr() as u64;
    // SAFETY: the memory below the record is ours for good ('static,
    // mutably borrowed and given up here): the child's stack; the kernel
    // writes only the tid word, an atomic we own.
    let ret = unsafe { clone_thread(FLAGS.into(), at as u64, tid_word, tid_word, 0, ptr as u64) };
    let tid = decode(ret)? as u32;
    Ok(Thread { tid, record })
}

/// Waits for `thread` to exit and returns its result: a futex wait on its
/// tid word until the kernel's exit-time store makes it 0 (how
/// `pthread_join` works). The wait is a shared one because the kernel's
/// wake at exit is.
pub fn join(thread: Thread) -> i64 {
    let word = &thread.record.tid;
    loop {
        let tid = word.load(Ordering::Acquire);
        if tid == 0 {
            break;
        }
        // EAGAIN (it changed already) and EINTR only send us round again.
        let _ = futex_wait(word, tid, None, false);
    }
    thread.record.result.load(Ordering::Acquire)
}

/// `clone(flags, stack, ptid, ctid, tls)`; the child, on `stack`, calls
/// `thread_main(record)`. The parent returns the raw result.
///
/// # Safety
/// `stack` must be memory the child may use as its stack alone, with a
/// `Record` at `record`.
#[unsafe(naked)]
unsafe extern "C" fn clone_thread(
    flags: u64,
    stack: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
    record: u64,
) -> u64 {
    naked_asm!(
        // SysV puts the fourth argument in rcx, the kernel wants it in r10.
        // r9 (the record) is no argument of clone: the child finds it
        // there, since it starts with the parent's registers.
        "mov r10, rcx",
        "mov eax, {clone}",
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "xor ebp, ebp",
        "mov rdi, r9",
        // rsp = stack, not as a call would leave it: realign so that
        // `thread_main` sees the SysV alignment after the call.
        "and rsp, -16",
        "call {main}",
        "ud2",
        "2:",
        "ret",
        clone = const abi::nr::CLONE,
        main = sym thread_main,
    )
}

extern "C" fn thread_main(record: *const Record) -> ! {
    // SAFETY: `spawn` wrote a `Record` here, above this thread's stack,
    // and keeps it for good.
    let record = unsafe { &*record };
    let result = (record.f)(record.arg);
    record.result.store(result, Ordering::Release);
    exit_thread(result)
}
