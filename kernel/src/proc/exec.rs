//! `execve` and `execveat`: the calling process runs another program.
//!
//! Faultline has no file system: the programs it knows (built in, or boot
//! modules, `Machine::program`) are the files of one directory, `/bin`,
//! under a root that holds nothing else, and the current directory is
//! the root. So `/bin/NAME`, `bin/NAME` and `/bin/../bin/NAME` name
//! program NAME; `/` and `/bin` are directories.
//!
//! The errors come in Linux's order (`do_execveat_common` in fs/exec.c):
//! the path is read (`EFAULT`, `ENAMETOOLONG`, `ENOENT` when empty), the
//! `argv` and `envp` arrays counted (`EFAULT`), their pointers held
//! against the limit (`E2BIG`), the strings copied, the path's first,
//! then `envp`'s and `argv`'s, each array from its last string
//! (`EFAULT`, `E2BIG`), and only then is the program looked up
//! (`execveat`'s flags `EINVAL`, then `EBADF`, `ENOENT`, `ENOTDIR`,
//! `EACCES`, `ENOEXEC`). Up to there a failure leaves the caller as it
//! was. Faultline builds the new address space before the point of no
//! return too, so running out of memory is an error code as well; after
//! it ([`System::exec_commit`]) nothing fails.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use abi::Errno;
use abi::exec::{
    ARG_LIMIT, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, MAX_ARG_STRINGS, MAX_ARG_STRLEN,
    NAME_MAX, PATH_MAX,
};

use super::{MAX_FDS, Machine, SpawnError, System, UserFrame, UserRegs, signal};
use crate::mm::PAGE_SIZE;
use crate::sync::IrqOff;
use crate::task::aspace::UserSpace;
use crate::task::sched::State;
use crate::task::uaccess;

/// The strings of a new program, copied out of the old one's memory
/// before it goes: one buffer, each string's end in it.
struct Strings {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Strings {
    fn new() -> Strings {
        Strings {
            bytes: Vec::new(),
            ends: Vec::new(),
        }
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Every string, in the order they were pushed.
    fn all(&self) -> Result<Vec<&[u8]>, Errno> {
        let mut v = Vec::new();
        v.try_reserve_exact(self.ends.len())
            .map_err(|_| Errno::ENOMEM)?;
        v.extend((0..self.ends.len()).map(|i| self.get(i)));
        Ok(v)
    }
}

/// What a path names in Faultline's one directory.
enum Node {
    Root,
    Bin,
    /// Its name (the kernel's copy) and image.
    Program((&'static str, &'static [u8])),
}

impl<M: Machine> System<M> {
    /// `execve(path, argv, envp)`.
    pub(super) fn sys_execve(
        &self,
        path: u64,
        argv: u64,
        envp: u64,
        frame: &mut dyn UserFrame,
    ) -> Result<u64, Errno> {
        self.execveat(AT_FDCWD, path, argv, envp, 0, frame)
    }

    /// `execveat(dirfd, path, argv, envp, flags)`; `execve` is its
    /// `AT_FDCWD` case. Returns only on failure: on success `frame` holds
    /// the new program's first registers and the call's result is their
    /// rax, 0.
    pub(super) fn execveat(
        &self,
        dirfd: i32,
        path_ptr: u64,
        argv: u64,
        envp: u64,
        flags: i32,
        frame: &mut dyn UserFrame,
    ) -> Result<u64, Errno> {
        // getname: an empty path is ENOENT unless AT_EMPTY_PATH names the
        // descriptor itself.
        let mut path = Vec::new();
        if self.user_string(path_ptr, PATH_MAX, &mut path)?.is_none() {
            return Err(Errno::ENAMETOOLONG);
        }
        if path.is_empty() && flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        // What Linux calls the program (bprm->filename): the path, or the
        // descriptor's /dev/fd name; AT_EXECFN points at it and it counts
        // against the limit.
        let filename = if dirfd == AT_FDCWD || path.first() == Some(&b'/') {
            path.clone()
        } else {
            // Reserved first, so that neither the digits nor the path
            // reallocates: no allocation here may abort.
            let mut name = String::new();
            name.try_reserve(path.len() + 24)
                .map_err(|_| Errno::ENOMEM)?;
            let _ = write!(name, "/dev/fd/{dirfd}");
            let mut name = name.into_bytes();
            if !path.is_empty() {
                name.push(b'/');
                name.extend_from_slice(&path);
            }
            name
        };
        let argc = self.count_strings(argv)?;
        let envc = self.count_strings(envp)?;
        // Linux's bprm_stack_limits: the pointers first (an empty argv
        // still gets one), then each string takes from what is left.
        let pointers = (argc.max(1) + envc) * 8;
        if ARG_LIMIT <= pointers {
            return Err(Errno::E2BIG);
        }
        let mut room = ARG_LIMIT - pointers;
        take_room(&mut room, filename.len() + 1)?;
        let envs = self.copy_strings(envp, envc, &mut room)?;
        let mut args = self.copy_strings(argv, argc, &mut room)?;
        // Linux 5.18 on: a program run with no argv gets [""], so that
        // argv[0] exists.
        if argc == 0 {
            take_room(&mut room, 1)?;
            args.ends.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
            args.ends.push(0);
        }
        if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
            return Err(Errno::EINVAL);
        }
        let (name, image) = self.lookup_program(dirfd, &path)?;
        // Only the process's first thread may change its program:
        // Faultline cannot yet give another thread the leader's tid, as
        // Linux's de_thread does (docs/abi.md says so).
        if self.current() != self.current_pid() {
            return Err(Errno::EAGAIN);
        }
        let (space, entry, rsp) = self
            .load_space(image, &args.all()?, &envs.all()?, Some(&filename))
            .map_err(|e| match e {
                SpawnError::Elf(_) => Errno::ENOEXEC,
                SpawnError::Load(e) => e,
                SpawnError::Task(_) => Errno::EAGAIN,
            })?;
        self.exec_commit(name, space, entry, rsp, frame)
    }

