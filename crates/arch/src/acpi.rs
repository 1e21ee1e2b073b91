//! ACPI tables: RSDP, XSDT, FADT (with FACS and DSDT) and MADT.
//!
//! They give the guest what a PC's firmware would: one local APIC per possible vCPU (the ones
//! beyond the boot count are listed as hot-pluggable), the IOAPIC and legacy IRQ overrides,
//! PM1 registers and an `\_S5` package for ACPI poweroff, a reset register, and the pvpanic
//! device the VMM uses to learn that the guest kernel panicked.

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, Name, Package, ResourceTemplate, Scope,
    IO,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{ACPI_START, BIOS_END, IOAPIC_ADDR, LAPIC_ADDR};
use crate::{Error, Result};

/// I/O ports the VMM must serve for the tables written here.
pub mod ports {
    /// PM1a event block: status (2 bytes) then enable (2 bytes).
    pub const PM1A_EVT: u16 = 0x600;
    /// PM1a control block (2 bytes): SLP_TYP in bits 10-12, SLP_EN in bit 13.
    pub const PM1A_CNT: u16 = 0x604;
    /// Reset register; writing [`RESET_VALUE`] resets the machine.
    pub const RESET: u16 = 0xcf9;
    /// Value the guest writes to [`RESET`].
    pub const RESET_VALUE: u8 = 0x6;
    /// pvpanic device (ACPI `QEMU0001`).
    pub const PVPANIC: u16 = 0x505;
    /// SLP_TYP value `\_S5` advertises.
    pub const S5_SLP_TYP: u8 = 5;
}

const OEM_ID: [u8; 6] = *b"OXEN  ";
const OEM_TABLE: [u8; 8] = *b"OXENVMM ";
const OEM_REVISION: u32 = 1;
/// IRQ the (never raised) SCI is routed to, as on PCs.
const SCI_IRQ: u16 = 9;

/// A generic address structure for an I/O port register of `bits` width.
fn io_gas(port: u16, bits: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // System I/O space.
    g[1] = bits;
    g[3] = if bits > 16 {
        3
    } else if bits > 8 {
        2
    } else {
        1
    };
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

fn dsdt(pci: bool) -> Sdt {
    let mut t = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE, OEM_REVISION);
    let s5 = Name::new(
        "_S5_".into(),
        &Package::new(vec![&ports::S5_SLP_TYP, &ports::S5_SLP_TYP, &0u8, &0u8]),
    );
    s5.to_aml_bytes(&mut t);
    let pvpanic_io = IO::new(ports::PVPANIC, ports::PVPANIC, 1, 1);
    let crs = ResourceTemplate::new(vec![&pvpanic_io]);
    let hid = Name::new("_HID".into(), &"QEMU0001");
    let crs_name = Name::new("_CRS".into(), &crs);
    let sta = Name::new("_STA".into(), &0x0fu8);
    let pvpanic = Device::new("PEVT".into(), vec![&hid, &crs_name, &sta]);
    // PCI bus 0 through ports 0xcf8/0xcfc, with windows for the BARs the VMM places.
    let pci_hid = Name::new("_HID".into(), &EISAName::new("PNP0A03"));
    let pci_uid = Name::new("_UID".into(), &0u8);
    let pci_seg = Name::new("_SEG".into(), &0u8);
    let pci_bbn = Name::new("_BBN".into(), &0u8);
    let buses = AddressSpace::<u16>::new_bus_number(0, 0);
    let cfg_io = IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = AddressSpace::<u16>::new_io(0, 0x0cf7, None);
    let io_high = AddressSpace::<u16>::new_io(0x0d00, 0xffff, None);
    let mmio = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        PCI_MMIO_START,
        PCI_MMIO_END,
        None,
    );
    let pci_crs = ResourceTemplate::new(vec![&buses, &cfg_io, &io_low, &io_high, &mmio]);
    let pci_crs_name = Name::new("_CRS".into(), &pci_crs);
    let pci0 = Device::new(
        "PCI0".into(),
        vec![&pci_hid, &pci_uid, &pci_seg, &pci_bbn, &pci_crs_name],
    );
    let mut children: Vec<&dyn Aml> = vec![&pvpanic];
    if pci {
        children.push(&pci0);
    }
    Scope::new("\\_SB_".into(), children).to_aml_bytes(&mut t);
    t.update_checksum();
    t
}

