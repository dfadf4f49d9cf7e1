//! Checked access to user memory.
//!
//! A system call hands the kernel pointers that the user chose: they may be
//! unmapped, point into the kernel half, wrap around the top of the address
//! space, or name pages the user may read but not write. None of that may
//! fault the kernel. So the kernel never dereferences a user pointer: it
//! finds each page through the user's page tables in software and copies
//! through [`PhysMem`] at the physical addresses it finds. A bad pointer
//! then becomes `EFAULT` instead of a page fault, and the same code runs
//! unchanged in host tests over simulated memory.
//!
//! A page that is not present yet is faulted in first, through the same
//! path as a user's fault ([`crate::mm::fault::handle`]): a `read` into a
//! buffer nobody touched, or a `write` from a page never faulted, works as
//! on Linux, and an address in no region, or in one without the right, is
//! still `EFAULT`. A fault that finds no memory is `EFAULT` too, and the
//! space remembers it (`UserSpace::take_oom`) so that the process model
//! ends the process. Each page used gets its accessed bit, and its dirty
//! bit when written, as the MMU would set them ([`PageTable::touch`]).
//!
//! The rules, checked for every byte of a range:
//!
//! * the range is inside the user half (`end <= abi::USER_END`) and does
//!   not wrap ([`check_user_range`]); an empty range is fine anywhere;
//! * its page is (or becomes) mapped by a present leaf with `USER` set; a
//!   kernel mapping never qualifies, even in the user half;
//! * for writes, the leaf is also `WRITABLE`.
//!
//! A copy to user memory checks every page before it writes any byte, so a
//! failed copy has changed nothing (but the pages it faulted in). The
//! tables must not change between the check and the copy: the caller holds
//! whatever lock guards the address space, as it must for the walk anyway.
//!
//! [`UserMem`] is what a copy walks: [`Faulting`] (a process's space,
//! faulting pages in) or [`Strict`] (bare tables, nothing faulted in).

use crate::mm::Pfn;
use crate::mm::fault::{Access, Fault, Outcome};
use crate::mm::paging::PageTable;
use crate::mm::phys::PhysMem;
use crate::mm::pte::{LeafFlags, PteFormat};
use crate::mm::region::VmFlags;
use crate::task::aspace::{Alloc, UserSpace};
use abi::{Errno, USER_END};

/// What a copy does with a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Read,
    Write,
    /// The kernel filling a page it made for the user, writable by the
    /// user or not (the program loader, the initial stack).
    Fill,
}

/// User memory as a copy reaches it: page by page.
pub trait UserMem {
    type Phys: PhysMem;

    fn phys(&self) -> &Self::Phys;

    /// The physical address of the byte at `va` (a user address), and
    /// how many bytes of its page follow it, once the page allows `what`;
    /// `EFAULT` when it cannot.
    fn locate(&mut self, va: u64, what: Use) -> Result<(u64, u64), Errno>;

    /// Whether every byte of `[va, va + len)` (a checked user range)
    /// could be used for a read, or a write, changing nothing.
    fn check(&self, va: u64, len: u64, write: bool) -> Result<(), Errno>;
}

/// Bare page tables: only pages present with the rights count.
pub struct Strict<'a, 'm, F: PteFormat, M: PhysMem> {
    pub pt: &'a PageTable<'m, F, M>,
    pub mem: &'a M,
}

impl<F: PteFormat, M: PhysMem> UserMem for Strict<'_, '_, F, M> {
    type Phys = M;

    fn phys(&self) -> &M {
        self.mem
    }

    fn locate(&mut self, va: u64, what: Use) -> Result<(u64, u64), Errno> {
        leaf_for(self.pt, va, need(what))
    }

    fn check(&self, va: u64, len: u64, write: bool) -> Result<(), Errno> {
        let need = need(if write { Use::Write } else { Use::Read });
        let end = va + len;
        let mut at = va;
        while at < end {
            let (_, left) = leaf_for(self.pt, at, need)?;
            at = at.saturating_add(left);
        }
        Ok(())
    }
}

