//! Domain management and administration requests: INTRODUCE, RELEASE, GET_DOMAIN_PATH,
//! IS_DOMAIN_INTRODUCED, RESUME, SET_TARGET, CONTROL, GET/SET_QUOTA and GET/SET_FEATURE.

use super::{ok_payload, quota_text, utf8, with_nul, DomainChange, Xenstore};
use crate::path;
use crate::perms::Caller;
use crate::quota::Quotas;
use crate::watch::{Event, INTRODUCE_DOMAIN, RELEASE_DOMAIN};
use crate::wire::{self, MsgType, XsError};

impl Xenstore {
    /// Handles one administration request; the reply payload on success.
    pub(super) fn admin(
        &mut self,
        ty: MsgType,
        caller: &Caller,
        payload: &[u8],
        args: &[&[u8]],
    ) -> Result<Vec<u8>, XsError> {
        use MsgType::*;
        let one = || wire::one_arg(payload).ok_or(XsError::Inval);
        let privileged = || {
            if caller.privileged {
                Ok(())
            } else {
                Err(XsError::Acces)
            }
        };
        Ok(match ty {
            Introduce => {
                privileged()?;
                if args.len() < 3 {
                    return Err(XsError::Inval);
                }
                let d = path::parse_domid(utf8(args[0])?)?;
                let gfn: i64 = utf8(args[1])?.parse().map_err(|_| XsError::Inval)?;
                let evtchn: u32 = utf8(args[2])?.parse().map_err(|_| XsError::Inval)?;
                if self.domains.introduce(d, gfn, evtchn)? {
                    self.store.bump_generation();
                    self.domain_changes.push(DomainChange::Introduced {
                        domid: d,
                        gfn,
                        evtchn,
                    });
                    self.fire(vec![Event::special(INTRODUCE_DOMAIN, d)]);
                }
                ok_payload()
            }
            Release => {
                privileged()?;
                let d = path::parse_domid(one()?)?;
                self.domains.release(d)?;
                self.domain_quotas.remove(&d);
                self.store.bump_generation();
                self.pending_watches.remove(&d);
                self.domain_changes
                    .push(DomainChange::Released { domid: d });
                self.fire(vec![Event::special(RELEASE_DOMAIN, d)]);
                ok_payload()
            }
            GetDomainPath => with_nul(&path::domain_path(path::parse_domid(one()?)?)),
            IsDomainIntroduced => {
                let d = path::parse_domid(one()?)?;
                with_nul(if self.domains.is_introduced(d) {
                    "T"
                } else {
                    "F"
                })
            }
            Resume => {
                privileged()?;
                self.domains.resume(path::parse_domid(one()?)?)?;
                ok_payload()
            }
            SetTarget => {
                privileged()?;
                let [d, t] = args[..] else {
                    return Err(XsError::Inval);
                };
                let d = path::parse_domid(utf8(d)?)?;
                let t = path::parse_domid(utf8(t)?)?;
                self.domains.set_target(d, t)?;
                self.store.bump_generation();
                ok_payload()
            }
            Control => {
                privileged()?;
                self.control(args)?
            }
            GetQuota => {
                privileged()?;
                match args[..] {
                    [] => with_nul(&Quotas::NAMES.join(" ")),
                    [name] => {
                        let v = self.quotas.get(utf8(name)?).ok_or(XsError::Inval)?;
                        with_nul(&quota_text(v))
                    }
                    [d, name] => {
                        let d = path::parse_domid(utf8(d)?)?;
                        if !self.domains.is_introduced(d) {
                            return Err(XsError::NoEnt);
                        }
                        let dq = self.domain_quotas.get(&d).unwrap_or(&self.quotas);
                        with_nul(&quota_text(dq.get(utf8(name)?).ok_or(XsError::Inval)?))
                    }
                    _ => return Err(XsError::Inval),
                }
            }
            SetQuota => {
                privileged()?;
                let (target, name, val) = match args[..] {
                    [name, val] => (None, name, val),
                    [d, name, val] => (Some(path::parse_domid(utf8(d)?)?), name, val),
                    _ => return Err(XsError::Inval),
                };
                let v: usize = utf8(val)?.parse().map_err(|_| XsError::Inval)?;
                let slot = match target {
                    None => &mut self.quotas,
                    Some(d) => {
                        if !self.domains.is_introduced(d) {
                            return Err(XsError::NoEnt);
                        }
                        let global = self.quotas.clone();
                        self.domain_quotas.entry(d).or_insert(global)
                    }
                };
                if !slot.set(utf8(name)?, v) {
                    return Err(XsError::Inval);
                }
                self.store.bump_generation();
                ok_payload()
            }
            GetFeature => match args[..] {
                [] => with_nul(&crate::domain::SUPPORTED_FEATURES.to_string()),
                [d] => {
                    privileged()?;
                    let d = path::parse_domid(utf8(d)?)?;
                    with_nul(&self.domains.features(d).to_string())
                }
                _ => return Err(XsError::Inval),
            },
            SetFeature => {
                privileged()?;
                let [d, v] = args[..] else {
                    return Err(XsError::Inval);
                };
                let d = path::parse_domid(utf8(d)?)?;
                let v: u32 = utf8(v)?.parse().map_err(|_| XsError::Inval)?;
                self.domains.set_features(d, v)?;
                self.store.bump_generation();
                ok_payload()
            }
            _ => return Err(XsError::NoSys),
        })
    }

    fn control(&mut self, args: &[&[u8]]) -> Result<Vec<u8>, XsError> {
        let Some(cmd) = args.first() else {
            return Err(XsError::Inval);
        };
        Ok(match utf8(cmd)? {
            "check" => self.check().map(|_| ok_payload())?,
            "help" => with_nul("check\nhelp\nlog\nprint\nquota\n"),
            "log" => ok_payload(),
            "print" => {
                let text = args.get(1).map(|s| String::from_utf8_lossy(s).into_owned());
                tracing::info!(target: "xenstore", "control print: {}", text.unwrap_or_default());
                ok_payload()
            }
            "quota" => match args[1..] {
                [] => {
                    let mut s = String::new();
                    for n in Quotas::NAMES {
                        let v = self.quotas.get(n).unwrap_or_default();
                        s.push_str(&format!("{n}: {}\n", quota_text(v)));
                    }
                    with_nul(&s)
                }
                [set, name, val] if set == b"set" => {
                    let v: usize = utf8(val)?.parse().map_err(|_| XsError::Inval)?;
                    if !self.quotas.set(utf8(name)?, v) {
                        return Err(XsError::Inval);
                    }
                    ok_payload()
                }
                _ => return Err(XsError::Inval),
            },
            _ => return Err(XsError::Inval),
        })
    }

    /// Checks the tree's internal consistency: every child entry names an existing node whose
    /// parent lists it, and every node but `/` is listed by its parent.
    pub fn check(&self) -> Result<(), XsError> {
        for (p, n) in self.store.iter() {
            for c in &n.children {
                if self.store.lookup(&path::join(p, c)).is_none() {
                    return Err(XsError::Io);
                }
            }
            if p != "/" {
                let parent = self.store.lookup(path::parent(p)).ok_or(XsError::Io)?;
                if !parent.children.iter().any(|c| c == path::basename(p)) {
                    return Err(XsError::Io);
                }
            }
        }
        Ok(())
    }
}
