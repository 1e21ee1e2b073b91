//! Back ends of Xen split devices (`vbd`, `vif`, ...) over Xenstore, for the device models that
//! run inside Oxen's VMM process as the guest's dom0 back ends.
//!
//! - [`create_device`], [`remove_device`], [`force_remove`]: the toolstack's nodes, as libxl
//!   writes them for `xl create` / `xl block-attach` and removes them for `xl block-detach`.
//! - [`Backend::spawn`]: one thread per device runs xenbus's state machine against the
//!   frontend, calling the device's [`Driver`]; [`BackendHandle`] writes live nodes (an online
//!   resize) and closes the device.
//!
//! # What Linux's frontends do (6.12: `xenbus_probe.c`, `xenbus_probe_frontend.c`,
//! `xenbus_client.c`, `xen-blkfront.c`, `xen-netfront.c`)
//!
//! - **First probe.** A device is created only for a frontend directory whose `state` reads
//!   Initialising (`xenbus_probe_node`); the core reads `backend-id` and `backend`, calls the
//!   driver's probe, then watches `<backend>/state` (the watch fires once at once).
//!   blkfront's probe writes nothing; on back end InitWait (only while its cached state is
//!   Initialising) it writes `ring-ref`/`event-channel`/`protocol`/`feature-persistent` in a
//!   transaction and switches to Initialised; on back end Connected it reads `sectors`, `info`,
//!   `sector-size` and switches to Connected. netfront's probe (`xennet_create_dev`) writes
//!   Initialising and loops until the back end is neither Closed nor Unknown; on InitWait it
//!   writes its rings and goes straight to Connected.
//! - **Unbind** (sysfs unbind, module unload). The core drops the watch, calls the driver's
//!   remove and, as neither frontend sets `allow_rebind`, switches to Closed. blkfront's remove
//!   writes nothing itself, so the back end sees Connected → Closed. netfront's remove first
//!   writes Closing and waits for the back end's Closing/Closed, then Closed and waits for the
//!   back end's Closed, polling every 10 s *forever*: its back end must stay Closed.
//! - **Bind again.** The `xenbus_device` survived the unbind with its cached state Closed, and
//!   probe does not reset it. netfront writes Initialising itself, so a back end that goes from
//!   Closed to InitWait when the frontend writes Initialising (Linux's netback, QEMU, and this
//!   crate) reconnects it. blkfront writes nothing and ignores a back end in InitWait or Closed
//!   (its cached state is not Initialising, and is Closed); it acts only on a back end that is
//!   Connected, by writing its rings, Initialised, then Connected. That is why a rebound
//!   blkfront stayed Closed against a back end that waits Closed (as Linux's blkback does too).
//!   So for `vbd` the back end *parks*: once the frontend has been Closed for a second, it
//!   writes its connected nodes and Connected again without serving, and connects when the
//!   frontend then turns Initialised ([`ClosedPolicy`]). Neither `online` nor the frontend's
//!   state node needs resetting.
//! - **kexec / kdump** (HVM, `xenbus_reset_frontend`): a frontend found Connected or Closed is
//!   walked through Closing, Closed, Initialising, waiting up to 5 s each for the back end to
//!   follow to Closing, Closed, InitWait; parking waits long enough not to disturb it.
//! - **Resize.** blkfront re-reads `sectors` when the back end's `state` is written Connected
//!   again while it is connected ([`BackendHandle::write_nodes_and_notify`]).
//! - **Errors.** `xenbus_dev_fatal` writes `<errno> <message>` to
//!   `error/<device path>/error` under the writer's home and switches to Closing; the back end
//!   here writes the driver's message there ([`DeviceId::error_path`]) and does the same.
#![deny(missing_docs)]

mod backend;
mod driver;
mod frontend;
mod id;
mod machine;
mod toolstack;
mod xs;

pub use backend::{Backend, BackendHandle, NodeWriter};
pub use driver::{ClosedPolicy, Driver};
pub use frontend::FrontendInfo;
pub use id::{BadState, DeviceId, XenbusState};
pub use toolstack::{create_device, force_remove, remove_device, RemoveOutcome};

use xenstore::client::ClientError;

/// What this crate's calls fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Xenstore request failed.
    #[error("{context}: {source}")]
    Xenstore {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: ClientError,
    },
    /// The device has no back-end directory (never created, or removed).
    #[error("device {0}: no back-end directory in Xenstore")]
    NoDevice(DeviceId),
    /// A node name that is empty, absolute or climbs out of the device's directory.
    #[error("invalid node name {0:?}")]
    InvalidNode(String),
    /// The back end's thread could not be started.
    #[error("starting the back end of {id}: {source}")]
    Spawn {
        /// The device.
        id: DeviceId,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn xs(context: impl Into<String>, source: ClientError) -> Self {
        Error::Xenstore {
            context: context.into(),
            source,
        }
    }
}
