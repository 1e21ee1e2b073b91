//! One domain's virtual machine on KVM: guest RAM in a memfd, an in-kernel interrupt controller
//! and PIT, vCPU threads, the legacy devices, and the kernel loaded per the Linux boot protocol.
//!
//! The VMM reports how the guest ended ([`VmEvent`]); what to do next (destroy, restart,
//! preserve) is the toolstack's decision, not the VMM's.
#![deny(missing_docs)]

pub mod control;
pub mod elf;
pub mod kcache;
pub mod kernel;
pub mod loader;
pub mod memory;
pub mod payload;
mod prefault;
pub mod timing;
mod vcpu;
pub mod xen;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arch::acpi::ports;
use devices::bus::{IoBus, SharedDevice};
use devices::legacy::{AcpiPm, PvPanic, ResetControl, ACPI_PM_LEN, I8042, I8042_PORT};
use devices::serial::{SerialPort, COM1_IRQ, COM1_PORT};
use devices::{EventSink, GuestEvent};
use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vmm_sys_util::eventfd::EventFd;

use memory::GuestRam;

/// Errors building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A KVM call failed.
    #[error("{what}: {source}")]
    Kvm {
        /// Which call.
        what: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// KVM is not usable on this host.
    #[error("{0}")]
    NoKvm(String),
    /// Guest memory could not be set up.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The configuration asks for more than the host can give.
    #[error("{0}")]
    Limits(String),
    /// The kernel, initrd or command line could not be loaded.
    #[error("{0}")]
    Boot(String),
    /// Platform setup failed.
    #[error("platform setup: {0}")]
    Arch(#[from] arch::Error),
    /// Thread or signal setup failed.
    #[error("{what}: {source}")]
    Os {
        /// Which step.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

/// How a domain's guest ended, or why the VMM stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The guest powered off (ACPI S5).
    Poweroff,
    /// The guest reset the machine (reboot or triple fault).
    Reset,
    /// The guest crashed: it reported a panic, or KVM could not run it.
    Crash(String),
    /// The guest suspended itself (`SCHEDOP_shutdown(SHUTDOWN_suspend)`), for a save.
    Suspend,
    /// The toolstack asked for the domain to be destroyed.
    Destroy,
}

/// What the VMM needs to build a domain's VM.
pub struct VmConfig {
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs started at boot.
    pub vcpus: u32,
    /// vCPUs the guest may ever have (the rest can be hot-plugged later).
    pub max_vcpus: u32,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Where COM1 output goes; `None` for no serial port.
    pub serial: Option<Box<dyn Write + Send>>,
    /// The Xen HVM interface (`None`: the guest sees plain KVM).
    pub xen: Option<xen::XenOptions>,
}

impl std::fmt::Debug for VmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmConfig")
            .field("memory_mib", &self.memory_mib)
            .field("vcpus", &self.vcpus)
            .field("max_vcpus", &self.max_vcpus)
            .field("kernel", &self.kernel)
            .field("initrd", &self.initrd)
            .field("cmdline", &self.cmdline)
            .field("serial", &self.serial.is_some())
            .field("xen", &self.xen)
            .finish()
    }
}

/// Pushes console input into the guest's serial port.
#[derive(Clone)]
pub struct SerialInput(Arc<Mutex<SerialPort>>);

impl std::fmt::Debug for SerialInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SerialInput")
    }
}

impl SerialInput {
    /// Queues bytes; returns how many the UART accepted (the rest should be retried).
    pub fn send(&self, bytes: &[u8]) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .enqueue_input(bytes)
    }
}

/// A built VM. Field order matters: vCPU threads are joined and the VM fd closed before guest
/// RAM is unmapped.
pub struct Vm {
    threads: Vec<(JoinHandle<()>, libc::pthread_t)>,
    vcpu_fds: Vec<kvm_ioctls::VcpuFd>,
    stop: Arc<AtomicBool>,
    events_tx: Sender<VmEvent>,
    events_rx: Receiver<VmEvent>,
    bus: Arc<IoBus>,
    serial: Option<Arc<Mutex<SerialPort>>>,
    controls: Vec<Arc<control::Control>>,
    xen: Option<Arc<xen::XenDomain>>,
    vm: VmFd,
    ram: Arc<GuestRam>,
    _kvm: Kvm,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("vcpus", &(self.threads.len() + self.vcpu_fds.len()))
            .finish()
    }
}

