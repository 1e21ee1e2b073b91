//! HVM operations and parameters (hvm/hvm_op.h, hvm/params.h).

use super::{byte_valued, DomId};

/// `HVMOP_set_param`.
pub const HVMOP_SET_PARAM: u32 = 0;
/// `HVMOP_get_param`.
pub const HVMOP_GET_PARAM: u32 = 1;
/// `HVMOP_set_pci_intx_level`.
pub const HVMOP_SET_PCI_INTX_LEVEL: u32 = 2;
/// `HVMOP_set_isa_irq_level`.
pub const HVMOP_SET_ISA_IRQ_LEVEL: u32 = 3;
/// `HVMOP_set_pci_link_route`.
pub const HVMOP_SET_PCI_LINK_ROUTE: u32 = 4;
/// `HVMOP_flush_tlbs`.
pub const HVMOP_FLUSH_TLBS: u32 = 5;
/// `HVMOP_pagetable_dying`.
pub const HVMOP_PAGETABLE_DYING: u32 = 9;
/// `HVMOP_get_time`.
pub const HVMOP_GET_TIME: u32 = 10;
/// `HVMOP_get_mem_type`.
pub const HVMOP_GET_MEM_TYPE: u32 = 15;
/// `HVMOP_set_evtchn_upcall_vector`: per-vCPU upcall vector.
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;
/// `HVMOP_guest_request_vm_event`.
pub const HVMOP_GUEST_REQUEST_VM_EVENT: u32 = 24;
/// `HVMOP_altp2m`.
pub const HVMOP_ALTP2M: u32 = 25;

/// `HVM_PARAM_CALLBACK_IRQ`: how event-channel upcalls are delivered.
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_STORE_PFN`: the Xenstore ring frame.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`: the Xenstore event channel.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_PAE_ENABLED`.
pub const HVM_PARAM_PAE_ENABLED: u32 = 4;
/// `HVM_PARAM_IOREQ_PFN`.
pub const HVM_PARAM_IOREQ_PFN: u32 = 5;
/// `HVM_PARAM_BUFIOREQ_PFN`.
pub const HVM_PARAM_BUFIOREQ_PFN: u32 = 6;
/// `HVM_PARAM_VIRIDIAN`.
pub const HVM_PARAM_VIRIDIAN: u32 = 9;
/// `HVM_PARAM_TIMER_MODE`.
pub const HVM_PARAM_TIMER_MODE: u32 = 10;
/// `HVM_PARAM_HPET_ENABLED`.
pub const HVM_PARAM_HPET_ENABLED: u32 = 11;
/// `HVM_PARAM_IDENT_PT`.
pub const HVM_PARAM_IDENT_PT: u32 = 12;
/// `HVM_PARAM_DM_DOMAIN`.
pub const HVM_PARAM_DM_DOMAIN: u32 = 13;
/// `HVM_PARAM_ACPI_S_STATE`.
pub const HVM_PARAM_ACPI_S_STATE: u32 = 14;
/// `HVM_PARAM_VM86_TSS`.
pub const HVM_PARAM_VM86_TSS: u32 = 15;
/// `HVM_PARAM_VPT_ALIGN`.
pub const HVM_PARAM_VPT_ALIGN: u32 = 16;
/// `HVM_PARAM_CONSOLE_PFN`: the PV console ring frame.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`: the PV console event channel.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// `HVM_PARAM_ACPI_IOPORTS_LOCATION`.
pub const HVM_PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
/// `HVM_PARAM_NESTEDHVM`.
pub const HVM_PARAM_NESTEDHVM: u32 = 24;
/// `HVM_PARAM_PAGING_RING_PFN`.
pub const HVM_PARAM_PAGING_RING_PFN: u32 = 27;
/// `HVM_PARAM_MONITOR_RING_PFN`.
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
/// `HVM_PARAM_SHARING_RING_PFN`.
pub const HVM_PARAM_SHARING_RING_PFN: u32 = 29;
/// `HVM_PARAM_TRIPLE_FAULT_REASON`.
pub const HVM_PARAM_TRIPLE_FAULT_REASON: u32 = 31;
/// `HVM_PARAM_IOREQ_SERVER_PFN`.
pub const HVM_PARAM_IOREQ_SERVER_PFN: u32 = 32;
/// `HVM_PARAM_NR_IOREQ_SERVER_PAGES`.
pub const HVM_PARAM_NR_IOREQ_SERVER_PAGES: u32 = 33;
/// `HVM_PARAM_VM_GENERATION_ID_ADDR`.
pub const HVM_PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
/// `HVM_PARAM_ALTP2M`.
pub const HVM_PARAM_ALTP2M: u32 = 35;
/// `HVM_PARAM_X87_FIP_WIDTH`.
pub const HVM_PARAM_X87_FIP_WIDTH: u32 = 36;
/// `HVM_PARAM_VM86_TSS_SIZED`.
pub const HVM_PARAM_VM86_TSS_SIZED: u32 = 37;
/// `HVM_PARAM_MCA_CAP`.
pub const HVM_PARAM_MCA_CAP: u32 = 38;
/// `HVM_NR_PARAMS`: parameters are below this.
pub const HVM_NR_PARAMS: u32 = 39;

