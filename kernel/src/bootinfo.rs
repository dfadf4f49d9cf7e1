//! The boot information handed over by the PVH entry path.
//!
//! QEMU's PVH loader leaves a `hvm_start_info` structure in memory and its
//! physical address in EBX (Xen's public `arch-x86/hvm/start_info.h` defines
//! the layout). Parsing happens here, in portable code, because every field
//! is untrusted input that deserves host tests: a wrong magic, an absurd
//! entry count or a module outside RAM must become a clear error, never a
//! wild read.
//!
//! Nothing here allocates: it runs before the heap exists.

use crate::mm::phys::PhysMem;

/// `hvm_start_info.magic`.
pub const PVH_MAGIC: u32 = 0x336e_c578;
/// Memory-map entries kept; QEMU produces about ten.
pub const MAX_REGIONS: usize = 64;
/// Boot modules kept (the console script is module 0).
pub const MAX_MODULES: usize = 4;
/// Longest command line kept, in bytes.
pub const MAX_CMDLINE: usize = 256;

/// What a memory-map entry says about its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Unusable,
    Other(u32),
}

impl RegionKind {
    fn from_e820(kind: u32) -> Self {
        match kind {
            1 => RegionKind::Usable,
            2 => RegionKind::Reserved,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Unusable,
            other => RegionKind::Other(other),
        }
    }
}

/// One entry of the boot memory map: `[start, start + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
    pub kind: RegionKind,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// A boot module: a blob QEMU loaded for us (`-initrd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Module {
    pub start: u64,
    pub len: u64,
}

/// Why the start info could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    BadMagic(u32),
    /// Version 0 has no memory map, and Faultline needs one.
    NoMemoryMap,
    /// A module lies (partly) outside usable RAM.
    ModuleOutsideRam {
        index: usize,
        start: u64,
        len: u64,
    },
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootInfoError::BadMagic(m) => write!(
                f,
                "PVH start info has magic {m:#x}, not {PVH_MAGIC:#x}: not booted through PVH?"
            ),
            BootInfoError::NoMemoryMap => write!(f, "PVH start info carries no memory map"),
            BootInfoError::ModuleOutsideRam { index, start, len } => write!(
                f,
                "boot module {index} at {start:#x} (+{len:#x} bytes) is not inside usable RAM: malformed boot module"
            ),
        }
    }
}

/// The parsed start info, with fixed capacity so it lives without a heap.
#[derive(Debug, Clone)]
pub struct BootInfo {
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    /// Entries of the firmware's map that did not fit in `regions`.
    pub regions_dropped: usize,
    /// Modules beyond [`MAX_MODULES`].
    pub modules_dropped: usize,
    /// ACPI root pointer, 0 when absent.
    pub rsdp: u64,
}

// Offsets in `hvm_start_info` and its tables.
const OFF_MAGIC: u64 = 0;
const OFF_VERSION: u64 = 4;
const OFF_NR_MODULES: u64 = 12;
const OFF_MODLIST: u64 = 16;
const OFF_CMDLINE: u64 = 24;
const OFF_RSDP: u64 = 32;
const OFF_MEMMAP: u64 = 40;
const OFF_MEMMAP_ENTRIES: u64 = 48;
const MODLIST_ENTRY_SIZE: u64 = 32;
const MEMMAP_ENTRY_SIZE: u64 = 24;

/// Reads a little-endian `u32` at any 4-byte-aligned address.
fn read_u32(mem: &dyn PhysMem, pa: u64) -> u32 {
    let word = mem.read_u64(pa & !7);
    (word >> ((pa & 4) * 8)) as u32
}

fn read_byte(mem: &dyn PhysMem, pa: u64) -> u8 {
    let word = mem.read_u64(pa & !7);
    (word >> ((pa & 7) * 8)) as u8
}

impl BootInfo {
    /// Parses the start info at physical address `pa`.
    pub fn parse(mem: &dyn PhysMem, pa: u64) -> Result<BootInfo, BootInfoError> {
        let magic = read_u32(mem, pa + OFF_MAGIC);
        if magic != PVH_MAGIC {
            return Err(BootInfoError::BadMagic(magic));
        }
        if read_u32(mem, pa + OFF_VERSION) < 1 {
            return Err(BootInfoError::NoMemoryMap);
        }
        let mut info = BootInfo::empty();
        info.rsdp = mem.read_u64(pa + OFF_RSDP);
        info.read_memory_map(mem, pa);
        info.read_cmdline(mem, mem.read_u64(pa + OFF_CMDLINE));
        info.read_modules(mem, pa)?;
        Ok(info)
    }

