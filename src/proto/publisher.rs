//! The `serve` role's state machine: packetizer, pacer and an embedded relay for its own
//! stream (proto-spec.md §7.1). Viewers may subscribe to it directly; with a push target it
//! also feeds a relay (`serve --relay`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::proto::node::{Node, Transmit, soonest};
use crate::proto::pacer::Pacer;
use crate::proto::packetizer::{PacketizeError, Packetized, Packetizer};
use crate::proto::relay::{Relay, RelayConfig, RelayEvent, RelayStats};
use crate::proto::timer::TimerTable;
use crate::proto::wire::{AudioParams, Body, Description, Packet, PacketType};

/// The pacing window is at most this fraction (1/n) of the smallest latency a viewer stated.
const PACING_SHARE_OF_LATENCY: u32 = 4;

/// Publisher tunables.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Stream name (§6.1).
    pub name: String,
    /// Source id: random per session (§3).
    pub ssrc: u32,
    /// First video sequence number (random, §4.1).
    pub video_seq: u32,
    /// First audio sequence number (random, §4.1).
    pub audio_seq: u32,
    /// Largest datagram (§2).
    pub max_datagram: usize,
    /// Frame width.
    pub width: u16,
    /// Frame height.
    pub height: u16,
    /// Frame rate numerator.
    pub fps_num: u16,
    /// Frame rate denominator.
    pub fps_den: u16,
    /// Audio format, if any.
    pub audio: Option<AudioParams>,
    /// Share of the frame interval a frame's chunks are spread over (§7.1).
    pub pace_fraction: f64,
    /// How often the description is repeated (§6.1).
    pub description_interval: Duration,
    /// The embedded relay's settings.
    pub relay: RelayConfig,
    /// A relay to push the stream into.
    pub push_to: Option<SocketAddr>,
}

impl PublisherConfig {
    /// A configuration for a `width` x `height` stream at `fps` frames per second.
    pub fn new(name: &str, width: u16, height: u16, fps: u16) -> PublisherConfig {
        PublisherConfig {
            name: name.into(),
            ssrc: 0x1234_5678,
            video_seq: 0,
            audio_seq: 0,
            max_datagram: crate::proto::wire::DEFAULT_DATAGRAM,
            width,
            height,
            fps_num: fps,
            fps_den: 1,
            audio: None,
            pace_fraction: 0.5,
            description_interval: Duration::from_secs(1),
            relay: RelayConfig::default(),
            push_to: None,
        }
    }

    /// Draws the session's source id and first sequence numbers from `rng`.
    pub fn randomize(&mut self, rng: &mut fastrand::Rng) {
        self.ssrc = rng.u32(1..);
        self.video_seq = rng.u32(..);
        self.audio_seq = rng.u32(..);
        rng.fill(&mut self.relay.token_key);
    }

    fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(self.fps_den as f64 / self.fps_num.max(1) as f64)
    }
}

/// Publisher counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublisherStats {
    /// Frames packetized.
    pub frames_sent: u64,
    /// JPEG bytes packetized.
    pub frame_bytes: u64,
    /// Video datagrams produced.
    pub video_datagrams: u64,
    /// Audio blocks produced.
    pub audio_blocks: u64,
    /// Frames refused by the packetizer.
    pub frames_refused: u64,
    /// The embedded relay's counters.
    pub relay: RelayStats,
}

/// What the publisher tells the application (pulled with [`Publisher::poll_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublisherEvent {
    /// A viewer (or the push target) entered the embedded relay's subscriber table.
    ViewerJoined {
        /// The viewer's address.
        addr: SocketAddr,
    },
    /// A viewer left the subscriber table: it said BYE, went silent past the relay's
    /// timeout, was dropped for falling behind, or answered the media with REJECT
    /// `unknown_stream` (a relay that restarted) (§7.3).
    ViewerEvicted {
        /// The viewer's address.
        addr: SocketAddr,
    },
    /// The relay pushed into refused the stream (§6.3): e.g. `name_taken`, another
    /// publisher feeds the name, or `auth_required`, the relay uses keys.
    PushRefused {
        /// The relay.
        relay: SocketAddr,
        /// Why.
        reason: crate::proto::wire::RejectReason,
    },
}

