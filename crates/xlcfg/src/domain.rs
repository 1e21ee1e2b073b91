//! The domain settings Oxen understands, checked for type and range.

use std::path::PathBuf;

use crate::disk::{parse_disk_list, DiskSpec};
use crate::error::ConfigError;
use crate::parse::{Setting, Value};
use crate::suggest::did_you_mean;
use crate::vif::{parse_vif_list, VifSpec};

/// Smallest memory a domain may have, in MiB: below this no Linux kernel gets to init.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest memory a domain may be configured with, in MiB (16 TiB).
const MAX_MEMORY_MIB: u64 = 16 << 20;
/// Largest vCPU count the configuration accepts; the host's KVM may allow fewer.
const MAX_VCPUS: u32 = 512;
/// Xen's memory default for HVM domains when `memory` is absent, in MiB.
const DEFAULT_MEMORY_MIB: u64 = 128;

/// What to do when the guest powers off, reboots or crashes (xl's `on_*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Destroy the domain.
    Destroy,
    /// Destroy the domain and start it again from its configuration.
    Restart,
    /// Keep the domain (stopped) for inspection until it is destroyed.
    Preserve,
    /// Write a core dump of guest memory, then destroy.
    CoredumpDestroy,
    /// Write a core dump of guest memory, then restart.
    CoredumpRestart,
}

impl Action {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "destroy" => Action::Destroy,
            "restart" => Action::Restart,
            "preserve" => Action::Preserve,
            "coredump-destroy" => Action::CoredumpDestroy,
            "coredump-restart" => Action::CoredumpRestart,
            "rename-restart" | "soft-reset" => return Err(format!("action '{s}' is not supported by Oxen")),
            _ => {
                return Err(format!(
                    "'{s}' is not an action (destroy, restart, preserve, coredump-destroy, coredump-restart)"
                ))
            }
        })
    }

    /// Whether the action starts the domain again.
    pub fn restarts(self) -> bool {
        matches!(self, Action::Restart | Action::CoredumpRestart)
    }

    /// Whether the action dumps guest memory first.
    pub fn dumps_core(self) -> bool {
        matches!(self, Action::CoredumpDestroy | Action::CoredumpRestart)
    }
}

/// Where the emulated 16550 serial port's output goes (xl's `serial`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialTarget {
    /// A pseudo-terminal (xl's default `pty`); `oxl create -c` puts it on the terminal instead.
    Pty,
    /// Appended to a file.
    File(PathBuf),
    /// No serial port.
    None,
}

/// A validated domain configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainConfig {
    /// Domain name.
    pub name: String,
    /// UUID, if one was given.
    pub uuid: Option<String>,
    /// Memory at start, MiB.
    pub memory_mib: u64,
    /// Maximum memory, MiB (at least `memory_mib`).
    pub maxmem_mib: u64,
    /// vCPUs online at start.
    pub vcpus: u32,
    /// Maximum vCPUs (at least `vcpus`).
    pub maxvcpus: u32,
    /// Kernel image (bzImage or ELF vmlinux).
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub ramdisk: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Action on guest poweroff.
    pub on_poweroff: Action,
    /// Action on guest reboot.
    pub on_reboot: Action,
    /// Action on guest crash.
    pub on_crash: Action,
    /// Serial port target.
    pub serial: SerialTarget,
    /// Whether the guest sees the Xen HVM interface (hypercalls, event channels, Xenstore, PV
    /// console). Oxen's own key, `xen_interface`.
    pub xen_interface: bool,
    /// Disks (`disk`), in list order.
    pub disks: Vec<DiskSpec>,
    /// Network interfaces (`vif`), in list order.
    pub vifs: Vec<VifSpec>,
}

/// Every key this version accepts, used to suggest a spelling for an unknown one.
const KEYS: &[&str] = &[
    "name",
    "uuid",
    "type",
    "builder",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "kernel",
    "ramdisk",
    "cmdline",
    "extra",
    "root",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "serial",
    "xen_interface",
    "disk",
    "vif",
];

struct Reader<'a> {
    s: &'a Setting,
}

