//! Signals on the host: handlers' frames byte by byte, sigreturn, masks,
//! default actions and wait statuses, interrupted and restarted calls,
//! SIGPIPE, alternate stacks, and faults turned into signals.

use super::*;
use crate::mm::fault::{Access, Fault};
use abi::sig::{self, bit};

const EINVAL: i64 = -(Errno::EINVAL as i64);
const EFAULT: i64 = -(Errno::EFAULT as i64);
const EINTR: i64 = -(Errno::EINTR as i64);
const EPERM: i64 = -(Errno::EPERM as i64);
const ENOMEM: i64 = -(Errno::ENOMEM as i64);
const ESRCH: i64 = -(Errno::ESRCH as i64);
const EPIPE: i64 = -(Errno::EPIPE as i64);

/// Where the tests' handlers and restorer "are" (the host never runs
/// them: a test reads the frame the kernel built, then returns through
/// `rt_sigreturn` as the restorer would).
const HANDLER: u64 = TEXT + 0x100;
const RESTORER: u64 = TEXT + 0x200;
/// sigaction and sigset buffers.
const ACT: u64 = DATA + 0x3000;
const OLD: u64 = DATA + 0x3100;
const SET: u64 = DATA + 0x3200;
/// An alternate stack.
const ALT: u64 = DATA + 0x10_000;
const ALT_SIZE: u64 = 0x4000;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Offsets in the frame of a general register (`sigcontext` order).
fn greg(i: usize) -> usize {
    sig::FRAME_UC + sig::UC_MCONTEXT + i * 8
}
const R_RDI: usize = 8;
const R_RBX: usize = 11;
const R_RAX: usize = 13;
const R_RSP: usize = 15;
const R_RIP: usize = 16;
const R_EFL: usize = 17;
const R_ERR: usize = 19;
const R_TRAPNO: usize = 20;
const R_OLDMASK: usize = 21;
const R_CR2: usize = 22;
const R_FPSTATE: usize = 23;

impl User {
    pub(super) fn sigaction(&self, signo: u32, handler: u64, flags: u64, mask: u64) -> i64 {
        let mut b = Vec::new();
        for w in [handler, flags, RESTORER, mask] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        self.poke(ACT, &b);
        self.call(nr::RT_SIGACTION, &[signo.into(), ACT, 0, 8])
    }

    fn handle(&self, signo: u32, flags: u64) {
        let flags = flags | sig::SA_SIGINFO | sig::SA_RESTORER;
        assert_eq!(self.sigaction(signo, HANDLER, flags, 0), 0);
    }

    fn sigprocmask(&self, how: i32, set: u64) -> u64 {
        self.poke(SET, &set.to_le_bytes());
        assert_eq!(self.call(nr::RT_SIGPROCMASK, &[how as u64, SET, OLD, 8]), 0);
        u64_at(&self.peek(OLD, 8), 0)
    }

    fn mask(&self) -> u64 {
        assert_eq!(self.call(nr::RT_SIGPROCMASK, &[0, 0, OLD, 8]), 0);
        u64_at(&self.peek(OLD, 8), 0)
    }

    fn raise(&self, signo: u32) -> i64 {
        let tid = self.call(nr::GETTID, &[]);
        let pid = self.call(nr::GETPID, &[]);
        self.call(nr::TGKILL, &[pid as u64, tid as u64, signo.into()])
    }

    /// The frame a handler was started with: its registers, and the
    /// frame's bytes at their stack pointer.
    fn handler_frame(&self) -> (UserRegs, Vec<u8>) {
        let regs = self.last.get();
        assert_eq!(regs.rip, HANDLER, "no handler was started");
        (regs, self.peek(regs.rsp, sig::FRAME_SIZE))
    }

    /// What the restorer does when the handler returns: `rt_sigreturn`
    /// with the stack pointer just past the frame's return address.
    fn sigreturn(&self, handler: &UserRegs) -> UserRegs {
        let mut f = HostFrame(UserRegs {
            rsp: handler.rsp + 8,
            rax: nr::RT_SIGRETURN,
            rip: RESTORER + 9,
            ..*handler
        });
        let rax = self.sys.syscall(nr::RT_SIGRETURN, [0; 6], &mut f);
        f.0.rax = rax;
        self.sys.return_to_user(&mut f, Some(nr::RT_SIGRETURN));
        self.last.set(f.0);
        f.0
    }