/// The publisher's timers (its [`TimerTable`]). The pacer and the embedded relay keep
/// their own deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublisherTimer {
    /// The next repetition of the description (§6.1); armed, due at once, when the
    /// publisher starts (its first input or poll).
    Description,
    /// The next END of an ended stream (§6.9); armed by [`Publisher::end`].
    End,
}

/// ENDs sent for an ended stream (§6.9): several, against loss.
pub const END_REPEATS: u32 = 5;
/// Time between two ENDs (§6.9).
pub const END_INTERVAL: Duration = Duration::from_millis(50);

/// The publisher state machine.
#[derive(Debug)]
pub struct Publisher {
    cfg: PublisherConfig,
    packetizer: Packetizer,
    pacer: Pacer<Packetized>,
    relay: Relay,
    description: Packetized,
    timers: TimerTable<PublisherTimer>,
    started: bool,
    stats: PublisherStats,
    /// The latest pts pushed (frame or audio block), for the END (§6.9).
    last_pts: Option<u64>,
    /// ENDs sent so far; `None` until [`Publisher::end`].
    ends_sent: Option<u32>,
}

impl Publisher {
    /// A publisher for one stream.
    pub fn new(cfg: PublisherConfig) -> Publisher {
        let packetizer = Packetizer::new(cfg.ssrc, cfg.max_datagram, cfg.video_seq, cfg.audio_seq);
        let mut relay = Relay::new(cfg.relay.clone());
        relay.add_local_stream(&cfg.name);
        let description = Packetized::new(Packet::new(
            PacketType::Description,
            cfg.ssrc,
            0,
            Body::Description(Description {
                name: cfg.name.clone(),
                width: cfg.width,
                height: cfg.height,
                fps_num: cfg.fps_num,
                fps_den: cfg.fps_den,
                audio: cfg.audio,
                video_seq_base: cfg.video_seq,
            }),
        ));
        Publisher {
            pacer: Pacer::new(cfg.frame_interval() * 2),
            packetizer,
            relay,
            description,
            timers: TimerTable::new(),
            started: false,
            stats: PublisherStats::default(),
            last_pts: None,
            ends_sent: None,
            cfg,
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<PublisherEvent> {
        // The embedded relay's subscriber table is the one source of these events.
        while let Some(e) = self.relay.poll_event() {
            match e {
                RelayEvent::SubscriberJoined { addr, .. } => {
                    return Some(PublisherEvent::ViewerJoined { addr });
                }
                RelayEvent::SubscriberEvicted { addr, .. } => {
                    return Some(PublisherEvent::ViewerEvicted { addr });
                }
                // Only the relay pushed into can refuse the push.
                RelayEvent::Rejected { from, reason } if Some(from) == self.cfg.push_to => {
                    return Some(PublisherEvent::PushRefused {
                        relay: from,
                        reason,
                    });
                }
                _ => {}
            }
        }
        None
    }

    /// The configuration.
    pub fn config(&self) -> &PublisherConfig {
        &self.cfg
    }

    /// Counters, including the embedded relay's.
    pub fn stats(&self) -> PublisherStats {
        let mut s = self.stats.clone();
        s.relay = self.relay.stats();
        s
    }

    /// The embedded relay.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The most audio sample frames one block may hold at this datagram size.
    pub fn max_audio_frames(&self, channels: u8) -> usize {
        self.packetizer.max_audio_frames(channels)
    }

    fn start(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            self.timers.set(PublisherTimer::Description, now);
            if let Some(to) = self.cfg.push_to {
                self.relay.add_permanent_subscriber(now, to, &self.cfg.name);
            }
        }
    }

    /// Runs the due timers and hands the paced datagrams due at `now` to the relay, the
    /// description first (as one datagram stream: §6.1 before §5).
    fn run_due(&mut self, now: Instant) {
        while let Some(timer) = self.timers.next_expired(now) {
            match timer {
                PublisherTimer::Description => {
                    self.timers.set(
                        PublisherTimer::Description,
                        now + self.cfg.description_interval,
                    );
                    self.relay
                        .ingest_local(now, &self.cfg.name, self.description.clone());
                }
                PublisherTimer::End => {
                    let n = self.ends_sent.unwrap_or(0);
                    let end = Packet::new(
                        PacketType::End,
                        self.cfg.ssrc,
                        n,
                        Body::End {
                            last_pts: self.last_pts.unwrap_or(0),
                        },
                    );
                    self.relay
                        .ingest_local(now, &self.cfg.name, Packetized::new(end));
                    self.ends_sent = Some(n + 1);
                    if n + 1 < END_REPEATS {
                        self.timers.set(PublisherTimer::End, now + END_INTERVAL);
                    }
                }
            }
        }
        while let Some(d) = self.pacer.pop(now) {
            self.relay.ingest_local(now, &self.cfg.name, d);
        }
    }

    /// Ends the stream (§6.9): after the frames already pushed have left the pacer (one
    /// frame interval), sends END [`END_REPEATS`] times, [`END_INTERVAL`] apart. Nothing
    /// should be pushed after; calling it again changes nothing.
    pub fn end(&mut self, now: Instant) {
        self.start(now);
        if self.ends_sent.is_none() {
            self.ends_sent = Some(0);
            self.timers
                .set(PublisherTimer::End, now + self.cfg.frame_interval());
        }
    }

    /// Whether every END has been handed to the embedded relay (the driver may exit once
    /// its send queue is empty).
    pub fn end_sent(&self) -> bool {
        self.ends_sent.is_some_and(|n| n >= END_REPEATS)
    }

    fn note_pts(&mut self, pts: u64) {
        self.last_pts = Some(self.last_pts.map_or(pts, |p| p.max(pts)));
    }

    /// Sends one JPEG frame stamped `pts` (90 kHz). Returns its frame id.
    pub fn push_frame(
        &mut self,
        now: Instant,
        pts: u64,
        jpeg: &Bytes,
    ) -> Result<u32, PacketizeError> {
        self.start(now);
        let (id, chunks) =
            match self
                .packetizer
                .packetize_frame(pts, self.cfg.width, self.cfg.height, jpeg)
            {
                Ok(x) => x,
                Err(e) => {
                    self.stats.frames_refused += 1;
                    return Err(e);
                }
            };
        self.note_pts(pts);
        self.stats.frames_sent += 1;
        self.stats.frame_bytes += jpeg.len() as u64;
        self.stats.video_datagrams += chunks.len() as u64;
        // The window fits the tightest latency a viewer stated (§7.1): a quarter of it, so
        // that a frame is whole well before its playout time.
        let mut window = self
            .cfg
            .frame_interval()
            .mul_f64(self.cfg.pace_fraction.clamp(0.0, 1.0));
        if let Some(l) = self.relay.min_viewer_latency(&self.cfg.name) {
            window = window.min(l / PACING_SHARE_OF_LATENCY);
        }
        self.pacer.push_frame(
            now,
            chunks.into_iter().map(|c| c.into_packetized()).collect(),
            window,
        );
        self.run_due(now);
        Ok(id)
    }

    /// Sends one block of interleaved s16 audio whose first sample is at `pts` (90 kHz).
    pub fn push_audio(
        &mut self,
        now: Instant,
        pts: u64,
        samples: &[i16],
    ) -> Result<(), PacketizeError> {
        self.start(now);
        let Some(a) = self.cfg.audio else {
            return Ok(());
        };
        let c = self
            .packetizer
            .packetize_audio(pts, a.sample_rate, a.channels, samples)?;
        self.note_pts(pts);
        self.stats.audio_blocks += 1;
        self.pacer.push_urgent(c.into_packetized());
        self.run_due(now);
        Ok(())
    }
}

impl Node for Publisher {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.start(now);
        self.relay.handle_datagram(now, from, datagram);
        self.run_due(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.start(now);
        self.relay.handle_timeout(now);
        self.run_due(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let t = soonest(self.pacer.poll_timeout(), self.relay.poll_timeout());
        soonest(t, self.timers.next_timeout())
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.start(now);
        self.relay.poll_transmit(now)
    }
}

#[cfg(test)]
mod tests {
    //! Publisher unit tests in virtual time: the test plays a viewer by hand.

