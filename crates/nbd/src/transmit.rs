//! The transmission phase: requests answered with simple replies, one at a time.

use std::io::{Read, Write};

use crate::io as disk;
use crate::proto::*;
use crate::{Error, Export, Result};

/// Flags each command accepts; anything else is EINVAL.
fn allowed_flags(cmd: u16) -> u16 {
    match cmd {
        CMD_WRITE | CMD_TRIM => CMD_FLAG_FUA,
        CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
        _ => 0,
    }
}

/// One parsed request header.
struct Request {
    flags: u16,
    cmd: u16,
    handle: u64,
    offset: u64,
    len: u32,
}

/// Checks what can be checked before touching the image; the NBD error code if refused.
fn validate(exp: &Export, size: u64, r: &Request) -> std::result::Result<(), u32> {
    if r.flags & !allowed_flags(r.cmd) != 0 {
        return Err(EINVAL);
    }
    if matches!(r.cmd, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES) && !exp.writable {
        return Err(EPERM);
    }
    if matches!(r.cmd, CMD_READ | CMD_WRITE) && r.len > MAX_PAYLOAD {
        return Err(EOVERFLOW);
    }
    if r.cmd == CMD_FLUSH {
        return Ok(());
    }
    if r.len == 0 {
        return Err(EINVAL);
    }
    match r.offset.checked_add(u64::from(r.len)) {
        Some(end) if end <= size => Ok(()),
        _ => Err(EINVAL),
    }
}

/// Serves requests until the client disconnects. `size` is the size advertised in the
/// handshake: requests are checked against it even if the image changed since.
pub(crate) fn run<S: Read + Write>(exp: &Export, s: &mut S, size: u64) -> Result<()> {
    // The first 16 bytes hold the reply header, so header and data go out in one write.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let mut h = [0u8; 28];
        // Hanging up between requests is a hard disconnect the client is allowed to make.
        if !read_or_eof(s, &mut h).map_err(|e| Error::io("reading a request", e))? {
            return Ok(());
        }
        if be32(&h, 0) != REQUEST_MAGIC {
            return Err(Error::Protocol(format!(
                "request magic {:#x} is wrong",
                be32(&h, 0)
            )));
        }
        let r = Request {
            flags: be16(&h, 4),
            cmd: be16(&h, 6),
            handle: be64(&h, 8),
            offset: be64(&h, 16),
            len: be32(&h, 24),
        };
        if r.cmd == CMD_DISC {
            return Ok(());
        }
        let checked = validate(exp, size, &r);
        // A write's payload follows its header whatever we think of it: consume it first.
        let mut data_len = 0usize;
        if r.cmd == CMD_WRITE {
            if r.len > MAX_PAYLOAD {
                drain(s, u64::from(r.len)).map_err(|e| Error::io("skipping a write payload", e))?;
            } else {
                data_len = r.len as usize;
                buf.resize(16 + data_len, 0);
                s.read_exact(&mut buf[16..])
                    .map_err(|e| Error::io("reading a write payload", e))?;
            }
        }
        let err = match checked {
            Err(e) => e,
            Ok(()) => execute(exp, &r, &mut buf, data_len),
        };
        let payload = if r.cmd == CMD_READ && err == 0 {
            r.len as usize
        } else {
            0
        };
        buf.resize(buf.len().max(16), 0);
        buf[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
        buf[4..8].copy_from_slice(&err.to_be_bytes());
        buf[8..16].copy_from_slice(&r.handle.to_be_bytes());
        s.write_all(&buf[..16 + payload])
            .and_then(|()| s.flush())
            .map_err(|e| Error::io("sending a reply", e))?;
        if err != 0 {
            tracing::debug!(
                cmd = r.cmd,
                offset = r.offset,
                len = r.len,
                err,
                "nbd request refused"
            );
        }
        // Don't keep a 32 MiB buffer around for a client that made one large request.
        if buf.capacity() > 4 << 20 && payload + data_len < 1 << 20 {
            buf = Vec::new();
        }
    }
}

/// Performs a validated request; 0 or an NBD error code. For a read the data lands in
/// `buf[16..]`; for a write it is taken from there.
fn execute(exp: &Export, r: &Request, buf: &mut Vec<u8>, data_len: usize) -> u32 {
    let img = &**exp.image();
    let len = u64::from(r.len);
    let res = match r.cmd {
        CMD_READ => {
            buf.resize(16 + r.len as usize, 0);
            disk::read(img, &mut buf[16..], r.offset)
        }
        CMD_WRITE => disk::write(exp, &buf[16..16 + data_len], r.offset),
        CMD_FLUSH => img.flush(),
        CMD_TRIM => disk::trim(img, r.offset, len),
        CMD_WRITE_ZEROES => disk::zero(exp, r.offset, len, r.flags & CMD_FLAG_NO_HOLE == 0),
        _ => return EINVAL,
    };
    let res = res.and_then(|()| {
        if r.flags & CMD_FLAG_FUA != 0 {
            img.flush()
        } else {
            Ok(())
        }
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            tracing::debug!(error = %e, cmd = r.cmd, offset = r.offset, "nbd request failed");
            disk::errno(&e)
        }
    }
}
