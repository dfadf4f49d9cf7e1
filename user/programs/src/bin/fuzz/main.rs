//! A model-checking system-call fuzzer: `fuzz SEED CALLS [SWITCH...]`.
//!
//! Makes CALLS random system calls (0: until killed) of every kind in
//! `abi::nr`, with valid and hostile arguments, and predicts each result
//! exactly from a model of its own state (thread.rs, model.rs): the
//! descriptor table (the kernel picks the lowest free number), each pipe's
//! buffered bytes and open ends, its helper threads. Every call is made
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
//! - a read of an empty pipe whose write end is open, or a write to a
//!   full pipe whose read end is open, would block: it is made only after
//!   spawning a helper that does the opposite transfer (a "rendezvous"),
//!   else skipped;
//! - a valid write to the console prints: rare, and only a fixed line;
//! - fd 1 is never closed: it carries the report;
//! - sleeps are short; `exit` is made only by helpers and at the end;
//! - helpers make only calls whose result no other thread can change
//!   (thread.rs `stateless`), besides the one job they were spawned for
//!   (helper.rs `Job`): a rendezvous transfer, a pipe call that the main
//!   thread's close ends (EOF, EPIPE) whatever the order, or a wait for
//!   another helper, which the main thread then never waits for itself;
//! - a descriptor a helper uses is left alone until the helper is reaped;
//! - while a helper may or may not have reaped another, the thread count
//!   is uncertain, and a valid spawn_thread that could hit the limit of
//!   64 is skipped (EAGAIN is predicted only when sure).
//!
//! Switches turn on checks that fail on the current kernel, so that the
//! suite stays green while the bug is open (see README.md, "Fuzzer").
#![no_std]
#![no_main]

mod check;
mod helper;
mod linux_threads;
mod model;
mod rng;
mod space;
mod thread;

use core::cell::UnsafeCell;
use core::ptr;

use rt::abi::{Errno, nr};
use rt::{Args, println};

use helper::{FAILED, Job, SPARE};
use model::{File, Model, PIPE_CAPACITY};
use rng::Rng;
use space::{Dir, Region, Space};
use thread::{Checked, Expect, MAX_FDS, MAX_IO, Switches, Thread, Why};

rt::entry!(main);

