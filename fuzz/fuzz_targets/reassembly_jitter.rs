//! Drives a `Viewer` (reassembler + frame buffer + playout clock + loss tracking) with a
//! script of encoded datagrams from its server, time advances and drains.
//!
//! Invariants:
//! - every played frame is exactly the concatenation, in offset order, of chunks that were
//!   inserted for that frame id (same pts, size, count, dimensions), one per chunk index,
//!   and its length is the frame size those chunks declared;
//! - within one source session a frame id is played at most once and never both played and
//!   dropped; played timestamps strictly increase;
//! - a non-concealed audio block is one that was received; a concealed one is silence;
//! - `memory_bytes()` stays under 128 MiB; virtual time only moves forward.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use framecast::proto::viewer::{Viewer, ViewerConfig, ViewerEvent};
use framecast::proto::node::Node;
use framecast::proto::wire::{
    AudioBlock, AudioParams, Body, Description, FLAG_REPLAY, FLAG_RETRANSMIT, Packet, PacketType,
    RejectReason, SampleFormat, VideoChunk,
};
use libfuzzer_sys::fuzz_target;

const MEMORY_BOUND: usize = 128 * 1024 * 1024;
const FRAME_TICKS: u64 = 3000; // 30 fps on the 90 kHz clock

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn server() -> SocketAddr {
    "127.0.0.1:5000".parse().unwrap()
}

#[derive(Debug, Arbitrary)]
enum Op {
    Video {
        ssrc: u8,
        /// Frame id from a small set.
        frame: u8,
        /// pts in frame periods from the session start, plus a small skew.
        pts_frames: u8,
        pts_skew: i8,
        chunk_index: u8,
        chunk_count: u8,
        /// Offset in units of 16 bytes, or "contiguous" when it matches the model.
        offset: u8,
        len: u8,
        /// For non-final chunks: extra bytes of frame size beyond this chunk.
        extra: u8,
        fill: u8,
        flags: u8,
        /// Sequence number mode: seq = chunk-derived (consistent) or arbitrary.
        seq: SeqChoice,
    },
    /// Sends every chunk of a whole frame, in the given order (a rotation), possibly skipping one.
    WholeFrame {
        ssrc: u8,
        frame: u8,
        pts_frames: u8,
        chunk_count: u8,
        chunk_len: u8,
        rotate: u8,
        skip: Option<u8>,
        flags: u8,
    },
    Audio {
        ssrc: u8,
        pts_blocks: u16,
        frames: u8,
        channels: u8,
        fill: u8,
        seq: u16,
        flags: u8,
    },
    Description {
        ssrc: u8,
        name_variant: bool,
        audio: bool,
    },
    Retry([u8; 16]),
    Reject(u8),
    KeepAliveAck(u32),
    /// Raw bytes, from the server or from a stranger.
    Raw {
        from_server: bool,
        data: Vec<u8>,
    },
    Advance {
        ms: u16,
    },
    /// Advance to the client's own poll_timeout (bounded).
    AdvanceToTimeout,
    Drain,
}

#[derive(Debug, Arbitrary)]
enum SeqChoice {
    /// first_seq(frame) + chunk_index: what a sender does.
    Consistent,
    /// Next video sequence number of the script.
    Next,
    Arbitrary(u32),
}

#[derive(Debug, Arbitrary)]
struct Script {
    seq_base: u32,
    latency_ms: u8,
    nack: bool,
    ops: Vec<Op>,
}

#[derive(Clone, Debug)]
struct Sent {
    pts: u64,
    frame_size: u32,
    width: u16,
    height: u16,
    chunk_index: u16,
    chunk_count: u16,
    offset: u32,
    payload: Bytes,
}

#[derive(Default)]
struct Model {
    ssrc: Option<u32>,
    session: u64,
    /// Chunks handed to the client in this session, by frame id.
    chunks: BTreeMap<u32, Vec<Sent>>,
    /// Audio payloads handed to the client in this session, by pts.
    audio: BTreeMap<u64, Vec<Bytes>>,
    /// Frame ids played / dropped in this session.
    played: BTreeSet<u32>,
    dropped: BTreeSet<u32>,
    last_played_pts: Option<u64>,
}

