//! Guest-physical memory layout and the e820 map.
//!
//! Low memory holds the boot structures at fixed places (as the Linux boot protocol allows);
//! RAM above 3 GiB is moved past 4 GiB so the gap can hold the IOAPIC, the local APIC and,
//! later, Xen's shared pages and device windows.

use vm_memory::GuestAddress;

/// GDT used at entry (Linux's 64-bit protocol wants __BOOT_CS 0x10 and __BOOT_DS 0x18).
pub const BOOT_GDT: u64 = 0x500;
/// An empty IDT: interrupts stay off until the kernel installs its own.
pub const BOOT_IDT: u64 = 0x540;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer for the boot vCPU.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Identity page tables: PML4, PDPT, then four page directories mapping 4 GiB in 2 MiB pages.
pub const PML4: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPT: u64 = 0xa000;
/// First of four page directories.
pub const PD: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Largest command line we place (the kernel's own limit may be lower; its header says).
pub const CMDLINE_MAX: usize = 0x10000;
/// Start of the extended BIOS data area: RAM below it is usable for the SMP trampoline.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables live in the legacy BIOS area, which the e820 map marks reserved.
pub const ACPI_START: u64 = 0xe0000;
/// End of the legacy BIOS area.
pub const BIOS_END: u64 = 0x100000;
/// Where bzImage protected-mode code is loaded; also the lowest address for an ELF kernel.
pub const HIGH_RAM_START: u64 = 0x100000;
/// Start of the 32-bit MMIO hole (3 GiB).
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// IOAPIC MMIO base.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Local APIC MMIO base.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// Xen's special pages (the Xenstore and console rings), reserved in the e820 map so the
/// guest never uses them as RAM, as Xen's toolstack places them just below the BIOS area.
pub const XEN_SPECIAL_START: u64 = 0xfeff_0000;
/// Number of Xen special pages.
pub const XEN_SPECIAL_PAGES: u64 = 16;
/// Special page holding the Xenstore ring.
pub const XEN_STORE_PAGE: u64 = XEN_SPECIAL_START;
/// Special page holding the PV console ring.
pub const XEN_CONSOLE_PAGE: u64 = XEN_SPECIAL_START + 0x1000;
/// Memory behind the Xen platform device's BAR 1, where the guest places grant-table frames.
pub const XEN_GRANT_START: u64 = 0xf000_0000;
/// Bytes of grant-frame memory (256 frames); the BAR itself is larger and the rest unbacked.
pub const XEN_GRANT_LEN: u64 = 1 << 20;
/// Size of the platform device's BAR 1.
pub const XEN_GRANT_BAR_LEN: u64 = 16 << 20;
/// KVM's private pages for VMX (TSS and identity map), inside the hole, below the BIOS ROM.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// KVM's identity-map page for real-mode emulation on VMX.
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// An e820 entry type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Type {
    /// Usable RAM.
    Ram = 1,
    /// Reserved.
    Reserved = 2,
}

/// Guest RAM regions for `mem_bytes` of memory: `(start, length)`, at most two.
pub fn ram_regions(mem_bytes: u64) -> Vec<(GuestAddress, u64)> {
    if mem_bytes <= MMIO_GAP_START {
        vec![(GuestAddress(0), mem_bytes)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START),
            (GuestAddress(MMIO_GAP_END), mem_bytes - MMIO_GAP_START),
        ]
    }
}

/// The e820 map for `mem_bytes` of RAM: `(start, length, type)`.
pub fn e820_map(mem_bytes: u64) -> Vec<(u64, u64, E820Type)> {
    let low_end = mem_bytes.min(MMIO_GAP_START);
    let mut map = vec![
        (0, EBDA_START, E820Type::Ram),
        (EBDA_START, BIOS_END - EBDA_START, E820Type::Reserved),
        (HIGH_RAM_START, low_end - HIGH_RAM_START, E820Type::Ram),
    ];
    map.push((
        XEN_SPECIAL_START,
        XEN_SPECIAL_PAGES << 12,
        E820Type::Reserved,
    ));
    if mem_bytes > MMIO_GAP_START {
        map.push((MMIO_GAP_END, mem_bytes - MMIO_GAP_START, E820Type::Ram));
    }
    map
}

/// The highest address (exclusive) of RAM below 4 GiB, where an initrd may go.
pub fn low_ram_end(mem_bytes: u64) -> u64 {
    mem_bytes.min(MMIO_GAP_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_one_region_and_a_hole_for_the_bios() {
        assert_eq!(ram_regions(256 << 20), vec![(GuestAddress(0), 256 << 20)]);
        let map = e820_map(256 << 20);
        assert_eq!(map[0], (0, EBDA_START, E820Type::Ram));
        assert_eq!(map[1].2, E820Type::Reserved);
        assert_eq!(
            map[2],
            (HIGH_RAM_START, (256 << 20) - HIGH_RAM_START, E820Type::Ram)
        );
        assert_eq!(map[3], (XEN_SPECIAL_START, 0x10000, E820Type::Reserved));
        assert_eq!(map.len(), 4);
    }

    #[test]
    fn large_guest_skips_the_mmio_hole() {
        let mem = 6u64 << 30;
        assert_eq!(
            ram_regions(mem),
            vec![
                (GuestAddress(0), MMIO_GAP_START),
                (GuestAddress(MMIO_GAP_END), mem - MMIO_GAP_START)
            ]
        );
        let map = e820_map(mem);
        assert_eq!(map[2].0 + map[2].1, MMIO_GAP_START);
        assert_eq!(map[4], (MMIO_GAP_END, mem - MMIO_GAP_START, E820Type::Ram));
        let total: u64 = map
            .iter()
            .filter(|e| e.2 == E820Type::Ram)
            .map(|e| e.1)
            .sum();
        assert_eq!(total, mem - (BIOS_END - EBDA_START));
    }

    #[test]
    fn fixed_boot_structures_do_not_overlap() {
        let mut spans = [
            (BOOT_GDT, 0x40),
            (BOOT_IDT, 8),
            (ZERO_PAGE, 0x1000),
            (PML4, 0x1000),
            (PDPT, 0x1000),
            (PD, 0x4000),
            (CMDLINE, CMDLINE_MAX as u64),
        ];
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{w:x?}");
        }
        assert!(CMDLINE + CMDLINE_MAX as u64 <= EBDA_START);
    }
}
