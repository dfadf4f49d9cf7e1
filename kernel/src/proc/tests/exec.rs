//! execve and execveat on the host: errors in Linux's order with the
//! caller left as it was, and a new program that has nothing of the old
//! one but what Linux keeps.

use super::*;
use crate::mm::fault::Outcome;
use abi::mman::*;

const PATH: u64 = DATA + 0x2000;
const ARGV: u64 = DATA + 0x200;
const ENVP: u64 = DATA + 0x300;
const STRS: u64 = DATA + 0x3000;
const BIG: u64 = DATA + 0x1_0000;

fn err(e: Errno) -> i64 {
    -(e as i64)
}

impl User {
    /// Writes `path`, `argv` and `envp` as C strings and null-ended
    /// arrays into the data area; returns the three pointers.
    fn exec_args(&self, path: &[u8], argv: &[&str], envp: &[&str]) -> [u64; 3] {
        let mut p = path.to_vec();
        p.push(0);
        self.poke(PATH, &p);
        let mut at = STRS;
        for (array, list) in [(ARGV, argv), (ENVP, envp)] {
            let mut words = Vec::new();
            for s in list {
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                self.poke(at, &b);
                words.extend_from_slice(&at.to_le_bytes());
                at += b.len() as u64;
            }
            words.extend_from_slice(&0u64.to_le_bytes());
            self.poke(array, &words);
        }
        [PATH, ARGV, ENVP]
    }

    fn execve(&self, path: &[u8], argv: &[&str], envp: &[&str]) -> i64 {
        let [p, a, e] = self.exec_args(path, argv, envp);
        self.call(nr::EXECVE, &[p, a, e])
    }

    fn word(&self, va: u64) -> u64 {
        u64::from_le_bytes(self.peek(va, 8).try_into().unwrap())
    }

    fn c_string(&self, va: u64) -> String {
        let mut out = Vec::new();
        loop {
            let b = self.peek(va + out.len() as u64, 1)[0];
            if b == 0 {
                return String::from_utf8(out).unwrap();
            }
            out.push(b);
        }
    }
}

#[test]
fn errors_come_in_linux_s_order_and_leave_the_caller_as_it_was() {
    let w = World::new();
    let status = w.run_to_end(|u| {
        let keep = u.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        assert!(keep > 0);
        u.poke(keep as u64, b"still here");
        let [p, a, e] = u.exec_args(b"/bin/nope", &["x"], &[]);
        // The path is read first, then the arrays, and only then is the
        // program looked up.
        assert_eq!(u.call(nr::EXECVE, &[8, a, e]), err(Errno::EFAULT));
        assert_eq!(
            u.call(nr::EXECVE, &[p, 8, e]),
            err(Errno::EFAULT),
            "argv before ENOENT"
        );
        assert_eq!(
            u.call(nr::EXECVE, &[p, a, 0xffff_8000_0000_0000]),
            err(Errno::EFAULT)
        );
        assert_eq!(u.call(nr::EXECVE, &[p, a, e]), err(Errno::ENOENT));
        assert_eq!(u.execve(b"", &["x"], &[]), err(Errno::ENOENT));
        assert_eq!(u.execve(b"/bin", &["x"], &[]), err(Errno::EACCES));
        assert_eq!(u.execve(b"/", &["x"], &[]), err(Errno::EACCES));
        assert_eq!(u.execve(b"/bin/test/", &["x"], &[]), err(Errno::ENOTDIR));
        assert_eq!(u.execve(b"/bin/test/x", &["x"], &[]), err(Errno::ENOTDIR));
        assert_eq!(u.execve(b"/usr/bin/test", &["x"], &[]), err(Errno::ENOENT));
        assert_eq!(u.execve(b"/bin/junk", &["x"], &[]), err(Errno::ENOEXEC));
        let long = vec![b'a'; 256];
        let mut path = b"/bin/".to_vec();
        path.extend_from_slice(&long);
        assert_eq!(u.execve(&path, &["x"], &[]), err(Errno::ENAMETOOLONG));
        // A path of PATH_MAX bytes without its NUL.
        u.poke(BIG, &vec![b'/'; 4096]);
        u.poke(BIG + 4096, &[0]);
        assert_eq!(u.call(nr::EXECVE, &[BIG, a, e]), err(Errno::ENAMETOOLONG));
        // One argument of MAX_ARG_STRLEN bytes besides its NUL is too long,
        // and wins over the missing program.
        u.poke(BIG, &vec![b'y'; 128 * 1024]);
        u.poke(BIG + 128 * 1024, &[0]);
        u.poke(ARGV, &[BIG.to_le_bytes(), 0u64.to_le_bytes()].concat());
        u.poke(PATH, b"/bin/nope\0");
        assert_eq!(u.call(nr::EXECVE, &[PATH, ARGV, 0]), err(Errno::E2BIG));
        // execveat: flags after the strings, then the descriptor.
        let [p, a, e] = u.exec_args(b"test", &["x"], &[]);
        let (r, _) = u.pipe();
        let at = |fd: u64, path: u64, flags: u64| u.call(nr::EXECVEAT, &[fd, path, a, e, flags]);
        assert_eq!(at(abi::exec::AT_FDCWD as u64, p, 0x2), err(Errno::EINVAL));
        assert_eq!(at(r, p, 0), err(Errno::ENOTDIR));
        assert_eq!(at(99, p, 0), err(Errno::EBADF));
        u.poke(PATH, &[0]);
        assert_eq!(at(r, p, 0), err(Errno::ENOENT));
        assert_eq!(
            at(r, p, abi::exec::AT_EMPTY_PATH as u64),
            err(Errno::EACCES)
        );
        assert_eq!(u.peek(keep as u64, 10), b"still here");
        7
    });
    assert_eq!(status, 7);
    w.assert_quiet();
}