    /// The point of no return: ends the other threads, puts `space` in
    /// the old one's place, closes the close-on-exec descriptors, resets
    /// the caught signals and starts the program at `entry` with stack
    /// `rsp`. Fails only when the process is being killed meanwhile (then
    /// the kill ends it on the way out).
    fn exec_commit(
        &self,
        name: &str,
        space: UserSpace<'static, M::Pte, M::Mem>,
        entry: u64,
        rsp: u64,
        frame: &mut dyn UserFrame,
    ) -> Result<u64, Errno> {
        let (frames, tables) = (self.m.frames(), self.m.tables());
        if let Err(e) = self.end_other_threads() {
            space.destroy(frames, tables);
            return Err(e);
        }
        let root = space.root();
        let mut closed = [None; MAX_FDS];
        // Held outside the closure: should the process not be found, the
        // new space is still here to destroy.
        let mut new = Some(space);
        let swapped = self.with_current_process(|p| {
            let Some(space) = new.take() else {
                return Err(Errno::ESRCH);
            };
            let old = core::mem::replace(&mut p.space, space);
            let mut n = 0;
            p.fds.close_on_exec(|f| {
                closed[n] = Some(f);
                n += 1;
            });
            signal::exec_actions(&mut p.signals);
            Ok(old)
        });
        let old = match swapped {
            Ok(old) => old,
            Err(e) => {
                if let Some(space) = new {
                    space.destroy(frames, tables);
                }
                return Err(e);
            }
        };
        self.with_current_context(|c| {
            if let Some(c) = c {
                self.m.set_root(c, root);
                self.m.set_fs_base(c, 0);
            }
        });
        // No CPU runs the old space now: its other threads are reaped
        // (off every CPU), and this CPU has left it.
        old.destroy(frames, tables);
        for file in closed.into_iter().flatten() {
            self.release_file(file);
        }
        {
            let _off = IrqOff::new();
            let mut s = self.sched();
            let me = s.current();
            s.set_name(me, name);
            if let Some(ext) = s.ext_mut(me) {
                ext.clear_child_tid = 0;
                ext.sig.exec();
            }
        }
        self.m.fpu_reset();
        // rsp at argc, every other register 0 but the flags' IF, as
        // Linux's start_thread leaves them.
        frame.set_regs(&UserRegs {
            rip: entry,
            rsp,
            rflags: 0x200,
            ..UserRegs::default()
        });
        Ok(0)
    }

    /// Linux's de_thread: every other thread of the caller's process is
    /// killed and collected, so that none runs on (or is left in) the old
    /// address space.
    fn end_other_threads(&self) -> Result<(), Errno> {
        let (me, pid) = (self.current(), self.current_pid());
        self.kill_others(pid, me, abi::signaled_status(abi::sig::SIGKILL));
        loop {
            {
                let _off = IrqOff::new();
                let mut s = self.sched();
                if s.kill_pending(me).is_some() {
                    return Err(Errno::EINTR);
                }
                loop {
                    let next = s.tasks().find(|t| {
                        t.group == pid && t.tid != me && matches!(t.state, State::Exited(_))
                    });
                    let Some(t) = next.map(|t| t.tid) else { break };
                    // Still leaving its CPU: the next round takes it.
                    if s.reap(t).is_err() {
                        break;
                    }
                }
                if !s.tasks().any(|t| t.group == pid && t.tid != me) {
                    return Ok(());
                }
            }
            self.sleep_ns(self.m.tick_ns());
        }
    }

