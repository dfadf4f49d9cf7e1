//! User task groups: address space, file descriptors, pipes; loading a
//! program and tearing a group down.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use abi::Errno;
use arch::phys::DirectMap;
use arch::pte::X86Pte;
use kernel::mm::PAGE_SIZE;
use kernel::mm::phys::PhysMem;
use kernel::mm::pte::LeafFlags;
use kernel::task::aspace::UserSpace;
use kernel::task::elf;
use kernel::task::pipe::Pipe;
use kernel::task::sched::{Priority, QueueId, State, Tid};
use spin::Mutex;

use crate::memory::{self, FrameTables};
use crate::task::{self, Start};

static DIRECT_MAP: DirectMap = DirectMap;

/// An open file: the console or one end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    Console,
    PipeRead(u32),
    PipeWrite(u32),
}

/// Descriptors a group may hold open at once.
pub const MAX_FDS: usize = 64;

pub struct Group {
    pub space: UserSpace<'static, X86Pte, DirectMap>,
    pub fds: BTreeMap<u32, File>,
}

pub struct PipeObj {
    pub pipe: Pipe,
    /// Readers wait here for data or end of file.
    pub readable: QueueId,
    /// Writers wait here for room.
    pub writable: QueueId,
}

pub static GROUPS: Mutex<BTreeMap<u32, Group>> = Mutex::new(BTreeMap::new());
pub static PIPES: Mutex<BTreeMap<u32, PipeObj>> = Mutex::new(BTreeMap::new());
static NEXT_PIPE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// Runs `f` on the current task's group with interrupts off.
pub fn with_group<R>(f: impl FnOnce(&mut Group) -> Result<R, Errno>) -> Result<R, Errno> {
    arch::cpu::without_interrupts(|| {
        let pid = task::with_sched(|s| s.task(s.current()).map(|t| t.group));
        let mut groups = GROUPS.lock();
        match pid.and_then(|p| groups.get_mut(&p)) {
            Some(g) => f(g),
            None => Err(Errno::ESRCH),
        }
    })
}

/// Why a program could not be started.
#[derive(Debug)]
pub enum SpawnError {
    Elf(elf::ElfError),
    Load(Errno),
    Task(kernel::task::sched::SchedError),
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::Elf(e) => write!(f, "not a loadable program: {e}"),
            SpawnError::Load(e) => write!(f, "loading failed: {}", e.name()),
            SpawnError::Task(e) => write!(f, "no task: {e:?}"),
        }
    }
}

/// Loads `image` into a fresh address space and starts its main thread
/// with `args` (at most one page). Returns the tid, which is also the
/// group's id.
pub fn spawn_program(name: &str, image: &[u8], args: &str) -> Result<Tid, SpawnError> {
    let program = elf::parse(image).map_err(SpawnError::Elf)?;
    let kernel_root = memory::kernel_root();
    let frames = memory::frames();
    let mut space = UserSpace::new(&DIRECT_MAP, kernel_root, &FrameTables, &arch::paging::Tlb)
        .map_err(SpawnError::Load)?;
    let prepared = prepare(&program, image, args, &mut space);
    let entry = match prepared {
        Ok(entry) => entry,
        Err(e) => {
            space.destroy(frames, &FrameTables);
            return Err(SpawnError::Load(e));
        }
    };
    let args_len = args.len().min(PAGE_SIZE as usize) as u64;
    let start = Start::User {
        rip: entry,
        rsp: abi::USER_STACK_TOP,
        arg0: abi::USER_ARGS,
        arg1: args_len,
    };
    let root = space.root();
    arch::cpu::without_interrupts(|| {
        let tid = match task::spawn(name, None, Priority::NORMAL, start, Some(root)) {
            Ok(tid) => tid,
            Err(e) => {
                space.destroy(frames, &FrameTables);
                return Err(SpawnError::Task(e));
            }
        };
        let mut fds = BTreeMap::new();
        fds.insert(abi::STDOUT, File::Console);
        fds.insert(abi::STDERR, File::Console);
        let group = Group { space, fds };
        GROUPS.lock().insert(tid, group);
        Ok(tid)
    })
}

fn prepare(
    program: &elf::Program,
    image: &[u8],
    args: &str,
    space: &mut UserSpace<'static, X86Pte, DirectMap>,
) -> Result<u64, Errno> {
    let frames = memory::frames();
    let entry = elf::load(program, image, space, &DIRECT_MAP, frames, &FrameTables)?;
    let stack = abi::USER_STACK_TOP - abi::USER_STACK_SIZE;
    space.map_zeroed(
        stack,
        abi::USER_STACK_SIZE,
        LeafFlags::WRITABLE,
        frames,
        &FrameTables,
    )?;
    space.map_zeroed(
        abi::USER_ARGS,
        PAGE_SIZE,
        LeafFlags::empty(),
        frames,
        &FrameTables,
    )?;
    // The argument page is read-only to the program, so write it through
    // the direct map.
    let bytes = &args.as_bytes()[..args.len().min(PAGE_SIZE as usize)];
    let Some((pa, _, _)) = space.page_table().translate(abi::USER_ARGS) else {
        return Err(Errno::EFAULT);
    };
    DIRECT_MAP.write_bytes(pa, bytes);
    Ok(entry)
}

