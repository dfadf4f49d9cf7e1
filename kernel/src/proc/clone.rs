//! Linux threads: `clone` for the flag sets of `pthread_create`,
//! `set_tid_address`, `arch_prctl`'s FS base, and what a thread's exit
//! owes its joiner. docs/abi.md says what each call does.
//!
//! A `clone` child begins as a copy of its parent's registers at the
//! call (the executor's trap frame, through `user_regs`), with rax 0 and
//! the new stack; the [`Machine`] only carries that out
//! ([`Start::Clone`]). Its record is detached: nobody waits for it, and
//! the next thread to exit or clone reaps it once it is off the CPU.

use abi::{Errno, TASK_SIZE_MAX, arch_prctl, clone, futex};

use super::{MAX_THREADS_PER_PROCESS, Machine, Start, System, TaskExt, UserRegs, signal};
use crate::sync::IrqOff;
use crate::task::sched::{Priority, SchedError, Tid};
use crate::task::uaccess::{self, Faulting};

/// Linux's rule: `CLONE_THREAD` needs these, and `SIGHAND` needs `VM`.
const THREAD: u32 = clone::VM | clone::SIGHAND | clone::THREAD;
/// Faultline's threads share the descriptor table too: a copy of it for
/// one thread has no place in the process model yet.
const REQUIRED: u32 = THREAD | clone::FILES;
/// Flags that mean something for a thread here, or nothing at all on
/// Linux either (`FS`: no cwd or umask; `SYSVSEM`: no semaphores;
/// `DETACHED`: ignored since Linux 2.6, but musl passes it).
const ALLOWED: u32 = REQUIRED
    | clone::FS
    | clone::SYSVSEM
    | clone::SETTLS
    | clone::PARENT_SETTID
    | clone::CHILD_CLEARTID
    | clone::DETACHED;

type SysResult = Result<u64, Errno>;

impl<M: Machine> System<M> {
    /// `clone(flags, newsp, parent_tid, child_tid, tls)`, x86_64's order.
    pub(super) fn sys_clone(
        &self,
        flags: u64,
        newsp: u64,
        parent_tid: u64,
        child_tid: u64,
        tls: u64,
        regs: UserRegs,
    ) -> SysResult {
        // Linux reads the low 32 bits; the low byte is the exit signal,
        // which a thread does not send.
        let flags = flags as u32 & !clone::CSIGNAL;
        let has = |f: u32| flags & f == f;
        // Linux's own rules come first; Faultline's are EINVAL as well.
        if has(clone::THREAD) && !has(clone::SIGHAND) || has(clone::SIGHAND) && !has(clone::VM) {
            return Err(Errno::EINVAL);
        }
        if !has(REQUIRED) || flags & !ALLOWED != 0 {
            return Err(Errno::EINVAL);
        }
        let mut regs = regs;
        regs.rax = 0;
        // Linux keeps the parent's stack pointer for newsp 0 and checks
        // nothing else about it: a bad one makes the child fault in user
        // mode, never the kernel.
        if newsp != 0 {
            regs.rsp = newsp;
        }
        let fs_base = if has(clone::SETTLS) {
            tls
        } else {
            self.with_current_context(|c| c.map_or(0, |c| self.m.fs_base(c)))
        };
        let pid = self.current_pid();
        let root = self.with_current_process(|p| Ok(p.space.root()))?;
        let ctx = self
            .m
            .new_context(Start::Clone { regs, fs_base }, Some(root))?;
        // Before the locks: the signal state is allocated.
        let mut sig = signal::SigState::new().ok_or(Errno::ENOMEM)?;
        self.reap_detached();
        let alloc = self.alloc();
        let _off = IrqOff::new();
        let mut procs = self.procs.lock();
        let p = procs
            .iter_mut()
            .find(|p| p.pid == pid)
            .ok_or(Errno::ESRCH)?;
        let mut s = self.sched();
        let me = s.current();
        let name = s.task(me).ok_or(Errno::ESRCH)?.name;
        // As for spawn_thread: an ending process makes no more threads
        // (dropping `ctx` frees its stack).
        if s.kill_pending(me).is_some() {
            return Err(Errno::EINTR);
        }
        if s.tasks().filter(|t| t.group == pid).count() >= MAX_THREADS_PER_PROCESS {
            return Err(Errno::EAGAIN);
        }
        // Linux sets the FS base last, after the limits (copy_thread).
        if has(clone::SETTLS) && tls >= TASK_SIZE_MAX {
            return Err(Errno::EPERM);
        }
        s.ext(me).ok_or(Errno::ESRCH)?.sig.inherit(&mut sig);
        let ext = TaskExt {
            ctx,
            clear_child_tid: if has(clone::CHILD_CLEARTID) {
                child_tid
            } else {
                0
            },
            sig,
        };
        let tid = s
            .spawn(name.as_str(), Some(pid), Priority::NORMAL, true, ext)
            .map_err(|e| match e {
                SchedError::NoMemory => Errno::ENOMEM,
                _ => Errno::EAGAIN,
            })?;
        if s.detach(tid).is_err() {
            return Err(Errno::EAGAIN);
        }
        if has(clone::PARENT_SETTID) {
            // Before the child can run (this section holds the scheduler),
            // so its exit cannot clear the word first. Linux ignores a
            // failed store, and so does this.
            // (A fault that finds no memory is caught at the process's
            // next copy: the scheduler's lock is held here.)
            let bytes = tid.to_le_bytes();
            let mut user = Faulting {
                space: &mut p.space,
                alloc,
            };
            let _ = uaccess::copy_to_user(&mut user, parent_tid, &bytes);
        }
        Ok(tid.into())
    }

