//! A process's descriptor table, and the calls that work on descriptors as
//! such: `dup`, `dup2`, `dup3`, `fcntl`, `fstat`, `ioctl`.
//!
//! The table is a fixed array, so opening a descriptor never allocates and
//! the lowest free number is found as POSIX requires.
//!
//! # Open file descriptions
//!
//! On Linux a descriptor names an open file description, which holds the
//! file status flags (`O_NONBLOCK`, `F_SETFL`'s) and is shared by every
//! descriptor `dup` made from it; `FD_CLOEXEC` belongs to the descriptor.
//! Faultline keeps the status flags where the description is unique
//! anyway: every pipe end has exactly one description, because the only
//! ways to a pipe end are `pipe`/`pipe2` (a new description per end) and
//! the `dup` family (the same one) — there is no `open` of a FIFO, no
//! `/proc/self/fd`, and `fork` would share descriptions, not copy them. So
//! a pipe end's flags live with the end (`pipes.rs`), and the console's
//! description, one per program as if its shell had opened the terminal
//! for it, lives here in the table ([`FdTable::console_flags`]).

use abi::{Errno, Stat, Timespec, Winsize, fcntl, ioctl, o, stat};

use super::{Machine, System};
use crate::sync::IrqOff;

/// Descriptors a process may hold open at once (its `RLIMIT_NOFILE`).
pub const MAX_FDS: usize = 64;

/// The file status flags `F_SETFL` may change (Linux's `SETFL_MASK` but
/// for `O_DIRECT` and `O_ASYNC`, which Faultline does not support).
pub const SETFL_FLAGS: u32 = o::APPEND | o::NONBLOCK | o::NOATIME;

/// A pipe's name in the pipe table: its slot, and the slot's generation,
/// so that a descriptor closed by one thread while another is blocked on
/// it can never lead that one into a new pipe reusing the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeId {
    pub(super) slot: u32,
    pub(super) generation: u32,
}

/// An open file: the console or one end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    Console,
    PipeRead(PipeId),
    PipeWrite(PipeId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    file: File,
    cloexec: bool,
}

pub struct FdTable {
    slots: [Option<Slot>; MAX_FDS],
    /// The console description's status flags, shared by every console
    /// descriptor of the process.
    console_flags: u32,
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable::new()
    }
}

impl FdTable {
    pub const fn new() -> FdTable {
        FdTable {
            slots: [None; MAX_FDS],
            console_flags: 0,
        }
    }

    /// Installs `file` at the lowest free descriptor.
    pub fn open(&mut self, file: File) -> Option<u32> {
        self.open_from(0, file, false)
    }

    /// Installs `file` at the lowest free descriptor at or above `min`.
    pub fn open_from(&mut self, min: u32, file: File, cloexec: bool) -> Option<u32> {
        let fd = self.lowest_free(min)?;
        self.slots[fd as usize] = Some(Slot { file, cloexec });
        Some(fd)
    }

    pub fn lowest_free(&self, min: u32) -> Option<u32> {
        let min = usize::try_from(min).ok()?;
        let fd = (min..MAX_FDS).find(|&fd| self.slots[fd].is_none())?;
        Some(fd as u32)
    }

    /// Installs `file` at `fd` exactly; false when it is taken or too big.
    pub fn open_at(&mut self, fd: u32, file: File) -> bool {
        match self.slots.get_mut(fd as usize) {
            Some(slot @ None) => {
                *slot = Some(Slot {
                    file,
                    cloexec: false,
                });
                true
            }
            _ => false,
        }
    }

    /// Makes `fd` name `file`, open or not before: Some(what it named),
    /// which the caller releases; None when `fd` is too big.
    pub fn replace(&mut self, fd: u32, file: File, cloexec: bool) -> Option<Option<File>> {
        let slot = self.slots.get_mut(fd as usize)?;
        Some(slot.replace(Slot { file, cloexec }).map(|s| s.file))
    }

    pub fn get(&self, fd: u64) -> Option<File> {
        self.slot(fd).map(|s| s.file)
    }

    fn slot(&self, fd: u64) -> Option<Slot> {
        *self.slots.get(usize::try_from(fd).ok()?)?
    }

    pub fn cloexec(&self, fd: u64) -> Option<bool> {
        self.slot(fd).map(|s| s.cloexec)
    }

