//! Linux's thread calls with hostile arguments, each result predicted
//! exactly: clone flag sets Faultline refuses, futex calls that must not
//! block (bad addresses, bad timeouts, value mismatches, zero and past
//! timeouts, wakes of words nobody waits on, unknown operations),
//! set_tid_address (whose word the kernel clears at the thread's exit)
//! and arch_prctl (the FS base is per thread: no other thread can change
//! what ours reads back). No call here creates a thread or sleeps, so any
//! thread may make them; the one prediction that depends on how many
//! threads exist (clone's EPERM) is made by the main thread alone.

use core::ptr;

use rt::abi::{Errno, TASK_SIZE_MAX, Timespec, USER_END, arch_prctl, clone, futex, nr};

use crate::space::Dir;
use crate::thread::{Checked, Expect, Thread, Why};
use crate::{Fuzz, helper};

/// Flags clone takes for a thread (kernel/src/proc/clone.rs).
const REQUIRED: u32 = clone::VM | clone::SIGHAND | clone::THREAD | clone::FILES;
const ALLOWED: u32 = REQUIRED
    | clone::FS
    | clone::SYSVSEM
    | clone::SETTLS
    | clone::PARENT_SETTID
    | clone::CHILD_CLEARTID
    | clone::DETACHED;
/// Flags that mean a process, a namespace or a tracing relation: EINVAL.
const REFUSED: [u32; 14] = [
    clone::PIDFD,
    clone::PTRACE,
    clone::VFORK,
    clone::PARENT,
    clone::NEWNS,
    clone::UNTRACED,
    clone::CHILD_SETTID,
    clone::NEWCGROUP,
    clone::NEWUTS,
    clone::NEWIPC,
    clone::NEWUSER,
    clone::NEWPID,
    clone::NEWNET,
    clone::IO,
];
/// A stack no thread can use: a child the kernel wrongly made faults on
/// its first push, which ends the run (status 142), not silently.
const NO_STACK: u64 = 0x1000;

/// Whether clone would make a thread with these flags (their low 32
/// bits count; the low byte is the exit signal, ignored).
pub fn clone_accepts(flags: u64) -> bool {
    let f = flags as u32 & !clone::CSIGNAL;
    f & REQUIRED == REQUIRED && f & !ALLOWED == 0
}

/// An address that is not a user address for `len` bytes at all (the
/// kernel half, non-canonical, past USER_END): what even a private futex
/// wake refuses.
fn outside_user(addr: u64, len: u64) -> bool {
    addr.checked_add(len).is_none_or(|end| end > USER_END)
}

impl Thread {
    /// clone with a flag set the kernel refuses: EINVAL, no thread.
    pub fn clone_refused(&mut self) -> Checked<()> {
        let r = &mut self.rng;
        let flags = match r.below(4) {
            // A pthread set missing one of what a thread needs.
            0 => {
                let base = r.pick(&[clone::GLIBC_PTHREAD, clone::MUSL_PTHREAD]);
                let need = [clone::VM, clone::SIGHAND, clone::THREAD, clone::FILES];
                u64::from(base & !r.pick(&need))
            }
            // A pthread set with a flag Faultline has no meaning for.
            1 => {
                let base = r.pick(&[clone::GLIBC_PTHREAD, clone::MUSL_PTHREAD, REQUIRED]);
                u64::from(base | r.pick(&REFUSED))
            }
            // Anything at all, that happens not to be a thread.
            _ => loop {
                let f = r.next();
                if !clone_accepts(f) {
                    break f;
                }
            },
        };
        // Noise in the high half and the exit signal, which the kernel
        // must drop, not let change the verdict.
        let flags = match self.rng.below(3) {
            0 => flags,
            1 => flags | (self.rng.next() << 32),
            _ => (flags & !0xff) | self.rng.below(256),
        };
        if clone_accepts(flags) {
            return Ok(());
        }
        let tls = self.rng.next();
        let (ptid, ctid) = (self.unwritable(4), self.unwritable(4));
        // SAFETY: refused, so no thread starts and nothing is written (a
        // wrong thread would fault on NO_STACK; the tid pointers are not
        // writable).
        let args = [flags, NO_STACK, ptid, ctid, tls];
        unsafe { self.call(nr::CLONE, &args, Expect::Err(Errno::EINVAL))? };
        Ok(())
    }

