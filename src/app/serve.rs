//! `framecast serve`: a source (the synthetic test pattern and tone here; webcam and file
//! sources plug in the same way), JPEG-encoded on a media thread and streamed by a
//! [`Publisher`] node, directly to viewers and optionally pushed into a relay.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::keys::{KeyArgs, RefusalWatch, layer_seed, refuse_words, reject_words};
use super::outputs::{OutputArgs, Outputs, OutputsReport};
use super::status::StatusLine;
use crate::driver::event_loop::{EventLoop, IoStats, LoopControl};
use crate::driver::udp::{BufferSizes, SOCKET_BUFFER, bind_udp};
use crate::media::parse_test_spec;
use crate::media::source::{MediaItem, MediaSource, SourceStats, TestSource, audio_block_frames};
use crate::proto::node::soonest;
use crate::proto::publisher::{Publisher, PublisherConfig, PublisherEvent, PublisherStats};
use crate::proto::secure::{Role, SEAL_OVERHEAD, Secure, SecureEvent, SecureStats};
use crate::proto::wire::{AudioParams, MAX_DATAGRAM, MIN_DATAGRAM};

/// `framecast serve` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// What to stream: `test` or `test:WxH@FPS` (a moving pattern with a frame counter and a
    /// tone), `file:PATH` (a video file with its sound, paced in real time), `mjpeg:-` or
    /// `mjpeg:PATH` (a concatenated MJPEG stream from standard input, a pipe, a FIFO or a
    /// file, each JPEG sent as it is), or `webcam[:INDEX]` (the V4L2 camera /dev/videoINDEX:
    /// MJPEG passed through as it is, else YUYV or NV12 compressed from YUV).
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
    /// JPEG chroma subsampling: 420, 422 or 444.
    #[arg(long, default_value = "420", value_parser = ["420", "422", "444"])]
    pub subsampling: String,
    /// Repeat a `file:` source or an `mjpeg:` file (timestamps keep increasing), and the
    /// `--audio` WAV.
    #[arg(long = "loop")]
    pub looping: bool,
    /// Audio from this WAV file: added to `test`/`webcam`, in place of a file's own audio.
    #[arg(long, value_name = "FILE.wav", conflicts_with = "no_audio")]
    pub audio: Option<PathBuf>,
    /// Width to ask a webcam for.
    #[arg(long)]
    pub width: Option<u32>,
    /// Height to ask a webcam for.
    #[arg(long)]
    pub height: Option<u32>,
    /// Frame rate to ask a webcam for; the rate an `mjpeg:` file is sent at (default 30; a
    /// pipe is sent as it arrives).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Largest datagram in bytes (default fits a 1500-byte MTU over IPv4 and IPv6).
    #[arg(long, default_value_t = crate::proto::wire::DEFAULT_DATAGRAM)]
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
    /// HTTP and RTP outputs.
    #[command(flatten)]
    pub outputs: OutputArgs,
    /// Keys (proto-spec.md §8).
    #[command(flatten)]
    pub keys: KeyArgs,
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
            subsampling: "420".into(),
            looping: false,
            audio: None,
            width: None,
            height: None,
            fps: None,
            datagram_size: crate::proto::wire::DEFAULT_DATAGRAM,
            no_audio: false,
            duration: None,
            stats_json: None,
            seed: None,
            start_delay_ms: 0,
            outputs: OutputArgs::default(),
            keys: KeyArgs::default(),
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
    /// When the source's clock started (pts 0), µs since the Unix epoch.
    pub start_unix_us: u64,
    /// Protocol figures.
    pub server: PublisherStats,
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
    /// HTTP and RTP outputs.
    pub outputs: OutputsReport,
    /// Secure-layer figures (all 0 without keys).
    pub secure: SecureStats,
}

