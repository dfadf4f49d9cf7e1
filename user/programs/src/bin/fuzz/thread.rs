//! One fuzzing thread: its checked calls, their records and reports, and
//! the calls whose result depends on nothing another thread could change
//! (helpers make these besides their one job; the main thread mixes them
//! with the rest).

use core::fmt;

use rt::abi::{Errno, IOV_MAX, Timespec, USER_END, clock, decode, encode, fcntl, nr, o, wait};

use crate::check::{self, Clobber, NAMES};
use crate::rng::Rng;
use crate::space::{Dir, PAGE, Region, Space};

/// The kernel moves at most this much per read or write (docs/abi.md):
/// longer lengths are cut to it before their buffer is checked.
pub const MAX_RW: u64 = rt::abi::MAX_RW_COUNT;
/// Writes of at most this many bytes are atomic.
pub const PIPE_BUF: u64 = rt::abi::pipe::PIPE_BUF as u64;
/// Descriptors a program may hold (boot/src/process.rs MAX_FDS): the
/// kernel never hands out a higher number, so any fd from here up is
/// closed whatever the other threads do.
pub const MAX_FDS: u64 = 64;
/// Tids stay below the scheduler's MAX_TASKS (kernel/src/task/sched.rs,
/// 4096); anything from here up never names a thread.
pub const NO_SUCH_TID: u64 = 1 << 24;
/// The idle task and the boot thread (which runs the console): they exist
/// from boot to power-off and belong to no program.
pub const KERNEL_TIDS: [u64; 2] = [0, 1];
/// The sleeps' lengths: short, so a run spends its time in calls.
const MAX_SLEEP_NS: u64 = 2_000_000;

/// What a call must return.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Ret(u64),
    Err(Errno),
    /// A value at least this large (kept for results that only grow).
    AtLeast(u64),
    /// `spawn_thread`: a thread id (the kernel picks which).
    NewTid,
    /// The first `gettid` of a thread, before it knows its id.
    AnyTid,
}

impl Expect {
    fn holds(self, ret: u64) -> bool {
        match self {
            Expect::Ret(v) => ret == v,
            Expect::Err(e) => ret == encode(Err(e)),
            Expect::AtLeast(v) => matches!(decode(ret), Ok(t) if t >= v),
            // Tids are u32 (docs/abi.md); 0 and 1 are the kernel's.
            Expect::NewTid | Expect::AnyTid => (2..=u64::from(u32::MAX)).contains(&ret),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Ret(v) => write!(f, "ok({v})"),
            Expect::Err(e) => f.write_str(e.name()),
            Expect::AtLeast(v) => write!(f, "ok(>={v})"),
            Expect::NewTid | Expect::AnyTid => f.write_str("ok(a tid)"),
        }
    }
}

/// A raw result as a person reads it.
pub struct Shown(pub u64);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed = self.0 as i64;
        if (-4095..0).contains(&signed) {
            match Errno::from_raw(-signed) {
                Some(e) => f.write_str(e.name()),
                None => write!(f, "errno({})", -signed),
            }
        } else {
            write!(f, "ok({})", self.0)
        }
    }
}

/// One call made: what was asked, what was predicted, what came back.
#[derive(Clone, Copy)]
pub struct Rec {
    pub index: u64,
    pub nr: u64,
    pub args: [u64; 6],
    pub expect: Expect,
    pub ret: u64,
}

impl fmt::Display for Rec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, params): (&str, &[&str]) = match self.nr {
            nr::EXIT => ("exit", &["status"]),
            nr::EXIT_GROUP => ("exit_group", &["status"]),
            nr::WRITE => ("write", &["fd", "buf", "len"]),
            nr::READ => ("read", &["fd", "buf", "len"]),
            nr::SCHED_YIELD => ("sched_yield", &[]),
            nr::NANOSLEEP => ("nanosleep", &["req", "rem"]),
            nr::WAIT4 => ("wait4", &["pid", "status", "options", "rusage"]),
            nr::CLOCK_GETTIME => ("clock_gettime", &["clock", "tp"]),
            nr::CLOCK_NANOSLEEP => ("clock_nanosleep", &["clock", "flags", "req", "rem"]),
            nr::GETPID => ("getpid", &[]),
            nr::GETPPID => ("getppid", &[]),
            nr::SPAWN_THREAD => ("spawn_thread", &["entry", "stack_top", "arg"]),
            nr::WAIT_THREAD => ("wait_thread", &["tid", "status"]),
            nr::PIPE => ("pipe", &["fds"]),
            nr::CLOSE => ("close", &["fd"]),
            nr::GETTID => ("gettid", &[]),
            nr::CLONE => ("clone", &["flags", "newsp", "ptid", "ctid", "tls"]),
            nr::FUTEX => (
                "futex",
                &["uaddr", "op", "val", "timeout", "uaddr2", "val3"],
            ),
            nr::SET_TID_ADDRESS => ("set_tid_address", &["tidptr"]),
            nr::ARCH_PRCTL => ("arch_prctl", &["code", "addr"]),
            nr::FSTAT => ("fstat", &["fd", "statbuf"]),
            nr::IOCTL => ("ioctl", &["fd", "request", "arg"]),
            nr::WRITEV => ("writev", &["fd", "iov", "iovcnt"]),
            nr::DUP => ("dup", &["fd"]),
            nr::DUP2 => ("dup2", &["fd", "new"]),
            nr::DUP3 => ("dup3", &["fd", "new", "flags"]),
            nr::FCNTL => ("fcntl", &["fd", "cmd", "arg"]),
            nr::PIPE2 => ("pipe2", &["fds", "flags"]),
            nr::RT_SIGACTION => ("rt_sigaction", &["sig", "act", "oact", "sigsetsize"]),
            nr::RT_SIGPROCMASK => ("rt_sigprocmask", &["how", "set", "oset", "sigsetsize"]),
            nr::RT_SIGPENDING => ("rt_sigpending", &["set", "sigsetsize"]),
            nr::SIGALTSTACK => ("sigaltstack", &["ss", "old_ss"]),
            nr::KILL => ("kill", &["pid", "sig"]),
            nr::TKILL => ("tkill", &["tid", "sig"]),
            nr::TGKILL => ("tgkill", &["tgid", "tid", "sig"]),
            nr::SCHED_SETAFFINITY => ("sched_setaffinity", &["pid", "len", "mask"]),
            nr::SCHED_GETAFFINITY => ("sched_getaffinity", &["pid", "len", "mask"]),
            nr::GETCPU => ("getcpu", &["cpu", "node", "cache"]),
            _ => ("unknown", &["a0", "a1", "a2", "a3", "a4", "a5"]),
        };
        write!(f, "call={} nr={:#x} {name}(", self.index, self.nr)?;
        for (i, p) in params.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{p}={:#x}", self.args[i])?;
        }
        write!(f, ") expected={} actual={}", self.expect, Shown(self.ret))
    }
}

