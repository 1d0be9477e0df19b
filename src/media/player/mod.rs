//! The player's media side: decode, A/V sync, window, sound and recorder, on their own
//! threads, fed with the viewer's events.
//!
//! The network thread (the `play` role's event loop) hands each [`ViewerEvent`] to
//! [`Player::handle`], which only routes it into bounded queues and never blocks: a full
//! queue drops its oldest item (counted) instead. Threads:
//!
//! - `decoder` ([`decode`]): decodes only what is used, with turbojpeg: with a window, each
//!   frame that will be shown, straight to BGR at the window's size (DCT scaling); without
//!   one, no pixels: each frame's JPEG is checked (entropy-decoded in full) and counted.
//! - `presenter` ([`present`]): the OpenCV window, the sound output (cpal, or a
//!   [`ClockSink`](crate::media::ClockSink) that keeps time without a device) and
//!   [`AvSync`](crate::media::avsync::AvSync). The viewer's jitter buffer has already released
//!   each frame and audio block at its playout instant (dropping what was too late); the
//!   presenter plays the audio and shows each frame when the audio clock reaches it. It
//!   reaches the network loop only through the quit flag and a [`mio::Waker`].
//! - `recorder` ([`record`]): `--record`'s Matroska writer.
//!
//! Recording never decodes: the recorder writes the JPEG bytes as received.
//!
//! Outputs degrade instead of failing: with no display the video is checked and counted but
//! not shown; with no sound device a clock sink keeps the audio clock by arithmetic, so sync
//! (and its statistics) still work. Each is said once, as one warning line.

mod decode;
mod present;
pub mod queue;
mod record;

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use bytes::Bytes;
use serde::Serialize;

use crate::media::avsync::AvStats;
use crate::media::recorder::{RecordError, RecordSummary, Recorder};
use crate::proto::viewer::ViewerEvent;
use decode::{DecodeOutcome, Decoded};
pub use present::LiveStats;
use present::{PresentMsg, PresentOutcome, Shared};
use queue::DropOldest;
use record::{RecordItem, RecordOutcome};

/// Frames waiting for the decoder at most.
const DECODE_QUEUE: usize = 8;
/// Decoded frames waiting for the presenter at most.
const PRESENT_QUEUE: usize = 4;
/// Audio blocks and notes waiting for the presenter at most (over a second of 5 ms blocks).
const AUDIO_QUEUE: usize = 256;
/// Items waiting for the recorder at most (about 4 s of 30 fps video and 5 ms audio blocks).
const RECORD_QUEUE: usize = 1024;

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

/// What a [`Player`] does.
#[derive(Debug, Clone)]
pub struct PlayerConfig {
    /// Window title (the stream name).
    pub title: String,
    /// Open a video window.
    pub video: bool,
    /// Decode the frames (false: count them only).
    pub decode: bool,
    /// Play the audio (false: video plays at the jitter buffer's pace).
    pub audio: bool,
    /// Keep each decoded frame's pts and wall-clock time.
    pub frame_times: bool,
    /// Keep CRC32s of the JPEGs and audio bytes played (tests).
    pub checksums: bool,
    /// What outputs may be used.
    pub env: OutputEnv,
}

/// Items a [`Player`] dropped because a thread was behind (its queue was full).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlayerDrops {
    /// Audio blocks not played.
    pub audio_blocks: u64,
    /// Frames or audio blocks not recorded.
    pub record_items: u64,
}