/// A bound, ready-to-run server.
pub struct Serve {
    args: ServeArgs,
    source: Option<Box<dyn MediaSource>>,
    lp: EventLoop<Secure<Publisher>>,
    buffers: BufferSizes,
    outputs: Outputs,
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
        let keys = args.keys.load()?;
        if args.relay.is_some() {
            super::keys::require_publish(&keys, "serve --relay")?;
        }
        // Sealing adds its header and tag to every datagram (§8.4).
        let inner_size = args.datagram_size - keys.as_ref().map_or(0, |_| SEAL_OVERHEAD);
        // The datagram size bounds the sample frames of one audio block.
        let max_frames = |channels: u8| {
            crate::proto::packetizer::Packetizer::new(0, inner_size, 0, 0)
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
        if args.outputs.rtp_out.is_some() {
            check_rtp(&args, format.width, format.height)?;
        }
        let (socket, buffers) = bind_udp(args.listen, SOCKET_BUFFER).context("serve --listen")?;
        crate::driver::udp::warn_if_clamped(&buffers);
        let mut cfg = PublisherConfig::new(
            &args.name,
            format.width as u16,
            format.height as u16,
            format.fps_num as u16,
        );
        cfg.fps_den = format.fps_den as u16;
        cfg.max_datagram = inner_size;
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
        let mut node = Secure::new(Publisher::new(cfg), keys.clone(), layer_seed(args.seed)?);
        if let Some(r) = args.relay {
            node.connect(r, Role::Publish);
        }
        let lp = EventLoop::new(socket, node)?;
        let listen = lp.local_addr().unwrap_or(args.listen);
        let outputs = Outputs::start_keyed(
            "serve",
            &args.outputs,
            listen,
            Some(&args.name),
            false,
            keys,
        )?;
        Ok(Serve {
            args,
            source: Some(source),
            lp,
            buffers,
            outputs,
            record_checksums: false,
            status: true,
        })
    }

    /// The HTTP server's address (`--http`).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.outputs.http_addr()
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
        let start_unix_us = crate::media::clock::unix_micros() + self.args.start_delay_ms * 1000;
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
                // The channel closes with this thread: wake the loop to see it.
                let _ = waker.wake();
                stats
            })
            .context("cannot start the source thread")?;
        let end = duration.map(|d| start + d);
        let mut status = StatusLine::new(self.status);
        let name = self.args.name.clone();
        let record = self.record_checksums;
        let mut crcs = Vec::new();
        let mut audio_hasher = crc32fast::Hasher::new();
        let source_name = self.args.source.clone();
        let looping = self.args.looping;
        // Hands the source's items to the publisher; false once the source has ended.
        let mut pump = |server: &mut Publisher, now: Instant, rx: &Receiver<MediaItem>| loop {
            let item = match rx.try_recv() {
                Ok(item) => item,
                Err(std::sync::mpsc::TryRecvError::Empty) => return true,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
            };
            {
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
        let outputs = &mut self.outputs;
        let auth = super::keys::auth_label(self.lp.node().is_keyed());
        let mut refusals = RefusalWatch::default();
        let mut failure: Option<String> = None;
        let mut source_ended = false;
        // The SIMD Reed-Solomon tables (15-25 ms of CPU and 8 MiB, once per process) are
        // built on a thread of their own once a viewer reports loss or asks for parity: a
        // stream on a clean network never codes a frame. A frame coded before they are ready
        // is coded with the table-light engine, same bytes, no wait (fec::tables_built).
        // (A relay builds them at start, for the hundreds of viewers it may repair at once.)
        let mut coder_warm = false;
        let result = self.lp.run(stop, |server, now| {
            if !pump(server.inner_mut(), now, &rx) {
                source_ended = true;
                return LoopControl::Stop;
            }
            watch_refusals(server, now, &name, &mut refusals);
            if let Some(why) = refusals.verdict(now) {
                failure = Some(why);
                return LoopControl::Stop;
            }
            let snapshot = outputs.tick(now, server.relay());
            let s = server.stats();
            if !coder_warm && s.relay.parity_may_be_needed() {
                coder_warm = true;
                if let Err(e) = std::thread::Builder::new()
                    .name("fec-tables".into())
                    .spawn(crate::proto::fec::warm_up)
                {
                    log::warn!("serve: cannot start the FEC table thread ({e}): coding slowly");
                }
            }
            status.tick(now, &[s.frames_sent as f64, s.relay.bytes_out as f64 * 8.0], |r| {
                format!(
                    "serve {name} ({auth}) | {:.1} fps | {:.1} Mbit/s | subscribers {} | cache hits {} | retransmits {}",
                    r[0],
                    r[1] / 1e6,
                    s.relay.subscribers,
                    s.relay.cache_hits,
                    s.relay.retransmits_sent
                )
            });
            if end.is_some_and(|e| now >= e) {
                return LoopControl::Stop;
            }
            LoopControl::Continue(soonest(soonest(end, status.deadline()), snapshot))
        });
        status.finish();
        if source_ended && self.status {
            eprintln!(
                "serve: {source_name} ended{}; ending the stream",
                if looping {
                    " (it cannot be read again)"
                } else {
                    ""
                }
            );
        }
        source_stop.store(true, Ordering::Relaxed);
        result.context("serve: network loop failed")?;
        if let Some(why) = failure {
            bail!("{why}");
        }
        // Frames still queued in the pacer go out at once (joining the source first could
        // hold them for a frame interval and make them late), then the stream's END (§6.9),
        // repeated, before the report: viewers end cleanly instead of timing out.
        let now = Instant::now();
        self.lp.node_mut().end(now);
        let drain_until = now + Duration::from_millis(100);
        let give_up = now + Duration::from_secs(1);
        let _ = self.lp.run(&AtomicBool::new(false), |server, now| {
            if (now >= drain_until && server.end_sent()) || now >= give_up {
                LoopControl::Stop
            } else {
                LoopControl::Continue(Some(drain_until.max(now + Duration::from_millis(10))))
            }
        });
        let source_stats = source.join().unwrap_or_default();
        let outputs = std::mem::take(&mut self.outputs).finish();
        let report = ServeReport {
            role: "serve",
            listen: self.local_addr().to_string(),
            stream: self.args.name.clone(),
            start_unix_us,
            server: self.lp.node().stats(),
            source: source_stats,
            io: self.lp.io_stats(),
            buffers: self.buffers,
            frame_crcs: crcs,
            audio_crc: record.then(|| audio_hasher.finalize()),
            outputs,
            secure: self.lp.node().secure_stats().clone(),
        };
        if let Some(p) = &self.args.stats_json {
            super::write_stats_json(p, &report)?;
        }
        Ok(report)
    }
}

