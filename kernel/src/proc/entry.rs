//! A new program's initial stack, as the SysV x86_64 ABI and Linux lay it
//! out: `rsp` points at `argc`, then come the `argv` pointers and a null,
//! the `envp` pointers and a null, and the auxiliary vector, which ends
//! with `AT_NULL`. The strings and the 16 random bytes `AT_RANDOM` points
//! at lie above, near the top of the stack.
//!
//! [`build`] makes the bytes and the stack pointer without touching any
//! memory, so the layout is tested on the host; the caller copies the bytes
//! into the new stack.

use alloc::vec::Vec;

use abi::Errno;

/// Auxiliary-vector keys (Linux's `AT_*`).
pub mod at {
    pub const NULL: u64 = 0;
    pub const PHDR: u64 = 3;
    pub const PHENT: u64 = 4;
    pub const PHNUM: u64 = 5;
    pub const PAGESZ: u64 = 6;
    pub const BASE: u64 = 7;
    pub const FLAGS: u64 = 8;
    pub const ENTRY: u64 = 9;
    pub const UID: u64 = 11;
    pub const EUID: u64 = 12;
    pub const GID: u64 = 13;
    pub const EGID: u64 = 14;
    pub const CLKTCK: u64 = 17;
    pub const SECURE: u64 = 23;
    pub const RANDOM: u64 = 25;
    pub const EXECFN: u64 = 31;
}

/// Bytes the strings (and their pointers) may take: Linux's bound, a
/// quarter of its default stack limit (the stack region grows to fit
/// them, as Linux's does); more is `E2BIG`.
pub const MAX_ARG_BYTES: usize = abi::exec::ARG_LIMIT;

/// What the loader knows that the auxiliary vector passes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    pub entry: u64,
    /// Where the program headers are in memory (0 if not loaded).
    pub phdr: u64,
    pub phnum: u64,
    /// Timer ticks per second, for `AT_CLKTCK`.
    pub clock_ticks: u64,
}

/// The initial stack of a program: `bytes` go at `[rsp, top)`.
#[derive(Debug)]
pub struct Stack {
    pub rsp: u64,
    pub bytes: Vec<u8>,
}

