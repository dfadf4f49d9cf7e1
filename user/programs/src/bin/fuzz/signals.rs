//! The signal calls, each result predicted exactly: rt_sigaction,
//! rt_sigprocmask, rt_sigpending, sigaltstack, kill, tkill and tgkill
//! (docs/abi.md, "Signals"; Linux's order of checks, as
//! tests/linux/signal.c and signal_errors.c show it).
//!
//! Every thread makes them, concurrently, in one process, so what one
//! thread does must not change what another predicts, and a signal that
//! is delivered must not end the run. The signals are shared out:
//! - a mask, a pending set and an alternate stack are per thread: each
//!   thread changes its own and puts them back before its step ends;
//! - PROCESS_SENT signals go to the whole process (`kill`). They are
//!   ignored and nobody ever blocks them, so each is dropped as it is
//!   sent (the kernel judges "ignored" by the main thread's mask, as
//!   Linux does): nothing of them is ever pending anywhere;
//! - SELF_SENT signals a thread sends only to itself (tgkill, tkill),
//!   after blocking them to see them pending; ignored by default, so the
//!   unblocking drops them. Nobody sets their action: setting an action
//!   that ignores drops the signal from every thread's queue;
//! - every other signal but those that cannot be handled or that a fault
//!   raises is owned by one thread (`owned_signal`: the main thread's,
//!   and one per helper slot), which alone changes its action and puts
//!   SIG_DFL back before its step ends. A handler set there is never
//!   run: the owner sends its signal only while it blocks it, and drops
//!   it by setting SIG_IGN before it unblocks.
//!
//! So a disposition is known unless another thread owns it, and a thread
//! never asks for the action of a signal another thread owns into memory
//! it then checks.

use core::ptr;

use rt::abi::sig::{self, bit};
use rt::abi::{Errno, nr};

use crate::buffers::{Kind, Out};
use crate::thread::{Checked, Expect, NO_SUCH_TID, Thread, Why, ids};

/// Sent to the whole process, never blocked (see the module comment).
const PROCESS_SENT: [u32; 3] = [sig::SIGCHLD, sig::SIGWINCH, sig::SIGPIPE];
const NEVER_BLOCKED: u64 = bit(sig::SIGCHLD) | bit(sig::SIGWINCH) | bit(sig::SIGPIPE);
/// Sent by a thread to itself only, and blocked to be seen pending.
const SELF_SENT: [u32; 2] = [sig::SIGURG, sig::SIGCONT];
const UNBLOCKABLE: u64 = bit(sig::SIGKILL) | bit(sig::SIGSTOP);
/// Signals no thread owns, whose action is therefore fixed: the ones
/// above; SIGKILL and SIGSTOP (no action can be set); those a fault
/// raises (were the fuzzer to fault, it must die of it, not find its
/// own SIG_IGN); and the stop signals, whose sending drops a pending
/// SIGCONT from every thread on Linux (and would stop the process there
/// once job control exists).
const SHARED: u64 = NEVER_BLOCKED
    | bit(sig::SIGURG)
    | bit(sig::SIGCONT)
    | UNBLOCKABLE
    | sig::SYNCHRONOUS
    | bit(sig::SIGTSTP)
    | bit(sig::SIGTTIN)
    | bit(sig::SIGTTOU);
const KNOWN_FLAGS: u64 = sig::UAPI_SA_FLAGS;
const SIGSET: u64 = sig::SIGSET_SIZE;
const ACTION: u64 = sig::SIGACTION_SIZE as u64;
const STACK: u64 = sig::STACK_SIZE as u64;

/// The signal thread `n` owns: the main thread's is 0, helper slot i's
/// is i + 1. None once they run out (the slots above 47).
pub fn owned_signal(n: usize) -> Option<u32> {
    (1..=sig::NSIG).filter(|&s| SHARED & bit(s) == 0).nth(n)
}

