//! `framecast play`: subscribes, reassembles, buffers, decodes, and shows, plays and records.
//!
//! Threads: the event loop (the caller's thread; the main thread in the CLI) runs the
//! [`Viewer`], owns the OpenCV window and the audio sink, and drives the A/V sync state machine
//! ([`AvSync`]); a decoder thread turns JPEGs into BGR frames with turbojpeg and hands them
//! back through a bounded channel, waking the loop. Audio is the master clock: the loop pushes
//! each released audio block into the sink (through drift correction) and shows each decoded
//! frame when the sink's clock reaches its timestamp. The recorder, when asked for, writes what
//! was received as it is released.
//!
//! Outputs degrade instead of failing: with no display the video is decoded and counted but
//! not shown; with no sound device a [`ClockSink`] keeps the audio clock by arithmetic, so sync
//! (and its statistics) still work. Each is said once, as one warning line.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde::Serialize;

use super::serve::SOCKET_BUFFER;
use super::status::StatusLine;
use crate::driver::event_loop::{EventLoop, IoStats, LoopControl};
use crate::driver::udp::{BufferSizes, bind_udp, ephemeral_for};
use crate::media::avsync::{AudioBlock, AudioReading, AvStats, AvSync, AvSyncConfig};
use crate::media::jpeg::{JpegDecoder, JpegError, MAX_PROGRESSIVE_SCANS};
use crate::media::recorder::{RecordSummary, Recorder};
use crate::media::{AudioSink, ClockSink, MAX_FRAME_PIXELS};
use crate::proto::node::Node;
use crate::proto::viewer::{Viewer, ViewerConfig, ViewerEvent, ViewerStats};

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
    /// Keep each decoded frame's pts and wall-clock time (µs since the Unix epoch) in the
    /// statistics, for end-to-end latency measurements.
    #[arg(long)]
    pub frame_times: bool,
    /// Count frames without decoding them (load tests with many viewers).
    #[arg(long)]
    pub no_decode: bool,
    /// Do not open a video window.
    #[arg(long)]
    pub no_video: bool,
    /// Do not play sound (video then plays at the jitter buffer's pace, not audio's).
    #[arg(long)]
    pub no_audio: bool,
    /// Record what is received to PATH.avi (MJPEG, the JPEGs as received) and PATH.wav.
    #[arg(long, value_name = "PATH")]
    pub record: Option<PathBuf>,
    /// Local address to bind (default: an ephemeral port).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
}

impl PlayArgs {
    /// Options for a headless player of `stream` at `from`: unlike the command line's
    /// defaults, no window and no sound (`no_video` and `no_audio` set), so tests, the demo
    /// and embedders never open a window or a sound device unless they ask.
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
            frame_times: false,
            no_video: true,
            no_audio: true,
            record: None,
            bind: None,
        }
    }
}

/// What the player may use for output, decided from values passed in rather than read from
/// the process environment (so the fallbacks are testable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputEnv {
    /// The value of `DISPLAY`.
    pub display: Option<OsString>,
    /// The value of `WAYLAND_DISPLAY`.
    pub wayland_display: Option<OsString>,
    /// Try to open the default sound device (false: keep time without one).
    pub audio_device: bool,
}

impl OutputEnv {
    /// This process's environment; sound devices allowed.
    pub fn from_process() -> Self {
        Self {
            display: std::env::var_os("DISPLAY"),
            wayland_display: std::env::var_os("WAYLAND_DISPLAY"),
            audio_device: true,
        }
    }

