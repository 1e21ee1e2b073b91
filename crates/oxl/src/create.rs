//! `oxl create`: build the domain's VM, run it, and apply on_poweroff / on_reboot / on_crash.

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use vmm::{Vm, VmConfig, VmEvent};
use xlcfg::{Action, DomainConfig};

use crate::{console, devices, exit, registry, vbd, vif, xendomain};

/// `oxl create` arguments, as xl names them.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Attach to the domain's console (the serial port) on this terminal; Ctrl-] detaches.
    #[arg(short = 'c')]
    console: bool,
    /// Leave the domain paused after creating it (`oxl unpause` starts it).
    #[arg(short = 'p')]
    paused: bool,
    /// Stay in the foreground (always the case for now; accepted for xl compatibility).
    #[arg(short = 'F')]
    foreground: bool,
    /// Dry run: check the configuration and print it, create nothing.
    #[arg(short = 'n')]
    dry_run: bool,
    /// Quiet: no progress messages.
    #[arg(short = 'q')]
    quiet: bool,
    /// Configuration file (also accepted as -f FILE).
    #[arg(short = 'f', value_name = "FILE")]
    file_opt: Option<PathBuf>,
    /// Configuration file, then KEY=VALUE settings that override it.
    #[arg(value_name = "FILE [KEY=VALUE]...")]
    rest: Vec<String>,
}

/// Where core dumps go (`$OXEN_DUMP_DIR`, default xl's /var/lib/xen/dump equivalent).
fn dump_dir() -> PathBuf {
    std::env::var_os("OXEN_DUMP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/oxen/dump"))
}

/// Control messages from signals (and, through them, from other `oxl` commands).
enum Control {
    Destroy,
    Unpause,
}

fn signal_thread(
    tx: Sender<Control>,
    vm_events: Arc<Mutex<Option<Sender<VmEvent>>>>,
) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGUSR1 {
                    let _ = tx.send(Control::Unpause);
                    continue;
                }
                let _ = tx.send(Control::Destroy);
                if let Some(v) = vm_events.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    let _ = v.send(VmEvent::Destroy);
                }
            }
        })
        .context("spawning the signal thread")?;
    Ok(())
}

