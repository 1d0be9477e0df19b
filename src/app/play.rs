//! `framecast play`: subscribes, reassembles and buffers on the network thread; decodes,
//! shows, plays and records on the media side.
//!
//! The event loop (the caller's thread; the main thread in the CLI) runs the [`Viewer`] (whose
//! jitter buffer releases each frame and audio block at its playout instant) and hands every
//! event to a [`Player`], which routes it to its own threads through bounded queues: the
//! loop never decodes, shows or writes to disk, and a slow window or disk cannot stall the
//! socket (a full queue drops its oldest item, counted). See [`crate::media::player`].

use super::keys::{KeyArgs, RefusalWatch, layer_seed, refuse_words, reject_words};
use crate::proto::secure::{Role, Secure, SecureEvent, SecureStats};
use crate::proto::wire::RejectReason;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::figures::{FigureMeter, StreamFigures};
use super::status::StatusLine;
use crate::driver::event_loop::{EventLoop, IoStats, LoopControl};
use crate::driver::udp::{BufferSizes, SOCKET_BUFFER, bind_udp, ephemeral_for};
use crate::media::avsync::AvStats;
pub use crate::media::player::OutputEnv;
use crate::media::player::{Player, PlayerConfig, PlayerDrops};
use crate::media::recorder::{RecordSummary, Recorder};
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
    /// statistics, for end-to-end latency measurements (without a window: when its check
    /// ended, see --no-video).
    #[arg(long)]
    pub frame_times: bool,
    /// Count frames without decoding or checking them (load tests with many viewers).
    #[arg(long)]
    pub no_decode: bool,
    /// Do not open a video window. Without a window (this, or no display) no pixels are made:
    /// each frame is checked instead, which finds a corrupt or truncated JPEG as a full
    /// decode does (header, then every scan entropy-decoded; the IDCT cut to 1/8, no colour
    /// conversion), and counted as decoded.
    #[arg(long)]
    pub no_video: bool,
    /// Do not play sound (video then plays at the jitter buffer's pace, not audio's).
    #[arg(long)]
    pub no_audio: bool,
    /// Record what is received to PATH.mkv (Matroska: the JPEGs as received, as MJPEG, and
    /// the PCM audio, each with its own timestamp).
    #[arg(long, value_name = "PATH")]
    pub record: Option<PathBuf>,
    /// Local address to bind (default: an ephemeral port).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Keys (proto-spec.md §8).
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Keep waiting when the stream goes silent without ending (by default `play` gives up
    /// after [`SILENCE_TIMEOUT`] and exits with [`EXIT_SILENT`]).
    #[arg(long)]
    pub wait: bool,
}

/// How long a stream that has started may stay silent, without saying it ended (§6.9),
/// before `play` gives up (unless `--wait`).
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// `play`'s exit code when the stream went silent without ending (the publisher crashed or
/// the network broke): distinct from errors (1).
pub const EXIT_SILENT: u8 = 3;

/// Why `play` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayEnd {
    /// The publisher ended the stream (§6.9) and everything before played.
    StreamEnded,
    /// `--duration` elapsed.
    Duration,
    /// Ctrl-C, or the window was closed.
    Stopped,
    /// The stream went silent for [`SILENCE_TIMEOUT`] without ending.
    Silent,
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
            keys: KeyArgs::default(),
            wait: false,
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
    /// Headline figures over the whole run, under the names the relay's and server's
    /// `/stats.json` and `/metrics` use.
    pub figures: StreamFigures,
    /// Protocol figures.
    pub client: ViewerStats,
    /// Frames decoded by turbojpeg: with a window, to pixels at the window's size; without
    /// one, checked (entropy-decoded in full, no pixels made; see `--no-video`).
    pub frames_decoded: u64,
    /// (pts, µs since the Unix epoch) of each decoded frame, with `--frame-times`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frame_times: Vec<(u64, u64)>,
    /// (pts, µs since the Unix epoch) of each frame at its playout time (released by the
    /// jitter buffer, before decoding), with `--frame-times`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub playout_times: Vec<(u64, u64)>,
    /// Frames that failed to decode.
    pub decode_errors: u64,
    /// Frames not decoded because the decoder was behind: a newer frame was already due
    /// (with a window), or its queue was full.
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
    /// Audio blocks and recorder items dropped because a media thread was behind.
    pub media_drops: PlayerDrops,
    /// Secure-layer figures (all 0 without keys).
    pub secure: SecureStats,
    /// Why playing stopped.
    pub end: PlayEnd,
}

