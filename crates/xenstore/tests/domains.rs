//! The engine as guest domains see it: relative paths, permissions, set_target, quotas,
//! special watches, transactions and watch visibility.

use xenstore::quota::Quotas;
use xenstore::server::{ConnKind, DomainChange, Xenstore};
use xenstore::wire::{Decoder, Message, MsgType};

struct T {
    xs: Xenstore,
    dom0: u64,
    req: u32,
    /// Watch events that arrived with replies, per connection.
    kept: std::collections::HashMap<u64, Vec<Message>>,
}

impl T {
    fn new(q: Quotas) -> Self {
        let mut xs = Xenstore::new(q);
        let dom0 = xs.connect(ConnKind::Socket);
        T {
            xs,
            dom0,
            req: 1,
            kept: Default::default(),
        }
    }

    /// Sends a request and returns (reply type, payload) of the reply, keeping events aside.
    fn call(&mut self, c: u64, ty: MsgType, tx: u32, payload: &[u8]) -> (u32, Vec<u8>) {
        self.req += 1;
        self.xs
            .handle(c, &Message::new(ty, self.req, tx, payload.to_vec()));
        let (events, replies): (Vec<_>, Vec<_>) = self
            .drain(c)
            .into_iter()
            .partition(|m| m.header.ty == MsgType::WatchEvent as u32);
        self.kept.entry(c).or_default().extend(events);
        let r = replies
            .into_iter()
            .find(|m| m.header.req_id == self.req)
            .expect("a reply");
        (r.header.ty, r.payload)
    }

    fn ok(&mut self, c: u64, ty: MsgType, tx: u32, payload: &[u8]) -> Vec<u8> {
        let (t, p) = self.call(c, ty, tx, payload);
        assert_eq!(
            t,
            ty as u32,
            "{ty:?} {:?} -> {}",
            String::from_utf8_lossy(payload),
            String::from_utf8_lossy(&p)
        );
        p
    }

    fn err(&mut self, c: u64, ty: MsgType, tx: u32, payload: &[u8]) -> String {
        let (t, p) = self.call(c, ty, tx, payload);
        assert_eq!(t, MsgType::Error as u32, "{ty:?} succeeded");
        String::from_utf8(p[..p.len() - 1].to_vec()).unwrap()
    }

    fn drain(&mut self, c: u64) -> Vec<Message> {
        let mut d = Decoder::new();
        d.feed(&self.xs.take_output(c));
        std::iter::from_fn(|| d.next_message().unwrap()).collect()
    }