/// The PCI root's memory window (device BARs such as Xen's platform device go here).
const PCI_MMIO_START: u32 = 0xe000_0000;
/// Last byte of the PCI memory window (the IOAPIC follows).
const PCI_MMIO_END: u32 = 0xfebf_ffff;

fn facs() -> [u8; 64] {
    let mut f = [0u8; 64];
    f[0..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&64u32.to_le_bytes());
    f[32] = 2; // Version.
    f
}

fn fadt(dsdt_addr: u64, facs_addr: u64, vga: bool) -> Sdt {
    const WBINVD: u32 = 1 << 0;
    const PROC_C1: u32 = 1 << 2;
    const PWR_BUTTON_NONE: u32 = 1 << 4;
    const SLP_BUTTON_NONE: u32 = 1 << 5;
    const RESET_REG_SUP: u32 = 1 << 10;
    const BOOT_LEGACY_DEVICES: u16 = 1 << 0;
    const BOOT_NO_VGA: u16 = 1 << 2;
    const BOOT_NO_CMOS_RTC: u16 = 1 << 5;

    let mut t = Sdt::new(*b"FACP", 276, 6, OEM_ID, OEM_TABLE, OEM_REVISION);
    t.write_u32(36, facs_addr as u32);
    t.write_u32(40, dsdt_addr as u32);
    t.write_u16(46, SCI_IRQ);
    // SMI_CMD stays 0: the platform is always in ACPI mode.
    t.write_u32(56, u32::from(ports::PM1A_EVT));
    t.write_u32(64, u32::from(ports::PM1A_CNT));
    t.write_u8(88, 4);
    t.write_u8(89, 2);
    // C2/C3 latencies above the limits mean "not supported".
    t.write_u16(96, 0x0fff);
    t.write_u16(98, 0x0fff);
    // No 8042 flag: Linux then skips probing a keyboard controller (2 s of timeouts in a slow
    // guest) but still resets through port 0x64, which the i8042 device serves.
    // Linux takes a Xen guest without RTC and without VGA for PVH, which would make it look
    // for PVH grant frames; Xen HVM guests have VGA, so a Xen guest is told it has one.
    let no_vga = if vga { 0 } else { BOOT_NO_VGA };
    t.write_u16(109, BOOT_LEGACY_DEVICES | no_vga | BOOT_NO_CMOS_RTC);
    t.write_u32(
        112,
        WBINVD | PROC_C1 | PWR_BUTTON_NONE | SLP_BUTTON_NONE | RESET_REG_SUP,
    );
    t.write_bytes(116, &io_gas(ports::RESET, 8));
    t.write_u8(128, ports::RESET_VALUE);
    t.write_u8(131, 0); // FADT minor version.
    t.write_u64(132, facs_addr);
    t.write_u64(140, dsdt_addr);
    t.write_bytes(148, &io_gas(ports::PM1A_EVT, 32));
    t.write_bytes(172, &io_gas(ports::PM1A_CNT, 16));
    t.update_checksum();
    t
}