    use super::*;
    use crate::proto::wire::{FLAG_RETRANSMIT, Flow, NackRange, VideoChunk};

    const MS: Duration = Duration::from_millis(1);

    fn viewer() -> SocketAddr {
        "127.0.0.1:6000".parse().unwrap()
    }

    fn publisher() -> Publisher {
        let mut cfg = PublisherConfig::new("cam1", 64, 48, 10);
        cfg.max_datagram = 256;
        cfg.video_seq = 100;
        Publisher::new(cfg)
    }

    fn subscribe(token: Vec<u8>) -> Bytes {
        Packet::new(
            PacketType::Subscribe,
            0,
            1,
            Body::Subscribe {
                name: "cam1".into(),
                token,
                max_kbps: 0,
                latency_ms: 0,
            },
        )
        .encode()
    }

    fn drain(p: &mut Publisher, now: Instant) -> Vec<(SocketAddr, Packet)> {
        std::iter::from_fn(|| p.poll_transmit(now))
            .map(|t| (t.dest, Packet::decode(&t.payload).unwrap()))
            .collect()
    }

    fn types(out: &[(SocketAddr, Packet)]) -> Vec<(SocketAddr, PacketType)> {
        out.iter().map(|(a, p)| (*a, p.header.ptype)).collect()
    }

