//! Helpers shared by the crate's tests.

use crate::{ConfigError, DomainConfig};

/// The smallest valid configuration; `load` appends to it, so its keys end on line 2.
pub(crate) const BASE: &str = "name='t'\nkernel='/k'\n";

/// Loads `BASE` plus `extra` as file `d.cfg`.
pub(crate) fn load(extra: &str) -> Result<DomainConfig, ConfigError> {
    DomainConfig::load(&format!("{BASE}{extra}"), "d.cfg", &[])
}

/// The error text of loading `BASE` plus `extra`, which must fail.
pub(crate) fn load_err(extra: &str) -> String {
    match load(extra) {
        Ok(c) => panic!("{extra:?} accepted as {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// `parse(input)`, which must succeed.
pub(crate) fn parses<T>(parse: impl Fn(&str) -> Result<T, String>, input: &str) -> T {
    parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

/// The error of `parse(input)`, which must fail.
pub(crate) fn fails<T: std::fmt::Debug>(
    parse: impl Fn(&str) -> Result<T, String>,
    input: &str,
) -> String {
    match parse(input) {
        Ok(v) => panic!("{input:?} accepted as {v:?}"),
        Err(e) => e,
    }
}
