//! The daemon's event loop: one thread, epoll (mio), serving the Unix socket and any domain
//! rings a [`RingAttacher`] provides, saving the state file periodically and on stop.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UnixListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::persist::{self, PersistError};
use crate::quota::Quotas;
use crate::server::{ConnId, DomainChange, Xenstore};
use crate::transport::ring::{Notify, RingChannel, RingConnection, RingMemory};
use crate::transport::unix::{self, IoStatus, ReadStatus, SocketConn, READ_PAUSE_BACKLOG};

const LISTENER: Token = Token(0);
const STOP: Token = Token(1);
const FIRST_CLIENT: usize = 2;

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Socket to listen on.
    pub socket: PathBuf,
    /// State file kept across restarts (`None`: nothing survives a restart).
    pub state_file: Option<PathBuf>,
    /// How long a change may stay unsaved (the state is always saved on a clean stop).
    pub save_interval: Duration,
    /// Quotas for a fresh store (a restored store keeps its own).
    pub quotas: Quotas,
    /// Socket clients served at once; further connections are closed at once, so a
    /// connection flood cannot exhaust descriptors and starve the clients already served.
    pub max_clients: usize,
}

/// What can stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The socket could not be set up.
    #[error("socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Polling failed.
    #[error("event loop: {0}")]
    Poll(io::Error),
    /// The state file could not be read or written.
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// A domain's ring page and event channel, as provided by the VMM.
pub trait RingPort: RingMemory + Notify {
    /// A file descriptor that becomes readable when the guest notifies.
    fn event_fd(&self) -> RawFd;
    /// Consumes the pending notification(s) signalled on [`RingPort::event_fd`].
    fn ack_event(&self);
}

/// Maps an introduced domain's ring so the daemon can serve it.
pub trait RingAttacher {
    /// Returns the domain's ring, or `None` if it cannot be reached (the domain stays
    /// introduced but unserved).
    fn attach(&mut self, domid: u32, gfn: i64, evtchn: u32) -> Option<Arc<dyn RingPort>>;
}

/// A shared port used as both the page and the notifier of a [`RingChannel`].
#[derive(Clone)]
struct Port(Arc<dyn RingPort>);

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Port")
    }
}

impl RingMemory for Port {
    fn read_u32(&self, off: usize) -> u32 {
        self.0.read_u32(off)
    }
    fn write_u32(&self, off: usize, v: u32) {
        self.0.write_u32(off, v)
    }
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        self.0.read_bytes(off, buf)
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        self.0.write_bytes(off, data)
    }
}

impl Notify for Port {
    fn notify(&self) {
        self.0.notify()
    }
}

#[derive(Debug)]
struct Ring {
    token: Token,
    fd: RawFd,
    conn: RingConnection<Port, Port>,
    port: Port,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Socket(Token),
    Ring(u32),
}

/// The running daemon.
pub struct Daemon {
    xs: Xenstore,
    poll: Poll,
    listener: UnixListener,
    socks: HashMap<Token, SocketConn>,
    rings: HashMap<u32, Ring>,
    ring_tokens: HashMap<Token, u32>,
    by_conn: HashMap<ConnId, Target>,
    attacher: Option<Box<dyn RingAttacher>>,
    cfg: DaemonConfig,
    next_token: usize,
    last_save: Instant,
    saver: Option<Saver>,
    /// Read buffer shared by all sockets.
    scratch: Vec<u8>,
}

/// Writes periodic snapshots on a background thread so fsync never stalls the event loop.
struct Saver {
    tx: Option<std::sync::mpsc::SyncSender<Box<persist::State>>>,
    busy: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Saver {
    fn start(path: PathBuf) -> Saver {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Box<persist::State>>(1);
        let busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = busy.clone();
        let thread = std::thread::spawn(move || {
            for state in rx {
                if let Err(e) = persist::write_state(&state, &path) {
                    tracing::error!("periodic save: {e}");
                }
                flag.store(false, std::sync::atomic::Ordering::Release);
            }
        });
        Saver {
            tx: Some(tx),
            busy,
            thread: Some(thread),
        }
    }

    /// Hands a snapshot to the thread; `false` if a save is still running.
    fn offer(&self, state: Box<persist::State>) -> bool {
        use std::sync::atomic::Ordering;
        if self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        match self.tx.as_ref().map(|tx| tx.try_send(state)) {
            Some(Ok(())) => true,
            _ => {
                self.busy.store(false, Ordering::Release);
                false
            }
        }
    }

    /// Waits for a running save to finish (before the final, synchronous one).
    fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.finish();
    }
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("socket", &self.cfg.socket)
            .field("clients", &self.socks.len())
            .field("rings", &self.rings.len())
            .finish()
    }
}

