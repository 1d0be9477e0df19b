//! The secure layer's receiving path (proto-spec.md §8): a keyed server (`Secure` around a
//! recording node) with one genuine client session, fed the client's sealed datagrams
//! delivered, dropped, replayed, bit-flipped and truncated, plus raw and handshake-shaped
//! bytes from four addresses, with time advances.
//!
//! Invariants:
//! - no panic;
//! - the server's node receives only datagrams the genuine client sent, each at most once
//!   (no forgery, no replay), and the client's node only what the server's node sent;
//! - anti-amplification (§8.3): to any address other than the genuine client, the server
//!   never sends more bytes in all than it received from it.
#![no_main]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use framecast::proto::node::{Node, Transmit};
use framecast::proto::secure::{Keys, Role, Secure};
use framecast::proto::wire::crc32;
use libfuzzer_sys::fuzz_target;

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

#[derive(Default)]
struct Rec {
    got: Vec<Vec<u8>>,
    to_send: VecDeque<Transmit>,
}

impl Node for Rec {
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, d: &[u8]) {
        self.got.push(d.to_vec());
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_transmit(&mut self, _: Instant) -> Option<Transmit> {
        self.to_send.pop_front()
    }
}

const CLIENT: &str = "127.0.0.1:4000";
const SERVER: &str = "127.0.0.2:5000";
const OTHERS: [&str; 3] = ["127.0.0.1:4001", "127.0.0.3:4000", "[::1]:4000"];

#[derive(Debug, Arbitrary)]
enum Op {
    /// The client's node sends a subscriber message (KEEPALIVE, NACK, ...) of `len` bytes.
    ClientSends { kind: u8, len: u8, deliver: bool },
    /// The server's node sends a datagram to the client.
    ServerSends { len: u8 },
    Replay { idx: u16 },
    Flip { idx: u16, pos: u16, xor: u8 },
    Truncate { idx: u16, cut: u8 },
    /// Bytes from `from` (0: the client's address); `ptype` ≥ 32 shapes a secure header.
    Raw { from: u8, ptype: u8, sid_from_session: bool, counter: u32, data: Vec<u8>, crc: bool },
    Advance { ms: u16 },
}

#[derive(Debug, Arbitrary)]
struct Script {
    ops: Vec<Op>,
}

struct H {
    now: Instant,
    c: Secure<Rec>,
    s: Secure<Rec>,
    sent_by_client: HashSet<Vec<u8>>,
    sent_by_server: HashSet<Vec<u8>>,
    captured: Vec<Bytes>,
    bytes_in: HashMap<SocketAddr, u64>,
    bytes_out: HashMap<SocketAddr, u64>,
    n: u32,
}

impl H {
    fn to_server(&mut self, from: SocketAddr, d: &[u8]) {
        *self.bytes_in.entry(from).or_default() += d.len() as u64;
        self.s.handle_datagram(self.now, from, d);
        self.pump();
    }

