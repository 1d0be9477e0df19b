//! Feeds a `Relay` datagrams from a small set of loopback addresses (IPv4 and IPv6),
//! interleaved with time advances and partial `poll_transmit` drains.
//!
//! Invariants:
//! - no panic; every datagram the relay sends decodes;
//! - every transmit goes to an address that sent the relay something, or to its upstream;
//! - anti-amplification (proto-spec.md §6.2, §8): to an address never registered as a
//!   subscriber (other than the configured upstream), the relay never sends more bytes in
//!   all than it received from it. Everything counts, NACKs to a pushing publisher included;
//! - `memory_bytes()` stays within what the configured limits allow.
//!
//! Sequence-number jumps are arbitrary (up to 2^31), so slow inputs (CPU exhaustion) show
//! as libFuzzer timeouts.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use framecast::proto::node::Node;
use framecast::proto::packetizer::Packetized;
use framecast::proto::relay::{Relay, RelayConfig};
use framecast::proto::wire::{
    AudioBlock, Body, Description, FLAG_REPLAY, FLAG_RETRANSMIT, Flow, MAX_DATAGRAM, NackRange,
    Packet, PacketType, ReceiverReport, RejectReason, SampleFormat, VideoChunk, crc32,
};
use libfuzzer_sys::fuzz_target;

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

const ADDRS: [&str; 8] = [
    "127.0.0.1:5001",
    "127.0.0.1:5002",
    "127.0.0.2:5001",
    "127.0.0.3:40000",
    "[::1]:5001",
    "[::1]:5002",
    "[::ffff:127.0.0.1]:5001",
    "[::1]:65535",
];
const UPSTREAM: &str = "127.0.0.9:4000";
const NAMES: [&str; 3] = ["cam1", "cam2", "x"];

fn addr(i: u8, with_upstream: bool) -> SocketAddr {
    let n = ADDRS.len() + with_upstream as usize;
    match i as usize % n {
        8 => UPSTREAM.parse().unwrap(),
        k => ADDRS[k].parse().unwrap(),
    }
}

#[derive(Debug, Arbitrary)]
enum TokenChoice {
    None,
    /// The last RETRY token the relay sent to this address.
    Own,
    /// The last RETRY token the relay sent to another address.
    Other(u8),
    Garbage([u8; 16]),
}

#[derive(Debug, Arbitrary)]
enum SeqChoice {
    Next,
    Delta(i16),
    Arbitrary(u32),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Subscribe {
        from: u8,
        name: u8,
        token: TokenChoice,
        max_kbps: u16,
        pad: u8,
    },
    Description {
        from: u8,
        ssrc: u8,
        name: u8,
    },
    Video {
        from: u8,
        ssrc: u8,
        frame: u8,
        index: u8,
        count: u8,
        len: u8,
        seq: SeqChoice,
        flags: u8,
    },
    Audio {
        from: u8,
        ssrc: u8,
        len: u8,
        seq: SeqChoice,
        flags: u8,
    },
    /// Media of the relay's own local stream (the `serve` role).
    Local {
        frame: u8,
        index: u8,
        count: u8,
        len: u8,
    },
    KeepAlive {
        from: u8,
        echo: u32,
    },
    Bye {
        from: u8,
    },
    Nack {
        from: u8,
        audio: bool,
        ranges: Vec<(i16, u16)>,
    },
    Report {
        from: u8,
        played: u32,
    },
    Retry {
        from: u8,
        token: [u8; 16],
    },
    Reject {
        from: u8,
        reason: u8,
    },
    KeepAliveAck {
        from: u8,
        echo: u32,
    },
    /// Raw bytes; `reseal` makes magic, version and CRC valid so the body parser is reached.
    Raw {
        from: u8,
        reseal: bool,
        ptype: u8,
        data: Vec<u8>,
    },
    Advance {
        ms: u16,
    },
    AdvanceToTimeout,
    Drain {
        max: u8,
    },
}