    /// Watch events queued for a connection, as (path, token).
    fn events(&mut self, c: u64) -> Vec<(String, String)> {
        let mut all = self.kept.remove(&c).unwrap_or_default();
        all.extend(self.drain(c));
        all.into_iter()
            .filter(|m| m.header.ty == MsgType::WatchEvent as u32)
            .map(|m| {
                let s = String::from_utf8(m.payload).unwrap();
                let mut it = s.split('\0');
                (
                    it.next().unwrap().to_string(),
                    it.next().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Sets up a guest the way a toolstack does: home directory owned by the guest.
    fn guest(&mut self, domid: u32) -> u64 {
        let home = format!("/local/domain/{domid}\0");
        self.ok(self.dom0, MsgType::Mkdir, 0, home.as_bytes());
        let perms = format!("/local/domain/{domid}\0n{domid}\0");
        self.ok(self.dom0, MsgType::SetPerms, 0, perms.as_bytes());
        let intro = format!("{domid}\0{}\0{}\0", 1000 + domid, 10 + domid);
        self.ok(self.dom0, MsgType::Introduce, 0, intro.as_bytes());
        self.xs.connect(ConnKind::Domain(domid))
    }
}

#[test]
fn guests_use_relative_paths_and_are_confined() {
    let mut t = T::new(Quotas::default());
    let g = t.guest(3);
    let h = t.guest(4);
    t.ok(g, MsgType::Write, 0, b"device/vif/0/state\x001");
    assert_eq!(
        t.ok(
            t.dom0,
            MsgType::Read,
            0,
            b"/local/domain/3/device/vif/0/state\0"
        ),
        b"1"
    );
    // The guest owns what it created.
    assert_eq!(
        t.ok(t.dom0, MsgType::GetPerms, 0, b"/local/domain/3/device\0"),
        b"n3\0"
    );
    assert_eq!(
        t.err(h, MsgType::Read, 0, b"/local/domain/3/device\0"),
        "EACCES"
    );
    assert_eq!(
        t.err(h, MsgType::Write, 0, b"/local/domain/3/x\0v"),
        "EACCES"
    );
    assert_eq!(t.err(g, MsgType::Write, 0, b"/tool/x\0v"), "EACCES");
    assert_eq!(
        t.err(g, MsgType::Directory, 0, b"/local/domain\0"),
        "EACCES"
    );
    // Guests cannot manage domains or give their nodes away.
    assert_eq!(t.err(g, MsgType::Introduce, 0, b"9\x001\x001\0"), "EACCES");
    assert_eq!(t.err(g, MsgType::Release, 0, b"4\0"), "EACCES");
    assert_eq!(t.err(g, MsgType::SetTarget, 0, b"3\x004\0"), "EACCES");
    assert_eq!(t.err(g, MsgType::Control, 0, b"check\0"), "EACCES");
    assert_eq!(t.err(g, MsgType::SetPerms, 0, b"device\0n4\0"), "EPERM");
    // Granting read to domain 4 lets it read.
    t.ok(g, MsgType::SetPerms, 0, b"device\0n3\0r4\0");
    assert_eq!(
        t.ok(h, MsgType::Directory, 0, b"/local/domain/3/device\0"),
        b"vif\0"
    );
    assert_eq!(
        t.ok(g, MsgType::GetDomainPath, 0, b"3\0"),
        b"/local/domain/3\0"
    );
    assert_eq!(t.ok(g, MsgType::IsDomainIntroduced, 0, b"4\0"), b"T\0");
    assert_eq!(t.ok(g, MsgType::IsDomainIntroduced, 0, b"5\0"), b"F\0");
}

#[test]
fn device_model_acts_for_its_target() {
    let mut t = T::new(Quotas::default());
    let _g = t.guest(5);
    let dm = t.guest(6);
    assert_eq!(
        t.err(dm, MsgType::Write, 0, b"/local/domain/5/dm\0x"),
        "EACCES"
    );
    t.ok(t.dom0, MsgType::SetTarget, 0, b"6\x005\0");
    t.ok(dm, MsgType::Write, 0, b"/local/domain/5/dm\0x");
    assert_eq!(t.ok(dm, MsgType::Read, 0, b"/local/domain/5/dm\0"), b"x");
    assert_eq!(t.err(t.dom0, MsgType::SetTarget, 0, b"6\x009\0"), "ENOENT");
}

#[test]
fn guest_quotas_give_xen_errors() {
    let q = Quotas {
        nodes_per_domain: 5,
        watches_per_domain: 2,
        transactions_per_domain: 2,
        perms_per_node: 2,
        node_size: 256,
        ..Quotas::default()
    };
    let mut t = T::new(q);
    let g = t.guest(7);
    // Domain 7 owns its home already; four more nodes are allowed.
    for i in 0..4 {
        t.ok(g, MsgType::Write, 0, format!("n{i}\0").as_bytes());
    }
    assert_eq!(t.err(g, MsgType::Write, 0, b"n9\0"), "ENOSPC");
    assert_eq!(
        t.err(
            g,
            MsgType::Write,
            0,
            &[b"n0\0".as_slice(), &[b'x'; 300]].concat()
        ),
        "ENOSPC"
    );
    assert_eq!(
        t.err(g, MsgType::SetPerms, 0, b"n0\0n7\0r1\0r2\0"),
        "ENOSPC"
    );
    t.ok(g, MsgType::Watch, 0, b"a\0t1\0");
    t.ok(g, MsgType::Watch, 0, b"b\0t2\0");
    assert_eq!(t.err(g, MsgType::Watch, 0, b"c\0t3\0"), "E2BIG");
    t.ok(g, MsgType::TransactionStart, 0, b"\0");
    t.ok(g, MsgType::TransactionStart, 0, b"\0");
    assert_eq!(t.err(g, MsgType::TransactionStart, 0, b"\0"), "ENOSPC");
    // dom0 is not limited.
    for i in 0..20 {
        t.ok(
            t.dom0,
            MsgType::Write,
            0,
            format!("/local/domain/7/d{i}\0").as_bytes(),
        );
    }
    // Settable at run time through SET_QUOTA / GET_QUOTA.
    t.ok(t.dom0, MsgType::SetQuota, 0, b"nodes\x00100\0");
    assert_eq!(t.ok(t.dom0, MsgType::GetQuota, 0, b"nodes\0"), b"100\0");
    t.ok(g, MsgType::Write, 0, b"n9\0");
}

#[test]
fn special_watches_and_domain_changes() {
    let mut t = T::new(Quotas::default());
    t.ok(t.dom0, MsgType::Watch, 0, b"@introduceDomain\0in\0");
    t.ok(t.dom0, MsgType::Watch, 0, b"@releaseDomain\0out\0");
    assert_eq!(t.events(t.dom0).len(), 2, "each new watch fires once");
    let g = t.guest(8);
    assert_eq!(
        t.events(t.dom0),
        [("@introduceDomain".to_string(), "in".to_string())]
    );
    assert_eq!(
        t.xs.take_domain_changes(),
        [DomainChange::Introduced {
            domid: 8,
            gfn: 1008,
            evtchn: 18
        }]
    );
    // A guest sees @releaseDomain only once dom0 grants it.
    t.ok(g, MsgType::Watch, 0, b"@releaseDomain\0gr\0");
    t.events(g);
    let _h = t.guest(9);
    t.ok(t.dom0, MsgType::Release, 0, b"9\0");
    assert!(t.events(g).is_empty());
    t.ok(t.dom0, MsgType::SetPerms, 0, b"@releaseDomain\0n0\0r8\0");
    assert_eq!(
        t.ok(t.dom0, MsgType::GetPerms, 0, b"@releaseDomain\0"),
        b"n0\0r8\0"
    );
    t.guest(9);
    t.ok(t.dom0, MsgType::Release, 0, b"9\0");
    assert_eq!(
        t.events(g),
        [("@releaseDomain".to_string(), "gr".to_string())]
    );
    assert_eq!(t.ok(t.dom0, MsgType::IsDomainIntroduced, 0, b"9\0"), b"F\0");
    // Shutdown reports once until RESUME.
    t.events(t.dom0);
    t.xs.domain_shutdown(8);
    t.xs.domain_shutdown(8);
    assert_eq!(t.events(t.dom0).len(), 1);
    t.ok(t.dom0, MsgType::Resume, 0, b"8\0");
    t.xs.domain_shutdown(8);
    assert_eq!(t.events(t.dom0).len(), 1);
}

#[test]
fn watches_fire_with_tokens_relative_paths_and_permissions() {
    let mut t = T::new(Quotas::default());
    let g = t.guest(10);
    let other = t.guest(11);
    t.ok(g, MsgType::Watch, 0, b"device\0dev\0");
    assert_eq!(t.events(g), [("device".to_string(), "dev".to_string())]);
    t.ok(other, MsgType::Watch, 0, b"/local/domain/10\0spy\0");
    t.events(other);
    t.ok(
        t.dom0,
        MsgType::Write,
        0,
        b"/local/domain/10/device/vbd/1\0x",
    );
    assert_eq!(
        t.events(g),
        [("device/vbd/1".to_string(), "dev".to_string())]
    );
    // Domain 11 cannot read domain 10's nodes, so it hears nothing.
    assert!(t.events(other).is_empty());
    // Removing a subtree tells watchers of the removed nodes.
    t.ok(t.dom0, MsgType::Rm, 0, b"/local/domain/10/device\0");
    assert_eq!(t.events(g), [("device".to_string(), "dev".to_string())]);
    t.ok(g, MsgType::Unwatch, 0, b"device\0dev\0");
    t.ok(t.dom0, MsgType::Write, 0, b"/local/domain/10/device\0");
    assert!(t.events(g).is_empty());
    // RESET_WATCHES drops every watch.
    t.ok(t.dom0, MsgType::Watch, 0, b"/x\0a\0");
    assert_eq!(t.events(t.dom0), [("/x".to_string(), "a".to_string())]);
    t.ok(t.dom0, MsgType::ResetWatches, 0, b"\0");
    t.ok(t.dom0, MsgType::Write, 0, b"/x/y\0");
    assert!(t.events(t.dom0).is_empty());
}

#[test]
fn transactions_commit_abort_and_conflict() {
    let mut t = T::new(Quotas::default());
    let d = t.dom0;
    let other = t.xs.connect(ConnKind::Socket);
    t.ok(d, MsgType::Watch, 0, b"/t\0w\0");
    t.events(d);
    let tx: u32 = String::from_utf8(t.ok(d, MsgType::TransactionStart, 0, b"\0"))
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    assert_eq!(t.err(d, MsgType::TransactionStart, tx, b"\0"), "EBUSY");
    t.ok(d, MsgType::Write, tx, b"/t/a\0in-tx");
    assert_eq!(t.ok(d, MsgType::Read, tx, b"/t/a\0"), b"in-tx");
    assert_eq!(t.err(d, MsgType::Read, 0, b"/t/a\0"), "ENOENT");
    assert!(t.events(d).is_empty(), "no events before commit");
    t.ok(d, MsgType::TransactionEnd, tx, b"T\0");
    assert_eq!(t.ok(d, MsgType::Read, 0, b"/t/a\0"), b"in-tx");
    assert_eq!(t.events(d), [("/t/a".to_string(), "w".to_string())]);
    // Abort leaves nothing.
    let tx = 1 + tx;
    let got = t.ok(d, MsgType::TransactionStart, 0, b"\0");
    assert_eq!(got, format!("{tx}\0").as_bytes());
    t.ok(d, MsgType::Rm, tx, b"/t\0");
    t.ok(d, MsgType::TransactionEnd, tx, b"F\0");
    assert_eq!(t.ok(d, MsgType::Read, 0, b"/t/a\0"), b"in-tx");
    // A conflicting commit by someone else makes ours EAGAIN; unrelated ones do not.
    let tx = String::from_utf8(t.ok(d, MsgType::TransactionStart, 0, b"\0")).unwrap();
    let tx: u32 = tx.trim_end_matches('\0').parse().unwrap();
    t.ok(d, MsgType::Read, tx, b"/t/a\0");
    t.ok(other, MsgType::Write, 0, b"/unrelated\0x");
    t.ok(d, MsgType::Write, tx, b"/t/b\0y");
    t.ok(other, MsgType::Write, 0, b"/t/a\0changed");
    assert_eq!(t.ok(d, MsgType::Read, tx, b"/t/a\0"), b"in-tx");
    assert_eq!(t.err(d, MsgType::TransactionEnd, tx, b"T\0"), "EAGAIN");
    assert_eq!(t.err(d, MsgType::Read, 0, b"/t/b\0"), "ENOENT");
    assert_eq!(t.err(d, MsgType::TransactionEnd, tx, b"T\0"), "ENOENT");
    assert!(t.xs.check().is_ok());
}

#[test]
fn features_are_set_before_introduce() {
    let mut t = T::new(Quotas::default());
    assert_eq!(t.ok(t.dom0, MsgType::GetFeature, 0, b""), b"7\0");
    t.ok(t.dom0, MsgType::SetFeature, 0, b"20\x001\0");
    assert_eq!(t.ok(t.dom0, MsgType::GetFeature, 0, b"20\0"), b"1\0");
    assert_eq!(
        t.err(t.dom0, MsgType::SetFeature, 0, b"20\x0064\0"),
        "EINVAL"
    );
    let g = t.guest(20);
    assert_eq!(t.err(t.dom0, MsgType::SetFeature, 0, b"20\x003\0"), "EBUSY");
    assert_eq!(t.ok(t.dom0, MsgType::GetFeature, 0, b"20\0"), b"1\0");
    assert_eq!(t.err(g, MsgType::GetFeature, 0, b"20\0"), "EACCES");
    assert_eq!(t.ok(g, MsgType::GetFeature, 0, b""), b"7\0");
}

#[test]
fn per_domain_quotas_override_the_global_ones() {
    let mut t = T::new(Quotas::default());
    let g = t.guest(30);
    let h = t.guest(31);
    assert_eq!(
        t.err(t.dom0, MsgType::SetQuota, 0, b"99\0nodes\x002\0"),
        "ENOENT"
    );
    t.ok(t.dom0, MsgType::SetQuota, 0, b"30\0nodes\x002\0");
    assert_eq!(t.ok(t.dom0, MsgType::GetQuota, 0, b"30\0nodes\0"), b"2\0");
    assert_eq!(
        t.ok(t.dom0, MsgType::GetQuota, 0, b"31\0nodes\0"),
        b"1000\0"
    );
    assert_eq!(t.ok(t.dom0, MsgType::GetQuota, 0, b"nodes\0"), b"1000\0");
    // Domain 30 owns its home already: one more node fits, the next does not.
    t.ok(g, MsgType::Write, 0, b"a\0");
    assert_eq!(t.err(g, MsgType::Write, 0, b"b\0"), "ENOSPC");
    t.ok(h, MsgType::Write, 0, b"a\0");
    t.ok(h, MsgType::Write, 0, b"b\0");
    assert_eq!(t.err(g, MsgType::GetQuota, 0, b"nodes\0"), "EACCES");
}

#[test]
fn watch_depth_and_per_domain_release_watches() {
    let mut t = T::new(Quotas::default());
    let d = t.dom0;
    t.ok(d, MsgType::Watch, 0, b"/top\0shallow\x001\0");
    t.ok(d, MsgType::Watch, 0, b"@releaseDomain/41\0one\0");
    t.ok(d, MsgType::Watch, 0, b"@introduceDomain\0ids\x001\0");
    assert_eq!(
        t.err(d, MsgType::Watch, 0, b"@introduceDomain\0x\x002\0"),
        "EINVAL"
    );
    assert_eq!(t.err(d, MsgType::Watch, 0, b"/top\0x\0deep\0"), "EINVAL");
    t.events(d);
    t.ok(d, MsgType::Write, 0, b"/top/a\0");
    t.ok(d, MsgType::Write, 0, b"/top/a/b\0");
    assert_eq!(t.events(d), [("/top/a".to_string(), "shallow".to_string())]);
    t.guest(40);
    t.guest(41);
    let ev = t.events(d);
    assert_eq!(
        ev,
        [
            ("@introduceDomain/40".to_string(), "ids".to_string()),
            ("@introduceDomain/41".to_string(), "ids".to_string())
        ]
    );
    t.ok(d, MsgType::Release, 0, b"40\0");
    assert!(t.events(d).is_empty());
    t.ok(d, MsgType::Release, 0, b"41\0");
    assert_eq!(
        t.events(d),
        [("@releaseDomain/41".to_string(), "one".to_string())]
    );
}