impl<'a> Reader<'a> {
    fn err(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.s.source_name, self.s.line, Some(&self.s.key), msg)
    }

    fn string(&self) -> Result<String, ConfigError> {
        match &self.s.value {
            Value::String(s) => Ok(s.clone()),
            v => Err(self.err(format!("expected a string, found {}", v.kind()))),
        }
    }

    fn number(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        match &self.s.value {
            Value::Number(n) if (min..=max).contains(n) => Ok(*n),
            Value::Number(n) => Err(self.err(format!("{n} is out of range ({min} to {max})"))),
            v => Err(self.err(format!("expected a number, found {}", v.kind()))),
        }
    }

    /// A list of strings (`disk`, `vif`).
    fn strings(&self) -> Result<Vec<&'a str>, ConfigError> {
        let s: &'a Setting = self.s;
        let Value::List(items) = &s.value else {
            return Err(self.err(format!(
                "expected a list of strings, found {}",
                self.s.value.kind()
            )));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                v => Err(self.err(format!("item {i} is {}, expected a string", v.kind()))),
            })
            .collect()
    }

    fn path(&self) -> Result<PathBuf, ConfigError> {
        let s = self.string()?;
        if s.is_empty() {
            return Err(self.err("the path is empty"));
        }
        Ok(PathBuf::from(s))
    }
}

impl DomainConfig {
    /// Interprets parsed settings (file settings first, then overrides; the last one of a key wins).
    pub fn from_settings(settings: &[Setting]) -> Result<Self, ConfigError> {
        let mut name = None;
        let mut uuid = None;
        let mut memory = None;
        let mut maxmem = None;
        let mut vcpus = None;
        let mut maxvcpus = None;
        let mut kernel = None;
        let mut ramdisk = None;
        let mut cmdline = None;
        let mut extra = None;
        let mut root = None;
        let mut on_poweroff = Action::Destroy;
        let mut on_reboot = Action::Restart;
        let mut on_crash = Action::Destroy;
        let mut serial = SerialTarget::Pty;
        let mut xen_interface = false;
        let mut disks = Vec::new();
        let mut vifs = None;
        let mut last_line = (String::from("configuration"), 0);

        for s in settings {
            let r = Reader { s };
            last_line = (s.source_name.clone(), s.line);
            let action = |r: &Reader| Action::parse(&r.string()?).map_err(|m| r.err(m));
            match s.key.as_str() {
                "name" => {
                    let n = r.string()?;
                    validate_name(&n).map_err(|m| r.err(m))?;
                    name = Some((n, s.line));
                }
                "uuid" => {
                    let u = r.string()?;
                    if !is_uuid(&u) {
                        return Err(r.err(format!(
                            "'{u}' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
                        )));
                    }
                    uuid = Some(u);
                }
                "type" | "builder" => {
                    let t = r.string()?;
                    if t != "hvm" {
                        return Err(r.err(format!(
                            "type '{t}' is not supported: Oxen runs domains as HVM"
                        )));
                    }
                }
                "memory" => {
                    memory = Some((
                        r.number(MIN_MEMORY_MIB as i64, MAX_MEMORY_MIB as i64)? as u64,
                        s,
                    ))
                }
                "maxmem" => {
                    maxmem = Some((
                        r.number(MIN_MEMORY_MIB as i64, MAX_MEMORY_MIB as i64)? as u64,
                        s,
                    ))
                }
                "vcpus" => vcpus = Some((r.number(1, MAX_VCPUS.into())? as u32, s)),
                "maxvcpus" => maxvcpus = Some((r.number(1, MAX_VCPUS.into())? as u32, s)),
                "kernel" => kernel = Some(r.path()?),
                "ramdisk" => ramdisk = Some(r.path()?),
                "cmdline" => cmdline = Some(r.string()?),
                "extra" => extra = Some(r.string()?),
                "root" => root = Some(r.string()?),
                "on_poweroff" => on_poweroff = action(&r)?,
                "on_reboot" => on_reboot = action(&r)?,
                "on_crash" => on_crash = action(&r)?,
                "xen_interface" => xen_interface = r.number(0, 1)? == 1,
                "disk" => disks = parse_disk_list(&r.strings()?).map_err(|m| r.err(m))?,
                // Default MACs derive from the UUID, which may come later in the file.
                "vif" => vifs = Some((r.strings()?, s)),
                "serial" => {
                    // xl accepts one device or a list; Oxen has one serial port.
                    let v = match &s.value {
                        Value::List(items) if items.len() == 1 => items[0].clone(),
                        Value::List(items) => {
                            return Err(
                                r.err(format!("{} serial ports given, Oxen has one", items.len()))
                            )
                        }
                        v => v.clone(),
                    };
                    let Value::String(v) = v else {
                        return Err(r.err(format!("expected a string, found {}", v.kind())));
                    };
                    serial = match v.as_str() {
                        "pty" => SerialTarget::Pty,
                        "none" => SerialTarget::None,
                        f if f.starts_with("file:") && f.len() > 5 => {
                            SerialTarget::File(PathBuf::from(&f[5..]))
                        }
                        other => {
                            return Err(r.err(format!(
                                "'{other}' is not a serial target (pty, none, file:PATH)"
                            )))
                        }
                    };
                }
                other => return Err(r.err(format!("unknown setting{}", did_you_mean(other, KEYS)))),
            }
        }

        let missing = |key: &str| {
            ConfigError::new(
                &last_line.0,
                last_line.1,
                Some(key),
                "is required but not set",
            )
        };
        let name = name.ok_or_else(|| missing("name"))?.0;
        let kernel = kernel.ok_or_else(|| missing("kernel"))?;
        let memory_mib = memory.as_ref().map(|m| m.0).unwrap_or(DEFAULT_MEMORY_MIB);
        let maxmem_mib = match &maxmem {
            Some((m, s)) if *m < memory_mib => {
                return Err(Reader { s }.err(format!(
                    "maxmem ({m} MiB) is below memory ({memory_mib} MiB)"
                )))
            }
            Some((m, _)) => *m,
            None => memory_mib,
        };
        let vcpus_n = vcpus.as_ref().map(|v| v.0).unwrap_or(1);
        let maxvcpus_n = match &maxvcpus {
            Some((m, s)) if *m < vcpus_n => {
                return Err(Reader { s }.err(format!("maxvcpus ({m}) is below vcpus ({vcpus_n})")))
            }
            Some((m, _)) => *m,
            None => vcpus_n,
        };
        let vifs = match vifs {
            Some((specs, s)) => {
                parse_vif_list(&specs, uuid.as_deref()).map_err(|m| Reader { s }.err(m))?
            }
            None => Vec::new(),
        };
        // xl: `cmdline` wins; otherwise "root=ROOT EXTRA".
        let cmdline = cmdline.unwrap_or_else(|| {
            let mut parts = Vec::new();
            if let Some(r) = root {
                parts.push(format!("root={r}"));
            }
            if let Some(e) = extra {
                parts.push(e);
            }
            parts.join(" ")
        });
        Ok(DomainConfig {
            name,
            uuid,
            memory_mib,
            maxmem_mib,
            vcpus: vcpus_n,
            maxvcpus: maxvcpus_n,
            kernel,
            ramdisk,
            cmdline,
            on_poweroff,
            on_reboot,
            on_crash,
            serial,
            xen_interface,
            disks,
            vifs,
        })
    }