    /// Cookie handshake at `t0` and `t0 + 1 ms`.
    fn joined(t0: Instant) -> Publisher {
        let mut p = publisher();
        p.handle_datagram(t0, viewer(), &subscribe(vec![]));
        assert_eq!(p.poll_event(), None);
        let out = drain(&mut p, t0);
        assert_eq!(types(&out), vec![(viewer(), PacketType::Retry)]);
        let Body::Retry { token } = out[0].1.body else {
            unreachable!()
        };
        p.handle_datagram(t0 + MS, viewer(), &subscribe(token.to_vec()));
        assert_eq!(
            p.poll_event(),
            Some(PublisherEvent::ViewerJoined { addr: viewer() })
        );
        assert_eq!(p.poll_event(), None);
        let out = drain(&mut p, t0 + MS);
        assert_eq!(types(&out), vec![(viewer(), PacketType::Description)]);
        p
    }

    #[test]
    fn answers_a_subscribe_with_a_cookie_then_the_description() {
        let t0 = Instant::now();
        let mut p = joined(t0);
        assert_eq!(p.stats().relay.subscribers, 1);
        // The description repeats on its timer.
        assert_eq!(
            p.timers.get(PublisherTimer::Description),
            Some(t0 + Duration::from_secs(1))
        );
        let t = t0 + Duration::from_secs(1);
        assert!(p.poll_timeout().is_some_and(|d| d <= t));
        p.handle_timeout(t);
        assert_eq!(
            types(&drain(&mut p, t)),
            vec![(viewer(), PacketType::Description)]
        );
        // A BYE takes the viewer out of the table.
        let bye = Packet::new(PacketType::Bye, 0, 2, Body::Bye).encode();
        p.handle_datagram(t + MS, viewer(), &bye);
        assert_eq!(
            p.poll_event(),
            Some(PublisherEvent::ViewerEvicted { addr: viewer() })
        );
        assert_eq!(p.stats().relay.subscribers, 0);
    }