/// Runs `oxl create`; returns the exit code.
pub fn run(args: Args) -> Result<u8> {
    let mut setup = vmm::timing::Phases::start("oxl create");
    let (file, overrides) = match (&args.file_opt, args.rest.split_first()) {
        (Some(f), _) => (f.clone(), args.rest.clone()),
        (None, Some((f, rest))) => (PathBuf::from(f), rest.to_vec()),
        (None, None) => {
            anyhow::bail!("no configuration file given (oxl create FILE [KEY=VALUE...])")
        }
    };
    if let Some(bad) = overrides.iter().find(|o| !o.contains('=')) {
        anyhow::bail!("'{bad}' is not a KEY=VALUE setting");
    }
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let cfg = DomainConfig::load(&text, &file.display().to_string(), &overrides)?;
    if args.dry_run {
        println!("{cfg:#?}");
        return Ok(exit::POWEROFF);
    }
    let say = |msg: String| {
        if !args.quiet {
            eprintln!("oxl: {msg}");
        }
    };

    let mut reg = registry::Registration::new(
        &cfg.name,
        cfg.memory_mib,
        cfg.vcpus,
        if args.paused { "p" } else { "r" },
    )?;
    let (ctl_tx, ctl_rx) = mpsc::channel();
    let current: Arc<Mutex<Option<Sender<VmEvent>>>> = Arc::default();
    signal_thread(ctl_tx, current.clone())?;

    let uuid = cfg.uuid.clone().unwrap_or_else(xendomain::random_uuid);
    if cfg.xen_interface {
        // Fail before anything starts if Xenstore is not there, as xl does.
        xendomain::connect()?;
    }
    let mut console = console::open(&cfg.serial, args.console)?;
    console.serve(&cfg.name)?;
    let _raw = args.console.then(console::RawMode::enter);
    if let Some(note) = &console.note {
        say(note.clone());
    }
    let mut paused = args.paused;
    setup.lap("configuration, Xenstore connection and console");
    loop {
        // Where start-up time goes, at info (`oxl -v`); the VMM logs its own phases.
        let mut phases = vmm::timing::Phases::start("oxl create");
        let mut vm = Vm::new(VmConfig {
            memory_mib: cfg.memory_mib,
            vcpus: cfg.vcpus,
            max_vcpus: cfg.maxvcpus,
            kernel: cfg.kernel.clone(),
            initrd: cfg.ramdisk.clone(),
            cmdline: cfg.cmdline.clone(),
            serial: console.writer()?,
            xen: cfg.xen_interface.then_some(vmm::xen::XenOptions {
                domid: reg.record.domid as u16,
                handle: xendomain::uuid_bytes(&uuid),
            }),
        })
        .with_context(|| format!("creating domain '{}'", cfg.name))?;
        phases.lap("building the VM");
        let pv_attach = args.console && cfg.serial == xlcfg::SerialTarget::None;
        let xen_parts = match vm.xen() {
            Some(x) => Some(xendomain::attach(
                &xendomain::DomainFacts {
                    name: &cfg.name,
                    domid: reg.record.domid,
                    uuid: &uuid,
                    vcpus: (cfg.vcpus, cfg.maxvcpus),
                    memory_kib: (cfg.memory_mib << 10, cfg.maxmem_mib << 10),
                },
                &x,
            )?),
            None => None,
        };
        phases.lap("Xenstore introduction and PV console");
        // Disks: their nodes first (as libxl writes them), then the back ends that serve them.
        let devices = match vm.xen() {
            Some(x) => {
                let mut c = xendomain::connect()?;
                for d in &cfg.disks {
                    vbd::add(&mut c, reg.record.domid, d)?;
                }
                for v in &cfg.vifs {
                    vif::add(&mut c, reg.record.domid, v)?;
                }
                Some(devices::Devices::start(
                    x,
                    reg.record.domid,
                    xendomain::xenstore_socket(),
                )?)
            }
            None if !cfg.disks.is_empty() || !cfg.vifs.is_empty() => {
                anyhow::bail!(
                    "PV disks and network interfaces need the Xen interface (xen_interface = 1)"
                )
            }
            None => None,
        };
        phases.lap("PV devices");
        if pv_attach && xen_parts.is_some() {
            // `-c` with no serial port: the PV console is the domain's console.
            console::attach_pv_stdio(&cfg.name)?;
        }
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(vm.event_sender());
        console.connect(vm.serial_input());

        if paused {
            say(format!(
                "domain '{}' (id {}) created paused",
                cfg.name, reg.record.domid
            ));
            match ctl_rx.recv() {
                Ok(Control::Unpause) => {}
                Ok(Control::Destroy) | Err(_) => {
                    say(format!("domain '{}' destroyed", cfg.name));
                    return Ok(exit::POWEROFF);
                }
            }
            paused = false;
            reg.set_state("r");
            phases.lap("paused");
        }
        vm.start()?;
        phases.lap("starting the vCPUs");
        say(format!(
            "domain '{}' (id {}) started",
            cfg.name, reg.record.domid
        ));

        let event = vm.wait();
        // The domain's Xenstore entries and backends go with the VM (a restart makes new ones).
        drop(devices);
        drop(xen_parts);
        let (what, action, code) = match &event {
            VmEvent::Poweroff => ("powered off".to_string(), cfg.on_poweroff, exit::POWEROFF),
            VmEvent::Reset => ("rebooted".to_string(), cfg.on_reboot, exit::REBOOT),
            VmEvent::Crash(why) => (format!("crashed: {why}"), cfg.on_crash, exit::CRASH),
            VmEvent::Destroy => {
                say(format!("domain '{}' destroyed", cfg.name));
                return Ok(exit::POWEROFF);
            }
            VmEvent::Suspend => {
                // xl would now save the domain; until save exists it stays suspended.
                reg.set_state("s");
                say(format!(
                    "domain '{}' suspended itself; Oxen cannot save it yet, `oxl destroy {}` removes it",
                    cfg.name, cfg.name
                ));
                while !matches!(ctl_rx.recv(), Ok(Control::Destroy) | Err(_)) {}
                return Ok(exit::POWEROFF);
            }
        };
        say(format!("domain '{}' {what}", cfg.name));
        if action.dumps_core() {
            let path = console::dump_core(vm.ram(), &dump_dir(), &cfg.name)?;
            say(format!("core dump written to {}", path.display()));
        }
        if action.restarts() {
            say(format!("restarting domain '{}'", cfg.name));
            drop(vm);
            continue;
        }
        if action == Action::Preserve {
            reg.set_state("s");
            say(format!(
                "domain '{}' preserved; `oxl destroy {}` removes it",
                cfg.name, cfg.name
            ));
            while !matches!(ctl_rx.recv(), Ok(Control::Destroy) | Err(_)) {}
        }
        return Ok(code);
    }
}
