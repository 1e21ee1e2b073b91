//! `oxl network-attach`, `network-detach`, `network-list`.

use anyhow::Result;

use crate::blockcmd::ListArgs;
use crate::{registry, vif, xendomain};

/// `network-attach DOMAIN SPEC`.
#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Domain name or id.
    pub domain: String,
    /// The interface, as in xl.cfg's `vif` list (e.g. `mac=00:16:3e:00:00:01,bridge=xenbr0`).
    pub spec: String,
}

/// `network-detach DOMAIN DEVID|MAC`.
#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// Domain name or id.
    pub domain: String,
    /// The interface's devid or MAC address.
    pub which: String,
}

/// Attaches an interface: writes its nodes; the domain's VMM starts the back end.
pub fn attach(a: AttachArgs) -> Result<()> {
    let spec =
        xlcfg::parse_vif_spec(&a.spec).map_err(|e| anyhow::anyhow!("vif '{}': {e}", a.spec))?;
    let d = registry::find(&a.domain)?.domid;
    let mut c = xendomain::connect()?;
    vif::add(&mut c, d, &spec).map(drop)
}

/// Detaches an interface.
pub fn detach(a: DetachArgs) -> Result<()> {
    let d = registry::find(&a.domain)?.domid;
    let mut c = xendomain::connect()?;
    vif::remove(&mut c, d, &a.which)
}

/// Lists a domain's interfaces.
pub fn list(a: ListArgs) -> Result<()> {
    let d = registry::find(&a.domain)?.domid;
    let mut c = xendomain::connect()?;
    let rows = vif::list(&mut c, d)?;
    if a.long {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        vif::print(&rows);
    }
    Ok(())
}