#[test]
fn the_new_program_keeps_only_what_linux_keeps() {
    let w = World::new();
    let frames = w.free_frames();
    let status = w.run_to_end(|u| {
        let old = u.mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
        u.poke(old as u64, b"old");
        // A caught signal, an ignored one; a close-on-exec pipe and a
        // plain one.
        assert_eq!(
            u.sigaction(abi::sig::SIGUSR1, 0x40_0008, abi::sig::SA_RESTORER, 0),
            0
        );
        assert_eq!(u.sigaction(abi::sig::SIGUSR2, abi::sig::SIG_IGN, 0, 0), 0);
        let (r, w1) = u.pipe2(abi::o::CLOEXEC);
        let (r2, _) = u.pipe();
        assert_eq!(
            u.execve(b"/bin/../bin/./test", &["test", "one"], &["K=V"]),
            0
        );
        let regs = u.last.get();
        assert_eq!(regs.rip, TEXT, "the new program starts at its entry");
        assert_eq!(
            (regs.rbx, regs.r12, regs.rdi),
            (0, 0, 0),
            "registers start at 0"
        );
        let rsp = regs.rsp;
        assert_eq!(rsp % 16, 0);
        assert_eq!(u.word(rsp), 2, "argc");
        assert_eq!(u.c_string(u.word(rsp + 8)), "test");
        assert_eq!(u.c_string(u.word(rsp + 16)), "one");
        assert_eq!(u.word(rsp + 24), 0);
        assert_eq!(u.c_string(u.word(rsp + 32)), "K=V");
        // The old mapping is gone with the old space.
        assert!(matches!(u.load(old as u64), Err(Outcome::Signal { .. })));
        let getfd = |fd: u64| u.call(nr::FCNTL, &[fd, abi::fcntl::F_GETFD.into()]);
        assert_eq!(
            (getfd(r), getfd(w1)),
            (err(Errno::EBADF), err(Errno::EBADF))
        );
        assert_eq!(getfd(r2), 0, "a plain descriptor stays open");
        let old_act = DATA + 0x900;
        assert_eq!(
            u.call(nr::RT_SIGACTION, &[abi::sig::SIGUSR1.into(), 0, old_act, 8]),
            0
        );
        assert_eq!(
            u.peek(old_act, 32),
            [0u8; 32],
            "a caught signal is SIG_DFL again"
        );
        assert_eq!(
            u.call(nr::RT_SIGACTION, &[abi::sig::SIGUSR2.into(), 0, old_act, 8]),
            0
        );
        assert_eq!(
            u.word(old_act),
            abi::sig::SIG_IGN,
            "an ignored one stays ignored"
        );
        let name = u.sys.with_sched(|s| s.task(s.current()).map(|t| t.name));
        assert_eq!(
            name.map(|n| n.as_str().to_string()).as_deref(),
            Some("test")
        );
        5
    });
    assert_eq!(status, 5);
    assert_eq!(w.free_frames(), frames, "the old space or the new leaked");
    w.assert_quiet();
}

#[test]
fn exec_ends_the_other_threads_first() {
    let w = World::new();
    let frames = w.free_frames();
    let sleeper = w.thread(|u| {
        u.sleep(1_000_000_000_000);
        0
    });
    let status = w.run_to_end(move |u| {
        for _ in 0..3 {
            assert!(u.spawn_thread(sleeper, 0) > 0);
        }
        u.settle();
        assert_eq!(u.others().len(), 3);
        assert_eq!(u.execve(b"/bin/test", &["test"], &[]), 0);
        assert!(u.others().is_empty(), "threads left: {:?}", u.others());
        3
    });
    assert_eq!(status, 3);
    assert_eq!(w.free_frames(), frames);
    w.assert_quiet();
}
