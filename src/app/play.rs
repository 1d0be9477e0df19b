//! `framecast play`: subscribes, reassembles, buffers and decodes. Headless here: frames
//! are decoded with turbojpeg on a decoder thread and counted; audio is counted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{TrySendError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde::Serialize;

use super::serve::SOCKET_BUFFER;
use super::status::StatusLine;
use crate::client::{Client, ClientConfig, ClientEvent, ClientStats};
use crate::driver::event_loop::{EventLoop, Flow, IoStats};
use crate::driver::udp::{BufferSizes, bind_udp, ephemeral_for};
use crate::media::JpegDecoder;
use crate::media::MAX_FRAME_PIXELS;
use crate::node::Node;

/// `framecast play` options.
#[derive(clap::Args, Debug, Clone)]
pub struct PlayArgs {
    /// The relay or server to subscribe to.
    #[arg(long, value_name = "ADDR")]
    pub from: SocketAddr,
    /// Stream name.
    #[arg(long, default_value = "live")]
    pub stream: String,
    /// Jitter-buffer latency in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub latency: u64,
    /// Ask the relay to send at most this many kbit/s (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_kbps: u32,
    /// Do not ask for retransmissions.
    #[arg(long)]
    pub no_nack: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write figures as JSON to this file at exit.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Count frames without decoding them (load tests with many viewers).
    #[arg(long)]
    pub no_decode: bool,
    /// Local address to bind (default: an ephemeral port).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
}

impl PlayArgs {
    /// Options for a player of `stream` at `from`.
    pub fn new(from: SocketAddr, stream: &str) -> PlayArgs {
        PlayArgs {
            from,
            stream: stream.into(),
            latency: 100,
            max_kbps: 0,
            no_nack: false,
            duration: None,
            stats_json: None,
            no_decode: false,
            bind: None,
        }
    }
}

/// What `play` reports at exit.
#[derive(Debug, Clone, Serialize)]
pub struct PlayReport {
    /// Always "play".
    pub role: &'static str,
    /// Local address.
    pub local: String,
    /// Stream name.
    pub stream: String,
    /// Protocol figures.
    pub client: ClientStats,
    /// Frames decoded by turbojpeg.
    pub frames_decoded: u64,
    /// Frames that failed to decode.
    pub decode_errors: u64,
    /// Frames not decoded because the decoder was behind.
    pub decode_skipped: u64,
    /// Audio sample frames received (concealment excluded).
    pub audio_frames: u64,
    /// Socket figures.
    pub io: IoStats,
    /// Socket buffers.
    pub buffers: BufferSizes,
    /// Per-frame CRC32 of the JPEG bytes played (when recording checksums).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frame_crcs: Vec<(u32, u32)>,
    /// CRC32 of all audio bytes played, concealment excluded (when recording checksums).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_crc: Option<u32>,
}

/// A bound player.
pub struct Play {
    args: PlayArgs,
    lp: EventLoop<Client>,
    buffers: BufferSizes,
    /// Keep per-frame checksums of what played (tests).
    pub record_checksums: bool,
    /// Print the live status line.
    pub status: bool,
}

