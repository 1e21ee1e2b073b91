//! The toolstack's side of a Xen domain: its Xenstore entries (the ones libxl writes for an HVM
//! guest), its introduction to Xenstore with the store ring, the link `oxenstored` maps that
//! ring through, and the PV console backend. Dropping [`XenParts`] undoes it all.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use vm_memory::GuestAddress;
use vmm::xen::XenDomain;
use vmm_sys_util::eventfd::EventFd;
use xenstore::client::Client;
use xenstore::wire::MsgType;

use crate::console;

/// Xenstore's socket: `$XENSTORED_PATH` or the standard path.
pub fn xenstore_socket() -> PathBuf {
    xenstore::transport::unix::socket_path(None)
}

/// Connects to Xenstore, with the error an administrator can act on.
pub fn connect() -> Result<Client> {
    let path = xenstore_socket();
    Client::connect(&path).with_context(|| {
        format!(
            "cannot reach xenstored at {} (is oxenstored running? XENSTORED_PATH selects another socket)",
            path.display()
        )
    })
}

/// What the domain needs from the host while it runs.
pub struct XenParts {
    client: Client,
    domid: u32,
    uuid: String,
    _link: backend_link::LinkServer,
    _console: xen_console::PvConsole,
}

impl std::fmt::Debug for XenParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenParts")
            .field("domid", &self.domid)
            .finish()
    }
}

/// Facts about the domain written to Xenstore.
#[derive(Debug)]
pub struct DomainFacts<'a> {
    /// Domain name.
    pub name: &'a str,
    /// Domain id.
    pub domid: u32,
    /// UUID.
    pub uuid: &'a str,
    /// vCPUs online at boot, and the most it may have.
    pub vcpus: (u32, u32),
    /// Memory at boot and the most it may have, KiB.
    pub memory_kib: (u64, u64),
}

/// A random UUID (the kernel's generator), for domains whose config gives none.
pub fn random_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "00000000-0000-0000-0000-000000000000".into())
}

/// The 16 bytes of a UUID in its text form (zeros for anything else; xlcfg checked the form).
pub fn uuid_bytes(uuid: &str) -> [u8; 16] {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = hex
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    out
}

/// Sets the domain up in Xenstore and starts its backends.
pub fn attach(facts: &DomainFacts, xen: &Arc<XenDomain>) -> Result<XenParts> {
    let domid = facts.domid;
    let link_path = backend_link::socket_path(domid);
    let link = xen
        .serve_store_link(&link_path)
        .with_context(|| format!("serving the Xenstore ring on {}", link_path.display()))?;

    let (console_gfn, console_port) = xen.console_ring();
    let page =
        xen_console::GuestMemoryPage::new(xen.memory().clone(), GuestAddress(console_gfn << 12))
            .context("the console page")?;
    let kick = EventFd::new(libc::EFD_NONBLOCK).context("eventfd")?;
    let notify = xen
        .bind_kick(console_port, &kick)
        .context("binding the console port")?;
    let pv = console::start_pv(facts.name, Arc::new(page), kick, Box::new(move || notify()))?;

    let mut client = connect()?;
    write_nodes(&mut client, facts, xen).context("writing the domain's Xenstore entries")?;
    let (store_gfn, store_port) = xen.store_ring();
    client
        .introduce(domid, store_gfn as i64, store_port)
        .context("introducing the domain to Xenstore")?;
    Ok(XenParts {
        client,
        domid,
        uuid: facts.uuid.to_string(),
        _link: link,
        _console: pv,
    })
}