#[derive(Debug, Arbitrary)]
struct Script {
    upstream: bool,
    local_stream: bool,
    rate_limited: bool,
    ops: Vec<Op>,
}

struct Harness {
    relay: Relay,
    now: Instant,
    upstream: Option<SocketAddr>,
    bytes_in: HashMap<SocketAddr, u64>,
    bytes_out: HashMap<SocketAddr, u64>,
    /// Addresses that were ever registered subscribers.
    proven: HashSet<SocketAddr>,
    tokens: HashMap<SocketAddr, [u8; 16]>,
    video_seq: u32,
    audio_seq: u32,
    memory_bound: usize,
}

impl Harness {
    fn send(&mut self, from: SocketAddr, datagram: &[u8]) {
        *self.bytes_in.entry(from).or_default() += datagram.len() as u64;
        self.relay.handle_datagram(self.now, from, datagram);
        self.after_input();
    }

    fn send_packet(&mut self, from: SocketAddr, p: &Packet) {
        let enc = p.encode();
        self.send(from, &enc);
    }

    fn after_input(&mut self) {
        for s in self.relay.subscribers() {
            let a: SocketAddr = s.addr.parse().expect("subscriber address parses");
            self.proven.insert(a);
        }
        let mem = self.relay.memory_bytes();
        assert!(
            mem <= self.memory_bound,
            "relay holds {mem} bytes, bound {}",
            self.memory_bound
        );
    }

    fn drain(&mut self, max: usize) {
        for _ in 0..max {
            let Some(t) = self.relay.poll_transmit(self.now) else {
                break;
            };
            let dest = t.dest;
            assert!(
                self.bytes_in.contains_key(&dest) || Some(dest) == self.upstream,
                "relay sent to {dest}, which never sent it anything"
            );
            let p = Packet::decode(&t.payload)
                .unwrap_or_else(|e| panic!("relay sent an undecodable datagram to {dest}: {e:?}"));
            *self.bytes_out.entry(dest).or_default() += t.payload.len() as u64;
            if let Body::Retry { token } = p.body {
                self.tokens.insert(dest, token);
            }
            self.check_amplification(dest);
        }
        self.after_input();
    }

    fn check_amplification(&self, dest: SocketAddr) {
        if self.proven.contains(&dest) || Some(dest) == self.upstream {
            return;
        }
        let out = self.bytes_out.get(&dest).copied().unwrap_or(0);
        let inb = self.bytes_in.get(&dest).copied().unwrap_or(0);
        assert!(
            out <= inb,
            "amplification: {out} bytes sent to unproven {dest}, {inb} received from it"
        );
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.relay.handle_timeout(self.now);
        self.after_input();
    }

    fn seq(&mut self, audio: bool, c: SeqChoice) -> u32 {
        let cur = if audio {
            &mut self.audio_seq
        } else {
            &mut self.video_seq
        };
        *cur = match c {
            SeqChoice::Next => cur.wrapping_add(1),
            SeqChoice::Delta(d) => cur.wrapping_add_signed(d as i32),
            SeqChoice::Arbitrary(s) => s,
        };
        *cur
    }
}

fn ssrc_of(s: u8) -> u32 {
    0xabc0 + (s % 3) as u32
}

fn video(frame: u8, index: u8, count: u8, len: u8) -> VideoChunk {
    let count = (count % 5).max(1) as u16;
    let index = index as u16 % count;
    let len = (len as usize % 64) + 1;
    // Every chunk of a frame has the same length, so chunks of one frame agree.
    VideoChunk {
        frame_id: (frame % 16) as u32,
        pts: (frame % 16) as u64 * 3000,
        frame_size: (len * count as usize) as u32,
        width: 32,
        height: 32,
        chunk_index: index,
        chunk_count: count,
        offset: (index as usize * len) as u32,
        payload: Bytes::from(vec![frame; len]),
    }
}