    /// An address the kernel cannot write `len` bytes at.
    pub fn unwritable(&mut self, len: u64) -> u64 {
        loop {
            let p = self.space.hostile(&mut self.rng, len);
            if !self.predict(p, len, Dir::KernelWrites) {
                break p;
            }
        }
    }

    /// An aligned word of our own memory.
    fn own_addr(&mut self) -> u64 {
        let slots = (self.own.len() / 4).min(64);
        (self.own.start + 4 * self.rng.below(slots)) & !3
    }

    /// A futex word of ours holding a fresh random value: (address, value).
    fn own_word(&mut self) -> (u64, u32) {
        let addr = self.own_addr();
        let value = self.rng.next() as u32;
        // SAFETY: our own region, which nothing borrows; the kernel reads
        // it only during our own calls.
        unsafe { ptr::write_volatile(addr as *mut u32, value) };
        (addr, value)
    }

    /// One futex call that cannot block, with its exact result.
    pub fn futex_hostile(&mut self) -> Checked<()> {
        let private = self.rng.chance(1, 2);
        let flag = if private { futex::PRIVATE_FLAG } else { 0 };
        let bits = match self.rng.below(4) {
            0 => futex::BITSET_MATCH_ANY,
            _ => (self.rng.next() as u32).max(1),
        };
        let zero = Timespec { sec: 0, nsec: 0 }.to_bytes();
        let past = Timespec {
            sec: 0,
            // Long past by the time any program runs.
            nsec: self.rng.range(0, 1_000_000) as i64,
        }
        .to_bytes();
        let bad_ts = self
            .rng
            .pick(&[
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
            ])
            .to_bytes();
        let (zero, past, bad_ts) = (
            zero.as_ptr() as u64,
            past.as_ptr() as u64,
            bad_ts.as_ptr() as u64,
        );
        let wait = self.rng.pick(&[futex::WAIT, futex::WAIT_BITSET]);
        let wake = self.rng.pick(&[futex::WAKE, futex::WAKE_BITSET]);
        let (args, expect): ([u64; 6], Errno) = match self.rng.below(12) {
            // Not 4-byte aligned: EINVAL, whatever the memory.
            0 => {
                let addr = self.rng.next() & !3 | self.rng.range(1, 3);
                let op = self.rng.pick(&[wait, wake]);
                let bits = if self.rng.chance(1, 2) {
                    bits
                } else {
                    futex::BITSET_MATCH_ANY
                };
                (
                    [addr, op_arg(op | flag), 0, 0, 0, bits.into()],
                    Errno::EINVAL,
                )
            }
            // A bitset of 0: EINVAL before the address is looked at.
            1 => {
                let op = self.rng.pick(&[futex::WAIT_BITSET, futex::WAKE_BITSET]);
                let addr = self.rng.next();
                ([addr, op_arg(op | flag), 0, 0, 0, 0], Errno::EINVAL)
            }
            // A bad timeout: read (EFAULT) and checked (EINVAL) first of all.
            2 => {
                let (timeout, e) = if self.rng.chance(1, 2) {
                    (bad_ts, Errno::EINVAL)
                } else {
                    let p = loop {
                        let p = self.space.hostile(&mut self.rng, 16);
                        if !self.predict(p, 16, Dir::KernelReads) {
                            break p;
                        }
                    };
                    (p, Errno::EFAULT)
                };
                let addr = self.rng.next();
                ([addr, op_arg(wait | flag), 0, timeout, 0, bits.into()], e)
            }
            // A word nobody can read, aligned: EFAULT for a wait and a
            // shared wake; a private wake needs no memory, only a user
            // address.
            3 | 4 => {
                let addr = self.space.hostile(&mut self.rng, 4) & !3;
                if self.predict(addr, 4, Dir::KernelReads) {
                    return Ok(());
                }
                let waiting = self.rng.chance(1, 2);
                let op = if waiting { wait } else { wake };
                let e = if !waiting && private && !outside_user(addr, 4) {
                    // Success: the count.
                    let a = [addr, op_arg(op | flag), self.rng.next(), 0, 0, bits.into()];
                    // SAFETY: a wake touches no memory.
                    unsafe { self.call(nr::FUTEX, &a, Expect::Ret(0))? };
                    return Ok(());
                } else {
                    Errno::EFAULT
                };
                ([addr, op_arg(op | flag), 0, 0, 0, bits.into()], e)
            }
            // Our word holds another value: EAGAIN, with or without a
            // (valid, even long) timeout.
            5 | 6 => {
                let (addr, value) = self.own_word();
                let val = value ^ (self.rng.next() as u32).max(1);
                let timeout = self.rng.pick(&[0, zero, past]);
                (
                    [
                        addr,
                        op_arg(wait | flag),
                        val.into(),
                        timeout,
                        0,
                        bits.into(),
                    ],
                    Errno::EAGAIN,
                )
            }
            // It holds the value and the time is up already: ETIMEDOUT.
            // WAIT's timeout is relative (0), WAIT_BITSET's absolute (long
            // past, on either clock).
            7 => {
                let (addr, value) = self.own_word();
                let (op, timeout) = if self.rng.chance(1, 2) {
                    (futex::WAIT | flag, zero)
                } else {
                    let clock = if self.rng.chance(1, 2) {
                        futex::CLOCK_REALTIME
                    } else {
                        0
                    };
                    (futex::WAIT_BITSET | flag | clock, past)
                };
                (
                    [addr, op_arg(op), value.into(), timeout, 0, bits.into()],
                    Errno::ETIMEDOUT,
                )
            }
            // A wake of a word of ours: nobody waits there, ever.
            8 => {
                let (addr, _) = self.own_word();
                let counts = [0, 1, 2, u64::from(u32::MAX), self.rng.next()];
                let n = self.rng.pick(&counts);
                let a = [
                    addr,
                    op_arg(wake | flag),
                    n,
                    self.rng.next(),
                    0,
                    bits.into(),
                ];
                // SAFETY: the kernel reads nothing for a wake.
                unsafe { self.call(nr::FUTEX, &a, Expect::Ret(0))? };
                return Ok(());
            }
            // Requeues: negative counts EINVAL; a compare that fails
            // EAGAIN; nobody to move 0.
            9 => {
                let (from, value) = self.own_word();
                // Not written: it may be `from` itself.
                let to = self.own_addr();
                let (wake_n, requeue, cmp, e) = match self.rng.below(4) {
                    0 => (
                        u64::from(self.rng.range(1 << 31, u64::from(u32::MAX)) as u32),
                        1,
                        value,
                        Some(Errno::EINVAL),
                    ),
                    1 => (
                        1,
                        self.rng.range(1 << 31, u64::from(u32::MAX)),
                        value,
                        Some(Errno::EINVAL),
                    ),
                    2 => (1, 1, value ^ 1, Some(Errno::EAGAIN)),
                    _ => (self.rng.below(4), self.rng.below(4), value, None),
                };
                let op = if e == Some(Errno::EAGAIN) || self.rng.chance(1, 2) {
                    futex::CMP_REQUEUE
                } else {
                    futex::REQUEUE
                };
                let a = [from, op_arg(op | flag), wake_n, requeue, to, cmp.into()];
                let expect = match e {
                    Some(e) => Expect::Err(e),
                    None => Expect::Ret(0),
                };
                // SAFETY: the kernel reads our words, writes nothing.
                unsafe { self.call(nr::FUTEX, &a, expect)? };
                return Ok(());
            }
            // CLOCK_REALTIME with anything but WAIT_BITSET: ENOSYS (after
            // a WAIT has read its timeout).
            10 => {
                let op =
                    self.rng
                        .pick(&[futex::WAIT, futex::WAKE, futex::REQUEUE, futex::WAKE_BITSET]);
                let timeout = if op == futex::WAIT {
                    self.rng.pick(&[0, zero])
                } else {
                    self.rng.next()
                };
                let a = [
                    self.rng.next(),
                    op_arg(op | flag | futex::CLOCK_REALTIME),
                    0,
                    timeout,
                    0,
                    1,
                ];
                (a, Errno::ENOSYS)
            }
            // Operations Faultline does not have (or Linux no longer has).
            _ => {
                let cmd = match self.rng.below(3) {
                    0 => self.rng.pick(&[
                        futex::FD,
                        futex::WAKE_OP,
                        futex::LOCK_PI,
                        futex::UNLOCK_PI,
                        futex::TRYLOCK_PI,
                        futex::WAIT_REQUEUE_PI,
                        futex::CMP_REQUEUE_PI,
                        futex::LOCK_PI2,
                    ]),
                    1 => self.rng.range(14, 127) as i32,
                    _ => (self.rng.next() as i32) & futex::CMD_MASK | 0x200,
                };
                let op = cmd | flag;
                let a = [
                    self.rng.next(),
                    op_arg(op),
                    self.rng.next(),
                    0,
                    self.rng.next(),
                    self.rng.next(),
                ];
                (a, Errno::ENOSYS)
            }
        };
        // SAFETY: every case above is refused or reads only our memory and
        // the timespecs on our stack; nothing blocks and nothing is written.
        unsafe { self.call(nr::FUTEX, &args, Expect::Err(expect))? };
        Ok(())
    }