impl Daemon {
    /// Loads the state file (if any), binds the socket and re-attaches the rings of domains
    /// introduced before a restart.
    pub fn new(
        cfg: DaemonConfig,
        attacher: Option<Box<dyn RingAttacher>>,
    ) -> Result<Self, DaemonError> {
        let xs = match &cfg.state_file {
            Some(f) => persist::load(f)?,
            None => None,
        };
        let restored = xs.is_some();
        let xs = xs.unwrap_or_else(|| Xenstore::new(cfg.quotas.clone()));
        let sock_err = |source| DaemonError::Socket {
            path: cfg.socket.clone(),
            source,
        };
        let mut listener = unix::bind(&cfg.socket).map_err(sock_err)?;
        let poll = Poll::new().map_err(DaemonError::Poll)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(DaemonError::Poll)?;
        let mut d = Daemon {
            xs,
            poll,
            listener,
            socks: HashMap::new(),
            rings: HashMap::new(),
            ring_tokens: HashMap::new(),
            by_conn: HashMap::new(),
            attacher,
            cfg,
            next_token: FIRST_CLIENT,
            last_save: Instant::now(),
            saver: None,
            scratch: vec![0u8; 64 * 1024],
        };
        d.saver = d.cfg.state_file.clone().map(Saver::start);
        if restored {
            let doms: Vec<_> =
                d.xs.domains()
                    .iter()
                    .map(|(id, i)| (*id, i.gfn, i.evtchn))
                    .collect();
            tracing::info!(
                domains = doms.len(),
                nodes = d.xs.store().len(),
                "state restored"
            );
            for (domid, gfn, evtchn) in doms {
                d.attach_ring(domid, gfn, evtchn);
            }
        }
        Ok(d)
    }

    /// The engine (for inspection).
    pub fn xenstore(&self) -> &Xenstore {
        &self.xs
    }

    /// The engine, for an embedding VMM (e.g. to report a domain's shutdown with
    /// [`Xenstore::domain_shutdown`] between runs of the loop).
    pub fn xenstore_mut(&mut self) -> &mut Xenstore {
        &mut self.xs
    }

    /// Saves the state file now (if one is configured), after any background save.
    pub fn save(&mut self) -> Result<(), DaemonError> {
        if let Some(s) = self.saver.as_mut() {
            s.finish();
            self.saver = self.cfg.state_file.clone().map(Saver::start);
        }
        if let Some(f) = &self.cfg.state_file {
            persist::save(&self.xs, f)?;
            self.xs.mark_saved();
        }
        self.last_save = Instant::now();
        Ok(())
    }