/// Why a call counts as failed.
#[derive(Clone, Copy)]
pub enum Why {
    /// The result was not the one predicted.
    Result,
    /// A register other than rax, rcx and r11 changed.
    Register(Clobber),
    /// A byte of user memory is not what the call should have left there.
    Memory { addr: u64, want: u8, got: u8 },
    /// A new thread did not start with the documented registers (index
    /// 16 is rflags).
    Entry { reg: usize, want: u64, got: u64 },
    /// Anything else, said in words.
    Note(&'static str),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Why::Result => f.write_str("wrong result"),
            Why::Register(c) => write!(
                f,
                "register {} changed by the call: {:#x} -> {:#x}",
                NAMES[c.reg], c.before, c.after
            ),
            Why::Memory { addr, want, got } => write!(
                f,
                "user memory at {addr:#x} is {got:#04x}, should be {want:#04x}"
            ),
            Why::Entry { reg, want, got } => write!(
                f,
                "new thread started with {}={got:#x}, docs/abi.md says {want:#x}",
                NAMES.get(reg).copied().unwrap_or("rflags")
            ),
            Why::Note(text) => f.write_str(text),
        }
    }
}

#[derive(Clone, Copy)]
pub struct Failure {
    /// The call that failed, or the last one made before the failure was
    /// found (None if the thread had made none).
    pub rec: Option<Rec>,
    pub why: Why,
}

pub type Checked<T> = Result<T, Failure>;

const HISTORY: usize = 8;

/// Checks that fail on the current kernel, off unless named on the
/// command line (README.md, "Fuzzer").
#[derive(Clone, Copy, Default)]
pub struct Switches {
    /// Not a check: print every call before it is made, to find the one
    /// that never returns when a run hangs.
    pub trace: bool,
}

pub struct Thread {
    pub rng: Rng,
    pub space: Space,
    /// Writable memory only this thread uses: valid buffers come from here.
    pub own: Region,
    /// Whether the slack region is this thread's too (the main thread's).
    pub slack: bool,
    pub tid: u64,
    pub calls: u64,
    pub switches: Switches,
    last_time: u64,
    history: [Option<Rec>; HISTORY],
    /// This thread's FS base as it last set it (0 at the start).
    pub fs_base: u64,
    /// What set_tid_address last recorded for this thread (0: nothing).
    pub tid_addr: u64,
    /// A word of this thread's that its reaper checks was cleared at the
    /// exit (helpers only).
    pub tid_word: Option<u64>,
    /// Calls made by linux_threads.rs, for the summary.
    pub linux_calls: u64,
    /// The signal whose action only this thread changes (signals.rs), if
    /// it has one.
    pub sig_own: Option<u32>,
    /// The signals this thread blocks between its steps: the main
    /// thread's as the program started (it learns them); none for a
    /// helper (spawn_thread's threads start with none blocked, unlike
    /// clone's, which take their creator's mask).
    pub base_mask: u64,
    /// Rounds of signals.rs and cpus.rs, for the summary.
    pub signal_calls: u64,
    pub cpu_calls: u64,
    /// Whether a new pipe would find two free descriptors, when this
    /// thread knows (the main thread, which alone makes descriptors, says
    /// so before its stateless calls); None for helpers. pipe judges it
    /// before its pointer.
    pub pipe_room: Option<bool>,
}