    fn pump(&mut self) {
        let client: SocketAddr = CLIENT.parse().unwrap();
        for _ in 0..64 {
            let mut moved = false;
            while let Some(t) = self.s.poll_transmit(self.now) {
                *self.bytes_out.entry(t.dest).or_default() += t.payload.len() as u64;
                if t.dest != client {
                    let (o, i) = (self.bytes_out[&t.dest], self.bytes_in.get(&t.dest).copied().unwrap_or(0));
                    assert!(o <= i, "amplification: {o} bytes to {} after {i}", t.dest);
                } else {
                    self.c.handle_datagram(self.now, SERVER.parse().unwrap(), &t.payload);
                }
                moved = true;
            }
            while let Some(t) = self.c.poll_transmit(self.now) {
                self.captured.push(t.payload.clone());
                if self.captured.len() > 4096 {
                    self.captured.remove(0);
                }
                *self.bytes_in.entry(client).or_default() += t.payload.len() as u64;
                self.s.handle_datagram(self.now, client, &t.payload);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        self.check();
    }

    fn check(&self) {
        let mut seen = HashSet::new();
        for d in &self.s.got {
            assert!(self.sent_by_client.contains(d), "the server's node got a datagram the client never sent");
            assert!(seen.insert(d), "the server's node got a datagram twice");
        }
        for d in &self.c.got {
            assert!(self.sent_by_server.contains(d), "the client's node got a datagram the server never sent");
        }
    }

    /// A distinct plaintext of type `ptype`: header, a counter, filler.
    fn plain(&mut self, ptype: u8, len: u8) -> Vec<u8> {
        self.n += 1;
        let mut v = vec![0x46, 0x43, 1, ptype, 0, 0, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(&self.n.to_be_bytes());
        v.extend(std::iter::repeat_n(0xA5, len as usize));
        v
    }
}

fuzz_target!(|script: Script| {
    let keys = Keys::from_publish([7; 32]);
    let client: SocketAddr = CLIENT.parse().unwrap();
    let server: SocketAddr = SERVER.parse().unwrap();
    let mut c = Secure::new(Rec::default(), Some(keys.view_part()), [1; 32]);
    c.connect(server, Role::View);
    let s = Secure::new(Rec::default(), Some(keys), [2; 32]);
    let mut h = H {
        now: t0(),
        c,
        s,
        sent_by_client: HashSet::new(),
        sent_by_server: HashSet::new(),
        captured: Vec::new(),
        bytes_in: HashMap::new(),
        bytes_out: HashMap::new(),
        n: 0,
    };
    for op in script.ops.into_iter().take(512) {
        match op {
            Op::ClientSends { kind, len, deliver } => {
                // Subscriber types a view session may send (§8.1).
                let ptype = [16, 19, 21, 22, 23, 24][kind as usize % 6];
                let p = h.plain(ptype, len);
                h.sent_by_client.insert(p.clone());
                h.c.to_send.push_back(Transmit { dest: server, payload: Bytes::from(p) });
                if deliver {
                    h.pump();
                } else {
                    // Sealed but lost on the way: captured only.
                    while let Some(t) = h.c.poll_transmit(h.now) {
                        h.captured.push(t.payload);
                    }
                }
            }
            Op::ServerSends { len } => {
                let p = h.plain(1, len);
                h.sent_by_server.insert(p.clone());
                h.s.to_send.push_back(Transmit { dest: client, payload: Bytes::from(p) });
                h.pump();
            }
            Op::Replay { idx } => {
                if let Some(d) = h.captured.get(idx as usize % h.captured.len().max(1)).cloned() {
                    h.to_server(client, &d);
                }
            }
            Op::Flip { idx, pos, xor } => {
                if let Some(d) = h.captured.get(idx as usize % h.captured.len().max(1)).cloned() {
                    let mut d = d.to_vec();
                    let i = pos as usize % d.len().max(1);
                    if let Some(b) = d.get_mut(i) {
                        *b ^= xor.max(1);
                    }
                    h.to_server(client, &d);
                }
            }
            Op::Truncate { idx, cut } => {
                if let Some(d) = h.captured.get(idx as usize % h.captured.len().max(1)).cloned() {
                    let n = d.len().saturating_sub(cut as usize % 40 + 1);
                    h.to_server(client, &d[..n]);
                }
            }
            Op::Raw { from, ptype, sid_from_session, counter, data, crc } => {
                let from: SocketAddr = match from % 4 {
                    0 => client,
                    k => OTHERS[k as usize - 1].parse().unwrap(),
                };
                let mut v = vec![0x46, 0x43, 1, ptype, 0, 0, 0, 0];
                let sid = match (sid_from_session, h.captured.last()) {
                    (true, Some(d)) if d.len() >= 12 => [d[8], d[9], d[10], d[11]],
                    _ => [0; 4],
                };
                v.extend_from_slice(&sid);
                v.extend_from_slice(&counter.to_be_bytes());
                v.extend_from_slice(&data);
                if crc {
                    let c = crc32(&v);
                    v.extend_from_slice(&c.to_be_bytes());
                }
                h.to_server(from, &v);
            }
            Op::Advance { ms } => {
                h.now += Duration::from_millis(ms as u64 % 15_000);
                h.s.handle_timeout(h.now);
                h.c.handle_timeout(h.now);
                h.pump();
            }
        }
    }
    h.pump();
});