    /// Sets the simulated xmm0 to `low` bytes and ymm0's upper half to
    /// `high` bytes.
    fn set_fpu(&self, low: u8, high: u8) {
        let mut fx = FpuImage::zeroed();
        fx.0[160..176].copy_from_slice(&[low; 16]);
        fx.0[576..592].copy_from_slice(&[high; 16]);
        fx.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        fx.0[512] = 0b111;
        assert!(self.sys.m.fpu_restore(&fx, Some(0b111)));
    }

    /// What `set_fpu` sets: xmm0's first byte, ymm0's upper half's.
    fn fpu(&self) -> (u8, u8) {
        let mut fx = FpuImage::zeroed();
        self.sys.m.fpu_save(&mut fx);
        (fx.0[160], fx.0[576])
    }

    /// A page fault at `addr` from the instruction at `rip`, and the
    /// return to user mode after it.
    fn page_fault(&self, addr: u64, present: bool, rip: u64) -> UserRegs {
        let access = Access {
            write: true,
            exec: false,
            present,
        };
        let error = 2 | 4 | u64::from(present);
        let mut f = HostFrame(UserRegs {
            rip,
            ..caller_regs(0, [0; 6])
        });
        self.sys.user_fault(
            14,
            "page fault",
            error,
            rip,
            Some(Fault { addr, access }),
            0,
        );
        self.sys.return_to_user(&mut f, None);
        self.last.set(f.0);
        f.0
    }
}

#[test]
fn a_handler_gets_linux_frame_and_sigreturn_restores_everything() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        let mut b = Vec::new();
        let flags = sig::SA_SIGINFO | sig::SA_RESTORER;
        for word in [HANDLER, flags, RESTORER, bit(sig::SIGUSR2)] {
            b.extend_from_slice(&word.to_le_bytes());
        }
        u.poke(ACT, &b);
        assert_eq!(
            u.call(nr::RT_SIGACTION, &[sig::SIGUSR1.into(), ACT, 0, 8]),
            0
        );
        // A recognisable FPU state to be saved, and reset for the handler:
        // xmm0, and ymm0's upper half.
        u.set_fpu(0xa5, 0x5a);

        assert_eq!(u.raise(sig::SIGUSR1), 0);
        let (h, frame) = u.handler_frame();
        let at = h.rsp;
        // The ABI's alignment at a function's entry: rsp + 8 is 16-aligned.
        assert_eq!((at + 8) % 16, 0);
        assert!(at + sig::FRAME_SIZE as u64 <= caller_regs(0, [0; 6]).rsp - sig::REDZONE);
        assert_eq!(h.rdi, sig::SIGUSR1.into());
        assert_eq!(h.rsi, at + sig::FRAME_INFO as u64);
        assert_eq!(h.rdx, at + sig::FRAME_UC as u64);
        assert_eq!(u64_at(&frame, 0), RESTORER);
        // siginfo: the signal, SI_TKILL, the sender's pid.
        let info = sig::FRAME_INFO;
        assert_eq!(i32_at(&frame, info), sig::SIGUSR1 as i32);
        assert_eq!(i32_at(&frame, info + 4), 0);
        assert_eq!(i32_at(&frame, info + 8), sig::SI_TKILL);
        assert_eq!(i32_at(&frame, info + 16) as i64, u.call(nr::GETPID, &[]));
        // The interrupted registers: the call's return and its result.
        assert_eq!(u64_at(&frame, greg(R_RIP)), TEXT + 2);
        assert_eq!(u64_at(&frame, greg(R_RAX)), 0);
        assert_eq!(u64_at(&frame, greg(R_RBX)), 0xb0b0);
        assert_eq!(u64_at(&frame, greg(R_RSP)), caller_regs(0, [0; 6]).rsp);
        assert_eq!(u64_at(&frame, greg(R_EFL)), 0x246);
        assert_eq!(u64_at(&frame, greg(R_OLDMASK)), 0);
        assert_eq!(u64_at(&frame, sig::FRAME_UC + sig::UC_SIGMASK), 0);
        // uc_stack: no alternate stack.
        let st = sig::FRAME_UC + sig::UC_STACK;
        assert_eq!(i32_at(&frame, st + 8), sig::SS_DISABLE);
        // fpstate: 64-aligned, above the frame, holding the saved state
        // as an XSAVE image that its software bytes describe.
        let fp = u64_at(&frame, greg(R_FPSTATE));
        assert_eq!(fp % 64, 0);
        assert!(fp >= at + sig::FRAME_SIZE as u64);
        assert!(fp + 836 <= caller_regs(0, [0; 6]).rsp - sig::REDZONE);
        let saved = u.peek(fp, 836);
        assert_eq!(saved[160..176], [0xa5; 16]);
        assert_eq!(saved[576..592], [0x5a; 16]);
        let sw = sig::FP_SW_BYTES;
        assert_eq!(i32_at(&saved, sw) as u32, sig::FP_XSTATE_MAGIC1);
        assert_eq!(i32_at(&saved, sw + 4), 836, "extended_size");
        assert_eq!(u64_at(&saved, sw + 8), 0b111, "xfeatures");
        assert_eq!(i32_at(&saved, sw + 16), 832, "xstate_size");
        assert_eq!(i32_at(&saved, 832) as u32, sig::FP_XSTATE_MAGIC2);
        assert_eq!(
            u64_at(&frame, sig::FRAME_UC),
            sig::UC_FP_XSTATE | sig::UC_SIGCONTEXT_SS | sig::UC_STRICT_RESTORE_SS
        );
        assert_eq!(
            u.fpu(),
            (0, 0),
            "the handler starts with a clean FPU, AVX included"
        );
        // The handler runs with its signal and its sa_mask blocked.
        assert_eq!(u.mask(), bit(sig::SIGUSR1) | bit(sig::SIGUSR2));

        // The handler changes a saved register, then returns.
        u.poke(
            h.rdx - sig::FRAME_UC as u64 + greg(R_RBX) as u64,
            &7u64.to_le_bytes(),
        );
        let back = u.sigreturn(&h);
        assert_eq!(back.rip, TEXT + 2);
        assert_eq!(back.rax, 0);
        assert_eq!(back.rbx, 7);
        assert_eq!(back.rsp, caller_regs(0, [0; 6]).rsp);
        assert_eq!(u.mask(), 0);
        assert_eq!(u.fpu(), (0xa5, 0x5a), "sigreturn restores the FPU");
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn default_actions_end_the_process_with_linux_wait_statuses() {
    for (signo, status) in [
        (sig::SIGTERM, 15),
        (sig::SIGKILL, 9),
        (sig::SIGUSR1, 10),
        (sig::SIGQUIT, 0x83),
        (sig::SIGSEGV, 0x8b),
        (sig::SIGABRT, 0x86),
    ] {
        let w = World::new();
        let got = w.run_to_end(move |u| {
            let pid = u.call(nr::GETPID, &[]);
            u.call(nr::KILL, &[pid as u64, signo.into()]);
            panic!("signal {signo} did not end the program")
        });
        assert_eq!(got, status, "signal {signo}");
        w.assert_quiet();
    }
}