/// A process's space: pages not present are faulted in.
pub struct Faulting<'a, 'm, F: PteFormat, M: PhysMem> {
    pub space: &'a mut UserSpace<'m, F, M>,
    pub alloc: Alloc<'a>,
}

impl<F: PteFormat, M: PhysMem> UserMem for Faulting<'_, '_, F, M> {
    type Phys = M;

    fn phys(&self) -> &M {
        self.space.phys()
    }

    fn locate(&mut self, va: u64, what: Use) -> Result<(u64, u64), Errno> {
        // A fault resolves the page; a second one may be needed (the zero
        // page mapped for a fill, then replaced), never a third.
        for _ in 0..3 {
            if let Ok(found) = self.present(va, what) {
                let pt = self.space.page_table();
                let _ = pt.touch(va, what != Use::Read);
                return Ok(found);
            }
            self.fault_in(va, what)?;
        }
        Err(Errno::EFAULT)
    }

    fn check(&self, va: u64, len: u64, write: bool) -> Result<(), Errno> {
        let end = va + len;
        let mut at = va;
        while at < end {
            let (index, _) = self.space.region_for(at).ok_or(Errno::EFAULT)?;
            let r = self.space.regions().get(index).ok_or(Errno::EFAULT)?;
            let allowed = if write {
                r.flags.contains(VmFlags::WRITE)
            } else {
                r.flags.accessible()
            };
            if !allowed {
                return Err(Errno::EFAULT);
            }
            at = r.end;
        }
        Ok(())
    }
}

impl<F: PteFormat, M: PhysMem> Faulting<'_, '_, F, M> {
    /// The page as it is, if it allows `what` already. A fill needs a
    /// frame of the space's own: never the zero page.
    fn present(&self, va: u64, what: Use) -> Result<(u64, u64), Errno> {
        let found = leaf_for(self.space.page_table(), va, need(what))?;
        if what == Use::Fill && Pfn::containing(found.0) == self.space.zero_page() {
            return Err(Errno::EFAULT);
        }
        Ok(found)
    }

    /// The fault a user's access would take, resolved the same way; a
    /// fill makes a frame of its own in any region that has rights.
    fn fault_in(&mut self, va: u64, what: Use) -> Result<(), Errno> {
        if what == Use::Fill {
            let (index, _) = self.space.region_for(va).ok_or(Errno::EFAULT)?;
            return match self.space.populate_page(self.alloc, index, va, true) {
                Ok(()) => Ok(()),
                Err(_) => {
                    self.space.note_oom();
                    Err(Errno::EFAULT)
                }
            };
        }
        let access = Access {
            write: what == Use::Write,
            exec: false,
            present: self.space.user_present(va).is_some(),
        };
        match crate::mm::fault::handle(self.space, self.alloc, Fault { addr: va, access }) {
            Outcome::Resolved => Ok(()),
            Outcome::Signal { .. } => Err(Errno::EFAULT),
            Outcome::OutOfMemory => {
                self.space.note_oom();
                Err(Errno::EFAULT)
            }
        }
    }
}

/// The leaf flags a use needs.
fn need(what: Use) -> LeafFlags {
    match what {
        Use::Read | Use::Fill => LeafFlags::USER,
        Use::Write => LeafFlags::USER | LeafFlags::WRITABLE,
    }
}

/// The physical address of `va` and the bytes left in its page, if a
/// present leaf with `need` maps it.
fn leaf_for<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    va: u64,
    need: LeafFlags,
) -> Result<(u64, u64), Errno> {
    let (pa, flags, size) = pt.translate(va).ok_or(Errno::EFAULT)?;
    if !flags.contains(need) {
        return Err(Errno::EFAULT);
    }
    Ok((pa, size.bytes() - (va & (size.bytes() - 1))))
}

