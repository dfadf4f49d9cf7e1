//! A model-checking system-call fuzzer: `fuzz SEED CALLS [SWITCH...]`.
//!
//! Makes CALLS random system calls (0: until killed) of every kind in
//! `abi::nr`, with valid and hostile arguments, and predicts each result
//! exactly from a model of its own state (thread.rs, model.rs): the
//! descriptor table (the kernel picks the lowest free number; dups share
//! an end, close-on-exec is per descriptor), each pipe's buffered bytes,
//! capacity, open ends and their O_NONBLOCK, its helper threads. Every call is made
//! through check.rs, which fails the run if the kernel changed any
//! register but rax, rcx and r11. Memory the kernel writes is painted
//! around the target first and checked byte by byte after.
//!
//! All decisions come from one xorshift generator seeded with SEED, and
//! none depends on what the kernel chose (tids, times), so a failure
//! repeats with the same arguments. On the first failure it prints
//! `fuzz FAIL ...` lines (seed, call index, the call with its arguments,
//! expected and actual result, why, the calls before) and exits 1; else
//! `fuzz ... ok` and exits 0. Exit 2: bad arguments.
//!
//! What the model cannot predict is never asked for (each rule is at the
//! code it concerns):
//! - a blocking read of an empty pipe whose write end is open, or a
//!   blocking write of n bytes to a pipe with room for fewer whose read
//!   end is open, would block: it is made only after spawning a helper
//!   that does the opposite transfer (a "rendezvous": it writes at most
//!   PIPE_BUF bytes, one atomic step; or reads at least the n - room
//!   bytes the write lacks), else skipped. Non-blocking ends are
//!   predicted directly (EAGAIN, or a partial write);
//! - a pipe holds at most MODEL_BYTES in the model, so a pipe grown past
//!   it is never filled past it; growth past CAPACITY_BUDGET in all is not
//!   asked for (ENOMEM cannot be predicted);
//! - a valid write to the console prints: rare, and only a fixed line;
//! - fd 1 is never closed or replaced by a dup: it carries the report;
//! - a pipe that the kernel must refuse for its pointer is made only by
//!   the main thread, which alone makes descriptors and so knows whether
//!   EMFILE (judged first) comes instead;
//! - a writev whose bad iovec array starts in memory whose bytes may
//!   change under the call (the stack) is not made: the kernel reads the
//!   entries in order, and a negative length before the bad part is
//!   EINVAL;
//! - sleeps are short; `exit` is made only by helpers and at the end;
//! - helpers make only calls whose result no other thread can change
//!   (thread.rs `stateless`), besides the one job they were spawned for
//!   (helper.rs `Job`): a rendezvous transfer, a pipe call that the main
//!   thread's close ends (EOF, EPIPE) whatever the order, or a wait for
//!   another helper, which the main thread then never waits for itself;
//! - a descriptor a helper uses is neither closed nor replaced (dup2)
//!   until the helper is reaped, and a helper's pipe call that the main
//!   thread's close ends is only started on a blocking end with every
//!   descriptor of the other end closed right after (so O_NONBLOCK set
//!   later cannot change it: EOF and EPIPE come first);
//! - while a helper may or may not have reaped another, the thread count
//!   is uncertain, and a valid spawn_thread that could hit the limit of
//!   64 is skipped (EAGAIN is predicted only when sure);
//! - a thread changes only its own mask, alternate stack, affinity and
//!   the action of the one signal it owns, and puts each back before its
//!   step ends; it signals only itself or its own process, with signals
//!   that are dropped as they are sent or that it blocks first (the
//!   sharing out of the signals is at the top of signals.rs); it names
//!   no other thread but by a tid that cannot be one;
//! - which CPU a thread is on is the scheduler's choice: getcpu is
//!   predicted as one the thread may use (that one, when pinned to one).
//!
//! Switches turn on checks that fail on the current kernel, so that the
//! suite stays green while the bug is open (see README.md, "Fuzzer").
#![no_std]
#![no_main]

mod buffers;
mod check;
mod cpus;
mod helper;
mod linux_threads;
mod mem;
mod model;
mod rng;
mod signals;
mod space;
mod thread;

use core::cell::UnsafeCell;
use core::ptr;

use rt::abi::{Errno, IOV_MAX, Stat, TASK_SIZE_MAX, USER_END, Winsize, fcntl, ioctl, nr, o, stat};
use rt::{Args, println};

use helper::{DATA_BYTES, FAILED, Job, SPARE};
use model::{CAPACITY_BUDGET, File, MODEL_BYTES, Model};
use rng::Rng;
use space::{Dir, Region, Space};
use thread::{Checked, Expect, MAX_FDS, MAX_RW, PIPE_BUF, Switches, Thread, Why};

rt::entry!(main);

/// The main thread's buffer: write sources are filled with fresh random
/// bytes here, read destinations are painted here. Twenty pages, so a
/// transfer of more than a default pipe's 64 KiB fits.
const BUF_BYTES: usize = 20 * 4096;

#[repr(C, align(4096))]
struct Buf(UnsafeCell<[u8; BUF_BYTES]>);

// SAFETY: only the main thread touches it (helpers use their slots).
unsafe impl Sync for Buf {}

static BUF: Buf = Buf(UnsafeCell::new([0; BUF_BYTES]));

/// Read-only bytes (rodata) with known contents: a valid source for the
/// kernel to read, an invalid destination.
static RO: [u8; 512] = ro_bytes();