    /// Pushes one 1000-byte frame at `t1` and runs the publisher until `t1 + 100 ms`;
    /// returns the video chunks sent with their send times.
    fn push_and_run(p: &mut Publisher, t1: Instant) -> Vec<(Instant, VideoChunk, u32)> {
        let jpeg = Bytes::from(vec![0x42; 1000]);
        let id = p.push_frame(t1, 90_000, &jpeg).unwrap();
        let mut sent = Vec::new();
        let mut now = t1;
        loop {
            for (to, pkt) in drain(p, now) {
                assert_eq!(to, viewer());
                if let Body::Video(v) = pkt.body {
                    assert_eq!(v.frame_id, id);
                    sent.push((now, v, pkt.header.seq));
                }
            }
            match p.poll_timeout() {
                Some(t) if t <= t1 + 100 * MS => {
                    now = t.max(now);
                    p.handle_timeout(now);
                }
                _ => break,
            }
        }
        sent
    }

    #[test]
    fn sends_a_pushed_frame_paced_over_half_the_frame_interval() {
        let t0 = Instant::now();
        let mut p = joined(t0);
        let t1 = t0 + 10 * MS;
        let sent = push_and_run(&mut p, t1);
        let idx: Vec<u16> = sent.iter().map(|(_, v, _)| v.chunk_index).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4]);
        let seqs: Vec<u32> = sent.iter().map(|(_, _, s)| *s).collect();
        assert_eq!(seqs, vec![100, 101, 102, 103, 104]);
        let at: Vec<Duration> = sent.iter().map(|(t, _, _)| *t - t1).collect();
        assert_eq!(at, vec![Duration::ZERO, 10 * MS, 20 * MS, 30 * MS, 40 * MS]);
        let jpeg: Vec<u8> = sent
            .iter()
            .flat_map(|(_, v, _)| v.payload.to_vec())
            .collect();
        assert_eq!(jpeg, vec![0x42; 1000]);
        let s = p.stats();
        assert_eq!(s.frames_sent, 1);
        assert_eq!(s.frame_bytes, 1000);
        assert_eq!(s.video_datagrams, 5);
    }

    #[test]
    fn answers_a_nack_from_its_cache() {
        let t0 = Instant::now();
        let mut p = joined(t0);
        let t1 = t0 + 10 * MS;
        let sent = push_and_run(&mut p, t1);
        let (_, lost, seq) = sent[2].clone();
        let t2 = t1 + 100 * MS;
        let nack = Packet::new(
            PacketType::Nack,
            0x1234_5678,
            3,
            Body::Nack {
                flow: Flow::Video,
                ranges: vec![NackRange { start: seq, len: 1 }],
            },
        )
        .encode();
        p.handle_datagram(t2, viewer(), &nack);
        let out = drain(&mut p, t2);
        assert_eq!(out.len(), 1);
        let (to, rtx) = &out[0];
        assert_eq!(*to, viewer());
        assert_eq!(rtx.header.flags, FLAG_RETRANSMIT);
        assert_eq!(rtx.header.seq, seq);
        assert_eq!(rtx.body, Body::Video(lost));
    }

    /// §6.9: END goes out a frame interval after `end`, [`END_REPEATS`] times,
    /// [`END_INTERVAL`] apart, naming the latest pts pushed.
    #[test]
    fn ends_the_stream_with_repeated_ends() {
        let t0 = Instant::now();
        let mut p = joined(t0);
        p.push_frame(t0 + MS, 9_000, &Bytes::from(vec![1u8; 100]))
            .unwrap();
        let _ = drain(&mut p, t0 + 100 * MS);
        p.end(t0 + 100 * MS);
        p.end(t0 + 101 * MS);
        let mut ends = Vec::new();
        let mut now = t0 + 100 * MS;
        while let Some(t) = p.poll_timeout() {
            if t > t0 + Duration::from_secs(2) {
                break;
            }
            now = t.max(now);
            p.handle_timeout(now);
            for (to, pk) in drain(&mut p, now) {
                if let Body::End { last_pts } = pk.body {
                    ends.push((now - t0, to, pk.header.seq, last_pts));
                }
            }
        }
        assert!(p.end_sent());
        let interval = p.config().frame_interval();
        let want: Vec<_> = (0..END_REPEATS)
            .map(|i| {
                (
                    100 * MS + interval + END_INTERVAL * i,
                    viewer(),
                    i,
                    9_000u64,
                )
            })
            .collect();
        assert_eq!(ends, want);
    }