impl Model {
    fn new_session(&mut self, ssrc: u32) {
        *self = Model {
            ssrc: Some(ssrc),
            session: self.session + 1,
            ..Default::default()
        };
    }

    /// Mirrors the client's source selection (client.rs `handle_datagram`).
    fn on_packet(&mut self, p: &Packet) {
        let ssrc = p.header.ssrc;
        match &p.body {
            Body::Description(_) => {
                if self.ssrc != Some(ssrc) {
                    self.new_session(ssrc);
                }
            }
            Body::Video(v) => {
                if self.ssrc.is_none() {
                    self.new_session(ssrc);
                }
                if self.ssrc == Some(ssrc) {
                    self.chunks.entry(v.frame_id).or_default().push(Sent {
                        pts: v.pts,
                        frame_size: v.frame_size,
                        width: v.width,
                        height: v.height,
                        chunk_index: v.chunk_index,
                        chunk_count: v.chunk_count,
                        offset: v.offset,
                        payload: v.payload.clone(),
                    });
                }
            }
            Body::Audio(a) => {
                if self.ssrc.is_none() {
                    self.new_session(ssrc);
                }
                if self.ssrc == Some(ssrc) {
                    self.audio.entry(a.pts).or_default().push(a.payload.clone());
                }
            }
            _ => {}
        }
    }

    fn check_event(&mut self, ev: ViewerEvent) {
        match ev {
            ViewerEvent::Frame(f) => {
                let sent = self.chunks.get(&f.frame_id).unwrap_or_else(|| {
                    panic!("frame {} played but never sent in this session", f.frame_id)
                });
                let jpeg = &f.jpeg;
                let cands: Vec<&Sent> = sent
                    .iter()
                    .filter(|s| s.pts == f.pts && s.width == f.width && s.height == f.height)
                    .filter(|s| s.frame_size as usize == jpeg.len())
                    .collect();
                assert!(
                    !cands.is_empty(),
                    "frame {} (len {}) matches no declared frame size",
                    f.frame_id,
                    jpeg.len()
                );
                let count = cands[0].chunk_count;
                let mut pos = 0usize;
                for idx in 0..count {
                    let hit = cands.iter().find(|s| {
                        s.chunk_count == count
                            && s.chunk_index == idx
                            && s.offset as usize == pos
                            && jpeg.get(pos..pos + s.payload.len()) == Some(&s.payload[..])
                    });
                    let Some(s) = hit else {
                        panic!(
                            "frame {}: chunk {idx} at offset {pos} is not a chunk that was sent",
                            f.frame_id
                        )
                    };
                    pos += s.payload.len();
                }
                assert_eq!(
                    pos,
                    jpeg.len(),
                    "frame {}: chunks do not cover the frame",
                    f.frame_id
                );
                let k = f.frame_id;
                assert!(
                    !self.dropped.contains(&k),
                    "frame {} dropped, then played",
                    f.frame_id
                );
                assert!(self.played.insert(k), "frame {} played twice", f.frame_id);
                if let Some(l) = self.last_played_pts {
                    assert!(f.pts > l, "played pts went backwards: {} after {l}", f.pts);
                }
                self.last_played_pts = Some(f.pts);
            }
            ViewerEvent::FrameDropped { frame_id, .. } => {
                let k = frame_id;
                assert!(
                    !self.played.contains(&k),
                    "frame {frame_id} played, then dropped"
                );
                self.dropped.insert(k);
            }
            ViewerEvent::Audio(a) => {
                if a.concealed {
                    assert!(
                        a.samples.iter().all(|&b| b == 0),
                        "concealment is not silence"
                    );
                } else {
                    let ok = self
                        .audio
                        .get(&a.pts)
                        .is_some_and(|v| v.iter().any(|p| *p == a.samples));
                    assert!(ok, "audio at pts {} was never received", a.pts);
                }
            }
            ViewerEvent::LatencyRaised { from, to, .. } => {
                assert!(to > from, "latency 'raised' from {from:?} to {to:?}");
            }
            ViewerEvent::Description(_) | ViewerEvent::Rejected(_) | ViewerEvent::Ended => {}
        }
    }
}