/// The action of a signal nobody owns: SIGPIPE's as main() set it
/// (rt::ignore_signal), the default for the rest.
fn fixed_action(signo: u32) -> Option<Action> {
    match signo {
        _ if SHARED & bit(signo) == 0 => None,
        sig::SIGPIPE => Some(Action {
            handler: sig::SIG_IGN,
            ..Action::DFL
        }),
        _ => Some(Action::DFL),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Action {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

impl Action {
    const DFL: Action = Action {
        handler: sig::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };

    fn from_bytes(b: &[u8; 32]) -> Action {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        Action {
            handler: w(0),
            flags: w(1),
            restorer: w(2),
            mask: w(3),
        }
    }

    fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, w) in [self.handler, self.flags, self.restorer, self.mask]
            .into_iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// As the kernel keeps it: unknown flags cleared, SIGKILL and SIGSTOP
    /// out of the mask.
    fn stored(self) -> Action {
        Action {
            flags: self.flags & KNOWN_FLAGS,
            mask: self.mask & !UNBLOCKABLE,
            ..self
        }
    }
}

/// A thread's alternate stack as the kernel keeps it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct AltStack {
    sp: u64,
    flags: u32,
    size: u64,
}

impl AltStack {
    const DISABLED: AltStack = AltStack {
        sp: 0,
        flags: sig::SS_DISABLE as u32,
        size: 0,
    };

    /// `stack_t` as a program passes it: ss_sp, ss_flags (an int, then
    /// four bytes of padding the kernel must ignore), ss_size.
    fn to_bytes(self, padding: u32) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.sp.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&padding.to_le_bytes());
        b[16..].copy_from_slice(&self.size.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8; 24]) -> AltStack {
        AltStack {
            sp: u64::from_le_bytes(b[..8].try_into().unwrap()),
            flags: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            size: u64::from_le_bytes(b[16..].try_into().unwrap()),
        }
    }

    /// What the kernel reports for it, the caller not being on it: the
    /// padding zero, and the mode SS_DISABLE (no stack) or 0, with
    /// SS_AUTODISARM as set.
    fn reported(self) -> [u8; 24] {
        let mode = if self.size == 0 {
            sig::SS_DISABLE as u32
        } else {
            0
        };
        AltStack {
            flags: mode | (self.flags & sig::SS_AUTODISARM),
            ..self
        }
        .to_bytes(0)
    }
}

impl Thread {
    /// Learned by the main thread before anything else: its mask (which it
    /// has between its steps) and that it has no alternate stack.
    pub fn learn_signals(&mut self) -> Checked<()> {
        let mut old = [0u8; 8];
        let p = old.as_mut_ptr() as u64;
        // SAFETY: the kernel writes the 8 bytes of `old`; no set is given.
        unsafe { self.call(nr::RT_SIGPROCMASK, &[0, 0, p, SIGSET], Expect::Ret(0))? };
        // SAFETY: `old` was written by the call; read it fresh.
        self.base_mask = u64::from_le_bytes(unsafe { ptr::read_volatile(&old) });
        let mut ss = [0xa5u8; 24];
        let p = ss.as_mut_ptr() as u64;
        // SAFETY: the kernel writes the 24 bytes of `ss`.
        unsafe { self.call(nr::SIGALTSTACK, &[0, p], Expect::Ret(0))? };
        // SAFETY: as above.
        if unsafe { ptr::read_volatile(&ss) } != AltStack::DISABLED.reported() {
            return Err(self.fail(Why::Note("a new program has an alternate signal stack")));
        }
        Ok(())
    }

    /// One of the signal calls (or a short sequence that puts back what
    /// it changed).
    pub fn signal_call(&mut self) -> Checked<()> {
        self.signal_calls += 1;
        match self.rng.below(13) {
            0 | 1 => self.sigaction_query(),
            2 => self.sigaction_refused(),
            3 => self.sigaction_owned(),
            4 | 5 => self.sigprocmask(),
            6 => self.sigpending_hostile(),
            7 | 8 => self.pending_round(),
            9 => self.sigaltstack(),
            _ => self.kill_calls(),
        }
    }

    // --- arguments ------------------------------------------------------------

    /// An `int` argument: the high half of the register is noise.
    fn int_arg(&mut self, v: i32) -> u64 {
        let high = if self.rng.chance(1, 2) {
            self.rng.next() << 32
        } else {
            0
        };
        high | u64::from(v as u32)
    }

    /// A `sigsetsize` (a size_t: every bit counts): 8, or one Linux
    /// refuses.
    fn sigset_size(&mut self) -> u64 {
        if self.rng.chance(3, 4) {
            return SIGSET;
        }
        let high = self.rng.range(1, u64::from(u32::MAX)) << 32;
        self.rng
            .pick(&[0, 1, 4, 7, 9, 16, 128, SIGSET | high, u64::MAX])
    }

    /// A signal number no call takes (0 too, when `zero`), as an int.
    fn bad_signo(&mut self, zero: bool) -> u64 {
        let r = &mut self.rng;
        let n = match r.below(if zero { 5 } else { 4 }) {
            0 => r.pick(&[65, 66, 100, 128, 255, 256, i32::MAX]),
            1 => r.range(65, i32::MAX as u64) as i32,
            2 => r.pick(&[-1, -9, -64, i32::MIN]),
            3 => -(r.range(1, i32::MAX as u64) as i32),
            _ => 0,
        };
        self.int_arg(n)
    }

