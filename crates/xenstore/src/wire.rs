//! The Xenstore wire protocol (`xen/include/public/io/xs_wire.h`): the 16-byte message header,
//! message types, error names, and an incremental decoder that splits a byte stream into
//! messages while rejecting malformed input.

use std::fmt;

/// Largest payload either side may send (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;
/// Longest absolute path (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;
/// Longest relative path (`XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = 2048;
/// Size of the wire header.
pub const HEADER_LEN: usize = 16;

/// Message types, numbered as in `enum xsd_sockmsg_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)] // The names are the protocol's own.
pub enum MsgType {
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    ResetWatches = 21,
    DirectoryPart = 22,
    GetFeature = 23,
    SetFeature = 24,
    GetQuota = 25,
    SetQuota = 26,
}

impl MsgType {
    /// Maps a raw header type to a known message type (`None` for 20, unknown and invalid ones).
    pub fn from_u32(v: u32) -> Option<Self> {
        use MsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            23 => GetFeature,
            24 => SetFeature,
            25 => GetQuota,
            26 => SetQuota,
            _ => return None,
        })
    }
}

/// The errors Xenstore reports, sent on the wire by name (`xsd_errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // The names are errno's own.
pub enum XsError {
    #[error("EINVAL")]
    Inval,
    #[error("EACCES")]
    Acces,
    #[error("EEXIST")]
    Exist,
    #[error("EISDIR")]
    IsDir,
    #[error("ENOENT")]
    NoEnt,
    #[error("ENOMEM")]
    NoMem,
    #[error("ENOSPC")]
    NoSpc,
    #[error("EIO")]
    Io,
    #[error("ENOTEMPTY")]
    NotEmpty,
    #[error("ENOSYS")]
    NoSys,
    #[error("EROFS")]
    RoFs,
    #[error("EBUSY")]
    Busy,
    #[error("EAGAIN")]
    Again,
    #[error("EISCONN")]
    IsConn,
    #[error("E2BIG")]
    TooBig,
    #[error("EPERM")]
    Perm,
}

impl XsError {
    /// The name sent in an `ERROR` reply.
    pub fn name(self) -> &'static str {
        use XsError::*;
        match self {
            Inval => "EINVAL",
            Acces => "EACCES",
            Exist => "EEXIST",
            IsDir => "EISDIR",
            NoEnt => "ENOENT",
            NoMem => "ENOMEM",
            NoSpc => "ENOSPC",
            Io => "EIO",
            NotEmpty => "ENOTEMPTY",
            NoSys => "ENOSYS",
            RoFs => "EROFS",
            Busy => "EBUSY",
            Again => "EAGAIN",
            IsConn => "EISCONN",
            TooBig => "E2BIG",
            Perm => "EPERM",
        }
    }

    /// Parses an error name as found in an `ERROR` reply.
    pub fn from_name(name: &str) -> Option<Self> {
        use XsError::*;
        [
            Inval, Acces, Exist, IsDir, NoEnt, NoMem, NoSpc, Io, NotEmpty, NoSys, RoFs, Busy,
            Again, IsConn, TooBig, Perm,
        ]
        .into_iter()
        .find(|e| e.name() == name)
    }
}

/// A message header (`struct xsd_sockmsg`), little-endian on every platform Oxen runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Raw message type.
    pub ty: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside transactions.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Parses a header from its 16 bytes.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            ty: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        }
    }

    /// Serialises the header.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }
}

/// One complete message: header plus payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The header; `len` always equals `payload.len()`.
    pub header: Header,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("header", &self.header)
            .field("payload", &String::from_utf8_lossy(&self.payload))
            .finish()
    }
}

impl Message {
    /// Builds a message with the given type, ids and payload.
    pub fn new(ty: MsgType, req_id: u32, tx_id: u32, payload: Vec<u8>) -> Self {
        let header = Header {
            ty: ty as u32,
            req_id,
            tx_id,
            len: payload.len() as u32,
        };
        Message { header, payload }
    }

    /// An `ERROR` reply to a request with the given header.
    pub fn error(req: &Header, err: XsError) -> Self {
        let mut p = err.name().as_bytes().to_vec();
        p.push(0);
        Message::new(MsgType::Error, req.req_id, req.tx_id, p)
    }

