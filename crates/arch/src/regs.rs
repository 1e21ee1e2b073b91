//! vCPU state for entering Linux's 64-bit boot protocol: long mode with identity-mapped page
//! tables, flat segments at the selectors the protocol names, and the zero page in RSI.
//! Application processors are started by the guest itself with INIT/SIPI through the in-kernel
//! local APIC, so only their local-APIC wiring and MSRs are set here.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{BOOT_GDT, BOOT_IDT, BOOT_STACK, PD, PDPT, PML4, ZERO_PAGE};
use crate::{kvm_err, Error, Result};

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_NE: u64 = 0x20;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// Page-table entry bits.
const PTE_PRESENT_RW: u64 = 0x3;
const PDE_2M_PAGE: u64 = 0x83;

/// Selectors Linux's 64-bit boot protocol requires (`__BOOT_CS`, `__BOOT_DS`).
const BOOT_CS: u16 = 0x10;
const BOOT_DS: u16 = 0x18;
const BOOT_TSS: u16 = 0x20;

/// GDT access/flag words: 64-bit code, flat data, 64-bit TSS.
const GDT_CODE64: u16 = 0xa09b;
const GDT_DATA: u16 = 0xc093;
const GDT_TSS: u16 = 0x808b;

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled, default type write-back: without it Linux maps all RAM uncached.
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

/// Local APIC register offsets and delivery modes for LINT0/LINT1.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Encodes a GDT descriptor from its access/flags word, base and limit.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

fn segment(selector: u16, flags: u16) -> kvm_segment {
    let f = flags;
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: (f & 0xf) as u8,
        present: ((f >> 7) & 1) as u8,
        dpl: ((f >> 5) & 3) as u8,
        db: ((f >> 14) & 1) as u8,
        s: ((f >> 4) & 1) as u8,
        l: ((f >> 13) & 1) as u8,
        g: ((f >> 15) & 1) as u8,
        avl: ((f >> 12) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

fn write<M: GuestMemoryBackend>(
    mem: &M,
    what: &'static str,
    addr: u64,
    bytes: &[u8],
) -> Result<()> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| Error::GuestMemory { what, addr, source })
}

/// Writes the boot GDT, an empty IDT and page tables identity-mapping the first 4 GiB.
pub fn write_boot_tables<M: GuestMemoryBackend>(mem: &M) -> Result<()> {
    let gdt = [
        0,
        0,
        gdt_entry(GDT_CODE64, 0, 0xfffff),
        gdt_entry(GDT_DATA, 0, 0xfffff),
        gdt_entry(GDT_TSS, 0, 0xfffff),
    ];
    let gdt_bytes: Vec<u8> = gdt.iter().flat_map(|e| e.to_le_bytes()).collect();
    write(mem, "boot GDT", BOOT_GDT, &gdt_bytes)?;
    write(mem, "boot IDT", BOOT_IDT, &[0u8; 8])?;
    write(mem, "PML4", PML4, &(PDPT | PTE_PRESENT_RW).to_le_bytes())?;
    let pdpt: Vec<u8> = (0..4u64)
        .flat_map(|i| ((PD + i * 0x1000) | PTE_PRESENT_RW).to_le_bytes())
        .collect();
    write(mem, "PDPT", PDPT, &pdpt)?;
    let pd: Vec<u8> = (0..2048u64)
        .flat_map(|i| ((i << 21) | PDE_2M_PAGE).to_le_bytes())
        .collect();
    write(mem, "page directories", PD, &pd)
}

/// Puts the boot vCPU at the 64-bit `entry` point with the zero page in RSI.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: u64) -> Result<()> {
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = 5 * 8 - 1;
    sregs.idt.base = BOOT_IDT;
    sregs.idt.limit = 7;
    sregs.cs = segment(BOOT_CS, GDT_CODE64);
    let data = segment(BOOT_DS, GDT_DATA);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = segment(BOOT_TSS, GDT_TSS);
    sregs.cr3 = PML4;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_PG | X86_CR0_ET | X86_CR0_NE;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;

    let regs = kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err("KVM_SET_FPU"))
}

/// MSRs every vCPU starts with.
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<()> {
    let entries: Vec<kvm_msr_entry> = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ]
    .iter()
    .map(|&(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect();
    let msrs =
        Msrs::from_entries(&entries).map_err(|e| Error::Cpuid(format!("MSR list: {e:?}")))?;
    let set = vcpu.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
    if set != entries.len() {
        let failed = entries[set].index;
        return Err(Error::Cpuid(format!("KVM refused MSR {failed:#x}")));
    }
    Ok(())
}

/// Wires LINT0 to the PIC (ExtINT) and LINT1 to NMI, as PC firmware does.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<()> {
    let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
    for (offset, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let regs = &mut lapic.regs[offset..offset + 4];
        let mut bytes = [0u8; 4];
        for (b, r) in bytes.iter_mut().zip(regs.iter()) {
            *b = *r as u8;
        }
        let v = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (r, b) in regs.iter_mut().zip(v.to_le_bytes()) {
            *r = b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn gdt_entries_match_known_encodings() {
        assert_eq!(gdt_entry(GDT_CODE64, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(GDT_DATA, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(GDT_TSS, 0, 0xfffff), 0x008f_8b00_0000_ffff);
        assert_eq!(gdt_entry(0x9b, 0x1234_5678, 0x1ffff), 0x1201_9b34_5678_ffff);
    }

    #[test]
    fn segments_decode_flags() {
        let cs = segment(BOOT_CS, GDT_CODE64);
        assert_eq!(
            (cs.type_, cs.present, cs.l, cs.db, cs.g, cs.s),
            (0xb, 1, 1, 0, 1, 1)
        );
        let ds = segment(BOOT_DS, GDT_DATA);
        assert_eq!((ds.type_, ds.l, ds.db), (0x3, 0, 1));
    }

    #[test]
    fn page_tables_identity_map_4g() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4)).unwrap();
        assert_eq!(pml4, PDPT | 3);
        let pdpt3: u64 = mem.read_obj(GuestAddress(PDPT + 24)).unwrap();
        assert_eq!(pdpt3, (PD + 0x3000) | 3);
        // The last 2 MiB page of the 4th GiB.
        let last: u64 = mem.read_obj(GuestAddress(PD + 2047 * 8)).unwrap();
        assert_eq!(last, (0xffe0_0000) | PDE_2M_PAGE);
        let code: u64 = mem
            .read_obj(GuestAddress(BOOT_GDT + u64::from(BOOT_CS)))
            .unwrap();
        assert_eq!(code, gdt_entry(GDT_CODE64, 0, 0xfffff));
    }
}
