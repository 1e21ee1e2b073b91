//! xl's `vif = [ 'SPEC', ... ]` (xl-network-configuration(5)) plus Oxen's `queues=`.
//!
//! A spec is comma-separated `key=value` pairs, all optional; `''` is a vif with every default.

mod rate;
#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::str::FromStr;

use crate::spec::{check_backend, set_once, small_number};
use crate::suggest::did_you_mean;
pub use rate::{parse_rate, VifRate, DEFAULT_RATE_INTERVAL_US};

/// Xen's OUI, the first three bytes of generated MAC addresses.
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];
/// xl's default bridge.
pub const DEFAULT_BRIDGE: &str = "xenbr0";
/// Most queues a vif may be given.
pub const MAX_VIF_QUEUES: u8 = 16;

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Xen's OUI plus three bytes, the top bit of the first cleared as xl does (leaving the
    /// upper half of the OUI's space to other tools).
    fn xen(tail: [u8; 3]) -> Self {
        let [a, b, c] = XEN_OUI;
        MacAddr([a, b, c, tail[0] & 0x7f, tail[1], tail[2]])
    }

    /// A random address in Xen's OUI, as xl gives a vif without `mac=`.
    pub fn xen_random() -> Self {
        // RandomState is seeded from the OS's random source: enough for an address that must
        // merely not collide, without another dependency.
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let r = h.finish().to_le_bytes();
        Self::xen([r[0], r[1], r[2]])
    }

    /// A stable address in Xen's OUI for vif `index` of the domain with UUID `uuid`: the same
    /// configuration gets the same addresses on every start.
    pub fn xen_derived(uuid: &str, index: usize) -> Self {
        // FNV-1a: fixed and portable, unlike std's hashers.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let index = index.to_le_bytes();
        for b in uuid.to_ascii_lowercase().bytes().chain(index) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let r = h.to_le_bytes();
        Self::xen([r[0] ^ r[3], r[1] ^ r[4], r[2] ^ r[5]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Six colon-separated pairs of hex digits; multicast and all-zero addresses are refused.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("'{s}' is not a MAC address (six hex pairs such as 00:16:3e:12:34:56)");
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let p = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() || s.contains('+') {
            return Err(bad());
        }
        if mac[0] & 1 != 0 {
            return Err(format!("'{s}' is a multicast address, not a NIC's"));
        }
        if mac == [0; 6] {
            return Err(format!("'{s}' is not a usable MAC address"));
        }
        Ok(MacAddr(mac))
    }
}

/// One validated `vif` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifSpec {
    /// Device id (`devid=`). In `DomainConfig::vifs` always set: the index in the list unless
    /// given. From `parse_vif_spec`, `None` means "the lowest free one" (xl's choice).
    pub devid: Option<u32>,
    /// Guest MAC address: given, or generated in Xen's OUI.
    pub mac: MacAddr,
    /// Host bridge the backend interface joins (default `xenbr0`).
    pub bridge: String,
    /// Backend interface name (default `vifDOMID.DEVID`, chosen at start).
    pub vifname: Option<String>,
    /// Hotplug script, as given; Oxen itself adds the interface to the bridge.
    pub script: Option<String>,
    /// The guest's IP addresses, each optionally with `/prefix` (space-separated, as xl passes
    /// them to scripts).
    pub ip: Option<String>,
    /// Transmit limit.
    pub rate: Option<VifRate>,
    /// MTU; by default the bridge's.
    pub mtu: Option<u16>,
    /// Most queues the backend offers (Oxen's `queues=`, 1 to 16); `None` leaves it to the backend.
    pub queues: Option<u8>,
}

/// Keys a spec may use, for spelling hints.
const KEYS: &[&str] = &[
    "mac", "bridge", "type", "model", "vifname", "script", "ip", "rate", "devid", "mtu", "backend",
    "queues",
];

/// Linux interface names: 1 to 15 bytes, no `/`, `:` or white space, not `.` or `..`.
fn check_ifname(key: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{key}': '{name}' is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
        ))
    }
}

/// An IP address, optionally with a `/prefix` length.
fn is_ip(s: &str) -> bool {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
}

/// Parses one vif spec, as written in `vif = [...]` or given to `oxl network-attach`; without
/// `mac=` the address is random in Xen's OUI.
pub fn parse_vif_spec(spec: &str) -> Result<VifSpec, String> {
    parse_vif_spec_with(spec, MacAddr::xen_random)
}

/// [`parse_vif_spec`] with the address to use when `mac=` is absent.
pub fn parse_vif_spec_with(
    spec: &str,
    default_mac: impl FnOnce() -> MacAddr,
) -> Result<VifSpec, String> {
    let (mut vif, mac) = parse_fields(spec)?;
    vif.mac = mac.unwrap_or_else(default_mac);
    Ok(vif)
}