    /// `set_tid_address(tidptr)`: the word this thread's exit clears and
    /// wakes. Linux checks nothing about it.
    pub(super) fn sys_set_tid_address(&self, tidptr: u64) -> u64 {
        self.with_sched(|s| {
            let me = s.current();
            if let Some(ext) = s.ext_mut(me) {
                ext.clear_child_tid = tidptr;
            }
            me.into()
        })
    }

    /// `arch_prctl(code, addr)`: the calling thread's FS base.
    pub(super) fn sys_arch_prctl(&self, code: i32, addr: u64) -> SysResult {
        match code {
            arch_prctl::SET_FS => {
                if addr >= TASK_SIZE_MAX {
                    return Err(Errno::EPERM);
                }
                self.with_current_context(|c| c.map(|c| self.m.set_fs_base(c, addr)))
                    .ok_or(Errno::ESRCH)?;
                Ok(0)
            }
            arch_prctl::GET_FS => {
                let base = self
                    .with_current_context(|c| c.map(|c| self.m.fs_base(c)))
                    .ok_or(Errno::ESRCH)?;
                self.with_user(|u| uaccess::copy_to_user(u, addr, &base.to_le_bytes()))?;
                Ok(0)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// At a thread's exit: 0 stored at its `clear_child_tid` word and one
    /// waiter woken there, by a shared wake as Linux does it (so a joiner
    /// must wait without `FUTEX_PRIVATE_FLAG`). Failures are ignored, as
    /// Linux ignores them.
    pub(super) fn clear_child_tid(&self) {
        let addr = self.with_sched(|s| {
            let me = s.current();
            s.ext_mut(me)
                .map_or(0, |ext| core::mem::take(&mut ext.clear_child_tid))
        });
        if addr == 0 {
            return;
        }
        let _ = self.with_user(|u| uaccess::copy_to_user(u, addr, &0u32.to_le_bytes()));
        let _ = self.futex_wake(addr, false, 1, futex::BITSET_MATCH_ANY);
    }

    /// Frees the records of detached threads that have exited and left
    /// the CPU; their stacks are freed here, outside the lock.
    pub(super) fn reap_detached(&self) {
        loop {
            let reaped = self.sched().reap_detached();
            let Some((_, _, ext)) = reaped else { break };
            drop(ext);
        }
    }

    /// The detached threads' records not reaped yet (for leak checks).
    pub fn detached_zombies(&self) -> usize {
        self.with_sched(|s| {
            s.tasks()
                .filter(|t| t.detached && matches!(t.state, crate::task::sched::State::Exited(_)))
                .count()
        })
    }
}

// A tid fits the 32-bit words PARENT_SETTID and the joiners use.
const _: () = assert!(core::mem::size_of::<Tid>() == 4);
