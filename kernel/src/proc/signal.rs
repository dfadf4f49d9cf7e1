//! Signals, as Linux's x86_64 ABI has them: `rt_sigaction`,
//! `rt_sigprocmask`, `rt_sigpending`, `rt_sigreturn`, `kill`, `tkill`, `tgkill`,
//! `sigaltstack`, faults turned into signals, and delivery on the way back
//! to user mode with Linux's frame (docs/abi.md, "Signals").
//!
//! # State
//!
//! A process's handlers live in its [`super::Process`] (`procs` lock). A
//! thread's mask, pending set and alternate stack live in its scheduler
//! record ([`ThreadSignals`] in the `TaskExt`, `sched` lock), and so do
//! the signals sent to the whole process: in the main thread's record,
//! which lasts as long as the process (Linux's `shared_pending`). Sending
//! and taking a signal hold `procs` then `sched`, so both see one state.
//!
//! # Delivery
//!
//! A sender queues the signal and, if some thread does not block it,
//! marks that thread ([`Scheduler::set_signal_pending`]): a blocked call
//! of the thread wakes and returns `ERESTARTSYS` (or `EINTR`-like codes),
//! and a thread running in user mode is stopped at its next trap or tick.
//! Every return to user mode ([`System::return_to_user`]) then takes the
//! thread's signals one by one: a default action ends the process or
//! drops the signal, a handler gets a frame on the user stack, and an
//! interrupted call is restarted or fails with `EINTR` as `SA_RESTART`
//! says. Signals sent to a process that every thread blocks stay queued
//! until one unblocks them.
//!
//! Standard signals (1..31) do not queue: a second one while the first
//! is pending is merged, as on Linux. Real-time signals (32..64) do not
//! queue either (Linux's do): see docs/abi.md.

use abi::sig::{self, Default as Dfl, bit};
use abi::{Errno, USER_END};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

use super::{FpuImage, Machine, System, UserFrame, UserRegs};
use crate::mm::fault::Fault;
use crate::sync::IrqOff;
use crate::task::sched::{Pid, Scheduler, State, Tid};

type SysResult = Result<u64, Errno>;

/// `SIGKILL` and `SIGSTOP`: no handler, no mask, no ignoring.
const UNBLOCKABLE: u64 = bit(sig::SIGKILL) | bit(sig::SIGSTOP);
const KNOWN_FLAGS: u64 = sig::UAPI_SA_FLAGS;
/// The flags `rt_sigreturn` takes from the frame (Linux's `FIX_EFLAGS`):
/// the arithmetic ones, TF, DF, RF and AC; never IF or IOPL.
const USER_FLAGS: u64 = 0x50dd5;
/// Flags a handler starts with cleared: direction, resume, trap.
const HANDLER_CLEARS: u64 = 0x400 | 0x1_0000 | 0x100;
/// The selectors a handler's frame reports (the ones ring 3 runs with,
/// Linux's `__USER_CS` and `__USER_DS`: arch/src/gdt.rs).
const USER_CS: u64 = 0x33;
const USER_SS: u64 = 0x2b;

/// A handler, as `rt_sigaction` set it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl Action {
    fn from_bytes(b: &[u8; sig::SIGACTION_SIZE]) -> Action {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Action {
            handler: word(0),
            flags: word(1),
            restorer: word(2),
            mask: word(3),
        }
    }

    fn to_bytes(self) -> [u8; sig::SIGACTION_SIZE] {
        let mut b = [0u8; sig::SIGACTION_SIZE];
        for (i, w) in [self.handler, self.flags, self.restorer, self.mask]
            .into_iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Whether a signal with this action is dropped when sent (Linux's
    /// `sig_handler_ignored`). Stop signals are ignored too: there is no
    /// job control.
    fn ignores(&self, signo: u32) -> bool {
        match self.handler {
            sig::SIG_IGN => true,
            sig::SIG_DFL => !matches!(sig::default_action(signo), Dfl::Terminate | Dfl::Core),
            _ => false,
        }
    }
}

/// A process's handlers, by signal number - 1: `NSIG` of them, on the
/// heap (2 KiB).
pub(super) type Actions = alloc::vec::Vec<Action>;

/// The `siginfo` fields a signal carries besides its number.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Info {
    pub code: i32,
    /// `si_addr` for a fault; `si_pid` (low half) and `si_uid` (high
    /// half) for a signal a process sent.
    pub word: u64,
}

impl Info {
    fn sent_by(pid: Pid, code: i32) -> Info {
        Info {
            code,
            word: u64::from(pid),
        }
    }
}

/// Signals waiting to be taken, and what each carries.
#[derive(Clone, Copy)]
pub(super) struct Pending {
    bits: u64,
    info: [Info; sig::NSIG as usize],
}

impl Pending {
    const fn new() -> Pending {
        Pending {
            bits: 0,
            info: [Info { code: 0, word: 0 }; sig::NSIG as usize],
        }
    }

    /// Queues `signo` unless it is already pending (then the first one's
    /// information stays, as Linux keeps a standard signal once).
    fn add(&mut self, signo: u32, info: Info) {
        if self.bits & bit(signo) == 0 {
            self.bits |= bit(signo);
            self.info[signo as usize - 1] = info;
        }
    }

    fn take(&mut self, signo: u32) -> Info {
        self.bits &= !bit(signo);
        self.info[signo as usize - 1]
    }
}

/// A thread's alternate signal stack (`sigaltstack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AltStack {
    sp: u64,
    size: u64,
    /// As set: the mode (0, `SS_ONSTACK` or `SS_DISABLE`) and
    /// `SS_AUTODISARM`; a frame's `uc_stack.ss_flags` is this word (Linux's
    /// `sas_ss_flags` field, not its `sas_ss_flags()`).
    flags: u32,
}

impl Default for AltStack {
    fn default() -> AltStack {
        AltStack::DISABLED
    }
}