fuzz_target!(|script: Script| {
    let upstream: Option<SocketAddr> = script.upstream.then(|| UPSTREAM.parse().unwrap());
    let cfg = RelayConfig {
        max_subscribers: 6,
        max_streams: 4,
        queue_bytes: 64 * 1024,
        cache_packets: 512,
        upstream,
        ..RelayConfig::default()
    };
    let memory_bound = cfg.max_streams * 2 * cfg.cache_packets * MAX_DATAGRAM
        + (cfg.max_subscribers + 1) * (cfg.queue_bytes + MAX_DATAGRAM);
    let mut relay = Relay::new(cfg);
    if script.local_stream {
        relay.add_local_stream("cam1");
    }
    let mut h = Harness {
        relay,
        now: t0(),
        upstream,
        bytes_in: HashMap::new(),
        bytes_out: HashMap::new(),
        proven: HashSet::new(),
        tokens: HashMap::new(),
        video_seq: 0,
        audio_seq: 0,
        memory_bound,
    };
    let with_up = upstream.is_some();
    for op in script.ops.into_iter().take(1024) {
        match op {
            Op::Subscribe {
                from,
                name,
                token,
                max_kbps,
                pad,
            } => {
                let from = addr(from, with_up);
                let token = match token {
                    TokenChoice::None => Vec::new(),
                    TokenChoice::Own => h.tokens.get(&from).map(|t| t.to_vec()).unwrap_or_default(),
                    TokenChoice::Other(o) => h
                        .tokens
                        .get(&addr(o, with_up))
                        .map(|t| t.to_vec())
                        .unwrap_or_default(),
                    TokenChoice::Garbage(t) => t.to_vec(),
                };
                let max_kbps = if script.rate_limited {
                    max_kbps as u32
                } else {
                    0
                };
                let p = Packet::new(
                    PacketType::Subscribe,
                    0,
                    1,
                    Body::Subscribe {
                        name: NAMES[name as usize % NAMES.len()].into(),
                        token,
                        max_kbps,
                        latency_ms: 0,
                    },
                );
                let mut enc = p.encode().to_vec();
                if pad % 4 == 0 {
                    // Extra padding (still a valid SUBSCRIBE): a bigger request.
                    let n = enc.len() - 4;
                    enc.truncate(n);
                    enc.extend(std::iter::repeat_n(0u8, pad as usize));
                    let crc = crc32(&enc);
                    enc.extend_from_slice(&crc.to_be_bytes());
                }
                h.send(from, &enc);
            }
            Op::Description { from, ssrc, name } => {
                let p = Packet::new(
                    PacketType::Description,
                    ssrc_of(ssrc),
                    0,
                    Body::Description(Description {
                        name: NAMES[name as usize % NAMES.len()].into(),
                        width: 32,
                        height: 32,
                        fps_num: 30,
                        fps_den: 1,
                        audio: None,
                        video_seq_base: 0,
                    }),
                );
                h.send_packet(addr(from, with_up), &p);
            }
            Op::Video {
                from,
                ssrc,
                frame,
                index,
                count,
                len,
                seq,
                flags,
            } => {
                let v = video(frame, index, count, len);
                let s = h.seq(false, seq);
                let mut p = Packet::new(PacketType::Video, ssrc_of(ssrc), s, Body::Video(v));
                p.header.flags = flags & (FLAG_RETRANSMIT | FLAG_REPLAY);
                h.send_packet(addr(from, with_up), &p);
            }
            Op::Audio {
                from,
                ssrc,
                len,
                seq,
                flags,
            } => {
                let frames = (len as u16 % 120) + 1;
                let s = h.seq(true, seq);
                let mut p = Packet::new(
                    PacketType::Audio,
                    ssrc_of(ssrc),
                    s,
                    Body::Audio(AudioBlock {
                        pts: s as u64 * 450,
                        sample_rate: 48_000,
                        channels: 1,
                        format: SampleFormat::S16Le,
                        frames,
                        payload: Bytes::from(vec![7u8; frames as usize * 2]),
                    }),
                );
                p.header.flags = flags & (FLAG_RETRANSMIT | FLAG_REPLAY);
                h.send_packet(addr(from, with_up), &p);
            }
            Op::Local {
                frame,
                index,
                count,
                len,
            } => {
                let s = h.seq(false, SeqChoice::Next);
                let p = Packet::new(
                    PacketType::Video,
                    0x10ca1,
                    s,
                    Body::Video(video(frame, index, count, len)),
                );
                h.relay.ingest_local(h.now, "cam1", Packetized::new(p));
                h.after_input();
            }
            Op::KeepAlive { from, echo } => h.send_packet(
                addr(from, with_up),
                &Packet::new(
                    PacketType::KeepAlive,
                    0,
                    2,
                    Body::KeepAlive { echo_us: echo },
                ),
            ),
            Op::Bye { from } => h.send_packet(
                addr(from, with_up),
                &Packet::new(PacketType::Bye, 0, 3, Body::Bye),
            ),
            Op::Nack {
                from,
                audio,
                ranges,
            } => {
                let base = if audio { h.audio_seq } else { h.video_seq };
                let ranges: Vec<NackRange> = ranges
                    .into_iter()
                    .take(128)
                    .map(|(d, len)| NackRange {
                        start: base.wrapping_add_signed(d as i32),
                        len: len.max(1),
                    })
                    .collect();
                if ranges.is_empty() {
                    continue;
                }
                let flow = if audio { Flow::Audio } else { Flow::Video };
                h.send_packet(
                    addr(from, with_up),
                    &Packet::new(PacketType::Nack, 0, 4, Body::Nack { flow, ranges }),
                );
            }
            Op::Report { from, played } => {
                let r = ReceiverReport {
                    frames_played: played,
                    ..Default::default()
                };
                h.send_packet(
                    addr(from, with_up),
                    &Packet::new(PacketType::ReceiverReport, 0, 5, Body::ReceiverReport(r)),
                );
            }
            Op::Retry { from, token } => h.send_packet(
                addr(from, with_up),
                &Packet::new(PacketType::Retry, 0, 6, Body::Retry { token }),
            ),
            Op::Reject { from, reason } => {
                let reason = [
                    RejectReason::UnknownStream,
                    RejectReason::Full,
                    RejectReason::BadToken,
                ][reason as usize % 3];
                h.send_packet(
                    addr(from, with_up),
                    &Packet::new(PacketType::Reject, 0, 7, Body::Reject { reason }),
                );
            }
            Op::KeepAliveAck { from, echo } => h.send_packet(
                addr(from, with_up),
                &Packet::new(
                    PacketType::KeepAliveAck,
                    0,
                    8,
                    Body::KeepAliveAck { echo_us: echo },
                ),
            ),
            Op::Raw {
                from,
                reseal,
                ptype,
                data,
            } => {
                let mut d = data;
                if reseal {
                    let mut v = vec![0x46, 0x43, 1, ptype, 0, 0, 0, 0];
                    v.extend_from_slice(&d);
                    while v.len() < 16 {
                        v.push(0);
                    }
                    let crc = crc32(&v);
                    v.extend_from_slice(&crc.to_be_bytes());
                    d = v;
                }
                h.send(addr(from, with_up), &d);
            }
            Op::Advance { ms } => h.advance(Duration::from_millis(ms as u64 % 10_000)),
            Op::AdvanceToTimeout => {
                if let Some(t) = h.relay.poll_timeout() {
                    let d = t
                        .saturating_duration_since(h.now)
                        .min(Duration::from_secs(10));
                    h.advance(d);
                }
            }
            Op::Drain { max } => h.drain(max as usize + 1),
        }
    }
    h.drain(usize::MAX);
});