#[test]
fn ignored_signals_and_default_ignore_change_nothing() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        assert_eq!(u.sigaction(sig::SIGTERM, sig::SIG_IGN, 0, 0), 0);
        let pid = u.call(nr::GETPID, &[]) as u64;
        for signo in [
            sig::SIGTERM,
            sig::SIGCHLD,
            sig::SIGURG,
            sig::SIGWINCH,
            sig::SIGCONT,
        ] {
            assert_eq!(u.call(nr::KILL, &[pid, signo.into()]), 0);
        }
        // A blocked ignored signal is not queued either... but a blocked
        // default-fatal one is, and ends the program once unblocked.
        u.sigprocmask(sig::SIG_BLOCK, bit(sig::SIGUSR2));
        assert_eq!(u.call(nr::KILL, &[pid, sig::SIGUSR2.into()]), 0);
        assert_eq!(u.mask(), bit(sig::SIGUSR2));
        u.sigprocmask(sig::SIG_UNBLOCK, bit(sig::SIGUSR2));
        panic!("the unblocked SIGUSR2 did not end the program")
    });
    assert_eq!(status, sig::SIGUSR2 as i64);
    w.assert_quiet();
}

#[test]
fn a_blocked_signal_waits_and_comes_at_unblock() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        u.handle(sig::SIGUSR1, 0);
        assert_eq!(u.sigprocmask(sig::SIG_BLOCK, bit(sig::SIGUSR1)), 0);
        assert_eq!(u.raise(sig::SIGUSR1), 0);
        assert_eq!(u.last.get().rip, TEXT + 2, "a blocked signal was delivered");
        // SIGKILL and SIGSTOP cannot be blocked.
        let all = u.sigprocmask(sig::SIG_SETMASK, u64::MAX);
        assert_eq!(all, bit(sig::SIGUSR1));
        assert_eq!(u.mask(), !(bit(sig::SIGKILL) | bit(sig::SIGSTOP)));
        // Unblocking delivers it on the way out of that very call.
        u.poke(SET, &0u64.to_le_bytes());
        assert_eq!(u.call(nr::RT_SIGPROCMASK, &[2, SET, 0, 8]), 0);
        let (h, frame) = u.handler_frame();
        assert_eq!(h.rdi, sig::SIGUSR1.into());
        assert_eq!(u64_at(&frame, greg(R_RIP)), TEXT + 2);
        // The mask saved is the one at delivery (nothing blocked).
        assert_eq!(u64_at(&frame, sig::FRAME_UC + sig::UC_SIGMASK), 0);
        u.sigreturn(&h);
        assert_eq!(u.mask(), 0);
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn signal_calls_check_their_arguments_as_linux_does() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        let act =
            |signo: u64, a: u64, o: u64, size: u64| u.call(nr::RT_SIGACTION, &[signo, a, o, size]);
        u.poke(ACT, &[0; 32]);
        assert_eq!(act(10, ACT, 0, 4), EINVAL);
        assert_eq!(act(0, ACT, 0, 8), EINVAL);
        assert_eq!(act(65, ACT, 0, 8), EINVAL);
        assert_eq!(act(9, ACT, 0, 8), EINVAL);
        assert_eq!(act(19, ACT, 0, 8), EINVAL);
        assert_eq!(act(9, 0, OLD, 8), 0);
        // The pointer is read before the number is judged.
        assert_eq!(act(0, 0x10, 0, 8), EFAULT);
        assert_eq!(act(10, 0, 0x10, 8), EFAULT);
        // Unknown flag bits are dropped: SA_UNSUPPORTED reads back clear.
        let flags = sig::SA_SIGINFO | sig::SA_RESTORER | sig::SA_UNSUPPORTED | 1 << 40;
        assert_eq!(
            u.sigaction(sig::SIGUSR1, HANDLER, flags, bit(9) | bit(4)),
            0
        );
        assert_eq!(act(10, 0, OLD, 8), 0);
        let old = u.peek(OLD, 32);
        assert_eq!(u64_at(&old, 0), HANDLER);
        assert_eq!(u64_at(&old, 8), sig::SA_SIGINFO | sig::SA_RESTORER);
        assert_eq!(u64_at(&old, 16), RESTORER);
        assert_eq!(u64_at(&old, 24), bit(4), "SIGKILL is never in sa_mask");

        let mask = |how: u64, set: u64, size: u64| u.call(nr::RT_SIGPROCMASK, &[how, set, 0, size]);
        u.poke(SET, &0u64.to_le_bytes());
        assert_eq!(mask(3, SET, 8), EINVAL);
        assert_eq!(mask(3, 0, 8), 0, "how is not judged without a set");
        assert_eq!(mask(0, SET, 16), EINVAL);
        assert_eq!(mask(3, 0x10, 8), EFAULT, "the set is read before how");

        let pid = u.call(nr::GETPID, &[]) as u64;
        let tid = u.call(nr::GETTID, &[]) as u64;
        assert_eq!(u.call(nr::KILL, &[pid, 65]), EINVAL);
        assert_eq!(u.call(nr::KILL, &[pid, 0]), 0);
        assert_eq!(u.call(nr::KILL, &[99_999, 0]), ESRCH);
        assert_eq!(u.call(nr::KILL, &[99_999, 65]), ESRCH, "the target first");
        assert_eq!(
            u.call(nr::KILL, &[1, 0]),
            ESRCH,
            "kernel threads are not processes"
        );
        assert_eq!(u.call(nr::TGKILL, &[0, tid, 0]), EINVAL);
        assert_eq!(u.call(nr::TGKILL, &[pid, 0, 0]), EINVAL);
        assert_eq!(u.call(nr::TGKILL, &[pid, 99_999, 0]), ESRCH);
        assert_eq!(u.call(nr::TGKILL, &[pid + 1, tid, 0]), ESRCH);
        assert_eq!(u.call(nr::TGKILL, &[pid, tid, 65]), EINVAL);
        assert_eq!(u.call(nr::TGKILL, &[pid, tid, 0]), 0);
        assert_eq!(u.call(nr::TKILL, &[tid, 0]), 0);
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn kill_names_a_process_by_the_tid_of_any_of_its_threads() {
    let w = World::new();
    let thread = w.thread(|u| {
        let tid = u.call(nr::GETTID, &[]) as u64;
        assert_ne!(tid, u.call(nr::GETPID, &[]) as u64);
        // Linux's kill finds the task by pid and signals its group.
        assert_eq!(u.call(nr::KILL, &[tid, 0]), 0);
        assert_eq!(
            u.call(nr::KILL, &[tid, 65]),
            EINVAL,
            "the target found first"
        );
        assert_eq!(u.call(nr::KILL, &[tid, sig::SIGCHLD.into()]), 0);
        assert_eq!(
            u.call(nr::KILL, &[tid.wrapping_neg(), 0]),
            ESRCH,
            "a tid is no group"
        );
        3
    });
    let status = w.run_to_end(move |u| {
        let t = u.spawn_thread(thread, 0);
        assert_eq!(u.join_thread(t), 3);
        assert_eq!(u.call(nr::KILL, &[t as u64, 0]), ESRCH, "reaped");
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn a_blocked_read_is_interrupted_and_restarted_as_sa_restart_says() {
    for restart in [false, true] {
        let w = World::new();
        let reader = w.thread(move |u| {
            let r = u.arg;
            let (n, _) = u.read_at(r, DATA + 0x4000, 10);
            // The handler's frame holds the interrupted call's outcome.
            let (h, frame) = u.handler_frame();
            let rax = u64_at(&frame, greg(R_RAX)) as i64;
            let rip = u64_at(&frame, greg(R_RIP));
            u.sigreturn(&h);
            match (restart, rax, rip) {
                (false, EINTR, rip) if rip == TEXT + 2 => 1,
                (true, rax, TEXT) if rax == nr::READ as i64 => 2,
                _ => panic!("restart={restart}: n={n} rax={rax} rip={rip:#x}"),
            }
        });
        let status = w.run_to_end(move |u| {
            u.handle(sig::SIGUSR1, if restart { sig::SA_RESTART } else { 0 });
            let (r, _wr) = u.pipe();
            let t = u.spawn_thread(reader, r);
            u.sleep(3 * TICK_NS);
            let pid = u.call(nr::GETPID, &[]) as u64;
            assert_eq!(u.call(nr::TGKILL, &[pid, t as u64, sig::SIGUSR1.into()]), 0);
            u.join_thread(t)
        });
        assert_eq!(status, if restart { 2 } else { 1 });
        w.assert_quiet();
    }
}

#[test]
fn a_signal_to_the_process_wakes_a_thread_that_does_not_block_it() {
    let w = World::new();
    let sleeper = w.thread(|u| {
        u.sleep(1_000 * TICK_NS);
        let (h, frame) = u.handler_frame();
        // nanosleep with a handler: EINTR, never a restart.
        assert_eq!(u64_at(&frame, greg(R_RAX)) as i64, EINTR);
        assert_eq!(u.sigreturn(&h).rax as i64, EINTR);
        7
    });
    let status = w.run_to_end(move |u| {
        u.handle(sig::SIGUSR1, 0);
        // Spawned threads start with an empty mask; this one blocks it.
        u.sigprocmask(sig::SIG_BLOCK, bit(sig::SIGUSR1));
        let t = u.spawn_thread(sleeper, 0);
        u.sleep(3 * TICK_NS);
        let pid = u.call(nr::GETPID, &[]) as u64;
        assert_eq!(u.call(nr::KILL, &[pid, sig::SIGUSR1.into()]), 0);
        assert_eq!(u.last.get().rip, TEXT + 2, "the blocking thread took it");
        u.join_thread(t)
    });
    assert_eq!(status, 7);
    w.assert_quiet();
}

#[test]
fn sigpipe_ends_a_writer_unless_ignored_then_epipe() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        let (r, wr) = u.pipe();
        assert_eq!(u.call(nr::CLOSE, &[r]), 0);
        u.write_at(wr, SRC, b"x");
        panic!("SIGPIPE did not end the writer")
    });
    assert_eq!(status, sig::SIGPIPE as i64);
    w.assert_quiet();

    let w = World::new();
    let status = w.run_to_end(|u| {
        assert_eq!(u.sigaction(sig::SIGPIPE, sig::SIG_IGN, 0, 0), 0);
        let (r, wr) = u.pipe();
        assert_eq!(u.call(nr::CLOSE, &[r]), 0);
        assert_eq!(u.write_at(wr, SRC, b"x"), EPIPE);
        // Blocked, the signal stays pending and the call says EPIPE.
        assert_eq!(u.sigaction(sig::SIGPIPE, sig::SIG_DFL, 0, 0), 0);
        u.sigprocmask(sig::SIG_BLOCK, bit(sig::SIGPIPE));
        assert_eq!(u.write_at(wr, SRC, b"x"), EPIPE);
        // A handler sees SI_USER from its own process.
        u.handle(sig::SIGPIPE, 0);
        u.sigprocmask(sig::SIG_UNBLOCK, bit(sig::SIGPIPE));
        let (h, frame) = u.handler_frame();
        assert_eq!(h.rdi, sig::SIGPIPE.into());
        assert_eq!(i32_at(&frame, sig::FRAME_INFO + 8), sig::SI_USER);
        u.sigreturn(&h);
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn faults_become_sigsegv_with_the_address_and_a_handler_can_return() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        u.handle(sig::SIGSEGV, 0);
        let fault_rip = TEXT + 0x40;
        let h = u.page_fault(0x1234, false, fault_rip);
        assert_eq!(h.rip, HANDLER);
        let frame = u.peek(h.rsp, sig::FRAME_SIZE);
        let info = sig::FRAME_INFO;
        assert_eq!(i32_at(&frame, info), sig::SIGSEGV as i32);
        assert_eq!(i32_at(&frame, info + 8), sig::SEGV_MAPERR);
        assert_eq!(u64_at(&frame, info + 16), 0x1234);
        assert_eq!(u64_at(&frame, greg(R_TRAPNO)), 14);
        assert_eq!(u64_at(&frame, greg(R_ERR)), 6);
        assert_eq!(u64_at(&frame, greg(R_CR2)), 0x1234);
        assert_eq!(u64_at(&frame, greg(R_RIP)), fault_rip);
        // The handler skips the instruction and returns.
        let uc = h.rdx;
        u.poke(
            uc + (sig::UC_MCONTEXT + R_RIP * 8) as u64,
            &(fault_rip + 3).to_le_bytes(),
        );
        let back = u.sigreturn(&h);
        assert_eq!(back.rip, fault_rip + 3);
        // A present page refused: SEGV_ACCERR.
        let h = u.page_fault(TEXT, true, fault_rip);
        let frame = u.peek(h.rsp, sig::FRAME_SIZE);
        assert_eq!(i32_at(&frame, info + 8), sig::SEGV_ACCERR);
        u.sigreturn(&h);
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();

    // Blocked or ignored, a fault's signal still ends the program.
    for block in [false, true] {
        let w = World::new();
        let status = w.run_to_end(move |u| {
            if block {
                u.handle(sig::SIGSEGV, 0);
                u.sigprocmask(sig::SIG_BLOCK, bit(sig::SIGSEGV));
            } else {
                assert_eq!(u.sigaction(sig::SIGSEGV, sig::SIG_IGN, 0, 0), 0);
            }
            u.page_fault(0x1234, false, TEXT + 0x40);
            panic!("the fault did not end the program")
        });
        assert_eq!(status, 0x8b);
        assert!(w.console().contains("killed by SIGSEGV"), "{}", w.console());
    }
}

#[test]
fn a_handler_without_a_restorer_or_stack_is_sigsegv() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        assert_eq!(u.sigaction(sig::SIGUSR1, HANDLER, sig::SA_SIGINFO, 0), 0);
        u.raise(sig::SIGUSR1);
        panic!("a frame without a restorer was delivered")
    });
    assert_eq!(status, 0x8b);
    w.assert_quiet();
}

