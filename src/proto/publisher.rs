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
use crate::proto::relay::{Relay, RelayConfig, RelayStats};
use crate::proto::wire::{AudioParams, Body, Description, Packet, PacketType};

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

/// The server state machine.
#[derive(Debug)]
pub struct Publisher {
    cfg: PublisherConfig,
    packetizer: Packetizer,
    pacer: Pacer<Packetized>,
    relay: Relay,
    description: Packetized,
    next_description: Option<Instant>,
    started: bool,
    stats: PublisherStats,
}

impl Publisher {
    /// A server for one stream.
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
            next_description: None,
            started: false,
            stats: PublisherStats::default(),
            cfg,
        }
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
            if let Some(to) = self.cfg.push_to {
                self.relay.add_permanent_subscriber(now, to, &self.cfg.name);
            }
        }
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
        self.stats.frames_sent += 1;
        self.stats.frame_bytes += jpeg.len() as u64;
        self.stats.video_datagrams += chunks.len() as u64;
        let window = self
            .cfg
            .frame_interval()
            .mul_f64(self.cfg.pace_fraction.clamp(0.0, 1.0));
        self.pacer.push_frame(
            now,
            chunks.into_iter().map(|c| c.into_packetized()).collect(),
            window,
        );
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
        self.stats.audio_blocks += 1;
        self.pacer.push_urgent(c.into_packetized());
        Ok(())
    }
}

impl Node for Publisher {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.start(now);
        self.relay.handle_datagram(now, from, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.start(now);
        self.relay.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let t = soonest(self.pacer.poll_timeout(), self.relay.poll_timeout());
        soonest(t, self.next_description)
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.start(now);
        if self.next_description.is_none_or(|t| t <= now) {
            self.next_description = Some(now + self.cfg.description_interval);
            self.relay
                .ingest_local(now, &self.cfg.name, self.description.clone());
        }
        while let Some(d) = self.pacer.pop(now) {
            self.relay.ingest_local(now, &self.cfg.name, d);
        }
        self.relay.poll_transmit(now)
    }
}