/// A bound player.
pub struct Play {
    args: PlayArgs,
    lp: EventLoop<Secure<Viewer>>,
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

impl Play {
    /// Checks the options and binds the socket.
    pub fn bind(args: PlayArgs) -> anyhow::Result<Play> {
        super::check_name("stream", &args.stream)?;
        if args.latency == 0 || args.latency > 10_000 {
            anyhow::bail!("--latency {}: expected 1-10000 milliseconds", args.latency);
        }
        let keys = args.keys.load()?;
        let local = args.bind.unwrap_or_else(|| ephemeral_for(args.from));
        let (socket, buffers) = bind_udp(local, SOCKET_BUFFER).context("play")?;
        crate::driver::udp::warn_if_clamped(&buffers);
        let mut cfg = ViewerConfig::new(args.from, &args.stream);
        cfg.latency = Duration::from_millis(args.latency);
        cfg.max_kbps = args.max_kbps;
        cfg.nack = !args.no_nack;
        let mut node = Secure::new(Viewer::new(cfg), keys, layer_seed(None)?);
        node.connect(args.from, Role::View);
        let lp = EventLoop::new(socket, node)?;
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
        // The coder's tables now, not while the first frame to restore is due.
        crate::proto::fec::warm_up();
        let end = super::duration_arg("duration", self.args.duration)?.map(|d| Instant::now() + d);
        let recorder = match &self.args.record {
            Some(p) => Some(Recorder::create(p).context("--record")?),
            None => None,
        };
        let cfg = PlayerConfig {
            title: self.args.stream.clone(),
            video: !self.args.no_video,
            decode: !self.args.no_decode,
            audio: !self.args.no_audio,
            frame_times: self.args.frame_times,
            checksums: self.record_checksums,
            env: self.env.clone(),
        };
        let mut player = Player::start(cfg, recorder, self.lp.waker())
            .context("cannot start the player's threads")?;
        let mut status = StatusLine::new(self.status);
        let mut meter = FigureMeter::new(Instant::now());
        let stream = self.args.stream.clone();
        let latency = self.args.latency;
        let from = self.args.from;
        let auth = super::keys::auth_label(self.lp.node().is_keyed());
        let mut refusals = RefusalWatch::default();
        let mut failure: Option<String> = None;
        let wait = self.args.wait;
        let show = self.status;
        let mut why = PlayEnd::Stopped;
        // The last time media progressed (frames or audio blocks played or dropped), once
        // any came: keep-alive answers from a relay whose publisher died do not count.
        let mut heard: Option<(u64, Instant)> = None;
        let result = self.lp.run(stop, |client, now| {
            while let Some(e) = client.poll_secure_event() {
                if let SecureEvent::RefusedBy { peer, reason } = e {
                    log::info!(
                        "play: stream {stream:?}: {peer} refused it: {}; asking again",
                        refuse_words(reason)
                    );
                }
            }
            if let Some(reason) = client.refused_by(from) {
                let _ = refusals.refused(
                    now,
                    format!("play: stream {stream:?}: {from} refused it: {}", refuse_words(reason)),
                );
            }
            if let Some(why) = refusals.verdict(now) {
                failure = Some(why);
                return LoopControl::Stop;
            }
            while let Some(e) = client.poll_event() {
                match e {
                    ViewerEvent::Ended => {
                        if show {
                            eprintln!("play: stream {stream:?} ended");
                        }
                        why = PlayEnd::StreamEnded;
                        return LoopControl::Stop;
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
                        player.handle(ViewerEvent::Description(d));
                    }
                    ViewerEvent::Rejected(r @ RejectReason::AuthRequired) => {
                        let why = format!("play: stream {stream:?}: {from} refused it: {}", reject_words(r));
                        if refusals.refused(now, why.clone()) {
                            log::info!("{why}; asking again");
                        }
                    }
                    ViewerEvent::Rejected(r) => log::warn!("play: the server refused stream {stream:?}: {r:?}; asking again"),
                    ViewerEvent::LatencyRaised { from, to, need } => eprintln!(
                        "play: --latency {} ms is below what this stream needs (its frames take up to {:.1} ms to arrive whole): playing at {} ms",
                        from.as_millis(),
                        need.as_secs_f64() * 1000.0,
                        to.as_millis()
                    ),
                    e @ ViewerEvent::FrameDropped { .. } => {
                        log::debug!("play: {e:?}");
                        player.handle(e);
                    }
                    e => player.handle(e),
                }
            }
            if player.quit_requested() {
                return LoopControl::Stop;
            }
            let s = client.stats();
            let live = player.live();
            let av = live.av;
            let underruns = live.audio_underruns;
            let lost = s.video.lost + s.audio.lost;
            let detected = s.video.detected + s.audio.detected;
            status.tick(now, &[s.frames_played as f64, s.bytes as f64 * 8.0, av.frames_shown as f64], |r| {
                format!(
                    "play {stream} ({auth}) | {:.1} fps | shown {:.1} fps | {:.1} Mbit/s | loss {:.2}% | recovered {} | late {} | incomplete {} | rtt {:.2} ms | latency {latency} ms | jitter {:.2} ms",
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
                why = PlayEnd::Duration;
                return LoopControl::Stop;
            }
            let progress = s.frames_played + s.frames_late + s.frames_incomplete + s.audio_blocks;
            if progress > 0 && heard.is_none_or(|(n, _)| n != progress) {
                heard = Some((progress, now));
            }
            let silent_at = heard.filter(|_| !wait).map(|(_, t)| t + SILENCE_TIMEOUT);
            if silent_at.is_some_and(|t| now >= t) {
                eprintln!(
                    "play: stream {stream:?} went silent {} s ago without ending (the server stopped or the network broke); giving up (--wait keeps waiting)",
                    SILENCE_TIMEOUT.as_secs()
                );
                why = PlayEnd::Silent;
                return LoopControl::Stop;
            }
            let wake = [end, status.deadline(), silent_at].into_iter().flatten().min();
            LoopControl::Continue(wake)
        });
        status.finish();
        let bye = self.lp.node_mut().bye();
        if let Some(bye) = self.lp.node_mut().seal_now(Instant::now(), bye) {
            self.lp.send_now(&bye);
        }
        let media = player.finish();
        if let (Some(r), true) = (&media.record, self.status) {
            let rate = self.lp.node().description().and_then(|d| d.audio);
            let audio = match rate {
                Some(a) if r.audio_frames > 0 => format!(
                    " and {:.1} s of audio",
                    r.audio_frames as f64 / f64::from(a.sample_rate.max(1))
                ),
                _ => String::new(),
            };
            eprintln!(
                "play: recorded {} frames ({:.1} s){audio} to {}",
                r.video_frames,
                r.last_frame_s,
                r.file
                    .as_deref()
                    .map_or(String::new(), |p| p.display().to_string()),
            );
        }
        result.context("play: network loop failed")?;
        if let Some(why) = failure {
            anyhow::bail!("{why}");
        }
        let _ = self.lp.node_mut().poll_timeout();
        let client = self.lp.node().stats();
        let report = PlayReport {
            role: "play",
            figures: meter.sample(Instant::now(), &client, 1),
            local: self.local_addr().to_string(),
            stream: self.args.stream.clone(),
            client,
            frames_decoded: media.frames_decoded,
            frame_times: media.frame_times,
            playout_times: media.playout_times,
            decode_errors: media.decode_errors,
            decode_skipped: media.decode_skipped,
            audio_frames: media.audio_frames,
            video_output: media.video_output,
            audio_output: media.audio_output,
            av: media.av,
            audio_underruns: media.audio_underruns,
            record: media.record,
            io: self.lp.io_stats(),
            buffers: self.buffers,
            frame_crcs: media.frame_crcs,
            audio_crc: media.audio_crc,
            media_drops: media.drops,
            secure: self.lp.node().secure_stats().clone(),
            end: why,
        };
        if let Some(p) = &self.args.stats_json {
            super::write_stats_json(p, &report)?;
        }
        if let Some(e) = media.record_error {
            return Err(anyhow::Error::new(e).context("--record"));
        }
        Ok(report)
    }
}

#[cfg(all(test, feature = "ffmpeg"))]
mod tests {
    use super::*;
    use crate::app::serve::{Serve, ServeArgs};
    use std::sync::atomic::Ordering;

    /// A fresh directory for one test, removed when dropped.
    fn tmp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("framecast-play-{name}-"))
            .tempdir()
            .expect("a temporary directory")
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
    #[cfg(feature = "ffmpeg")]
    fn headless_fallbacks_count_sync_and_record() {
        let dir = tmp("headless");
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = serve(lo, 2.0);
        let mut args = PlayArgs::new(server.local_addr(), "cam1");
        args.no_video = false;
        args.no_audio = false;
        args.duration = Some(2.6);
        args.record = Some(dir.path().join("rec"));
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
        // The stream ended (§6.9) before --duration, and the recording holds every frame
        // played, each once.
        assert_eq!(r.end, PlayEnd::StreamEnded);
        let rec = r.record.unwrap();
        assert_eq!(rec.video_frames, played, "{rec:?}");
        assert!(rec.audio_frames > 0);
        let mkv = rec.file.unwrap();
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
            .arg(&mkv)
            .output()
            .expect("ffprobe");
        let text = String::from_utf8_lossy(&out.stdout);
        let n: Vec<u64> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(n[0], rec.video_frames, "{text}");
        assert_eq!(audio_frames_in(&mkv), rec.audio_frames);
    }

    /// Sample frames of stereo s16 audio in `path`'s audio track, as ffmpeg decodes it.
    #[cfg(feature = "ffmpeg")]
    fn audio_frames_in(path: &std::path::Path) -> u64 {
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-map", "0:a", "-f", "s16le", "-ac", "2", "-"])
            .output()
            .expect("ffmpeg");
        assert!(out.status.success());
        out.stdout.len() as u64 / 4
    }

    /// The stop flag (what Ctrl-C sets) ends the loop and the recording is finished: the
    /// Matroska file has its duration, every frame and every audio sample.
    #[test]
    #[cfg(feature = "ffmpeg")]
    fn stop_flag_finishes_the_recording() {
        let dir = tmp("stop");
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = serve(lo, 30.0);
        let mut args = PlayArgs::new(server.local_addr(), "cam1");
        args.record = Some(dir.path().join("rec"));
        let mut play = Play::bind(args).unwrap();
        play.status = false;
        play.env = OutputEnv::headless();
        let stop_server = AtomicBool::new(false);
        let stop_play = AtomicBool::new(false);
        let r = std::thread::scope(|sc| {
            let s = sc.spawn(|| server.run(&stop_server).unwrap());
            let p = sc.spawn(|| play.run(&stop_play).unwrap());
            // Stop once the file has grown on disk (clusters are flushed as they close);
            // bounded at 20 s.
            let mkv = dir.path().join("rec.mkv");
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::fs::metadata(&mkv).map_or(0, |m| m.len()) < 100_000 {
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
        assert_eq!(r.end, PlayEnd::Stopped);
        let mkv = dir.path().join("rec.mkv");
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                "v",
                "-show_entries",
                "stream=nb_read_frames:format=duration",
                "-of",
                "default=nw=1",
            ])
            .arg(&mkv)
            .output()
            .expect("ffprobe");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("nb_read_frames={}", rec.video_frames)),
            "{text}"
        );
        // The trailer was written: the file states its duration.
        assert!(!text.contains("duration=N/A"), "{text}");
        assert_eq!(audio_frames_in(&mkv), rec.audio_frames);
    }
}