impl Thread {
    pub fn new(rng: Rng, space: Space, own: Region, slack: bool, switches: Switches) -> Thread {
        Thread {
            rng,
            space,
            own,
            slack,
            tid: 0,
            calls: 0,
            switches,
            last_time: 0,
            history: [None; HISTORY],
            fs_base: 0,
            tid_addr: 0,
            tid_word: None,
            linux_calls: 0,
            sig_own: None,
            base_mask: 0,
            signal_calls: 0,
            cpu_calls: 0,
            pipe_room: None,
        }
    }

    /// Makes call `nr` with `used` as its first arguments (the rest random)
    /// and checks the registers and the result against `expect`.
    ///
    /// # Safety
    ///
    /// As `check::syscall`: any memory the arguments let the kernel write
    /// must be free of Rust borrows (the fuzzer only passes its raw statics,
    /// the slack region, or addresses the kernel must refuse).
    pub unsafe fn call(&mut self, nr: u64, used: &[u64], expect: Expect) -> Checked<u64> {
        let mut args = [0u64; 6];
        for a in args.iter_mut() {
            *a = self.rng.next();
        }
        args[..used.len()].copy_from_slice(used);
        if self.switches.trace {
            let rec = Rec {
                index: self.calls,
                nr,
                args,
                expect,
                ret: 0,
            };
            rt::println!("fuzz trace tid={} {rec}", self.tid);
        }
        // SAFETY: passed on to our caller.
        let done = unsafe { check::syscall(nr, &args, &mut self.rng) };
        let rec = Rec {
            index: self.calls,
            nr,
            args,
            expect,
            ret: done.ret,
        };
        self.history[(self.calls % HISTORY as u64) as usize] = Some(rec);
        self.calls += 1;
        if let Some(c) = done.clobber {
            return Err(Failure {
                rec: Some(rec),
                why: Why::Register(c),
            });
        }
        if !expect.holds(done.ret) {
            return Err(Failure {
                rec: Some(rec),
                why: Why::Result,
            });
        }
        Ok(done.ret)
    }

    /// A failure of the call just made, for a reason found after it.
    pub fn fail(&self, why: Why) -> Failure {
        let rec = match self.calls {
            0 => None,
            n => self.history[((n - 1) % HISTORY as u64) as usize],
        };
        Failure { rec, why }
    }

    /// Prints `f` as `fuzz FAIL` lines; `again` is the CALLS argument with
    /// which `fuzz SEED CALLS` makes the same calls up to the failure.
    pub fn report(&self, seed: u64, who: &str, f: &Failure, again: Option<u64>) {
        rt::println!("fuzz FAIL seed={seed} thread={who} tid={}", self.tid);
        match f.rec {
            Some(rec) => rt::println!("fuzz FAIL {who} {rec}"),
            None => rt::println!("fuzz FAIL {who} before its first call"),
        }
        rt::println!("fuzz FAIL {who} why: {}", f.why);
        for rec in self.history() {
            rt::println!("fuzz FAIL   before: {rec}");
        }
        if let Some(calls) = again {
            rt::println!("fuzz FAIL   again: run fuzz {seed} {calls}");
        }
    }