    /// A start info with nothing in it; for tests and as the parse base.
    pub const fn empty() -> BootInfo {
        BootInfo {
            regions: [Region {
                start: 0,
                len: 0,
                kind: RegionKind::Reserved,
            }; MAX_REGIONS],
            region_count: 0,
            modules: [Module { start: 0, len: 0 }; MAX_MODULES],
            module_count: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            regions_dropped: 0,
            modules_dropped: 0,
            rsdp: 0,
        }
    }

    fn read_memory_map(&mut self, mem: &dyn PhysMem, pa: u64) {
        let table = mem.read_u64(pa + OFF_MEMMAP);
        let count = read_u32(mem, pa + OFF_MEMMAP_ENTRIES) as usize;
        for i in 0..count {
            let entry = table + i as u64 * MEMMAP_ENTRY_SIZE;
            let region = Region {
                start: mem.read_u64(entry),
                len: mem.read_u64(entry + 8),
                kind: RegionKind::from_e820(read_u32(mem, entry + 16)),
            };
            self.push_region(region);
        }
    }

    /// Adds a region; beyond capacity the entry is counted as dropped.
    pub fn push_region(&mut self, region: Region) {
        match self.regions.get_mut(self.region_count) {
            Some(slot) => {
                *slot = region;
                self.region_count += 1;
            }
            None => self.regions_dropped += 1,
        }
    }

    fn read_cmdline(&mut self, mem: &dyn PhysMem, pa: u64) {
        if pa == 0 {
            return;
        }
        let mut len = 0;
        while len < MAX_CMDLINE {
            let b = read_byte(mem, pa + len as u64);
            if b == 0 {
                break;
            }
            self.cmdline[len] = b;
            len += 1;
        }
        self.cmdline_len = len;
    }

    fn read_modules(&mut self, mem: &dyn PhysMem, pa: u64) -> Result<(), BootInfoError> {
        let count = read_u32(mem, pa + OFF_NR_MODULES) as usize;
        let list = mem.read_u64(pa + OFF_MODLIST);
        for index in 0..count {
            let entry = list + index as u64 * MODLIST_ENTRY_SIZE;
            let module = Module {
                start: mem.read_u64(entry),
                len: mem.read_u64(entry + 8),
            };
            self.push_module(index, module)?;
        }
        Ok(())
    }

    /// Adds a module after checking it lies in usable RAM.
    pub fn push_module(&mut self, index: usize, module: Module) -> Result<(), BootInfoError> {
        if !self.in_usable_ram(module.start, module.len) {
            return Err(BootInfoError::ModuleOutsideRam {
                index,
                start: module.start,
                len: module.len,
            });
        }
        match self.modules.get_mut(self.module_count) {
            Some(slot) => {
                *slot = module;
                self.module_count += 1;
            }
            None => self.modules_dropped += 1,
        }
        Ok(())
    }

    /// Whether `[start, start + len)` lies inside one usable region.
    pub fn in_usable_ram(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        self.regions()
            .iter()
            .any(|r| r.kind == RegionKind::Usable && r.start <= start && end <= r.end())
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }

    /// The command line; bytes that are not UTF-8 make it empty.
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// The value of `key=value` on the command line.
    pub fn cmdline_value(&self, key: &str) -> Option<&str> {
        self.cmdline()
            .split_ascii_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
    }

    /// Total bytes of usable RAM in the map, whole 4 KiB frames only.
    pub fn usable_frames(&self) -> u64 {
        self.usable_pfn_ranges().map(|r| r.end.0 - r.start.0).sum()
    }