/// Reads a spec; the MAC address comes back apart, `None` when not given.
fn parse_fields(spec: &str) -> Result<(VifSpec, Option<MacAddr>), String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut mac = None;
    let mut bridge = None;
    let mut vif = VifSpec {
        devid: None,
        mac: MacAddr([0; 6]),
        bridge: String::new(),
        vifname: None,
        script: None,
        ip: None,
        rate: None,
        mtu: None,
        queues: None,
    };
    for tok in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let Some((key, value)) = tok.split_once('=') else {
            return Err(format!(
                "'{tok}' is not KEY=VALUE{}",
                did_you_mean(tok, KEYS)
            ));
        };
        if seen.contains(&key) {
            return Err(format!("'{key}' is given twice"));
        }
        seen.push(key);
        match key {
            "mac" => mac = Some(value.parse::<MacAddr>()?),
            "bridge" => {
                check_ifname(key, value)?;
                set_once(&mut bridge, key, value)?;
            }
            "type" => match value {
                "vif" => {}
                "ioemu" => {
                    return Err(
                        "type 'ioemu' (an emulated NIC) is not supported: Oxen gives guests PV network devices (type=vif)"
                            .into(),
                    )
                }
                _ => return Err(format!("'{value}' is not a vif type (vif)")),
            },
            // The emulated NIC's model: there is none, the guest sees a PV device.
            "model" => {}
            "vifname" => {
                check_ifname(key, value)?;
                vif.vifname = Some(value.to_string());
            }
            "script" if value.is_empty() => return Err("'script': the script is empty".into()),
            "script" => vif.script = Some(value.to_string()),
            "ip" => {
                if let Some(a) = value.split_whitespace().find(|a| !is_ip(a)) {
                    return Err(format!("'ip': '{a}' is not an IP address"));
                }
                if value.trim().is_empty() {
                    return Err("'ip': no address given".into());
                }
                vif.ip = Some(value.to_string());
            }
            "rate" => vif.rate = Some(parse_rate(value).map_err(|m| format!("'rate': {m}"))?),
            "devid" => {
                let d = value.parse::<u32>().ok().filter(|d| *d <= i32::MAX as u32);
                vif.devid = Some(d.ok_or_else(|| {
                    format!("'devid': '{value}' is not a device id (0 to {})", i32::MAX)
                })?);
            }
            "mtu" => {
                let m = value.parse::<u16>().ok().filter(|m| *m >= 68);
                vif.mtu =
                    Some(m.ok_or_else(|| format!("'mtu': '{value}' is not an MTU (68 to 65535)"))?);
            }
            "backend" => check_backend(value)?,
            "queues" => vif.queues = Some(small_number(key, value, 1, MAX_VIF_QUEUES)?),
            _ => {
                return Err(format!(
                    "unknown vif parameter '{key}'{}",
                    did_you_mean(key, KEYS)
                ))
            }
        }
    }
    vif.bridge = bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
    Ok((vif, mac))
}

/// Parses a `vif` list. A vif without `devid=` gets the lowest id no other vif uses (its index
/// when none are given); without `mac=`, an address derived from `uuid` when there is one, else
/// a random one, never one another vif has. Errors name the spec by its index in the list.
pub(crate) fn parse_vif_list(specs: &[&str], uuid: Option<&str>) -> Result<Vec<VifSpec>, String> {
    let at = |i: usize, m: String| format!("vif {i} ('{}'): {m}", specs[i]);
    let mut parsed: Vec<(VifSpec, Option<MacAddr>)> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let (vif, mac) = parse_fields(spec).map_err(|m| at(i, m))?;
        if let Some(d) = vif.devid {
            if let Some(j) = parsed.iter().position(|p| p.0.devid == Some(d)) {
                return Err(at(i, format!("devid {d} is already used by vif {j}")));
            }
        }
        if let Some(m) = mac {
            if let Some(j) = parsed.iter().position(|p| p.1 == Some(m)) {
                return Err(at(i, format!("MAC {m} is already used by vif {j}")));
            }
        }
        parsed.push((vif, mac));
    }
    let mut devids: Vec<u32> = parsed.iter().filter_map(|p| p.0.devid).collect();
    let mut macs: Vec<MacAddr> = parsed.iter().filter_map(|p| p.1).collect();
    let mut vifs = Vec::with_capacity(parsed.len());
    for (i, (mut vif, mac)) in parsed.into_iter().enumerate() {
        if vif.devid.is_none() {
            let free = (0..).find(|d| !devids.contains(d)).unwrap_or_default();
            devids.push(free);
            vif.devid = Some(free);
        }
        vif.mac = match mac {
            Some(m) => m,
            None => {
                // Retry on the (unlikely) clash with an address already in the list.
                let mut attempt = 0;
                loop {
                    let m = match uuid {
                        Some(u) => MacAddr::xen_derived(u, i + attempt * specs.len()),
                        None => MacAddr::xen_random(),
                    };
                    if !macs.contains(&m) {
                        macs.push(m);
                        break m;
                    }
                    attempt += 1;
                }
            }
        };
        vifs.push(vif);
    }
    Ok(vifs)
}
