//! The memory calls: `mmap`, `munmap`, `mprotect`, `brk`, `madvise`,
//! `mremap` (docs/abi.md). Each runs on the caller's address space under
//! the process lock, as its faults do (docs/locking.md); the space
//! (`task::aspace`) checks the arguments in Linux's order and does the
//! work.

use abi::Errno;

use super::{File, Machine, System};
use crate::task::aspace::{MapFile, MmapArgs};

type SysResult = Result<u64, Errno>;

impl<M: Machine> System<M> {
    /// `mmap(addr, len, prot, flags, fd, off)`: every argument is an
    /// `unsigned long` for Linux, but the descriptor, read as an
    /// `unsigned int`.
    pub(super) fn sys_mmap(
        &self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: u64,
        off: u64,
    ) -> SysResult {
        let alloc = self.alloc();
        self.with_current_process(|p| {
            let file = (flags & abi::mman::MAP_ANONYMOUS == 0).then(|| {
                match p.fds.get(u64::from(fd as u32)) {
                    None => MapFile::Closed,
                    Some(File::Console) => MapFile::Open {
                        read: true,
                        write: true,
                    },
                    Some(File::PipeRead(_)) => MapFile::Open {
                        read: true,
                        write: false,
                    },
                    Some(File::PipeWrite(_)) => MapFile::Open {
                        read: false,
                        write: true,
                    },
                }
            });
            let args = MmapArgs {
                addr,
                len,
                prot,
                flags,
                off,
            };
            p.space.mmap(alloc, args, file)
        })
    }

    pub(super) fn sys_munmap(&self, addr: u64, len: u64) -> SysResult {
        let alloc = self.alloc();
        self.with_current_process(|p| p.space.munmap(alloc, addr, len).map(|()| 0))
    }

    pub(super) fn sys_mprotect(&self, addr: u64, len: u64, prot: u64) -> SysResult {
        let alloc = self.alloc();
        self.with_current_process(|p| p.space.mprotect(alloc, addr, len, prot).map(|()| 0))
    }

    /// `brk(addr)` never fails: it returns the break, moved or not.
    pub(super) fn sys_brk(&self, addr: u64) -> SysResult {
        let alloc = self.alloc();
        self.with_current_process(|p| Ok(p.space.brk(alloc, addr)))
    }

    /// `madvise(addr, len, advice)`; the advice is an `int`.
    pub(super) fn sys_madvise(&self, addr: u64, len: u64, advice: i32) -> SysResult {
        let alloc = self.alloc();
        self.with_current_process(|p| p.space.madvise(alloc, addr, len, advice).map(|()| 0))
    }

    pub(super) fn sys_mremap(
        &self,
        addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> SysResult {
        let alloc = self.alloc();
        self.with_current_process(|p| {
            p.space
                .mremap(alloc, addr, old_len, new_len, flags, new_addr)
        })
    }
}