    /// A valid signal number: mostly one whose action this thread knows
    /// (a shared one, or its own), else any.
    fn some_signo(&mut self) -> u32 {
        match (self.rng.below(5), self.sig_own) {
            (0, Some(own)) => own,
            (0..=2, _) => loop {
                let s = self.rng.range(1, u64::from(sig::NSIG)) as u32;
                if SHARED & bit(s) != 0 {
                    break s;
                }
            },
            _ => self.rng.range(1, u64::from(sig::NSIG)) as u32,
        }
    }

    /// The action of `signo` as this thread knows it, `own` being what it
    /// set its own signal to in this step; None when another thread owns
    /// it.
    fn known_action(&self, signo: u32, own: Action) -> Option<Action> {
        if Some(signo) == self.sig_own {
            return Some(own);
        }
        fixed_action(signo)
    }

    // --- rt_sigaction -----------------------------------------------------------

    /// rt_sigaction that only reads: EINVAL (size, then the number) or
    /// EFAULT (the old action's pointer) whatever the signal, else the
    /// action this thread knows.
    fn sigaction_query(&mut self) -> Checked<()> {
        let size = self.sigset_size();
        let (signo_arg, signo) = if self.rng.chance(1, 5) {
            (self.bad_signo(true), None)
        } else {
            let s = self.some_signo();
            (self.int_arg(s as i32), Some(s))
        };
        let o = self.out(ACTION, true);
        let action = signo.and_then(|s| self.known_action(s, Action::DFL));
        let (expect, written) = if size != SIGSET || signo.is_none() {
            (Expect::Err(Errno::EINVAL), None)
        } else {
            match (o.kind, action) {
                (Kind::Null, _) => (Expect::Ret(0), None),
                (Kind::Bad, _) => (Expect::Err(Errno::EFAULT), None),
                (Kind::Good, Some(a)) => (Expect::Ret(0), Some(a.to_bytes())),
                // Another thread's signal, which it may be changing.
                (Kind::Good, None) => return Ok(()),
            }
        };
        // SAFETY: no new action; the old one goes into our own memory, or
        // the pointer is null or refused.
        unsafe { self.call(nr::RT_SIGACTION, &[signo_arg, 0, o.ptr, size], expect)? };
        self.check_out(&o, written.as_ref().map_or(&[], |w| &w[..]))
    }

    /// An action of no consequence: SIG_IGN or SIG_DFL mostly, else any
    /// handler (never run: see the module comment); any flags (unknown
    /// ones are cleared), restorer and mask.
    fn random_action(&mut self) -> Action {
        let r = &mut self.rng;
        let handler = match r.below(4) {
            0 | 1 => sig::SIG_IGN,
            2 => sig::SIG_DFL,
            _ => r.next(),
        };
        let flags = match r.below(3) {
            0 => 0,
            1 => r.next() & KNOWN_FLAGS,
            _ => r.next(),
        };
        Action {
            handler,
            flags,
            restorer: if r.chance(1, 2) { 0 } else { r.next() },
            mask: if r.chance(1, 2) { 0 } else { r.next() },
        }
    }

    /// rt_sigaction with a new action that must be refused before it is
    /// set: a bad size (EINVAL), an unreadable action (EFAULT, before the
    /// number is judged), a bad number (EINVAL), or an action for SIGKILL
    /// or SIGSTOP (EINVAL). The old action is never written.
    fn sigaction_refused(&mut self) -> Checked<()> {
        let o = self.out(ACTION, true);
        let want = self.random_action().to_bytes();
        let mut seen = [0u8; 32];
        let (act, readable) = self.input(&want, &mut seen, Some(&o));
        let case = self.rng.below(4);
        let size = match case {
            0 => loop {
                let s = self.sigset_size();
                if s != SIGSET {
                    break s;
                }
            },
            _ => SIGSET,
        };
        let (signo, err) = match case {
            0 => {
                let s = self.some_signo();
                (self.int_arg(s as i32), Errno::EINVAL)
            }
            _ if !readable => {
                let s = match self.rng.below(3) {
                    0 => {
                        let bad = self.bad_signo(true);
                        return self.refused_action(act, o, bad, Errno::EFAULT);
                    }
                    1 => self.rng.pick(&[sig::SIGKILL, sig::SIGSTOP]),
                    _ => self.some_signo(),
                };
                (self.int_arg(s as i32), Errno::EFAULT)
            }
            1 | 2 => (self.bad_signo(true), Errno::EINVAL),
            _ => {
                let s = self.rng.pick(&[sig::SIGKILL, sig::SIGSTOP]);
                (self.int_arg(s as i32), Errno::EINVAL)
            }
        };
        // SAFETY: refused before anything is set or written.
        unsafe {
            self.call(
                nr::RT_SIGACTION,
                &[signo, act, o.ptr, size],
                Expect::Err(err),
            )?
        };
        self.check_out(&o, &[])
    }