/// What a [`Player`] reports when finished.
#[derive(Debug)]
pub struct PlayerReport {
    /// Frames decoded by turbojpeg: with a window, decoded to pixels; without one, checked
    /// (entropy-decoded in full, no pixels made; see [`decode`]).
    pub frames_decoded: u64,
    /// (pts, µs since the Unix epoch) of each decoded frame, with `frame_times`.
    pub frame_times: Vec<(u64, u64)>,
    /// (pts, µs since the Unix epoch) of each frame at its playout time (when the jitter
    /// buffer released it, before decoding), with `frame_times`.
    pub playout_times: Vec<(u64, u64)>,
    /// Frames that failed to decode.
    pub decode_errors: u64,
    /// Frames not decoded because the decoder was behind (a newer frame was already due, or
    /// its queue was full) or missing.
    pub decode_skipped: u64,
    /// Audio sample frames received (concealment excluded).
    pub audio_frames: u64,
    /// Where the video went: "window", "none: ..." (why), or "off".
    pub video_output: String,
    /// Where the audio went: "device NAME", "clock: ...", "none" or "off".
    pub audio_output: String,
    /// A/V sync figures.
    pub av: AvStats,
    /// Times the audio output ran dry.
    pub audio_underruns: u64,
    /// What was recorded.
    pub record: Option<RecordSummary>,
    /// The error that stopped the recording, if one did.
    pub record_error: Option<RecordError>,
    /// Per-frame (frame id, CRC32 of the JPEG) played, with `checksums`.
    pub frame_crcs: Vec<(u32, u32)>,
    /// CRC32 of all audio bytes played (concealment excluded), with `checksums`.
    pub audio_crc: Option<u32>,
    /// Items dropped because a thread was behind.
    pub drops: PlayerDrops,
}

/// The player's media threads and the queues that feed them (see the module docs).
pub struct Player {
    cfg: PlayerConfig,
    to_decoder: Option<DropOldest<(u64, Bytes)>>,
    decoder: Option<JoinHandle<DecodeOutcome>>,
    to_presenter: DropOldest<PresentMsg>,
    presenter: JoinHandle<PresentOutcome>,
    to_recorder: Option<DropOldest<RecordItem>>,
    recorder: Option<JoinHandle<RecordOutcome>>,
    shared: Arc<Shared>,
    audio_frames: u64,
    frame_crcs: Vec<(u32, u32)>,
    playout_times: Vec<(u64, u64)>,
    audio_hasher: crc32fast::Hasher,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Interleaved s16le bytes to samples in `out` (zeros for a `concealed` block).
fn pcm_from_le(bytes: &[u8], concealed: bool, out: &mut Vec<i16>) {
    out.clear();
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]])),
    );
    if concealed {
        out.fill(0);
    }
}

impl Player {
    /// Starts the threads: a decoder (when `cfg.decode`), the presenter, and a recorder when
    /// given one. `waker` wakes the network loop when the window's quit key is pressed.
    ///
    /// # Errors
    /// A thread could not be started.
    pub fn start(
        cfg: PlayerConfig,
        recorder: Option<Recorder>,
        waker: Arc<mio::Waker>,
    ) -> std::io::Result<Player> {
        let shared = Arc::new(Shared::default());
        let (spare_tx, spare_rx) = crossbeam_channel::bounded::<Vec<u8>>(PRESENT_QUEUE);
        let (decoded_tx, decoded_rx) = DropOldest::<Decoded>::new(PRESENT_QUEUE);
        let (target_tx, target_rx) = crossbeam_channel::bounded(1);
        let (to_decoder, decoder) = if cfg.decode {
            let (tx, rx) = DropOldest::new(DECODE_QUEUE);
            let h = decode::spawn(
                rx,
                decoded_tx,
                spare_rx,
                target_rx,
                shared.clone(),
                cfg.frame_times,
            )?;
            (Some(tx), Some(h))
        } else {
            drop(decoded_tx);
            (None, None)
        };
        let (to_presenter, msgs) = DropOldest::new(AUDIO_QUEUE);
        let presenter = present::spawn(
            cfg.clone(),
            msgs,
            decoded_rx,
            spare_tx,
            target_tx,
            shared.clone(),
            waker,
        )?;
        let (to_recorder, recorder) = match recorder {
            Some(r) => {
                let (tx, rx) = DropOldest::new(RECORD_QUEUE);
                (Some(tx), Some(record::spawn(r, rx)?))
            }
            None => (None, None),
        };
        Ok(Player {
            cfg,
            to_decoder,
            decoder,
            to_presenter,
            presenter,
            to_recorder,
            recorder,
            shared,
            audio_frames: 0,
            frame_crcs: Vec::new(),
            playout_times: Vec::new(),
            audio_hasher: crc32fast::Hasher::new(),
        })
    }