/// Checks that `[va, va + len)` lies in the user half: it does not wrap and
/// ends at or below [`USER_END`]. Such a range is canonical, because the
/// user half is the bottom of the canonical lower half. An empty range is
/// accepted at any address, since it touches nothing.
pub fn check_user_range(va: u64, len: u64) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    match va.checked_add(len) {
        Some(end) if end <= USER_END => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// Checks, without copying, that every byte of `[va, va + len)` is user
/// memory the user may read, or also write when `write` is set. For a
/// system call that validates a buffer before it acts; the copy itself
/// checks again.
pub fn check_mapped(u: &impl UserMem, va: u64, len: u64, write: bool) -> Result<(), Errno> {
    check_user_range(va, len)?;
    if len == 0 {
        return Ok(());
    }
    u.check(va, len, write)
}

/// Copies `buf.len()` bytes from user address `va` into `buf`.
///
/// On `EFAULT` the contents of `buf` are unspecified (a prefix may have
/// been copied); nothing else has changed.
pub fn copy_from_user(u: &mut impl UserMem, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
    check_user_range(va, buf.len() as u64)?;
    let mut at = 0;
    while at < buf.len() {
        let (pa, left) = u.locate(va + at as u64, Use::Read)?;
        let n = piece(buf.len() - at, left);
        u.phys().read_bytes(pa, &mut buf[at..at + n]);
        at += n;
    }
    Ok(())
}

/// Copies `data` to user address `va`, which must be writable by the user.
/// Every page is checked before the first byte is written, so on `EFAULT`
/// user memory is unchanged.
pub fn copy_to_user(u: &mut impl UserMem, va: u64, data: &[u8]) -> Result<(), Errno> {
    copy_out(u, va, data, Use::Write)
}

/// Like [`copy_to_user`], but into any user page, writable or not. For the
/// kernel filling pages it has just mapped for a user, such as the program
/// loader writing read-only text. Kernel pages are still refused.
pub fn fill_user(u: &mut impl UserMem, va: u64, data: &[u8]) -> Result<(), Errno> {
    copy_out(u, va, data, Use::Fill)
}

/// Reads a little-endian `u64` at user address `va` (any alignment).
pub fn read_user_u64(u: &mut impl UserMem, va: u64) -> Result<u64, Errno> {
    let mut bytes = [0; 8];
    copy_from_user(u, va, &mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Reads a little-endian `u32` at user address `va` (any alignment).
pub fn read_user_u32(u: &mut impl UserMem, va: u64) -> Result<u32, Errno> {
    let mut bytes = [0; 4];
    copy_from_user(u, va, &mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

/// Writes `value` little-endian at user address `va` (any alignment).
pub fn write_user_u64(u: &mut impl UserMem, va: u64, value: u64) -> Result<(), Errno> {
    copy_to_user(u, va, &value.to_le_bytes())
}

/// How much of a copy's `rest` the page's `left` bytes take.
fn piece(rest: usize, left: u64) -> usize {
    rest.min(usize::try_from(left).unwrap_or(usize::MAX))
}

/// Makes every page of the destination allow `what`, then copies.
fn copy_out(u: &mut impl UserMem, va: u64, data: &[u8], what: Use) -> Result<(), Errno> {
    check_user_range(va, data.len() as u64)?;
    // First pass: only look (faulting in), so that a bad page fails
    // before any write. A range inside one page (most copies) is then
    // written from there, without walking the tables again.
    let mut first = (0, 0);
    let mut at = 0;
    while at < data.len() {
        let (pa, left) = u.locate(va + at as u64, what)?;
        let n = piece(data.len() - at, left);
        if at == 0 {
            first = (pa, n);
        }
        at += n;
    }
    if first.1 == data.len() && !data.is_empty() {
        u.phys().write_bytes(first.0, data);
        return Ok(());
    }
    let mut at = 0;
    while at < data.len() {
        let (pa, left) = u.locate(va + at as u64, what)?;
        let n = piece(data.len() - at, left);
        u.phys().write_bytes(pa, &data[at..at + n]);
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::Pfn;
    use crate::mm::paging::{PageSize, SimTableAlloc};
    use crate::mm::phys::SimMemory;
    use crate::mm::pte::SimPte;
    use alloc::vec;
    use alloc::vec::Vec;

    type Table<'m> = PageTable<'m, SimPte, SimMemory>;

    const URW: LeafFlags = LeafFlags::USER.union(LeafFlags::WRITABLE);
    const MIB2: u64 = 2 << 20;

    /// The test address space, frames chosen so that neighbouring pages are
    /// never physically adjacent (a copy that ignored the tables would be
    /// caught):
    ///
    /// | va                    | frame      | flags            |
    /// |-----------------------|------------|------------------|
    /// | 0x10_0000             | pfn 0x50   | user rw          |
    /// | 0x10_1000             | pfn 0x30   | user rw          |
    /// | 0x10_2000             | pfn 0x70   | user read-only   |
    /// | 0x10_3000             | —          | unmapped         |
    /// | 0x10_4000             | pfn 0x90   | kernel rw (no USER) |
    /// | 0x1f_f000             | pfn 0x20   | user rw          |
    /// | 0x20_0000 (2 MiB)     | pfn 0x400  | user rw          |
    /// | USER_END - 0x1000     | pfn 0x60   | user rw          |
    struct Setup {
        mem: SimMemory,
        alloc: SimTableAlloc,
        root: Pfn,
    }

    const RW0: u64 = 0x10_0000;
    const RW1: u64 = 0x10_1000;
    const RO: u64 = 0x10_2000;
    const HOLE: u64 = 0x10_3000;
    const KERN: u64 = 0x10_4000;
    const BEFORE_HUGE: u64 = 0x1f_f000;
    const HUGE: u64 = 0x20_0000;
    const TOP: u64 = USER_END - 0x1000;

    fn setup() -> Setup {
        let mem = SimMemory::new();
        let alloc = SimTableAlloc::new(Pfn(0x10_0000));
        let mut pt = Table::new(&mem, &alloc).expect("root");
        let pages = [
            (RW0, 0x50, URW),
            (RW1, 0x30, URW),
            (RO, 0x70, LeafFlags::USER),
            (KERN, 0x90, LeafFlags::WRITABLE),
            (BEFORE_HUGE, 0x20, URW),
            (TOP, 0x60, URW),
        ];
        for (va, pfn, flags) in pages {
            pt.map(va, Pfn(pfn), PageSize::Size4K, flags, &alloc)
                .expect("map");
        }
        pt.map(HUGE, Pfn(0x400), PageSize::Size2M, URW, &alloc)
            .expect("map huge");
        let root = pt.root();
        Setup { mem, alloc, root }
    }

    impl Setup {
        fn pt(&self) -> Table<'_> {
            Table::from_root(&self.mem, self.root)
        }

        fn read(&self, va: u64, len: usize) -> Result<Vec<u8>, Errno> {
            let mut buf = vec![0; len];
            copy_from_user(
                &mut Strict {
                    pt: &self.pt(),
                    mem: &self.mem,
                },
                va,
                &mut buf,
            )
            .map(|()| buf)
        }

        fn write(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
            copy_to_user(
                &mut Strict {
                    pt: &self.pt(),
                    mem: &self.mem,
                },
                va,
                data,
            )
        }

        fn phys(&self, pa: u64, len: usize) -> Vec<u8> {
            let mut buf = vec![0; len];
            self.mem.read_bytes(pa, &mut buf);
            buf
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn user_range_bounds() {
        let ok = [
            (0, 0),
            (0, USER_END),
            (USER_END - 8, 8),
            (u64::MAX, 0),
            (0xffff_8000_0000_0000, 0),
            (0x1234, 1),
        ];
        for (va, len) in ok {
            assert_eq!(check_user_range(va, len), Ok(()), "{va:#x}+{len:#x}");
        }
        let bad = [
            (USER_END - 8, 9),
            (USER_END, 1),
            (1, USER_END),
            (0xffff_8000_0000_0000, 8),
            (0x0000_8000_0000_1000, 8),
            (u64::MAX, 1),
            (u64::MAX - 4, 10),
            (8, u64::MAX),
        ];
        for (va, len) in bad {
            let got = check_user_range(va, len);
            assert_eq!(got, Err(Errno::EFAULT), "{va:#x}+{len:#x}");
        }
    }

    #[test]
    fn round_trip_across_pages_lands_in_the_right_frames() {
        let s = setup();
        let data = pattern(0x1800, 7);
        let va = RW0 + 0x400;
        s.write(va, &data).expect("write");
        assert_eq!(s.read(va, data.len()), Ok(data.clone()));
        // 0xc00 bytes in the first frame, the rest at the start of the second.
        assert_eq!(s.phys(Pfn(0x50).addr() + 0x400, 0xc00), data[..0xc00]);
        assert_eq!(s.phys(Pfn(0x30).addr(), 0xc00), data[0xc00..]);
        // Neighbours untouched.
        assert_eq!(s.phys(Pfn(0x50).addr(), 0x400), vec![0; 0x400]);
        assert_eq!(s.phys(Pfn(0x51).addr(), 8), vec![0; 8]);
    }

    #[test]
    fn copies_cross_into_and_inside_huge_pages() {
        let s = setup();
        let data = pattern(0x3000, 1);
        let va = HUGE - 0x1000;
        s.write(va, &data).expect("write across 4K -> 2M");
        assert_eq!(s.read(va, data.len()), Ok(data.clone()));
        assert_eq!(s.phys(Pfn(0x20).addr(), 0x1000), data[..0x1000]);
        assert_eq!(s.phys(Pfn(0x400).addr(), 0x2000), data[0x1000..]);
        // Deep inside the huge page, at an odd offset.
        let off = MIB2 - 0x1234;
        s.write(HUGE + off, b"huge").expect("write");
        assert_eq!(s.phys(Pfn(0x400).addr() + off, 4), b"huge");
        // Running off its end reaches an unmapped page.
        assert_eq!(s.read(HUGE + MIB2 - 2, 4), Err(Errno::EFAULT));
    }

    #[test]
    fn reads_refuse_unmapped_and_kernel_pages() {
        let s = setup();
        assert_eq!(s.read(RO, 16).map(|b| b.len()), Ok(16), "read-only reads");
        assert_eq!(s.read(HOLE, 1), Err(Errno::EFAULT));
        assert_eq!(s.read(RO + 0xff0, 0x20), Err(Errno::EFAULT), "into hole");
        assert_eq!(s.read(KERN, 8), Err(Errno::EFAULT), "kernel page");
        assert_eq!(s.read(0, 8), Err(Errno::EFAULT), "null");
        // The top user page is fine; one byte more is the kernel half.
        assert_eq!(s.read(TOP, 0x1000).map(|b| b.len()), Ok(0x1000));
        assert_eq!(s.read(TOP, 0x1001), Err(Errno::EFAULT));
        assert_eq!(s.read(u64::MAX - 3, 8), Err(Errno::EFAULT), "wraps");
    }

    #[test]
    fn failed_write_changes_nothing() {
        let s = setup();
        let writes = s.mem.writes();
        // Starts on two writable pages and ends on a read-only one.
        let data = pattern(0x2100, 3);
        assert_eq!(s.write(RW0, &data), Err(Errno::EFAULT));
        assert_eq!(s.write(RW1 + 0xff0, &data[..0x20]), Err(Errno::EFAULT));
        assert_eq!(s.write(KERN, &data[..8]), Err(Errno::EFAULT));
        assert_eq!(s.write(HOLE - 4, &data[..8]), Err(Errno::EFAULT));
        assert_eq!(s.write(TOP + 0xffc, &data[..8]), Err(Errno::EFAULT));
        assert_eq!(s.mem.writes(), writes, "a refused copy stored something");
        assert_eq!(s.phys(Pfn(0x50).addr(), 16), vec![0; 16]);
    }

    #[test]
    fn check_mapped_follows_the_same_rules() {
        let s = setup();
        let pt = s.pt();
        let reads = s.mem.reads();
        for write in [false, true] {
            assert_eq!(
                check_mapped(
                    &Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    RW0 + 8,
                    0x1ff8,
                    write
                ),
                Ok(())
            );
            assert_eq!(
                check_mapped(
                    &Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    HUGE - 8,
                    MIB2,
                    write
                ),
                Ok(())
            );
            assert_eq!(
                check_mapped(
                    &Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    HOLE,
                    0,
                    write
                ),
                Ok(())
            );
            assert_eq!(
                check_mapped(
                    &Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    RW1,
                    0x1001,
                    write
                )
                .is_ok(),
                !write
            );
            for (va, len) in [(HOLE - 1, 2), (KERN, 1), (TOP, 0x1001), (u64::MAX, 1)] {
                let got = check_mapped(
                    &Strict {
                        pt: &pt,
                        mem: &s.mem,
                    },
                    va,
                    len,
                    write,
                );
                assert_eq!(got, Err(Errno::EFAULT), "{va:#x}+{len:#x}");
            }
        }
        assert!(s.mem.reads() > reads, "it walked the tables");
    }

    #[test]
    fn fill_user_writes_read_only_pages_but_not_kernel_ones() {
        let s = setup();
        let pt = s.pt();
        assert_eq!(
            fill_user(
                &mut Strict {
                    pt: &pt,
                    mem: &s.mem
                },
                RO + 8,
                b"text"
            ),
            Ok(())
        );
        assert_eq!(s.phys(Pfn(0x70).addr() + 8, 4), b"text");
        assert_eq!(
            fill_user(
                &mut Strict {
                    pt: &pt,
                    mem: &s.mem
                },
                KERN,
                b"x"
            ),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            fill_user(
                &mut Strict {
                    pt: &pt,
                    mem: &s.mem
                },
                USER_END,
                b"x"
            ),
            Err(Errno::EFAULT)
        );
        assert_eq!(s.phys(Pfn(0x90).addr(), 1), [0]);
    }

    #[test]
    fn empty_copies_succeed_anywhere() {
        let s = setup();
        let pt = s.pt();
        for va in [0, HOLE, KERN, USER_END, 0xffff_ffff_8000_0000, u64::MAX] {
            assert_eq!(
                copy_from_user(
                    &mut Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    va,
                    &mut []
                ),
                Ok(())
            );
            assert_eq!(
                copy_to_user(
                    &mut Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    va,
                    &[]
                ),
                Ok(())
            );
        }
    }

    #[test]
    fn word_helpers() {
        let s = setup();
        let pt = s.pt();
        let v = 0x1122_3344_5566_7788;
        // Aligned, and straddling two pages.
        for va in [RW0 + 8, RW1 - 3] {
            assert_eq!(
                write_user_u64(
                    &mut Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    va,
                    v
                ),
                Ok(())
            );
            assert_eq!(
                read_user_u64(
                    &mut Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    va
                ),
                Ok(v)
            );
            assert_eq!(
                read_user_u32(
                    &mut Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    va
                ),
                Ok(0x5566_7788)
            );
            assert_eq!(
                read_user_u32(
                    &mut Strict {
                        pt: &pt,
                        mem: &s.mem
                    },
                    va + 4
                ),
                Ok(0x1122_3344)
            );
        }
        assert_eq!(
            read_user_u64(
                &mut Strict {
                    pt: &pt,
                    mem: &s.mem
                },
                RO
            ),
            Ok(0)
        );
        assert_eq!(
            write_user_u64(
                &mut Strict {
                    pt: &pt,
                    mem: &s.mem
                },
                RO,
                v
            ),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            read_user_u64(
                &mut Strict {
                    pt: &pt,
                    mem: &s.mem
                },
                HOLE - 4
            ),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            read_user_u32(
                &mut Strict {
                    pt: &pt,
                    mem: &s.mem
                },
                KERN
            ),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            read_user_u64(
                &mut Strict {
                    pt: &pt,
                    mem: &s.mem
                },
                USER_END - 4
            ),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn malformed_entries_are_faults_not_panics() {
        let s = setup();
        // Junk in the root entry that covers the low user addresses.
        let slot = s.root.addr() + (RW0 >> 39 & 511) * 8;
        s.mem.write_u64(slot, 7 << 60);
        assert_eq!(s.read(RW0, 8), Err(Errno::EFAULT));
        assert_eq!(s.write(RW0, b"x"), Err(Errno::EFAULT));
        // The top page hangs off another root entry and still works.
        assert_eq!(s.read(TOP, 8).map(|b| b.len()), Ok(8));
        assert!(s.alloc.live() > 1);
    }
}
