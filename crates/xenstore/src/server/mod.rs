//! The Xenstore engine: connections, request dispatch, transactions and watch delivery.
//! It knows nothing about sockets or rings: transports feed it decoded requests and collect
//! the bytes it queues for each connection (replies and watch events).

mod admin;

use std::collections::{BTreeMap, HashMap};

use crate::domain::Domains;
use crate::ops;
use crate::path::{self, DOM0};
use crate::perms::{Caller, Perms, OWNER, READ, WRITE};
use crate::quota::Quotas;
use crate::store::{NodeView, Store};
use crate::transaction::{Transaction, TxView};
use crate::watch::{self, Event, Watch, INTRODUCE_DOMAIN, RELEASE_DOMAIN};
use crate::wire::{self, Header, Message, MsgType, XsError, PAYLOAD_MAX, REL_PATH_MAX};

/// Identifies one connection.
pub type ConnId = u64;

/// Where a connection comes from, which decides who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// The local Unix socket: the control domain, fully privileged.
    Socket,
    /// A domain's shared ring.
    Domain(u32),
}

/// A change in the set of introduced domains, for transports to attach or detach rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainChange {
    /// INTRODUCE: the domain's ring page and event channel.
    Introduced {
        /// The domain.
        domid: u32,
        /// Ring page frame.
        gfn: i64,
        /// Event channel port.
        evtchn: u32,
    },
    /// RELEASE: stop serving the domain.
    Released {
        /// The domain.
        domid: u32,
    },
}

#[derive(Debug)]
struct Conn {
    kind: ConnKind,
    txs: HashMap<u32, Transaction>,
    watches: Vec<Watch>,
    out: Vec<u8>,
    /// Listed in `Xenstore::dirty` (so it is listed once).
    dirty: bool,
}

impl Conn {
    fn domid(&self) -> u32 {
        match self.kind {
            ConnKind::Socket => DOM0,
            ConnKind::Domain(d) => d,
        }
    }
}

/// The whole Xenstore state and logic.
#[derive(Debug)]
pub struct Xenstore {
    pub(crate) store: Store,
    pub(crate) domains: Domains,
    pub(crate) special: BTreeMap<String, Perms>,
    pub(crate) quotas: Quotas,
    /// Per-domain quota overrides (SET_QUOTA with a domid).
    pub(crate) domain_quotas: BTreeMap<u32, Quotas>,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    next_tx: u32,
    watch_count: usize,
    dirty: Vec<ConnId>,
    domain_changes: Vec<DomainChange>,
    generation_saved: u64,
    /// Watches of domain connections restored from a saved state, waiting for their ring.
    pub(crate) pending_watches: HashMap<u32, Vec<Watch>>,
}

impl Default for Xenstore {
    fn default() -> Self {
        Self::new(Quotas::default())
    }
}

fn ok_payload() -> Vec<u8> {
    b"OK\0".to_vec()
}

