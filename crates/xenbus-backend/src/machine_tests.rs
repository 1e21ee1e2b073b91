use std::time::{Duration, Instant};

use super::*;

/// The store as the machine sees it, and what the machine did.
struct World {
    obs: Observed,
    log: Vec<String>,
    connect: Result<(), String>,
}

impl Effects for World {
    fn publish(&mut self, nodes: Nodes, state: Option<XenbusState>) -> bool {
        if self.obs.backend == NodeState::Missing {
            return false;
        }
        self.log.push(format!("publish {nodes:?} {state:?}"));
        if let Some(s) = state {
            self.obs.backend = NodeState::State(s);
        }
        true
    }
    fn connect(&mut self) -> Result<(), String> {
        self.log.push("connect".into());
        self.connect.clone()
    }
    fn disconnect(&mut self) {
        self.log.push("disconnect".into());
    }
    fn report_error(&mut self, msg: &str) {
        self.log.push(format!("error {msg}"));
    }
}

struct T {
    m: Machine,
    w: World,
    t0: Instant,
}

impl T {
    fn new(policy: ClosedPolicy) -> Self {
        T {
            m: Machine::new(policy),
            w: World {
                obs: Observed {
                    backend_dir: true,
                    online: true,
                    backend: NodeState::State(Initialising),
                    frontend: NodeState::State(Initialising),
                },
                log: Vec::new(),
                connect: Ok(()),
            },
            t0: Instant::now(),
        }
    }

    /// Sets the frontend's state, steps at `ms` after the start and returns what was done.
    fn front(&mut self, fe: NodeState, ms: u64) -> (Vec<String>, Flow) {
        self.w.obs.frontend = fe;
        self.at(ms)
    }

    fn at(&mut self, ms: u64) -> (Vec<String>, Flow) {
        let obs = self.w.obs;
        let flow = self
            .m
            .step(&obs, self.t0 + Duration::from_millis(ms), &mut self.w);
        (std::mem::take(&mut self.w.log), flow)
    }

    fn connected(policy: ClosedPolicy) -> Self {
        let mut t = T::new(policy);
        t.at(0);
        t.front(st(Initialised), 0);
        assert!(t.m.serving());
        assert_eq!(t.m.state(), Connected);
        t
    }
}

fn st(s: XenbusState) -> NodeState {
    NodeState::State(s)
}

const PARK: ClosedPolicy = ClosedPolicy::ParkConnected {
    after: Duration::from_millis(1000),
};