    /// Parses a configuration file's text plus `KEY=VALUE` overrides (as given to `oxl create`).
    pub fn load(text: &str, file_name: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut settings = crate::parse(text, file_name)?;
        for o in overrides {
            settings.extend(crate::parse(o, "command line")?);
        }
        Self::from_settings(&settings)
    }
}

fn validate_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("the name is empty".into());
    }
    if n.len() > 64 {
        return Err(format!(
            "the name is {} characters long, at most 64 are allowed",
            n.len()
        ));
    }
    if n == "Domain-0" {
        return Err("'Domain-0' is the host's name".into());
    }
    if n.chars().all(|c| c.is_ascii_digit()) {
        return Err("an all-digit name would be mistaken for a domain id".into());
    }
    if let Some(c) = n
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "'{c}' is not allowed in a name (letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<DomainConfig, ConfigError> {
        DomainConfig::load(text, "d.cfg", &[])
    }

    const BASE: &str = "name='t'\nkernel='/k'\n";

    #[test]
    fn full_config() {
        let c = load(
            "name = 'demo'\nmemory = 512\nmaxmem=1024\nvcpus=2\nmaxvcpus=4\nkernel='/boot/vmlinuz'\nramdisk='/i.gz'\n\
             root='/dev/xvda1'\nextra='console=hvc0'\non_reboot='destroy'\non_crash='preserve'\nserial='file:/tmp/s'\n",
        )
        .unwrap();
        assert_eq!(c.name, "demo");
        assert_eq!(
            (c.memory_mib, c.maxmem_mib, c.vcpus, c.maxvcpus),
            (512, 1024, 2, 4)
        );
        assert_eq!(c.cmdline, "root=/dev/xvda1 console=hvc0");
        assert_eq!(
            (c.on_poweroff, c.on_reboot, c.on_crash),
            (Action::Destroy, Action::Destroy, Action::Preserve)
        );
        assert_eq!(c.serial, SerialTarget::File("/tmp/s".into()));
        assert_eq!(c.ramdisk.as_deref(), Some(std::path::Path::new("/i.gz")));
    }

    #[test]
    fn defaults_follow_xl() {
        let c = load(BASE).unwrap();
        assert_eq!(
            (c.memory_mib, c.maxmem_mib, c.vcpus, c.maxvcpus),
            (128, 128, 1, 1)
        );
        assert_eq!(
            (c.on_poweroff, c.on_reboot, c.on_crash),
            (Action::Destroy, Action::Restart, Action::Destroy)
        );
        assert_eq!(c.serial, SerialTarget::Pty);
        assert_eq!(c.cmdline, "");
    }

    #[test]
    fn cmdline_overrides_root_and_extra() {
        let c = load(&format!(
            "{BASE}root='/dev/a'\nextra='x'\ncmdline='only this'"
        ))
        .unwrap();
        assert_eq!(c.cmdline, "only this");
    }

    #[test]
    fn overrides_win_and_errors_name_the_command_line() {
        let c = DomainConfig::load(BASE, "d.cfg", &["vcpus=4".into(), "name=\"other\"".into()])
            .unwrap();
        assert_eq!((c.vcpus, c.name.as_str()), (4, "other"));
        let e = DomainConfig::load(BASE, "d.cfg", &["vcpus=0".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line:1: 'vcpus': 0 is out of range (1 to 512)"
        );
    }

    #[test]
    fn unknown_and_misspelled_keys() {
        let e = load(&format!("{BASE}memroy = 256\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.cfg:3: 'memroy': unknown setting (did you mean 'memory'?)"
        );
        let e = load(&format!("{BASE}frobnicate = 1\n")).unwrap_err();
        assert_eq!(e.to_string(), "d.cfg:3: 'frobnicate': unknown setting");
    }

    #[test]
    fn range_and_type_errors() {
        let cases = [
            ("vcpus = 0", "'vcpus': 0 is out of range (1 to 512)"),
            ("vcpus = 513", "'vcpus': 513 is out of range"),
            ("memory = 8", "'memory': 8 is out of range"),
            (
                "memory = '512'",
                "'memory': expected a number, found a string",
            ),
            ("kernel = 5", "'kernel': expected a string, found a number"),
            ("kernel = ''", "'kernel': the path is empty"),
            (
                "on_crash = 'explode'",
                "'on_crash': 'explode' is not an action",
            ),
            ("on_crash = 'soft-reset'", "not supported by Oxen"),
            (
                "serial = 'tcp:1'",
                "'serial': 'tcp:1' is not a serial target",
            ),
            ("serial = ['pty', 'pty']", "2 serial ports given"),
            ("type = 'pv'", "type 'pv' is not supported"),
            ("name = 'a b'", "' ' is not allowed in a name"),
            ("name = '42'", "all-digit name"),
            ("uuid = 'abc'", "is not a UUID"),
            (
                "memory = 256\nmaxmem = 128",
                "'maxmem': maxmem (128 MiB) is below memory (256 MiB)",
            ),
            (
                "vcpus = 4\nmaxvcpus = 2",
                "'maxvcpus': maxvcpus (2) is below vcpus (4)",
            ),
        ];
        for (line, want) in cases {
            let e = load(&format!("{BASE}{line}\n")).unwrap_err().to_string();
            assert!(e.starts_with("d.cfg:"), "{e}");
            assert!(e.contains(want), "for {line:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn required_keys() {
        let e = load("kernel='/k'").unwrap_err();
        assert!(e.to_string().contains("'name': is required"), "{e}");
        let e = load("name='x'").unwrap_err();
        assert!(e.to_string().contains("'kernel': is required"), "{e}");
    }

    #[test]
    fn uuid_accepted() {
        let c = load(&format!(
            "{BASE}uuid='12345678-9abc-def0-1234-56789abcdef0'"
        ))
        .unwrap();
        assert_eq!(
            c.uuid.as_deref(),
            Some("12345678-9abc-def0-1234-56789abcdef0")
        );
    }
}
