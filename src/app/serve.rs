//! `framecast serve`: a source (the synthetic test pattern and tone here; webcam and file
//! sources plug in the same way), JPEG-encoded on a media thread and streamed by a
//! [`Server`] node, directly to viewers and optionally pushed into a relay.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::status::StatusLine;
use crate::driver::event_loop::{EventLoop, Flow, IoStats};
use crate::driver::udp::{BufferSizes, bind_udp};
use crate::media::parse_test_spec;
use crate::media::source::{MediaItem, MediaSource, SourceStats, TestSource, audio_block_frames};
use crate::server::{Server, ServerConfig, ServerStats};
use crate::wire::{AudioParams, MAX_DATAGRAM, MIN_DATAGRAM};

/// Socket buffer asked for by every role (several MB for video, PROTOCOL-NOTES).
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// `framecast serve` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// What to stream: `test` or `test:WxH@FPS` (a moving pattern with a frame counter and a tone).
    #[arg(long, default_value = "test")]
    pub source: String,
    /// Address viewers (or a relay) subscribe to.
    #[arg(long, default_value = "0.0.0.0:5000")]
    pub listen: SocketAddr,
    /// Also push the stream into this relay.
    #[arg(long, value_name = "ADDR")]
    pub relay: Option<SocketAddr>,
    /// Stream name viewers ask for.
    #[arg(long, default_value = "live")]
    pub name: String,
    /// JPEG quality, 1-100.
    #[arg(long, default_value_t = 80)]
    pub quality: u8,
    /// Largest datagram in bytes (default fits a 1500-byte MTU over IPv4 and IPv6).
    #[arg(long, default_value_t = crate::wire::DEFAULT_DATAGRAM)]
    pub datagram_size: usize,
    /// Stream no audio.
    #[arg(long)]
    pub no_audio: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write figures as JSON to this file at exit.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Seed for the session's random identifiers (default: from the OS).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start the source this many milliseconds after the socket is up.
    #[arg(long, default_value_t = 0)]
    pub start_delay_ms: u64,
}

impl ServeArgs {
    /// Options for a test-pattern server on `listen`.
    pub fn new(listen: SocketAddr) -> ServeArgs {
        ServeArgs {
            source: "test".into(),
            listen,
            relay: None,
            name: "live".into(),
            quality: 80,
            datagram_size: crate::wire::DEFAULT_DATAGRAM,
            no_audio: false,
            duration: None,
            stats_json: None,
            seed: None,
            start_delay_ms: 0,
        }
    }
}

/// What `serve` reports at exit.
#[derive(Debug, Clone, Serialize)]
pub struct ServeReport {
    /// Always "serve".
    pub role: &'static str,
    /// Listening address.
    pub listen: String,
    /// Stream name.
    pub stream: String,
    /// Protocol figures.
    pub server: ServerStats,
    /// Source figures.
    pub source: SourceStats,
    /// Socket figures.
    pub io: IoStats,
    /// Socket buffers.
    pub buffers: BufferSizes,
    /// Per-frame CRC32 of the JPEG bytes sent, by frame id (when recording checksums).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frame_crcs: Vec<(u32, u32)>,
    /// CRC32 of all audio bytes sent, in order (when recording checksums).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_crc: Option<u32>,
}

