//! A small blocking Xenstore client over the Unix socket, used by tests, the benchmark and
//! tools. Watch events that arrive while waiting for a reply are kept for [`Client::next_event`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::wire::{self, Header, Message, MsgType, XsError, HEADER_LEN};

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("xenstore socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Xenstore answered with an error.
    #[error("xenstore error {0}")]
    Xs(XsError),
    /// Xenstore answered with something this client did not expect.
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

/// A connection to Xenstore.
#[derive(Debug)]
pub struct Client {
    sock: UnixStream,
    path: PathBuf,
    next_req: u32,
    events: VecDeque<(String, String)>,
    /// Bytes received but not yet parsed (one read often brings a whole reply).
    inbuf: Vec<u8>,
}

impl Client {
    /// Connects to the daemon's socket.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref().to_path_buf();
        let sock = UnixStream::connect(&path).map_err(|source| ClientError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Client {
            sock,
            path,
            next_req: 1,
            events: VecDeque::new(),
            inbuf: Vec::new(),
        })
    }

    /// Connects, retrying until `timeout` (the daemon may be restarting).
    pub fn connect_retry(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, ClientError> {
        let end = Instant::now() + timeout;
        loop {
            match Self::connect(path.as_ref()) {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() >= end => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Drops the connection and connects again (after a daemon restart).
    pub fn reconnect(&mut self, timeout: Duration) -> Result<(), ClientError> {
        *self = Self::connect_retry(&self.path, timeout)?;
        Ok(())
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn fill(&mut self, want: usize) -> Result<(), ClientError> {
        let mut chunk = [0u8; 8192];
        while self.inbuf.len() < want {
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "xenstored closed");
                    return Err(self.io(e));
                }
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    fn read_message(&mut self) -> Result<Message, ClientError> {
        self.fill(HEADER_LEN)?;
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.inbuf[..HEADER_LEN]);
        let header = Header::parse(&h);
        if header.len as usize > wire::PAYLOAD_MAX {
            return Err(ClientError::Protocol(format!(
                "payload of {} bytes",
                header.len
            )));
        }
        let total = HEADER_LEN + header.len as usize;
        self.fill(total)?;
        let payload = self.inbuf[HEADER_LEN..total].to_vec();
        self.inbuf.drain(..total);
        Ok(Message { header, payload })
    }

    fn keep_event(&mut self, m: &Message) {
        let parts = wire::split_strings(&m.payload);
        if let [p, t, ..] = parts[..] {
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            self.events.push_back((s(p), s(t)));
        }
    }

    /// Sends a raw request and returns the reply payload (an `ERROR` reply becomes `Err`).
    pub fn request(
        &mut self,
        ty: MsgType,
        tx: u32,
        payload: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        let msg = Message::new(ty, req_id, tx, payload.to_vec()).encode();
        self.sock.write_all(&msg).map_err(|e| self.io(e))?;
        loop {
            let m = self.read_message()?;
            if m.header.ty == MsgType::WatchEvent as u32 {
                self.keep_event(&m);
                continue;
            }
            if m.header.req_id != req_id {
                return Err(ClientError::Protocol(format!(
                    "reply to request {}",
                    m.header.req_id
                )));
            }
            if m.header.ty == MsgType::Error as u32 {
                let name = wire::one_arg(&m.payload).unwrap_or("?");
                return Err(XsError::from_name(name)
                    .map(ClientError::Xs)
                    .unwrap_or_else(|| ClientError::Protocol(format!("error {name}"))));
            }
            return Ok(m.payload);
        }
    }

    fn cstr(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// Reads a node's value.
    pub fn read(&mut self, tx: u32, path: &str) -> Result<Vec<u8>, ClientError> {
        self.request(MsgType::Read, tx, &Self::cstr(path))
    }

    /// Writes a node's value.
    pub fn write(&mut self, tx: u32, path: &str, value: &[u8]) -> Result<(), ClientError> {
        let mut p = Self::cstr(path);
        p.extend_from_slice(value);
        self.request(MsgType::Write, tx, &p).map(drop)
    }

    /// Creates a node.
    pub fn mkdir(&mut self, tx: u32, path: &str) -> Result<(), ClientError> {
        self.request(MsgType::Mkdir, tx, &Self::cstr(path))
            .map(drop)
    }

    /// Removes a node and its children.
    pub fn rm(&mut self, tx: u32, path: &str) -> Result<(), ClientError> {
        self.request(MsgType::Rm, tx, &Self::cstr(path)).map(drop)
    }

    /// Lists a node's children.
    pub fn directory(&mut self, tx: u32, path: &str) -> Result<Vec<String>, ClientError> {
        let p = self.request(MsgType::Directory, tx, &Self::cstr(path))?;
        Ok(strings(&p))
    }

    /// A node's permissions as strings (`b0`, `r3`, ...).
    pub fn get_perms(&mut self, tx: u32, path: &str) -> Result<Vec<String>, ClientError> {
        let p = self.request(MsgType::GetPerms, tx, &Self::cstr(path))?;
        Ok(strings(&p))
    }

    /// Sets a node's permissions.
    pub fn set_perms(&mut self, tx: u32, path: &str, perms: &[&str]) -> Result<(), ClientError> {
        let mut p = Self::cstr(path);
        for s in perms {
            p.extend_from_slice(&Self::cstr(s));
        }
        self.request(MsgType::SetPerms, tx, &p).map(drop)
    }

    /// Starts a transaction.
    pub fn transaction_start(&mut self) -> Result<u32, ClientError> {
        let p = self.request(MsgType::TransactionStart, 0, b"\0")?;
        let s = wire::one_arg(&p).ok_or_else(|| ClientError::Protocol("transaction id".into()))?;
        s.parse()
            .map_err(|_| ClientError::Protocol(format!("transaction id {s:?}")))
    }

    /// Commits (`true`) or aborts a transaction.
    pub fn transaction_end(&mut self, tx: u32, commit: bool) -> Result<(), ClientError> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(MsgType::TransactionEnd, tx, arg).map(drop)
    }

    /// Runs `f` in a transaction and commits it, starting over (up to 16 times) when the
    /// commit conflicts with another client's writes (`EAGAIN`), as libxenstore's users do.
    /// An error from `f` aborts the transaction and is returned.
    pub fn transact<T, E: From<ClientError>>(
        &mut self,
        mut f: impl FnMut(&mut Client, u32) -> Result<T, E>,
    ) -> Result<T, E> {
        const ATTEMPTS: usize = 16;
        for _ in 0..ATTEMPTS {
            let tx = self.transaction_start()?;
            let v = match f(self, tx) {
                Ok(v) => v,
                Err(e) => {
                    // The error is what matters; an abort failing too adds nothing.
                    let _ = self.transaction_end(tx, false);
                    return Err(e);
                }
            };
            match self.transaction_end(tx, true) {
                Ok(()) => return Ok(v),
                Err(ClientError::Xs(XsError::Again)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClientError::Xs(XsError::Again).into())
    }

    /// Adds a watch.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), ClientError> {
        let mut p = Self::cstr(path);
        p.extend_from_slice(&Self::cstr(token));
        self.request(MsgType::Watch, 0, &p).map(drop)
    }

    /// Removes a watch.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), ClientError> {
        let mut p = Self::cstr(path);
        p.extend_from_slice(&Self::cstr(token));
        self.request(MsgType::Unwatch, 0, &p).map(drop)
    }

    /// Introduces a domain with its ring page and event channel.
    pub fn introduce(&mut self, domid: u32, gfn: i64, evtchn: u32) -> Result<(), ClientError> {
        let p = format!("{domid}\0{gfn}\0{evtchn}\0");
        self.request(MsgType::Introduce, 0, p.as_bytes()).map(drop)
    }

    /// Whether a domain is introduced.
    pub fn is_domain_introduced(&mut self, domid: u32) -> Result<bool, ClientError> {
        let p = self.request(
            MsgType::IsDomainIntroduced,
            0,
            &Self::cstr(&domid.to_string()),
        )?;
        Ok(p == b"T\0")
    }

    /// Waits up to `timeout` for a watch event: `(path, token)`.
    pub fn next_event(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(String, String)>, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        self.sock
            .set_read_timeout(Some(timeout))
            .map_err(|e| self.io(e))?;
        let r = self.read_message();
        self.sock.set_read_timeout(None).map_err(|e| self.io(e))?;
        match r {
            Ok(m) if m.header.ty == MsgType::WatchEvent as u32 => {
                self.keep_event(&m);
                Ok(self.events.pop_front())
            }
            Ok(m) => Err(ClientError::Protocol(format!("unsolicited {:?}", m.header))),
            Err(ClientError::Io { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// The nul-terminated strings of a reply, as text.
fn strings(payload: &[u8]) -> Vec<String> {
    wire::split_strings(payload)
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}