    /// False when `fd` is not open.
    pub fn set_cloexec(&mut self, fd: u64, on: bool) -> bool {
        let Some(Some(slot)) = usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)) else {
            return false;
        };
        slot.cloexec = on;
        true
    }

    pub fn console_flags(&self) -> u32 {
        self.console_flags
    }

    pub fn set_console_flags(&mut self, flags: u32) {
        self.console_flags = flags & SETFL_FLAGS;
    }

    /// Removes descriptor `fd`, handing back what it named.
    pub fn close(&mut self, fd: u64) -> Option<File> {
        let slot = self.slots.get_mut(usize::try_from(fd).ok()?)?.take()?;
        Some(slot.file)
    }

    /// Empties the table, for a process's end.
    pub fn drain(&mut self) -> impl Iterator<Item = File> + '_ {
        self.slots
            .iter_mut()
            .filter_map(|s| s.take().map(|s| s.file))
    }

    /// Closes every close-on-exec descriptor (`execve`), handing each
    /// file to `release`.
    pub fn close_on_exec(&mut self, mut release: impl FnMut(File)) {
        for slot in self.slots.iter_mut() {
            if slot.is_some_and(|s| s.cloexec)
                && let Some(s) = slot.take()
            {
                release(s.file);
            }
        }
    }

    pub fn open_count(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

/// Where a duplicate goes.
#[derive(Clone, Copy)]
enum Place {
    /// The lowest free descriptor at or above this one (`dup`, `F_DUPFD`).
    Lowest(u32),
    /// Exactly this one, closing what it named (`dup2`, `dup3`).
    At(u32),
}

/// `fcntl`'s `unsigned int` and `int` arguments: the low 32 bits.
fn low(arg: u64) -> u32 {
    arg as u32
}

/// Linux's `round_pipe_size`: a power of two of at least a page; 0 for
/// sizes it refuses (above 2^31).
fn round_pipe_size(size: u32) -> u64 {
    match size {
        s if s > 1 << 31 => 0,
        s if s < 4096 => 4096,
        s => u64::from(s).next_power_of_two(),
    }
}

impl<M: Machine> System<M> {
    pub(super) fn sys_dup(&self, fd: u64) -> Result<u64, Errno> {
        self.dup_to(fd, Place::Lowest(0), false)
    }

    pub(super) fn sys_dup2(&self, fd: u64, new: u64) -> Result<u64, Errno> {
        if fd == new {
            // Linux's corner case: nothing to do once `fd` is known open.
            return self.file(fd).map(|_| new);
        }
        self.dup3_checked(fd, new, false)
    }

    pub(super) fn sys_dup3(&self, fd: u64, new: u64, flags: i32) -> Result<u64, Errno> {
        if flags as u32 & !o::CLOEXEC != 0 || fd == new {
            return Err(Errno::EINVAL);
        }
        self.dup3_checked(fd, new, flags as u32 & o::CLOEXEC != 0)
    }

    fn dup3_checked(&self, fd: u64, new: u64, cloexec: bool) -> Result<u64, Errno> {
        // Beyond the limit is EBADF, before `fd` is looked at, as on Linux.
        let new = u32::try_from(new)
            .ok()
            .filter(|&n| (n as usize) < MAX_FDS)
            .ok_or(Errno::EBADF)?;
        self.dup_to(fd, Place::At(new), cloexec)
    }

    /// Makes a new descriptor for the file `fd` names. The file gains its
    /// reference under the table's lock, so no thread's close can free
    /// it in between; what an `At` replaces is released after.
    fn dup_to(&self, fd: u64, place: Place, cloexec: bool) -> Result<u64, Errno> {
        let pid = self.current_pid();
        let _off = IrqOff::new();
        let (new, replaced) = {
            let mut procs = self.procs.lock();
            let p = procs
                .iter_mut()
                .find(|p| p.pid == pid)
                .ok_or(Errno::ESRCH)?;
            let file = p.fds.get(fd).ok_or(Errno::EBADF)?;
            let new = match place {
                Place::Lowest(min) => p.fds.lowest_free(min).ok_or(Errno::EMFILE)?,
                Place::At(new) => new,
            };
            if !self.add_reference(file) {
                return Err(Errno::EBADF);
            }
            let replaced = p.fds.replace(new, file, cloexec).flatten();
            (new, replaced)
        };
        if let Some(old) = replaced {
            self.release_file(old);
        }
        Ok(new.into())
    }

    pub(super) fn sys_fcntl(&self, fd: u64, cmd: u32, arg: u64) -> Result<u64, Errno> {
        // The descriptor first, whatever the command (Linux's order).
        let file = self.file(fd)?;
        match cmd {
            fcntl::F_DUPFD | fcntl::F_DUPFD_CLOEXEC => {
                // An `int` read as unsigned: a negative one is too big.
                let min = low(arg);
                if min as usize >= MAX_FDS {
                    return Err(Errno::EINVAL);
                }
                self.dup_to(fd, Place::Lowest(min), cmd == fcntl::F_DUPFD_CLOEXEC)
            }
            fcntl::F_GETFD => self.with_current_process(|p| {
                let on = p.fds.cloexec(fd).ok_or(Errno::EBADF)?;
                Ok(if on { fcntl::FD_CLOEXEC.into() } else { 0 })
            }),
            fcntl::F_SETFD => self.with_current_process(|p| {
                // Bits other than FD_CLOEXEC are ignored, as on Linux.
                let on = low(arg) & fcntl::FD_CLOEXEC != 0;
                if p.fds.set_cloexec(fd, on) {
                    Ok(0)
                } else {
                    Err(Errno::EBADF)
                }
            }),
            fcntl::F_GETFL => match file {
                // Read and write, as the terminal Linux opens for init and
                // its children (without O_LARGEFILE, which only open(2)
                // adds): the oracle's programs see O_RDWR alone.
                File::Console => {
                    self.with_current_process(|p| Ok(u64::from(o::RDWR | p.fds.console_flags())))
                }
                File::PipeRead(id) => Ok(u64::from(o::RDONLY | self.pipe_flags(id, true)?)),
                File::PipeWrite(id) => Ok(u64::from(o::WRONLY | self.pipe_flags(id, false)?)),
            },
            fcntl::F_SETFL => {
                let flags = low(arg);
                // Linux's packet mode and SIGIO: refused rather than
                // accepted and ignored.
                if flags & (o::DIRECT | o::ASYNC) != 0 {
                    return Err(Errno::EINVAL);
                }
                // Other bits (the access mode, O_CREAT, ...) are ignored,
                // as on Linux.
                let flags = flags & SETFL_FLAGS;
                match file {
                    File::Console => self.with_current_process(|p| {
                        p.fds.set_console_flags(flags);
                        Ok(0)
                    }),
                    File::PipeRead(id) => self.set_pipe_flags(id, true, flags).map(|()| 0),
                    File::PipeWrite(id) => self.set_pipe_flags(id, false, flags).map(|()| 0),
                }
            }
            fcntl::F_GETPIPE_SZ | fcntl::F_SETPIPE_SZ => {
                let id = match file {
                    File::PipeRead(id) | File::PipeWrite(id) => id,
                    // Linux: not a pipe is EBADF for these two.
                    File::Console => return Err(Errno::EBADF),
                };
                if cmd == fcntl::F_GETPIPE_SZ {
                    return self.pipe_capacity(id).map(|c| c as u64);
                }
                let size = round_pipe_size(low(arg));
                if size == 0 {
                    return Err(Errno::EINVAL);
                }
                if size > abi::pipe::MAX_SIZE as u64 {
                    return Err(Errno::EPERM);
                }
                self.resize_pipe(id, size as usize).map(|()| size)
            }
            // Linux's locks, leases, owners, seals and hints are not here.
            _ => Err(Errno::EINVAL),
        }
    }

    /// The descriptor first, then the buffer (Linux's order): the copy
    /// checks every page before it stores a byte.
    pub(super) fn sys_fstat(&self, fd: u64, buf: u64) -> Result<u64, Errno> {
        let st = match self.file(fd)? {
            File::Console => Stat {
                dev: stat::CONSOLE_DEV,
                ino: stat::CONSOLE_INO,
                nlink: 1,
                mode: stat::CONSOLE_MODE,
                rdev: stat::CONSOLE_RDEV,
                blksize: stat::BLKSIZE,
                // Made at boot, which is time 0 of CLOCK_REALTIME here.
                ..Stat::default()
            },
            File::PipeRead(id) | File::PipeWrite(id) => {
                let (ino, created) = self.pipe_identity(id)?;
                let t = Timespec::from_ns(created);
                Stat {
                    dev: stat::PIPE_DEV,
                    ino,
                    nlink: 1,
                    mode: stat::PIPE_MODE,
                    blksize: stat::BLKSIZE,
                    atime: t,
                    mtime: t,
                    ctime: t,
                    ..Stat::default()
                }
            }
        };
        self.copy_to_user(buf, &st.to_bytes())?;
        Ok(0)
    }

    /// An `int` a request reads at `arg`.
    fn read_int(&self, arg: u64) -> Result<i32, Errno> {
        let mut b = [0u8; 4];
        self.copy_from_user(arg, &mut b)?;
        Ok(i32::from_le_bytes(b))
    }

    /// The argument is a pointer only for some requests on some files,
    /// so the descriptor and the request come first (Linux's order) and
    /// the pointer is checked when it is written.
    pub(super) fn sys_ioctl(&self, fd: u64, request: u32, arg: u64) -> Result<u64, Errno> {
        let file = self.file(fd)?;
        match (request, file) {
            (ioctl::FIOCLEX | ioctl::FIONCLEX, _) => self.with_current_process(|p| {
                if p.fds.set_cloexec(fd, request == ioctl::FIOCLEX) {
                    Ok(0)
                } else {
                    Err(Errno::EBADF)
                }
            }),
            (ioctl::FIONBIO, _) => {
                let on = self.read_int(arg)? != 0;
                let set = |flags: u32| {
                    if on {
                        flags | o::NONBLOCK
                    } else {
                        flags & !o::NONBLOCK
                    }
                };
                match file {
                    File::Console => self.with_current_process(|p| {
                        p.fds.set_console_flags(set(p.fds.console_flags()));
                        Ok(0)
                    }),
                    File::PipeRead(id) => self.update_pipe_flags(id, true, set).map(|()| 0),
                    File::PipeWrite(id) => self.update_pipe_flags(id, false, set).map(|()| 0),
                }
            }
            (ioctl::FIOASYNC, _) => match self.read_int(arg)? {
                // As F_SETFL: O_ASYNC is not supported, and is never on.
                0 => Ok(0),
                _ => Err(Errno::EINVAL),
            },
            (ioctl::FIONREAD, File::Console) => {
                // No input reaches programs from the console.
                self.copy_to_user(arg, &0i32.to_le_bytes())?;
                Ok(0)
            }
            (ioctl::FIONREAD, File::PipeRead(id) | File::PipeWrite(id)) => {
                let n = self.pipe_buffered(id)? as i32;
                self.copy_to_user(arg, &n.to_le_bytes())?;
                Ok(0)
            }
            (ioctl::TIOCGWINSZ, File::Console) => {
                self.copy_to_user(arg, &Winsize::CONSOLE.to_bytes())?;
                Ok(0)
            }
            _ => Err(Errno::ENOTTY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn pipe(slot: u32) -> PipeId {
        PipeId {
            slot,
            generation: 0,
        }
    }

    #[test]
    fn lowest_free_descriptor_first() {
        let mut t = FdTable::new();
        assert_eq!(t.open(File::Console), Some(0));
        assert!(t.open_at(2, File::Console));
        assert!(!t.open_at(2, File::PipeRead(pipe(1))));
        assert_eq!(t.open(File::PipeRead(pipe(1))), Some(1));
        assert_eq!(t.open(File::PipeWrite(pipe(1))), Some(3));
        assert_eq!(t.close(1), Some(File::PipeRead(pipe(1))));
        assert_eq!(t.close(1), None);
        assert_eq!(t.open(File::PipeWrite(pipe(2))), Some(1));
        assert_eq!(t.get(3), Some(File::PipeWrite(pipe(1))));
        assert_eq!(t.get(u64::MAX), None);
        assert_eq!(t.close(1 << 40), None);
        assert_eq!(t.open_count(), 4);
        assert_eq!(t.open_from(2, File::Console, true), Some(4));
        assert_eq!(t.open_from(64, File::Console, true), None);
        assert_eq!(t.lowest_free(u32::MAX), None);
    }

    #[test]
    fn full_table_refuses() {
        let mut t = FdTable::new();
        for fd in 0..MAX_FDS as u32 {
            assert_eq!(t.open(File::Console), Some(fd));
        }
        assert_eq!(t.open(File::Console), None);
        assert!(!t.open_at(MAX_FDS as u32, File::Console));
        assert_eq!(t.replace(MAX_FDS as u32, File::Console, false), None);
        assert_eq!(t.drain().count(), MAX_FDS);
        assert_eq!(t.open_count(), 0);
    }

    #[test]
    fn close_on_exec_is_per_descriptor_and_replace_hands_back_the_old_file() {
        let mut t = FdTable::new();
        assert_eq!(t.open_from(0, File::PipeRead(pipe(1)), true), Some(0));
        assert_eq!(t.cloexec(0), Some(true));
        assert_eq!(t.replace(5, File::PipeRead(pipe(1)), false), Some(None));
        assert_eq!(t.cloexec(5), Some(false));
        assert_eq!(
            t.replace(0, File::Console, false),
            Some(Some(File::PipeRead(pipe(1))))
        );
        assert_eq!(t.cloexec(0), Some(false), "the new descriptor's own flag");
        assert!(t.set_cloexec(5, true));
        assert_eq!(t.cloexec(5), Some(true));
        assert!(!t.set_cloexec(6, true));
        assert!(!t.set_cloexec(u64::MAX, true));
        assert_eq!(t.cloexec(6), None);
        t.set_console_flags(u32::MAX);
        assert_eq!(t.console_flags(), SETFL_FLAGS, "only the settable ones");
    }

    #[test]
    fn pipe_sizes_round_as_linux_does() {
        let cases = [
            (0, 4096),
            (1, 4096),
            (4096, 4096),
            (4097, 8192),
            (65535, 65536),
            (1 << 20, 1 << 20),
            ((1 << 20) + 1, 2 << 20),
            (1 << 31, 1 << 31),
            ((1 << 31) + 1, 0),
            (u32::MAX, 0),
        ];
        for (asked, got) in cases {
            assert_eq!(round_pipe_size(asked), got, "{asked}");
        }
    }
}