/// Logs the secure layer's and the publisher's refusals, and notes those that concern
/// the relay this server pushes into.
fn watch_refusals(
    server: &mut Secure<Publisher>,
    now: Instant,
    name: &str,
    watch: &mut RefusalWatch,
) {
    while let Some(e) = server.poll_secure_event() {
        match e {
            SecureEvent::RefusedBy { peer, reason } => {
                log::info!(
                    "serve: stream {name:?}: relay {peer} refused it: {}; asking again",
                    refuse_words(reason)
                );
            }
            SecureEvent::Connected { .. } => {}
            SecureEvent::Refused { peer, reason } => {
                log::warn!("serve: refused {peer}: {}", refuse_words(reason))
            }
            SecureEvent::Plaintext { peer } => {
                log::warn!("serve: {peer} sent in the clear; this server uses keys")
            }
        }
    }
    if let Some(r) = server.config().push_to {
        if let Some(reason) = server.refused_by(r) {
            let why = format!(
                "serve: stream {name:?}: relay {r} refused it: {}",
                refuse_words(reason)
            );
            let _ = watch.refused(now, why);
        }
    }
    while let Some(e) = server.inner_mut().poll_event() {
        if let PublisherEvent::PushRefused { relay, reason } = e {
            let why = format!(
                "serve: stream {name:?}: relay {relay} refused it: {}",
                reject_words(reason)
            );
            if watch.refused(now, why.clone()) {
                log::info!("{why}; asking again");
            }
        }
    }
}

/// `--rtp-out` refuses, before anything starts, a source RTP/JPEG (RFC 2435) cannot carry.
fn check_rtp(args: &ServeArgs, width: u32, height: u32) -> anyhow::Result<()> {
    let max = u32::from(crate::rtp::jpeg::MAX_DIMENSION);
    if width > max || height > max {
        bail!(
            "--rtp-out: the source is {width}x{height}, larger than RTP/JPEG (RFC 2435) can describe (2040x2040 at most); serve it smaller (e.g. test:1920x1080@30 or --width 1920 --height 1080), or watch it with `framecast play` or over --http"
        );
    }
    if args.subsampling == "444" {
        bail!(
            "--rtp-out: RTP/JPEG (RFC 2435) carries 4:2:0 and 4:2:2 JPEGs only; use --subsampling 420 or 422"
        );
    }
    Ok(())
}