impl std::fmt::Debug for Play {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Play")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl Play {
    /// Checks the options and binds the socket.
    pub fn bind(args: PlayArgs) -> anyhow::Result<Play> {
        super::check_name("stream", &args.stream)?;
        if args.latency == 0 || args.latency > 10_000 {
            anyhow::bail!("--latency {}: expected 1-10000 milliseconds", args.latency);
        }
        let local = args.bind.unwrap_or_else(|| ephemeral_for(args.from));
        let (socket, buffers) = bind_udp(local, SOCKET_BUFFER).context("play")?;
        crate::driver::udp::warn_if_clamped(&buffers);
        let mut cfg = ClientConfig::new(args.from, &args.stream);
        cfg.latency = Duration::from_millis(args.latency);
        cfg.max_kbps = args.max_kbps;
        cfg.nack = !args.no_nack;
        let lp = EventLoop::new(socket, Client::new(cfg))?;
        Ok(Play {
            args,
            lp,
            buffers,
            record_checksums: false,
            status: true,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.lp
            .local_addr()
            .unwrap_or_else(|_| ephemeral_for(self.args.from))
    }

    /// Plays until `--duration` elapses or `stop` is set; says BYE on the way out.
    pub fn run(mut self, stop: &AtomicBool) -> anyhow::Result<PlayReport> {
        let end = super::duration_arg("duration", self.args.duration)?.map(|d| Instant::now() + d);
        let decoded = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let (tx, rx) = sync_channel::<Bytes>(8);
        let decode = !self.args.no_decode;
        let (d2, e2) = (decoded.clone(), errors.clone());
        let decoder = std::thread::Builder::new()
            .name("decoder".into())
            .spawn(move || {
                let Ok(mut dec) = JpegDecoder::new() else {
                    return;
                };
                for jpeg in rx {
                    match dec.decode_rgb(&jpeg, MAX_FRAME_PIXELS) {
                        Ok(_) => d2.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            log::debug!("play: undecodable frame: {e}");
                            e2.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
            .context("cannot start the decoder thread")?;
        let mut status = StatusLine::new(self.status);
        let mut skipped = 0u64;
        let mut audio_frames = 0u64;
        let record = self.record_checksums;
        let mut crcs = Vec::new();
        let mut audio_hasher = crc32fast::Hasher::new();
        let stream = self.args.stream.clone();
        let latency = self.args.latency;
        let result = self.lp.run(stop, |client, now| {
            while let Some(e) = client.poll_event() {
                match e {
                    ClientEvent::Frame(f) => {
                        if record {
                            crcs.push((f.frame_id, crc32fast::hash(&f.jpeg)));
                        }
                        if decode {
                            match tx.try_send(f.jpeg) {
                                Ok(()) => {}
                                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => skipped += 1,
                            }
                        }
                    }
                    ClientEvent::Audio(a) => {
                        if !a.concealed {
                            audio_frames += (a.samples.len() / (2 * a.channels.max(1) as usize)) as u64;
                            if record {
                                audio_hasher.update(&a.samples);
                            }
                        }
                    }
                    ClientEvent::Description(d) => log::info!(
                        "play: stream {} {}x{} @ {}/{} fps{}",
                        d.name,
                        d.width,
                        d.height,
                        d.fps_num,
                        d.fps_den,
                        d.audio.map_or(String::new(), |a| format!(", audio {} Hz x{}", a.sample_rate, a.channels))
                    ),
                    ClientEvent::FrameDropped { .. } => {}
                    ClientEvent::Rejected(r) => log::warn!("play: the server refused stream {stream:?}: {r:?}; asking again"),
                }
            }
            let s = client.stats();
            let lost = s.video.lost + s.audio.lost;
            let detected = s.video.detected + s.audio.detected;
            status.tick(now, &[s.frames_played as f64, s.bytes as f64 * 8.0], |r| {
                format!(
                    "play {stream} | {:.1} fps | {:.1} Mbit/s | loss {:.2}% | recovered {} | late {} | incomplete {} | rtt {:.2} ms | latency {latency} ms | jitter {:.2} ms",
                    r[0],
                    r[1] / 1e6,
                    if s.datagrams > 0 { 100.0 * detected as f64 / (s.datagrams + detected) as f64 } else { 0.0 },
                    s.video.recovered + s.audio.recovered,
                    s.frames_late,
                    s.frames_incomplete,
                    s.rtt_ms,
                    s.jitter_ms
                ) + &if lost > 0 { format!(" | unrecovered {lost}") } else { String::new() }
            });
            if end.is_some_and(|e| now >= e) {
                return Flow::Stop;
            }
            Flow::Continue(crate::node::soonest(end, status.deadline()))
        });
        status.finish();
        let bye = self.lp.node_mut().bye();
        self.lp.send_now(&bye);
        drop(tx);
        let _ = decoder.join();
        result.context("play: network loop failed")?;
        let _ = self.lp.node_mut().poll_timeout();
        let report = PlayReport {
            role: "play",
            local: self.local_addr().to_string(),
            stream: self.args.stream.clone(),
            client: self.lp.node().stats(),
            frames_decoded: decoded.load(Ordering::Relaxed),
            decode_errors: errors.load(Ordering::Relaxed),
            decode_skipped: skipped,
            audio_frames,
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