/// A bound, ready-to-run server.
pub struct Serve {
    args: ServeArgs,
    source: Option<Box<dyn MediaSource>>,
    lp: EventLoop<Server>,
    buffers: BufferSizes,
    /// Keep per-frame checksums of what was sent (tests).
    pub record_checksums: bool,
    /// Print the live status line.
    pub status: bool,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// Checks the options and binds the socket.
    pub fn bind(args: ServeArgs) -> anyhow::Result<Serve> {
        super::check_name("name", &args.name)?;
        if !(1..=100).contains(&args.quality) {
            bail!("--quality {}: expected 1-100", args.quality);
        }
        if !(MIN_DATAGRAM..=MAX_DATAGRAM).contains(&args.datagram_size) {
            bail!(
                "--datagram-size {}: expected {MIN_DATAGRAM}-{MAX_DATAGRAM} bytes",
                args.datagram_size
            );
        }
        // The datagram size bounds the sample frames of one audio block.
        let max_frames = |channels: u8| {
            crate::packetizer::Packetizer::new(0, args.datagram_size, 0, 0)
                .max_audio_frames(channels)
        };
        let source = open_source(&args, &max_frames)?;
        let format = source.format().clone();
        if format.width > u16::MAX as u32
            || format.height > u16::MAX as u32
            || format.fps_num > u16::MAX as u32
            || format.fps_den > u16::MAX as u32
        {
            bail!(
                "--source {}: dimensions and frame rate must fit 16 bits",
                args.source
            );
        }
        let (socket, buffers) = bind_udp(args.listen, SOCKET_BUFFER).context("serve --listen")?;
        crate::driver::udp::warn_if_clamped(&buffers);
        let mut cfg = ServerConfig::new(
            &args.name,
            format.width as u16,
            format.height as u16,
            format.fps_num as u16,
        );
        cfg.fps_den = format.fps_den as u16;
        cfg.max_datagram = args.datagram_size;
        cfg.push_to = args.relay;
        cfg.audio = format.audio.map(|a| AudioParams {
            sample_rate: a.sample_rate,
            channels: a.channels,
            block_frames: audio_block_frames(a, max_frames(a.channels)) as u16,
        });
        let mut rng = match args.seed {
            Some(s) => fastrand::Rng::with_seed(s),
            None => fastrand::Rng::new(),
        };
        cfg.randomize(&mut rng);
        let lp = EventLoop::new(socket, Server::new(cfg))?;
        Ok(Serve {
            args,
            source: Some(source),
            lp,
            buffers,
            record_checksums: false,
            status: true,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.lp.local_addr().unwrap_or(self.args.listen)
    }

    /// Streams until `--duration` elapses or `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> anyhow::Result<ServeReport> {
        let duration = super::duration_arg("duration", self.args.duration)?;
        let (tx, rx) = sync_channel::<MediaItem>(16);
        let source_stop = Arc::new(AtomicBool::new(false));
        let waker = self.lp.waker();
        let start = Instant::now() + Duration::from_millis(self.args.start_delay_ms);
        let st = source_stop.clone();
        let Some(src) = self.source.take() else {
            bail!("serve: the source already ran");
        };
        let source = std::thread::Builder::new()
            .name("source".into())
            .spawn(move || {
                let mut dropped = 0u64;
                let mut sink = |item: MediaItem| {
                    let video = matches!(item, MediaItem::Video { .. });
                    match tx.try_send(item) {
                        Ok(()) => {
                            let _ = waker.wake();
                            true
                        }
                        Err(TrySendError::Full(_)) => {
                            // The network loop is behind: drop rather than fall behind.
                            dropped += video as u64;
                            true
                        }
                        Err(TrySendError::Disconnected(_)) => false,
                    }
                };
                let mut stats = src.run(start, &mut sink, &st);
                stats.frames_dropped += dropped;
                stats
            })
            .context("cannot start the source thread")?;
        let end = duration.map(|d| start + d);
        let mut status = StatusLine::new(self.status);
        let name = self.args.name.clone();
        let record = self.record_checksums;
        let mut crcs = Vec::new();
        let mut audio_hasher = crc32fast::Hasher::new();
        let mut pump = |server: &mut Server, now: Instant, rx: &Receiver<MediaItem>| {
            while let Ok(item) = rx.try_recv() {
                match item {
                    MediaItem::Video { pts, jpeg } => match server.push_frame(now, pts, &jpeg) {
                        Ok(id) if record => crcs.push((id, crc32fast::hash(&jpeg))),
                        Ok(_) => {}
                        Err(e) => log::warn!("serve: frame dropped: {e}"),
                    },
                    MediaItem::Audio { pts, samples } => {
                        if record {
                            for s in &samples {
                                audio_hasher.update(&s.to_le_bytes());
                            }
                        }
                        if let Err(e) = server.push_audio(now, pts, &samples) {
                            log::warn!("serve: audio block dropped: {e}");
                        }
                    }
                }
            }
        };
        let result = self.lp.run(stop, |server, now| {
            pump(server, now, &rx);
            let s = server.stats();
            status.tick(now, &[s.frames_sent as f64, s.relay.bytes_out as f64 * 8.0], |r| {
                format!(
                    "serve {name} | {:.1} fps | {:.1} Mbit/s | subscribers {} | cache hits {} | retransmits {}",
                    r[0],
                    r[1] / 1e6,
                    s.relay.subscribers,
                    s.relay.cache_hits,
                    s.relay.retransmits_sent
                )
            });
            if end.is_some_and(|e| now >= e) {
                return Flow::Stop;
            }
            Flow::Continue(crate::node::soonest(end, status.deadline()))
        });
        status.finish();
        source_stop.store(true, Ordering::Relaxed);
        let source_stats = source.join().unwrap_or_default();
        result.context("serve: network loop failed")?;
        // Frames still queued in the pacer go out before the report.
        let drain_until = Instant::now() + Duration::from_millis(100);
        let _ = self.lp.run(&AtomicBool::new(false), |_, now| {
            if now >= drain_until {
                Flow::Stop
            } else {
                Flow::Continue(Some(drain_until))
            }
        });
        let report = ServeReport {
            role: "serve",
            listen: self.local_addr().to_string(),
            stream: self.args.name.clone(),
            server: self.lp.node().stats(),
            source: source_stats,
            io: self.lp.io_stats().clone(),
            buffers: self.buffers,
            frame_crcs: crcs,
            audio_crc: record.then(|| audio_hasher.finalize()),
        };
        if let Some(p) = &self.args.stats_json {
            super::write_stats_json(p, &report)?;
        }
        Ok(report)
    }
}

/// Opens the source named by `--source`.
fn open_source(
    args: &ServeArgs,
    max_frames: &dyn Fn(u8) -> usize,
) -> anyhow::Result<Box<dyn MediaSource>> {
    let s = args.source.as_str();
    if s == "test" || s.starts_with("test:") {
        let spec = parse_test_spec(s).map_err(|e| anyhow::anyhow!("--source {s}: {e}"))?;
        let block = audio_block_frames(crate::media::source::TEST_AUDIO, max_frames(2));
        return Ok(Box::new(TestSource::new(
            spec,
            args.quality,
            !args.no_audio,
            block,
        )));
    }
    bail!("--source {s}: unknown source; use `test` or `test:WxH@FPS` (e.g. test:1280x720@30)")
}