fn write_nodes(c: &mut Client, f: &DomainFacts, xen: &XenDomain) -> Result<()> {
    let d = f.domid;
    let dom = format!("/local/domain/{d}");
    let vm = format!("/vm/{}", f.uuid);
    let ro = ["n0".to_string(), format!("r{d}")];
    let rw = [format!("n{d}")];
    let (store_gfn, store_port) = xen.store_ring();
    let (console_gfn, console_port) = xen.console_ring();
    // Other toolstack commands (another domain's creation) may write at the same time: the
    // transaction starts over when its commit conflicts.
    c.transact(|c, tx| -> Result<()> {
        let put = |c: &mut Client, path: &str, value: &str, perms: &[String]| -> Result<()> {
            c.write(tx, path, value.as_bytes())?;
            let p: Vec<&str> = perms.iter().map(String::as_str).collect();
            c.set_perms(tx, path, &p)?;
            Ok(())
        };
        put(c, &dom, "", &ro)?;
        put(c, &vm, "", &ro)?;
        put(c, &format!("{vm}/uuid"), f.uuid, &ro)?;
        put(c, &format!("{vm}/name"), f.name, &ro)?;
        put(c, &format!("{dom}/vm"), &vm, &ro)?;
        put(c, &format!("{dom}/name"), f.name, &ro)?;
        put(c, &format!("{dom}/domid"), &d.to_string(), &ro)?;
        for sub in ["device", "data", "drivers", "feature", "attr", "error"] {
            put(c, &format!("{dom}/{sub}"), "", &rw)?;
        }
        put(c, &format!("{dom}/control"), "", &ro)?;
        put(c, &format!("{dom}/control/shutdown"), "", &rw)?;
        for feat in [
            "feature-poweroff",
            "feature-reboot",
            "feature-suspend",
            "sysrq",
        ] {
            put(c, &format!("{dom}/control/{feat}"), "", &rw)?;
        }
        put(
            c,
            &format!("{dom}/control/platform-feature-multiprocessor-suspend"),
            "1",
            &ro,
        )?;
        put(c, &format!("{dom}/memory"), "", &ro)?;
        put(
            c,
            &format!("{dom}/memory/static-max"),
            &f.memory_kib.1.to_string(),
            &ro,
        )?;
        put(
            c,
            &format!("{dom}/memory/target"),
            &f.memory_kib.0.to_string(),
            &ro,
        )?;
        put(c, &format!("{dom}/memory/videoram"), "-1", &ro)?;
        for cpu in 0..f.vcpus.1 {
            let state = if cpu < f.vcpus.0 { "online" } else { "offline" };
            put(c, &format!("{dom}/cpu/{cpu}/availability"), state, &ro)?;
        }
        put(
            c,
            &format!("{dom}/store/ring-ref"),
            &store_gfn.to_string(),
            &ro,
        )?;
        put(
            c,
            &format!("{dom}/store/port"),
            &store_port.to_string(),
            &ro,
        )?;
        put(
            c,
            &format!("{dom}/console/ring-ref"),
            &console_gfn.to_string(),
            &ro,
        )?;
        put(
            c,
            &format!("{dom}/console/port"),
            &console_port.to_string(),
            &ro,
        )?;
        put(c, &format!("{dom}/console/type"), "xenconsoled", &ro)?;
        put(c, &format!("{dom}/console/limit"), "1048576", &ro)?;
        Ok(())
    })
}

impl Drop for XenParts {
    fn drop(&mut self) {
        // As xl does on destroy: forget the domain in Xenstore (fires @releaseDomain).
        let id = format!("{}\0", self.domid);
        if let Err(e) = self.client.request(MsgType::Release, 0, id.as_bytes()) {
            tracing::warn!(domid = self.domid, "releasing the domain in Xenstore: {e}");
        }
        for path in [
            format!("/local/domain/{}", self.domid),
            format!("/vm/{}", self.uuid),
        ] {
            if let Err(e) = self.client.rm(0, &path) {
                tracing::warn!("removing {path} from Xenstore: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::uuid_bytes;

    #[test]
    fn uuid_text_to_bytes() {
        let b = uuid_bytes("6f1c2a3e-0b5d-4e8f-9a7c-2d4e6f8a0b1c");
        assert_eq!(b[0], 0x6f);
        assert_eq!(b[4], 0x0b);
        assert_eq!(b[15], 0x1c);
        assert_eq!(uuid_bytes("junk"), [0; 16]);
    }
}