    /// rt_sigaction(signo, act, o, 8) refused with `err`: nothing written.
    fn refused_action(&mut self, act: u64, o: Out, signo: u64, err: Errno) -> Checked<()> {
        let args = [signo, act, o.ptr, SIGSET];
        // SAFETY: refused before anything is set or written.
        unsafe { self.call(nr::RT_SIGACTION, &args, Expect::Err(err))? };
        self.check_out(&o, &[])
    }

    /// This thread's own signal: actions set and read back (the old one
    /// as the kernel kept it: unknown flags and the unblockable signals
    /// gone), an unwritable old action (EFAULT, with the new one set), and
    /// SIG_DFL again at the end.
    fn sigaction_owned(&mut self) -> Checked<()> {
        let Some(own) = self.sig_own else {
            return self.sigaction_query();
        };
        let mut cur = Action::DFL;
        for _ in 0..self.rng.range(1, 3) {
            let o = self.out(ACTION, true);
            let want = self.random_action().to_bytes();
            let mut seen = [0u8; 32];
            let (act, readable) = self.input(&want, &mut seen, Some(&o));
            let signo = self.int_arg(own as i32);
            let (expect, next) = match (readable, o.kind) {
                (false, _) => (Expect::Err(Errno::EFAULT), cur),
                (true, Kind::Bad) => (
                    Expect::Err(Errno::EFAULT),
                    Action::from_bytes(&seen).stored(),
                ),
                (true, _) => (Expect::Ret(0), Action::from_bytes(&seen).stored()),
            };
            // SAFETY: the old action goes into our own memory, or the
            // pointer is null or refused.
            unsafe { self.call(nr::RT_SIGACTION, &[signo, act, o.ptr, SIGSET], expect)? };
            let old = cur.to_bytes();
            self.check_out(&o, if readable { &old } else { &[] })?;
            cur = next;
            self.read_action(own, cur)?;
        }
        let dfl = Action::DFL.to_bytes();
        let o = self.out(ACTION, true);
        let expect = if o.kind == Kind::Bad {
            Expect::Err(Errno::EFAULT)
        } else {
            Expect::Ret(0)
        };
        let args = [own.into(), dfl.as_ptr() as u64, o.ptr, SIGSET];
        // SAFETY: the kernel reads `dfl`; the old action goes into our own
        // memory, or the pointer is null or refused.
        unsafe { self.call(nr::RT_SIGACTION, &args, expect)? };
        self.check_out(&o, &cur.to_bytes())?;
        self.read_action(own, Action::DFL)
    }

    /// rt_sigaction(signo, NULL, buffer): must be `want`.
    fn read_action(&mut self, signo: u32, want: Action) -> Checked<()> {
        let o = loop {
            let o = self.out(ACTION, false);
            if o.kind == Kind::Good {
                break o;
            }
        };
        // SAFETY: the kernel writes 32 bytes of our own memory.
        unsafe {
            self.call(
                nr::RT_SIGACTION,
                &[signo.into(), 0, o.ptr, SIGSET],
                Expect::Ret(0),
            )?
        };
        self.check_out(&o, &want.to_bytes())
    }

    // --- rt_sigprocmask, rt_sigpending -------------------------------------------