struct Harness {
    client: Viewer,
    now: Instant,
    model: Model,
    next_seq: u32,
    seq_base: u32,
}

impl Harness {
    fn feed(&mut self, p: &Packet) {
        let enc = p.encode();
        // Only what the client will accept goes into the model.
        if Packet::decode(&enc).is_ok() {
            self.model.on_packet(p);
        }
        self.client.handle_datagram(self.now, server(), &enc);
        self.drain();
    }

    fn drain(&mut self) {
        let mut n = 0;
        while let Some(t) = self.client.poll_transmit(self.now) {
            assert_eq!(t.dest, server(), "client sent to a stranger");
            assert!(
                Packet::decode(&t.payload).is_ok(),
                "client sent an undecodable datagram"
            );
            n += 1;
            assert!(n < 100_000, "poll_transmit never ends");
        }
        while let Some(ev) = self.client.poll_event() {
            self.model.check_event(ev);
        }
        assert!(self.client.memory_bytes() <= MEMORY_BOUND);
    }

    fn advance(&mut self, d: Duration) {
        let next = self.now + d;
        assert!(next >= self.now);
        self.now = next;
        self.client.handle_timeout(self.now);
        self.drain();
    }
}

fn ssrc_of(s: u8) -> u32 {
    0x1000 + (s % 3) as u32
}