fn log(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn fresh_device_advertises_then_connects_once() {
    let mut t = T::new(ClosedPolicy::AwaitInitialising);
    assert_eq!(t.at(0).0, log(&["publish Advertised Some(InitWait)"]));
    assert_eq!(t.at(0).0, log(&[]), "steps are idempotent");
    let (l, f) = t.front(st(Initialised), 0);
    assert_eq!(l, log(&["connect", "publish Connected Some(Connected)"]));
    assert_eq!(f, Flow::Continue);
    // netfront goes straight to Connected; blkfront follows Initialised with Connected.
    assert_eq!(t.front(st(Connected), 0).0, log(&[]));
}

#[test]
fn connect_error_closes_and_does_not_park() {
    let mut t = T::new(PARK);
    t.at(0);
    t.w.connect = Err("no ring-ref".into());
    let (l, _) = t.front(st(Initialised), 0);
    assert_eq!(
        l,
        log(&["connect", "error no ring-ref", "publish None Some(Closing)"])
    );
    assert!(!t.m.serving());
    assert_eq!(
        t.front(st(Connected), 0).0,
        log(&[]),
        "no retry while Closing"
    );
    assert_eq!(
        t.front(st(Closed), 0).0,
        log(&["publish None Some(Closed)"])
    );
    assert_eq!(t.at(5000).0, log(&[]));
    assert_eq!(t.m.deadline(), None);
    // A frontend starting over gets the device again.
    t.w.connect = Ok(());
    assert_eq!(
        t.front(st(Initialising), 6000).0,
        log(&["publish Advertised Some(InitWait)"])
    );
}

#[test]
fn netfront_unbind_and_bind_again() {
    let mut t = T::connected(ClosedPolicy::AwaitInitialising);
    // Unbind: xennet_bus_close writes Closing, waits for us, then Closed.
    assert_eq!(
        t.front(st(Closing), 0).0,
        log(&["disconnect", "publish None Some(Closing)"])
    );
    assert_eq!(
        t.front(st(Closed), 0).0,
        log(&["publish None Some(Closed)"])
    );
    // The back end stays Closed (netfront's unbind waits for it).
    assert_eq!(t.at(60_000).0, log(&[]));
    assert_eq!(t.m.deadline(), None);
    // Bind: xennet_create_dev writes Initialising.
    assert_eq!(
        t.front(st(Initialising), 61_000).0,
        log(&["publish Advertised Some(InitWait)"])
    );
    assert_eq!(
        t.front(st(Connected), 61_000).0,
        log(&["connect", "publish Connected Some(Connected)"])
    );
}

#[test]
fn blkfront_unbind_and_bind_again_through_parking() {
    let mut t = T::connected(PARK);
    // Unbind: xenbus_dev_remove writes Closed straight from Connected.
    assert_eq!(
        t.front(st(Closed), 0).0,
        log(&["disconnect", "publish None Some(Closed)"])
    );
    assert_eq!(t.at(10).0, log(&[]));
    assert_eq!(t.m.deadline(), Some(t.t0 + Duration::from_millis(1000)));
    assert_eq!(t.at(999).0, log(&[]));
    assert_eq!(t.at(1000).0, log(&["publish Connected Some(Connected)"]));
    assert_eq!(t.m.state(), Connected);
    assert!(!t.m.serving());
    assert_eq!(t.at(5000).0, log(&[]), "parked, not closed again");
    // Bind: blkfront sees Connected, writes its rings and Initialised, then Connected.
    assert_eq!(t.front(st(Initialised), 6000).0, log(&["connect"]));
    assert!(t.m.serving());
    assert_eq!(t.front(st(Connected), 6000).0, log(&[]));
}

#[test]
fn kexec_reset_of_a_parked_device() {
    let mut t = T::connected(PARK);
    t.front(st(Closed), 0);
    t.at(0);
    t.at(1000);
    assert_eq!(t.m.state(), Connected);
    // xenbus_reset_frontend: Closing, Closed, Initialising, each after the back end follows.
    assert_eq!(
        t.front(st(Closing), 2000).0,
        log(&["publish None Some(Closing)"])
    );
    assert_eq!(
        t.front(st(Closed), 2000).0,
        log(&["publish None Some(Closed)"])
    );
    assert_eq!(
        t.front(st(Initialising), 2010).0,
        log(&["publish Advertised Some(InitWait)"])
    );
    assert_eq!(t.m.deadline(), None);
}

#[test]
fn toolstack_removal_waits_for_the_frontend_then_ends() {
    let mut t = T::connected(PARK);
    t.w.obs.online = false;
    t.w.obs.backend = st(Closing);
    assert_eq!(
        t.at(0),
        (log(&[]), Flow::Continue),
        "serves until the frontend closes"
    );
    assert_eq!(t.front(st(Connected), 0).0, log(&[]));
    assert_eq!(
        t.front(st(Closed), 0),
        (
            log(&["disconnect", "publish None Some(Closed)"]),
            Flow::Exit
        )
    );
}

#[test]
fn removed_directories_end_the_machine() {
    let mut t = T::connected(PARK);
    t.w.obs.backend_dir = false;
    t.w.obs.backend = NodeState::Missing;
    assert_eq!(t.at(0), (log(&["disconnect"]), Flow::Exit));

    let mut t = T::connected(ClosedPolicy::AwaitInitialising);
    let (l, f) = t.front(NodeState::Missing, 0);
    assert_eq!(
        (l, f),
        (
            log(&["disconnect", "publish None Some(Closed)"]),
            Flow::Continue
        )
    );
    t.w.obs.online = false;
    assert_eq!(t.at(0), (log(&[]), Flow::Exit));
}

#[test]
fn garbage_frontend_states_are_ignored() {
    let mut t = T::connected(PARK);
    for fe in [
        NodeState::Garbage,
        st(InitWait),
        st(Reconfiguring),
        st(Reconfigured),
    ] {
        assert_eq!(t.front(fe, 0), (log(&[]), Flow::Continue));
        assert!(t.m.serving());
    }
}

#[test]
fn shutdown_closes_the_device() {
    let mut t = T::connected(PARK);
    t.m.shutdown(&mut t.w);
    assert_eq!(
        std::mem::take(&mut t.w.log),
        log(&[
            "disconnect",
            "publish None Some(Closing)",
            "publish None Some(Closed)"
        ])
    );
}

#[test]
fn toolstack_recreating_the_device_starts_over() {
    let mut t = T::connected(ClosedPolicy::AwaitInitialising);
    t.w.obs.backend = st(Initialising);
    t.w.obs.frontend = st(Initialising);
    assert_eq!(
        t.at(0).0,
        log(&["disconnect", "publish Advertised Some(InitWait)"])
    );
}
