//! The backend of Xen's PV console (`struct xencons_interface`, xen/include/public/io/console.h).
//!
//! The guest writes its `hvc0` output into the page's `out` ring and reads keyboard input from
//! the `in` ring. [`PvConsole`] drains the one and fills the other from a thread, and bridges
//! both to any number of clients on a Unix socket (what `oxl console` connects to), with a
//! scrollback so a late client still sees the login prompt.
//!
//! The socket side is generic: [`ConsoleServer`] serves any [`Backend`] (`oxl` also serves its
//! emulated serial port this way).
//!
//! Guest memory stays behind the narrow [`ConsolePage`] trait: [`GuestMemoryPage`] implements
//! it over a vm-memory mapping, [`MemoryPage`] over host memory (tests, tools).
#![deny(missing_docs)]

mod page;
mod pv;
mod ratelimit;
pub mod ring;
mod server;

pub use page::{ConsolePage, GuestMemoryPage, MemoryPage, PageError};
pub use pv::PvConsole;
pub use server::{Backend, ConsoleServer, SCROLLBACK};

/// Size of the page the rings live in.
pub const PAGE_SIZE: usize = 4096;