/// Lays out the stack that ends at `top` (16-byte aligned) for a program
/// run as `argv` with environment `envp`. `E2BIG` if the strings do not
/// fit in [`MAX_ARG_BYTES`]; `ENOMEM` if the bytes cannot be allocated.
/// `execfn`, when given, is the path `execve` ran (`AT_EXECFN` points at
/// it, as on Linux); otherwise `AT_EXECFN` is `argv[0]`.
pub fn build<S: AsRef<[u8]>>(
    top: u64,
    argv: &[S],
    envp: &[S],
    execfn: Option<&[u8]>,
    image: Image,
    random: [u8; 16],
) -> Result<Stack, Errno> {
    let all = || argv.iter().chain(envp).map(|s| s.as_ref()).chain(execfn);
    let strings: usize = all().map(|s| s.len() + 1).sum();
    let pointers = (argv.len() + envp.len() + 2) * 8;
    if strings + pointers > MAX_ARG_BYTES {
        return Err(Errno::E2BIG);
    }
    // A C string cannot hold a NUL: the program would see it cut short.
    if all().any(|s| s.contains(&0)) {
        return Err(Errno::EINVAL);
    }
    // 15 entries and AT_NULL, two words each.
    let auxv_words = 2 * 16;
    // argc, argv + null, envp + null, auxv; then random bytes, strings.
    let table = 8 * (1 + argv.len() + 1 + envp.len() + 1 + auxv_words);
    let above = (16 + strings).next_multiple_of(16);
    // The table's start must be 16-byte aligned: rsp at argc.
    let total = (table + above).next_multiple_of(16);
    let rsp = top - total as u64;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(total).map_err(|_| Errno::ENOMEM)?;
    bytes.resize(total, 0);

    // The strings, from just above the random bytes upwards.
    let random_at = total - above;
    bytes[random_at..random_at + 16].copy_from_slice(&random);
    let mut at = random_at + 16;
    let mut place = |s: &[u8], bytes: &mut Vec<u8>| {
        let va = rsp + at as u64;
        bytes[at..at + s.len()].copy_from_slice(s);
        at += s.len() + 1;
        va
    };
    let mut words: Vec<u64> = Vec::new();
    words
        .try_reserve_exact(table / 8)
        .map_err(|_| Errno::ENOMEM)?;
    words.push(argv.len() as u64);
    let mut execfn_at = 0;
    for (i, arg) in argv.iter().enumerate() {
        let va = place(arg.as_ref(), &mut bytes);
        if i == 0 {
            execfn_at = va;
        }
        words.push(va);
    }
    words.push(0);
    for var in envp {
        let va = place(var.as_ref(), &mut bytes);
        words.push(va);
    }
    words.push(0);
    if let Some(path) = execfn {
        execfn_at = place(path, &mut bytes);
    }
    let auxv = [
        (at::PHDR, image.phdr),
        (at::PHENT, 56),
        (at::PHNUM, image.phnum),
        (at::PAGESZ, crate::mm::PAGE_SIZE),
        (at::BASE, 0),
        (at::FLAGS, 0),
        (at::ENTRY, image.entry),
        (at::UID, 0),
        (at::EUID, 0),
        (at::GID, 0),
        (at::EGID, 0),
        (at::CLKTCK, image.clock_ticks),
        (at::SECURE, 0),
        (at::RANDOM, rsp + random_at as u64),
        (at::EXECFN, execfn_at),
    ];
    for (key, value) in auxv {
        words.push(key);
        words.push(value);
    }
    words.push(at::NULL);
    words.push(0);
    for (i, w) in words.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    Ok(Stack { rsp, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: u64 = 0x7fff_0000;

    fn image() -> Image {
        Image {
            entry: 0x40_1000,
            phdr: 0x40_0040,
            phnum: 4,
            clock_ticks: 100,
        }
    }

    /// Reads what a program would, from the bytes placed at `rsp`.
    struct View<'a>(&'a Stack);

    impl View<'_> {
        fn word(&self, va: u64) -> u64 {
            let at = (va - self.0.rsp) as usize;
            u64::from_le_bytes(self.0.bytes[at..at + 8].try_into().unwrap())
        }

        fn string(&self, va: u64) -> &str {
            let at = (va - self.0.rsp) as usize;
            let len = self.0.bytes[at..].iter().position(|&b| b == 0).unwrap();
            core::str::from_utf8(&self.0.bytes[at..at + len]).unwrap()
        }

        /// (argv, envp, auxv) as a C start file walks them.
        fn walk(&self) -> (Vec<&str>, Vec<&str>, Vec<(u64, u64)>) {
            let mut va = self.0.rsp;
            let argc = self.word(va);
            va += 8;
            let argv: Vec<&str> = (0..argc)
                .map(|i| self.string(self.word(va + i * 8)))
                .collect();
            va += argc * 8;
            assert_eq!(self.word(va), 0, "argv ends with null");
            va += 8;
            let mut envp = Vec::new();
            while self.word(va) != 0 {
                envp.push(self.string(self.word(va)));
                va += 8;
            }
            va += 8;
            let mut auxv = Vec::new();
            loop {
                let (k, v) = (self.word(va), self.word(va + 8));
                va += 16;
                if k == at::NULL {
                    break;
                }
                auxv.push((k, v));
            }
            (argv, envp, auxv)
        }
    }

    #[test]
    fn a_c_start_file_finds_argv_envp_and_auxv() {
        let random = *b"0123456789abcdef";
        let s = build(
            TOP,
            &["prog", "a", "bb"],
            &["HOME=/"],
            None,
            image(),
            random,
        )
        .unwrap();
        assert_eq!(s.rsp % 16, 0, "rsp at argc must be 16-byte aligned");
        assert_eq!(s.rsp + s.bytes.len() as u64, TOP);
        let v = View(&s);
        let (argv, envp, auxv) = v.walk();
        assert_eq!(argv, ["prog", "a", "bb"]);
        assert_eq!(envp, ["HOME=/"]);
        let get = |k| auxv.iter().find(|(key, _)| *key == k).map(|&(_, v)| v);
        assert_eq!(get(at::PAGESZ), Some(4096));
        assert_eq!(get(at::ENTRY), Some(0x40_1000));
        assert_eq!(get(at::PHDR), Some(0x40_0040));
        assert_eq!(get(at::PHENT), Some(56));
        assert_eq!(get(at::PHNUM), Some(4));
        let rnd = get(at::RANDOM).unwrap();
        let at_rnd = (rnd - s.rsp) as usize;
        assert_eq!(&s.bytes[at_rnd..at_rnd + 16], &random);
        assert_eq!(v.string(get(at::EXECFN).unwrap()), "prog");
        // Every pointer lands inside the stack.
        for va in [rnd, get(at::EXECFN).unwrap()] {
            assert!((s.rsp..TOP).contains(&va));
        }
    }

    #[test]
    fn execve_s_path_is_at_execfn() {
        let path = b"/bin/prog".as_slice();
        let s = build(TOP, &["prog"], &["A=1"], Some(path), image(), [0; 16]).unwrap();
        let v = View(&s);
        let (argv, envp, auxv) = v.walk();
        assert_eq!((argv, envp), (vec!["prog"], vec!["A=1"]));
        let execfn = auxv.iter().find(|(k, _)| *k == at::EXECFN).unwrap().1;
        assert_eq!(v.string(execfn), "/bin/prog");
        assert!((s.rsp..TOP).contains(&execfn));
    }

    #[test]
    fn empty_lists_and_alignment_for_every_length() {
        for n in 0..40 {
            let arg = "x".repeat(n);
            let s = build(TOP, &["p", &arg], &[], None, image(), [0; 16]).unwrap();
            assert_eq!(s.rsp % 16, 0, "length {n}");
            let view = View(&s);
            let (argv, envp, _) = view.walk();
            assert_eq!(argv, ["p", arg.as_str()]);
            assert!(envp.is_empty());
        }
        let s = build::<&str>(TOP, &[], &[], None, image(), [0; 16]).unwrap();
        let view = View(&s);
        assert_eq!(view.walk().0.len(), 0);
    }

    #[test]
    fn too_much_is_e2big_and_nul_bytes_einval() {
        let big = "y".repeat(MAX_ARG_BYTES);
        assert_eq!(
            build(TOP, &["p", &big], &[], None, image(), [0; 16]).err(),
            Some(Errno::E2BIG)
        );
        assert_eq!(
            build(TOP, &["p\0q"], &[], None, image(), [0; 16]).err(),
            Some(Errno::EINVAL)
        );
    }
}
