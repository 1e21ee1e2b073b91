//! A vif in one process: a Xenstore daemon on a temporary socket, fake domains (guest memory,
//! a real grant table, event channels as eventfd pairs), the toolstack's device nodes, a
//! netfront that behaves like Linux's (`front.rs`), and the real tap seen through an
//! `AF_PACKET` socket. Needs /dev/net/tun and CAP_NET_ADMIN (root).
#![allow(dead_code)]

mod front;

pub use front::{FrontOptions, Netfront};

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netback::{Vif, VifConfig};
use pv_host::{DomainHost, EventFdPort, EventPort};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use xen::abi::gnttab::{GrantEntryV1, GTF_PERMIT_ACCESS};
use xen::gnttab::{GnttabConfig, GrantTable};
use xenbus_backend::{create_device, DeviceId, XenbusState};

/// Longest wait for anything; only reached when a test fails.
pub const WAIT: Duration = Duration::from_secs(5);
/// A local experimental ethertype, to tell test frames from the kernel's own traffic.
pub const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

pub type Mem = GuestMemoryMmap;

/// 4 MiB of guest RAM; the grant table's 4 frames (2048 entries) at its top.
const RAM_FRAMES: u64 = 0x400;
const GT_GFN: u64 = 0x3f0;
const GT_FRAMES: u64 = 4;

/// Fails at once, with the reason, where taps cannot be made.
pub fn require_tun() {
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "netback's tests need /dev/net/tun (modprobe tun) and CAP_NET_ADMIN (root)"
    );
}

/// An in-process Xenstore daemon.
pub type Store = xenstore::testing::TestDaemon;

/// Polls `f` until it holds; fails the test after [`WAIT`].
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether `fd` becomes readable within `timeout`.
pub fn readable(fd: &EventFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0
}

/// The guest's end of a port it allocated for dom0.
#[derive(Debug)]
pub struct GuestPort {
    pub port: u32,
    pub kick: EventFd,
    pub call: EventFd,
}

/// port → (the backend's end, whether it is bound).
type PortTable = HashMap<u32, (EventFdPort, bool)>;

/// A guest without KVM: RAM, a v1 grant table in it, event channels as eventfds.
#[derive(Debug)]
pub struct Domain {
    pub domid: u32,
    pub mem: Mem,
    pub table: GrantTable<Mem>,
    ports: Arc<Mutex<PortTable>>,
    /// (next gfn, next gref, next port)
    next: Mutex<(u64, u32, u32)>,
}

impl Domain {
    pub fn new(domid: u32) -> Arc<Domain> {
        let mem = Mem::from_ranges(&[(GuestAddress(0), (RAM_FRAMES * 4096) as usize)]).unwrap();
        let table = GrantTable::new(GnttabConfig::new(domid as u16), mem.clone()).unwrap();
        for i in 0..GT_FRAMES {
            table.map_frame(i, GT_GFN + i).unwrap();
        }
        Arc::new(Domain {
            domid,
            mem,
            table,
            ports: Arc::default(),
            next: Mutex::new((0x10, 8, 10)),
        })
    }

    pub fn host(self: &Arc<Self>) -> Arc<dyn DomainHost> {
        self.clone()
    }