#[test]
fn alternate_stacks_follow_sigaltstack_rules() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        let ss = DATA + 0x3300;
        let set = |sp: u64, flags: u32, size: u64| {
            let mut b = Vec::new();
            b.extend_from_slice(&sp.to_le_bytes());
            b.extend_from_slice(&u64::from(flags).to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            u.poke(ss, &b);
            u.call(nr::SIGALTSTACK, &[ss, 0])
        };
        assert_eq!(set(ALT, 0, 1024), ENOMEM);
        assert_eq!(set(ALT, 5, ALT_SIZE), EINVAL);
        assert_eq!(u.call(nr::SIGALTSTACK, &[0x10, 0]), EFAULT);
        assert_eq!(set(ALT, 0, ALT_SIZE), 0);
        assert_eq!(u.call(nr::SIGALTSTACK, &[0, OLD]), 0);
        let old = u.peek(OLD, 24);
        assert_eq!(
            (u64_at(&old, 0), i32_at(&old, 8), u64_at(&old, 16)),
            (ALT, 0, ALT_SIZE)
        );

        u.handle(sig::SIGUSR1, sig::SA_ONSTACK);
        u.raise(sig::SIGUSR1);
        let (h, frame) = u.handler_frame();
        assert!(h.rsp > ALT && h.rsp < ALT + ALT_SIZE, "rsp {:#x}", h.rsp);
        // The frame saved the stack as it was: not on it.
        let st = sig::FRAME_UC + sig::UC_STACK;
        assert_eq!(u64_at(&frame, st), ALT);
        assert_eq!(i32_at(&frame, st + 8), 0);
        // On the stack, sigaltstack may not change it, but may read it.
        let on = |n: u64, a: &[u64]| {
            let mut f = HostFrame(UserRegs {
                rsp: h.rsp,
                ..caller_regs(n, [a[0], a[1], 0, 0, 0, 0])
            });
            u.sys.syscall(n, [a[0], a[1], 0, 0, 0, 0], &mut f) as i64
        };
        assert_eq!(on(nr::SIGALTSTACK, &[ss, 0]), EPERM);
        assert_eq!(on(nr::SIGALTSTACK, &[0, OLD]), 0);
        assert_eq!(i32_at(&u.peek(OLD, 24), 8), sig::SS_ONSTACK);
        u.sigreturn(&h);
        assert_eq!(set(0, sig::SS_DISABLE as u32, 0), 0);
        assert_eq!(u.call(nr::SIGALTSTACK, &[0, OLD]), 0);
        assert_eq!(i32_at(&u.peek(OLD, 24), 8), sig::SS_DISABLE);
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn sa_resethand_and_sa_nodefer_act_once_and_unmasked() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        u.handle(sig::SIGUSR1, sig::SA_RESETHAND | sig::SA_NODEFER);
        u.raise(sig::SIGUSR1);
        let (h, _) = u.handler_frame();
        assert_eq!(u.mask(), 0, "SA_NODEFER leaves the signal unblocked");
        u.sigreturn(&h);
        assert_eq!(
            u.call(nr::RT_SIGACTION, &[sig::SIGUSR1.into(), 0, OLD, 8]),
            0
        );
        assert_eq!(u64_at(&u.peek(OLD, 8), 0), sig::SIG_DFL);
        u.raise(sig::SIGUSR1);
        panic!("the reset handler did not end the program")
    });
    assert_eq!(status, sig::SIGUSR1 as i64);
    w.assert_quiet();
}

