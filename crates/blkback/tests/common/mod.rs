//! The whole vbd in one process: a Xenstore daemon on a temporary socket, fake domains (guest
//! memory, a real grant table, event channels as eventfd pairs), the toolstack's device nodes
//! and a blkfront that behaves like Linux's (`front.rs`).
#![allow(dead_code, unused_imports)]

mod front;

pub use front::{Blkfront, FrontOptions, FrontQueue, Nodes};

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use blkback::{Format, Vbd, VbdConfig};
use pv_host::{DomainHost, EventFdPort, EventPort};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use xen::abi::gnttab::{GrantEntryV1, GTF_PERMIT_ACCESS};
use xen::gnttab::{GnttabConfig, GrantTable};
use xenbus_backend::{create_device, DeviceId, XenbusState};
use xenstore::client::Client;

/// Longest wait for anything; only reached when a test fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Mem = GuestMemoryMmap;

/// Guest RAM of each fake domain: 4 MiB.
const RAM_FRAMES: u64 = 0x400;
/// The grant table's frames (4: 2048 v1 entries) sit at the top of RAM.
const GT_GFN: u64 = 0x3f0;
const GT_FRAMES: u64 = 4;
/// Pages handed out for rings and data start here.
const FIRST_GFN: u64 = 0x10;
/// Linux keeps the first 8 grant references for itself.
const FIRST_GREF: u32 = 8;

/// An in-process Xenstore daemon.
pub type Store = xenstore::testing::TestDaemon;

/// Polls `f` every few milliseconds until it holds; fails the test after [`WAIT`].
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Blocks until `fd` is readable or `timeout` passes; whether it is readable.
pub fn readable(fd: &EventFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// One unbound or bound guest port: the guest's ends of its two eventfds.
#[derive(Debug)]
struct PortSlot {
    kick: EventFd,
    call: EventFd,
    bound: bool,
}

#[derive(Debug, Default)]
struct Ports {
    next: u32,
    slots: HashMap<u32, PortSlot>,
    binds: u32,
    unbinds: u32,
}

/// A guest domain without KVM: RAM, a v1 grant table in it, event channels as eventfds.
#[derive(Debug)]
pub struct Domain {
    pub domid: u32,
    pub mem: Mem,
    pub table: GrantTable<Mem>,
    ports: Arc<Mutex<Ports>>,
    next_gfn: AtomicU64,
    next_gref: AtomicU32,
}

/// The guest's side of a port it allocated for dom0 (`EVTCHNOP_alloc_unbound`).
#[derive(Debug)]
pub struct GuestPort {
    pub port: u32,
    /// Written when the guest sends on the port.
    pub kick: EventFd,
    /// Signalled when the backend notifies.
    pub call: EventFd,
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
            ports: Arc::new(Mutex::new(Ports {
                next: 10,
                ..Ports::default()
            })),
            next_gfn: AtomicU64::new(FIRST_GFN),
            next_gref: AtomicU32::new(FIRST_GREF),
        })
    }

    pub fn host(self: &Arc<Self>) -> Arc<dyn DomainHost> {
        self.clone()
    }

    /// A fresh page of guest RAM, zeroed.
    pub fn alloc_page(&self) -> GuestAddress {
        let gfn = self.next_gfn.fetch_add(1, Ordering::Relaxed);
        assert!(gfn < GT_GFN, "guest RAM exhausted");
        let gpa = GuestAddress(gfn * 4096);
        self.mem.write_slice(&[0u8; 4096], gpa).unwrap();
        gpa
    }

    /// Grants the page at `gpa` to dom0, writable, as `gnttab_grant_foreign_access` does.
    pub fn grant(&self, gpa: GuestAddress) -> u32 {
        let gref = self.next_gref.fetch_add(1, Ordering::Relaxed);
        self.set_entry(gref, GTF_PERMIT_ACCESS, (gpa.0 / 4096) as u32);
        gref
    }

    /// Writes v1 grant entry `gref` as the guest would.
    pub fn set_entry(&self, gref: u32, flags: u16, frame: u32) {
        let e = GrantEntryV1 {
            flags,
            domid: 0,
            frame,
        };
        self.mem
            .write_obj(e, GuestAddress(GT_GFN * 4096 + u64::from(gref) * 8))
            .unwrap();
    }

    /// A grant reference the guest never wrote.
    pub fn unused_gref(&self) -> u32 {
        self.next_gref.fetch_add(1, Ordering::Relaxed)
    }

    /// Allocates a port for dom0 to bind.
    pub fn alloc_port(&self) -> GuestPort {
        let mut p = self.ports.lock().unwrap();
        let port = p.next;
        p.next += 1;
        let slot = PortSlot {
            kick: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            call: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            bound: false,
        };
        let guest = GuestPort {
            port,
            kick: slot.kick.try_clone().unwrap(),
            call: slot.call.try_clone().unwrap(),
        };
        p.slots.insert(port, slot);
        guest
    }

    /// A port number nobody allocated.
    pub fn unallocated_port(&self) -> u32 {
        let mut p = self.ports.lock().unwrap();
        p.next += 1;
        p.next - 1
    }

    /// Closes the guest's port (`EVTCHNOP_close`).
    pub fn close_port(&self, port: u32) {
        self.ports.lock().unwrap().slots.remove(&port);
    }

    pub fn is_bound(&self, port: u32) -> bool {
        self.ports
            .lock()
            .unwrap()
            .slots
            .get(&port)
            .is_some_and(|s| s.bound)
    }

    /// Ports the backend holds bound now.
    pub fn bound_ports(&self) -> usize {
        let p = self.ports.lock().unwrap();
        p.slots.values().filter(|s| s.bound).count()
    }

    /// (binds, unbinds) over the domain's life.
    pub fn bind_counts(&self) -> (u32, u32) {
        let p = self.ports.lock().unwrap();
        (p.binds, p.unbinds)
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
        let mut p = self.ports.lock().unwrap();
        let Some(slot) = p.slots.get_mut(&guest_port) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("port {guest_port} is not allocated"),
            ));
        };
        if slot.bound {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("port {guest_port} is already bound"),
            ));
        }
        let inner = EventFdPort {
            kick: slot.kick.try_clone()?,
            call: slot.call.try_clone()?,
        };
        slot.bound = true;
        p.binds += 1;
        Ok(Box::new(BoundPort {
            inner,
            port: guest_port,
            ports: self.ports.clone(),
        }))
    }
}