fn madt(boot_cpus: u32, max_cpus: u32) -> Sdt {
    const PCAT_COMPAT: u32 = 1;
    const LAPIC_ENABLED: u32 = 1;
    const LAPIC_ONLINE_CAPABLE: u32 = 2;
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE, OEM_REVISION);
    t.write_u32(36, LAPIC_ADDR);
    t.write_u32(40, PCAT_COMPAT);
    for id in 0..max_cpus {
        let flags = if id < boot_cpus {
            LAPIC_ENABLED
        } else {
            LAPIC_ONLINE_CAPABLE
        };
        if id < 255 {
            // Type 0: processor local APIC.
            let mut e = [0u8, 8, id as u8, id as u8, 0, 0, 0, 0];
            e[4..8].copy_from_slice(&flags.to_le_bytes());
            t.append_slice(&e);
        } else {
            // Type 9: processor local x2APIC, for IDs that do not fit a byte.
            let mut e = [0u8; 16];
            e[0] = 9;
            e[1] = 16;
            e[4..8].copy_from_slice(&id.to_le_bytes());
            e[8..12].copy_from_slice(&flags.to_le_bytes());
            e[12..16].copy_from_slice(&id.to_le_bytes());
            t.append_slice(&e);
        }
    }
    // Type 1: IOAPIC id 0 (CPUs take 0.. too, but the ID spaces are separate in xAPIC mode
    // only for the APIC bus; Linux reassigns clashes) — use the ID after the last CPU.
    let ioapic_id = max_cpus.min(254) as u8;
    let mut io = [1u8, 12, ioapic_id, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    io[4..8].copy_from_slice(&IOAPIC_ADDR.to_le_bytes());
    t.append_slice(&io);
    // Type 2: the SCI is level-triggered, active high. There is deliberately no IRQ0 -> GSI 2
    // override: KVM's default routing delivers the in-kernel PIT on IOAPIC pin 0, and a guest
    // told to expect it on pin 2 loses its timer (and then fails APIC timer verification).
    t.append_slice(&[2, 10, 0, SCI_IRQ as u8, SCI_IRQ as u8, 0, 0, 0, 0x0d, 0]);
    // Type 4: LINT1 of every processor is NMI.
    t.append_slice(&[4, 6, 0xff, 0, 0, 1]);
    let len = t.len() as u32;
    t.write_u32(4, len);
    t.update_checksum();
    t
}

