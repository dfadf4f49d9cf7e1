//! Checked access to user memory.
//!
//! A system call hands the kernel pointers that the user chose: they may be
//! unmapped, point into the kernel half, wrap around the top of the address
//! space, or name pages the user may read but not write. None of that may
//! fault the kernel. So the kernel never dereferences a user pointer: it
//! walks the user's page tables in software, one page at a time, and copies
//! through [`PhysMem`] at the physical addresses it finds. A bad pointer
//! then becomes `EFAULT` instead of a page fault, and the same code runs
//! unchanged in host tests over simulated memory.
//!
//! The rules, checked for every byte of a range:
//!
//! * the range is inside the user half (`end <= abi::USER_END`) and does
//!   not wrap ([`check_user_range`]); an empty range is fine anywhere;
//! * its page is mapped by a present leaf (4 KiB, 2 MiB or 1 GiB) with
//!   `USER` set; a kernel mapping never qualifies, even in the user half;
//! * for writes, the leaf is also `WRITABLE`.
//!
//! A copy to user memory checks every page before it writes any byte, so a
//! failed copy has changed nothing. The tables must not change between the
//! check and the copy: the caller holds whatever lock guards the address
//! space, as it must for the walk anyway.
//!
//! The walk bypasses the MMU, so it sets no accessed or dirty bits. Nothing
//! depends on them yet; page reclaim will have to set them here.

use crate::mm::paging::PageTable;
use crate::mm::phys::PhysMem;
use crate::mm::pte::{LeafFlags, PteFormat};
use abi::{Errno, USER_END};

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
pub fn check_mapped<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    va: u64,
    len: u64,
    write: bool,
) -> Result<(), Errno> {
    check_user_range(va, len)?;
    let mut need = LeafFlags::USER;
    need.set(LeafFlags::WRITABLE, write);
    let len = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
    for_each_piece(pt, va, len, need, &mut |_, _, _| {})
}

/// Copies `buf.len()` bytes from user address `va` into `buf`.
///
/// On `EFAULT` the contents of `buf` are unspecified (a prefix may have
/// been copied); nothing else has changed.
pub fn copy_from_user<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    mem: &M,
    va: u64,
    buf: &mut [u8],
) -> Result<(), Errno> {
    check_user_range(va, buf.len() as u64)?;
    for_each_piece(pt, va, buf.len(), LeafFlags::USER, &mut |pa, at, n| {
        mem.read_bytes(pa, &mut buf[at..at + n]);
    })
}

/// Copies `data` to user address `va`, which must be writable by the user.
/// Every page is checked before the first byte is written, so on `EFAULT`
/// user memory is unchanged.
pub fn copy_to_user<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    mem: &M,
    va: u64,
    data: &[u8],
) -> Result<(), Errno> {
    copy_out(pt, mem, va, data, LeafFlags::USER | LeafFlags::WRITABLE)
}

/// Like [`copy_to_user`], but into any user page, writable or not. For the
/// kernel filling pages it has just mapped for a user, such as the program
/// loader writing read-only text. Kernel pages are still refused.
pub fn fill_user<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    mem: &M,
    va: u64,
    data: &[u8],
) -> Result<(), Errno> {
    copy_out(pt, mem, va, data, LeafFlags::USER)
}