    /// A relay that missed the pushing publisher's first DESCRIPTION (it was not listening
    /// yet) answers the media with REJECT `unknown_stream`; the publisher announces again at
    /// once, and the relay takes the stream from the next datagrams on, not a second later
    /// at the next DESCRIPTION (§7.3). The REJECT is not reported as a refusal.
    #[test]
    fn a_relay_that_missed_the_description_gets_it_again_at_once() {
        use crate::proto::relay::{Relay, RelayConfig};
        let relay_addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let me: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let mut cfg = PublisherConfig::new("cam1", 64, 48, 10);
        cfg.max_datagram = 256;
        cfg.push_to = Some(relay_addr);
        let mut p = Publisher::new(cfg);
        let mut relay = Relay::new(RelayConfig::default());
        let t0 = Instant::now();
        // Start: the first DESCRIPTION is lost.
        p.handle_timeout(t0);
        let lost = drain(&mut p, t0);
        assert_eq!(types(&lost), vec![(relay_addr, PacketType::Description)]);
        // Carries everything between the two for `steps` ms from `from`; returns the
        // relay's media datagrams in (its `media_in`).
        let run = |p: &mut Publisher, relay: &mut Relay, from: Instant, steps: u32| {
            for i in 0..=steps {
                let now = from + i * MS;
                p.handle_timeout(now);
                while let Some(t) = p.poll_transmit(now) {
                    assert_eq!(t.dest, relay_addr);
                    relay.handle_datagram(now, me, &t.payload);
                }
                relay.handle_timeout(now);
                while let Some(t) = relay.poll_transmit(now) {
                    assert_eq!(t.dest, me);
                    p.handle_datagram(now, relay_addr, &t.payload);
                }
            }
            relay.stats().media_in
        };
        let jpeg = Bytes::from(vec![0x42; 1000]);
        let t1 = t0 + 10 * MS;
        p.push_frame(t1, 0, &jpeg).unwrap();
        // The frame's first chunk (of 5, paced over 50 ms) is refused, the relay not
        // knowing the stream, and answered with one REJECT; the publisher's DESCRIPTION
        // follows at once, and the relay takes the rest of that very frame.
        assert_eq!(run(&mut p, &mut relay, t1, 60), 4);
        let r = relay.stats();
        assert_eq!((r.unknown_sender, r.rejects_sent), (1, 1));
        assert_eq!(p.stats().relay.reannounced, 1);
        // And every chunk of the next, well before the next periodic DESCRIPTION (t0 + 1 s).
        let t2 = t1 + 100 * MS;
        p.push_frame(t2, 9000, &jpeg).unwrap();
        assert_eq!(run(&mut p, &mut relay, t2, 60), 4 + 5);
        assert_eq!(relay.stats().rejects_sent, 1);
        // Only the relay pushed into can refuse the push.
        let full = Packet::new(
            PacketType::Reject,
            0,
            0,
            Body::Reject {
                reason: crate::proto::wire::RejectReason::Full,
            },
        )
        .encode();
        p.handle_datagram(t2 + 100 * MS, viewer(), &full);
        let events: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
        assert_eq!(
            events,
            vec![PublisherEvent::ViewerJoined { addr: relay_addr }]
        );
        p.handle_datagram(t2 + 100 * MS, relay_addr, &full);
        assert_eq!(
            p.poll_event(),
            Some(PublisherEvent::PushRefused {
                relay: relay_addr,
                reason: crate::proto::wire::RejectReason::Full,
            })
        );
    }
}