    /// Usable RAM as frame ranges: starts rounded up and ends rounded down,
    /// since a partial frame cannot be handed out.
    pub fn usable_pfn_ranges(&self) -> impl Iterator<Item = core::ops::Range<crate::mm::Pfn>> + '_ {
        use crate::mm::{PAGE_SIZE, Pfn};
        self.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .filter_map(|r| {
                let start = r.start.checked_add(PAGE_SIZE - 1)? / PAGE_SIZE;
                let end = r.end() / PAGE_SIZE;
                (start < end).then_some(Pfn(start)..Pfn(end))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::phys::SimMemory;

    const INFO: u64 = 0x1000;
    const MEMMAP: u64 = 0x2000;
    const MODLIST: u64 = 0x3000;
    const CMDLINE: u64 = 0x4000;

    fn write_u32(mem: &SimMemory, pa: u64, v: u32) {
        let word = mem.read_u64(pa & !7);
        let shift = (pa & 4) * 8;
        let cleared = word & !(0xffff_ffffu64 << shift);
        mem.write_u64(pa & !7, cleared | ((v as u64) << shift));
    }

    fn write_str(mem: &SimMemory, pa: u64, s: &[u8]) {
        for (i, chunk) in s.chunks(8).enumerate() {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            mem.write_u64(pa + 8 * i as u64, u64::from_le_bytes(bytes));
        }
    }

    /// A start info as QEMU lays it out: 128 MiB of RAM below a BIOS hole.
    fn qemu_like(mem: &SimMemory, modules: &[(u64, u64)]) {
        write_u32(mem, INFO, PVH_MAGIC);
        write_u32(mem, INFO + 4, 1);
        write_u32(mem, INFO + 12, modules.len() as u32);
        mem.write_u64(INFO + 16, MODLIST);
        mem.write_u64(INFO + 24, CMDLINE);
        mem.write_u64(INFO + 32, 0xf52a0);
        mem.write_u64(INFO + 40, MEMMAP);
        let map = [
            (0u64, 0x9fc00u64, 1u32),
            (0x9fc00, 0x400, 2),
            (0xf0000, 0x10000, 2),
            (0x100000, 0x7ee0000, 1),
            (0x7fe0000, 0x20000, 2),
        ];
        write_u32(mem, INFO + 48, map.len() as u32);
        for (i, (start, len, kind)) in map.iter().enumerate() {
            let e = MEMMAP + 24 * i as u64;
            mem.write_u64(e, *start);
            mem.write_u64(e + 8, *len);
            write_u32(mem, e + 16, *kind);
        }
        for (i, (start, len)) in modules.iter().enumerate() {
            mem.write_u64(MODLIST + 32 * i as u64, *start);
            mem.write_u64(MODLIST + 32 * i as u64 + 8, *len);
        }
        write_str(mem, CMDLINE, b"loglevel=debug script=1\0");
    }

    #[test]
    fn parses_a_qemu_like_start_info() {
        let mem = SimMemory::new();
        qemu_like(&mem, &[(0x7000000, 123)]);
        let info = BootInfo::parse(&mem, INFO).expect("valid start info");
        assert_eq!(info.regions().len(), 5);
        assert_eq!(info.regions()[3].kind, RegionKind::Usable);
        assert_eq!(info.rsdp, 0xf52a0);
        assert_eq!(info.cmdline(), "loglevel=debug script=1");
        assert_eq!(info.cmdline_value("loglevel"), Some("debug"));
        assert_eq!(info.cmdline_value("log"), None);
        assert_eq!(
            info.modules(),
            &[Module {
                start: 0x7000000,
                len: 123
            }]
        );
        // 0x9f full frames below 640 KiB, then 0x7ee0 frames from 1 MiB.
        assert_eq!(info.usable_frames(), 0x9f + 0x7ee0);
    }

    #[test]
    fn wrong_magic_is_refused() {
        let mem = SimMemory::new();
        qemu_like(&mem, &[]);
        write_u32(&mem, INFO, 0x2bad_b002);
        assert_eq!(
            BootInfo::parse(&mem, INFO).unwrap_err(),
            BootInfoError::BadMagic(0x2bad_b002)
        );
    }

    #[test]
    fn version_zero_has_no_memory_map() {
        let mem = SimMemory::new();
        qemu_like(&mem, &[]);
        write_u32(&mem, INFO + 4, 0);
        assert_eq!(
            BootInfo::parse(&mem, INFO).unwrap_err(),
            BootInfoError::NoMemoryMap
        );
    }

    #[test]
    fn module_outside_ram_is_refused() {
        let mem = SimMemory::new();
        qemu_like(&mem, &[(0x7ff0000, 0x100)]);
        let err = BootInfo::parse(&mem, INFO).unwrap_err();
        assert!(matches!(
            err,
            BootInfoError::ModuleOutsideRam { index: 0, .. }
        ));
        // A length that wraps around the address space is refused too.
        let mem = SimMemory::new();
        qemu_like(&mem, &[(0x200000, u64::MAX)]);
        assert!(BootInfo::parse(&mem, INFO).is_err());
    }

    #[test]
    fn oversized_tables_are_truncated_not_overrun() {
        let mem = SimMemory::new();
        qemu_like(&mem, &[]);
        write_u32(&mem, INFO + 48, 1000);
        let info = BootInfo::parse(&mem, INFO).expect("parses");
        assert_eq!(info.regions().len(), MAX_REGIONS);
        assert_eq!(info.regions_dropped, 1000 - MAX_REGIONS);
    }

    #[test]
    fn unterminated_cmdline_is_capped() {
        let mem = SimMemory::new();
        qemu_like(&mem, &[]);
        write_str(&mem, CMDLINE, &[b'a'; 400]);
        let info = BootInfo::parse(&mem, INFO).expect("parses");
        assert_eq!(info.cmdline().len(), MAX_CMDLINE);
    }
}