/// Reads a little-endian `u64` at user address `va` (any alignment).
pub fn read_user_u64<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    mem: &M,
    va: u64,
) -> Result<u64, Errno> {
    let mut bytes = [0; 8];
    copy_from_user(pt, mem, va, &mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Reads a little-endian `u32` at user address `va` (any alignment).
pub fn read_user_u32<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    mem: &M,
    va: u64,
) -> Result<u32, Errno> {
    let mut bytes = [0; 4];
    copy_from_user(pt, mem, va, &mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

/// Writes `value` little-endian at user address `va` (any alignment).
pub fn write_user_u64<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    mem: &M,
    va: u64,
    value: u64,
) -> Result<(), Errno> {
    copy_to_user(pt, mem, va, &value.to_le_bytes())
}

/// Checks every page of the destination for `need`, then copies.
fn copy_out<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    mem: &M,
    va: u64,
    data: &[u8],
    need: LeafFlags,
) -> Result<(), Errno> {
    check_user_range(va, data.len() as u64)?;
    // First pass: only look, so that a bad page fails before any write.
    // It remembers the first piece: a range inside one page (most copies)
    // is then written from there, without walking the tables again.
    let mut first = (0, 0);
    for_each_piece(pt, va, data.len(), need, &mut |pa, at, n| {
        if at == 0 {
            first = (pa, n);
        }
    })?;
    if first.1 == data.len() && !data.is_empty() {
        mem.write_bytes(first.0, data);
        return Ok(());
    }
    for_each_piece(pt, va, data.len(), need, &mut |pa, at, n| {
        mem.write_bytes(pa, &data[at..at + n]);
    })
}

/// Splits the user range `[va, va + len)` at page boundaries and calls
/// `f(pa, at, n)` for each piece: bytes `at..at + n` of the range live at
/// physical address `pa`. Stops with `EFAULT` at the first page that is not
/// a present leaf with every flag in `need`; the pieces before it have been
/// visited. The caller has checked the range with [`check_user_range`].
fn for_each_piece<F: PteFormat, M: PhysMem>(
    pt: &PageTable<'_, F, M>,
    va: u64,
    len: usize,
    need: LeafFlags,
    f: &mut dyn FnMut(u64, usize, usize),
) -> Result<(), Errno> {
    let mut at = 0;
    while at < len {
        let addr = va + at as u64;
        let (pa, flags, size) = pt.translate(addr).ok_or(Errno::EFAULT)?;
        if !flags.contains(need) {
            return Err(Errno::EFAULT);
        }
        // The rest of this page, whatever its size, is contiguous.
        let left_in_page = size.bytes() - (addr & (size.bytes() - 1));
        let n = (len - at).min(usize::try_from(left_in_page).unwrap_or(usize::MAX));
        f(pa, at, n);
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
            copy_from_user(&self.pt(), &self.mem, va, &mut buf).map(|()| buf)
        }

        fn write(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
            copy_to_user(&self.pt(), &self.mem, va, data)
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
            assert_eq!(check_mapped(&pt, RW0 + 8, 0x1ff8, write), Ok(()));
            assert_eq!(check_mapped(&pt, HUGE - 8, MIB2, write), Ok(()));
            assert_eq!(check_mapped(&pt, HOLE, 0, write), Ok(()));
            assert_eq!(check_mapped(&pt, RW1, 0x1001, write).is_ok(), !write);
            for (va, len) in [(HOLE - 1, 2), (KERN, 1), (TOP, 0x1001), (u64::MAX, 1)] {
                let got = check_mapped(&pt, va, len, write);
                assert_eq!(got, Err(Errno::EFAULT), "{va:#x}+{len:#x}");
            }
        }
        assert!(s.mem.reads() > reads, "it walked the tables");
    }

    #[test]
    fn fill_user_writes_read_only_pages_but_not_kernel_ones() {
        let s = setup();
        let pt = s.pt();
        assert_eq!(fill_user(&pt, &s.mem, RO + 8, b"text"), Ok(()));
        assert_eq!(s.phys(Pfn(0x70).addr() + 8, 4), b"text");
        assert_eq!(fill_user(&pt, &s.mem, KERN, b"x"), Err(Errno::EFAULT));
        assert_eq!(fill_user(&pt, &s.mem, USER_END, b"x"), Err(Errno::EFAULT));
        assert_eq!(s.phys(Pfn(0x90).addr(), 1), [0]);
    }

    #[test]
    fn empty_copies_succeed_anywhere() {
        let s = setup();
        let pt = s.pt();
        for va in [0, HOLE, KERN, USER_END, 0xffff_ffff_8000_0000, u64::MAX] {
            assert_eq!(copy_from_user(&pt, &s.mem, va, &mut []), Ok(()));
            assert_eq!(copy_to_user(&pt, &s.mem, va, &[]), Ok(()));
        }
    }

    #[test]
    fn word_helpers() {
        let s = setup();
        let pt = s.pt();
        let v = 0x1122_3344_5566_7788;
        // Aligned, and straddling two pages.
        for va in [RW0 + 8, RW1 - 3] {
            assert_eq!(write_user_u64(&pt, &s.mem, va, v), Ok(()));
            assert_eq!(read_user_u64(&pt, &s.mem, va), Ok(v));
            assert_eq!(read_user_u32(&pt, &s.mem, va), Ok(0x5566_7788));
            assert_eq!(read_user_u32(&pt, &s.mem, va + 4), Ok(0x1122_3344));
        }
        assert_eq!(read_user_u64(&pt, &s.mem, RO), Ok(0));
        assert_eq!(write_user_u64(&pt, &s.mem, RO, v), Err(Errno::EFAULT));
        assert_eq!(read_user_u64(&pt, &s.mem, HOLE - 4), Err(Errno::EFAULT));
        assert_eq!(read_user_u32(&pt, &s.mem, KERN), Err(Errno::EFAULT));
        assert_eq!(read_user_u64(&pt, &s.mem, USER_END - 4), Err(Errno::EFAULT));
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