    /// set_tid_address: the tid back, always. The word is kept for the
    /// thread's exit, when the kernel stores 0 there and wakes it: so only
    /// null, memory the kernel cannot write (it must then do nothing), or
    /// the word our reaper checks.
    pub fn set_tid_address(&mut self) -> Checked<()> {
        let addr = match (self.rng.below(3), self.tid_word) {
            (0, _) => 0,
            (1, Some(word)) => word,
            _ => self.unwritable(4),
        };
        // SAFETY: the kernel only records the address now.
        unsafe { self.call(nr::SET_TID_ADDRESS, &[addr], Expect::Ret(self.tid))? };
        self.tid_addr = addr;
        Ok(())
    }

    /// arch_prctl: unknown codes EINVAL, FS bases outside the user half
    /// EPERM, a good one set, and ARCH_GET_FS returning this thread's
    /// (another's changes never show) or EFAULT for a bad pointer.
    pub fn arch_prctl(&mut self) -> Checked<()> {
        let high = |r: &mut crate::rng::Rng| if r.chance(1, 2) { r.next() << 32 } else { 0 };
        match self.rng.below(4) {
            0 => {
                let code = loop {
                    let c = match self.rng.below(3) {
                        0 => self.rng.pick(&[
                            arch_prctl::SET_GS,
                            arch_prctl::GET_GS,
                            0,
                            0x1001,
                            0x1011,
                            0x1012,
                            0x1021,
                            0x2001,
                            0x4001,
                            -1,
                        ]),
                        1 => self.rng.range(0x1000, 0x1100) as i32,
                        _ => self.rng.next() as i32,
                    };
                    if c != arch_prctl::SET_FS && c != arch_prctl::GET_FS {
                        break c;
                    }
                };
                let code = high(&mut self.rng) | u64::from(code as u32);
                let addr = self.rng.next();
                // SAFETY: refused: nothing is read or written.
                unsafe { self.call(nr::ARCH_PRCTL, &[code, addr], Expect::Err(Errno::EINVAL))? };
            }
            1 => {
                let bad = bad_base(&mut self.rng);
                let code = high(&mut self.rng) | arch_prctl::SET_FS as u64;
                // SAFETY: refused; the FS base stays.
                unsafe { self.call(nr::ARCH_PRCTL, &[code, bad], Expect::Err(Errno::EPERM))? };
            }
            2 => {
                let base = match self.rng.below(3) {
                    0 => 0,
                    1 => TASK_SIZE_MAX - 1 - self.rng.below(4096),
                    _ => self.rng.below(TASK_SIZE_MAX),
                };
                let code = high(&mut self.rng) | arch_prctl::SET_FS as u64;
                // SAFETY: nothing of ours uses FS.
                unsafe { self.call(nr::ARCH_PRCTL, &[code, base], Expect::Ret(0))? };
                self.fs_base = base;
            }
            _ => self.get_fs()?,
        }
        Ok(())
    }

