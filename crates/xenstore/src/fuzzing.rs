//! The body of the message-parser fuzz target (crates/xenstore/fuzz), also run on stable Rust
//! by the tests below over generated inputs: arbitrary bytes are framed by the [`Decoder`] and
//! every message is handled for a privileged socket client and an unprivileged guest. Nothing
//! may panic and the tree must stay consistent.

use crate::server::{ConnKind, Xenstore};
use crate::wire::{Decoder, Header, Message, HEADER_LEN};

/// Feeds `data` as a byte stream from a dom0 client and, reinterpreted, from guest domain 1.
pub fn run(data: &[u8]) {
    let mut xs = Xenstore::default();
    let dom0 = xs.connect(ConnKind::Socket);
    // Give the guest a home so that its requests reach deeper code paths.
    let setup = [
        Message::new(crate::MsgType::Mkdir, 1, 0, b"/local/domain/1\0".to_vec()),
        Message::new(
            crate::MsgType::SetPerms,
            2,
            0,
            b"/local/domain/1\0n1\0".to_vec(),
        ),
        Message::new(crate::MsgType::Introduce, 3, 0, b"1\x001\x001\0".to_vec()),
    ];
    for m in &setup {
        xs.handle(dom0, m);
    }
    let guest = xs.connect(ConnKind::Domain(1));
    for conn in [dom0, guest] {
        let mut d = Decoder::new();
        // Feed in uneven pieces, as a socket or ring would deliver them.
        for chunk in data.chunks(97) {
            d.feed(chunk);
            loop {
                match d.next_message() {
                    Ok(Some(m)) => {
                        xs.handle(conn, &m);
                        // Every reply must be a well-formed message within the size limit.
                        let out = xs.take_output(conn);
                        check_output(&out);
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
        for c in xs.take_dirty() {
            check_output(&xs.take_output(c));
        }
        assert!(xs.check().is_ok(), "tree inconsistent after fuzz input");
    }
}

fn check_output(out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        assert!(rest.len() >= HEADER_LEN, "truncated reply");
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&rest[..HEADER_LEN]);
        let h = Header::parse(&h);
        assert!(
            h.len as usize <= crate::wire::PAYLOAD_MAX,
            "oversized reply"
        );
        rest = &rest[HEADER_LEN + h.len as usize..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MsgType;

    /// A small deterministic generator (xorshift) so the test needs no extra crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    const WORDS: &[&[u8]] = &[
        b"/",
        b"/a",
        b"/a/b",
        b"a",
        b"@introduceDomain",
        b"@releaseDomain",
        b"/local/domain/1",
        b"x/y",
        b"b0",
        b"r1",
        b"n0",
        b"w2",
        b"T",
        b"F",
        b"1",
        b"0",
        b"4096",
        b"",
        b"//",
        b"/a/",
        b"check",
        b"quota",
        b"nodes",
    ];

    /// Builds plausible messages (known types, paths, args) with random ids and corruption.
    fn gen_stream(r: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..(r.next() % 40) {
            let ty = (r.next() % 30) as u32;
            let mut payload = Vec::new();
            for _ in 0..(r.next() % 4) {
                payload.extend_from_slice(WORDS[(r.next() as usize) % WORDS.len()]);
                if !r.next().is_multiple_of(8) {
                    payload.push(0);
                }
            }
            let tx = if r.next().is_multiple_of(4) {
                (r.next() % 4) as u32
            } else {
                0
            };
            let mut m = Message {
                header: Header {
                    ty,
                    req_id: 1,
                    tx_id: tx,
                    len: 0,
                },
                payload,
            };
            m.header.len = m.payload.len() as u32;
            let mut bytes = m.encode();
            if r.next().is_multiple_of(16) {
                let i = (r.next() as usize) % bytes.len();
                bytes[i] = r.next() as u8;
            }
            out.extend_from_slice(&bytes);
        }
        out
    }

    #[test]
    fn generated_streams_never_break_the_engine() {
        let mut r = Rng(0x9e3779b97f4a7c15);
        // XS_FUZZ_ROUNDS=N runs a longer soak; CI keeps the default short run.
        let rounds = std::env::var("XS_FUZZ_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok());
        for _ in 0..rounds.unwrap_or(3000) {
            run(&gen_stream(&mut r));
        }
        // Raw noise too.
        for _ in 0..500 {
            let len = (r.next() % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
            run(&bytes);
        }
        let m = Message::new(MsgType::Write, 1, 0, b"/a\0v".to_vec()).encode();
        run(&m);
    }
}