    /// Serves until `stop` becomes readable (a byte written by a signal handler), then saves
    /// the state and returns.
    pub fn run(&mut self, stop: Option<std::os::unix::net::UnixStream>) -> Result<(), DaemonError> {
        let mut stop = match stop {
            Some(s) => {
                s.set_nonblocking(true).map_err(DaemonError::Poll)?;
                let mut s = mio::net::UnixStream::from_std(s);
                self.poll
                    .registry()
                    .register(&mut s, STOP, Interest::READABLE)
                    .map_err(DaemonError::Poll)?;
                Some(s)
            }
            None => None,
        };
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.save_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(DaemonError::Poll(e));
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    STOP => {
                        if let Some(s) = stop.as_mut() {
                            let _ = self.poll.registry().deregister(s);
                        }
                        self.save()?;
                        tracing::info!("stopped, state saved");
                        return Ok(());
                    }
                    t if self.ring_tokens.contains_key(&t) => {
                        let domid = self.ring_tokens[&t];
                        if let Some(r) = self.rings.get(&domid) {
                            r.port.0.ack_event();
                        }
                        self.pump_ring(domid);
                    }
                    t => {
                        tracing::trace!(?t, r = ev.is_readable(), w = ev.is_writable(), "event");
                        if ev.is_readable() || ev.is_read_closed() {
                            self.pull(t);
                        }
                        if ev.is_writable() {
                            self.socket_writable(t);
                        }
                    }
                }
            }
            self.deliver();
            self.domain_changes();
            if self.xs.unsaved_changes() && self.last_save.elapsed() >= self.cfg.save_interval {
                self.save_in_background();
            }
        }
    }

    fn save_in_background(&mut self) {
        let Some(saver) = self.saver.as_ref() else {
            return;
        };
        if saver.offer(Box::new(persist::State::capture(&self.xs))) {
            self.xs.mark_saved();
            self.last_save = Instant::now();
        } else {
            // Still writing the previous snapshot: try again shortly.
            let retry = self
                .cfg
                .save_interval
                .saturating_sub(Duration::from_millis(10));
            self.last_save = Instant::now()
                .checked_sub(retry)
                .unwrap_or_else(Instant::now);
        }
    }

    fn save_timeout(&self) -> Option<Duration> {
        (self.cfg.state_file.is_some() && self.xs.unsaved_changes()).then(|| {
            self.cfg
                .save_interval
                .saturating_sub(self.last_save.elapsed())
        })
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.socks.len() >= self.cfg.max_clients {
                        tracing::warn!(max = self.cfg.max_clients, "too many clients: refused");
                        drop(stream);
                        continue;
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, token, Interest::READABLE)
                    {
                        tracing::warn!("cannot register client: {e}");
                        continue;
                    }
                    let conn = self.xs.connect(crate::server::ConnKind::Socket);
                    self.by_conn.insert(conn, Target::Socket(token));
                    self.socks.insert(token, SocketConn::new(stream, conn));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and similar: keep serving existing clients.
                    tracing::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn close(&mut self, t: Token) {
        if let Some(mut s) = self.socks.remove(&t) {
            let _ = self.poll.registry().deregister(&mut s.stream);
            self.by_conn.remove(&s.conn);
            self.xs.disconnect(s.conn);
        }
    }

    fn socket_writable(&mut self, t: Token) {
        let Some(s) = self.socks.get_mut(&t) else {
            return;
        };
        if s.flush() == IoStatus::Closed {
            self.close(t);
            return;
        }
        // Edge-triggered: pick up requests that arrived while reading was paused.
        self.pull(t);
    }

    /// Reads and handles a client's requests until its socket is drained, or until its
    /// unsent replies pass the pause mark (then it resumes when the client reads them).
    fn pull(&mut self, t: Token) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.pull_with(t, &mut scratch);
        self.scratch = scratch;
    }

    fn pull_with(&mut self, t: Token, scratch: &mut [u8]) {
        loop {
            let Some(s) = self.socks.get_mut(&t) else {
                return;
            };
            if s.backlog() > READ_PAUSE_BACKLOG {
                self.update_interest(t);
                return;
            }
            let status = s.read_available(scratch);
            tracing::trace!(?t, ?status, pending = s.decoder.pending(), "read");
            match status {
                ReadStatus::Closed => {
                    self.close(t);
                    return;
                }
                ReadStatus::Drained => {
                    self.process(t);
                    return;
                }
                ReadStatus::More => self.process(t),
            }
        }
    }

    /// Handles the complete requests a client has sent, then sends the replies.
    fn process(&mut self, t: Token) {
        let Some(s) = self.socks.get_mut(&t) else {
            return;
        };
        loop {
            let mut paused = false;
            loop {
                if s.backlog() > READ_PAUSE_BACKLOG {
                    paused = true;
                    break;
                }
                match s.decoder.next_message() {
                    Ok(Some(m)) => {
                        self.xs.handle(s.conn, &m);
                        let out = self.xs.take_output(s.conn);
                        s.queue(&out);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("client disconnected: {e}");
                        self.close(t);
                        return;
                    }
                }
            }
            if s.flush() == IoStatus::Closed {
                self.close(t);
                return;
            }
            // Paused with requests still buffered: if the socket took the replies, carry on
            // now (no further readiness event may come for requests already read).
            tracing::trace!(?t, paused, backlog = s.backlog(), "processed");
            if !paused || s.backlog() > READ_PAUSE_BACKLOG {
                break;
            }
        }
        self.update_interest(t);
    }

    fn update_interest(&mut self, t: Token) {
        let Some(s) = self.socks.get_mut(&t) else {
            return;
        };
        let want = s.backlog() > 0;
        tracing::trace!(?t, want, registered = s.want_write, "interest");
        if want != s.want_write {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut s.stream, t, interest)
                .is_err()
            {
                self.close(t);
                return;
            }
            s.want_write = want;
        }
    }

    /// Sends queued replies and watch events to every connection that has some.
    fn deliver(&mut self) {
        // Serving a ring can fire watches for others: repeat until everything is delivered.
        loop {
            let dirty = self.xs.take_dirty();
            if dirty.is_empty() {
                return;
            }
            self.deliver_to(dirty);
        }
    }

    fn deliver_to(&mut self, dirty: Vec<ConnId>) {
        for cid in dirty {
            match self.by_conn.get(&cid).copied() {
                Some(Target::Socket(t)) => {
                    let out = self.xs.take_output(cid);
                    let limit = self.xs.quotas().output_bytes;
                    let Some(s) = self.socks.get_mut(&t) else {
                        continue;
                    };
                    let was_paused = s.backlog() > READ_PAUSE_BACKLOG;
                    s.queue(&out);
                    if s.flush() == IoStatus::Closed {
                        self.close(t);
                    } else if was_paused && s.backlog() <= READ_PAUSE_BACKLOG {
                        // This flush unpaused the client: serve what it sent meanwhile.
                        self.pull(t);
                    } else if s.backlog() > limit {
                        tracing::warn!(
                            backlog = s.backlog(),
                            "client stopped reading: disconnected"
                        );
                        self.close(t);
                    } else {
                        self.update_interest(t);
                    }
                }
                Some(Target::Ring(domid)) => self.pump_ring(domid),
                None => {
                    // A connection no transport serves (e.g. a domain without a ring).
                    self.xs.take_output(cid);
                }
            }
        }
    }

    fn domain_changes(&mut self) {
        for ch in self.xs.take_domain_changes() {
            match ch {
                DomainChange::Introduced { domid, gfn, evtchn } => {
                    self.attach_ring(domid, gfn, evtchn)
                }
                DomainChange::Released { domid } => self.detach_ring(domid),
            }
        }
    }

    fn attach_ring(&mut self, domid: u32, gfn: i64, evtchn: u32) {
        let Some(att) = self.attacher.as_mut() else {
            return;
        };
        let Some(port) = att.attach(domid, gfn, evtchn) else {
            tracing::warn!(domid, "ring of introduced domain not reachable");
            return;
        };
        let token = Token(self.next_token);
        self.next_token += 1;
        let fd = port.event_fd();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
        {
            tracing::warn!(domid, "cannot watch ring events: {e}");
            return;
        }
        let port = Port(port);
        let features = self.xs.domains().features(domid);
        let chan = RingChannel::with_features(port.clone(), port.clone(), features);
        let conn = RingConnection::new(&mut self.xs, domid, chan);
        self.by_conn.insert(conn.conn_id(), Target::Ring(domid));
        self.ring_tokens.insert(token, domid);
        self.rings.insert(
            domid,
            Ring {
                token,
                fd,
                conn,
                port,
            },
        );
        self.pump_ring(domid);
    }

    fn detach_ring(&mut self, domid: u32) {
        if let Some(r) = self.rings.remove(&domid) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&r.fd));
            self.ring_tokens.remove(&r.token);
            self.by_conn.remove(&r.conn.conn_id());
            self.xs.disconnect(r.conn.conn_id());
        }
    }

    fn pump_ring(&mut self, domid: u32) {
        let Some(r) = self.rings.get_mut(&domid) else {
            return;
        };
        if let Err(e) = r.conn.pump(&mut self.xs) {
            tracing::warn!(domid, "ring stopped: {e}");
        }
    }
}
