//! Which CPUs to start: the firmware's list (ACPI's MADT processor
//! entries) turned into the kernel's CPU indices.
//!
//! Index 0 is the bootstrap CPU, the one running boot; the others follow
//! in the table's order. A processor is started only when its entry says
//! it is enabled (flag bit 0): one that is merely "online capable" (bit
//! 1, ACPI 6.3) can be added later and is not running firmware now. An
//! APIC id listed twice is started once, and beyond [`MAX_CPUS`] the rest
//! are counted and left alone.

use crate::sync::MAX_CPUS;

/// One processor entry of the MADT (local APIC or local x2APIC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadtCpu {
    pub apic_id: u32,
    pub flags: u32,
}

impl MadtCpu {
    pub const ENABLED: u32 = 1 << 0;
    pub const ONLINE_CAPABLE: u32 = 1 << 1;
}

/// The CPUs to run on, by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList {
    ids: [u32; MAX_CPUS],
    len: usize,
    /// Entries not enabled (online capable or not).
    pub disabled: usize,
    /// Entries naming an APIC id already listed.
    pub duplicates: usize,
    /// Enabled CPUs past [`MAX_CPUS`].
    pub over_limit: usize,
    /// Whether the table listed the bootstrap CPU (if not, it is index 0
    /// anyway: it runs).
    pub bsp_listed: bool,
}

impl CpuList {
    /// The list for a machine whose bootstrap CPU has APIC id `bsp`.
    pub fn new(bsp: u32, entries: impl IntoIterator<Item = MadtCpu>) -> CpuList {
        let mut list = CpuList {
            ids: [0; MAX_CPUS],
            len: 1,
            disabled: 0,
            duplicates: 0,
            over_limit: 0,
            bsp_listed: false,
        };
        list.ids[0] = bsp;
        for e in entries {
            if e.flags & MadtCpu::ENABLED == 0 {
                list.disabled += 1;
            } else if e.apic_id == bsp && !list.bsp_listed {
                list.bsp_listed = true;
            } else if list.apic_ids().contains(&e.apic_id) {
                list.duplicates += 1;
            } else if list.len == MAX_CPUS {
                list.over_limit += 1;
            } else {
                list.ids[list.len] = e.apic_id;
                list.len += 1;
            }
        }
        list
    }

    /// APIC ids by CPU index; the bootstrap CPU's first.
    pub fn apic_ids(&self) -> &[u32] {
        &self.ids[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: the bootstrap CPU is always listed.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(apic_id: u32, flags: u32) -> MadtCpu {
        MadtCpu { apic_id, flags }
    }

    const ON: u32 = MadtCpu::ENABLED;

    #[test]
    fn bootstrap_cpu_first_then_table_order() {
        let l = CpuList::new(2, [cpu(0, ON), cpu(1, ON), cpu(2, ON), cpu(3, ON)]);
        assert_eq!(l.apic_ids(), &[2, 0, 1, 3]);
        assert!(l.bsp_listed);
        assert_eq!((l.disabled, l.duplicates, l.over_limit), (0, 0, 0));
    }

    #[test]
    fn only_enabled_entries_are_started() {
        let l = CpuList::new(
            0,
            [
                cpu(0, ON),
                cpu(1, 0),
                cpu(2, MadtCpu::ONLINE_CAPABLE),
                cpu(3, ON | MadtCpu::ONLINE_CAPABLE),
            ],
        );
        assert_eq!(l.apic_ids(), &[0, 3]);
        assert_eq!(l.disabled, 2);
    }

    #[test]
    fn duplicates_are_started_once() {
        let l = CpuList::new(0, [cpu(0, ON), cpu(1, ON), cpu(1, ON), cpu(0, ON)]);
        assert_eq!(l.apic_ids(), &[0, 1]);
        assert_eq!(l.duplicates, 2);
    }

    #[test]
    fn an_unlisted_bootstrap_cpu_still_runs() {
        let l = CpuList::new(7, [cpu(1, ON)]);
        assert_eq!(l.apic_ids(), &[7, 1]);
        assert!(!l.bsp_listed);
        let alone = CpuList::new(0, []);
        assert_eq!((alone.apic_ids(), alone.len()), (&[0u32][..], 1));
    }

    #[test]
    fn cpus_past_the_limit_are_counted_not_started() {
        let entries = (0..MAX_CPUS as u32 + 5).map(|id| cpu(id, ON));
        let l = CpuList::new(0, entries);
        assert_eq!(l.len(), MAX_CPUS);
        assert_eq!(l.over_limit, 5);
        assert_eq!(l.apic_ids()[MAX_CPUS - 1], MAX_CPUS as u32 - 1);
    }
}