impl AltStack {
    /// No alternate stack: a thread's first, and what `SS_AUTODISARM`
    /// leaves while a handler runs (Linux's `sas_ss_reset`).
    const DISABLED: AltStack = AltStack {
        sp: 0,
        size: 0,
        flags: sig::SS_DISABLE as u32,
    };

    /// Whether `sp` is on this stack (Linux's `on_sig_stack`): never, for
    /// a stack that is disarmed while a handler runs on it.
    fn holds(&self, sp: u64) -> bool {
        if self.flags & sig::SS_AUTODISARM != 0 {
            return false;
        }
        sp > self.sp && sp - self.sp <= self.size
    }

    /// What `sigaltstack` and a frame report for it (`sas_ss_flags`).
    fn state(&self, sp: u64) -> i32 {
        if self.size == 0 {
            sig::SS_DISABLE
        } else if self.holds(sp) {
            sig::SS_ONSTACK
        } else {
            0
        }
    }
}

/// A thread's signal state, in its scheduler record.
#[derive(Clone, Copy)]
pub(super) struct ThreadSignals {
    mask: u64,
    pending: Pending,
    alt: AltStack,
    /// Signals sent to the whole process: used in the main thread's
    /// record only, which lives as long as the process.
    shared: Pending,
    /// The last exception: `sigcontext`'s trapno, err and cr2.
    fault: (u64, u64, u64),
}

impl ThreadSignals {
    pub(super) const fn new() -> ThreadSignals {
        ThreadSignals {
            mask: 0,
            pending: Pending::new(),
            alt: AltStack::DISABLED,
            shared: Pending::new(),
            fault: (0, 0, 0),
        }
    }

    /// What `execve` leaves of a thread's state: its mask and pending
    /// signals stay, the alternate stack goes (the memory it was in is
    /// gone).
    pub(super) fn exec(&mut self) {
        self.alt = AltStack::DISABLED;
    }

    /// Makes `child` a new thread's: its creator's mask, nothing pending,
    /// no alternate stack (Linux resets it for a thread sharing the
    /// address space).
    pub(super) fn inherit(&self, child: &mut ThreadSignals) {
        *child = ThreadSignals::new();
        child.mask = self.mask;
    }
}

/// A thread's signal state, on the heap. At over 2 KiB inline it made
/// every move of a task record (clone, spawn, reap) a copy on the kernel
/// stack, and `clone` ran its 16 KiB over.
pub(super) struct SigState(Box<[ThreadSignals; 1]>);

impl SigState {
    /// A fresh state (`ThreadSignals::new`), or None without memory.
    pub(super) fn new() -> Option<SigState> {
        let mut v = Vec::new();
        // Exactly one: the boxed slice below then needs no reallocation,
        // which could not fail gracefully.
        v.try_reserve_exact(1).ok()?;
        v.push(ThreadSignals::new());
        v.into_boxed_slice().try_into().ok().map(SigState)
    }
}

impl Deref for SigState {
    type Target = ThreadSignals;

    fn deref(&self) -> &ThreadSignals {
        &self.0[0]
    }
}

impl DerefMut for SigState {
    fn deref_mut(&mut self) -> &mut ThreadSignals {
        &mut self.0[0]
    }
}

/// `execve`'s handlers: a caught signal's action becomes `SIG_DFL` (the
/// handler's code is gone), an ignored one stays ignored; every flag,
/// restorer and mask goes (Linux's `flush_signal_handlers`).
pub(super) fn exec_actions(actions: &mut Actions) {
    for a in actions.iter_mut() {
        let ignored = a.handler == sig::SIG_IGN;
        *a = Action::default();
        if ignored {
            a.handler = sig::SIG_IGN;
        }
    }
}

/// A new process's handlers: every one `SIG_DFL`.
pub(super) fn default_actions() -> Result<Actions, Errno> {
    let mut v = alloc::vec::Vec::new();
    v.try_reserve_exact(sig::NSIG as usize)
        .map_err(|_| Errno::ENOMEM)?;
    v.resize(sig::NSIG as usize, Action::default());
    Ok(v)
}

/// Where a signal goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// To a process: any thread of it that does not block it takes it.
    Process(Pid),
    /// To one thread (`tgkill`, a fault).
    Thread(Tid),
}

/// A signal taken off a thread's queues, to act on.
struct Taken {
    signo: u32,
    info: Info,
    action: Action,
}

/// What a thread's signals decided.
enum Next {
    Nothing,
    Deliver(Taken),
    /// The default action ends the process with this signal.
    Die(u32),
}

/// The little-endian bytes of the structures user memory gets.
struct Out<const N: usize>([u8; N]);