    /// rt_sigprocmask with any arguments: EINVAL (size), EFAULT (the new
    /// set), EINVAL (`how`, only judged with a set), EFAULT (the old
    /// set's pointer, the new mask in place); SIGKILL and SIGSTOP never
    /// blocked. The mask is read back and put back.
    fn sigprocmask(&mut self) -> Checked<()> {
        let base = self.base_mask;
        let size = self.sigset_size();
        let how = match self.rng.below(5) {
            0 => self.rng.pick(&[3, 4, -1, i32::MIN, i32::MAX]),
            _ => self
                .rng
                .pick(&[sig::SIG_BLOCK, sig::SIG_UNBLOCK, sig::SIG_SETMASK]),
        };
        let good_how = (0..=2).contains(&how);
        let mut content = match self.rng.below(3) {
            0 => self.rng.next(),
            1 => bit(self.some_signo()) | (UNBLOCKABLE & self.rng.next()),
            _ => 0,
        };
        if how != sig::SIG_UNBLOCK {
            content &= !NEVER_BLOCKED;
        }
        let o = self.out(SIGSET, true);
        let mut seen = [0u8; 8];
        let (set, readable) = if self.rng.chance(1, 4) {
            (0, true)
        } else {
            self.input(&content.to_le_bytes(), &mut seen, Some(&o))
        };
        let new_set = u64::from_le_bytes(seen) & !UNBLOCKABLE;
        let next = match how {
            _ if set == 0 || !good_how => base,
            sig::SIG_BLOCK => base | new_set,
            sig::SIG_UNBLOCK => base & !new_set,
            _ => new_set,
        };
        if next & NEVER_BLOCKED != 0 {
            // Read from memory we did not fill: it would block what must
            // stay unblocked.
            return self.check_out(&o, &[]);
        }
        let refused = if size != SIGSET {
            Some(Errno::EINVAL)
        } else if !readable {
            Some(Errno::EFAULT)
        } else if set != 0 && !good_how {
            Some(Errno::EINVAL)
        } else {
            None
        };
        let expect = match refused {
            Some(e) => Expect::Err(e),
            None if o.kind == Kind::Bad => Expect::Err(Errno::EFAULT),
            None => Expect::Ret(0),
        };
        let how_arg = self.int_arg(how);
        // SAFETY: the old set goes into our own memory, or the pointer is
        // null or refused; the kernel only reads the new one.
        unsafe { self.call(nr::RT_SIGPROCMASK, &[how_arg, set, o.ptr, size], expect)? };
        let old = base.to_le_bytes();
        self.check_out(&o, if expect == Expect::Ret(0) { &old } else { &[] })?;
        let now = if refused.is_none() { next } else { base };
        self.set_mask(sig::SIG_SETMASK, base, now)
    }

    /// rt_sigprocmask(how, &set, &old): `old` must be `was`; the mask
    /// becomes what `how` makes of it (the caller says so).
    fn set_mask(&mut self, how: i32, set: u64, was: u64) -> Checked<()> {
        let new = set.to_le_bytes();
        let o = loop {
            let o = self.out(SIGSET, true);
            if o.kind != Kind::Bad {
                break o;
            }
        };
        let args = [self.int_arg(how), new.as_ptr() as u64, o.ptr, SIGSET];
        // SAFETY: the kernel reads `new`; the old set goes into our own
        // memory, or nowhere.
        unsafe { self.call(nr::RT_SIGPROCMASK, &args, Expect::Ret(0))? };
        self.check_out(&o, &was.to_le_bytes())
    }

    /// rt_sigpending into our memory: `want`, cut to `size` bytes (any
    /// size up to 8 is copied, as on Linux).
    fn pending_is(&mut self, want: u64) -> Checked<()> {
        let size = self.rng.pick(&[SIGSET, SIGSET, SIGSET, 1, 2, 4, 7]);
        let o = loop {
            let o = self.out(size, false);
            if o.kind == Kind::Good {
                break o;
            }
        };
        // SAFETY: the kernel writes `size` bytes of our own memory.
        unsafe { self.call(nr::RT_SIGPENDING, &[o.ptr, size], Expect::Ret(0))? };
        self.check_out(&o, &want.to_le_bytes()[..size as usize])
    }

    /// rt_sigpending with any size and pointer: EINVAL above 8 bytes; 0
    /// bytes copied are no fault whatever the pointer (Linux's
    /// copy_to_user of nothing); else EFAULT or the blocked pending
    /// signals: none, between steps.
    fn sigpending_hostile(&mut self) -> Checked<()> {
        let size = match self.rng.below(3) {
            0 => {
                let high = self.rng.range(1, u64::from(u32::MAX)) << 32;
                self.rng
                    .pick(&[9, 16, 64, 128, 4096, high, high | 8, u64::MAX])
            }
            _ => self.rng.range(0, SIGSET),
        };
        let o = self.out(size.min(SIGSET), false);
        let expect = if size > SIGSET {
            Expect::Err(Errno::EINVAL)
        } else if size == 0 || o.kind == Kind::Good {
            Expect::Ret(0)
        } else {
            Expect::Err(Errno::EFAULT)
        };
        // SAFETY: at most 8 bytes into our own memory, or refused.
        unsafe { self.call(nr::RT_SIGPENDING, &[o.ptr, size], expect)? };
        let none = [0u8; 8];
        let n = if expect == Expect::Ret(0) {
            size as usize
        } else {
            0
        };
        self.check_out(&o, &none[..n])
    }

