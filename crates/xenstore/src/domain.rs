//! Introduced domains: their ring page and event channel, device-model targets, and whether
//! their release has already been reported.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::path::{DOM0, DOMID_FIRST_RESERVED};
use crate::wire::XsError;

/// What Xenstore knows about one introduced domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// Guest frame of the Xenstore ring page (signed decimal on the wire).
    pub gfn: i64,
    /// The domain's event channel port for Xenstore.
    pub evtchn: u32,
    /// Domain this one is device model for (set_target).
    pub target: Option<u32>,
    /// A shutdown has been reported with `@releaseDomain` (cleared by RESUME).
    pub shutdown_reported: bool,
    /// Server features offered on the domain's ring page (SET_FEATURE before INTRODUCE).
    #[serde(default = "supported_features")]
    pub features: u32,
}

/// Ring features this Xenstore offers: reconnection, the error word and watch depth.
pub const SUPPORTED_FEATURES: u32 = 1 | 2 | 4;

fn supported_features() -> u32 {
    SUPPORTED_FEATURES
}

/// The table of introduced domains.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Domains {
    map: BTreeMap<u32, DomainInfo>,
    /// Features set for domains not introduced yet.
    #[serde(default)]
    pending_features: BTreeMap<u32, u32>,
}

/// Rejects dom0 and Xen's reserved ids where a real guest is required.
pub fn check_guest_domid(domid: u32) -> Result<(), XsError> {
    if domid == DOM0 || domid >= DOMID_FIRST_RESERVED {
        Err(XsError::Inval)
    } else {
        Ok(())
    }
}

impl Domains {
    /// Records an introduced domain. Re-introducing with the same ring is accepted (Xen does
    /// so on resume); with a different ring it is `EEXIST`. Returns whether it is new.
    pub fn introduce(&mut self, domid: u32, gfn: i64, evtchn: u32) -> Result<bool, XsError> {
        check_guest_domid(domid)?;
        if let Some(d) = self.map.get(&domid) {
            return if d.gfn == gfn && d.evtchn == evtchn {
                Ok(false)
            } else {
                Err(XsError::Exist)
            };
        }
        self.map.insert(
            domid,
            DomainInfo {
                gfn,
                evtchn,
                target: None,
                shutdown_reported: false,
                features: self
                    .pending_features
                    .remove(&domid)
                    .unwrap_or(SUPPORTED_FEATURES),
            },
        );
        Ok(true)
    }

    /// Forgets a domain (`ENOENT` if it was never introduced).
    pub fn release(&mut self, domid: u32) -> Result<DomainInfo, XsError> {
        check_guest_domid(domid)?;
        self.map.remove(&domid).ok_or(XsError::NoEnt)
    }

    /// Whether the domain is introduced (dom0 always is).
    pub fn is_introduced(&self, domid: u32) -> bool {
        domid == DOM0 || self.map.contains_key(&domid)
    }

    /// Lets `domid` act for `target` (set_target); both must be introduced.
    pub fn set_target(&mut self, domid: u32, target: u32) -> Result<(), XsError> {
        check_guest_domid(domid)?;
        check_guest_domid(target)?;
        if !self.map.contains_key(&target) {
            return Err(XsError::NoEnt);
        }
        let d = self.map.get_mut(&domid).ok_or(XsError::NoEnt)?;
        d.target = Some(target);
        Ok(())
    }

    /// Re-arms `@releaseDomain` for a domain after a resume.
    pub fn resume(&mut self, domid: u32) -> Result<(), XsError> {
        check_guest_domid(domid)?;
        let d = self.map.get_mut(&domid).ok_or(XsError::NoEnt)?;
        d.shutdown_reported = false;
        Ok(())
    }

    /// The record of one domain.
    pub fn get(&self, domid: u32) -> Option<&DomainInfo> {
        self.map.get(&domid)
    }

    /// The features offered to a domain (GET_FEATURE with a domid).
    pub fn features(&self, domid: u32) -> u32 {
        match self.map.get(&domid) {
            Some(d) => d.features,
            None => self
                .pending_features
                .get(&domid)
                .copied()
                .unwrap_or(SUPPORTED_FEATURES),
        }
    }

    /// SET_FEATURE: only before the domain is introduced (`EBUSY` after), and only
    /// features this Xenstore supports (`EINVAL` otherwise).
    pub fn set_features(&mut self, domid: u32, features: u32) -> Result<(), XsError> {
        check_guest_domid(domid)?;
        if features & !SUPPORTED_FEATURES != 0 {
            return Err(XsError::Inval);
        }
        if self.map.contains_key(&domid) {
            return Err(XsError::Busy);
        }
        self.pending_features.insert(domid, features);
        Ok(())
    }

    /// The record of one domain, for updates.
    pub fn get_mut(&mut self, domid: u32) -> Option<&mut DomainInfo> {
        self.map.get_mut(&domid)
    }

    /// Every introduced domain.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &DomainInfo)> {
        self.map.iter()
    }

    /// The device-model target of `domid`, if any.
    pub fn target_of(&self, domid: u32) -> Option<u32> {
        self.map.get(&domid).and_then(|d| d.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() {
        let mut d = Domains::default();
        assert_eq!(d.introduce(0, 1, 1), Err(XsError::Inval));
        assert_eq!(d.introduce(0x7ff0, 1, 1), Err(XsError::Inval));
        assert!(d.introduce(3, -5, 9).unwrap());
        assert!(!d.introduce(3, -5, 9).unwrap());
        assert_eq!(d.introduce(3, 6, 9), Err(XsError::Exist));
        assert!(d.is_introduced(3) && d.is_introduced(0) && !d.is_introduced(4));
        assert_eq!(d.set_target(4, 3), Err(XsError::NoEnt));
        d.introduce(4, 7, 2).unwrap();
        d.set_target(4, 3).unwrap();
        assert_eq!(d.target_of(4), Some(3));
        d.resume(3).unwrap();
        assert_eq!(d.features(3), SUPPORTED_FEATURES);
        assert_eq!(d.set_features(3, 1), Err(XsError::Busy));
        assert_eq!(d.set_features(9, 8), Err(XsError::Inval));
        d.set_features(9, 1).unwrap();
        d.introduce(9, 1, 1).unwrap();
        assert_eq!(d.features(9), 1);
        assert_eq!(d.release(3).unwrap().gfn, -5);
        assert_eq!(d.release(3), Err(XsError::NoEnt));
    }
}