/// Physical memory of this host in MiB, from /proc/meminfo.
fn host_memory_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib >> 10)
}

fn map_guest_event(e: GuestEvent) -> VmEvent {
    match e {
        GuestEvent::Poweroff => VmEvent::Poweroff,
        GuestEvent::Reset => VmEvent::Reset,
        GuestEvent::Panic => VmEvent::Crash("the guest kernel panicked".into()),
    }
}

/// What [`Vm::platform`] builds.
struct Platform {
    vm: VmFd,
    vcpu_fds: Vec<kvm_ioctls::VcpuFd>,
    events_tx: Sender<VmEvent>,
    events_rx: Receiver<VmEvent>,
    bus: IoBus,
    serial: Option<Arc<Mutex<SerialPort>>>,
    controls: Vec<Arc<control::Control>>,
    xen: Option<Arc<xen::XenDomain>>,
    rsdp: u64,
}

impl Vm {
    /// Builds the VM: checks limits, creates RAM, irqchip, devices and vCPUs, and loads the
    /// kernel (on a thread of its own, while the rest is set up). Nothing runs until
    /// [`Vm::start`]. Each phase's time is logged at info (target [`timing::TARGET`]).
    pub fn new(mut cfg: VmConfig) -> Result<Vm> {
        let mut phases = timing::Phases::start("vm");
        if cfg.vcpus == 0 || cfg.max_vcpus < cfg.vcpus {
            return Err(Error::Limits(format!(
                "vcpus={} maxvcpus={} is not a valid CPU count",
                cfg.vcpus, cfg.max_vcpus
            )));
        }
        if let Some(host) = host_memory_mib() {
            if cfg.memory_mib > host {
                return Err(Error::Limits(format!(
                    "memory={} MiB is more than this host has ({host} MiB)",
                    cfg.memory_mib
                )));
            }
        }
        let kvm = Kvm::new().map_err(|e| {
            Error::NoKvm(format!(
                "cannot open /dev/kvm: {e} (is KVM enabled and are you allowed to use it?)"
            ))
        })?;
        let max = kvm.get_max_vcpus() as u32;
        if cfg.max_vcpus > max {
            return Err(Error::Limits(format!(
                "{} vCPUs requested; KVM on this host allows at most {max}",
                cfg.max_vcpus
            )));
        }

        if cfg.xen.is_some() {
            xen::check_support(&kvm)?;
        }
        let device_memory: &[(u64, u64)] = if cfg.xen.is_some() {
            &[
                (arch::layout::XEN_GRANT_START, arch::layout::XEN_GRANT_LEN),
                (
                    arch::layout::XEN_SPECIAL_START,
                    arch::layout::XEN_SPECIAL_PAGES << 12,
                ),
            ]
        } else {
            &[]
        };
        let ram = Arc::new(GuestRam::with_device_memory(
            cfg.memory_mib << 20,
            device_memory,
        )?);
        phases.lap("KVM checks and guest memory");

        // Reading and unpacking the kernel is the slow part of start-up: it runs beside the
        // rest, which writes guest memory only below 1 MiB (where no kernel loads).
        let loading = loader::spawn(
            ram.clone(),
            cfg.kernel.clone(),
            cfg.initrd.clone(),
            kcache::KernelCache::from_env(),
        )?;
        let platform = Self::platform(&kvm, &mut cfg, &ram, &mut phases);
        let images = loading.join();
        phases.lap("waiting for the kernel and initrd");
        let (p, images) = (platform?, images?);
        loader::write_boot_params(&ram, &images, &cfg.cmdline, p.rsdp)?;
        arch::regs::setup_boot_vcpu(&p.vcpu_fds[0], images.kernel.entry)?;
        phases.lap("zero page and boot registers");
        if prefault::supported(&p.vm) {
            let mut ranges = vec![images.kernel.range.clone()];
            ranges.extend(images.initrd.map(|(addr, size)| addr..addr + size));
            let bytes = prefault::ranges(&p.vcpu_fds[0], &ranges);
            tracing::debug!(bytes, "pre-faulted the kernel and initrd");
            phases.lap("pre-faulting the kernel and initrd");
        }

        Ok(Vm {
            threads: Vec::new(),
            vcpu_fds: p.vcpu_fds,
            stop: Arc::new(AtomicBool::new(false)),
            events_tx: p.events_tx,
            events_rx: p.events_rx,
            bus: Arc::new(p.bus),
            serial: p.serial,
            controls: p.controls,
            xen: p.xen,
            vm: p.vm,
            ram,
            _kvm: kvm,
        })
    }