const fn ro_bytes() -> [u8; 512] {
    let mut b = [0u8; 512];
    let mut i = 0;
    while i < b.len() {
        b[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    b
}

/// The only text a valid console write sends: whole lines keep the log
/// readable; the bad bytes check the kernel copes with invalid UTF-8.
static CONSOLE_LINE: &[u8] = b"fuzz: console write \xff\xfe(invalid UTF-8)\n";

unsafe extern "C" {
    /// The end of .bss, defined by the linker.
    static _end: u8;
}

/// The address space as the fuzzer knows it.
pub fn space() -> Space {
    let ro = RO.as_ptr() as u64;
    let buf = BUF.0.get() as u64;
    Space::new(
        Region::new(ro, ro + RO.len() as u64),
        [Region::new(buf, buf + BUF_BYTES as u64), helper::region()],
        (&raw const _end) as u64,
    )
}

/// Calls between changes of the mix, so that runs reach the limits (64
/// descriptors, 64 threads, full pipes) and come back from them.
const PHASE_CALLS: u64 = 1500;

/// Weights of the main thread's operations, one row per phase.
const OPS: usize = 16;
#[rustfmt::skip]
const PHASES: [[u32; OPS]; 9] = [
    // write read pipe close spawn wait gettid yield time sleep unknown stateless dup fcntl info mem
    [200, 200, 60, 60, 50, 50, 30, 30, 30, 4, 30, 60, 40, 60, 40, 60],       // balanced
    [150, 150, 200, 20, 30, 40, 20, 20, 20, 2, 20, 40, 120, 30, 20, 20],     // fill the descriptor table
    [150, 200, 20, 200, 30, 60, 20, 20, 20, 2, 20, 40, 20, 40, 20, 20],      // close and drain
    [100, 100, 40, 40, 250, 30, 20, 20, 20, 2, 20, 40, 20, 30, 20, 20],      // fill the thread table
    [100, 100, 40, 40, 30, 250, 20, 20, 20, 2, 20, 40, 20, 30, 20, 20],      // reap
    [350, 350, 40, 30, 30, 30, 20, 20, 20, 2, 20, 20, 30, 60, 30, 20],       // transfers
    [150, 150, 60, 40, 30, 30, 20, 20, 20, 2, 20, 40, 100, 200, 100, 20],    // descriptors and flags
    [400, 100, 20, 20, 60, 40, 20, 20, 20, 2, 20, 20, 20, 60, 20, 20],       // fill pipes
    [60, 60, 10, 10, 20, 20, 10, 10, 10, 1, 10, 30, 10, 10, 10, 500],        // memory
];

#[derive(Default)]
struct Stats {
    threads: u64,
    helper_calls: u64,
    rendezvous: u64,
    bytes_written: u64,
    bytes_read: u64,
    pipes: u64,
    efault: u64,
    ebadf: u64,
    epipe: u64,
    eof: u64,
    emfile: u64,
    eagain: u64,
    einval: u64,
    ebusy: u64,
    eperm: u64,
    enotty: u64,
    dups: u64,
    fcntls: u64,
    resizes: u64,
    fstats: u64,
    ioctls: u64,
    writevs: u64,
    /// Writes that went in only in part (O_NONBLOCK, no room for all).
    partial: u64,
    /// Blocking writes short of room made through a rendezvous: atomic
    /// ones (at most PIPE_BUF) into a pipe with some room, and larger
    /// ones that must go in pieces.
    waits_atomic: u64,
    waits_large: u64,
    epipe_jobs: u64,
    skipped: u64,
    /// Helpers blocked (or about to be) in a pipe call that our close ends.
    woken_by_close: u64,
    /// Helpers that waited for another helper.
    cross_waits: u64,
    /// Helpers left running at the end, for the kernel to kill.
    left: u64,
    /// Rounds of signals.rs and cpus.rs made by the helpers reaped (the
    /// main thread's are added at the end).
    signal_calls: u64,
    cpu_calls: u64,
}

struct Fuzz {
    seed: u64,
    t: Thread,
    m: &'static mut Model,
    /// A tid reaped by the previous operation: waiting for it again must
    /// be ESRCH. Only for one operation: a tid returns to use only after
    /// the kernel's tid cursor has gone round all 4096 (sched.rs
    /// alloc_tid), which cannot happen between two calls of ours.
    reaped: Option<u64>,
    stats: Stats,
    /// The arena and the heap (mem.rs).
    mem_model: mem::Mem,
}

fn usage() -> i64 {
    println!("fuzz: usage: fuzz SEED CALLS [trace]  (CALLS 0: until killed)");
    2
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn main(args: Args) -> i64 {
    let (Some(seed), Some(calls)) = (
        args.get(0).and_then(parse_u64),
        args.get(1).and_then(parse_u64),
    ) else {
        return usage();
    };
    // The model expects EPIPE from writes that find no reader.
    if rt::ignore_signal(rt::abi::sig::SIGPIPE).is_err() {
        println!("fuzz: cannot ignore SIGPIPE");
        return 1;
    }
    let mut switches = Switches::default();
    for word in args.iter().skip(2) {
        match word {
            "trace" => switches.trace = true,
            _ => return usage(),
        }
    }
    let buf = space().owned[0];
    let mut fuzz = Fuzz {
        seed,
        t: Thread::new(Rng::new(seed), space(), buf, true, switches),
        // SAFETY: the only call, from the main thread.
        m: unsafe { Model::get() },
        reaped: None,
        stats: Stats::default(),
        mem_model: mem::Mem::new(),
    };
    match calls {
        0 => println!("fuzz seed={seed} calls=0 (until killed)"),
        _ => println!("fuzz seed={seed} calls={calls}"),
    }
    match fuzz.run(calls) {
        Ok(ns) => {
            fuzz.summary(ns);
            0
        }
        Err(f) => {
            fuzz.t
                .report(seed, "main", &f, f.rec.map(|rec| rec.index + 1));
            1
        }
    }
}

impl Fuzz {
    fn run(&mut self, calls: u64) -> Checked<u64> {
        let tid = self.t.learn_tid()?;
        // The main thread's tid is the pid; the parent is whoever started
        // us. Every later getpid and getppid, in any thread, must agree.
        // SAFETY: neither takes a pointer.
        let pid = unsafe { self.t.call(nr::GETPID, &[], Expect::Ret(tid))? };
        // SAFETY: as above.
        let ppid = unsafe { self.t.call(nr::GETPPID, &[], Expect::AtLeast(0))? };
        thread::set_ids(pid, ppid);
        // What every thread starts from and puts back: the main thread's
        // signal mask and affinity as the program began.
        self.t.sig_own = signals::owned_signal(0);
        self.t.learn_signals()?;
        self.t.learn_cpus()?;
        let start = self.t.time()?;
        self.paint_slack();
        let mut phase = 0;
        let mut next_phase = 0;
        while calls == 0 || self.t.calls < calls {
            if self.t.calls >= next_phase {
                phase = self.t.rng.below(PHASES.len() as u64) as usize;
                next_phase = self.t.calls + PHASE_CALLS;
            }
            let op = self.t.rng.weighted(&PHASES[phase]);
            self.step(op)?;
        }
        self.finish()?;
        Ok(self.t.time()? - start)
    }

    fn step(&mut self, op: usize) -> Checked<()> {
        let reaped = self.reaped.take();
        let spawner = helper::spawner();
        match op {
            0 => self.write(),
            1 => self.read(),
            2 => self.pipe(),
            3 => self.close(),
            4 => self.spawn(),
            5 => self.wait(reaped),
            6 => self.t.gettid(),
            7 => {
                // SAFETY: sched_yield takes no pointer.
                unsafe { self.t.call(nr::SCHED_YIELD, &[], Expect::Ret(0))? };
                Ok(())
            }
            8 => self.t.time().map(drop),
            9 => self.t.sleep(),
            10 => self.t.unknown(),
            11 => {
                // Only this thread makes descriptors: it knows whether a
                // pipe would find room for both ends (EMFILE first).
                self.t.pipe_room = Some(self.m.open_count() + 2 <= MAX_FDS as usize);
                self.t.stateless(&spawner)
            }
            12 => self.dup(),
            13 => self.fcntl(),
            14 => self.info(),
            _ => self.mem(),
        }
    }

    // --- descriptors --------------------------------------------------------

    /// A descriptor for a read or a write (`want` says which pipe end is
    /// the right kind): mostly the right kind, else any open one, a closed
    /// one, the console's, or one that is never open.
    fn pick_fd(&mut self, want: fn(File) -> bool) -> u64 {
        let fd = match self.t.rng.below(20) {
            0..=3 => self.fullest_fd(want),
            4..=10 => self.random_fd(&|f| f.is_some_and(want)),
            11..=13 => self.random_fd(&|f| f.is_some()),
            14..=15 => self.random_fd(&|f| f.is_none()),
            16 => Some(self.t.rng.range(0, 2) as usize),
            _ => None,
        };
        match fd {
            // A helper's descriptor is its own until it is reaped.
            Some(fd) if !self.m.busy(fd as u64) => fd as u64,
            _ => self.t.never_open_fd(),
        }
    }

    /// A descriptor of the right kind on the pipe with the least room, so
    /// that pipes fill (a 64 KiB pipe rarely does by chance) and the
    /// paths of a full pipe and of one short of room come up.
    fn fullest_fd(&mut self, want: fn(File) -> bool) -> Option<usize> {
        let m = &*self.m;
        (0..m.fds.len())
            .filter(|&fd| m.fds[fd].is_some_and(want) && !m.busy(fd as u64))
            .min_by_key(|&fd| match m.fds[fd] {
                Some(File::Read(p) | File::Write(p)) => m.pipes[p].room(),
                _ => usize::MAX,
            })
    }

    /// A descriptor number below 64 whose model entry passes `ok`.
    fn random_fd(&mut self, ok: &dyn Fn(Option<File>) -> bool) -> Option<usize> {
        let n = self.m.fds.iter().filter(|f| ok(**f)).count();
        if n == 0 {
            return None;
        }
        let nth = self.t.rng.below(n as u64) as usize;
        (0..self.m.fds.len())
            .filter(|&fd| ok(self.m.fds[fd]))
            .nth(nth)
    }

    fn write(&mut self) -> Checked<()> {
        let fd = self.pick_fd(|f| matches!(f, File::Write(_)));
        let file = self.m.file(fd);
        if self.t.rng.chance(1, 4) {
            return self.writev(fd, file);
        }
        if file == Some(File::Console) {
            return self.write_console(fd);
        }
        let len = match file {
            // Every byte costs time: a room's worth only when the room is
            // small (a small pipe, F_SETPIPE_SZ's, or a nearly full one).
            Some(File::Write(p))
                if self.t.rng.chance(1, 3) && self.m.pipes[p].room() <= 4 * PIPE_BUF as usize =>
            {
                self.len_near_room(p)
            }
            _ => self.t.gen_len(),
        };
        let eff = len.min(MAX_RW);
        let (ptr, ok) = self.t.gen_ptr(eff, Dir::KernelReads);
        if ok {
            self.fill_random(ptr, eff);
        }
        // The descriptor before the pointer (Linux's order).
        let expect = if !matches!(file, Some(File::Write(_))) {
            Expect::Err(Errno::EBADF)
        } else if !ok {
            Expect::Err(Errno::EFAULT)
        } else {
            match self.write_expect(file, eff)? {
                Some(e) => e,
                None => {
                    self.stats.skipped += 1;
                    return Ok(());
                }
            }
        };
        // SAFETY: the kernel only reads from `ptr`.
        unsafe { self.t.call(nr::WRITE, &[fd, ptr, len], expect)? };
        self.count(expect);
        if let (Expect::Ret(n), Some(File::Write(p))) = (expect, file) {
            self.note_partial(n, eff);
            let pipe = &mut self.m.pipes[p];
            for i in 0..n {
                // SAFETY: the kernel just read these bytes: they are mapped
                // and readable, and the write did not change them.
                pipe.push(unsafe { ptr::read_volatile((ptr + i) as *const u8) });
            }
            self.stats.bytes_written += n;
        }
        Ok(())
    }

    /// What a write of `eff` readable bytes to `file` (not the console)
    /// must return (docs/abi.md "write"), arranging a rendezvous when it
    /// would block; None when it cannot be predicted (then it is skipped).
    fn write_expect(&mut self, file: Option<File>, eff: u64) -> Checked<Option<Expect>> {
        let p = match file {
            Some(File::Write(p)) => p,
            _ => return Ok(Some(Expect::Err(Errno::EBADF))),
        };
        if eff == 0 {
            return Ok(Some(Expect::Ret(0)));
        }
        let pipe = &self.m.pipes[p];
        if !pipe.read_open() {
            return Ok(Some(Expect::Err(Errno::EPIPE)));
        }
        let (room, len) = (pipe.room() as u64, pipe.len as u64);
        let store = MODEL_BYTES as u64;
        if room >= eff {
            return Ok((len + eff <= store).then_some(Expect::Ret(eff)));
        }
        if pipe.nonblocking(false) {
            // Up to PIPE_BUF: all or nothing. More: what fits, if any.
            if eff <= PIPE_BUF || room == 0 {
                return Ok(Some(Expect::Err(Errno::EAGAIN)));
            }
            return Ok((len + room <= store).then_some(Expect::Ret(room)));
        }
        // Blocking, and short of room: a helper must read first, at least
        // what the write lacks (and what the model could not keep).
        let need = (eff - room).max((len + eff).saturating_sub(store));
        let most = len.min(DATA_BYTES as u64);
        if need > most || !self.rendezvous_reader(p, need, most)? {
            return Ok(None);
        }
        if eff > PIPE_BUF {
            self.stats.waits_large += 1;
        } else if room > 0 {
            self.stats.waits_atomic += 1;
        }
        Ok(Some(Expect::Ret(eff)))
    }

    /// A length about the room pipe `p` has: a little less (it fills), or
    /// up to PIPE_BUF more (it would block, or go in part; a rendezvous
    /// helper can read that much): pipes of 64 KiB seldom fill by chance.
    /// At most BUF's size.
    fn len_near_room(&mut self, p: usize) -> u64 {
        let room = self.m.pipes[p].room() as u64;
        let r = &mut self.t.rng;
        let len = match r.below(3) {
            0 => room.saturating_sub(r.below(64)),
            _ => room + r.range(1, PIPE_BUF),
        };
        len.clamp(1, BUF_BYTES as u64)
    }

    fn note_partial(&mut self, n: u64, eff: u64) {
        if n < eff {
            self.stats.partial += 1;
        }
    }

    /// writev: an iovec array in BUF (or a bad one), buffers anywhere a
    /// write's may be; checked as the kernel does (docs/abi.md): a closed
    /// descriptor, the count, the array, negative lengths, the buffers,
    /// then a descriptor not open for writing.
    fn writev(&mut self, fd: u64, file: Option<File>) -> Checked<()> {
        self.stats.writevs += 1;
        let console = file == Some(File::Console);
        let r = &mut self.t.rng;
        let count: u64 = match r.below(40) {
            0 => u64::from(IOV_MAX),
            1 => r.range(u64::from(IOV_MAX) + 1, 1 << 33),
            2 => 0,
            _ => r.range(1, 8),
        };
        let wide = count > u64::from(IOV_MAX) && count >> 32 != 0;
        let (count_low, count_reg) = if wide {
            // An unsigned int: the high half is dropped, so the count
            // becomes its low half (kept at most IOV_MAX here).
            let low = r.below(9);
            (low, count << 32 | low)
        } else {
            (count, count)
        };
        let array_len = count_low.min(u64::from(IOV_MAX)) * 16;
        let buf = self.t.space.owned[0];
        let (array, array_ok) = if array_len > 0 && self.t.rng.chance(1, 10) {
            self.t.gen_ptr(array_len, Dir::KernelReads)
        } else {
            (
                buf.start + self.t.rng.below(buf.len() - array_len + 1),
                true,
            )
        };
        let array_ours = array_len == 0
            || buf.clip(array, array + array_len) == Some(Region::new(array, array + array_len));
        let listed = if array_ours && count_low <= u64::from(IOV_MAX) {
            count_low
        } else {
            0
        };
        // The buffers first, filled; then the array over them, so a
        // buffer that overlaps it sends the array's bytes, as read back.
        let mut segs = [(0u64, 0u64); 8];
        let mut negative = false;
        let mut bad = false;
        let mut total = 0u64;
        for seg in segs.iter_mut().take(listed as usize) {
            let (base, len) = if console {
                let (base, len, ok) = self.console_segment();
                bad |= !ok;
                (base, len)
            } else {
                // Mostly small and good: one bad buffer of several spoils
                // the call, and every good byte is filled and checked.
                let len = match self.t.rng.below(40) {
                    0 => 1 << 63 | self.t.rng.next(),
                    1 => self.t.gen_len(),
                    2..=5 => 0,
                    6..=9 => self.t.rng.range(PIPE_BUF / 2, 2 * PIPE_BUF),
                    _ => self.t.rng.range(1, 512),
                };
                if (len as i64) < 0 {
                    (self.t.rng.next(), len)
                } else {
                    let eff = len.min(MAX_RW - total);
                    let (base, ok) = if self.t.rng.chance(3, 4) && eff <= buf.len() {
                        (buf.start + self.t.rng.below(buf.len() - eff + 1), true)
                    } else {
                        self.t.gen_ptr(eff, Dir::KernelReads)
                    };
                    if ok {
                        self.fill_random(base, eff);
                    }
                    bad |= !ok;
                    (base, len)
                }
            };
            negative |= (len as i64) < 0;
            if (len as i64) >= 0 {
                total += len.min(MAX_RW - total);
            }
            *seg = (base, len);
        }
        for i in 0..listed {
            // Past the first eight: empty, at any user address (and now
            // and then anywhere, which an empty buffer may not be).
            let (base, len) = match segs.get(i as usize) {
                Some(&seg) => seg,
                None if self.t.rng.chance(1, 256) => (self.t.rng.next(), 0),
                None => (self.t.rng.below(TASK_SIZE_MAX + 1), 0),
            };
            bad |= i >= segs.len() as u64 && !self.t.predict(base, 0, Dir::KernelReads);
            let at = (array + 16 * i) as *mut u64;
            // SAFETY: inside BUF, ours alone; nothing borrows it.
            unsafe {
                at.write_unaligned(base);
                at.add(1).write_unaligned(len);
            }
        }
        let expect = if file.is_none() {
            Expect::Err(Errno::EBADF)
        } else if count_low > u64::from(IOV_MAX) {
            Expect::Err(Errno::EINVAL)
        } else if !array_ok {
            match self.bad_array_errno(array, count_low) {
                Some(e) => Expect::Err(e),
                None => {
                    self.stats.skipped += 1;
                    return Ok(());
                }
            }
        } else if !array_ours {
            // A readable array we did not write (rodata, text): unknown
            // lengths. Not made.
            return Ok(());
        } else if negative {
            Expect::Err(Errno::EINVAL)
        } else if bad {
            Expect::Err(Errno::EFAULT)
        } else if matches!(file, Some(File::Read(_))) {
            // Not open for writing: judged after the array, as on Linux.
            Expect::Err(Errno::EBADF)
        } else if console {
            Expect::Ret(total)
        } else {
            match self.write_expect(file, total)? {
                Some(e) => e,
                None => {
                    self.stats.skipped += 1;
                    return Ok(());
                }
            }
        };
        // SAFETY: the kernel only reads the array and the buffers.
        unsafe { self.t.call(nr::WRITEV, &[fd, array, count_reg], expect)? };
        self.count(expect);
        if let (Expect::Ret(n), Some(File::Write(p))) = (expect, file) {
            self.note_partial(n, total);
            let mut left = n;
            for &(base, len) in segs.iter().take(listed as usize) {
                let k = len.min(left);
                for i in 0..k {
                    // SAFETY: the kernel just read these bytes.
                    let byte = unsafe { ptr::read_volatile((base + i) as *const u8) };
                    self.m.pipes[p].push(byte);
                }
                left -= k;
            }
            self.stats.bytes_written += n;
        }
        Ok(())
    }

    /// What writev makes of an array of `count` iovecs at `array` that it
    /// cannot read whole: EFAULT if the array is not in the user half;
    /// else the entries are read in order (Linux's order too), so EFAULT
    /// at the first that cannot be read, or EINVAL at an earlier one with
    /// a negative length. None when an entry it reads lies in memory whose
    /// bytes may change under us (the stack), or in memory the fuzzer does
    /// not know (an array straddling the slack's end may start back in
    /// the model's statics: readable, their bytes anything), which is not
    /// asked.
    fn bad_array_errno(&self, array: u64, count: u64) -> Option<Errno> {
        let user = array
            .checked_add(16 * count)
            .is_some_and(|end| end <= USER_END);
        if !user {
            return Some(Errno::EFAULT);
        }
        let stable = [self.t.space.slack, self.t.space.ro];
        for i in 0..count {
            let entry = array + 16 * i;
            match self.t.space.predict(entry, 16, Dir::KernelReads) {
                Some(false) => return Some(Errno::EFAULT),
                Some(true) => {}
                None => return None,
            }
            if !stable
                .iter()
                .any(|r| r.clip(entry, entry + 16) == Some(Region::new(entry, entry + 16)))
            {
                return None;
            }
            // SAFETY: readable (predicted so), in the slack or rodata,
            // which no Rust reference covers mutably.
            let len = unsafe { ptr::read_volatile((entry + 8) as *const [u8; 8]) };
            if (u64::from_le_bytes(len) as i64) < 0 {
                return Some(Errno::EINVAL);
            }
        }
        // Some entry was unreadable, or the array would have been ok.
        Some(Errno::EFAULT)
    }

    /// A buffer of a writev to the console, and whether it is good: the
    /// console prints what it gets, so a good one is the start of
    /// CONSOLE_LINE (rarely) or empty, and the rest are bad.
    fn console_segment(&mut self) -> (u64, u64, bool) {
        let r = self.t.rng.below(64);
        if r == 0 {
            let line = CONSOLE_LINE.as_ptr() as u64;
            (line, self.t.rng.below(CONSOLE_LINE.len() as u64), true)
        } else if r < 40 {
            // Empty: no memory, but a user address (mostly).
            let base = if self.t.rng.chance(1, 8) {
                self.t.rng.next()
            } else {
                self.t.rng.below(TASK_SIZE_MAX + 1)
            };
            (base, 0, self.t.predict(base, 0, Dir::KernelReads))
        } else {
            let len = self.t.rng.range(2, 64);
            loop {
                let p = self.t.space.hostile(&mut self.t.rng, len);
                if !self.t.predict(p, len, Dir::KernelReads) {
                    break (p, len, false);
                }
            }
        }
    }

    /// The console prints what it gets, so valid writes are rare and send
    /// only CONSOLE_LINE; the rest are empty (no memory to check, but the
    /// address must be a user one) or bad.
    fn write_console(&mut self, fd: u64) -> Checked<()> {
        let r = self.t.rng.below(64);
        let (ptr, len, expect) = if r == 0 {
            let len = CONSOLE_LINE.len() as u64;
            (CONSOLE_LINE.as_ptr() as u64, len, Expect::Ret(len))
        } else if r < 16 {
            let ptr = match self.t.rng.below(2) {
                0 => self.t.space.hostile(&mut self.t.rng, 8),
                _ => self.t.gen_ptr(0, Dir::KernelReads).0,
            };
            let expect = if self.t.predict(ptr, 0, Dir::KernelReads) {
                Expect::Ret(0)
            } else {
                Expect::Err(Errno::EFAULT)
            };
            (ptr, 0, expect)
        } else {
            let len = self.t.gen_len().max(2);
            let eff = len.min(MAX_RW);
            let ptr = loop {
                let p = self.t.space.hostile(&mut self.t.rng, eff);
                if !self.t.predict(p, eff, Dir::KernelReads) {
                    break p;
                }
            };
            (ptr, len, Expect::Err(Errno::EFAULT))
        };
        // SAFETY: the kernel only reads from `ptr`.
        unsafe { self.t.call(nr::WRITE, &[fd, ptr, len], expect)? };
        self.count(expect);
        Ok(())
    }

    fn read(&mut self) -> Checked<()> {
        let fd = self.pick_fd(|f| matches!(f, File::Read(_)));
        let file = self.m.file(fd);
        let len = self.t.gen_len();
        let eff = len.min(MAX_RW);
        let (ptr, ok) = self.t.gen_ptr(eff, Dir::KernelWrites);
        // The descriptor before the pointer (Linux's order); the console
        // gives end of file.
        let expect = match file {
            None | Some(File::Write(_)) => Expect::Err(Errno::EBADF),
            _ if !ok => Expect::Err(Errno::EFAULT),
            Some(File::Console) => Expect::Ret(0),
            Some(File::Read(_)) if eff == 0 => Expect::Ret(0),
            Some(File::Read(p)) => {
                let pipe = &self.m.pipes[p];
                if pipe.len == 0 && !pipe.write_open() {
                    Expect::Ret(0)
                } else if pipe.len == 0 && pipe.nonblocking(true) {
                    Expect::Err(Errno::EAGAIN)
                } else {
                    // Empty with a writer: would block us forever,
                    // unless a helper writes.
                    if pipe.len == 0 && !self.rendezvous_writer(p)? {
                        self.stats.skipped += 1;
                        return Ok(());
                    }
                    Expect::Ret(eff.min(self.m.pipes[p].len as u64))
                }
            }
        };
        let salt = self.t.rng.next();
        self.paint(ptr, eff, salt);
        // SAFETY: a valid `ptr` is in BUF or the slack, which nothing
        // borrows; the kernel must write nowhere else.
        unsafe { self.t.call(nr::READ, &[fd, ptr, len], expect)? };
        self.count(expect);
        let n = match (expect, file) {
            (Expect::Ret(n), Some(File::Read(_))) => n,
            _ => 0,
        };
        if n == 0 && expect == Expect::Ret(0) && eff > 0 {
            self.stats.eof += 1;
        }
        let pipe = match file {
            Some(File::Read(p)) => Some(p),
            _ => None,
        };
        let m = &*self.m;
        let want = |i: u64| pipe.map_or(0, |p| m.pipes[p].peek(i as usize));
        self.verify(ptr, eff, n, salt, &want)?;
        if let Some(p) = pipe {
            self.m.pipes[p].pop(n as usize);
        }
        self.stats.bytes_read += n;
        Ok(())
    }

    /// pipe, or pipe2 with flags (good ones, or bad ones refused before
    /// anything else).
    fn pipe(&mut self) -> Checked<()> {
        let (ptr, ok) = self.t.gen_ptr(8, Dir::KernelWrites);
        let r = self.m.lowest_free(None);
        let w = r.and_then(|r| self.m.lowest_free(Some(r)));
        let (call, flags, bad) = match self.t.rng.below(10) {
            0..=3 => (nr::PIPE, 0, false),
            4..=8 => {
                let good = self
                    .t
                    .rng
                    .pick(&[0, o::NONBLOCK, o::CLOEXEC, o::NONBLOCK | o::CLOEXEC]);
                (nr::PIPE2, u64::from(good) | self.t.rng.next() << 32, false)
            }
            _ => {
                let bit = self.t.rng.pick(&[o::DIRECT, 1, o::APPEND, 1 << 31, 0o100]);
                (nr::PIPE2, u64::from(bit | o::NONBLOCK), true)
            }
        };
        // Linux's order: the flags, the descriptors, the pointer.
        let expect = if bad {
            Expect::Err(Errno::EINVAL)
        } else if self.m.open_count() + 2 > MAX_FDS as usize {
            // The kernel refuses when it cannot place both ends.
            Expect::Err(Errno::EMFILE)
        } else if !ok {
            Expect::Err(Errno::EFAULT)
        } else {
            Expect::Ret(0)
        };
        let salt = self.t.rng.next();
        self.paint(ptr, 8, salt);
        // SAFETY: as for read: BUF, the slack, or refused.
        unsafe { self.t.call(call, &[ptr, flags], expect)? };
        self.count(expect);
        let mut fds = [0u8; 8];
        let written = if let (Expect::Ret(0), Some(r), Some(w)) = (expect, r, w) {
            fds[..4].copy_from_slice(&(r as u32).to_le_bytes());
            fds[4..].copy_from_slice(&(w as u32).to_le_bytes());
            let flags = if call == nr::PIPE2 { flags as u32 } else { 0 };
            self.m.add_pipe(r, w, flags);
            self.stats.pipes += 1;
            8
        } else {
            0
        };
        self.verify(ptr, 8, written, salt, &|i| fds[i as usize])
    }

    fn close(&mut self) -> Checked<()> {
        let fd = match self.t.rng.below(20) {
            0..=11 => self.random_fd(&|f| f.is_some()),
            12..=15 => self.random_fd(&|f| f.is_none()),
            16 => Some(2),
            _ => None,
        };
        let fd = match fd {
            // Never fd 1: the report goes there. Nor a helper's.
            Some(fd) if fd != 1 && !self.m.busy(fd as u64) => fd as u64,
            _ => self.t.never_open_fd(),
        };
        let open = self.m.file(fd).is_some();
        let expect = if open {
            Expect::Ret(0)
        } else {
            Expect::Err(Errno::EBADF)
        };
        // SAFETY: close takes no pointer.
        unsafe { self.t.call(nr::CLOSE, &[fd], expect)? };
        self.count(expect);
        if open {
            self.m.close(fd as usize);
        }
        Ok(())
    }

    /// Any descriptor: mostly an open one (a helper's too: the calls that
    /// take this one never change what it names), else a free one or one
    /// that is never open; with noise in the high half of the register.
    fn any_fd(&mut self) -> u64 {
        let fd = match self.t.rng.below(10) {
            0..=7 => self.random_fd(&|f| f.is_some()),
            8 => self.random_fd(&|f| f.is_none()),
            _ => None,
        };
        match fd {
            Some(fd) => fd as u64 | self.wide(),
            None => self.t.never_open_fd(),
        }
    }

    /// Random bits for the high half of an `int` or `unsigned int`.
    fn wide(&mut self) -> u64 {
        match self.t.rng.below(4) {
            0 => self.t.rng.next() << 32,
            _ => 0,
        }
    }

    /// A descriptor to be made to name another file: an open one (never
    /// 1, which carries the report, nor a helper's), a free one, or one
    /// past the limit.
    fn target_fd(&mut self, fd: u64) -> u64 {
        let new = match self.t.rng.below(10) {
            0..=3 => self.random_fd(&|f| f.is_some()),
            4..=6 => self.random_fd(&|f| f.is_none()),
            7 => Some(fd as u32 as usize),
            _ => None,
        };
        match new {
            Some(new) if new != 1 && !self.m.busy(new as u64) && new < MAX_FDS as usize => {
                new as u64 | self.wide()
            }
            _ => self.t.never_open_fd(),
        }
    }

    /// dup, dup2, dup3 and F_DUPFD(_CLOEXEC), with Linux's errors.
    fn dup(&mut self) -> Checked<()> {
        self.stats.dups += 1;
        let fd = self.any_fd();
        let open = self.m.file(fd as u32 as u64).is_some();
        let old = fd as u32 as usize;
        let (call, args, expect, place) = match self.t.rng.below(4) {
            0 => {
                let new = self.m.lowest_free(None);
                let expect = match (open, new) {
                    (false, _) => Expect::Err(Errno::EBADF),
                    (true, None) => Expect::Err(Errno::EMFILE),
                    (true, Some(new)) => Expect::Ret(new as u64),
                };
                (nr::DUP, [fd, 0, 0], expect, new.map(|n| (n, false)))
            }
            1 | 2 => {
                let dup3 = self.t.rng.chance(1, 2);
                let new = self.target_fd(fd);
                let newl = new as u32 as u64;
                let flags = if dup3 && self.t.rng.chance(1, 5) {
                    u64::from(self.t.rng.pick(&[o::NONBLOCK, 1, o::DIRECT, 1 << 30]))
                } else if dup3 {
                    u64::from(self.t.rng.pick(&[0, o::CLOEXEC])) | self.wide()
                } else {
                    0
                };
                let bad_flags = (flags as u32) & !o::CLOEXEC != 0;
                let cloexec = (flags as u32) & o::CLOEXEC != 0;
                let same = newl == old as u64;
                let expect = if dup3 && (bad_flags || same) {
                    Expect::Err(Errno::EINVAL)
                } else if same {
                    // dup2(fd, fd): fd, once known open.
                    if open {
                        Expect::Ret(newl)
                    } else {
                        Expect::Err(Errno::EBADF)
                    }
                } else if newl >= MAX_FDS || !open {
                    Expect::Err(Errno::EBADF)
                } else {
                    Expect::Ret(newl)
                };
                let call = if dup3 { nr::DUP3 } else { nr::DUP2 };
                let place = (!same).then_some((newl as usize, cloexec));
                (call, [fd, new, flags], expect, place)
            }
            _ => {
                let cloexec = self.t.rng.chance(1, 2);
                let cmd = if cloexec {
                    fcntl::F_DUPFD_CLOEXEC
                } else {
                    fcntl::F_DUPFD
                };
                let min = match self.t.rng.below(8) {
                    0 => self.t.rng.range(MAX_FDS, u64::from(u32::MAX)),
                    1 => u64::from(self.t.rng.pick(&[64u32, u32::MAX, 1 << 31])),
                    _ => self.t.rng.below(MAX_FDS),
                };
                let min_reg = min | self.wide();
                let new = self.m.lowest_free_from(min as usize, None);
                let expect = match (open, new) {
                    (false, _) => Expect::Err(Errno::EBADF),
                    _ if min >= MAX_FDS => Expect::Err(Errno::EINVAL),
                    (true, None) => Expect::Err(Errno::EMFILE),
                    (true, Some(new)) => Expect::Ret(new as u64),
                };
                let cmd = u64::from(cmd) | self.wide();
                (
                    nr::FCNTL,
                    [fd, cmd, min_reg],
                    expect,
                    new.map(|n| (n, cloexec)),
                )
            }
        };
        // SAFETY: none of these takes a pointer.
        unsafe { self.t.call(call, &args, expect)? };
        self.count(expect);
        if let (Expect::Ret(_), Some((new, cloexec))) = (expect, place) {
            self.m.dup(old, new, cloexec);
        }
        Ok(())
    }

    /// fcntl's other commands on any descriptor; unknown ones are EINVAL
    /// once the descriptor is known open.
    fn fcntl(&mut self) -> Checked<()> {
        self.stats.fcntls += 1;
        let fd = self.any_fd();
        let file = self.m.file(fd as u32 as u64);
        let fdl = fd as u32 as usize;
        let arg = self.t.rng.next();
        let (cmd, arg) = match self.t.rng.below(12) {
            0 => (fcntl::F_GETFD, arg),
            1 => (fcntl::F_SETFD, self.t.rng.pick(&[0, 1, 0xff, 1 << 32, arg])),
            2 | 3 => (fcntl::F_GETFL, arg),
            4 | 5 => (fcntl::F_SETFL, self.setfl_arg()),
            6 => (fcntl::F_GETPIPE_SZ, arg),
            7 | 8 => (fcntl::F_SETPIPE_SZ, self.pipe_size_arg()),
            _ => {
                let cmd = loop {
                    let c = self.t.fcntl_cmd() as u32;
                    let known = [0, 1, 2, 3, 4, 1030, 1031, 1032];
                    if !known.contains(&c) {
                        break c;
                    }
                };
                (cmd, arg)
            }
        };
        let Some(file) = file else {
            return self.fcntl_call(fd, cmd, arg, Expect::Err(Errno::EBADF));
        };
        let expect = match cmd {
            fcntl::F_GETFD => Expect::Ret(self.m.cloexec[fdl].into()),
            fcntl::F_SETFD => Expect::Ret(0),
            fcntl::F_GETFL => Expect::Ret(self.getfl(file).into()),
            fcntl::F_SETFL if arg as u32 & (o::DIRECT | o::ASYNC) != 0 => {
                Expect::Err(Errno::EINVAL)
            }
            fcntl::F_SETFL => Expect::Ret(0),
            fcntl::F_GETPIPE_SZ | fcntl::F_SETPIPE_SZ => match file {
                File::Console => Expect::Err(Errno::EBADF),
                File::Read(p) | File::Write(p) if cmd == fcntl::F_GETPIPE_SZ => {
                    Expect::Ret(self.m.pipes[p].cap as u64)
                }
                File::Read(p) | File::Write(p) => {
                    let size = round_pipe_size(arg as u32);
                    let pipe = &self.m.pipes[p];
                    if size == 0 {
                        Expect::Err(Errno::EINVAL)
                    } else if size > rt::abi::pipe::MAX_SIZE as u64 {
                        Expect::Err(Errno::EPERM)
                    } else if pipe.len as u64 > size {
                        Expect::Err(Errno::EBUSY)
                    } else if self.m.capacity_held() - pipe.cap + size as usize > CAPACITY_BUDGET {
                        self.stats.skipped += 1;
                        return Ok(());
                    } else {
                        Expect::Ret(size)
                    }
                }
            },
            _ => Expect::Err(Errno::EINVAL),
        };
        self.fcntl_call(fd, cmd, arg, expect)?;
        if let Expect::Ret(v) = expect {
            let flags = arg as u32 & (o::NONBLOCK | o::APPEND | o::NOATIME);
            match (cmd, file) {
                (fcntl::F_SETFD, _) => self.m.cloexec[fdl] = arg as u32 & 1 != 0,
                (fcntl::F_SETFL, File::Console) => self.m.console_flags = flags,
                (fcntl::F_SETFL, File::Read(p)) => self.m.pipes[p].read_flags = flags,
                (fcntl::F_SETFL, File::Write(p)) => self.m.pipes[p].write_flags = flags,
                (fcntl::F_SETPIPE_SZ, File::Read(p) | File::Write(p)) => {
                    self.m.pipes[p].cap = v as usize;
                    self.stats.resizes += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn fcntl_call(&mut self, fd: u64, cmd: u32, arg: u64, expect: Expect) -> Checked<()> {
        // The command is an unsigned int: noise above it must not matter.
        let cmd = u64::from(cmd) | self.wide();
        // SAFETY: none of the commands takes a pointer.
        unsafe { self.t.call(nr::FCNTL, &[fd, cmd, arg], expect)? };
        self.count(expect);
        Ok(())
    }

    /// F_GETFL's answer (docs/abi.md).
    fn getfl(&self, file: File) -> u32 {
        match file {
            File::Console => o::RDWR | self.m.console_flags,
            File::Read(p) => o::RDONLY | self.m.pipes[p].read_flags,
            File::Write(p) => o::WRONLY | self.m.pipes[p].write_flags,
        }
    }

    /// F_SETFL's argument: the settable flags, bits it ignores, and now
    /// and then the two it refuses.
    fn setfl_arg(&mut self) -> u64 {
        let r = &mut self.t.rng;
        let mut flags = 0;
        for f in [o::NONBLOCK, o::NONBLOCK, o::APPEND, o::NOATIME] {
            if r.chance(1, 2) {
                flags |= f;
            }
        }
        if r.chance(1, 4) {
            // Ignored: the access mode, O_CREAT, O_CLOEXEC, O_LARGEFILE.
            flags |= r.pick(&[o::RDWR, o::WRONLY, 0o100, o::CLOEXEC, o::LARGEFILE]);
        }
        if r.chance(1, 10) {
            flags |= r.pick(&[o::DIRECT, o::ASYNC]);
        }
        u64::from(flags) | (r.below(2) * (r.next() << 32))
    }

    /// F_SETPIPE_SZ's argument: sizes around every rounding and limit.
    fn pipe_size_arg(&mut self) -> u64 {
        let r = &mut self.t.rng;
        let size = match r.below(10) {
            0..=4 => r.pick(&[0, 1, 4095, 4096, 4097, 8192, 12288, 16384, 65536]),
            5 => r.pick(&[32768, 131072, 1 << 20]),
            6 => r.pick(&[(1 << 20) + 1, 2 << 20, 1 << 31, (1 << 31) + 1, u32::MAX]),
            _ => r.range(0, 40_000) as u32,
        };
        u64::from(size) | (r.below(2) * (r.next() << 32))
    }

    /// fstat or ioctl on any descriptor.
    fn info(&mut self) -> Checked<()> {
        if self.t.rng.chance(1, 2) {
            self.fstat()
        } else {
            self.ioctl()
        }
    }

    fn fstat(&mut self) -> Checked<()> {
        self.stats.fstats += 1;
        let fd = self.any_fd();
        let file = self.m.file(fd as u32 as u64);
        let size = Stat::SIZE as u64;
        let (ptr, ok) = self.t.gen_ptr(size, Dir::KernelWrites);
        // The descriptor before the pointer (Linux's order).
        let expect = match (file, ok) {
            (None, _) => Expect::Err(Errno::EBADF),
            (Some(_), false) => Expect::Err(Errno::EFAULT),
            (Some(_), true) => Expect::Ret(0),
        };
        let salt = self.t.rng.next();
        self.paint(ptr, size, salt);
        // SAFETY: BUF, the slack, or refused.
        unsafe { self.t.call(nr::FSTAT, &[fd, ptr], expect)? };
        self.count(expect);
        let (Expect::Ret(0), Some(file)) = (expect, file) else {
            return self.verify(ptr, size, 0, salt, &|_| 0);
        };
        let want = match file {
            File::Console => Stat {
                dev: stat::CONSOLE_DEV,
                ino: stat::CONSOLE_INO,
                nlink: 1,
                mode: stat::CONSOLE_MODE,
                rdev: stat::CONSOLE_RDEV,
                blksize: stat::BLKSIZE,
                ..Stat::default()
            },
            File::Read(p) | File::Write(p) => self.pipe_stat(p, ptr)?,
        };
        let bytes = want.to_bytes();
        self.verify(ptr, size, size, salt, &|i| bytes[i as usize])
    }

    /// What fstat of pipe `p` must have written at `ptr`: fixed fields,
    /// and the inode number and time learned from the first fstat (the
    /// inode distinct from every other live pipe's, the three times one
    /// time no later than now).
    fn pipe_stat(&mut self, p: usize, ptr: u64) -> Checked<Stat> {
        let mut raw = [0u8; Stat::SIZE];
        for (i, b) in raw.iter_mut().enumerate() {
            // SAFETY: the kernel just wrote these 144 bytes of ours.
            *b = unsafe { ptr::read_volatile((ptr + i as u64) as *const u8) };
        }
        let got = Stat::from_bytes(&raw);
        let time: [u8; 16] = raw[88..104].try_into().unwrap_or([0; 16]);
        let pipe = &self.m.pipes[p];
        let (ino, t) = match (pipe.ino, pipe.time) {
            (Some(ino), Some(t)) => (ino, t),
            _ => {
                let now = self.t.time()?;
                let ts = rt::abi::Timespec::from_bytes(time);
                if got.ino == 0 || self.m.other_inos(p).any(|i| i == got.ino) {
                    return Err(self.t.fail(Why::Note(
                        "fstat gave a pipe no inode number, or another live pipe's",
                    )));
                }
                if ts.to_ns().is_none_or(|ns| ns > now) || got.atime != ts || got.ctime != ts {
                    return Err(self.t.fail(Why::Note(
                        "fstat gave a pipe times that differ or lie in the future",
                    )));
                }
                let pipe = &mut self.m.pipes[p];
                pipe.ino = Some(got.ino);
                pipe.time = Some(time);
                (got.ino, time)
            }
        };
        let t = rt::abi::Timespec::from_bytes(t);
        Ok(Stat {
            dev: stat::PIPE_DEV,
            ino,
            nlink: 1,
            mode: stat::PIPE_MODE,
            blksize: stat::BLKSIZE,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }

    fn ioctl(&mut self) -> Checked<()> {
        self.stats.ioctls += 1;
        let fd = self.any_fd();
        let file = self.m.file(fd as u32 as u64);
        let known = [
            ioctl::FIONREAD,
            ioctl::TIOCGWINSZ,
            ioctl::FIONBIO,
            ioctl::FIOCLEX,
            ioctl::FIONCLEX,
            ioctl::FIOASYNC,
        ];
        let request = match self.t.rng.below(12) {
            0..=2 => ioctl::FIONREAD,
            3 | 4 => ioctl::TIOCGWINSZ,
            5 => ioctl::FIONBIO,
            6 => self.t.rng.pick(&[ioctl::FIOCLEX, ioctl::FIONCLEX]),
            7 => ioctl::FIOASYNC,
            // TCGETS, TIOCSWINSZ, TIOCINQ's twin TIOCOUTQ: a terminal's.
            8 => self.t.rng.pick(&[0x5401, 0x5414, 0x5411]),
            _ => loop {
                let r = self.t.rng.next() as u32;
                if !known.contains(&r) {
                    break r;
                }
            },
        };
        // FIONBIO and FIOASYNC read an int; the answers are stored.
        let reads = matches!(request, ioctl::FIONBIO | ioctl::FIOASYNC);
        let size = match request {
            ioctl::FIONREAD | ioctl::FIONBIO | ioctl::FIOASYNC => 4,
            _ => 8,
        };
        let dir = if reads {
            Dir::KernelReads
        } else {
            Dir::KernelWrites
        };
        let (ptr, ok) = self.t.gen_ptr(size, dir);
        let salt = self.t.rng.next();
        self.paint(ptr, size, salt);
        let int = if ok && reads {
            let mut b = [0u8; 4];
            for (k, byte) in b.iter_mut().enumerate() {
                // SAFETY: readable memory (predicted so): ours, painted
                // just now, or bytes whose contents we may read.
                *byte = unsafe { ptr::read_volatile((ptr + k as u64) as *const u8) };
            }
            i32::from_le_bytes(b)
        } else {
            0
        };
        let answer: Option<[u8; 8]> = match (request, file) {
            (_, None) => None,
            (ioctl::FIONREAD, Some(File::Console)) => Some([0; 8]),
            (ioctl::FIONREAD, Some(File::Read(p) | File::Write(p))) => {
                let mut b = [0; 8];
                b[..4].copy_from_slice(&(self.m.pipes[p].len as i32).to_le_bytes());
                Some(b)
            }
            (ioctl::TIOCGWINSZ, Some(File::Console)) => Some(Winsize::CONSOLE.to_bytes()),
            _ => None,
        };
        let expect = match (request, file, answer) {
            (_, None, _) => Expect::Err(Errno::EBADF),
            (ioctl::FIOCLEX | ioctl::FIONCLEX, _, _) => Expect::Ret(0),
            (ioctl::FIONBIO | ioctl::FIOASYNC, _, _) if !ok => Expect::Err(Errno::EFAULT),
            (ioctl::FIOASYNC, _, _) if int != 0 => Expect::Err(Errno::EINVAL),
            (ioctl::FIONBIO | ioctl::FIOASYNC, _, _) => Expect::Ret(0),
            (_, Some(_), None) => Expect::Err(Errno::ENOTTY),
            (_, Some(_), Some(_)) if !ok => Expect::Err(Errno::EFAULT),
            (_, Some(_), Some(_)) => Expect::Ret(0),
        };
        let req = u64::from(request) | self.wide();
        // SAFETY: BUF, the slack, or refused; readable memory for the two
        // requests that read; nothing is written for a request the kernel
        // does not answer.
        unsafe { self.t.call(nr::IOCTL, &[fd, req, ptr], expect)? };
        self.count(expect);
        if let (Expect::Ret(0), Some(file)) = (expect, file) {
            let fdl = fd as u32 as usize;
            match request {
                ioctl::FIOCLEX | ioctl::FIONCLEX => {
                    self.m.cloexec[fdl] = request == ioctl::FIOCLEX;
                }
                ioctl::FIONBIO => {
                    let flags = match file {
                        File::Console => &mut self.m.console_flags,
                        File::Read(p) => &mut self.m.pipes[p].read_flags,
                        File::Write(p) => &mut self.m.pipes[p].write_flags,
                    };
                    if int != 0 {
                        *flags |= o::NONBLOCK;
                    } else {
                        *flags &= !o::NONBLOCK;
                    }
                }
                _ => {}
            }
        }
        let n = if expect == Expect::Ret(0) && !reads && answer.is_some() {
            size
        } else {
            0
        };
        let bytes = answer.unwrap_or([0; 8]);
        self.verify(ptr, size, n, salt, &|i| bytes[i as usize])
    }

    // --- threads ------------------------------------------------------------

    fn spawn(&mut self) -> Checked<()> {
        if self.t.rng.chance(1, 10) {
            return self.clone_bad_tls();
        }
        if self.t.rng.chance(3, 10) {
            if self.t.rng.chance(1, 8) {
                return self.spawn_stack_zero();
            }
            return self.t.spawn_hostile(&helper::spawner());
        }
        match self.t.rng.below(10) {
            0 => self.spawn_eof_reader(),
            1 => self.spawn_epipe_writer(),
            2 | 3 => self.spawn_reaper(),
            _ => {
                let calls = self.t.rng.range(0, 12) as u32;
                let status = self.random_status();
                self.spawn_helper(Job::Plain { calls, status }).map(drop)
            }
        }
    }

    /// A pipe (by model index) whose ends are both open, that no helper
    /// uses, and that passes `ok`; with a (read, write) descriptor of it.
    fn idle_pipe(&mut self, ok: fn(&model::Pipe) -> bool) -> Option<(usize, usize, usize)> {
        let m = &*self.m;
        let usable = |fd: usize| match m.fds[fd] {
            Some(File::Read(p)) if !m.pipe_busy(p) && ok(&m.pipes[p]) => {
                m.fd_of(File::Write(p)).map(|w| (p, fd, w))
            }
            _ => None,
        };
        let n = (0..m.fds.len()).filter_map(usable).count();
        if n == 0 {
            return None;
        }
        let nth = self.t.rng.below(n as u64) as usize;
        (0..m.fds.len()).filter_map(usable).nth(nth)
    }

    /// Closes every descriptor naming `file`, as steps of a setup.
    fn close_all(&mut self, file: File) -> Checked<()> {
        while let Some(fd) = self.m.fd_of(file) {
            self.close_now(fd)?;
        }
        Ok(())
    }

    /// A helper reads an empty pipe whose write end we close right away
    /// (every descriptor of it): it must see end of file, woken by the
    /// close if it was blocked. The read end blocks, so an early read
    /// waits rather than failing with EAGAIN.
    fn spawn_eof_reader(&mut self) -> Checked<()> {
        let Some((p, r, _)) = self.idle_pipe(|pipe| pipe.len == 0 && !pipe.nonblocking(true))
        else {
            return self.t.spawn_hostile(&helper::spawner());
        };
        let job = Job::EofRead {
            calls: self.t.rng.range(0, 3) as u32,
            fd: r as u32,
            len: self.t.rng.range(1, DATA_BYTES as u64) as u32,
        };
        let Some(slot) = self.spawn_helper(job)? else {
            return Ok(());
        };
        self.close_all(File::Write(p))?;
        self.stats.woken_by_close += 1;
        if let Some(h) = self.m.helpers[slot].as_mut() {
            h.busy_fd = Some(r);
            h.busy_pipe = Some(p);
        }
        Ok(())
    }

    /// A helper writes more than there is room for (at most PIPE_BUF, so
    /// it waits for room for all) to a pipe whose read end we close right
    /// away: EPIPE, woken by the close if it was blocked.
    fn spawn_epipe_writer(&mut self) -> Checked<()> {
        let Some((p, _, w)) =
            self.idle_pipe(|pipe| pipe.room() < PIPE_BUF as usize && !pipe.nonblocking(false))
        else {
            return self.t.spawn_hostile(&helper::spawner());
        };
        let room = self.m.pipes[p].room() as u64;
        let job = Job::EpipeWrite {
            calls: self.t.rng.range(0, 3) as u32,
            fd: w as u32,
            len: self.t.rng.range(room + 1, PIPE_BUF) as u32,
        };
        let Some(slot) = self.spawn_helper(job)? else {
            return Ok(());
        };
        self.close_all(File::Read(p))?;
        self.stats.woken_by_close += 1;
        self.stats.epipe_jobs += 1;
        if let Some(h) = self.m.helpers[slot].as_mut() {
            h.busy_fd = Some(w);
            h.busy_pipe = Some(p);
        }
        Ok(())
    }

    /// A helper waits for another (plain) one; the main thread then leaves
    /// that one alone and checks both when it reaps the waiter.
    fn spawn_reaper(&mut self) -> Checked<()> {
        let Some(target) = self.m.claimable_slot(self.t.rng.next()) else {
            return self.t.spawn_hostile(&helper::spawner());
        };
        let Some(b) = self.m.helpers[target] else {
            return Ok(());
        };
        let job = Job::Reap {
            calls: self.t.rng.range(0, 3) as u32,
            tid: b.tid,
            status: helper::expected_status(b.job),
            exit: self.random_status(),
        };
        if self.spawn_helper(job)?.is_some()
            && let Some(h) = self.m.helpers[target].as_mut()
        {
            h.claimed = true;
            self.stats.cross_waits += 1;
        }
        Ok(())
    }

    /// close(fd) of an open descriptor, as a step of a setup.
    fn close_now(&mut self, fd: usize) -> Checked<()> {
        // SAFETY: close takes no pointer.
        unsafe { self.t.call(nr::CLOSE, &[fd as u64], Expect::Ret(0))? };
        self.m.close(fd);
        Ok(())
    }

    /// spawn_thread(entry, stack_top < 16): [stack_top - 16, stack_top)
    /// wraps below 0, so EFAULT (the pointer before the alignment). The
    /// kernel once started a thread with rsp = 0 here, which faulted and
    /// killed the program.
    fn spawn_stack_zero(&mut self) -> Checked<()> {
        let arg = self.t.rng.next();
        let entry = helper::spawner().entry;
        let stack_top = self.t.rng.below(16);
        // SAFETY: the kernel must refuse; were it to start the thread, it
        // would fault at once (rsp below 16).
        unsafe {
            self.t.call(
                nr::SPAWN_THREAD,
                &[entry, stack_top, arg],
                Expect::Err(Errno::EFAULT),
            )?
        };
        Ok(())
    }

    /// A status for a helper to exit with: small, negative, extreme.
    fn random_status(&mut self) -> i64 {
        let r = &mut self.t.rng;
        let s = match r.below(5) {
            0 => r.below(256) as i64,
            1 => -(r.range(1, 4096) as i64),
            2 => r.pick(&[i64::MIN, i64::MAX, -1, 0, 1 << 32]),
            _ => r.next() as i64,
        };
        if helper::exit_status(s) == FAILED {
            0
        } else {
            s
        }
    }

    /// spawn_thread with valid arguments: a new helper doing `job`, or
    /// EAGAIN when the program has all the threads it may have. Returns
    /// the slot, or None for EAGAIN and when the count is uncertain (a
    /// helper may or may not have reaped another yet): then nothing is
    /// called.
    fn spawn_helper(&mut self, job: Job) -> Checked<Option<usize>> {
        let seed = self.t.rng.next();
        let arg = self.t.rng.next();
        let slot = self.m.free_slot(self.t.rng.next());
        let (slot, job, expect) = match slot {
            Some(slot) if self.m.threads_max() < helper::MAX_THREADS => (slot, job, Expect::NewTid),
            // Offer the spare stack: a kernel that wrongly started the
            // thread would find an empty job there and exit quietly.
            _ if self.m.threads_min() >= helper::MAX_THREADS => (
                SPARE,
                Job::Plain {
                    calls: 0,
                    status: 0,
                },
                Expect::Err(Errno::EAGAIN),
            ),
            _ => {
                self.stats.skipped += 1;
                return Ok(None);
            }
        };
        helper::prepare(slot, job, seed, arg, self.origin());
        let args = helper::spawn_args(slot, arg);
        // SAFETY: the slot is ours and no thread runs on it; the kernel
        // does not touch memory for spawn_thread.
        let tid = unsafe { self.t.call(nr::SPAWN_THREAD, &args, expect)? };
        if expect != Expect::NewTid {
            self.stats.eagain += 1;
            return Ok(None);
        }
        let taken = tid == self.t.tid || self.m.helpers.iter().flatten().any(|h| h.tid == tid);
        if taken {
            return Err(self.t.fail(Why::Note(
                "spawn_thread returned the tid of a thread that is still alive",
            )));
        }
        self.m.helpers[slot] = Some(model::Helper {
            tid,
            job,
            claimed: false,
            busy_fd: None,
            busy_pipe: None,
        });
        self.stats.threads += 1;
        Ok(Some(slot))
    }

    /// Makes room in pipe `p` through a helper that reads, so the write
    /// about to be made, which lacks room, need not block forever. The
    /// helper reads between `need` and `most` (at most what is buffered)
    /// bytes in one call, which never blocks (the pipe holds them) and is
    /// one atomic step (at most PIPE_BUF): so it takes the oldest bytes
    /// whatever the order, and the write, which cannot finish before the
    /// room appears, then fits. False when no thread can be spawned.
    fn rendezvous_reader(&mut self, p: usize, need: u64, most: u64) -> Checked<bool> {
        if self.m.threads_max() >= helper::MAX_THREADS {
            return Ok(false);
        }
        let Some(fd) = self.m.fd_of(File::Read(p)) else {
            return Ok(false);
        };
        let len = self.t.rng.range(need.max(1), most) as u32;
        let calls = self.t.rng.range(0, 3) as u32;
        let Some(slot) = self.m.free_slot(self.t.rng.next()) else {
            return Ok(false);
        };
        let data = helper::data_region(slot).start as *mut u8;
        for i in 0..len as usize {
            // SAFETY: the slot is free, so its data is ours.
            unsafe { data.add(i).write(self.m.pipes[p].peek(i)) };
        }
        let job = Job::Read {
            calls,
            fd: fd as u32,
            len,
        };
        self.spawn_helper_on(slot, job)?;
        self.m.pipes[p].pop(len as usize);
        self.stats.rendezvous += 1;
        Ok(true)
    }

    /// The opposite: data for an empty pipe `p` the main thread is about to
    /// read. The helper writes at most PIPE_BUF bytes into an empty pipe
    /// in one call: it never blocks, and it is one atomic step, so the
    /// read, which cannot finish before it, sees all of it or none.
    fn rendezvous_writer(&mut self, p: usize) -> Checked<bool> {
        if self.m.threads_max() >= helper::MAX_THREADS {
            return Ok(false);
        }
        let Some(fd) = self.m.fd_of(File::Write(p)) else {
            return Ok(false);
        };
        let len = self.t.rng.range(1, PIPE_BUF) as u32;
        let calls = self.t.rng.range(0, 3) as u32;
        let Some(slot) = self.m.free_slot(self.t.rng.next()) else {
            return Ok(false);
        };
        let data = helper::data_region(slot).start as *mut u8;
        for i in 0..len as usize {
            // SAFETY: the slot is free, so its data is ours.
            unsafe { data.add(i).write(self.t.rng.next() as u8) };
        }
        let job = Job::Write {
            calls,
            fd: fd as u32,
            len,
        };
        self.spawn_helper_on(slot, job)?;
        for i in 0..len as usize {
            // SAFETY: as above; the helper only reads it.
            self.m.pipes[p].push(unsafe { data.add(i).read() });
        }
        self.stats.rendezvous += 1;
        Ok(true)
    }

    /// spawn_thread for `job` on a slot chosen already (below the limit).
    fn spawn_helper_on(&mut self, slot: usize, job: Job) -> Checked<()> {
        let seed = self.t.rng.next();
        let arg = self.t.rng.next();
        helper::prepare(slot, job, seed, arg, self.origin());
        let args = helper::spawn_args(slot, arg);
        // SAFETY: as in spawn_helper.
        let tid = unsafe { self.t.call(nr::SPAWN_THREAD, &args, Expect::NewTid)? };
        self.m.helpers[slot] = Some(model::Helper {
            tid,
            job,
            claimed: false,
            busy_fd: None,
            busy_pipe: None,
        });
        self.stats.threads += 1;
        Ok(())
    }

    fn wait(&mut self, reaped: Option<u64>) -> Checked<()> {
        match self.t.rng.below(10) {
            0..=6 => match self.m.live_slot(self.t.rng.next()) {
                Some(slot) => self.reap(slot),
                None => self.t.wait_for_error(self.t.tid, Errno::EINVAL),
            },
            7 => self.t.wait_for_error(self.t.tid, Errno::EINVAL),
            8 => match reaped {
                Some(tid) => self.t.wait_for_error(tid, Errno::ESRCH),
                None => {
                    let tid = self.t.rng.pick(&thread::KERNEL_TIDS);
                    self.t.wait_for_error(tid, Errno::ECHILD)
                }
            },
            _ => self.t.wait_hostile(),
        }
    }

    /// wait for the helper on `slot`, then check everything it left.
    fn reap(&mut self, slot: usize) -> Checked<()> {
        let Some(h) = self.m.helpers[slot] else {
            return Ok(());
        };
        let (ptr, ok) = self.t.gen_status_ptr();
        let expect = if ok {
            Expect::Ret(h.tid)
        } else {
            Expect::Err(Errno::EFAULT)
        };
        let salt = self.t.rng.next();
        self.paint(ptr, 8, salt);
        // SAFETY: BUF, the slack, null, or refused.
        unsafe { self.t.call(nr::WAIT_THREAD, &[h.tid, ptr], expect)? };
        if !ok {
            self.stats.efault += 1;
            return self.verify(ptr, 8, 0, salt, &|_| 0);
        }
        // SAFETY: reaped, so the slot is ours again.
        let report = unsafe { (*helper::slot(slot)).report };
        self.stats.helper_calls += report.calls;
        self.stats.signal_calls += report.signal_calls;
        self.stats.cpu_calls += report.cpu_calls;
        if report.failure.is_some() {
            return Err(self
                .t
                .fail(Why::Note("the helper thread failed (its report is above)")));
        }
        if !helper::stack_intact(slot) {
            return Err(self
                .t
                .fail(Why::Note("a helper overflowed its stack (fuzzer bug)")));
        }
        helper::check_tid_word(&report).map_err(|why| self.t.fail(why))?;
        if report.tid != h.tid {
            return Err(self.t.fail(Why::Note(
                "the helper's gettid differs from what spawn_thread returned",
            )));
        }
        let status = helper::expected_status(h.job).to_le_bytes();
        let n = if ptr == 0 { 0 } else { 8 };
        self.verify(ptr, 8, n, salt, &|i| status[i as usize])?;
        self.m.helpers[slot] = None;
        self.reaped = Some(h.tid);
        if let Job::Reap { tid, .. } = h.job {
            // It reaped its target before it exited, so that slot is ours.
            self.check_claimed(tid)?;
        }
        Ok(())
    }

    /// The helper another one reaped: its report, as `reap` checks it.
    fn check_claimed(&mut self, tid: u64) -> Checked<()> {
        let Some(slot) = (0..SPARE).find(|&i| self.m.helpers[i].is_some_and(|h| h.tid == tid))
        else {
            return Ok(());
        };
        // SAFETY: reaped by its waiter, which has exited: the slot is ours.
        let report = unsafe { (*helper::slot(slot)).report };
        self.stats.helper_calls += report.calls;
        self.stats.signal_calls += report.signal_calls;
        self.stats.cpu_calls += report.cpu_calls;
        if report.failure.is_some() {
            return Err(self.t.fail(Why::Note(
                "a helper reaped by another failed (its report is above)",
            )));
        }
        if !helper::stack_intact(slot) || report.tid != tid {
            return Err(self.t.fail(Why::Note(
                "a helper reaped by another overflowed its stack or saw another tid",
            )));
        }
        helper::check_tid_word(&report).map_err(|why| self.t.fail(why))?;
        self.m.helpers[slot] = None;
        Ok(())
    }

    /// The end: every helper is reaped and checked. Then, on some seeds,
    /// helpers are left running, sleeping or blocked in a read, for the
    /// kernel to kill when we exit (the leak checks after the run see
    /// whether it cleaned up).
    fn finish(&mut self) -> Checked<()> {
        while let Some(slot) = self.m.live_slot(0) {
            self.reap(slot)?;
        }
        if self.t.rng.chance(1, 2)
            && let Some(slot) = self.spawn_helper(Job::Linger)?
        {
            self.stats.left += 1;
            // And one blocked in wait for it, forever.
            if self.t.rng.chance(1, 2)
                && let Some(linger) = self.m.helpers[slot]
            {
                let job = Job::Reap {
                    calls: 0,
                    tid: linger.tid,
                    status: 0,
                    exit: 0,
                };
                self.spawn_helper(job)?;
                self.stats.left += 1;
            }
        }
        if self.t.rng.chance(1, 2) {
            self.spawn_helper(Job::SleepForever)?;
            self.stats.left += 1;
        }
        if self.t.rng.chance(1, 2) && self.m.open_count() + 2 <= MAX_FDS as usize {
            let r = self.m.lowest_free(None).unwrap_or(0);
            let w = self.m.lowest_free(Some(r)).unwrap_or(0);
            let fds = self.t.space.owned[0].start;
            // SAFETY: eight bytes into BUF, ours alone.
            unsafe { self.t.call(nr::PIPE, &[fds], Expect::Ret(0))? };
            self.m.add_pipe(r, w, 0);
            self.spawn_helper(Job::BlockRead { fd: r as u32 })?;
            self.stats.left += 1;
        }
        Ok(())
    }

    // --- memory -------------------------------------------------------------

    /// Fresh random bytes for a write's source, where it is ours.
    fn fill_random(&mut self, ptr: u64, len: u64) {
        let buf = self.t.space.owned[0];
        if let Some(r) = buf.clip(ptr, ptr.saturating_add(len)) {
            let mut word = 0u64;
            for a in r.start..r.end {
                // Eight bytes per number: long sources are common.
                if (a - r.start) % 8 == 0 {
                    word = self.t.rng.next();
                }
                // SAFETY: inside BUF, which only this thread uses and
                // nothing borrows.
                unsafe { (a as *mut u8).write(word as u8) };
                word >>= 8;
            }
        }
    }

    /// The parts of BUF and the slack near `[ptr, ptr + len)`: where a
    /// kernel that wrote too much or in the wrong place would show.
    fn windows(&self, ptr: u64, len: u64) -> [Option<Region>; 2] {
        const MARGIN: u64 = 16;
        let lo = ptr.saturating_sub(MARGIN);
        let hi = ptr.saturating_add(len).saturating_add(MARGIN);
        [
            self.t.space.owned[0].clip(lo, hi),
            self.t.space.slack.clip(lo, hi),
        ]
    }

    fn canary(salt: u64, addr: u64) -> u8 {
        ((salt ^ addr).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
    }

    fn paint(&mut self, ptr: u64, len: u64, salt: u64) {
        for r in self.windows(ptr, len).into_iter().flatten() {
            for a in r.start..r.end {
                // SAFETY: BUF or the slack: mapped, writable, used by this
                // thread only, and no Rust reference points into it.
                unsafe { ptr::write_volatile(a as *mut u8, Self::canary(salt, a)) };
            }
        }
    }

    /// After a call that painted: `[ptr, ptr + n)` must hold `want(i)`,
    /// everything else painted must be untouched.
    fn verify(
        &self,
        ptr: u64,
        len: u64,
        n: u64,
        salt: u64,
        want: &dyn Fn(u64) -> u8,
    ) -> Checked<()> {
        for r in self.windows(ptr, len).into_iter().flatten() {
            for a in r.start..r.end {
                // SAFETY: as for paint.
                let got = unsafe { ptr::read_volatile(a as *const u8) };
                let expected = if a >= ptr && a - ptr < n {
                    want(a - ptr)
                } else {
                    Self::canary(salt, a)
                };
                if got != expected {
                    return Err(self.t.fail(Why::Memory {
                        addr: a,
                        want: expected,
                        got,
                    }));
                }
            }
        }
        Ok(())
    }

    fn paint_slack(&mut self) {
        let s = self.t.space.slack;
        self.paint(s.start, s.len(), 0);
    }

    // --- reports ------------------------------------------------------------

    fn count(&mut self, expect: Expect) {
        match expect {
            Expect::Err(Errno::EFAULT) => self.stats.efault += 1,
            Expect::Err(Errno::EBADF) => self.stats.ebadf += 1,
            Expect::Err(Errno::EPIPE) => self.stats.epipe += 1,
            Expect::Err(Errno::EMFILE) => self.stats.emfile += 1,
            Expect::Err(Errno::EAGAIN) => self.stats.eagain += 1,
            Expect::Err(Errno::EINVAL) => self.stats.einval += 1,
            Expect::Err(Errno::EBUSY) => self.stats.ebusy += 1,
            Expect::Err(Errno::EPERM) => self.stats.eperm += 1,
            Expect::Err(Errno::ENOTTY) => self.stats.enotty += 1,
            _ => {}
        }
    }

    /// For a helper about to be spawned by our next call.
    fn origin(&self) -> helper::Origin {
        helper::Origin {
            seed: self.seed,
            call: self.t.calls,
            switches: self.t.switches,
        }
    }

    fn summary(&self, ns: u64) {
        let s = &self.stats;
        println!(
            "fuzz seed={} ok calls={} helper_calls={} threads={} rendezvous={} pipes={} \
             bytes_written={} bytes_read={} efault={} ebadf={} epipe={} eof={} emfile={} \
             eagain={} einval={} ebusy={} eperm={} enotty={} dups={} fcntls={} resizes={} \
             fstats={} ioctls={} writevs={} partial={} waits_atomic={} waits_large={} \
             epipe_jobs={} skipped={} woken_by_close={} cross_waits={} left={} linux_thread_calls={} \
             signal_calls={} cpu_calls={} mem_calls={} ms={}",
            self.seed,
            self.t.calls,
            s.helper_calls,
            s.threads,
            s.rendezvous,
            s.pipes,
            s.bytes_written,
            s.bytes_read,
            s.efault,
            s.ebadf,
            s.epipe,
            s.eof,
            s.emfile,
            s.eagain,
            s.einval,
            s.ebusy,
            s.eperm,
            s.enotty,
            s.dups,
            s.fcntls,
            s.resizes,
            s.fstats,
            s.ioctls,
            s.writevs,
            s.partial,
            s.waits_atomic,
            s.waits_large,
            s.epipe_jobs,
            s.skipped,
            s.woken_by_close,
            s.cross_waits,
            s.left,
            self.t.linux_calls,
            s.signal_calls + self.t.signal_calls,
            s.cpu_calls + self.t.cpu_calls,
            self.mem_model.calls,
            ns / 1_000_000
        );
    }
}

/// Linux's `round_pipe_size`, as F_SETPIPE_SZ applies it: a power of two
/// of at least a page; 0 (EINVAL) above 2^31.
fn round_pipe_size(size: u32) -> u64 {
    match size {
        s if s > 1 << 31 => 0,
        s if s < 4096 => 4096,
        s => u64::from(s).next_power_of_two(),
    }
}

// A rendezvous helper's transfer fits its data and is one atomic step.
const _: () = assert!(DATA_BYTES as u64 == PIPE_BUF);
