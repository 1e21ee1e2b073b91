//! `xen_version` and `console_io`.

use vm_memory::GuestMemoryBackend;

use super::{write_obj, GuestVirt, Hypervisor};
use crate::abi::errno::Errno;
use crate::abi::version::*;

/// `CONSOLEIO_write`.
pub const CONSOLEIO_WRITE: u32 = 0;
/// `CONSOLEIO_read`.
pub const CONSOLEIO_READ: u32 = 1;
/// Longest `CONSOLEIO_write` taken in one call (Xen also works in chunks).
const CONSOLE_CHUNK: u64 = 4096;

impl<M: GuestMemoryBackend> Hypervisor<M> {
    pub(super) fn xen_version(
        &self,
        mem: &dyn GuestVirt,
        cmd: u32,
        arg: u64,
    ) -> Result<i64, Errno> {
        let (major, minor) = self.info.version;
        match cmd {
            XENVER_VERSION => Ok(i64::from(encode_version(major, minor))),
            XENVER_EXTRAVERSION => {
                let mut v = [0u8; XEN_EXTRAVERSION_LEN];
                fill_cstr(&mut v, ".0-oxen");
                mem.write(arg, &v).map(|()| 0)
            }
            XENVER_CAPABILITIES => {
                let mut v = vec![0u8; XEN_CAPABILITIES_INFO_LEN];
                fill_cstr(&mut v, &format!("hvm-{major}.{minor}-x86_64"));
                mem.write(arg, &v).map(|()| 0)
            }
            XENVER_CHANGESET => {
                let mut v = [0u8; XEN_CHANGESET_INFO_LEN];
                fill_cstr(&mut v, "oxen");
                mem.write(arg, &v).map(|()| 0)
            }
            XENVER_COMPILE_INFO => {
                let mut v = XenCompileInfo::default();
                fill_cstr(&mut v.compiler, "rustc");
                fill_cstr(&mut v.compile_by, "oxen");
                write_obj(mem, arg, &v).map(|()| 0)
            }
            XENVER_PLATFORM_PARAMETERS => {
                // HVM guests have no hypervisor hole in their address space.
                let v = XenPlatformParameters { virt_start: 0 };
                write_obj(mem, arg, &v).map(|()| 0)
            }
            XENVER_GET_FEATURES => {
                let mut v: XenFeatureInfo = super::read_obj(mem, arg)?;
                v.submap = self.info.features.submap(v.submap_idx);
                write_obj(mem, arg, &v).map(|()| 0)
            }
            XENVER_PAGESIZE => Ok(crate::abi::PAGE_SIZE as i64),
            XENVER_GUEST_HANDLE => {
                let v: [u8; XEN_DOMAIN_HANDLE_LEN] = self.state().handle;
                mem.write(arg, &v).map(|()| 0)
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    pub(super) fn console_io(
        &self,
        mem: &dyn GuestVirt,
        cmd: u32,
        count: u64,
        buf: u64,
    ) -> Result<i64, Errno> {
        match cmd {
            CONSOLEIO_WRITE => {
                let n = count.min(CONSOLE_CHUNK) as usize;
                let mut text = vec![0u8; n];
                mem.read(buf, &mut text)?;
                self.platform.console_write(&text);
                Ok(n as i64)
            }
            // Nothing to read: Xen's console input goes to dom0 only.
            CONSOLEIO_READ => Ok(0),
            _ => Err(Errno::EINVAL),
        }
    }
}