    /// Everything but the kernel: the KVM VM, memory slots, devices, tables, Xen and vCPUs
    /// (the boot vCPU's registers wait for the kernel's entry point).
    fn platform(
        kvm: &Kvm,
        cfg: &mut VmConfig,
        ram: &Arc<GuestRam>,
        phases: &mut timing::Phases,
    ) -> Result<Platform> {
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        vm.set_tss_address(arch::layout::KVM_TSS_ADDR as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm.set_identity_map_address(arch::layout::KVM_IDENTITY_MAP_ADDR)
            .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;

        ram.register(&vm)?;
        phases.lap("KVM VM, irqchip and memory slots");

        let (events_tx, events_rx) = mpsc::channel();
        let tx = Mutex::new(events_tx.clone());
        let sink = EventSink::new(move |e| {
            let _ = tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(map_guest_event(e));
        });

        let mut bus = IoBus::default();
        let mut add = |base: u16, len: u16, dev: SharedDevice| {
            bus.insert(base, len, dev)
                .map_err(|e| Error::Limits(format!("device layout: {e}")))
        };
        let serial = match cfg.serial.take() {
            Some(out) => {
                let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::Os {
                    what: "eventfd",
                    source,
                })?;
                vm.register_irqfd(&irq, COM1_IRQ)
                    .map_err(kvm_err("KVM_IRQFD for COM1"))?;
                let s = Arc::new(Mutex::new(SerialPort::new(irq, out)));
                add(COM1_PORT, 8, s.clone())?;
                Some(s)
            }
            None => None,
        };
        add(
            I8042_PORT,
            5,
            Arc::new(Mutex::new(I8042::new(sink.clone()))),
        )?;
        add(
            ports::PM1A_EVT,
            ACPI_PM_LEN,
            Arc::new(Mutex::new(AcpiPm::new(sink.clone(), ports::S5_SLP_TYP))),
        )?;
        add(
            ports::RESET,
            1,
            Arc::new(Mutex::new(ResetControl::new(sink.clone()))),
        )?;
        add(ports::PVPANIC, 1, Arc::new(Mutex::new(PvPanic::new(sink))))?;
        if cfg.xen.is_some() {
            // Xen's platform device on PCI bus 0: its memory BAR is where the guest puts its
            // grant-table frames (backed by the grant region of guest memory).
            let mut pci = devices::pci::PciConfigIo::default();
            pci.add(0, Box::new(devices::pci::host_bridge()));
            pci.add(
                devices::xen_platform::SLOT,
                Box::new(devices::xen_platform::header((
                    arch::layout::XEN_GRANT_START as u32,
                    arch::layout::XEN_GRANT_BAR_LEN as u32,
                ))),
            );
            for (port, len, dev) in pci.into_ports() {
                add(port, len, dev)?;
            }
            add(
                devices::xen_platform::UNPLUG_PORT,
                devices::xen_platform::UNPLUG_LEN,
                Arc::new(Mutex::new(devices::xen_platform::Unplug::default())),
            )?;
        }

        let rsdp = arch::acpi::write_tables(&ram.mem, cfg.vcpus, cfg.max_vcpus, cfg.xen.is_some())?;
        arch::regs::write_boot_tables(&ram.mem)?;
        phases.lap("devices, ACPI and boot tables");

        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        let tsc_deadline = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
        let controls: Vec<Arc<control::Control>> = (0..cfg.vcpus).map(|_| Arc::default()).collect();
        let xen = match &cfg.xen {
            Some(opts) => Some(xen::XenDomain::setup(
                &vm,
                ram.clone(),
                controls.clone(),
                events_tx.clone(),
                opts,
                cfg.vcpus,
            )?),
            None => None,
        };
        phases.lap("Xen interface");
        let mut vcpu_fds = Vec::with_capacity(cfg.vcpus as usize);
        for id in 0..cfg.vcpus {
            let vcpu = vm
                .create_vcpu(u64::from(id))
                .map_err(kvm_err("KVM_CREATE_VCPU"))?;
            let mut cpuid = supported.clone();
            arch::cpuid::patch(&mut cpuid, id, cfg.max_vcpus, tsc_deadline);
            if let Some(opts) = &cfg.xen {
                cpuid = xen::patch_cpuid(&cpuid, id, opts.domid)?;
                xen::XenDomain::setup_vcpu(&vcpu, id)?;
            }
            vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
            arch::regs::setup_msrs(&vcpu)?;
            arch::regs::setup_lapic(&vcpu)?;
            vcpu_fds.push(vcpu);
        }
        phases.lap("vCPUs");

        Ok(Platform {
            vm,
            vcpu_fds,
            events_tx,
            events_rx,
            bus,
            serial,
            controls,
            xen,
            rsdp,
        })
    }