impl<const N: usize> Out<N> {
    fn put(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The general registers in `sigcontext` order (r8..r15, rdi, rsi, rbp,
/// rbx, rdx, rax, rcx, rsp, rip), as pointers into a UserRegs.
fn mcontext_regs(r: &mut UserRegs) -> [&mut u64; 17] {
    [
        &mut r.r8, &mut r.r9, &mut r.r10, &mut r.r11, &mut r.r12, &mut r.r13, &mut r.r14,
        &mut r.r15, &mut r.rdi, &mut r.rsi, &mut r.rbp, &mut r.rbx, &mut r.rdx, &mut r.rax,
        &mut r.rcx, &mut r.rsp, &mut r.rip,
    ]
}

/// Which signal a thread takes next of `ready` (Linux's `next_signal`):
/// the synchronous ones first, as they come from the instruction that
/// just ran, then the lowest number.
fn next_signal(ready: u64) -> Option<u32> {
    let pick = if ready & sig::SYNCHRONOUS != 0 {
        ready & sig::SYNCHRONOUS
    } else {
        ready
    };
    (pick != 0).then(|| pick.trailing_zeros() + 1)
}

/// The signal number of a call's argument: 1..=64.
fn valid(signo: i32) -> Option<u32> {
    u32::try_from(signo)
        .ok()
        .filter(|s| (1..=sig::NSIG).contains(s))
}

impl<M: Machine> System<M> {
    // ---- Sending ----

    /// Sends `signo` (1..=64) to `target`, from a process (`kill`,
    /// `tgkill`) or from the kernel. Blocked signals queue; ignored ones
    /// are dropped; `SIGKILL` ends the process at once.
    pub(super) fn send_signal(&self, target: Target, signo: u32, info: Info) -> Result<(), Errno> {
        let _off = IrqOff::new();
        let procs = self.procs.lock();
        let mut s = self.sched();
        let pid = match target {
            Target::Process(pid) => pid,
            Target::Thread(tid) => {
                s.task(tid)
                    .filter(|t| t.user && !matches!(t.state, State::Exited(_)))
                    .ok_or(Errno::ESRCH)?
                    .group
            }
        };
        let p = procs.iter().find(|p| p.pid == pid).ok_or(Errno::ESRCH)?;
        if signo == sig::SIGKILL {
            drop(procs);
            self.kill_group(&mut s, pid, Tid::MAX, abi::signaled_status(signo));
            return Ok(());
        }
        let action = p.signals[signo as usize - 1];
        // Whose mask decides whether it is ignored: the thread's, or for
        // the process the main thread's (Linux asks the task it found).
        let judge = match target {
            Target::Thread(tid) => tid,
            Target::Process(pid) => pid,
        };
        let blocked = s.ext(judge).is_some_and(|e| e.sig.mask & bit(signo) != 0);
        if !blocked && action.ignores(signo) {
            return Ok(());
        }
        match target {
            Target::Thread(tid) => {
                if let Some(e) = s.ext_mut(tid) {
                    e.sig.pending.add(signo, info);
                }
                self.signal_thread_if_ready(&mut s, tid);
            }
            Target::Process(pid) => {
                let Some(e) = s.ext_mut(pid) else {
                    return Ok(());
                };
                e.sig.shared.add(signo, info);
                let me = s.current();
                self.retarget(&mut s, pid, Some(me));
            }
        }
        Ok(())
    }

    /// Marks one thread of `pid` that can take a signal of the process's
    /// queue: `prefer` if it can, else the main thread, else any.
    fn retarget(&self, s: &mut Scheduler<super::TaskExt<M>>, pid: Pid, prefer: Option<Tid>) {
        let shared = s.ext(pid).map_or(0, |e| e.sig.shared.bits);
        if shared == 0 {
            return;
        }
        let can = |s: &Scheduler<super::TaskExt<M>>, tid: Tid| {
            s.task(tid)
                .is_some_and(|t| t.group == pid && t.user && !matches!(t.state, State::Exited(_)))
                && s.ext(tid).is_some_and(|e| shared & !e.sig.mask != 0)
        };
        let chosen = prefer
            .filter(|&t| can(s, t))
            .or_else(|| Some(pid).filter(|&t| can(s, t)))
            .or_else(|| s.tasks().map(|t| t.tid).find(|&t| t != pid && can(s, t)));
        if let Some(tid) = chosen {
            self.mark_signal_pending(s, tid, true);
        }
    }

    /// Marks `tid` if a signal it does not block is in its own queue.
    fn signal_thread_if_ready(&self, s: &mut Scheduler<super::TaskExt<M>>, tid: Tid) {
        let ready = s
            .ext(tid)
            .is_some_and(|e| e.sig.pending.bits & !e.sig.mask != 0);
        if ready {
            self.mark_signal_pending(s, tid, true);
        }
    }

    /// Sets or clears `tid`'s mark, keeping the count the fast path of
    /// the return to user mode reads.
    pub(super) fn mark_signal_pending(
        &self,
        s: &mut Scheduler<super::TaskExt<M>>,
        tid: Tid,
        pending: bool,
    ) {
        let before = s.set_signal_pending(tid, pending);
        let after = s.signal_pending(tid);
        match (before, after) {
            (false, true) => {
                self.signal_work
                    .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
            (true, false) => {
                self.signal_work
                    .fetch_sub(1, core::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// At a thread's exit: its mark goes, and the process's queue finds
    /// another thread.
    pub(super) fn signals_at_exit(&self, s: &mut Scheduler<super::TaskExt<M>>, me: Tid) {
        self.mark_signal_pending(s, me, false);
        if let Some(pid) = s.task(me).map(|t| t.group) {
            self.retarget(s, pid, None);
        }
    }

    /// A signal caused by what the current thread just did (a fault, a
    /// bad signal frame): Linux's `force_sig`. A blocked or ignored one is
    /// unblocked and reset to the default, which ends the process; so does
    /// no handler. Returns the signal if it ends the process, None if a
    /// handler will take it.
    fn force_signal(&self, signo: u32, info: Info, fault: Option<(u64, u64, u64)>) -> Option<u32> {
        let pid = self.current_pid();
        let _off = IrqOff::new();
        let mut procs = self.procs.lock();
        let mut s = self.sched();
        let me = s.current();
        let p = procs.iter_mut().find(|p| p.pid == pid)?;
        let action = &mut p.signals[signo as usize - 1];
        let e = s.ext_mut(me)?;
        if let Some(fault) = fault {
            e.sig.fault = fault;
        }
        let blocked = e.sig.mask & bit(signo) != 0;
        if blocked || action.handler == sig::SIG_IGN {
            action.handler = sig::SIG_DFL;
            e.sig.mask &= !bit(signo);
        }
        if action.handler == sig::SIG_DFL {
            return Some(signo);
        }
        e.sig.pending.add(signo, info);
        self.signal_thread_if_ready(&mut s, me);
        None
    }

    // ---- Faults ----

    /// An exception in user mode the memory manager did not resolve: the
    /// signal Linux sends for it. Returns when a handler will take it (on
    /// the way back to user mode); otherwise reports and ends the process.
    /// `machine_code` is the `si_code` the machine read (#MF, #XM, #DB) or,
    /// for a page fault, the one the memory manager chose.
    pub(super) fn fault_signal(
        &self,
        vector: u64,
        what: &str,
        error: u64,
        rip: u64,
        fault: Option<Fault>,
        machine_code: i32,
    ) {
        let signo = abi::fault_signal(vector);
        let addr = fault.map_or(0, |f| f.addr);
        let (code, word) = match (vector, fault) {
            // The memory manager's verdict: ACCERR in a region that
            // refuses the access, MAPERR outside every region.
            (14, _) if addr < USER_END && machine_code != 0 => (machine_code, addr),
            (14, _) => (sig::SEGV_MAPERR, addr),
            (0, _) => (sig::FPE_INTDIV, rip),
            (16 | 19, _) => (machine_code, rip),
            // Single step or icebp: what DR6 said, at the next instruction.
            (1, _) => (machine_code, rip),
            (6, _) => (sig::ILL_ILLOPN, rip),
            (17, _) => (sig::BUS_ADRALN, 0),
            // #GP, #SS, int3: the kernel's own code, no address.
            _ => (sig::SI_KERNEL, 0),
        };
        // Linux's sigcontext err for a user access to the kernel's half is
        // a protection fault, mapped there or not (it does not tell).
        let error = if vector == 14 && addr >= USER_END {
            error | 1
        } else {
            error
        };
        let info = Info { code, word };
        let Some(signo) = self.force_signal(signo, info, Some((vector, error, addr))) else {
            return;
        };
        let tid = self.current();
        let name = self.sched().task(tid).map(|t| t.name).unwrap_or_default();
        let _ = core::fmt::Write::write_fmt(
            &mut super::Console(&self.m),
            format_args!(
                "task {tid} ({name}) killed by {}: {what} vector={vector} error={error:#x} rip={rip:#x} addr={addr:#x}\n",
                sig::name(signo)
            ),
        );
        self.exit_process(abi::signaled_status(signo))
    }

    // ---- Taking signals ----

    /// The next signal the current thread takes, or the end it meets;
    /// clears its mark once nothing it can take is left.
    fn take_signal(&self) -> Next {
        let pid = self.current_pid();
        let _off = IrqOff::new();
        let mut procs = self.procs.lock();
        let mut s = self.sched();
        let me = s.current();
        let Some(p) = procs.iter_mut().find(|p| p.pid == pid) else {
            return Next::Nothing;
        };
        loop {
            let mask = s.ext(me).map_or(u64::MAX, |e| e.sig.mask);
            let own = s.ext(me).map_or(0, |e| e.sig.pending.bits) & !mask;
            let shared = s.ext(pid).map_or(0, |e| e.sig.shared.bits) & !mask;
            let (signo, info) = if let Some(signo) = next_signal(own) {
                let Some(e) = s.ext_mut(me) else {
                    return Next::Nothing;
                };
                (signo, e.sig.pending.take(signo))
            } else if let Some(signo) = next_signal(shared) {
                let Some(e) = s.ext_mut(pid) else {
                    return Next::Nothing;
                };
                (signo, e.sig.shared.take(signo))
            } else {
                self.mark_signal_pending(&mut s, me, false);
                return Next::Nothing;
            };
            let action = &mut p.signals[signo as usize - 1];
            match action.handler {
                sig::SIG_IGN => continue,
                sig::SIG_DFL => match sig::default_action(signo) {
                    Dfl::Terminate | Dfl::Core => return Next::Die(signo),
                    Dfl::Ignore | Dfl::Stop | Dfl::Continue => continue,
                },
                _ => {
                    let taken = *action;
                    if taken.flags & sig::SA_RESETHAND != 0 {
                        action.handler = sig::SIG_DFL;
                    }
                    return Next::Deliver(Taken {
                        signo,
                        info,
                        action: taken,
                    });
                }
            }
        }
    }

    /// Takes the current thread's signals before it returns to user mode
    /// with `frame`; `syscall` is the number of the call it returns from,
    /// whose result (in rax) may ask for a restart.
    pub(super) fn deliver_signals(&self, frame: &mut dyn UserFrame, syscall: Option<u64>) {
        let mut regs = frame.regs();
        let before = regs;
        // rt_sigreturn's rax is the interrupted code's, never a request.
        let mut restart = syscall
            .filter(|&nr| nr != abi::nr::RT_SIGRETURN)
            .and_then(|nr| {
                let code = abi::decode(regs.rax).err()?;
                matches!(
                    code,
                    Errno::ERESTARTSYS
                        | Errno::ERESTARTNOINTR
                        | Errno::ERESTARTNOHAND
                        | Errno::ERESTART_RESTARTBLOCK
                )
                .then_some((nr, code))
            });
        loop {
            match self.take_signal() {
                Next::Nothing => break,
                Next::Die(signo) => self.exit_process(abi::signaled_status(signo)),
                Next::Deliver(t) => {
                    if let Some((nr, code)) = restart.take() {
                        let again = match code {
                            Errno::ERESTARTNOINTR => true,
                            Errno::ERESTARTSYS => t.action.flags & sig::SA_RESTART != 0,
                            _ => false,
                        };
                        if again {
                            rewind(&mut regs, nr);
                        } else {
                            regs.rax = abi::encode(Err(Errno::EINTR));
                        }
                    }
                    if self.setup_frame(&mut regs, &t).is_err() {
                        // Linux's force_sigsegv: a handler for SIGSEGV may
                        // still take it, unless SIGSEGV's own frame failed.
                        if t.signo == sig::SIGSEGV {
                            self.exit_process(abi::signaled_status(sig::SIGSEGV));
                        }
                        let info = Info {
                            code: sig::SI_KERNEL,
                            word: 0,
                        };
                        if let Some(signo) = self.force_signal(sig::SIGSEGV, info, None) {
                            self.exit_process(abi::signaled_status(signo));
                        }
                    } else {
                        // A handler at a non-canonical address: Linux's
                        // return to it fails, SIGSEGV on top of this frame.
                        self.refuse_noncanonical_rip(regs.rip);
                    }
                }
            }
        }
        // No handler ran: the call starts again, as if never made.
        if let Some((nr, _)) = restart {
            rewind(&mut regs, nr);
        }
        if regs != before {
            frame.set_regs(&regs);
        }
    }

    /// Builds the handler's frame on the user stack (Linux's
    /// `x64_setup_rt_frame`) and points `regs` at the handler. Err when
    /// the frame cannot be written: the caller sends SIGSEGV.
    fn setup_frame(&self, regs: &mut UserRegs, t: &Taken) -> Result<(), Errno> {
        // x86-64 handlers return through the restorer (musl's and glibc's
        // __restore_rt); Linux refuses a frame without one.
        if t.action.flags & sig::SA_RESTORER == 0 {
            return Err(Errno::EFAULT);
        }
        let (mask, alt, fault) = self.with_sched(|s| {
            s.ext(s.current())
                .map_or((0, AltStack::default(), (0, 0, 0)), |e| {
                    (e.sig.mask, e.sig.alt, e.sig.fault)
                })
        });
        let mut sp = regs.rsp.wrapping_sub(sig::REDZONE);
        let mut entering_alt = false;
        if t.action.flags & sig::SA_ONSTACK != 0 && alt.state(sp) == 0 {
            sp = alt.sp.wrapping_add(alt.size);
            entering_alt = true;
        }
        // The FPU image (Linux's fpu__alloc_mathframe): XSAVE's with the
        // second magic word after it, or FXSAVE's.
        let fmt = self.m.fpu_format();
        let xsave = fmt.xfeatures != 0;
        let math = fmt.size + if xsave { sig::FP_XSTATE_MAGIC2_SIZE } else { 0 };
        let fpstate = sp.wrapping_sub(math as u64) & !63;
        let frame = (fpstate.wrapping_sub(sig::FRAME_SIZE as u64) & !15).wrapping_sub(8);
        // A frame that would run off the alternate stack is not written
        // below it (Linux gives it an address that always faults).
        if (entering_alt || alt.holds(regs.rsp)) && !(frame > alt.sp && frame - alt.sp <= alt.size)
        {
            return Err(Errno::EFAULT);
        }
        let mut fx = FpuImage::zeroed();
        self.m.fpu_save(&mut fx);
        if xsave {
            // Linux's save_xstate_epilog: the software bytes that say an
            // XSAVE image follows, and x87 and SSE always marked present
            // in the header, so that a handler that edits only the legacy
            // region has its edit restored.
            let sw = sig::FP_SW_BYTES;
            let b = &mut fx.0;
            b[sw..sw + 4].copy_from_slice(&sig::FP_XSTATE_MAGIC1.to_le_bytes());
            b[sw + 4..sw + 8].copy_from_slice(&(math as u32).to_le_bytes());
            b[sw + 8..sw + 16].copy_from_slice(&fmt.xfeatures.to_le_bytes());
            b[sw + 16..sw + 20].copy_from_slice(&(fmt.size as u32).to_le_bytes());
            b[sig::FPSTATE_SIZE] |= 0b11;
        }
        self.copy_to_user(fpstate, &fx.0[..fmt.size])?;
        if xsave {
            let magic2 = sig::FP_XSTATE_MAGIC2.to_le_bytes();
            self.copy_to_user(fpstate + fmt.size as u64, &magic2)?;
        }

        let mut f = Out([0u8; sig::FRAME_SIZE]);
        f.put(0, t.action.restorer);
        let uc = sig::FRAME_UC;
        let fp_xstate = if xsave { sig::UC_FP_XSTATE } else { 0 };
        f.put(
            uc,
            fp_xstate | sig::UC_SIGCONTEXT_SS | sig::UC_STRICT_RESTORE_SS,
        );
        f.put(uc + sig::UC_STACK, alt.sp);
        f.put32(uc + sig::UC_STACK + 8, alt.flags);
        f.put(uc + sig::UC_STACK + 16, alt.size);
        let mc = uc + sig::UC_MCONTEXT;
        let mut saved = *regs;
        for (i, r) in mcontext_regs(&mut saved).into_iter().enumerate() {
            f.put(mc + i * 8, *r);
        }
        f.put(mc + 17 * 8, regs.rflags);
        // cs, gs, fs, ss: four 16-bit fields.
        f.put(mc + 18 * 8, USER_CS | USER_SS << 48);
        f.put(mc + 19 * 8, fault.1);
        f.put(mc + 20 * 8, fault.0);
        f.put(mc + 21 * 8, mask);
        f.put(mc + 22 * 8, fault.2);
        f.put(mc + 23 * 8, fpstate);
        f.put(uc + sig::UC_SIGMASK, mask);
        let info = sig::FRAME_INFO;
        f.put32(info, t.signo);
        f.put32(info + 8, t.info.code as u32);
        f.put(info + 16, t.info.word);
        self.copy_to_user(frame, &f.0)?;

        regs.rdi = t.signo.into();
        regs.rsi = frame + info as u64;
        regs.rdx = frame + uc as u64;
        regs.rax = 0;
        regs.rsp = frame;
        regs.rip = t.action.handler;
        regs.rflags &= !HANDLER_CLEARS;
        self.m.fpu_reset();
        // Done: the handler runs with its mask, and an auto-disarmed
        // stack is given up until the handler returns.
        self.with_sched(|s| {
            let me = s.current();
            if let Some(e) = s.ext_mut(me) {
                let mut add = t.action.mask;
                if t.action.flags & sig::SA_NODEFER == 0 {
                    add |= bit(t.signo);
                }
                e.sig.mask |= add & !UNBLOCKABLE;
                if e.sig.alt.flags & sig::SS_AUTODISARM != 0 {
                    e.sig.alt = AltStack::default();
                }
            }
        });
        Ok(())
    }

    // ---- The calls ----

    /// `rt_sigaction(signo, act, oldact, sigsetsize)`.
    pub(super) fn sys_rt_sigaction(&self, signo: i32, act: u64, old: u64, size: u64) -> SysResult {
        if size != sig::SIGSET_SIZE {
            return Err(Errno::EINVAL);
        }
        let mut new = None;
        if act != 0 {
            let mut b = [0u8; sig::SIGACTION_SIZE];
            self.copy_from_user(act, &mut b)?;
            new = Some(Action::from_bytes(&b));
        }
        let signo = valid(signo).ok_or(Errno::EINVAL)?;
        if new.is_some() && UNBLOCKABLE & bit(signo) != 0 {
            return Err(Errno::EINVAL);
        }
        let pid = self.current_pid();
        let prev = {
            let _off = IrqOff::new();
            let mut procs = self.procs.lock();
            let p = procs
                .iter_mut()
                .find(|p| p.pid == pid)
                .ok_or(Errno::ESRCH)?;
            let slot = &mut p.signals[signo as usize - 1];
            let prev = *slot;
            if let Some(mut a) = new {
                a.flags &= KNOWN_FLAGS;
                a.mask &= !UNBLOCKABLE;
                *slot = a;
                // POSIX: setting a pending signal to be ignored drops it.
                if a.ignores(signo) {
                    let mut s = self.sched();
                    // Every tid looked up once, directly: no list is made,
                    // and a scan of the whole table per thread (64 x 4096
                    // records, interrupts off) held the lock for
                    // milliseconds under QEMU.
                    for tid in 0..s.tid_end() {
                        if s.task(tid).is_some_and(|t| t.group == pid)
                            && let Some(e) = s.ext_mut(tid)
                        {
                            e.sig.pending.take(signo);
                            e.sig.shared.take(signo);
                        }
                    }
                }
            }
            prev
        };
        if old != 0 {
            let mut out = prev;
            out.flags &= KNOWN_FLAGS;
            self.copy_to_user(old, &out.to_bytes())?;
        }
        Ok(0)
    }

    /// `rt_sigprocmask(how, set, oldset, sigsetsize)`.
    pub(super) fn sys_rt_sigprocmask(&self, how: i32, set: u64, old: u64, size: u64) -> SysResult {
        if size != sig::SIGSET_SIZE {
            return Err(Errno::EINVAL);
        }
        let prev = self.with_sched(|s| s.ext(s.current()).map_or(0, |e| e.sig.mask));
        if set != 0 {
            let mut b = [0u8; 8];
            self.copy_from_user(set, &mut b)?;
            let new = u64::from_le_bytes(b) & !UNBLOCKABLE;
            self.update_mask(|mask| match how {
                sig::SIG_BLOCK => Ok(mask | new),
                sig::SIG_UNBLOCK => Ok(mask & !new),
                sig::SIG_SETMASK => Ok(new),
                _ => Err(Errno::EINVAL),
            })?;
        }
        if old != 0 {
            self.copy_to_user(old, &prev.to_le_bytes())?;
        }
        Ok(0)
    }

    /// Changes the current thread's mask, and its mark to match: a
    /// pending signal just unblocked is taken on the way out of this call.
    fn update_mask(&self, f: impl FnOnce(u64) -> Result<u64, Errno>) -> Result<(), Errno> {
        let _off = IrqOff::new();
        let mut s = self.sched();
        let me = s.current();
        let pid = s.task(me).map_or(me, |t| t.group);
        let shared = s.ext(pid).map_or(0, |e| e.sig.shared.bits);
        let e = s.ext_mut(me).ok_or(Errno::ESRCH)?;
        e.sig.mask = f(e.sig.mask)? & !UNBLOCKABLE;
        let ready = (e.sig.pending.bits | shared) & !e.sig.mask != 0;
        self.mark_signal_pending(&mut s, me, ready);
        if !ready {
            // What this thread now blocks, another may take.
            self.retarget(&mut s, pid, None);
        }
        Ok(())
    }

    /// `rt_sigpending(set, sigsetsize)`: the signals pending for the
    /// calling thread or its process that it blocks.
    pub(super) fn sys_rt_sigpending(&self, set: u64, size: u64) -> SysResult {
        if size > sig::SIGSET_SIZE {
            return Err(Errno::EINVAL);
        }
        let pending = self.with_sched(|s| {
            let me = s.current();
            let pid = s.task(me).map_or(me, |t| t.group);
            let shared = s.ext(pid).map_or(0, |e| e.sig.shared.bits);
            s.ext(me)
                .map_or(0, |e| (e.sig.pending.bits | shared) & e.sig.mask)
        });
        // Linux copies `sigsetsize` bytes (at most 8) of the set.
        let bytes = pending.to_le_bytes();
        self.copy_to_user(set, &bytes[..size as usize])?;
        Ok(0)
    }

    /// `sigaltstack(ss, old_ss)`.
    pub(super) fn sys_sigaltstack(&self, ss: u64, old: u64, rsp: u64) -> SysResult {
        let mut new = None;
        if ss != 0 {
            let mut b = [0u8; sig::STACK_SIZE];
            self.copy_from_user(ss, &mut b)?;
            new = Some(AltStack {
                sp: word(&b, 0),
                flags: word(&b, 8) as u32,
                size: word(&b, 16),
            });
        }
        let prev = self.set_altstack(new, rsp)?;
        if old != 0 {
            let mut out = Out([0u8; sig::STACK_SIZE]);
            out.put(0, prev.sp);
            out.put32(
                8,
                prev.state(rsp) as u32 | (prev.flags & sig::SS_AUTODISARM),
            );
            out.put(16, prev.size);
            self.copy_to_user(old, &out.0)?;
        }
        Ok(0)
    }

    /// Linux's `do_sigaltstack` for the current thread, its stack pointer
    /// being `rsp`; returns the stack before.
    fn set_altstack(&self, new: Option<AltStack>, rsp: u64) -> Result<AltStack, Errno> {
        self.with_sched(|s| {
            let me = s.current();
            let e = s.ext_mut(me).ok_or(Errno::ESRCH)?;
            let prev = e.sig.alt;
            let Some(mut new) = new else {
                return Ok(prev);
            };
            if prev.holds(rsp) {
                return Err(Errno::EPERM);
            }
            let mode = new.flags & !sig::SS_AUTODISARM;
            if mode != 0 && mode != sig::SS_DISABLE as u32 && mode != sig::SS_ONSTACK as u32 {
                return Err(Errno::EINVAL);
            }
            if new == prev {
                return Ok(prev);
            }
            if mode == sig::SS_DISABLE as u32 {
                new.sp = 0;
                new.size = 0;
            } else if new.size < sig::MINSIGSTKSZ {
                return Err(Errno::ENOMEM);
            }
            e.sig.alt = new;
            Ok(prev)
        })
    }

    /// `rt_sigreturn()`: back to the registers, mask, FPU state and
    /// alternate stack a handler's frame saved, in Linux's order: the
    /// mask, the registers, the FPU, the alternate stack. A frame that
    /// cannot be read, or an FPU image the CPU would refuse, is SIGSEGV,
    /// as on Linux (taken with what was restored by then).
    pub(super) fn sys_rt_sigreturn(&self, frame: &mut dyn UserFrame) -> SysResult {
        let regs = frame.regs();
        let uc = regs.rsp.wrapping_sub(8).wrapping_add(sig::FRAME_UC as u64);
        let mut b = [0u8; sig::UCONTEXT_SIZE];
        let mc = sig::UC_MCONTEXT;
        if self.copy_from_user(uc, &mut b).is_err() {
            return Ok(self.bad_sigreturn());
        }
        let mut next = regs;
        for (i, r) in mcontext_regs(&mut next).into_iter().enumerate() {
            *r = word(&b, mc + i * 8);
        }
        let flags = word(&b, mc + 17 * 8);
        next.rflags = (regs.rflags & !USER_FLAGS) | (flags & USER_FLAGS);
        self.update_mask(|_| Ok(word(&b, sig::UC_SIGMASK)))?;
        frame.set_regs(&next);
        if self.restore_fpu(word(&b, mc + 23 * 8)).is_err() {
            return Ok(self.bad_sigreturn());
        }
        // Linux's restore_altstack: as sigaltstack would take it at the
        // restored stack pointer, its refusals (EPERM on the stack,
        // EINVAL, ENOMEM) ignored.
        let alt = AltStack {
            sp: word(&b, sig::UC_STACK),
            flags: word(&b, sig::UC_STACK + 8) as u32,
            size: word(&b, sig::UC_STACK + 16),
        };
        let _ = self.set_altstack(Some(alt), next.rsp);
        self.refuse_noncanonical_rip(next.rip);
        Ok(next.rax)
    }

    /// Before a return to user mode at `rip`: a non-canonical one cannot
    /// be returned to (the kernel's iretq would fault); Linux's fails and
    /// becomes a #GP in user mode at that rip: SIGSEGV, SI_KERNEL, trapno
    /// 13, which a handler takes on these registers. (A rip in the
    /// kernel's half is returned to, and faults there as on Linux.)
    fn refuse_noncanonical_rip(&self, rip: u64) {
        if canonical(rip) {
            return;
        }
        let cr2 = self.with_sched(|s| s.ext(s.current()).map_or(0, |e| e.sig.fault.2));
        let info = Info {
            code: sig::SI_KERNEL,
            word: 0,
        };
        if let Some(signo) = self.force_signal(sig::SIGSEGV, info, Some((13, 0, cr2))) {
            self.exit_process(abi::signaled_status(signo));
        }
    }

    /// A failed `rt_sigreturn`: SIGSEGV, which a handler may take on the
    /// registers as they are; the call's result (rax) is 0, as Linux's.
    fn bad_sigreturn(&self) -> u64 {
        let info = Info {
            code: sig::SI_KERNEL,
            word: 0,
        };
        if let Some(signo) = self.force_signal(sig::SIGSEGV, info, None) {
            self.exit_process(abi::signaled_status(signo));
        }
        0
    }

    /// Loads the FPU image a frame's `fpstate` points at (Linux's
    /// fpu__restore_sig): none, the initial state; on an XSAVE machine an
    /// XSAVE image when its software bytes and second magic say so (the
    /// components the bytes name and the machine has), else the legacy
    /// region alone. Err when it cannot be read or the CPU would refuse it.
    fn restore_fpu(&self, fpstate: u64) -> Result<(), Errno> {
        if fpstate == 0 {
            self.m.fpu_reset();
            return Ok(());
        }
        let fmt = self.m.fpu_format();
        let mut fx = FpuImage::zeroed();
        let legacy = sig::FPSTATE_SIZE;
        self.copy_from_user(fpstate, &mut fx.0[..legacy])?;
        let mut components = None;
        if fmt.xfeatures != 0 {
            let sw = sig::FP_SW_BYTES;
            let word32 = |at: usize| {
                let mut w = [0u8; 4];
                w.copy_from_slice(&fx.0[at..at + 4]);
                u32::from_le_bytes(w)
            };
            let (magic1, extended, size) = (word32(sw), word32(sw + 4), word32(sw + 16) as usize);
            let xfeatures = word(&fx.0, sw + 8);
            if magic1 == sig::FP_XSTATE_MAGIC1
                && (sig::XSTATE_MIN_SIZE..=fmt.size).contains(&size)
                && size <= extended as usize
            {
                let mut magic2 = [0u8; 4];
                self.copy_from_user(fpstate + size as u64, &mut magic2)?;
                if u32::from_le_bytes(magic2) == sig::FP_XSTATE_MAGIC2 {
                    // The image as long as it says it is (what lies past
                    // that stays zero: the components' initial state).
                    self.copy_from_user(fpstate + legacy as u64, &mut fx.0[legacy..size])?;
                    components = Some(xfeatures & fmt.xfeatures);
                }
            }
        }
        if self.m.fpu_restore(&fx, components) {
            Ok(())
        } else {
            Err(Errno::EFAULT)
        }
    }

    /// `kill(pid, signo)`: `pid` > 0 a process, or the process of the
    /// thread with that tid (Linux looks the task up by pid, then signals
    /// its thread group); 0 and -pid the caller's own process or process
    /// `pid` (every process leads its own group; a thread's tid names no
    /// group); -1 every process but the caller's.
    pub(super) fn sys_kill(&self, pid: i32, signo: i32) -> SysResult {
        let me = self.current_pid();
        let info = Info::sent_by(me, sig::SI_USER);
        let target = match pid {
            0 => me,
            -1 => return self.kill_all(signo, info),
            p if p > 0 && !self.is_process(p.unsigned_abs()) => self
                .with_sched(|s| {
                    s.task(p.unsigned_abs())
                        .filter(|t| t.user && !matches!(t.state, State::Exited(_)))
                        .map(|t| t.group)
                })
                .ok_or(Errno::ESRCH)?,
            p => p.unsigned_abs(),
        };
        if !self.is_process(target) {
            return Err(Errno::ESRCH);
        }
        let signo = match signo {
            0 => return Ok(0),
            s => valid(s).ok_or(Errno::EINVAL)?,
        };
        self.send_signal(Target::Process(target), signo, info)?;
        Ok(0)
    }

    /// `kill(-1, signo)`: every process the caller may signal, but itself.
    fn kill_all(&self, signo: i32, info: Info) -> SysResult {
        let me = self.current_pid();
        let signo = match signo {
            0 => None,
            s => Some(valid(s).ok_or(Errno::EINVAL)?),
        };
        let mut any = false;
        // One at a time, by pid: the table may change between sends.
        let mut next = 0;
        loop {
            let found = self
                .procs
                .lock()
                .iter()
                .map(|p| p.pid)
                .filter(|&p| p > next && p != me)
                .min();
            let Some(pid) = found else { break };
            next = pid;
            any = true;
            if let Some(signo) = signo {
                let _ = self.send_signal(Target::Process(pid), signo, info);
            }
        }
        if any { Ok(0) } else { Err(Errno::ESRCH) }
    }

    /// `tgkill(tgid, tid, signo)`, and `tkill(tid, signo)` with `tgid`
    /// None.
    pub(super) fn sys_tgkill(&self, tgid: Option<i32>, tid: i32, signo: i32) -> SysResult {
        if tid <= 0 || tgid.is_some_and(|g| g <= 0) {
            return Err(Errno::EINVAL);
        }
        let tid = tid.unsigned_abs();
        let found = self.with_sched(|s| {
            s.task(tid)
                .filter(|t| t.user && !matches!(t.state, State::Exited(_)))
                .map(|t| t.group)
        });
        match (found, tgid) {
            (Some(g), Some(want)) if g == want.unsigned_abs() => {}
            (Some(_), None) => {}
            _ => return Err(Errno::ESRCH),
        }
        let signo = match signo {
            0 => return Ok(0),
            s => valid(s).ok_or(Errno::EINVAL)?,
        };
        let info = Info::sent_by(self.current_pid(), sig::SI_TKILL);
        self.send_signal(Target::Thread(tid), signo, info)?;
        Ok(0)
    }
}

/// Whether `va` is canonical: bits 63..47 all the same.
fn canonical(va: u64) -> bool {
    matches!((va as i64) >> 47, 0 | -1)
}

/// Points `regs` back at the `syscall` instruction (two bytes) with the
/// call's number, so that it runs again.
fn rewind(regs: &mut UserRegs, nr: u64) {
    regs.rax = nr;
    regs.rip = regs.rip.wrapping_sub(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_has_linux_layout() {
        assert_eq!(sig::FRAME_SIZE, 440);
        assert_eq!(sig::FRAME_INFO, 312);
        // uc_mcontext.fpstate is gregs[23]; uc_sigmask follows reserved1.
        assert_eq!(sig::UC_MCONTEXT + 24 * 8 + 8 * 8, sig::UC_SIGMASK);
    }

    #[test]
    fn synchronous_signals_come_first() {
        let ready = bit(sig::SIGUSR1) | bit(sig::SIGSEGV) | bit(sig::SIGHUP);
        assert_eq!(next_signal(ready), Some(sig::SIGSEGV));
        assert_eq!(
            next_signal(bit(sig::SIGUSR1) | bit(sig::SIGHUP)),
            Some(sig::SIGHUP)
        );
        assert_eq!(next_signal(0), None);
    }

    #[test]
    fn an_alternate_stack_holds_its_own_range() {
        let alt = AltStack {
            sp: 0x1000,
            size: 0x1000,
            flags: 0,
        };
        assert!(!alt.holds(0x1000));
        assert!(alt.holds(0x1001));
        assert!(alt.holds(0x2000));
        assert!(!alt.holds(0x2001));
        assert_eq!(alt.state(0x1800), sig::SS_ONSTACK);
        assert_eq!(AltStack::default().state(0x1800), sig::SS_DISABLE);
    }
}