#[test]
fn sigreturn_takes_the_fpu_image_as_linux_reads_it() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        u.handle(sig::SIGUSR1, 0);
        u.handle(sig::SIGSEGV, 0);
        let fpstate = |h: &UserRegs| {
            let uc = h.rdx;
            u64_at(&u.peek(uc + (sig::UC_MCONTEXT + 23 * 8) as u64, 8), 0)
        };
        // The handler's edit of the legacy region is taken, with the rest
        // of the XSAVE image.
        u.set_fpu(1, 2);
        u.raise(sig::SIGUSR1);
        let (h, _) = u.handler_frame();
        let fp = fpstate(&h);
        u.poke(fp + 160, &[3; 16]);
        u.sigreturn(&h);
        assert_eq!(u.fpu(), (3, 2));
        // Without the first magic word the image is FXSAVE's: the legacy
        // region is restored, AVX gets its initial state.
        u.raise(sig::SIGUSR1);
        let (h, _) = u.handler_frame();
        let fp = fpstate(&h);
        u.poke(fp + sig::FP_SW_BYTES as u64, &0u32.to_le_bytes());
        u.sigreturn(&h);
        assert_eq!(u.fpu(), (3, 0));
        // Nor with a second magic word missing.
        u.set_fpu(4, 5);
        u.raise(sig::SIGUSR1);
        let (h, _) = u.handler_frame();
        let fp = fpstate(&h);
        u.poke(fp + 832, &0u32.to_le_bytes());
        u.sigreturn(&h);
        assert_eq!(u.fpu(), (4, 0));
        // No fpstate at all: the initial state.
        u.set_fpu(4, 5);
        u.raise(sig::SIGUSR1);
        let (h, _) = u.handler_frame();
        u.poke(
            h.rdx + (sig::UC_MCONTEXT + 23 * 8) as u64,
            &0u64.to_le_bytes(),
        );
        u.sigreturn(&h);
        assert_eq!(u.fpu(), (0, 0));
        // An image the CPU refuses (reserved MXCSR bits, a component the
        // machine lacks): SIGSEGV, taken on the registers and mask already
        // restored; the call's rax is 0.
        for (at, bytes) in [
            (24u64, vec![0xff; 4]),
            (512, vec![0, 0, 0, 0, 0, 0, 0, 0x40]),
        ] {
            u.raise(sig::SIGUSR1);
            let (h, _) = u.handler_frame();
            let fp = fpstate(&h);
            u.poke(fp + at, &bytes);
            let back = u.sigreturn(&h);
            assert_eq!(back.rip, HANDLER, "no SIGSEGV for a bad image at {at}");
            assert_eq!(back.rdi, sig::SIGSEGV.into());
            let frame = u.peek(back.rsp, sig::FRAME_SIZE);
            assert_eq!(i32_at(&frame, sig::FRAME_INFO + 8), sig::SI_KERNEL);
            assert_eq!(u64_at(&frame, greg(R_RIP)), TEXT + 2);
            assert_eq!(u64_at(&frame, greg(R_RAX)), 0);
            assert_eq!(u64_at(&frame, sig::FRAME_UC + sig::UC_SIGMASK), 0);
            u.sigreturn(&back);
            assert_eq!(u.mask(), 0);
        }
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn sigreturn_ignores_an_alternate_stack_sigaltstack_would_refuse() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        u.handle(sig::SIGUSR1, 0);
        let ss = DATA + 0x3300;
        let mut b = Vec::new();
        for word in [ALT, 0, ALT_SIZE] {
            b.extend_from_slice(&word.to_le_bytes());
        }
        u.poke(ss, &b);
        assert_eq!(u.call(nr::SIGALTSTACK, &[ss, 0]), 0);
        let st = (sig::FRAME_UC + sig::UC_STACK) as u64;
        // uc_stack holds the flags as set, not as sigaltstack reports them.
        u.raise(sig::SIGUSR1);
        let (h, frame) = u.handler_frame();
        assert_eq!(i32_at(&frame, st as usize + 8), 0);
        // Bad flags, then too small a size: refused, ignored, no SIGSEGV.
        u.poke(h.rsp + st + 8, &0x55u32.to_le_bytes());
        assert_eq!(u.sigreturn(&h).rip, TEXT + 2);
        u.raise(sig::SIGUSR1);
        let (h, _) = u.handler_frame();
        u.poke(h.rsp + st + 16, &100u64.to_le_bytes());
        assert_eq!(u.sigreturn(&h).rip, TEXT + 2);
        assert_eq!(u.call(nr::SIGALTSTACK, &[0, OLD]), 0);
        assert_eq!(u64_at(&u.peek(OLD, 24), 16), ALT_SIZE);
        // A smaller, valid one is taken.
        u.raise(sig::SIGUSR1);
        let (h, _) = u.handler_frame();
        u.poke(h.rsp + st + 16, &4096u64.to_le_bytes());
        u.sigreturn(&h);
        assert_eq!(u.call(nr::SIGALTSTACK, &[0, OLD]), 0);
        assert_eq!(u64_at(&u.peek(OLD, 24), 16), 4096);
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}