    /// A signal sent to ourselves while blocked: pending (rt_sigpending
    /// says so, once however often it was sent), then dropped: by
    /// unblocking a signal that is ignored by default, or, for our own
    /// signal, by setting SIG_IGN (which drops a pending signal). Every
    /// change is put back.
    fn pending_round(&mut self) -> Checked<()> {
        let base = self.base_mask;
        let (s, owned) = match self.sig_own {
            Some(own) if self.rng.chance(1, 3) => (own, true),
            _ => (self.rng.pick(&SELF_SENT), false),
        };
        if base & bit(s) != 0 {
            return Ok(());
        }
        let extra = if self.rng.chance(1, 2) {
            self.rng.next() & !NEVER_BLOCKED
        } else {
            0
        };
        let blocked = (base | bit(s) | extra) & !UNBLOCKABLE;
        self.set_mask(sig::SIG_BLOCK, bit(s) | extra, base)?;
        self.pending_is(0)?;
        for _ in 0..self.rng.range(1, 2) {
            self.send_self(s)?;
        }
        self.pending_is(bit(s))?;
        if owned {
            let ign = Action {
                handler: sig::SIG_IGN,
                ..Action::DFL
            }
            .to_bytes();
            let args = [s.into(), ign.as_ptr() as u64, 0, SIGSET];
            // SAFETY: the kernel reads `ign`.
            unsafe { self.call(nr::RT_SIGACTION, &args, Expect::Ret(0))? };
            self.pending_is(0)?;
            let dfl = Action::DFL.to_bytes();
            let args = [s.into(), dfl.as_ptr() as u64, 0, SIGSET];
            // SAFETY: the kernel reads `dfl`.
            unsafe { self.call(nr::RT_SIGACTION, &args, Expect::Ret(0))? };
            return self.set_mask(sig::SIG_SETMASK, base, blocked);
        }
        // Delivered (and ignored) as this call returns; blocked again, it
        // must be gone.
        self.set_mask(sig::SIG_UNBLOCK, bit(s), blocked)?;
        self.set_mask(sig::SIG_BLOCK, bit(s), blocked & !bit(s))?;
        self.pending_is(0)?;
        self.set_mask(sig::SIG_SETMASK, base, blocked)
    }

    /// tgkill or tkill of `s` to this thread.
    fn send_self(&mut self, s: u32) -> Checked<()> {
        let (tid, sig) = (self.int_arg(self.tid as i32), self.int_arg(s as i32));
        if self.rng.chance(1, 2) {
            let pid = self.int_arg(ids().0 as i32);
            // SAFETY: no pointer.
            unsafe { self.call(nr::TGKILL, &[pid, tid, sig], Expect::Ret(0))? };
        } else {
            // SAFETY: no pointer.
            unsafe { self.call(nr::TKILL, &[tid, sig], Expect::Ret(0))? };
        }
        Ok(())
    }

    // --- sigaltstack ----------------------------------------------------------

    /// Whether an alternate stack could hold the stack pointer of a thread
    /// of ours (Linux's on_sig_stack): then it could not be changed any
    /// more (EPERM), and what the kernel reports would depend on which.
    fn holds_a_stack(&self, alt: AltStack) -> bool {
        if alt.flags & sig::SS_AUTODISARM != 0 || alt.sp == u64::MAX {
            return false;
        }
        let (lo, hi) = (alt.sp + 1, alt.sp.saturating_add(alt.size));
        let stacks = [self.space.stack, self.space.owned[1]];
        stacks.iter().any(|r| lo <= r.end && r.start <= hi)
    }

    /// A stack_t for sigaltstack: any mode (some refused), and a place
    /// and size that mostly hold no stack of ours.
    fn random_stack(&mut self, cur: AltStack) -> AltStack {
        let r = &mut self.rng;
        if r.chance(1, 8) {
            return cur;
        }
        let mode = match r.below(8) {
            0 => r.pick(&[3, 4, 0x100, 0x4000_0000, u32::MAX]),
            1 => r.next() as u32,
            2 | 3 => sig::SS_DISABLE as u32,
            4 => sig::SS_ONSTACK as u32,
            _ => 0,
        };
        let flags = if r.chance(1, 3) {
            mode | sig::SS_AUTODISARM
        } else {
            mode
        };
        let sp = match r.below(5) {
            0 => self.own.start + r.below(self.own.len()),
            1 => 0xffff_8000_0000_0000 + r.below(1 << 40),
            2 => r.next(),
            3 => 0,
            _ => r.below(0x40_0000),
        };
        let size = match r.below(5) {
            0 => r.below(sig::MINSIGSTKSZ),
            1 => sig::MINSIGSTKSZ - r.below(2),
            2 => r.range(sig::MINSIGSTKSZ, 0x10_0000),
            3 => r.next(),
            _ => r.range(sig::MINSIGSTKSZ, 0x4000),
        };
        AltStack { sp, flags, size }
    }

