//! Xen `xl.cfg` files: the syntax (`parse`) and the domain settings Oxen understands (`domain`),
//! with the device specs of `disk` (`disk`, xl-disk-configuration(5)) and `vif` (`vif`,
//! xl-network-configuration(5)).
//!
//! Parsing is split from interpretation so that keys are added in `domain` without touching the
//! lexer, and so every error can name the file, the line and the key. The spec parsers
//! ([`parse_disk_spec`], [`parse_vif_spec`]) return plain messages, so `oxl block-attach` and
//! `oxl network-attach` reuse them; in a file, errors also name the spec's index in its list.
#![deny(missing_docs)]

mod disk;
mod domain;
mod error;
mod parse;
mod spec;
mod suggest;
#[cfg(test)]
mod testutil;
mod vif;

pub use disk::{
    parse_disk_spec, vdev_number, DiskFormat, DiskSpec, MAX_DISK_QUEUES, MAX_RING_PAGE_ORDER,
};
pub use domain::{Action, DomainConfig, SerialTarget, MIN_MEMORY_MIB};
pub use error::ConfigError;
pub use parse::{parse, Setting, Value};
pub use vif::{
    parse_rate, parse_vif_spec, parse_vif_spec_with, MacAddr, VifRate, VifSpec, DEFAULT_BRIDGE,
    DEFAULT_RATE_INTERVAL_US, MAX_VIF_QUEUES, XEN_OUI,
};