    /// The number of strings in the null-ended array at `array` (0 for a
    /// null array, as Linux allows).
    fn count_strings(&self, array: u64) -> Result<usize, Errno> {
        if array == 0 {
            return Ok(0);
        }
        let mut n = 0;
        loop {
            let at = array.wrapping_add(8 * n as u64);
            if self.with_user(|u| uaccess::read_user_u64(u, at))? == 0 {
                return Ok(n);
            }
            n += 1;
            if n >= MAX_ARG_STRINGS {
                return Err(Errno::E2BIG);
            }
            // A huge array takes long to count: a kill must not wait.
            if n % 4096 == 0 && self.kill_pending().is_some() {
                return Err(Errno::EINTR);
            }
        }
    }

    /// Copies the `count` strings of `array`, the last first as Linux
    /// does (so which error wins matches), each taking its bytes from
    /// `room`.
    fn copy_strings(&self, array: u64, count: usize, room: &mut usize) -> Result<Strings, Errno> {
        let mut lens = Vec::new();
        lens.try_reserve_exact(count).map_err(|_| Errno::ENOMEM)?;
        let mut backwards = Strings::new();
        for i in (0..count).rev() {
            let at = array.wrapping_add(8 * i as u64);
            let ptr = self.with_user(|u| uaccess::read_user_u64(u, at))?;
            let start = backwards.bytes.len();
            let len = self
                .user_string(ptr, MAX_ARG_STRLEN, &mut backwards.bytes)?
                .ok_or(Errno::E2BIG)?;
            take_room(room, len + 1)?;
            lens.push((start, len));
        }
        // Put back in order, into one buffer of their exact size.
        let mut out = Strings::new();
        out.bytes
            .try_reserve_exact(backwards.bytes.len())
            .map_err(|_| Errno::ENOMEM)?;
        out.ends
            .try_reserve_exact(count)
            .map_err(|_| Errno::ENOMEM)?;
        for &(start, len) in lens.iter().rev() {
            out.bytes
                .extend_from_slice(&backwards.bytes[start..start + len]);
            out.ends.push(out.bytes.len());
        }
        Ok(out)
    }

    /// Appends the C string at `va` (without its NUL) to `out`: its
    /// length, or None when no NUL comes within `max` bytes. EFAULT when
    /// memory before the NUL cannot be read.
    fn user_string(&self, va: u64, max: usize, out: &mut Vec<u8>) -> Result<Option<usize>, Errno> {
        let mut len = 0;
        let mut chunk = [0u8; 256];
        while len < max {
            let at = va.wrapping_add(len as u64);
            // Up to the page's end: the next page may be unmapped, and the
            // string may end before it.
            let to_page_end = (PAGE_SIZE - at % PAGE_SIZE) as usize;
            let n = chunk.len().min(to_page_end).min(max - len);
            uaccess::check_user_range(at, n as u64)?;
            self.with_user(|u| uaccess::copy_from_user(u, at, &mut chunk[..n]))?;
            let end = chunk[..n].iter().position(|&b| b == 0);
            let take = end.unwrap_or(n);
            out.try_reserve(take).map_err(|_| Errno::ENOMEM)?;
            out.extend_from_slice(&chunk[..take]);
            len += take;
            if end.is_some() {
                return Ok(Some(len));
            }
        }
        Ok(None)
    }

    /// The program `path` names, looked up from `dirfd` as Linux's
    /// do_open_execat would.
    #[allow(clippy::type_complexity)]
    fn lookup_program(
        &self,
        dirfd: i32,
        path: &[u8],
    ) -> Result<(&'static str, &'static [u8]), Errno> {
        let relative = path.first() != Some(&b'/');
        if relative && dirfd != AT_FDCWD {
            // A descriptor first: not open is EBADF. Faultline's open
            // files are the console and pipes, none a directory or a
            // program.
            self.file(u64::from(dirfd as u32))
                .map_err(|_| Errno::EBADF)?;
            if dirfd < 0 {
                return Err(Errno::EBADF);
            }
            return Err(if path.is_empty() {
                Errno::EACCES
            } else {
                Errno::ENOTDIR
            });
        }
        let mut node = Node::Root;
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if comp.len() > NAME_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
            node = match (node, comp) {
                (Node::Program(_), _) => return Err(Errno::ENOTDIR),
                (n, b".") => n,
                (_, b"..") => Node::Root,
                (Node::Root, b"bin") => Node::Bin,
                (Node::Root, _) => return Err(Errno::ENOENT),
                (Node::Bin, name) => {
                    let name = core::str::from_utf8(name).map_err(|_| Errno::ENOENT)?;
                    match self.m.program(name) {
                        Some(found) => Node::Program(found),
                        None => return Err(Errno::ENOENT),
                    }
                }
            };
        }
        match node {
            Node::Program(_) if path.last() == Some(&b'/') => Err(Errno::ENOTDIR),
            Node::Program(found) => Ok(found),
            // A directory is not a program.
            Node::Root | Node::Bin => Err(Errno::EACCES),
        }
    }
}

/// Takes `len` bytes from `room`: E2BIG when they are not there.
fn take_room(room: &mut usize, len: usize) -> Result<(), Errno> {
    *room = room.checked_sub(len).ok_or(Errno::E2BIG)?;
    Ok(())
}