    /// sigaltstack queries and changes, in Linux's order: EFAULT (the new
    /// stack), EINVAL (the mode), nothing to do when it is the same,
    /// ENOMEM (too small), EFAULT (the old one's pointer, the new stack
    /// in place). The old stack is reported with the padding zero and
    /// the mode as it is now (SS_DISABLE without a stack, else 0: we never
    /// run on it). No stack the kernel accepts holds ours, and the thread
    /// has none again at the end.
    fn sigaltstack(&mut self) -> Checked<()> {
        let mut cur = AltStack::DISABLED;
        for _ in 0..self.rng.range(1, 3) {
            let o = self.out(STACK, true);
            let want = self.random_stack(cur).to_bytes(self.rng.next() as u32);
            let mut seen = [0u8; 24];
            let (ss, readable) = if self.rng.chance(1, 4) {
                (0, true)
            } else {
                self.input(&want, &mut seen, Some(&o))
            };
            let new = AltStack::from_bytes(&seen);
            let mode = new.flags & !sig::SS_AUTODISARM;
            let result = if ss == 0 {
                Ok(cur)
            } else if !readable {
                Err(Errno::EFAULT)
            } else if ![0, sig::SS_ONSTACK as u32, sig::SS_DISABLE as u32].contains(&mode) {
                Err(Errno::EINVAL)
            } else if new == cur {
                Ok(cur)
            } else if mode == sig::SS_DISABLE as u32 {
                Ok(AltStack {
                    sp: 0,
                    size: 0,
                    ..new
                })
            } else if new.size < sig::MINSIGSTKSZ {
                Err(Errno::ENOMEM)
            } else if self.holds_a_stack(new) {
                self.check_out(&o, &[])?;
                return self.disable_altstack(cur);
            } else {
                Ok(new)
            };
            let expect = match result {
                Err(e) => Expect::Err(e),
                Ok(_) if o.kind == Kind::Bad => Expect::Err(Errno::EFAULT),
                Ok(_) => Expect::Ret(0),
            };
            // SAFETY: the kernel reads the new stack_t and writes the old
            // one into our own memory (or is refused); no stack of ours is
            // named, and no handler runs on the one set.
            unsafe { self.call(nr::SIGALTSTACK, &[ss, o.ptr], expect)? };
            let old = cur.reported();
            self.check_out(&o, if result.is_ok() { &old } else { &[] })?;
            cur = result.unwrap_or(cur);
        }
        self.disable_altstack(cur)
    }

    /// sigaltstack({SS_DISABLE}, &old): `cur` reported, no stack after.
    fn disable_altstack(&mut self, cur: AltStack) -> Checked<()> {
        let off = AltStack::DISABLED.to_bytes(0);
        let o = loop {
            let o = self.out(STACK, true);
            if o.kind != Kind::Bad {
                break o;
            }
        };
        // SAFETY: the kernel reads `off` and writes the old stack into our
        // own memory, or nowhere.
        unsafe {
            self.call(
                nr::SIGALTSTACK,
                &[off.as_ptr() as u64, o.ptr],
                Expect::Ret(0),
            )?
        };
        self.check_out(&o, &cur.reported())
    }

    // --- kill, tkill, tgkill ------------------------------------------------

    /// A tid that is no thread, as a positive int.
    fn no_such_tid(&mut self) -> i32 {
        self.rng.range(NO_SUCH_TID, i32::MAX as u64) as i32
    }

    /// A signal for a target that exists: 0 (the check alone), one that
    /// is dropped as it is sent (ignored, and not blocked: `self_sent`
    /// allows the ones only this thread may send itself), or a bad number
    /// (EINVAL). Returns the argument and the error, if any.
    fn signal_for(&mut self, self_sent: bool) -> (u64, Option<Errno>) {
        let base = self.base_mask;
        match self.rng.below(4) {
            0 => (self.int_arg(0), None),
            1 => {
                let s = self.rng.pick(&PROCESS_SENT);
                (self.int_arg(s as i32), None)
            }
            2 if self_sent => {
                let s = self.rng.pick(&SELF_SENT);
                if base & bit(s) != 0 {
                    return (self.int_arg(0), None);
                }
                (self.int_arg(s as i32), None)
            }
            _ => (self.bad_signo(false), Some(Errno::EINVAL)),
        }
    }