/// Creates a pipe in the current group; returns (read fd, write fd).
pub fn new_pipe() -> Result<(u32, u32), Errno> {
    arch::cpu::without_interrupts(|| {
        let id = NEXT_PIPE.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let fds = with_group(|g| {
            let r = free_fd(g)?;
            g.fds.insert(r, File::PipeRead(id));
            let w = match free_fd(g) {
                Ok(w) => w,
                Err(e) => {
                    g.fds.remove(&r);
                    return Err(e);
                }
            };
            g.fds.insert(w, File::PipeWrite(id));
            Ok((r, w))
        })?;
        let (readable, writable) = task::with_sched(|s| (s.new_queue(), s.new_queue()));
        PIPES.lock().insert(
            id,
            PipeObj {
                pipe: Pipe::new(),
                readable,
                writable,
            },
        );
        Ok(fds)
    })
}

fn free_fd(g: &Group) -> Result<u32, Errno> {
    if g.fds.len() >= MAX_FDS {
        return Err(Errno::EMFILE);
    }
    (0..)
        .find(|fd| !g.fds.contains_key(fd))
        .ok_or(Errno::EMFILE)
}

/// Drops one reference to a file; a pipe end's closing wakes the other side.
pub fn release(file: File) {
    let (id, reader) = match file {
        File::Console => return,
        File::PipeRead(id) => (id, true),
        File::PipeWrite(id) => (id, false),
    };
    let wake = arch::cpu::without_interrupts(|| {
        let mut pipes = PIPES.lock();
        let obj = pipes.get_mut(&id)?;
        if reader {
            obj.pipe.close_reader();
        } else {
            obj.pipe.close_writer();
        }
        let queues = (obj.readable, obj.writable);
        if obj.pipe.is_closed() {
            pipes.remove(&id);
            task::with_sched(|s| {
                s.free_queue(queues.0);
                s.free_queue(queues.1);
            });
            return None;
        }
        Some(queues)
    });
    if let Some((r, w)) = wake {
        task::wake_all(r);
        task::wake_all(w);
    }
}

/// Ends the current task's whole group (main-thread exit, fault, kill):
/// the other threads are killed, the current one exits with `status`.
pub fn exit_group(status: i64) -> ! {
    arch::cpu::disable_interrupts();
    let (me, pid) = task::with_sched(|s| {
        let me = s.current();
        (me, s.task(me).map(|t| t.group).unwrap_or(me))
    });
    kill_others(pid, me, status);
    task::exit_current(status)
}

fn kill_others(pid: u32, except: Tid, status: i64) {
    task::with_sched(|s| {
        let victims: Vec<Tid> = s
            .tasks()
            .filter(|t| t.group == pid && t.tid != except && !matches!(t.state, State::Exited(_)))
            .map(|t| t.tid)
            .collect();
        // Each exits by itself at its next boundary, releasing what its
        // kernel stack holds (a buffer, a half-done close) on the way.
        for t in victims {
            task::request_kill(s, t, status);
        }
    });
}

/// Whether group `pid`'s main thread has exited (or does not exist).
pub fn main_exited(pid: u32) -> bool {
    task::with_sched(
        |s| !matches!(s.task(pid).map(|t| t.state), Some(state) if !matches!(state, State::Exited(_))),
    )
}

/// Whether `pid` names a live or unreaped task group.
pub fn is_group(pid: u32) -> bool {
    arch::cpu::without_interrupts(|| GROUPS.lock().contains_key(&pid))
}

/// Kills group `pid` from outside (the `kill` command).
pub fn kill_group(pid: u32, status: i64) -> Result<(), Errno> {
    let exists = arch::cpu::without_interrupts(|| GROUPS.lock().contains_key(&pid));
    if !exists {
        return Err(Errno::ESRCH);
    }
    kill_others(pid, u32::MAX, status);
    Ok(())
}

/// Waits for group `pid`'s main thread, then reaps every thread of the
/// group, closes its files and frees its address space. Returns the exit
/// status of the main thread.
pub fn join_group(pid: u32) -> Result<i64, Errno> {
    let status = task::join(pid).map_err(|_| Errno::ESRCH)?;
    let threads: Vec<Tid> = task::with_sched(|s| {
        s.tasks()
            .filter(|t| t.group == pid)
            .map(|t| t.tid)
            .collect()
    });
    for t in threads {
        // The main thread's exit asked the others to die; they do so at
        // their next boundary, so wait for each before freeing anything.
        task::with_sched(|s| task::request_kill(s, t, status));
        let _ = task::join(t);
    }
    let group = arch::cpu::without_interrupts(|| GROUPS.lock().remove(&pid));
    if let Some(group) = group {
        for (_, file) in group.fds.iter() {
            release(*file);
        }
        group.space.destroy(memory::frames(), &FrameTables);
    }
    Ok(status)
}