/// Bits 63:56 of `HVM_PARAM_CALLBACK_IRQ` hold the callback type.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT: u32 = 56;
/// `HVM_PARAM_CALLBACK_TYPE_GSI`: value bits 55:0 are a GSI.
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u8 = 0;
/// `HVM_PARAM_CALLBACK_TYPE_PCI_INTX`: a PCI device's INTx pin.
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u8 = 1;
/// `HVM_PARAM_CALLBACK_TYPE_VECTOR`: value bits 7:0 are an IDT vector.
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u8 = 2;

/// A decoded `HVM_PARAM_CALLBACK_IRQ` value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CallbackVia {
    /// Value 0: no callback configured.
    None,
    /// Upcalls raise this GSI (needs a level-triggered line the VMM de-asserts).
    Gsi(u32),
    /// Upcalls raise a PCI INTx pin.
    PciIntx {
        /// PCI segment.
        domain: u16,
        /// PCI bus.
        bus: u8,
        /// PCI device and function.
        devfn: u8,
        /// INTx pin (0 = INTA).
        pin: u8,
    },
    /// Upcalls are injected as this vector on the target vCPU (what KVM delivers in-kernel).
    Vector(u8),
}

impl CallbackVia {
    /// Decodes a `HVM_PARAM_CALLBACK_IRQ` value; `None` (the Rust one) for an unknown type.
    pub fn decode(val: u64) -> Option<CallbackVia> {
        if val == 0 {
            return Some(CallbackVia::None);
        }
        let kind = (val >> HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT) as u8;
        match kind {
            HVM_PARAM_CALLBACK_TYPE_GSI => u32::try_from(val & ((1 << 56) - 1))
                .ok()
                .map(CallbackVia::Gsi),
            HVM_PARAM_CALLBACK_TYPE_PCI_INTX => Some(CallbackVia::PciIntx {
                domain: (val >> 32) as u16,
                bus: (val >> 16) as u8,
                devfn: (val >> 8) as u8,
                pin: (val & 3) as u8,
            }),
            HVM_PARAM_CALLBACK_TYPE_VECTOR => Some(CallbackVia::Vector(val as u8)),
            _ => None,
        }
    }
}

/// `struct xen_hvm_param`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct XenHvmParam {
    /// IN: the domain (`DOMID_SELF`).
    pub domid: DomId,
    /// Padding.
    pub _pad: u16,
    /// IN: `HVM_PARAM_*`.
    pub index: u32,
    /// IN (set) / OUT (get): the value.
    pub value: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct XenHvmEvtchnUpcallVector {
    /// The vCPU.
    pub vcpu: u32,
    /// The IDT vector (Xen refuses vectors below 0x10).
    pub vector: u8,
    /// Padding.
    pub _pad: [u8; 3],
}

byte_valued!(XenHvmParam, XenHvmEvtchnUpcallVector);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_hvm_op_h() {
        crate::abi::assert_sizes!(XenHvmParam => 16, XenHvmEvtchnUpcallVector => 8);
        assert_eq!(std::mem::offset_of!(XenHvmParam, value), 8);
    }

    #[test]
    fn callback_via_decoding() {
        assert_eq!(CallbackVia::decode(0), Some(CallbackVia::None));
        assert_eq!(CallbackVia::decode(28), Some(CallbackVia::Gsi(28)));
        assert_eq!(
            CallbackVia::decode((2 << 56) | 0xf3),
            Some(CallbackVia::Vector(0xf3))
        );
        assert_eq!(
            CallbackVia::decode((1 << 56) | (3 << 16) | (0x18 << 8) | 1),
            Some(CallbackVia::PciIntx {
                domain: 0,
                bus: 3,
                devfn: 0x18,
                pin: 1
            })
        );
        assert_eq!(CallbackVia::decode(7 << 56), None);
        assert_eq!(
            CallbackVia::decode((1 << 56) - 1),
            None,
            "GSI beyond 32 bits"
        );
    }
}