#[test]
fn a_non_canonical_rip_is_sigsegv_on_the_registers_that_hold_it() {
    const BAD: u64 = 0x8000_0000_0000_0000;
    let w = World::new();
    let status = w.run_to_end(|u| {
        u.handle(sig::SIGUSR1, 0);
        u.handle(sig::SIGSEGV, 0);
        // sigreturn to it: the registers are restored, then SIGSEGV as
        // for a #GP there (Linux's return fails so).
        u.raise(sig::SIGUSR1);
        let (h, _) = u.handler_frame();
        u.poke(
            h.rdx + (sig::UC_MCONTEXT + R_RIP * 8) as u64,
            &BAD.to_le_bytes(),
        );
        let back = u.sigreturn(&h);
        assert_eq!((back.rip, back.rdi), (HANDLER, sig::SIGSEGV.into()));
        let frame = u.peek(back.rsp, sig::FRAME_SIZE);
        assert_eq!(i32_at(&frame, sig::FRAME_INFO + 8), sig::SI_KERNEL);
        assert_eq!(u64_at(&frame, greg(R_RIP)), BAD);
        assert_eq!(u64_at(&frame, greg(R_TRAPNO)), 13);
        assert_eq!(u64_at(&frame, greg(R_ERR)), 0);
        assert_eq!(u64_at(&frame, greg(R_RSP)), caller_regs(0, [0; 6]).rsp);
        // The SIGSEGV handler sends it back to where it was.
        u.poke(back.rsp + greg(R_RIP) as u64, &(TEXT + 2).to_le_bytes());
        assert_eq!(u.sigreturn(&back).rip, TEXT + 2);
        assert_eq!(u.mask(), 0);
        // A handler there: its frame is built, SIGSEGV's on top of it.
        assert_eq!(
            u.sigaction(sig::SIGUSR2, BAD, sig::SA_SIGINFO | sig::SA_RESTORER, 0),
            0
        );
        u.raise(sig::SIGUSR2);
        let (h, frame) = u.handler_frame();
        assert_eq!(h.rdi, sig::SIGSEGV.into());
        assert_eq!(u64_at(&frame, greg(R_RIP)), BAD);
        assert_eq!(u64_at(&frame, greg(R_RDI)), sig::SIGUSR2.into());
        assert_eq!(u.mask(), bit(sig::SIGSEGV) | bit(sig::SIGUSR2));
        0
    });
    assert_eq!(status, 0);
    w.assert_quiet();
}