    /// Any signal at all, valid or not, SIGKILL included: for calls that
    /// must fail before the number is looked at.
    fn any_signal(&mut self) -> u64 {
        if self.rng.chance(1, 3) {
            self.bad_signo(true)
        } else {
            let s = self.rng.range(0, u64::from(sig::NSIG)) as i32;
            self.int_arg(s)
        }
    }

    /// kill, tkill and tgkill, in Linux's order: EINVAL for a tid or tgid
    /// of 0 or less (tkill, tgkill); ESRCH for no such process or thread
    /// (or a tid not in the named tgid), before the number is judged;
    /// then EINVAL for a bad number; 0 does nothing else. Only ourselves
    /// are ever signalled, with signals that are dropped at once.
    fn kill_calls(&mut self) -> Checked<()> {
        let pid = ids().0 as i32;
        let me = self.tid as i32;
        let (call, args, expect): (u64, [u64; 3], Expect) = match self.rng.below(9) {
            // Our own process: by pid, 0 (our group) or -pid (the group
            // each process leads); a thread's tid names its process too,
            // as on Linux.
            0 | 1 => {
                let target = self.rng.pick(&[pid, 0, -pid, me]);
                let (s, e) = self.signal_for(false);
                (
                    nr::KILL,
                    [self.int_arg(target), s, 0],
                    e.map_or(Expect::Ret(0), Expect::Err),
                )
            }
            // No such process: a pid never used, a group of one, the
            // kernel's boot thread (not a process), INT_MIN (no group).
            2 => {
                let none = self.no_such_tid();
                let target = self.rng.pick(&[none, -none, 1, i32::MIN]);
                let s = self.any_signal();
                (
                    nr::KILL,
                    [self.int_arg(target), s, 0],
                    Expect::Err(Errno::ESRCH),
                )
            }
            3 => {
                let (s, e) = self.signal_for(true);
                let args = [self.int_arg(me), s, 0];
                (nr::TKILL, args, e.map_or(Expect::Ret(0), Expect::Err))
            }
            4 => {
                let (tid, e) = match self.rng.below(3) {
                    0 => (self.rng.pick(&[0, -1, i32::MIN]), Errno::EINVAL),
                    1 => (-(self.rng.range(1, i32::MAX as u64) as i32), Errno::EINVAL),
                    _ => {
                        let none = self.no_such_tid();
                        (self.rng.pick(&[none, 1]), Errno::ESRCH)
                    }
                };
                let s = self.any_signal();
                (nr::TKILL, [self.int_arg(tid), s, 0], Expect::Err(e))
            }
            5 => {
                let (s, e) = self.signal_for(true);
                let args = [self.int_arg(pid), self.int_arg(me), s];
                (nr::TGKILL, args, e.map_or(Expect::Ret(0), Expect::Err))
            }
            6 => {
                // A tid or tgid of 0 or less, whatever the other.
                let bad = self.rng.pick(&[0, -1, -pid, i32::MIN]);
                let none = self.no_such_tid();
                let other = self.rng.pick(&[pid, me, none, bad]);
                let (g, t) = if self.rng.chance(1, 2) {
                    (bad, other)
                } else {
                    (other, bad)
                };
                let s = self.any_signal();
                let args = [self.int_arg(g), self.int_arg(t), s];
                (nr::TGKILL, args, Expect::Err(Errno::EINVAL))
            }
            _ => {
                // No such thread in that group: an unused tid, the boot
                // thread, or ourselves under another tgid (a helper's own
                // tid is no tgid).
                let none = self.no_such_tid();
                let (g, t) = match self.rng.below(3) {
                    0 => (pid, self.rng.pick(&[none, 1])),
                    1 => (self.rng.pick(&[none, 1]), me),
                    _ if me != pid => (me, me),
                    _ => (none, none),
                };
                let s = self.any_signal();
                let args = [self.int_arg(g), self.int_arg(t), s];
                (nr::TGKILL, args, Expect::Err(Errno::ESRCH))
            }
        };
        // SAFETY: no pointer; only signals that are dropped reach us.
        unsafe { self.call(call, &args, expect)? };
        Ok(())
    }
}