    /// ARCH_GET_FS into a painted buffer on our stack, or a bad pointer.
    fn get_fs(&mut self) -> Checked<()> {
        let code = arch_prctl::GET_FS as u64;
        if self.rng.chance(1, 3) {
            let p = self.unwritable(8);
            // SAFETY: the kernel must refuse the pointer.
            unsafe { self.call(nr::ARCH_PRCTL, &[code, p], Expect::Err(Errno::EFAULT))? };
            return Ok(());
        }
        let paint = self.rng.next() as u8 | 1;
        let mut buf = [paint; 24];
        let at = buf.as_mut_ptr() as u64 + self.rng.range(1, 16);
        // SAFETY: eight bytes inside `buf`, which nothing borrows now.
        unsafe { self.call(nr::ARCH_PRCTL, &[code, at], Expect::Ret(0))? };
        let want = self.fs_base.to_le_bytes();
        for (i, b) in buf.iter().enumerate() {
            let a = buf.as_ptr() as u64 + i as u64;
            // SAFETY: reading our own buffer, which the kernel wrote.
            let got = unsafe { ptr::read_volatile(b) };
            let expected = match a.checked_sub(at) {
                Some(k) if k < 8 => want[k as usize],
                _ => paint,
            };
            if got != expected {
                return Err(self.fail(Why::Memory {
                    addr: a,
                    want: expected,
                    got,
                }));
            }
        }
        Ok(())
    }
}

