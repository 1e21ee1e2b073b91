//! Xen `xl.cfg` files: the syntax (`parse`) and the domain settings Oxen understands (`domain`).
//!
//! Parsing is split from interpretation so that later features (disks, vifs) add keys in `domain`
//! without touching the lexer, and so every error can name the file, the line and the key.
#![deny(missing_docs)]

mod domain;
mod error;
mod parse;

pub use domain::{Action, DomainConfig, SerialTarget, MIN_MEMORY_MIB};
pub use error::ConfigError;
pub use parse::{parse, Setting, Value};