/// Writes all tables into guest memory; returns the RSDP address for the zero page.
///
/// `boot_cpus` vCPUs are marked enabled; the others up to `max_cpus` are hot-pluggable. `xen_hvm`
/// describes the platform a Xen HVM guest expects: legacy VGA present (so Linux does not take
/// the guest for PVH) and a PCI root bus for Xen's platform device.
pub fn write_tables<M: GuestMemoryBackend>(
    mem: &M,
    boot_cpus: u32,
    max_cpus: u32,
    xen_hvm: bool,
) -> Result<u64> {
    let mut next = ACPI_START;
    let mut place = |what: &'static str, bytes: &[u8], align: u64| -> Result<u64> {
        let addr = next.div_ceil(align) * align;
        if addr + bytes.len() as u64 > BIOS_END {
            return Err(Error::Cpuid(format!(
                "ACPI tables do not fit below 1 MiB ({what})"
            )));
        }
        mem.write_slice(bytes, GuestAddress(addr))
            .map_err(|source| Error::GuestMemory { what, addr, source })?;
        next = addr + bytes.len() as u64;
        Ok(addr)
    };
    // The RSDP goes first so legacy scans of 0xe0000 also find it.
    let rsdp_addr = place("RSDP reservation", &[0u8; 36], 16)?;
    let facs_addr = place("FACS", &facs(), 64)?;
    let dsdt_addr = place("DSDT", dsdt(xen_hvm).as_slice(), 16)?;
    let fadt_addr = place("FADT", fadt(dsdt_addr, facs_addr, xen_hvm).as_slice(), 16)?;
    let madt_addr = place("MADT", madt(boot_cpus, max_cpus).as_slice(), 16)?;
    let mut xsdt = Sdt::new(*b"XSDT", 36, 1, OEM_ID, OEM_TABLE, OEM_REVISION);
    for a in [fadt_addr, madt_addr] {
        xsdt.append_slice(&a.to_le_bytes());
    }
    let len = xsdt.len() as u32;
    xsdt.write_u32(4, len);
    xsdt.update_checksum();
    let xsdt_addr = place("XSDT", xsdt.as_slice(), 16)?;
    let mut rsdp_bytes = Vec::new();
    Rsdp::new(OEM_ID, xsdt_addr).to_aml_bytes(&mut rsdp_bytes);
    mem.write_slice(&rsdp_bytes, GuestAddress(rsdp_addr))
        .map_err(|source| Error::GuestMemory {
            what: "RSDP",
            addr: rsdp_addr,
            source,
        })?;
    Ok(rsdp_addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn checksum_ok(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    fn table_at(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
        let len: u32 = mem.read_obj(GuestAddress(addr + 4)).unwrap();
        let mut v = vec![0u8; len as usize];
        mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    #[test]
    fn tables_chain_from_rsdp_with_valid_checksums() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let rsdp = write_tables(&mem, 2, 4, false).unwrap();
        assert_eq!(rsdp, ACPI_START);
        let mut r = [0u8; 36];
        mem.read_slice(&mut r, GuestAddress(rsdp)).unwrap();
        assert_eq!(&r[0..8], b"RSD PTR ");
        assert!(checksum_ok(&r[..20]) && checksum_ok(&r));
        let xsdt_addr = u64::from_le_bytes(r[24..32].try_into().unwrap());
        let xsdt = table_at(&mem, xsdt_addr);
        assert_eq!(&xsdt[0..4], b"XSDT");
        assert!(checksum_ok(&xsdt));
        let entries: Vec<u64> = xsdt[36..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let fadt = table_at(&mem, entries[0]);
        let madt = table_at(&mem, entries[1]);
        assert_eq!((&fadt[0..4], &madt[0..4]), (&b"FACP"[..], &b"APIC"[..]));
        assert!(checksum_ok(&fadt) && checksum_ok(&madt));
        let dsdt_addr = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        let dsdt = table_at(&mem, dsdt_addr);
        assert_eq!(&dsdt[0..4], b"DSDT");
        assert!(checksum_ok(&dsdt));
        // The DSDT names _S5_ and the pvpanic device.
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"_S5_") && has(b"QEMU0001") && has(b"PEVT"));
        assert_eq!(
            u16::from_le_bytes(fadt[46..48].try_into().unwrap()),
            SCI_IRQ
        );
        assert_eq!(
            u32::from_le_bytes(fadt[64..68].try_into().unwrap()),
            u32::from(ports::PM1A_CNT)
        );
        let boot_arch = u16::from_le_bytes(fadt[109..111].try_into().unwrap());
        assert_eq!(
            boot_arch & 2,
            0,
            "no 8042 advertised: Linux would spend seconds probing it"
        );
        assert_ne!(boot_arch & (1 << 5), 0, "no CMOS RTC");
    }

    #[test]
    fn madt_lists_boot_and_hotplug_cpus() {
        let m = madt(2, 3);
        let b = m.as_slice();
        let mut off = 44;
        let mut cpus = Vec::new();
        while off < b.len() {
            let (ty, len) = (b[off], b[off + 1] as usize);
            if ty == 0 {
                cpus.push((
                    b[off + 3],
                    u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()),
                ));
            }
            // No override moves ISA IRQ 0 (the PIT) away from pin 0, where KVM delivers it.
            if ty == 2 {
                assert_ne!(b[off + 3], 0, "IRQ0 must not be overridden");
            }
            off += len;
        }
        assert_eq!(off, b.len(), "entries tile the table exactly");
        assert_eq!(cpus, vec![(0, 1), (1, 1), (2, 2)]);
    }

    #[test]
    fn many_cpus_use_x2apic_entries_and_still_fit() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write_tables(&mem, 288, 288, true).unwrap();
        let b = madt(1, 300);
        assert!(b.as_slice().windows(2).any(|w| w == [9, 16]));
    }
}