    /// The calls before the last, oldest first.
    pub fn history(&self) -> impl Iterator<Item = Rec> + '_ {
        let n = self.calls.min(HISTORY as u64);
        (self.calls - n..self.calls.saturating_sub(1))
            .filter_map(|i| self.history[(i % HISTORY as u64) as usize])
    }

    /// Learns this thread's id; later `gettid`s must repeat it.
    pub fn learn_tid(&mut self) -> Checked<u64> {
        // SAFETY: gettid takes no pointer.
        self.tid = unsafe { self.call(nr::GETTID, &[], Expect::AnyTid)? };
        Ok(self.tid)
    }

    /// How many bytes a read or write is asked for: mostly small, but every
    /// boundary comes up: 0, PIPE_BUF (atomic up to it), more than a pipe
    /// holds, and lengths past the kernel's MAX_RW_COUNT cut or that
    /// overflow a pointer or a 32-bit count. Lengths longer than the
    /// thread's own memory can only come with pointers the kernel refuses
    /// (space.rs), so they stay rare: every valid byte is painted, copied
    /// and checked.
    pub fn gen_len(&mut self) -> u64 {
        let r = &mut self.rng;
        match r.below(100) {
            0..=7 => 0,
            8..=38 => r.range(1, 16),
            39..=62 => r.range(17, 512),
            63..=74 => r.range(513, PIPE_BUF - 1),
            75..=77 => PIPE_BUF,
            78..=79 => PIPE_BUF + 1,
            80..=82 => r.range(PIPE_BUF + 2, 4 * PIPE_BUF),
            83..=84 => r.range(4 * PIPE_BUF, 80 * 1024),
            85..=89 => r.pick(&[MAX_RW, MAX_RW + 1, 1 << 31]),
            _ => {
                let wide = r.range(1, 64);
                r.pick(&[
                    1 << 32,
                    (1 << 32) + wide,
                    1 << 40,
                    1 << 63,
                    u64::MAX,
                    u64::MAX - PIPE_BUF,
                    USER_END,
                ])
            }
        }
    }

    /// A descriptor that is closed whatever any thread does.
    pub fn never_open_fd(&mut self) -> u64 {
        let r = &mut self.rng;
        // Descriptors are unsigned ints: the kernel drops the high half (as
        // Linux does), so only the low half decides; it is always >= 64
        // here, and the high half is noise the kernel must ignore.
        let (narrow, wide) = (r.range(MAX_FDS, 4 * MAX_FDS), r.range(MAX_FDS, 1 << 32));
        let low = r.pick(&[MAX_FDS, narrow, 1000, u64::from(u32::MAX), wide]);
        let high = match r.below(3) {
            0 => 0,
            1 => r.range(1, 1 << 32) << 32,
            _ => u64::MAX << 32,
        };
        high | low
    }

    /// A pointer for `len` bytes, and whether the kernel must accept it.
    pub fn gen_ptr(&mut self, len: u64, dir: Dir) -> (u64, bool) {
        let ptr = self
            .space
            .pointer(&mut self.rng, len, dir, self.own, self.slack);
        (ptr, self.predict(ptr, len, dir))
    }

    pub fn predict(&self, ptr: u64, len: u64, dir: Dir) -> bool {
        // Every generator aims at memory the model knows, so None means
        // the fuzzer itself is broken; refusing is then the safe guess
        // and any wrong guess shows up as a failure.
        self.space.predict(ptr, len, dir).unwrap_or(false)
    }

    /// One call that no other thread can influence. Sleeps are rare: each
    /// costs up to a timer tick.
    pub fn stateless(&mut self, spawn: &Spawner) -> Checked<()> {
        match self.rng.below(38) {
            // Signals and CPUs (signals.rs, cpus.rs): what they change is
            // this thread's own, and put back.
            26..=31 => self.signal_call(),
            32..=34 => self.cpu_call(),
            // The memory calls' argument errors (mem.rs).
            35..=37 => self.mem_hostile(),
            // Linux's thread calls (linux_threads.rs).
            16..=23 => {
                self.linux_calls += 1;
                match self.rng.below(6) {
                    0..=2 => self.futex_hostile(),
                    3 => self.clone_refused(),
                    4 => self.set_tid_address(),
                    _ => self.arch_prctl(),
                }
            }
            0 => self.gettid(),
            1 => {
                // SAFETY: sched_yield takes no pointer.
                unsafe { self.call(nr::SCHED_YIELD, &[], Expect::Ret(0))? };
                Ok(())
            }
            2 => self.time().map(drop),
            3 if self.rng.chance(1, 8) => self.sleep(),
            3 => self.wait4(),
            4 if self.rng.chance(1, 3) => self.exec_refused(),
            4 => self.unknown(),
            5 | 6 => self.io_on_closed_fd(),
            7 => self.close_closed_fd(),
            8 => self.pipe_bad_pointer(),
            9 | 10 => self.wait_hostile(),
            11 => self.ids(),
            12 => self.clock_hostile(),
            13 => self.sleep_hostile(),
            14 | 15 => self.descriptor_hostile(),
            _ => self.spawn_hostile(spawn),
        }
    }

    /// A descriptor call whose failure no other thread can change: on a
    /// descriptor that is never open, with flags or counts the kernel
    /// refuses before it looks at any descriptor, or with a pointer it
    /// must refuse.
    pub fn descriptor_hostile(&mut self) -> Checked<()> {
        let closed = self.never_open_fd();
        let any = self.rng.below(MAX_FDS) | self.rng.next() << 32;
        let (call, args, err): (u64, [u64; 3], Errno) = match self.rng.below(12) {
            0 => (nr::DUP, [closed, 0, 0], Errno::EBADF),
            // A new descriptor past the limit is EBADF before the old one
            // is looked at (and dup2 of a closed one onto itself too).
            1 => (nr::DUP2, [any, closed, 0], Errno::EBADF),
            2 => (nr::DUP2, [closed, closed, 0], Errno::EBADF),
            3 => {
                let bad = self.bad_fd_flags(o::CLOEXEC);
                (nr::DUP3, [any, self.rng.below(MAX_FDS), bad], Errno::EINVAL)
            }
            4 => {
                let flags = self.rng.pick(&[0, o::CLOEXEC]).into();
                (nr::DUP3, [any, any, flags], Errno::EINVAL)
            }
            5 => {
                let cmd = self.fcntl_cmd();
                (nr::FCNTL, [closed, cmd, self.rng.next()], Errno::EBADF)
            }
            6 => {
                let request = self.rng.next();
                (nr::IOCTL, [closed, request, self.rng.next()], Errno::EBADF)
            }
            7 => {
                // More iovecs than IOV_MAX, judged after the descriptor
                // only: fd 1 is always open (it carries the report).
                let count = self.rng.range(u64::from(IOV_MAX) + 1, u64::from(u32::MAX));
                let count = count | self.rng.below(4) << 32;
                let (fd, err) = if self.rng.chance(1, 4) {
                    (closed, Errno::EBADF)
                } else {
                    (1 | self.rng.next() << 32, Errno::EINVAL)
                };
                (nr::WRITEV, [fd, self.rng.next(), count], err)
            }
            8 => {
                let bad = self.bad_fd_flags(o::CLOEXEC | o::NONBLOCK);
                (nr::PIPE2, [self.rng.next(), bad, 0], Errno::EINVAL)
            }
            9 => {
                let (ptr, ok) = self.gen_ptr(8, Dir::KernelWrites);
                // A valid pipe2 would make descriptors; whether there is
                // room for them (EMFILE, before the pointer) only the
                // main thread knows.
                let err = match (ok, self.pipe_room) {
                    (false, Some(true)) => Errno::EFAULT,
                    (_, Some(false)) => Errno::EMFILE,
                    _ => return Ok(()),
                };
                let flags = self.rng.pick(&[0, o::CLOEXEC, o::NONBLOCK]).into();
                (nr::PIPE2, [ptr, flags, 0], err)
            }
            10 => {
                // The descriptor first: the pointer is never looked at.
                let (ptr, _) = self.gen_ptr(rt::abi::Stat::SIZE as u64, Dir::KernelWrites);
                (nr::FSTAT, [closed, ptr, 0], Errno::EBADF)
            }
            _ => return self.writev_on_closed_fd(),
        };
        // SAFETY: every one of these must fail before the kernel writes
        // anything; a valid pointer is in our own memory all the same.
        unsafe { self.call(call, &args, Expect::Err(err))? };
        Ok(())
    }

    /// Flags with some bit outside `allowed` (an `int`: the high half of
    /// the register is noise).
    fn bad_fd_flags(&mut self, allowed: u32) -> u64 {
        let bit = loop {
            let bit = 1u32 << self.rng.below(32);
            if bit & allowed == 0 {
                break bit;
            }
        };
        let noise = self.rng.next() as u32 & allowed;
        u64::from(bit | noise) | self.rng.next() << 32
    }

    /// An fcntl command: one Faultline has, one only Linux has, or noise.
    pub fn fcntl_cmd(&mut self) -> u64 {
        let r = &mut self.rng;
        let cmd = match r.below(3) {
            0 => r.pick(&[
                fcntl::F_DUPFD,
                fcntl::F_GETFD,
                fcntl::F_SETFD,
                fcntl::F_GETFL,
                fcntl::F_SETFL,
                fcntl::F_DUPFD_CLOEXEC,
                fcntl::F_SETPIPE_SZ,
                fcntl::F_GETPIPE_SZ,
            ]),
            1 => r.pick(&[
                5, 6, 7, 8, 9, 10, 11, 15, 16, 36, 1024, 1025, 1026, 1033, 1034,
            ]),
            _ => r.next() as u32,
        };
        // The command is an unsigned int: the high half must not matter.
        u64::from(cmd) | r.next() << 32
    }

    /// writev to a closed descriptor with an iovec array (in our own
    /// memory, or a bad one) whose buffers and lengths may be bad too: the
    /// descriptor is judged first, so EBADF whatever the array holds.
    fn writev_on_closed_fd(&mut self) -> Checked<()> {
        let fd = self.never_open_fd();
        let count = self.rng.range(1, 4);
        let array = if self.rng.chance(1, 4) {
            self.gen_ptr(16 * count, Dir::KernelReads).0
        } else {
            self.own.start
        };
        for i in 0..count {
            let len = match self.rng.below(8) {
                0 => 1 << 63 | self.rng.next(),
                _ => self.rng.range(0, 64),
            };
            let base = if (len as i64) < 0 {
                self.rng.next()
            } else {
                self.gen_ptr(len, Dir::KernelReads).0
            };
            let at = self.own.start + 16 * i;
            // SAFETY: our own memory, which nothing borrows.
            unsafe {
                (at as *mut u64).write_unaligned(base);
                (at as *mut u64).add(1).write_unaligned(len);
            }
        }
        // SAFETY: the kernel must fail before it reads or writes anything.
        unsafe { self.call(nr::WRITEV, &[fd, array, count], Expect::Err(Errno::EBADF))? };
        Ok(())
    }

    /// getpid and getppid: the same answers every time, in every thread
    /// (learned from the main thread's first calls).
    pub fn ids(&mut self) -> Checked<()> {
        let (pid, ppid) = (ids().0, ids().1);
        // SAFETY: neither takes a pointer.
        unsafe { self.call(nr::GETPID, &[], Expect::Ret(pid))? };
        // SAFETY: as above.
        unsafe { self.call(nr::GETPPID, &[], Expect::Ret(ppid))? };
        Ok(())
    }

    /// clock_gettime with a clock Linux does not have (EINVAL, judged
    /// before the pointer) or a good clock and a pointer that may be bad.
    fn clock_hostile(&mut self) -> Checked<()> {
        let (tp, ok) = self.gen_ptr(Timespec::SIZE as u64, Dir::KernelWrites);
        let (id, expect) = if self.rng.chance(1, 2) {
            (self.bad_clock(), Expect::Err(Errno::EINVAL))
        } else {
            let good = self.good_clock();
            (
                good,
                if ok {
                    Expect::Ret(0)
                } else {
                    Expect::Err(Errno::EFAULT)
                },
            )
        };
        if expect == Expect::Ret(0) {
            // A valid write into memory another thread may use: skip.
            return Ok(());
        }
        // SAFETY: the call must fail, so the kernel writes nothing.
        unsafe { self.call(nr::CLOCK_GETTIME, &[id, tp], expect)? };
        Ok(())
    }

    /// A clock id no Linux has, possibly with high bits that an `int`
    /// argument drops (they must not turn it into a good one).
    fn bad_clock(&mut self) -> u64 {
        let r = &mut self.rng;
        let low = r.pick(&[10, 12, 13, 100, i32::MAX as u64, (-7i32) as u32 as u64]);
        r.below(4) << 32 | low
    }

    /// A clock id that exists, with random high bits the kernel must drop.
    fn good_clock(&mut self) -> u64 {
        let r = &mut self.rng;
        let low = r.pick(&[0, 1, 4, 5, 6, 7]);
        (r.next() << 32) | low
    }

    /// nanosleep and clock_nanosleep refused: a bad pointer (EFAULT), a
    /// time out of range (EINVAL), a clock that cannot sleep (EOPNOTSUPP)
    /// or does not exist (EINVAL, before the pointer).
    fn sleep_hostile(&mut self) -> Checked<()> {
        let r = &mut self.rng;
        let bad = r.pick(&[
            Timespec { sec: -1, nsec: 0 },
            Timespec { sec: 0, nsec: -1 },
            Timespec {
                sec: 0,
                nsec: 1_000_000_000,
            },
            Timespec {
                sec: i64::MIN,
                nsec: i64::MAX,
            },
        ]);
        let req = bad.to_bytes();
        let good_req = Timespec { sec: 0, nsec: 1 }.to_bytes();
        let (ptr, ok) = self.gen_ptr(Timespec::SIZE as u64, Dir::KernelReads);
        match self.rng.below(5) {
            0 => {
                // SAFETY: the kernel only reads `req`, which we own.
                let req = req.as_ptr() as u64;
                unsafe { self.call(nr::NANOSLEEP, &[req, 0], Expect::Err(Errno::EINVAL))? };
            }
            1 if !ok => {
                // SAFETY: the kernel must refuse the pointer and read nothing.
                unsafe { self.call(nr::NANOSLEEP, &[ptr, 0], Expect::Err(Errno::EFAULT))? };
            }
            2 => {
                let id = self.bad_clock();
                // SAFETY: the clock is refused before anything is read.
                let req = good_req.as_ptr() as u64;
                let e = Expect::Err(Errno::EINVAL);
                unsafe { self.call(nr::CLOCK_NANOSLEEP, &[id, 0, req, 0], e)? };
            }
            3 => {
                let id = self.rng.pick(&[2, 3, 4, 5, 6]);
                let req = good_req.as_ptr() as u64;
                let e = Expect::Err(Errno::EOPNOTSUPP);
                // SAFETY: as above: refused before anything is read.
                unsafe { self.call(nr::CLOCK_NANOSLEEP, &[id, 0, req, 0], e)? };
            }
            _ => {
                // An absolute time long past: returns at once.
                let req = good_req.as_ptr() as u64;
                let abs = clock::TIMER_ABSTIME as u64;
                // SAFETY: the kernel only reads `req`, which we own.
                unsafe { self.call(nr::CLOCK_NANOSLEEP, &[1, abs, req, 0], Expect::Ret(0))? };
            }
        }
        Ok(())
    }

    pub fn gettid(&mut self) -> Checked<()> {
        // SAFETY: gettid takes no pointer.
        unsafe { self.call(nr::GETTID, &[], Expect::Ret(self.tid))? };
        Ok(())
    }

    /// The monotonic clock, which must never go back.
    pub fn time(&mut self) -> Checked<u64> {
        let mut ts = [0u8; Timespec::SIZE];
        let ptr = ts.as_mut_ptr() as u64;
        let mono = clock::MONOTONIC as u64;
        // SAFETY: the kernel writes the 16 bytes of `ts`, which nothing
        // borrows while the call runs.
        unsafe { self.call(nr::CLOCK_GETTIME, &[mono, ptr], Expect::Ret(0))? };
        let Some(now) = Timespec::from_bytes(ts).to_ns() else {
            return Err(self.fail(Why::Note("clock_gettime wrote a timespec out of range")));
        };
        if now < self.last_time {
            return Err(self.fail(Why::Note("the monotonic clock went backwards")));
        }
        self.last_time = now;
        Ok(now)
    }

    /// A short sleep, and time must have moved on by at least its length.
    pub fn sleep(&mut self) -> Checked<()> {
        let ns = match self.rng.below(4) {
            0 => 0,
            1 => 1,
            _ => self.rng.range(0, MAX_SLEEP_NS),
        };
        let before = self.time()?;
        let req = Timespec::from_ns(ns).to_bytes();
        // SAFETY: the kernel reads the 16 bytes of `req`; `rem` is null.
        unsafe { self.call(nr::NANOSLEEP, &[req.as_ptr() as u64, 0], Expect::Ret(0))? };
        let after = self.time()?;
        if after < before + ns {
            return Err(self.fail(Why::Note("nanosleep returned before its time")));
        }
        Ok(())
    }

    /// Numbers no call has, including ones whose low 32 bits name a real
    /// call (a kernel that truncated the number would run exit or write).
    pub fn unknown(&mut self) -> Checked<()> {
        let r = &mut self.rng;
        let low = r.pick(&nr::ALL);
        let call = match r.below(6) {
            // Small numbers in the gaps between real ones (Linux has calls
            // there that Faultline does not, yet: all ENOSYS today).
            0 | 1 => loop {
                let n = r.below(nr::FAULTLINE_BASE + 16);
                if !nr::ALL.contains(&n) {
                    break n;
                }
            },
            2 => (r.range(1, u64::from(u32::MAX)) << 32) | low,
            3 => (1 << 63) | low,
            4 => u64::MAX - r.below(16),
            _ => r.range(nr::FAULTLINE_BASE + 16, u64::MAX),
        };
        // SAFETY: no such call, so the kernel must touch nothing; the
        // random arguments point nowhere we care about should it not.
        unsafe { self.call(call, &[], Expect::Err(Errno::ENOSYS))? };
        Ok(())
    }

    /// execve or execveat that must fail before the point of no return:
    /// a path or an array the kernel cannot read (EFAULT, judged before
    /// the lookup), a program that does not exist (ENOENT), a directory
    /// (EACCES), flags execveat does not know (EINVAL, judged after the
    /// strings). Any of them that ran a program would end the fuzzer.
    fn exec_refused(&mut self) -> Checked<()> {
        let missing = b"/bin/no-such-program\0";
        let dir = b"/bin\0";
        let unreadable = |t: &mut Self, len: u64| loop {
            let p = t.space.hostile(&mut t.rng, len);
            if p != 0 && !t.predict(p, len, Dir::KernelReads) {
                break p;
            }
        };
        let (call, args, err): (u64, [u64; 5], Errno) = match self.rng.below(5) {
            0 => (nr::EXECVE, [unreadable(self, 1), 0, 0, 0, 0], Errno::EFAULT),
            1 => {
                let argv = unreadable(self, 8);
                (
                    nr::EXECVE,
                    [missing.as_ptr() as u64, argv, 0, 0, 0],
                    Errno::EFAULT,
                )
            }
            2 => (
                nr::EXECVE,
                [missing.as_ptr() as u64, 0, 0, 0, 0],
                Errno::ENOENT,
            ),
            3 => (nr::EXECVE, [dir.as_ptr() as u64, 0, 0, 0, 0], Errno::EACCES),
            _ => {
                let flags = loop {
                    let f = self.rng.next() as u32 & !0x1100;
                    if f != 0 {
                        break u64::from(f);
                    }
                };
                let fdcwd = rt::abi::exec::AT_FDCWD as u32 as u64;
                (
                    nr::EXECVEAT,
                    [fdcwd, missing.as_ptr() as u64, 0, 0, flags],
                    Errno::EINVAL,
                )
            }
        };
        // SAFETY: every case fails before the kernel changes anything; the
        // strings are ours and NUL-ended, the other pointers unreadable.
        unsafe { self.call(call, &args, Expect::Err(err))? };
        Ok(())
    }

    /// read or write on a descriptor that is never open: EBADF, whatever
    /// the buffer (the descriptor is judged first, as on Linux).
    fn io_on_closed_fd(&mut self) -> Checked<()> {
        let fd = self.never_open_fd();
        let len = self.gen_len();
        let eff = len.min(MAX_RW);
        let (call, dir) = if self.rng.chance(1, 2) {
            (nr::WRITE, Dir::KernelReads)
        } else {
            (nr::READ, Dir::KernelWrites)
        };
        let (ptr, _) = self.gen_ptr(eff, dir);
        // SAFETY: the descriptor is never open, so nothing is transferred;
        // a valid buffer is in our own region all the same.
        unsafe { self.call(call, &[fd, ptr, len], Expect::Err(Errno::EBADF))? };
        Ok(())
    }

    fn close_closed_fd(&mut self) -> Checked<()> {
        let fd = self.never_open_fd();
        // SAFETY: close takes no pointer.
        unsafe { self.call(nr::CLOSE, &[fd], Expect::Err(Errno::EBADF))? };
        Ok(())
    }

    /// pipe() with a buffer the kernel must refuse: no descriptor appears
    /// (the main thread's model would see it in the next pipe's numbers).
    /// EMFILE instead when there is no room for both ends, judged first;
    /// only the main thread knows (`pipe_room`), so helpers do not ask.
    fn pipe_bad_pointer(&mut self) -> Checked<()> {
        let err = match self.pipe_room {
            Some(true) => Errno::EFAULT,
            Some(false) => Errno::EMFILE,
            None => return Ok(()),
        };
        let ptr = loop {
            let p = self.space.hostile(&mut self.rng, 8);
            if !self.predict(p, 8, Dir::KernelWrites) {
                break p;
            }
        };
        // SAFETY: the kernel must refuse the pointer and write nothing.
        unsafe { self.call(nr::PIPE, &[ptr], Expect::Err(err))? };
        Ok(())
    }

    /// wait4, which finds no child to wait for (no program has one):
    /// ECHILD whatever the pid, once Linux's checks pass (an option it
    /// does not know: EINVAL; pid INT_MIN: ESRCH). The status and rusage
    /// pointers are refused ones or null: never used, never written.
    fn wait4(&mut self) -> Checked<()> {
        let r = &mut self.rng;
        let pid = match r.below(6) {
            0 => u64::from(i32::MIN as u32),
            1 => u64::MAX,
            2 => 0,
            // A process group: a negative int.
            3 => r.range(1, i32::MAX as u64).wrapping_neg(),
            _ => r.next(),
        };
        let known = wait::OPTIONS as u32;
        let options = match r.below(4) {
            0 => loop {
                let bit = 1u32 << r.below(32);
                if bit & known == 0 {
                    break bit | (r.next() as u32 & known);
                }
            },
            _ => r.next() as u32 & known,
        };
        let err = if options & !known != 0 {
            Errno::EINVAL
        } else if pid as i32 == i32::MIN {
            Errno::ESRCH
        } else {
            Errno::ECHILD
        };
        let refused = |t: &mut Self| match t.rng.below(3) {
            0 => 0,
            _ => loop {
                let p = t.space.hostile(&mut t.rng, 8);
                if !t.predict(p, 8, Dir::KernelWrites) {
                    break p;
                }
            },
        };
        let (status, rusage) = (refused(self), refused(self));
        let options = u64::from(options) | self.rng.next() << 32;
        let pid = pid | self.rng.next() << 32;
        // SAFETY: the call must fail, and both pointers are null or ones
        // the kernel must refuse.
        unsafe { self.call(nr::WAIT4, &[pid, status, options, rusage], Expect::Err(err))? };
        Ok(())
    }

    /// wait() on tids it can never succeed for: ourselves (EINVAL), the
    /// kernel's tasks (ECHILD), tids that never exist (ESRCH); a bad
    /// status pointer is EFAULT before any of that.
    pub fn wait_hostile(&mut self) -> Checked<()> {
        let (tid, err) = match self.rng.below(4) {
            0 => (self.tid, Errno::EINVAL),
            1 => (self.rng.pick(&KERNEL_TIDS), Errno::ECHILD),
            2 => (
                self.rng.range(NO_SUCH_TID, u64::from(u32::MAX)),
                Errno::ESRCH,
            ),
            _ => (self.rng.range(1 << 32, u64::MAX), Errno::ESRCH),
        };
        self.wait_for_error(tid, err)
    }

    /// wait(tid, status) where `tid` must fail with `err`.
    pub fn wait_for_error(&mut self, tid: u64, err: Errno) -> Checked<()> {
        let (ptr, ok) = self.gen_status_ptr();
        // The pointer is checked first, whatever the tid (docs/abi.md).
        let expect = if ok { err } else { Errno::EFAULT };
        // SAFETY: the call must fail, so the kernel writes nothing; a valid
        // status pointer is in our own region or the slack all the same.
        unsafe { self.call(nr::WAIT_THREAD, &[tid, ptr], Expect::Err(expect))? };
        Ok(())
    }

    /// A status pointer for wait: null a quarter of the time, else any
    /// pointer. Null means "status not wanted" however it was chosen.
    pub fn gen_status_ptr(&mut self) -> (u64, bool) {
        if self.rng.chance(1, 4) {
            return (0, true);
        }
        let (ptr, ok) = self.gen_ptr(8, Dir::KernelWrites);
        (ptr, ok || ptr == 0)
    }

    /// spawn_thread with an entry or stack the kernel must refuse.
    pub fn spawn_hostile(&mut self, spawn: &Spawner) -> Checked<()> {
        let r = &mut self.rng;
        let kernel_or_odd = |r: &mut Rng| match r.below(4) {
            0 => USER_END + r.below(1 << 40),
            1 => 0xffff_8000_0000_0000 + r.below(1 << 32),
            2 => 0xffff_ffff_8000_0000 + (r.below(1 << 20) & !15),
            _ => u64::MAX - r.below(PAGE),
        };
        let (entry, stack, err) = match r.below(4) {
            0 => (kernel_or_odd(r), spawn.stack_top, Errno::EFAULT),
            1 => (spawn.entry, kernel_or_odd(r), Errno::EFAULT),
            // Unaligned, in the user half: EINVAL. Pointed at unmapped
            // memory, so a kernel that started the thread anyway would
            // have it fault at once rather than run on a stack in use.
            2 => {
                let at = self.space.unmapped_mid(r) | r.range(1, 15);
                (spawn.entry, at, Errno::EINVAL)
            }
            // The last bytes below USER_END: in the user half, unaligned.
            _ => (spawn.entry, USER_END - r.range(1, 15), Errno::EINVAL),
        };
        let arg = self.rng.next();
        // SAFETY: the kernel must refuse, so no thread starts.
        unsafe { self.call(nr::SPAWN_THREAD, &[entry, stack, arg], Expect::Err(err))? };
        Ok(())
    }
}

/// What a thread needs to ask for new threads: the entry point, and a
/// stack top that a thread the kernel wrongly started could use harmlessly.
pub struct Spawner {
    pub entry: u64,
    pub stack_top: u64,
}

/// (pid, ppid) of this program, learned once by the main thread.
static IDS: [core::sync::atomic::AtomicU64; 2] = [
    core::sync::atomic::AtomicU64::new(0),
    core::sync::atomic::AtomicU64::new(0),
];

pub fn set_ids(pid: u64, ppid: u64) {
    IDS[0].store(pid, core::sync::atomic::Ordering::Relaxed);
    IDS[1].store(ppid, core::sync::atomic::Ordering::Relaxed);
}

pub fn ids() -> (u64, u64) {
    (
        IDS[0].load(core::sync::atomic::Ordering::Relaxed),
        IDS[1].load(core::sync::atomic::Ordering::Relaxed),
    )
}