    /// Routes one of the viewer's events to the media threads. Never blocks: a full queue
    /// drops its oldest item. [`ViewerEvent::Rejected`], [`ViewerEvent::FrameDropped`],
    /// [`ViewerEvent::LatencyRaised`] and [`ViewerEvent::Ended`] are the caller's to handle.
    pub fn handle(&mut self, event: ViewerEvent) {
        match event {
            ViewerEvent::Frame(f) => {
                if self.cfg.checksums {
                    self.frame_crcs.push((f.frame_id, crc32fast::hash(&f.jpeg)));
                }
                if self.cfg.frame_times {
                    self.playout_times
                        .push((f.pts, crate::media::clock::unix_micros()));
                }
                if let Some(r) = &self.to_recorder {
                    r.push(RecordItem::Video {
                        pts: f.pts,
                        width: f.width,
                        height: f.height,
                        jpeg: f.jpeg.clone(),
                    });
                }
                if let Some(d) = &self.to_decoder {
                    d.push((f.pts, f.jpeg));
                }
            }
            ViewerEvent::Audio(a) => {
                if !a.concealed {
                    let frame_bytes = 2 * usize::from(a.channels.max(1));
                    self.audio_frames += (a.samples.len() / frame_bytes) as u64;
                    if self.cfg.checksums {
                        self.audio_hasher.update(&a.samples);
                    }
                }
                if let Some(r) = &self.to_recorder {
                    r.push(RecordItem::Audio(a.clone()));
                }
                if self.cfg.audio {
                    self.to_presenter.push(PresentMsg::Audio(a));
                }
            }
            ViewerEvent::Description(d) => {
                let (num, den) = (u32::from(d.fps_num), u32::from(d.fps_den));
                self.to_presenter.push(PresentMsg::FrameRate(num, den));
                if let Some(r) = &self.to_recorder {
                    r.push(RecordItem::Describe(d));
                }
            }
            ViewerEvent::FrameDropped { .. }
            | ViewerEvent::Rejected(_)
            | ViewerEvent::LatencyRaised { .. }
            | ViewerEvent::Ended => {}
        }
    }

    /// True once the window's quit key (`q`, Esc) was pressed or the window closed.
    pub fn quit_requested(&self) -> bool {
        self.shared.quit.load(Ordering::Relaxed)
    }

    /// A/V figures so far (for a live status line).
    pub fn live(&self) -> LiveStats {
        self.shared.live.lock().map(|l| *l).unwrap_or_default()
    }

    /// Stops the threads after the decoder and the recorder have taken what was queued (the
    /// presenter stops at once), closes the window and the sound output, finishes the
    /// recording, and reports.
    pub fn finish(self) -> PlayerReport {
        let Player {
            cfg,
            to_decoder,
            decoder,
            to_presenter,
            presenter,
            to_recorder,
            recorder,
            audio_frames,
            frame_crcs,
            playout_times,
            audio_hasher,
            ..
        } = self;
        let skipped_queue = to_decoder.as_ref().map_or(0, DropOldest::dropped);
        drop(to_decoder);
        let dec = decoder.and_then(|h| h.join().ok()).unwrap_or_default();
        let audio_dropped = to_presenter.dropped();
        drop(to_presenter);
        let pres = presenter.join().unwrap_or_default();
        let record_dropped = to_recorder.as_ref().map_or(0, DropOldest::dropped);
        drop(to_recorder);
        let rec = recorder.and_then(|h| h.join().ok()).unwrap_or_default();
        let mut av = pres.live.av;
        av.frames_overflow += dec.overflow;
        PlayerReport {
            frames_decoded: dec.decoded,
            frame_times: dec.frame_times,
            playout_times,
            decode_errors: dec.errors,
            decode_skipped: skipped_queue + dec.skipped + dec.superseded,
            audio_frames,
            video_output: pres.video_output,
            audio_output: pres.audio_output,
            av,
            audio_underruns: pres.live.audio_underruns,
            record: rec.summary,
            record_error: rec.error,
            frame_crcs,
            audio_crc: cfg.checksums.then(|| audio_hasher.finalize()),
            drops: PlayerDrops {
                audio_blocks: audio_dropped,
                record_items: record_dropped,
            },
        }
    }
}