fuzz_target!(|script: Script| {
    let mut cfg = ViewerConfig::new(server(), "cam1");
    cfg.latency = Duration::from_millis(20 + script.latency_ms as u64);
    cfg.nack = script.nack;
    let mut h = Harness {
        client: Viewer::new(cfg),
        now: t0(),
        model: Model::default(),
        next_seq: script.seq_base,
        seq_base: script.seq_base,
    };
    h.client.handle_timeout(h.now);
    h.drain();
    for op in script.ops.into_iter().take(512) {
        match op {
            Op::Video {
                ssrc,
                frame,
                pts_frames,
                pts_skew,
                chunk_index,
                chunk_count,
                offset,
                len,
                extra,
                fill,
                flags,
                seq,
            } => {
                let count = (chunk_count % 6).max(1) as u16;
                let index = (chunk_index as u16) % count;
                let len = (len as usize % 200) + 1;
                let offset = offset as u32 * 16;
                let last = index + 1 == count;
                let frame_size = offset + len as u32 + if last { 0 } else { extra as u32 + 1 };
                let frame_id = (frame % 32) as u32;
                let pts =
                    (pts_frames as u64 * FRAME_TICKS).saturating_add_signed(pts_skew as i64 * 100);
                let seq = match seq {
                    SeqChoice::Consistent => h.seq_base.wrapping_add(frame_id * 16 + index as u32),
                    SeqChoice::Next => {
                        h.next_seq = h.next_seq.wrapping_add(1);
                        h.next_seq
                    }
                    SeqChoice::Arbitrary(s) => s,
                };
                let payload = Bytes::from(
                    (0..len)
                        .map(|i| fill.wrapping_add(i as u8))
                        .collect::<Vec<_>>(),
                );
                let mut p = Packet::new(
                    PacketType::Video,
                    ssrc_of(ssrc),
                    seq,
                    Body::Video(VideoChunk {
                        frame_id,
                        pts,
                        frame_size,
                        width: 64,
                        height: 48,
                        chunk_index: index,
                        chunk_count: count,
                        offset,
                        payload,
                    }),
                );
                p.header.flags = flags & (FLAG_RETRANSMIT | FLAG_REPLAY);
                h.feed(&p);
            }
            Op::WholeFrame {
                ssrc,
                frame,
                pts_frames,
                chunk_count,
                chunk_len,
                rotate,
                skip,
                flags,
            } => {
                let count = (chunk_count % 8).max(1) as u16;
                let clen = (chunk_len as usize % 300) + 1;
                let frame_id = (frame % 32) as u32;
                let pts = pts_frames as u64 * FRAME_TICKS;
                let size = clen * count as usize;
                let jpeg: Vec<u8> = (0..size).map(|i| (i as u8) ^ frame).collect();
                let first = h.next_seq.wrapping_add(1);
                h.next_seq = h.next_seq.wrapping_add(count as u32);
                for k in 0..count {
                    let i = (k + rotate as u16) % count;
                    if skip.is_some_and(|s| s as u16 % count == i) {
                        continue;
                    }
                    let off = i as usize * clen;
                    let mut p = Packet::new(
                        PacketType::Video,
                        ssrc_of(ssrc),
                        first.wrapping_add(i as u32),
                        Body::Video(VideoChunk {
                            frame_id,
                            pts,
                            frame_size: size as u32,
                            width: 64,
                            height: 48,
                            chunk_index: i,
                            chunk_count: count,
                            offset: off as u32,
                            payload: Bytes::copy_from_slice(&jpeg[off..off + clen]),
                        }),
                    );
                    p.header.flags = flags & (FLAG_RETRANSMIT | FLAG_REPLAY);
                    h.feed(&p);
                }
            }
            Op::Audio {
                ssrc,
                pts_blocks,
                frames,
                channels,
                fill,
                seq,
                flags,
            } => {
                let frames = (frames as u16 % 240).max(1);
                let channels = (channels % 2) + 1;
                let payload = Bytes::from(vec![fill; frames as usize * channels as usize * 2]);
                let mut p = Packet::new(
                    PacketType::Audio,
                    ssrc_of(ssrc),
                    h.seq_base.wrapping_add(seq as u32),
                    Body::Audio(AudioBlock {
                        pts: pts_blocks as u64 * 450,
                        sample_rate: 48_000,
                        channels,
                        format: SampleFormat::S16Le,
                        frames,
                        payload,
                    }),
                );
                p.header.flags = flags & (FLAG_RETRANSMIT | FLAG_REPLAY);
                h.feed(&p);
            }
            Op::Description {
                ssrc,
                name_variant,
                audio,
            } => {
                let p = Packet::new(
                    PacketType::Description,
                    ssrc_of(ssrc),
                    0,
                    Body::Description(Description {
                        name: if name_variant {
                            "cam2".into()
                        } else {
                            "cam1".into()
                        },
                        width: 64,
                        height: 48,
                        fps_num: 30,
                        fps_den: 1,
                        audio: audio.then_some(AudioParams {
                            sample_rate: 48_000,
                            channels: 2,
                            block_frames: 240,
                        }),
                        video_seq_base: h.seq_base,
                    }),
                );
                h.feed(&p);
            }
            Op::Retry(token) => {
                h.feed(&Packet::new(PacketType::Retry, 0, 1, Body::Retry { token }))
            }
            Op::Reject(r) => {
                let reason = [
                    RejectReason::UnknownStream,
                    RejectReason::Full,
                    RejectReason::BadToken,
                ][r as usize % 3];
                h.feed(&Packet::new(
                    PacketType::Reject,
                    0,
                    1,
                    Body::Reject { reason },
                ));
            }
            Op::KeepAliveAck(echo_us) => h.feed(&Packet::new(
                PacketType::KeepAliveAck,
                0,
                1,
                Body::KeepAliveAck { echo_us },
            )),
            Op::Raw { from_server, data } => {
                let from = if from_server {
                    server()
                } else {
                    "[::1]:6000".parse().unwrap()
                };
                h.client.handle_datagram(h.now, from, &data);
                h.drain();
            }
            Op::Advance { ms } => h.advance(Duration::from_millis(ms as u64 % 2000)),
            Op::AdvanceToTimeout => {
                if let Some(t) = h.client.poll_timeout() {
                    let d = t
                        .saturating_duration_since(h.now)
                        .min(Duration::from_secs(2));
                    h.advance(d);
                }
            }
            Op::Drain => h.drain(),
        }
    }
    // Let everything reach its deadline.
    for _ in 0..4 {
        h.advance(Duration::from_millis(500));
    }
});