    /// The message type, if known.
    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::from_u32(self.header.ty)
    }

    /// Appends the wire form of this message to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header.to_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// The wire form of this message.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.encode_into(&mut v);
        v
    }
}

/// Why a byte stream was rejected; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header announced more than [`PAYLOAD_MAX`] bytes.
    #[error("payload length {0} exceeds the maximum of {PAYLOAD_MAX} bytes")]
    TooLong(u32),
}

/// Splits a byte stream into messages. Feed it bytes as they arrive; take messages out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as messages.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// How many more bytes would complete the message being received (at least 1 when idle),
    /// used by ring transports to avoid reading past a message boundary.
    pub fn wanted(&self) -> usize {
        let avail = self.pending();
        if avail < HEADER_LEN {
            return HEADER_LEN - avail;
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        let total = HEADER_LEN + Header::parse(&h).len.min(PAYLOAD_MAX as u32 + 1) as usize;
        total.saturating_sub(avail).max(1)
    }

    /// Returns the next complete message, `Ok(None)` if more bytes are needed, or an error
    /// if the stream is malformed (then the decoder must not be used again).
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            self.compact();
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&avail[..HEADER_LEN]);
        let header = Header::parse(&h);
        if header.len as usize > PAYLOAD_MAX {
            return Err(FrameError::TooLong(header.len));
        }
        let total = HEADER_LEN + header.len as usize;
        if avail.len() < total {
            self.compact();
            return Ok(None);
        }
        let payload = avail[HEADER_LEN..total].to_vec();
        self.start += total;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(Message { header, payload }))
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Splits a payload into its nul-terminated strings. A trailing part without a nul is
/// returned as a last element (callers decide whether that is allowed).
pub fn split_strings(payload: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = payload.split(|&b| b == 0).collect();
    if payload.last() == Some(&0) || payload.is_empty() {
        out.pop();
    }
    out
}

/// The single nul-terminated string of a one-argument request (exactly one nul, at the end).
pub fn one_arg(payload: &[u8]) -> Option<&str> {
    let (last, body) = payload.split_last()?;
    if *last != 0 || body.contains(&0) {
        return None;
    }
    std::str::from_utf8(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = Header {
            ty: 2,
            req_id: 7,
            tx_id: 9,
            len: 5,
        };
        assert_eq!(Header::parse(&h.to_bytes()), h);
    }

    #[test]
    fn decoder_splits_and_rejects() {
        let mut d = Decoder::new();
        let a = Message::new(MsgType::Read, 1, 0, b"/a\0".to_vec()).encode();
        let b = Message::new(MsgType::Write, 2, 0, b"/b\0x".to_vec()).encode();
        let mut all = a.clone();
        all.extend_from_slice(&b);
        d.feed(&all[..5]);
        assert_eq!(d.next_message().unwrap(), None);
        assert_eq!(d.wanted(), HEADER_LEN - 5);
        d.feed(&all[5..]);
        assert_eq!(d.next_message().unwrap().unwrap().payload, b"/a\0");
        assert_eq!(d.next_message().unwrap().unwrap().payload, b"/b\0x");
        assert_eq!(d.next_message().unwrap(), None);
        let bad = Header {
            ty: 2,
            req_id: 1,
            tx_id: 0,
            len: 4097,
        };
        d.feed(&bad.to_bytes());
        assert_eq!(d.next_message(), Err(FrameError::TooLong(4097)));
    }

    #[test]
    fn strings_and_errors() {
        assert_eq!(split_strings(b"a\0b\0"), vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(split_strings(b"a\0b"), vec![&b"a"[..], &b"b"[..]]);
        assert!(split_strings(b"").is_empty());
        assert_eq!(one_arg(b"/x\0"), Some("/x"));
        assert_eq!(one_arg(b"/x"), None);
        assert_eq!(one_arg(b"/x\0y\0"), None);
        assert_eq!(XsError::from_name("EAGAIN"), Some(XsError::Again));
        assert_eq!(MsgType::from_u32(20), None);
        assert_eq!(MsgType::from_u32(22), Some(MsgType::DirectoryPart));
    }
}