    /// No display, no sound device.
    pub fn headless() -> Self {
        Self::default()
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
    pub client: ViewerStats,
    /// Frames decoded by turbojpeg.
    pub frames_decoded: u64,
    /// (pts, µs since the Unix epoch) of each decoded frame, with `--frame-times`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frame_times: Vec<(u64, u64)>,
    /// Frames that failed to decode.
    pub decode_errors: u64,
    /// Frames not decoded because the decoder was behind.
    pub decode_skipped: u64,
    /// Audio sample frames received (concealment excluded).
    pub audio_frames: u64,
    /// Where the video went: "window", "none: ..." (why), or "off".
    pub video_output: String,
    /// Where the audio went: "device NAME", "clock: ..." (no sound device: timed, not heard),
    /// "none" (the stream had no audio), or "off".
    pub audio_output: String,
    /// A/V sync figures: frames shown (reached their show time; in the window when there is
    /// one), late drops, A/V offset, drift corrections.
    pub av: AvStats,
    /// Times the audio output ran dry.
    pub audio_underruns: u64,
    /// What was recorded (`--record`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordSummary>,
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
    lp: EventLoop<Viewer>,
    buffers: BufferSizes,
    /// Keep per-frame checksums of what played (tests).
    pub record_checksums: bool,
    /// Print the live status line.
    pub status: bool,
    /// What outputs may be used (from the process environment after [`Play::bind`]).
    pub env: OutputEnv,
}

impl std::fmt::Debug for Play {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Play")
            .field("args", &self.args)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// Microseconds since the Unix epoch (wall clock, for cross-process latency figures).
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A decoded frame on its way from the decoder thread to the window.
#[derive(Debug)]
struct Decoded {
    pts: u64,
    width: u32,
    height: u32,
    bgr: Vec<u8>,
}

/// turbojpeg straight to packed BGR (what OpenCV shows), with the same guards as
/// [`JpegDecoder`]: the header is checked against [`MAX_FRAME_PIXELS`] before anything is
/// allocated, and progressive scans are limited.
struct BgrDecoder {
    header: JpegDecoder,
    dec: turbojpeg::Decompressor,
}

impl BgrDecoder {
    fn new() -> Result<Self, JpegError> {
        let mut dec = turbojpeg::Decompressor::new().map_err(JpegError::Init)?;
        dec.set_scan_limit(MAX_PROGRESSIVE_SCANS)
            .map_err(JpegError::Init)?;
        Ok(Self {
            header: JpegDecoder::new()?,
            dec,
        })
    }

