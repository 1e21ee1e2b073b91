//! Version queries (version.h).

use super::byte_valued;

/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: u32 = 0;
/// `XENVER_extraversion`: a 16-byte string.
pub const XENVER_EXTRAVERSION: u32 = 1;
/// `XENVER_compile_info`.
pub const XENVER_COMPILE_INFO: u32 = 2;
/// `XENVER_capabilities`: a 1024-byte string.
pub const XENVER_CAPABILITIES: u32 = 3;
/// `XENVER_changeset`: a 64-byte string.
pub const XENVER_CHANGESET: u32 = 4;
/// `XENVER_platform_parameters`.
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// `XENVER_get_features`.
pub const XENVER_GET_FEATURES: u32 = 6;
/// `XENVER_pagesize`.
pub const XENVER_PAGESIZE: u32 = 7;
/// `XENVER_guest_handle`.
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// `XENVER_commandline`.
pub const XENVER_COMMANDLINE: u32 = 9;
/// `XENVER_build_id`.
pub const XENVER_BUILD_ID: u32 = 10;

/// Length of `xen_extraversion_t`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// Length of `xen_capabilities_info_t`.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// Length of `xen_changeset_info_t`.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Length of `xen_domain_handle_t` (a UUID).
pub const XEN_DOMAIN_HANDLE_LEN: usize = 16;

/// Encodes a version as `XENVER_version` returns it.
pub fn encode_version(major: u16, minor: u16) -> u32 {
    (u32::from(major) << 16) | u32::from(minor)
}

/// `struct xen_feature_info` (XENVER_get_features).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit submap.
    pub submap_idx: u32,
    /// OUT: its `XENFEAT_*` bits.
    pub submap: u32,
}

/// `struct xen_platform_parameters`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct XenPlatformParameters {
    /// Start of Xen's virtual address hole.
    pub virt_start: u64,
}

/// `struct xen_compile_info`.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct XenCompileInfo {
    /// Compiler name.
    pub compiler: [u8; 64],
    /// Who compiled.
    pub compile_by: [u8; 16],
    /// Build host's domain.
    pub compile_domain: [u8; 32],
    /// Build date.
    pub compile_date: [u8; 32],
}

impl Default for XenCompileInfo {
    fn default() -> Self {
        XenCompileInfo {
            compiler: [0; 64],
            compile_by: [0; 16],
            compile_domain: [0; 32],
            compile_date: [0; 32],
        }
    }
}

/// Fills a fixed-size NUL-terminated string field, truncating to leave the terminator.
pub fn fill_cstr(dst: &mut [u8], s: &str) {
    dst.fill(0);
    let n = s.len().min(dst.len().saturating_sub(1));
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

byte_valued!(XenFeatureInfo, XenPlatformParameters, XenCompileInfo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_version_h() {
        crate::abi::assert_sizes!(
            XenFeatureInfo => 8,
            XenPlatformParameters => 8,
            XenCompileInfo => 144,
        );
        assert_eq!(encode_version(4, 19), 0x0004_0013);
    }

    #[test]
    fn cstr_fields_keep_their_terminator() {
        let mut extra = [0xffu8; XEN_EXTRAVERSION_LEN];
        fill_cstr(&mut extra, ".0-oxen-with-a-long-suffix");
        assert_eq!(&extra[..15], b".0-oxen-with-a-");
        assert_eq!(extra[15], 0);
        fill_cstr(&mut extra, ".1");
        assert_eq!(&extra[..3], b".1\0");
        assert!(extra[3..].iter().all(|&b| b == 0));
        fill_cstr(&mut [], "x");
    }
}
