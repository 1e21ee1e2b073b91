//! Fixed newstyle negotiation: greeting, client flags, then options until the client picks
//! the export (`NBD_OPT_EXPORT_NAME` or `NBD_OPT_GO`) or leaves.

use std::io::{ErrorKind, Read, Write};

use crate::proto::*;
use crate::{Error, Export, Result};

/// Longest option payload read; longer ones are drained and refused. Names are at most 4096
/// bytes by the protocol, so nothing legitimate comes close.
const MAX_OPTION_LEN: u32 = 64 << 10;

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            Error::Protocol(format!("connection closed during {what}"))
        } else {
            Error::io(what, e)
        }
    }
}

/// Runs the handshake. `Some(size)`: transmission starts with the export's size as advertised;
/// `None`: the client aborted.
pub(crate) fn negotiate<S: Read + Write>(export: &Export, s: &mut S) -> Result<Option<u64>> {
    let mut greet = [0u8; 18];
    greet[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    greet[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    greet[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&greet).map_err(io_err("greeting"))?;
    s.flush().map_err(io_err("greeting"))?;

    let mut cf = [0u8; 4];
    s.read_exact(&mut cf)
        .map_err(io_err("reading client flags"))?;
    let cflags = u32::from_be_bytes(cf);
    if cflags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(Error::Protocol(format!("unknown client flags {cflags:#x}")));
    }
    let no_zeroes = cflags & FLAG_C_NO_ZEROES != 0;

    loop {
        let mut h = [0u8; 16];
        // A client may hang up between options (qemu does after NBD_OPT_LIST).
        if !read_or_eof(s, &mut h).map_err(io_err("reading an option"))? {
            return Ok(None);
        }
        if be64(&h, 0) != IHAVEOPT {
            return Err(Error::Protocol(format!(
                "option magic {:#x} is not IHAVEOPT",
                be64(&h, 0)
            )));
        }
        let opt = be32(&h, 8);
        let len = be32(&h, 12);
        if len > MAX_OPTION_LEN {
            if opt == OPT_EXPORT_NAME {
                return Err(Error::Protocol(format!("export name of {len} bytes")));
            }
            drain(s, u64::from(len)).map_err(io_err("skipping an oversized option"))?;
            reply_err(s, opt, REP_ERR_TOO_BIG, "option data too long")?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)
            .map_err(io_err("reading option data"))?;
        tracing::debug!(opt, len, "nbd option");
        match opt {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data);
                if !export.matches(&name) {
                    // This option has no error reply: the protocol says hang up.
                    return Err(Error::Protocol(format!("unknown export {name:?}")));
                }
                let size = export.image.size();
                let mut m = Vec::with_capacity(134);
                m.extend_from_slice(&size.to_be_bytes());
                m.extend_from_slice(&export.transmission_flags().to_be_bytes());
                if !no_zeroes {
                    m.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&m)
                    .map_err(io_err("answering NBD_OPT_EXPORT_NAME"))?;
                s.flush().map_err(io_err("answering NBD_OPT_EXPORT_NAME"))?;
                return Ok(Some(size));
            }
            OPT_ABORT => {
                // The client may already be gone; that is fine.
                let _ = opt_reply(s, opt, REP_ACK, &[]);
                return Ok(None);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    reply_err(s, opt, REP_ERR_INVALID, "NBD_OPT_LIST takes no data")?;
                    continue;
                }
                let mut d = Vec::with_capacity(4 + export.name.len());
                d.extend_from_slice(&(export.name.len() as u32).to_be_bytes());
                d.extend_from_slice(export.name.as_bytes());
                reply(s, opt, REP_SERVER, &d)?;
                reply(s, opt, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                if let Some(size) = info(export, s, opt, &data)? {
                    if opt == OPT_GO {
                        return Ok(Some(size));
                    }
                }
            }
            OPT_STARTTLS => reply_err(s, opt, REP_ERR_POLICY, "TLS is not offered")?,
            OPT_STRUCTURED_REPLY => {
                reply_err(s, opt, REP_ERR_UNSUP, "only simple replies are supported")?
            }
            _ => reply_err(s, opt, REP_ERR_UNSUP, "option not supported")?,
        }
    }
}

/// Parses `NBD_OPT_INFO`/`NBD_OPT_GO` data (name, requested information types) and answers;
/// returns the advertised size if the export was found.
fn info<S: Write>(export: &Export, s: &mut S, opt: u32, data: &[u8]) -> Result<Option<u64>> {
    let parsed = (|| {
        let nl = usize::try_from(be32(data.get(..4)?, 0)).ok()?;
        let name = data.get(4..4usize.checked_add(nl)?)?;
        let rest = &data[4 + nl..];
        let n = usize::from(be16(rest.get(..2)?, 0));
        let reqs = rest.get(2..)?;
        if reqs.len() != n * 2 {
            return None;
        }
        let reqs: Vec<u16> = reqs.chunks(2).map(|c| be16(c, 0)).collect();
        Some((String::from_utf8_lossy(name).into_owned(), reqs))
    })();
    let Some((name, reqs)) = parsed else {
        reply_err(
            s,
            opt,
            REP_ERR_INVALID,
            "malformed export name or information list",
        )?;
        return Ok(None);
    };
    if !export.matches(&name) {
        reply_err(s, opt, REP_ERR_UNKNOWN, "no such export")?;
        return Ok(None);
    }
    let size = export.image.size();
    let mut e = Vec::with_capacity(12);
    e.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    e.extend_from_slice(&size.to_be_bytes());
    e.extend_from_slice(&export.transmission_flags().to_be_bytes());
    reply(s, opt, REP_INFO, &e)?;
    for r in reqs {
        let mut d = r.to_be_bytes().to_vec();
        match r {
            INFO_BLOCK_SIZE => {
                let (min, pref, max) = export.block_sizes();
                for v in [min, pref, max] {
                    d.extend_from_slice(&v.to_be_bytes());
                }
            }
            INFO_NAME => d.extend_from_slice(export.name.as_bytes()),
            INFO_DESCRIPTION if !export.description.is_empty() => {
                d.extend_from_slice(export.description.as_bytes())
            }
            // Unknown or empty information is left out, as the protocol allows.
            _ => continue,
        }
        reply(s, opt, REP_INFO, &d)?;
    }
    reply(s, opt, REP_ACK, &[])?;
    Ok(Some(size))
}

fn reply<S: Write>(s: &mut S, opt: u32, kind: u32, data: &[u8]) -> Result<()> {
    opt_reply(s, opt, kind, data).map_err(io_err("sending an option reply"))
}

fn reply_err<S: Write>(s: &mut S, opt: u32, kind: u32, msg: &str) -> Result<()> {
    reply(s, opt, kind, msg.as_bytes())
}