    /// Decodes into `buf` (reused); returns (width, height).
    fn decode(&mut self, jpeg: &[u8], buf: &mut Vec<u8>) -> Result<(u32, u32), JpegError> {
        let info = self.header.read_header(jpeg)?;
        if info.pixels() > MAX_FRAME_PIXELS {
            return Err(JpegError::TooLarge {
                width: u64::from(info.width),
                height: u64::from(info.height),
                pixels: info.pixels(),
                max_pixels: MAX_FRAME_PIXELS,
            });
        }
        let stride = info.width as usize * 3;
        buf.resize(stride * info.height as usize, 0);
        let image = turbojpeg::Image {
            pixels: &mut buf[..],
            width: info.width as usize,
            pitch: stride,
            height: info.height as usize,
            format: turbojpeg::PixelFormat::BGR,
        };
        self.dec
            .decompress(jpeg, image)
            .map_err(|source| JpegError::Decode {
                width: info.width,
                height: info.height,
                source,
            })?;
        Ok((info.width, info.height))
    }
}

/// Counters the decoder thread shares with the loop.
#[derive(Debug, Default)]
struct DecodeCounters {
    decoded: AtomicU64,
    errors: AtomicU64,
}

fn spawn_decoder(
    rx: Receiver<(u64, Bytes)>,
    out: SyncSender<Decoded>,
    spare: Receiver<Vec<u8>>,
    counters: Arc<DecodeCounters>,
    waker: Arc<mio::Waker>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("decoder".into())
        .spawn(move || {
            let mut dec = match BgrDecoder::new() {
                Ok(d) => d,
                Err(e) => {
                    log::warn!("play: no JPEG decoder ({e}); frames are counted, not decoded");
                    return;
                }
            };
            let mut handed_back = true;
            for (pts, jpeg) in rx {
                let mut bgr = spare.try_recv().unwrap_or_default();
                match dec.decode(&jpeg, &mut bgr) {
                    Ok((width, height)) => {
                        counters.decoded.fetch_add(1, Ordering::Relaxed);
                        let d = Decoded {
                            pts,
                            width,
                            height,
                            bgr,
                        };
                        // The loop takes every frame it is sent; it stops taking only when it
                        // ends, and then this thread ends too.
                        if handed_back && out.send(d).is_err() {
                            handed_back = false;
                        }
                        let _ = waker.wake();
                    }
                    Err(e) => {
                        log::debug!("play: undecodable frame: {e}");
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
}

/// The audio sink in use and what it is called in the report.
struct AudioOut {
    sink: Box<dyn AudioSink>,
    format: (u32, u16),
}

/// Opens the sound device, or falls back to a [`ClockSink`]; says why once.
fn open_sink(
    rate: u32,
    channels: u16,
    env: &OutputEnv,
    label: &mut String,
    warned: &mut bool,
) -> Option<AudioOut> {
    let mut why = String::from("no sound device allowed");
    #[cfg(feature = "cpal")]
    if env.audio_device {
        match crate::media::AudioOutput::open(rate, channels) {
            Ok(out) => {
                *label = format!("device {}", out.device_name());
                return Some(AudioOut {
                    sink: Box::new(out),
                    format: (rate, channels),
                });
            }
            Err(e) => why = e.to_string(),
        }
    }
    #[cfg(not(feature = "cpal"))]
    if env.audio_device {
        why = "built without audio output (feature cpal)".into();
    }
    let capacity = u64::from(rate) * u64::from(crate::media::audio_out::DEFAULT_BUFFER_MS) / 1000;
    match ClockSink::new(rate, channels, capacity) {
        Ok(s) => {
            if !*warned {
                log::warn!("play: no sound output ({why}); audio is timed but not heard");
                *warned = true;
            }
            *label = format!("clock: {why}");
            Some(AudioOut {
                sink: Box::new(s),
                format: (rate, channels),
            })
        }
        Err(e) => {
            if !*warned {
                log::warn!("play: cannot play this audio ({e}); video plays at its own pace");
                *warned = true;
            }
            *label = format!("none: {e}");
            None
        }
    }
}

/// The window, or nothing when built without OpenCV.
#[cfg(feature = "opencv")]
type Win = crate::media::Window;
#[cfg(not(feature = "opencv"))]
type Win = NoWindow;

/// Stand-in for the window in a build without OpenCV.
#[cfg(not(feature = "opencv"))]
#[derive(Debug)]
struct NoWindow;

#[cfg(not(feature = "opencv"))]
impl NoWindow {
    fn show_bgr(&mut self, _: u32, _: u32, _: &[u8]) -> Result<(), std::convert::Infallible> {
        Ok(())
    }
    fn poll_key(&mut self) -> Option<()> {
        None
    }
}

/// Opens the window if asked and possible; returns it and the report's label.
fn open_window(args: &PlayArgs, env: &OutputEnv) -> (Option<Win>, String) {
    if args.no_video {
        return (None, "off".into());
    }
    if args.no_decode {
        return (None, "none: --no-decode".into());
    }
    #[cfg(feature = "opencv")]
    {
        let opened = crate::media::Window::open_with_env(
            &args.stream,
            env.display.clone(),
            env.wayland_display.clone(),
        );
        match opened {
            Ok(w) => (Some(w), "window".into()),
            Err(e) => {
                log::warn!("play: no video window ({e}); frames are decoded and counted");
                (None, format!("none: {e}"))
            }
        }
    }
    #[cfg(not(feature = "opencv"))]
    {
        let _ = env;
        log::warn!("play: built without a video window (feature opencv); frames are counted");
        (None, "none: built without OpenCV".into())
    }
}

#[cfg(feature = "opencv")]
fn is_quit(k: Option<crate::media::Key>) -> bool {
    k == Some(crate::media::Key::Quit)
}

#[cfg(not(feature = "opencv"))]
fn is_quit(_: Option<()>) -> bool {
    false
}

/// The window is pumped at least this often while open.
const PUMP_INTERVAL: Duration = Duration::from_millis(10);

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
        let mut cfg = ViewerConfig::new(args.from, &args.stream);
        cfg.latency = Duration::from_millis(args.latency);
        cfg.max_kbps = args.max_kbps;
        cfg.nack = !args.no_nack;
        let lp = EventLoop::new(socket, Viewer::new(cfg))?;
        Ok(Play {
            args,
            lp,
            buffers,
            record_checksums: false,
            status: true,
            env: OutputEnv::from_process(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.lp
            .local_addr()
            .unwrap_or_else(|_| ephemeral_for(self.args.from))
    }

    /// Plays until `--duration` elapses, `stop` is set (Ctrl-C) or the window is closed (`q`,
    /// Esc); says BYE, and finishes the recording, on the way out.
    pub fn run(mut self, stop: &AtomicBool) -> anyhow::Result<PlayReport> {
        let end = super::duration_arg("duration", self.args.duration)?.map(|d| Instant::now() + d);
        let mut recorder = match &self.args.record {
            Some(p) => Some(Recorder::create(p).context("--record")?),
            None => None,
        };
        let counters = Arc::new(DecodeCounters::default());
        let (tx, rx) = sync_channel::<(u64, Bytes)>(8);
        let (decoded_tx, decoded_rx) = sync_channel::<Decoded>(4);
        let frame_times_on = self.args.frame_times;
        let mut frame_times: Vec<(u64, u64)> = Vec::new();
        let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(4);
        let decode = !self.args.no_decode;
        let decoder = spawn_decoder(rx, decoded_tx, spare_rx, counters.clone(), self.lp.waker())
            .context("cannot start the decoder thread")?;

        let env = self.env.clone();
        let (mut window, video_output) = open_window(&self.args, &env);
        let mut audio_output = if self.args.no_audio { "off" } else { "none" }.to_string();
        let mut audio: Option<AudioOut> = None;
        let mut audio_warned = false;
        let mut unplayable: Option<(u32, u16)> = None;
        let mut sync = AvSync::<Decoded>::new(AvSyncConfig::default());
        let mut next_pump = Instant::now();
        let mut show_warned = false;
        let mut record_error: Option<anyhow::Error> = None;
        let mut pcm: Vec<i16> = Vec::new();

        let mut status = StatusLine::new(self.status);
        let mut skipped = 0u64;
        let mut audio_frames = 0u64;
        let record = self.record_checksums;
        let mut crcs = Vec::new();
        let mut audio_hasher = crc32fast::Hasher::new();
        let stream = self.args.stream.clone();
        let latency = self.args.latency;
        let play_audio = !self.args.no_audio;
        let result = self.lp.run(stop, |client, now| {
            while let Some(e) = client.poll_event() {
                match e {
                    ViewerEvent::Frame(f) => {
                        if record {
                            crcs.push((f.frame_id, crc32fast::hash(&f.jpeg)));
                        }
                        if let Some(r) = &mut recorder {
                            if let Err(e) = r.video(f.pts, f.width, f.height, &f.jpeg) {
                                log::error!("play: recording stopped: {e}");
                                record_error = Some(e.into());
                                recorder = None;
                            }
                        }
                        if decode {
                            match tx.try_send((f.pts, f.jpeg)) {
                                Ok(()) => {}
                                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => skipped += 1,
                            }
                        }
                    }
                    ViewerEvent::Audio(a) => {
                        let channels = u16::from(a.channels);
                        if !a.concealed {
                            audio_frames += (a.samples.len() / (2 * usize::from(channels.max(1)))) as u64;
                            if record {
                                audio_hasher.update(&a.samples);
                            }
                        }
                        if recorder.is_none() && !play_audio {
                            continue;
                        }
                        pcm.clear();
                        pcm.extend(a.samples.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
                        if a.concealed {
                            pcm.fill(0);
                        }
                        if let Some(r) = &mut recorder {
                            if let Err(e) = r.audio(a.pts, a.sample_rate, channels, &pcm, a.concealed) {
                                log::error!("play: recording stopped: {e}");
                                record_error = Some(e.into());
                                recorder = None;
                            }
                        }
                        if !play_audio {
                            continue;
                        }
                        let format = (a.sample_rate, channels);
                        if audio.as_ref().is_none_or(|o| o.format != format) && unplayable != Some(format) {
                            // First block, or the format changed: a new sink counts from zero.
                            audio = None;
                            sync.reset_audio();
                            audio = open_sink(format.0, format.1, &env, &mut audio_output, &mut audio_warned);
                            unplayable = audio.is_none().then_some(format);
                        }
                        if let Some(o) = &mut audio {
                            let reading = AudioReading {
                                played_frames: o.sink.played_frames(now),
                                latency: o.sink.latency(),
                            };
                            let block = AudioBlock {
                                pts: a.pts,
                                sample_rate: a.sample_rate,
                                channels,
                                samples: &pcm,
                            };
                            let sink = &mut o.sink;
                            sync.push_audio(now, block, reading, |s| sink.push(now, s));
                        }
                    }
                    ViewerEvent::Description(d) => {
                        log::info!(
                            "play: stream {} {}x{} @ {}/{} fps{}",
                            d.name,
                            d.width,
                            d.height,
                            d.fps_num,
                            d.fps_den,
                            d.audio.map_or(String::new(), |a| format!(", audio {} Hz x{}", a.sample_rate, a.channels))
                        );
                        sync.set_frame_rate(u32::from(d.fps_num), u32::from(d.fps_den));
                        if let Some(r) = &mut recorder {
                            if let Err(e) = r.describe(u32::from(d.fps_num), u32::from(d.fps_den), d.audio.is_some()) {
                                log::error!("play: recording stopped: {e}");
                                record_error = Some(e.into());
                                recorder = None;
                            }
                        }
                    }
                    ViewerEvent::FrameDropped { .. } => {}
                    ViewerEvent::Rejected(r) => log::warn!("play: the server refused stream {stream:?}: {r:?}; asking again"),
                }
            }

            // Decoded frames into the sync queue; show the one that is due.
            while let Ok(d) = decoded_rx.try_recv() {
                if frame_times_on {
                    frame_times.push((d.pts, unix_micros()));
                }
                sync.push_frame(now, d.pts, d);
            }
            let reading = audio.as_ref().map(|o| AudioReading {
                played_frames: o.sink.played_frames(now),
                latency: o.sink.latency(),
            });
            let mut due = None;
            while let Some(f) = sync.poll_frame(now, reading) {
                if let Some(old) = due.replace(f) {
                    let _ = spare_tx.try_send(old.frame.bgr);
                }
            }
            while let Some(d) = sync.poll_discarded() {
                let _ = spare_tx.try_send(d.bgr);
            }
            let mut quit = false;
            if let Some(w) = &mut window {
                if let Some(f) = &due {
                    let d = &f.frame;
                    if let Err(e) = w.show_bgr(d.width, d.height, &d.bgr) {
                        if !show_warned {
                            log::warn!("play: cannot show a frame: {e}");
                            show_warned = true;
                        }
                    }
                }
                if due.is_some() || now >= next_pump {
                    quit = is_quit(w.poll_key());
                    next_pump = now + PUMP_INTERVAL;
                }
            }
            if let Some(f) = due {
                let _ = spare_tx.try_send(f.frame.bgr);
            }
            if quit {
                return LoopControl::Stop;
            }

            let s = client.stats();
            let av = sync.stats();
            let underruns = audio.as_ref().map_or(0, |o| o.sink.underruns());
            let lost = s.video.lost + s.audio.lost;
            let detected = s.video.detected + s.audio.detected;
            status.tick(now, &[s.frames_played as f64, s.bytes as f64 * 8.0, av.frames_shown as f64], |r| {
                format!(
                    "play {stream} | {:.1} fps | shown {:.1} fps | {:.1} Mbit/s | loss {:.2}% | recovered {} | late {} | incomplete {} | rtt {:.2} ms | latency {latency} ms | jitter {:.2} ms",
                    r[0],
                    r[2],
                    r[1] / 1e6,
                    if s.datagrams > 0 { 100.0 * detected as f64 / (s.datagrams + detected) as f64 } else { 0.0 },
                    s.video.recovered + s.audio.recovered,
                    s.frames_late,
                    s.frames_incomplete,
                    s.rtt_ms,
                    s.jitter_ms
                ) + &if av.frames_synced > 0 {
                    format!(
                        " | a/v {:+.1} ms (max {:.1}) | underruns {underruns} | drift fixes {}",
                        av.av_offset_mean_ms, av.av_offset_max_ms, av.drift_corrections
                    )
                } else {
                    String::new()
                } + &if lost > 0 { format!(" | unrecovered {lost}") } else { String::new() }
            });
            if end.is_some_and(|e| now >= e) {
                return LoopControl::Stop;
            }
            // Wake for the next frame's show time (not in the past: no busy loop), and pump
            // the window regularly while it is open.
            let show_at = sync.poll_timeout().map(|t| t.max(now + Duration::from_micros(500)));
            let pump_at = window.as_ref().map(|_| next_pump);
            let wake = [end, status.deadline(), show_at, pump_at].into_iter().flatten().min();
            LoopControl::Continue(wake)
        });
        status.finish();
        let bye = self.lp.node_mut().bye();
        self.lp.send_now(&bye);
        drop(tx);
        drop(decoded_rx);
        let _ = decoder.join();
        let _ = window.take(); // close the window now
        let audio_underruns = audio.as_ref().map_or(0, |o| o.sink.underruns());
        drop(audio);
        let record_summary = match recorder.as_mut().map(Recorder::finish) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                log::error!("play: finishing the recording failed: {e}");
                record_error.get_or_insert(e.into());
                recorder.as_ref().map(|r| r.summary().clone())
            }
            None => None,
        };
        if let (Some(r), true) = (&record_summary, self.status) {
            let fps = f64::from(r.fps.0) / f64::from(r.fps.1.max(1));
            eprintln!(
                "play: recorded {} frames ({:.1} s at {fps:.2} fps, {} repeated) to {}{}",
                r.video_frames,
                r.video_frames as f64 / fps,
                r.video_repeats,
                r.avi
                    .as_deref()
                    .map_or(String::new(), |p| p.display().to_string()),
                r.wav.as_deref().map_or(String::new(), |p| format!(
                    " and {} audio frames to {}",
                    r.audio_frames,
                    p.display()
                )),
            );
        }
        result.context("play: network loop failed")?;
        let _ = self.lp.node_mut().poll_timeout();
        let report = PlayReport {
            role: "play",
            local: self.local_addr().to_string(),
            stream: self.args.stream.clone(),
            client: self.lp.node().stats(),
            frames_decoded: counters.decoded.load(Ordering::Relaxed),
            frame_times,
            decode_errors: counters.errors.load(Ordering::Relaxed),
            decode_skipped: skipped,
            audio_frames,
            video_output,
            audio_output,
            av: sync.stats(),
            audio_underruns,
            record: record_summary,
            io: self.lp.io_stats().clone(),
            buffers: self.buffers,
            frame_crcs: crcs,
            audio_crc: record.then(|| audio_hasher.finalize()),
        };
        if let Some(p) = &self.args.stats_json {
            super::write_stats_json(p, &report)?;
        }
        if let Some(e) = record_error {
            return Err(e.context("--record"));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::serve::{Serve, ServeArgs};

    struct TmpDir(PathBuf);

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(name: &str) -> TmpDir {
        let d = std::env::temp_dir().join(format!("framecast-play-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }

    fn serve(lo: SocketAddr, seconds: f64) -> Serve {
        let mut s = ServeArgs::new(lo);
        s.source = "test:320x240@30".into();
        s.duration = Some(seconds);
        s.start_delay_ms = 200;
        s.seed = Some(3);
        s.name = "cam1".into();
        let mut serve = Serve::bind(s).unwrap();
        serve.status = false;
        serve
    }

    /// With outputs asked for but no display and no sound device (passed in, the process
    /// environment untouched), the player says so, carries on, decodes, keeps A/V sync by
    /// the clock sink, and records.
    #[test]
    fn headless_fallbacks_count_sync_and_record() {
        let dir = tmp("headless");
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = serve(lo, 2.0);
        let mut args = PlayArgs::new(server.local_addr(), "cam1");
        args.no_video = false;
        args.no_audio = false;
        args.duration = Some(2.6);
        args.record = Some(dir.0.join("rec"));
        let mut play = Play::bind(args).unwrap();
        play.status = false;
        play.env = OutputEnv::headless();
        let never = AtomicBool::new(false);
        let (sent, r) = std::thread::scope(|sc| {
            let p = sc.spawn(|| play.run(&AtomicBool::new(false)).unwrap());
            let sent = server.run(&never).unwrap();
            (sent, p.join().unwrap())
        });
        assert!(
            r.video_output.starts_with("none: no display"),
            "{}",
            r.video_output
        );
        assert!(r.audio_output.starts_with("clock: "), "{}", r.audio_output);
        let played = r.client.frames_played;
        assert!(
            played >= 50,
            "{played} frames played of {}",
            sent.source.frames
        );
        assert_eq!(r.frames_decoded + r.decode_skipped, played);
        assert_eq!(r.decode_errors, 0);
        // Audio drove the video: most decoded frames were shown against the audio clock, on
        // average well within a frame interval of it (bounds loose enough for a loaded CI
        // machine; here the mean is under 1 ms and the largest about 1-2 ms).
        let av = r.av;
        assert!(av.frames_shown + av.frames_late + av.frames_overflow <= r.frames_decoded);
        assert!(av.frames_synced * 5 >= r.frames_decoded * 4, "{av:?}");
        assert!(av.av_offset_mean_ms.abs() < 10.0, "{av:?}");
        assert!(av.av_offset_max_ms < 100.0, "{av:?}");
        assert_eq!(av.audio_frames_refused, 0, "{av:?}");
        // The recording holds every frame slot from t = 0 to the last frame played.
        let rec = r.record.unwrap();
        assert!(rec.video_frames >= played, "{rec:?}");
        assert!(rec.audio_frames > 0);
        let avi = rec.avi.unwrap();
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(&avi)
            .output()
            .expect("ffprobe");
        let n: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(n, rec.video_frames);
    }

    /// The stop flag (what Ctrl-C sets) ends the loop and the recording is finished: the AVI
    /// has its index and the WAV its sizes.
    #[test]
    fn stop_flag_finishes_the_recording() {
        let dir = tmp("stop");
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = serve(lo, 30.0);
        let mut args = PlayArgs::new(server.local_addr(), "cam1");
        args.record = Some(dir.0.join("rec"));
        let mut play = Play::bind(args).unwrap();
        play.status = false;
        play.env = OutputEnv::headless();
        let stop_server = AtomicBool::new(false);
        let stop_play = AtomicBool::new(false);
        let r = std::thread::scope(|sc| {
            let s = sc.spawn(|| server.run(&stop_server).unwrap());
            let p = sc.spawn(|| play.run(&stop_play).unwrap());
            // Stop once the AVI has grown on disk, which its first header checkpoint (after
            // 2 s of video) guarantees; bounded at 20 s.
            let avi = dir.0.join("rec.avi");
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::fs::metadata(&avi).map_or(0, |m| m.len()) < 100_000 {
                assert!(Instant::now() < deadline, "nothing recorded");
                std::thread::sleep(Duration::from_millis(20));
            }
            stop_play.store(true, Ordering::Relaxed);
            let r = p.join().unwrap();
            stop_server.store(true, Ordering::Relaxed);
            s.join().unwrap();
            r
        });
        assert_eq!(
            (r.video_output.as_str(), r.audio_output.as_str()),
            ("off", "off")
        );
        let rec = r.record.unwrap();
        assert!(rec.video_frames > 0 && rec.audio_frames > 0, "{rec:?}");
        let bytes = std::fs::read(dir.0.join("rec.avi")).unwrap();
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize,
            bytes.len() - 8
        );
        let idx = bytes.len() - 8 - 16 * rec.video_frames as usize;
        assert_eq!(&bytes[idx..idx + 4], b"idx1");
        let wav = hound::WavReader::open(dir.0.join("rec.wav")).unwrap();
        assert_eq!(u64::from(wav.duration()), rec.audio_frames);
    }
}