/// An FS base arch_prctl refuses (EPERM): from TASK_SIZE_MAX up.
fn bad_base(r: &mut crate::rng::Rng) -> u64 {
    let bases = [
        TASK_SIZE_MAX,
        TASK_SIZE_MAX + r.below(4096),
        USER_END + r.below(1 << 40),
        0xffff_8000_0000_0000 + r.below(1 << 32),
        u64::MAX - r.below(4096),
    ];
    r.pick(&bases)
}

/// `op` as its register carries it: an int, the high half noise-free.
fn op_arg(op: i32) -> u64 {
    u64::from(op as u32)
}

impl Fuzz {
    /// clone of a pthread set with a TLS base arch_prctl would refuse:
    /// EPERM, checked after the thread limit (EAGAIN), so only when the
    /// model is sure of the count; no thread either way.
    pub fn clone_bad_tls(&mut self) -> Checked<()> {
        let expect = if self.m.threads_max() < helper::MAX_THREADS {
            Errno::EPERM
        } else if self.m.threads_min() >= helper::MAX_THREADS {
            Errno::EAGAIN
        } else {
            self.stats.skipped += 1;
            return Ok(());
        };
        let r = &mut self.t.rng;
        let flags = u64::from(r.pick(&[
            clone::GLIBC_PTHREAD,
            clone::MUSL_PTHREAD,
            REQUIRED | clone::SETTLS,
        ]));
        let tls = bad_base(r);
        let (ptid, ctid) = (self.t.unwritable(4), self.t.unwritable(4));
        // SAFETY: refused: no thread (one wrongly made faults on NO_STACK),
        // and the tid pointers are not writable.
        let args = [flags, NO_STACK, ptid, ctid, tls];
        unsafe { self.t.call(nr::CLONE, &args, Expect::Err(expect))? };
        if expect == Errno::EAGAIN {
            self.stats.eagain += 1;
        }
        Ok(())
    }
}
