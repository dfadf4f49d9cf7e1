//! ACPI: the CPUs the firmware lists in the MADT.
//!
//! The `acpi` crate finds and checks the tables (RSDP, then the XSDT or
//! RSDT, each checksum and signature) through [`DirectMapHandler`]. Its
//! `alloc` feature needs nightly, so Faultline does not ask it for the
//! whole platform description: it walks the MADT's entries itself and
//! keeps the processor entries (local APIC and local x2APIC).

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use kernel::cpus::MadtCpu;

use crate::layout::phys_to_virt;

/// ACPI tables through the direct map. `ensure` is boot's: it makes sure a
/// physical range is mapped there (firmware tables may lie in memory the
/// boot map does not call RAM) and says whether it could.
#[derive(Clone, Copy)]
pub struct DirectMapHandler {
    pub ensure: fn(u64, u64) -> bool,
}

impl AcpiHandler for DirectMapHandler {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        if !(self.ensure)(pa as u64, size as u64) {
            panic!("ACPI table at {pa:#x} ({size} bytes) cannot be mapped");
        }
        let va = phys_to_virt(pa as u64) as *mut T;
        let Some(va) = NonNull::new(va) else {
            panic!("ACPI table at the null address");
        };
        // SAFETY: the crate passes the address of a table it found through
        // the RSDP (the caller of `AcpiTables::from_rsdp` vouches for that
        // one), `ensure` mapped the whole range in the direct map, which is
        // never unmapped, so the mapping stays valid while it lives.
        unsafe { PhysicalMapping::new(pa, va, size, size, *self) }
    }

    /// The direct map stays: nothing to undo.
    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// What the MADT says.
pub struct MadtInfo {
    /// The local APICs' physical address (the override entry's, if any).
    pub lapic_address: u64,
    /// Whether the machine also has the two 8259 PICs.
    pub has_8259: bool,
}

/// Why the CPUs could not be listed.
#[derive(Debug)]
pub enum AcpiError {
    NoRsdp,
    Tables(acpi::AcpiError),
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiError::NoRsdp => write!(f, "the boot information names no RSDP"),
            AcpiError::Tables(e) => write!(f, "ACPI tables: {e:?}"),
        }
    }
}

/// Walks the MADT found from the RSDP at `rsdp` and hands every processor
/// entry to `cpu`, in table order.
pub fn madt_cpus(
    rsdp: u64,
    handler: DirectMapHandler,
    mut cpu: impl FnMut(MadtCpu),
) -> Result<MadtInfo, AcpiError> {
    if rsdp == 0 {
        return Err(AcpiError::NoRsdp);
    }
    // SAFETY: `rsdp` is the address the firmware gave in the PVH start
    // information, where it places the RSDP; the crate checks its
    // signature and checksum before it trusts anything else.
    let tables =
        unsafe { AcpiTables::from_rsdp(handler, rsdp as usize) }.map_err(AcpiError::Tables)?;
    let madt = tables.find_table::<Madt>().map_err(AcpiError::Tables)?;
    let mut lapic_address = madt.get().local_apic_address as u64;
    let has_8259 = madt.get().supports_8259();
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => {
                let flags = e.flags;
                cpu(MadtCpu {
                    apic_id: e.apic_id as u32,
                    flags,
                })
            }
            MadtEntry::LocalX2Apic(e) => {
                let (apic_id, flags) = (e.x2apic_id, e.flags);
                cpu(MadtCpu { apic_id, flags })
            }
            MadtEntry::LocalApicAddressOverride(e) => lapic_address = e.local_apic_address,
            _ => {}
        }
    }
    Ok(MadtInfo {
        lapic_address,
        has_8259,
    })
}