/// The backend's end of a port; dropping it unbinds the port.
#[derive(Debug)]
struct BoundPort {
    inner: EventFdPort,
    port: u32,
    ports: Arc<Mutex<Ports>>,
}

impl EventPort for BoundPort {
    fn kick(&self) -> &EventFd {
        self.inner.kick()
    }

    fn notify(&self) {
        self.inner.notify()
    }
}

impl Drop for BoundPort {
    fn drop(&mut self) {
        let mut p = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        p.unbinds += 1;
        if let Some(s) = p.slots.get_mut(&self.port) {
            s.bound = false;
        }
    }
}

/// Size of the test disks.
pub const DISK_SIZE: u64 = 4 << 20;

/// Byte `i` of the pattern a fresh raw disk starts with (each sector tells its number).
pub fn initial_byte(i: u64) -> u8 {
    ((i / 512) as u8) ^ 0x5a
}

/// A raw disk of [`DISK_SIZE`] bytes filled with [`initial_byte`].
pub fn raw_disk(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let data: Vec<u8> = (0..DISK_SIZE).map(initial_byte).collect();
    std::fs::write(&p, data).unwrap();
    p
}

pub fn config(path: &Path, format: Format) -> VbdConfig {
    VbdConfig {
        path: path.to_path_buf(),
        format,
        read_only: false,
        key: None,
        max_queues: 4,
        persistent_grants: true,
        max_ring_page_order: blkif::MAX_RING_PAGE_ORDER,
    }
}

/// Writes the device's nodes as libxl does for `xl block-attach`, then starts its back end.
pub fn attach(store: &Store, dom: &Arc<Domain>, devid: u32, cfg: VbdConfig) -> (DeviceId, Vbd) {
    let id = DeviceId::new("vbd", dom.domid, devid);
    let backend = [
        ("params", cfg.path.display().to_string()),
        ("type", cfg.format.name().to_string()),
        ("mode", if cfg.read_only { "r" } else { "w" }.to_string()),
        ("dev", "xvda".to_string()),
        ("removable", "0".to_string()),
    ];
    let frontend = [
        ("virtual-device", devid.to_string()),
        ("device-type", "disk".to_string()),
    ];
    create_device(&mut store.client(), &id, &backend, &frontend).unwrap();
    let vbd = Vbd::start(dom.host(), &store.socket, id.clone(), cfg).unwrap();
    (id, vbd)
}

/// One domain with one vbd (device [`DEV`]) and its blkfront, not yet connected, on a
/// Xenstore of its own.
pub struct Rig {
    pub vbd: Vbd,
    pub f: Blkfront,
    pub dom: Arc<Domain>,
    pub id: DeviceId,
    pub store: Store,
    /// The disk: raw ([`raw_disk`]) or a dynamic VHD, of [`DISK_SIZE`] bytes.
    pub path: PathBuf,
    pub dir: tempfile::TempDir,
}

/// The device number of a [`Rig`]'s vbd (xvda).
pub const DEV: u32 = 51712;

impl Rig {
    pub fn new(domid: u32, format: Format) -> Rig {
        Rig::with(domid, format, |_| {})
    }

    /// A rig whose vbd configuration `tweak` adjusts.
    pub fn with(domid: u32, format: Format, tweak: impl FnOnce(&mut VbdConfig)) -> Rig {
        let store = Store::start();
        let dir = tempfile::tempdir().unwrap();
        let path = match format {
            Format::Raw => raw_disk(dir.path(), "d.img"),
            Format::Vhd => {
                let p = dir.path().join("d.vhd");
                block::vhd::create(&p, &block::vhd::CreateOptions::dynamic(DISK_SIZE)).unwrap();
                p
            }
        };
        let dom = Domain::new(domid);
        let mut cfg = config(&path, format);
        tweak(&mut cfg);
        let (id, vbd) = attach(&store, &dom, DEV, cfg);
        let f = Blkfront::new(&store, &dom, &id);
        Rig {
            vbd,
            f,
            dom,
            id,
            store,
            path,
            dir,
        }
    }
}

/// The back end's state node.
pub fn backend_state(store: &Store, id: &DeviceId) -> Option<XenbusState> {
    store
        .read(&format!("{}/state", id.backend_path()))
        .and_then(|v| XenbusState::parse(v.as_bytes()))
}

/// Deterministic test data: `len` bytes that depend on `seed` and the position.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(97)) as u8
                ^ (i >> 9) as u8
        })
        .collect()
}