fn with_nul(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

fn utf8(b: &[u8]) -> Result<&str, XsError> {
    std::str::from_utf8(b).map_err(|_| XsError::Inval)
}

fn default_special() -> BTreeMap<String, Perms> {
    [INTRODUCE_DOMAIN, RELEASE_DOMAIN]
        .into_iter()
        .map(|s| (s.to_string(), Perms::owned_by(DOM0)))
        .collect()
}

impl Xenstore {
    /// An empty store with Xen's initial nodes.
    pub fn new(quotas: Quotas) -> Self {
        Self::from_parts(Store::new(), Domains::default(), default_special(), quotas)
    }

    pub(crate) fn from_parts(
        store: Store,
        domains: Domains,
        mut special: BTreeMap<String, Perms>,
        quotas: Quotas,
    ) -> Self {
        for (k, v) in default_special() {
            special.entry(k).or_insert(v);
        }
        let generation_saved = store.next_generation();
        Xenstore {
            store,
            domains,
            special,
            quotas,
            domain_quotas: BTreeMap::new(),
            conns: HashMap::new(),
            next_conn: 1,
            next_tx: 1,
            watch_count: 0,
            dirty: Vec::new(),
            domain_changes: Vec::new(),
            generation_saved,
            pending_watches: HashMap::new(),
        }
    }

    /// The quota settings.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// The introduced domains.
    pub fn domains(&self) -> &Domains {
        &self.domains
    }

    /// The committed node tree.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens a connection. A domain connection gets back any watches it had before a restart.
    pub fn connect(&mut self, kind: ConnKind) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        let watches = match kind {
            ConnKind::Domain(d) => self.pending_watches.remove(&d).unwrap_or_default(),
            ConnKind::Socket => Vec::new(),
        };
        self.watch_count += watches.len();
        self.conns.insert(
            id,
            Conn {
                kind,
                txs: HashMap::new(),
                watches,
                out: Vec::new(),
                dirty: false,
            },
        );
        id
    }

    /// Closes a connection, dropping its transactions and watches.
    pub fn disconnect(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            self.watch_count -= c.watches.len();
        }
    }

    /// Forgets a connection's watches, transactions and unsent output, keeping the
    /// connection (a ring reconnect or a ring error, per xenstore-ring.txt).
    pub fn reset_connection(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            self.watch_count -= c.watches.len();
            c.watches.clear();
            c.txs.clear();
            c.out.clear();
        }
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Takes the bytes queued for a connection.
    pub fn take_output(&mut self, id: ConnId) -> Vec<u8> {
        self.conns
            .get_mut(&id)
            .map(|c| std::mem::take(&mut c.out))
            .unwrap_or_default()
    }

    /// Whether bytes are queued for a connection.
    pub fn has_output(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| !c.out.is_empty())
    }

    /// Connections that got output since the last call.
    pub fn take_dirty(&mut self) -> Vec<ConnId> {
        let dirty = std::mem::take(&mut self.dirty);
        for id in &dirty {
            if let Some(c) = self.conns.get_mut(id) {
                c.dirty = false;
            }
        }
        dirty
    }

    /// Domain introductions and releases since the last call.
    pub fn take_domain_changes(&mut self) -> Vec<DomainChange> {
        std::mem::take(&mut self.domain_changes)
    }

    /// Whether the persistent state changed since [`Self::mark_saved`].
    pub fn unsaved_changes(&self) -> bool {
        self.store.next_generation() != self.generation_saved
    }

    /// Records that the current state has been saved.
    pub fn mark_saved(&mut self) {
        self.generation_saved = self.store.next_generation();
    }

    /// Reports that a domain has shut down or died: fires `@releaseDomain` once (until RESUME).
    pub fn domain_shutdown(&mut self, domid: u32) {
        let report = match self.domains_mut_info(domid) {
            Some(d) if !d.shutdown_reported => {
                d.shutdown_reported = true;
                true
            }
            _ => false,
        };
        if report {
            self.fire(vec![Event::special(RELEASE_DOMAIN, domid)]);
        }
    }

    fn domains_mut_info(&mut self, domid: u32) -> Option<&mut crate::domain::DomainInfo> {
        self.domains.get_mut(domid)
    }

    fn caller(&self, kind: ConnKind) -> Caller {
        match kind {
            ConnKind::Socket => Caller::DOM0,
            ConnKind::Domain(d) => Caller::domain(d, self.domains.target_of(d)),
        }
    }

    fn queue(&mut self, id: ConnId, msg: &Message) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(id);
            }
            msg.encode_into(&mut c.out);
        }
    }

    /// Handles one request from a connection, queueing its reply (and any watch events).
    pub fn handle(&mut self, id: ConnId, msg: &Message) {
        let Some(kind) = self.conns.get(&id).map(|c| c.kind) else {
            return;
        };
        let h = msg.header;
        let reply = match msg.msg_type() {
            Some(ty) => self
                .dispatch(id, kind, ty, &h, &msg.payload)
                .map(|p| (ty, p)),
            None => Err(XsError::NoSys),
        };
        let out = match reply {
            Ok((_, None)) => return,
            Ok((ty, Some(p))) if p.len() <= PAYLOAD_MAX => Message::new(ty, h.req_id, h.tx_id, p),
            Ok(_) => Message::error(&h, XsError::TooBig),
            Err(e) => Message::error(&h, e),
        };
        self.queue(id, &out);
    }

    /// Runs a request; `Ok(None)` means the reply was already queued.
    fn dispatch(
        &mut self,
        id: ConnId,
        kind: ConnKind,
        ty: MsgType,
        h: &Header,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, XsError> {
        use MsgType::*;
        let caller = self.caller(kind);
        let domid = caller.domid;
        let q = self
            .domain_quotas
            .get(&domid)
            .unwrap_or(&self.quotas)
            .clone();
        let q = &q;
        let args = wire::split_strings(payload);
        let one = || wire::one_arg(payload).ok_or(XsError::Inval);
        let p = match ty {
            Read => {
                let path = path::canonicalize(one()?, domid)?;
                self.with_view(id, h.tx_id, q, |v, _| ops::read(v, &caller, &path))?
            }
            Directory => {
                let path = path::canonicalize(one()?, domid)?;
                self.with_view(id, h.tx_id, q, |v, _| ops::directory(v, &caller, &path))?
            }
            DirectoryPart => {
                let [p, off] = args[..] else {
                    return Err(XsError::Inval);
                };
                let path = path::canonicalize(utf8(p)?, domid)?;
                let off: usize = utf8(off)?.parse().map_err(|_| XsError::Inval)?;
                self.with_view(id, h.tx_id, q, |v, _| {
                    ops::directory_part(v, &caller, &path, off)
                })?
            }
            GetPerms => {
                let raw = one()?;
                if raw.starts_with('@') {
                    let perms = self.special.get(raw).ok_or(XsError::NoEnt)?;
                    perms.check(&caller, READ)?;
                    perms.to_wire()
                } else {
                    let path = path::canonicalize(raw, domid)?;
                    self.with_view(id, h.tx_id, q, |v, _| ops::get_perms(v, &caller, &path))?
                        .to_wire()
                }
            }
            Write => {
                let nul = payload.iter().position(|&b| b == 0).ok_or(XsError::Inval)?;
                let path = path::canonicalize(utf8(&payload[..nul])?, domid)?;
                let value = &payload[nul + 1..];
                self.mutate(id, h.tx_id, &caller, q, |v, q| {
                    ops::write(v, &caller, q, &path, value)
                })?;
                ok_payload()
            }
            Mkdir => {
                let path = path::canonicalize(one()?, domid)?;
                self.mutate(id, h.tx_id, &caller, q, |v, q| {
                    ops::mkdir(v, &caller, q, &path)
                })?;
                ok_payload()
            }
            Rm => {
                let path = path::canonicalize(one()?, domid)?;
                self.mutate(id, h.tx_id, &caller, q, |v, _| ops::rm(v, &caller, &path))?;
                ok_payload()
            }
            SetPerms => {
                if args.len() < 2 {
                    return Err(XsError::Inval);
                }
                let raw = utf8(args[0])?;
                let perms = Perms::parse(args[1..].iter().copied())?;
                if raw.starts_with('@') {
                    if !caller.privileged && perms.entries().len() > q.perms_per_node {
                        return Err(XsError::NoSpc);
                    }
                    let cur = self.special.get_mut(raw).ok_or(XsError::NoEnt)?;
                    cur.check(&caller, WRITE | OWNER)?;
                    *cur = perms;
                    self.store.bump_generation();
                } else {
                    let path = path::canonicalize(raw, domid)?;
                    self.mutate(id, h.tx_id, &caller, q, |v, q| {
                        ops::set_perms(v, &caller, q, &path, perms)
                    })?;
                }
                ok_payload()
            }
            Watch => return self.watch(id, &caller, h, &args).map(|_| None),
            Unwatch => {
                if args.len() < 2 {
                    return Err(XsError::Inval);
                }
                let (wpath, _) = watch_path(utf8(args[0])?, domid)?;
                let token = utf8(args[1])?;
                let c = self.conns.get_mut(&id).ok_or(XsError::Io)?;
                let i = c
                    .watches
                    .iter()
                    .position(|w| w.path == wpath && w.token == token)
                    .ok_or(XsError::NoEnt)?;
                c.watches.remove(i);
                self.watch_count -= 1;
                ok_payload()
            }
            ResetWatches => {
                let c = self.conns.get_mut(&id).ok_or(XsError::Io)?;
                self.watch_count -= c.watches.len();
                c.watches.clear();
                c.txs.clear();
                ok_payload()
            }
            TransactionStart => {
                if h.tx_id != 0 {
                    return Err(XsError::Busy);
                }
                let limit = q.transactions_per_domain;
                let c = self.conns.get_mut(&id).ok_or(XsError::Io)?;
                if !caller.privileged && c.txs.len() >= limit {
                    return Err(XsError::NoSpc);
                }
                let mut tid = self.next_tx;
                while tid == 0 || c.txs.contains_key(&tid) {
                    tid = tid.wrapping_add(1);
                }
                self.next_tx = tid.wrapping_add(1);
                c.txs.insert(tid, Transaction::new());
                with_nul(&tid.to_string())
            }
            TransactionEnd => {
                let commit = match one()? {
                    "T" => true,
                    "F" => false,
                    _ => return Err(XsError::Inval),
                };
                let c = self.conns.get_mut(&id).ok_or(XsError::Io)?;
                let tx = c.txs.remove(&h.tx_id).ok_or(XsError::NoEnt)?;
                if commit {
                    let events = tx.commit(&mut self.store)?;
                    self.fire(events);
                }
                ok_payload()
            }
            Introduce | Release | GetDomainPath | IsDomainIntroduced | Resume | SetTarget
            | Control | GetQuota | SetQuota | GetFeature | SetFeature => {
                self.admin(ty, &caller, payload, &args)?
            }
            WatchEvent | Error => return Err(XsError::NoSys),
        };
        Ok(Some(p))
    }

    /// Runs a read-only operation on the store or the named transaction.
    fn with_view<T>(
        &mut self,
        id: ConnId,
        tx_id: u32,
        q: &Quotas,
        f: impl FnOnce(&mut dyn NodeView, &Quotas) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        if tx_id == 0 {
            return f(&mut self.store, q);
        }
        let c = self.conns.get_mut(&id).ok_or(XsError::Io)?;
        let tx = c.txs.get_mut(&tx_id).ok_or(XsError::NoEnt)?;
        f(
            &mut TxView {
                store: &self.store,
                tx,
            },
            q,
        )
    }

    /// Runs a mutating operation; outside a transaction its events fire at once, inside they
    /// wait for the commit.
    fn mutate(
        &mut self,
        id: ConnId,
        tx_id: u32,
        caller: &Caller,
        q: &Quotas,
        f: impl FnOnce(&mut dyn NodeView, &Quotas) -> Result<Vec<Event>, XsError>,
    ) -> Result<(), XsError> {
        if tx_id == 0 {
            let events = f(&mut self.store, q)?;
            self.fire(events);
            return Ok(());
        }
        let c = self.conns.get_mut(&id).ok_or(XsError::Io)?;
        let tx = c.txs.get_mut(&tx_id).ok_or(XsError::NoEnt)?;
        if !caller.privileged && tx.changed_nodes() >= q.nodes_per_transaction {
            return Err(XsError::NoSpc);
        }
        let events = f(
            &mut TxView {
                store: &self.store,
                tx,
            },
            q,
        )?;
        tx.events.extend(events);
        Ok(())
    }

    fn watch(
        &mut self,
        id: ConnId,
        caller: &Caller,
        h: &Header,
        args: &[&[u8]],
    ) -> Result<(), XsError> {
        if args.len() < 2 {
            return Err(XsError::Inval);
        }
        let raw = utf8(args[0])?;
        let (wpath, relative) = watch_path(raw, caller.domid)?;
        let token = utf8(args[1])?.to_string();
        let depth = match args.get(2) {
            None => None,
            Some(d) => Some(utf8(d)?.parse::<u32>().map_err(|_| XsError::Inval)?),
        };
        // Special watches support depth 1 only (report the domain id).
        if raw.starts_with('@') && depth.is_some_and(|d| d != 1) {
            return Err(XsError::Inval);
        }
        let limit = self
            .domain_quotas
            .get(&caller.domid)
            .unwrap_or(&self.quotas)
            .watches_per_domain;
        let c = self.conns.get_mut(&id).ok_or(XsError::Io)?;
        if c.watches
            .iter()
            .any(|w| w.path == wpath && w.token == token)
        {
            return Err(XsError::Exist);
        }
        if !caller.privileged && c.watches.len() >= limit {
            return Err(XsError::TooBig);
        }
        let w = Watch {
            path: wpath,
            token,
            relative,
            depth,
        };
        let report = w.report_path(&w.path, caller.domid).into_owned();
        let event = watch::event_payload(&report, &w.token);
        c.watches.push(w);
        self.watch_count += 1;
        // The reply first, then the event every new watch fires once.
        self.queue(
            id,
            &Message::new(MsgType::Watch, h.req_id, h.tx_id, ok_payload()),
        );
        self.queue(id, &Message::new(MsgType::WatchEvent, 0, 0, event));
        Ok(())
    }

    /// Delivers events to every matching watch whose owner may see the change.
    fn fire(&mut self, events: Vec<Event>) {
        if self.watch_count == 0 || events.is_empty() {
            return;
        }
        let mut deliveries = Vec::new();
        for (&cid, c) in &self.conns {
            if c.watches.is_empty() {
                continue;
            }
            let caller = self.caller(c.kind);
            for ev in &events {
                if !self.visible(&caller, ev) {
                    continue;
                }
                for w in c.watches.iter().filter(|w| w.matches(ev)) {
                    let p = w.report(ev, c.domid());
                    deliveries.push((cid, watch::event_payload(&p, &w.token)));
                }
            }
        }
        for (cid, payload) in deliveries {
            self.queue(cid, &Message::new(MsgType::WatchEvent, 0, 0, payload));
        }
    }

    fn visible(&self, caller: &Caller, ev: &Event) -> bool {
        if caller.privileged {
            return true;
        }
        let readable = |p: &Perms| p.access_for(caller) & READ != 0;
        if ev.path.starts_with('@') {
            return self.special.get(&ev.path).is_some_and(readable);
        }

        ev.perms.as_ref().is_some_and(readable)
            || ev.old_perms.as_ref().is_some_and(readable)
            || self
                .store
                .lookup(path::parent(&ev.path))
                .is_some_and(|n| readable(&n.perms))
    }

    /// The watches of every domain connection (saved across restarts).
    pub(crate) fn domain_watches(&self) -> BTreeMap<u32, Vec<Watch>> {
        let mut out: BTreeMap<u32, Vec<Watch>> = BTreeMap::new();
        for c in self.conns.values() {
            if let ConnKind::Domain(d) = c.kind {
                out.entry(d).or_default().extend(c.watches.iter().cloned());
            }
        }
        for (d, w) in &self.pending_watches {
            out.entry(*d).or_default().extend(w.iter().cloned());
        }
        out
    }
}

fn quota_text(v: usize) -> String {
    if v == usize::MAX {
        "0".to_string()
    } else {
        v.to_string()
    }
}

/// A watch path: special `@` names as given, node paths canonicalised. Returns the path and
/// whether it was relative.
fn watch_path(raw: &str, domid: u32) -> Result<(String, bool), XsError> {
    if raw.starts_with('@') {
        if raw.len() > REL_PATH_MAX {
            return Err(XsError::Inval);
        }
        return Ok((raw.to_string(), false));
    }
    Ok((path::canonicalize(raw, domid)?, !raw.starts_with('/')))
}