/// The main thread's buffer: write sources are filled with fresh random
/// bytes here, read destinations are painted here. Three pages, so any
/// transfer (at most one page) fits at any of many offsets.
const BUF_BYTES: usize = 3 * 4096;

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
const OPS: usize = 12;
const PHASES: [[u32; OPS]; 6] = [
    // write read pipe close spawn wait gettid yield time sleep unknown stateless
    [200, 200, 60, 60, 50, 50, 30, 30, 30, 4, 30, 60], // balanced
    [150, 150, 200, 20, 30, 40, 20, 20, 20, 2, 20, 40], // fill the descriptor table
    [150, 200, 20, 200, 30, 60, 20, 20, 20, 2, 20, 40], // close and drain
    [100, 100, 40, 40, 250, 30, 20, 20, 20, 2, 20, 40], // fill the thread table
    [100, 100, 40, 40, 30, 250, 20, 20, 20, 2, 20, 40], // reap
    [350, 350, 40, 30, 30, 30, 20, 20, 20, 2, 20, 20], // transfers
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
    skipped: u64,
    /// Helpers blocked (or about to be) in a pipe call that our close ends.
    woken_by_close: u64,
    /// Helpers that waited for another helper.
    cross_waits: u64,
    /// Helpers left running at the end, for the kernel to kill.
    left: u64,
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
            _ => self.t.stateless(&spawner),
        }
    }

    // --- descriptors --------------------------------------------------------

    /// A descriptor for a read or a write (`want` says which pipe end is
    /// the right kind): mostly the right kind, else any open one, a closed
    /// one, the console's, or one that is never open.
    fn pick_fd(&mut self, want: fn(File) -> bool) -> u64 {
        let fd = match self.t.rng.below(20) {
            0..=10 => self.random_fd(&|f| f.is_some_and(want)),
            11..=13 => self.random_fd(&|f| f.is_some()),
            14..=15 => self.random_fd(&|f| f.is_none()),
            16 => Some(self.t.rng.range(1, 2) as usize),
            _ => None,
        };
        match fd {
            // A helper's descriptor is its own until it is reaped.
            Some(fd) if !self.m.busy(fd as u64) => fd as u64,
            _ => self.t.never_open_fd(),
        }
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
        if file == Some(File::Console) {
            return self.write_console(fd);
        }
        let len = self.t.gen_len();
        let eff = len.min(MAX_IO);
        let (ptr, ok) = self.t.gen_ptr(eff, Dir::KernelReads);
        if ok {
            self.fill_random(ptr, eff);
        }
        let expect = if !ok {
            Expect::Err(Errno::EFAULT)
        } else {
            match file {
                None | Some(File::Read(_)) | Some(File::Console) => Expect::Err(Errno::EBADF),
                Some(File::Write(_)) if eff == 0 => Expect::Ret(0),
                Some(File::Write(p)) if !self.m.pipes[p].read_open => Expect::Err(Errno::EPIPE),
                Some(File::Write(p)) => {
                    // A full pipe with a reader would block us forever:
                    // only with a helper that reads from it.
                    if self.m.pipes[p].room() == 0 && !self.rendezvous_reader(p)? {
                        self.stats.skipped += 1;
                        return Ok(());
                    }
                    Expect::Ret(eff.min(self.m.pipes[p].room() as u64))
                }
            }
        };
        // SAFETY: the kernel only reads from `ptr`.
        unsafe { self.t.call(nr::WRITE, &[fd, ptr, len], expect)? };
        self.count(expect);
        if let (Expect::Ret(n), Some(File::Write(p))) = (expect, file) {
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

    /// The console prints what it gets, so valid writes are rare and send
    /// only CONSOLE_LINE; the rest are empty (any pointer: nothing to
    /// check) or bad.
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
            (ptr, 0, Expect::Ret(0))
        } else {
            let len = self.t.gen_len().max(2);
            let ptr = loop {
                let p = self.t.space.hostile(&mut self.t.rng, len.min(MAX_IO));
                if !self.t.predict(p, len.min(MAX_IO), Dir::KernelReads) {
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
        let eff = len.min(MAX_IO);
        let (ptr, ok) = self.t.gen_ptr(eff, Dir::KernelWrites);
        let expect = if !ok {
            Expect::Err(Errno::EFAULT)
        } else {
            match file {
                None | Some(File::Write(_)) | Some(File::Console) => Expect::Err(Errno::EBADF),
                Some(File::Read(_)) if eff == 0 => Expect::Ret(0),
                Some(File::Read(p)) => {
                    let pipe = &self.m.pipes[p];
                    if pipe.len == 0 && pipe.write_open {
                        // Empty with a writer: would block us forever,
                        // unless a helper writes.
                        if !self.rendezvous_writer(p)? {
                            self.stats.skipped += 1;
                            return Ok(());
                        }
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

    fn pipe(&mut self) -> Checked<()> {
        let (ptr, ok) = self.t.gen_ptr(8, Dir::KernelWrites);
        let r = self.m.lowest_free(None);
        let w = r.and_then(|r| self.m.lowest_free(Some(r)));
        let expect = if !ok {
            Expect::Err(Errno::EFAULT)
        } else if self.m.open_count() + 2 > MAX_FDS as usize {
            // The kernel refuses when it cannot place both ends.
            Expect::Err(Errno::EMFILE)
        } else {
            Expect::Ret(0)
        };
        let salt = self.t.rng.next();
        self.paint(ptr, 8, salt);
        // SAFETY: as for read: BUF, the slack, or refused.
        unsafe { self.t.call(nr::PIPE, &[ptr], expect)? };
        self.count(expect);
        let mut fds = [0u8; 8];
        let written = if let (Expect::Ret(0), Some(r), Some(w)) = (expect, r, w) {
            fds[..4].copy_from_slice(&(r as u32).to_le_bytes());
            fds[4..].copy_from_slice(&(w as u32).to_le_bytes());
            self.m.add_pipe(r, w);
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

    /// A pipe (by model index) whose ends are both open, not in use by a
    /// helper, and whose buffer passes `ok`; with its (read, write) fds.
    fn idle_pipe(&mut self, ok: fn(usize) -> bool) -> Option<(usize, usize, usize)> {
        let m = &*self.m;
        let usable = |fd: usize| match m.fds[fd] {
            Some(File::Read(p)) if !m.busy(fd as u64) && ok(m.pipes[p].len) => m
                .fd_of(File::Write(p))
                .filter(|&w| !m.busy(w as u64))
                .map(|w| (p, fd, w)),
            _ => None,
        };
        let n = (0..m.fds.len()).filter_map(usable).count();
        if n == 0 {
            return None;
        }
        let nth = self.t.rng.below(n as u64) as usize;
        (0..m.fds.len()).filter_map(usable).nth(nth)
    }

    /// A helper reads an empty pipe whose write end we close right away:
    /// it must see end of file, woken by the close if it was blocked.
    fn spawn_eof_reader(&mut self) -> Checked<()> {
        let Some((_, r, w)) = self.idle_pipe(|len| len == 0) else {
            return self.t.spawn_hostile(&helper::spawner());
        };
        let job = Job::EofRead {
            calls: self.t.rng.range(0, 3) as u32,
            fd: r as u32,
            len: self.t.rng.range(1, MAX_IO) as u32,
        };
        let Some(slot) = self.spawn_helper(job)? else {
            return Ok(());
        };
        self.close_now(w)?;
        self.stats.woken_by_close += 1;
        if let Some(h) = self.m.helpers[slot].as_mut() {
            h.busy_fd = Some(r);
        }
        Ok(())
    }

    /// A helper writes to a full pipe whose read end we close right away:
    /// EPIPE, woken by the close if it was blocked.
    fn spawn_epipe_writer(&mut self) -> Checked<()> {
        let Some((_, r, w)) = self.idle_pipe(|len| len == PIPE_CAPACITY) else {
            return self.t.spawn_hostile(&helper::spawner());
        };
        let job = Job::EpipeWrite {
            calls: self.t.rng.range(0, 3) as u32,
            fd: w as u32,
            len: self.t.rng.range(1, MAX_IO) as u32,
        };
        let Some(slot) = self.spawn_helper(job)? else {
            return Ok(());
        };
        self.close_now(r)?;
        self.stats.woken_by_close += 1;
        if let Some(h) = self.m.helpers[slot].as_mut() {
            h.busy_fd = Some(w);
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
        });
        self.stats.threads += 1;
        Ok(Some(slot))
    }

    /// Makes room in full pipe `p` through a helper that reads, so the
    /// write about to be made finds room instead of blocking forever. The
    /// helper reads from a full pipe, so it never blocks; the write cannot
    /// finish before the helper's read, so the result is the same in any
    /// order. False when no thread can be spawned.
    fn rendezvous_reader(&mut self, p: usize) -> Checked<bool> {
        if self.m.threads_max() >= helper::MAX_THREADS {
            return Ok(false);
        }
        let Some(fd) = self.m.fd_of(File::Read(p)) else {
            return Ok(false);
        };
        let len = self.t.rng.range(1, PIPE_CAPACITY as u64) as u32;
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
    /// read. The helper writes at most a pipe's capacity into an empty pipe
    /// in one call, which never blocks; the read cannot finish before it.
    fn rendezvous_writer(&mut self, p: usize) -> Checked<bool> {
        if self.m.threads_max() >= helper::MAX_THREADS {
            return Ok(false);
        }
        let Some(fd) = self.m.fd_of(File::Write(p)) else {
            return Ok(false);
        };
        let len = self.t.rng.range(1, PIPE_CAPACITY as u64) as u32;
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
            self.m.add_pipe(r, w);
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
            for a in r.start..r.end {
                // SAFETY: inside BUF, which only this thread uses and
                // nothing borrows.
                unsafe { (a as *mut u8).write(self.t.rng.next() as u8) };
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
             eagain={} skipped={} woken_by_close={} cross_waits={} left={} linux_thread_calls={} \
             ms={}",
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
            s.skipped,
            s.woken_by_close,
            s.cross_waits,
            s.left,
            self.t.linux_calls,
            ns / 1_000_000
        );
    }
}

const _: () = assert!(PIPE_CAPACITY as u64 == MAX_IO);
