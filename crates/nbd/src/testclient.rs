//! A minimal NBD client for the tests: enough to drive every part of the server, including
//! requests no real client would send.

use std::io::{Read, Write};

use crate::proto::*;

/// One option reply: (option, reply type, data).
pub type OptReply = (u32, u32, Vec<u8>);

pub struct Client<S: Read + Write> {
    pub s: S,
    next: u64,
}

impl<S: Read + Write> Client<S> {
    /// Reads the greeting and sends client flags.
    pub fn start(mut s: S, cflags: u32) -> Client<S> {
        let mut g = [0u8; 18];
        s.read_exact(&mut g).unwrap();
        assert_eq!(be64(&g, 0), NBDMAGIC);
        assert_eq!(be64(&g, 8), IHAVEOPT);
        assert_eq!(be16(&g, 16), FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        s.write_all(&cflags.to_be_bytes()).unwrap();
        Client { s, next: 1 }
    }

    pub fn send_opt(&mut self, opt: u32, data: &[u8]) {
        let mut m = IHAVEOPT.to_be_bytes().to_vec();
        m.extend_from_slice(&opt.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.s.write_all(&m).unwrap();
    }

    pub fn opt_reply(&mut self) -> OptReply {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(be64(&h, 0), OPT_REPLY_MAGIC);
        let mut d = vec![0u8; be32(&h, 16) as usize];
        self.s.read_exact(&mut d).unwrap();
        (be32(&h, 8), be32(&h, 12), d)
    }

    /// Replies up to and including the first ACK or error.
    pub fn opt_replies(&mut self) -> Vec<OptReply> {
        let mut v = Vec::new();
        loop {
            let r = self.opt_reply();
            let end = r.1 == REP_ACK || r.1 & REP_ERR != 0;
            v.push(r);
            if end {
                return v;
            }
        }
    }

    pub fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    /// NBD_OPT_GO; returns (size, transmission flags) from NBD_INFO_EXPORT.
    pub fn go(&mut self, name: &str) -> (u64, u16) {
        self.send_opt(OPT_GO, &Self::go_data(name, &[INFO_BLOCK_SIZE]));
        let replies = self.opt_replies();
        let last = replies.last().unwrap();
        assert_eq!(last.1, REP_ACK, "{replies:?}");
        let e = replies
            .iter()
            .find(|r| r.1 == REP_INFO && be16(&r.2, 0) == INFO_EXPORT)
            .expect("NBD_INFO_EXPORT");
        (be64(&e.2, 2), be16(&e.2, 10))
    }

    pub fn send_request(&mut self, flags: u16, cmd: u16, off: u64, len: u32) -> u64 {
        let h = self.next;
        self.next += 1;
        let mut m = REQUEST_MAGIC.to_be_bytes().to_vec();
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&cmd.to_be_bytes());
        m.extend_from_slice(&h.to_be_bytes());
        m.extend_from_slice(&off.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        self.s.write_all(&m).unwrap();
        h
    }

    /// Reads a simple reply to `handle`; returns its error.
    pub fn reply(&mut self, handle: u64) -> u32 {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(be32(&h, 0), SIMPLE_REPLY_MAGIC);
        assert_eq!(be64(&h, 8), handle);
        be32(&h, 4)
    }

    pub fn read(&mut self, off: u64, len: u32) -> Result<Vec<u8>, u32> {
        let h = self.send_request(0, CMD_READ, off, len);
        match self.reply(h) {
            0 => {
                let mut d = vec![0u8; len as usize];
                self.s.read_exact(&mut d).unwrap();
                Ok(d)
            }
            e => Err(e),
        }
    }

    pub fn write_flags(&mut self, flags: u16, off: u64, data: &[u8]) -> u32 {
        let h = self.send_request(flags, CMD_WRITE, off, data.len() as u32);
        self.s.write_all(data).unwrap();
        self.reply(h)
    }

    pub fn write(&mut self, off: u64, data: &[u8]) -> u32 {
        self.write_flags(0, off, data)
    }

    pub fn cmd(&mut self, flags: u16, cmd: u16, off: u64, len: u32) -> u32 {
        let h = self.send_request(flags, cmd, off, len);
        self.reply(h)
    }

    /// Whether the server has closed the connection (reads EOF).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}