/// Opens the source named by `--source`, with `--audio` if given.
fn open_source(
    args: &ServeArgs,
    max_frames: &dyn Fn(u8) -> usize,
) -> anyhow::Result<Box<dyn MediaSource>> {
    use crate::media::Subsampling;
    use crate::media::wav_source::{WavAudio, WithAudio, wav_format};
    let s = args.source.as_str();
    #[cfg_attr(not(feature = "ffmpeg"), allow(unused_variables))]
    let subsampling = match args.subsampling.as_str() {
        "420" => Subsampling::Yuv420,
        "422" => Subsampling::Yuv422,
        "444" => Subsampling::Yuv444,
        other => bail!("--subsampling {other}: expected 420, 422 or 444"),
    };
    let is_webcam = crate::media::webcam::parse_webcam_spec(s).is_some();
    let mjpeg = crate::media::mjpeg::parse_mjpeg_spec(s);
    if !is_webcam && (args.width.is_some() || args.height.is_some()) {
        bail!(
            "--width/--height apply to webcam sources only (the test pattern takes test:WxH@FPS)"
        );
    }
    if !is_webcam && mjpeg.is_none() && args.fps.is_some() {
        bail!(
            "--fps applies to webcam and mjpeg: sources only (the test pattern takes test:WxH@FPS)"
        );
    }
    if let Some(fps) = args.fps {
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            bail!("--fps {fps}: expected a frame rate above 0, up to 1000");
        }
    }
    let wav = match &args.audio {
        None => None,
        Some(p) => Some(WavAudio::open(p).map_err(|e| anyhow::anyhow!("--audio {e}"))?),
    };
    // A video-only source plus the WAV, if any.
    let with_wav = |video: Box<dyn MediaSource>, wav: Option<WavAudio>| -> Box<dyn MediaSource> {
        match wav {
            Some(w) => {
                let block = audio_block_frames(wav_format(&w), max_frames(wav_format(&w).channels));
                Box::new(WithAudio::new(video, w, block, args.looping))
            }
            None => video,
        }
    };
    if s == "test" || s.starts_with("test:") {
        let spec = parse_test_spec(s).map_err(|e| anyhow::anyhow!("--source {s}: {e}"))?;
        let block = audio_block_frames(crate::media::source::TEST_AUDIO, max_frames(2));
        let tone = !args.no_audio && wav.is_none();
        let test = Box::new(TestSource::new(spec, args.quality, tone, block));
        return Ok(with_wav(test, wav));
    }
    if let Some(input) = mjpeg {
        use crate::media::mjpeg::MjpegSource;
        let input = input.map_err(|e| anyhow::anyhow!("--source {s}: {e}"))?;
        let src = MjpegSource::open(input, args.fps, args.looping)
            .map_err(|e| anyhow::anyhow!("--source {s}: {e}"))?;
        return Ok(with_wav(Box::new(src), wav));
    }
    if let Some(path) = s.strip_prefix("file:") {
        #[cfg(feature = "ffmpeg")]
        {
            use crate::media::file_source::{FileAudioChoice, FileOptions, FileSource};
            let audio = match wav {
                Some(w) => FileAudioChoice::Wav(w),
                None if args.no_audio => FileAudioChoice::None,
                None => FileAudioChoice::FromFile,
            };
            let opts = FileOptions {
                quality: args.quality,
                subsampling,
                looping: args.looping,
                audio,
                progress: true,
            };
            let src = FileSource::open(std::path::Path::new(path), opts, max_frames)
                .map_err(|e| anyhow::anyhow!("--source {s}: {e}"))?;
            return Ok(Box::new(src));
        }
        #[cfg(not(feature = "ffmpeg"))]
        bail!(
            "--source file:{path}: this build has no video decoding; rebuild with `--features ffmpeg` (needs the libav*-dev packages)"
        );
    }
    if let Some(index) = crate::media::webcam::parse_webcam_spec(s) {
        let index = index.map_err(|e| anyhow::anyhow!("--source {s}: {e}"))?;
        #[cfg(all(target_os = "linux", feature = "webcam"))]
        {
            use crate::media::webcam::{Webcam, WebcamOptions};
            let opts = WebcamOptions {
                width: args.width,
                height: args.height,
                fps: args.fps,
                quality: args.quality,
                subsampling,
            };
            let cam =
                Webcam::open(index, opts).map_err(|e| anyhow::anyhow!("--source {s}: {e}"))?;
            return Ok(with_wav(Box::new(cam), wav));
        }
        #[cfg(not(all(target_os = "linux", feature = "webcam")))]
        bail!(
            "--source {s} (camera {index}): this build has no camera support; rebuild with `--features webcam` (Linux only)"
        );
    }
    bail!(
        "--source {s}: unknown source; use `test`, `test:WxH@FPS` (e.g. test:1280x720@30), `file:PATH`, `mjpeg:-`, `mjpeg:PATH` or `webcam[:INDEX]`"
    )
}