    /// A fresh zeroed page, granted writable to dom0: (gref, gpa).
    pub fn granted_page(&self) -> (u32, GuestAddress) {
        let mut n = self.next.lock().unwrap();
        assert!(n.0 < GT_GFN, "guest RAM exhausted");
        let (gfn, gref) = (n.0, n.1);
        n.0 += 1;
        n.1 += 1;
        let gpa = GuestAddress(gfn * 4096);
        self.mem.write_slice(&[0u8; 4096], gpa).unwrap();
        let e = GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS,
            domid: 0,
            frame: gfn as u32,
        };
        let at = GuestAddress(GT_GFN * 4096 + u64::from(gref) * 8);
        self.mem.write_obj(e, at).unwrap();
        (gref, gpa)
    }

    /// A grant reference the guest never wrote.
    pub fn unused_gref(&self) -> u32 {
        let mut n = self.next.lock().unwrap();
        n.1 += 1;
        n.1 - 1
    }

    /// `EVTCHNOP_alloc_unbound` for dom0.
    pub fn alloc_port(&self) -> GuestPort {
        let port = {
            let mut n = self.next.lock().unwrap();
            n.2 += 1;
            n.2 - 1
        };
        let backend = EventFdPort::new().unwrap();
        let guest = GuestPort {
            port,
            kick: backend.kick.try_clone().unwrap(),
            call: backend.call.try_clone().unwrap(),
        };
        self.ports.lock().unwrap().insert(port, (backend, false));
        guest
    }

    pub fn is_bound(&self, port: u32) -> bool {
        self.ports.lock().unwrap().get(&port).is_some_and(|p| p.1)
    }

    pub fn bound_ports(&self) -> usize {
        self.ports.lock().unwrap().values().filter(|p| p.1).count()
    }
}

impl DomainHost for Domain {
    fn domid(&self) -> u32 {
        self.domid
    }

    fn memory(&self) -> Mem {
        self.mem.clone()
    }

    fn grant_table(&self) -> GrantTable<Mem> {
        self.table.clone()
    }

    fn bind_port(&self, guest_port: u32) -> io::Result<Box<dyn EventPort>> {
        let mut ports = self.ports.lock().unwrap();
        let Some((p, bound)) = ports.get_mut(&guest_port) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "port not allocated",
            ));
        };
        if *bound {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "port bound"));
        }
        *bound = true;
        Ok(Box::new(Bound {
            inner: EventFdPort {
                kick: p.kick.try_clone()?,
                call: p.call.try_clone()?,
            },
            port: guest_port,
            ports: self.ports.clone(),
        }))
    }
}

/// The backend's end of a bound port; dropping it unbinds.
#[derive(Debug)]
struct Bound {
    inner: EventFdPort,
    port: u32,
    ports: Arc<Mutex<PortTable>>,
}

impl EventPort for Bound {
    fn kick(&self) -> &EventFd {
        self.inner.kick()
    }

    fn notify(&self) {
        self.inner.notify()
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = ports.get_mut(&self.port) {
            p.1 = false;
        }
    }
}

/// A MAC for domain `domid`.
pub fn mac(domid: u32) -> [u8; 6] {
    [0x00, 0x16, 0x3e, 0, 0, domid as u8]
}

/// A tap name unique to this test process.
pub fn tap_name(tag: &str) -> String {
    format!("oxv{}{tag}", std::process::id() % 100_000)
}

/// Writes the device's nodes as libxl does for a `vif`, then starts its back end.
pub fn attach(store: &Store, dom: &Arc<Domain>, devid: u32, cfg: VifConfig) -> (DeviceId, Vif) {
    let id = DeviceId::new("vif", dom.domid, devid);
    let m = cfg.mac.map(|b| format!("{b:02x}")).join(":");
    let mut backend = vec![("mac", m.clone()), ("handle", devid.to_string())];
    if let Some(b) = &cfg.bridge {
        backend.push(("bridge", b.clone()));
    }
    let frontend = [("mac", m), ("handle", devid.to_string())];
    create_device(&mut store.client(), &id, &backend, &frontend).unwrap();
    let vif = Vif::start(dom.host(), &store.socket, id.clone(), cfg).unwrap();
    (id, vif)
}

/// The back end's state.
pub fn backend_state(store: &Store, id: &DeviceId) -> Option<XenbusState> {
    store
        .read(&format!("{}/state", id.backend_path()))
        .and_then(|v| XenbusState::parse(v.as_bytes()))
}

/// A test frame of `len` bytes to `dst` from `src`, with [`ETHERTYPE`].
pub fn frame(dst: [u8; 6], src: [u8; 6], seed: u8, len: usize) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_mul(13) ^ seed));
    f
}

pub fn is_test_frame(f: &[u8]) -> bool {
    f.len() >= 14 && f[12..14] == ETHERTYPE
}