    /// Starts the vCPU threads.
    pub fn start(&mut self) -> Result<()> {
        vcpu::install_kick_handler().map_err(|source| Error::Os {
            what: "installing the vCPU kick handler",
            source,
        })?;
        for (id, fd) in self.vcpu_fds.drain(..).enumerate() {
            let (bus, stop, tx) = (
                self.bus.clone(),
                self.stop.clone(),
                Mutex::new(self.events_tx.clone()),
            );
            let exits = vcpu::Exits {
                bus,
                control: self.controls[id].clone(),
                xen: self.xen.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || {
                    vcpu::run(id as u32, fd, exits, stop, |e| {
                        let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(e);
                    })
                })
                .map_err(|source| Error::Os {
                    what: "spawning a vCPU thread",
                    source,
                })?;
            let pthread = std::os::unix::thread::JoinHandleExt::as_pthread_t(&handle);
            self.threads.push((handle, pthread));
        }
        Ok(())
    }

    /// A handle that injects events, e.g. [`VmEvent::Destroy`] from a signal handler thread.
    pub fn event_sender(&self) -> Sender<VmEvent> {
        self.events_tx.clone()
    }

    /// The serial port's input side, if the VM has one.
    pub fn serial_input(&self) -> Option<SerialInput> {
        self.serial.clone().map(SerialInput)
    }

    /// Guest RAM (for core dumps and, later, save and migration).
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// The domain's Xen interface, when it has one.
    pub fn xen(&self) -> Option<Arc<xen::XenDomain>> {
        self.xen.clone()
    }

    /// The KVM VM file descriptor.
    pub fn vm_fd(&self) -> &VmFd {
        &self.vm
    }

    /// Waits for the first event that ends the guest, then stops every vCPU.
    pub fn wait(&mut self) -> VmEvent {
        // The VM holds a sender itself, so recv() only fails if that is gone: treat as destroy.
        let event = self.events_rx.recv().unwrap_or(VmEvent::Destroy);
        self.stop_vcpus();
        event
    }

    fn stop_vcpus(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(x) = &self.xen {
            x.close();
        }
        for (handle, pthread) in self.threads.drain(..) {
            // Kick until the thread leaves KVM_RUN: a kick that lands just before it enters
            // KVM_RUN is lost, so repeat.
            while !handle.is_finished() {
                // SAFETY: the thread is still running (not finished), so `pthread` is valid; the
                // kick signal has a no-op handler installed in `start`.
                unsafe { libc::pthread_kill(pthread, vcpu::kick_signal()) };
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = handle.join();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop_vcpus();
    }
}
