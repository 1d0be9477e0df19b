//! Recording what a player receives: `PATH.mkv`, Matroska with an MJPEG track (the received
//! JPEG bytes, unchanged) and a 16-bit PCM track, every frame and audio block with its own
//! timestamp, written by libavformat's muxer (`mkv`); ffplay, VLC and ffprobe open it.
//!
//! # Timeline
//!
//! The file starts at `t = 0`, the earlier of the first video frame's and the first audio
//! block's timestamp; each frame then keeps its own time, so a variable frame rate (a
//! browser's recording, a source that paused) is recorded as it played, with no frame
//! repeated or lost. Audio is kept continuous: a gap is filled with silence and concealed
//! blocks are silence. A slow creep between the audio's timestamps and its sample count (an
//! audio clock that does not match the stream's: tens to hundreds of ppm) is no gap: it is
//! followed by resampling, as the player does
//! ([`DriftEstimator`](crate::media::avsync::DriftEstimator),
//! [`StreamResampler`](crate::media::resample::StreamResampler)), never by inserting or
//! dropping samples, and counted in [`RecordSummary::audio_drift_corrections`]; with matching
//! clocks the samples are written bit for bit. A jump of more than [`MAX_GAP`] either way (a
//! restarted source) is not kept: the recording continues right after what was written
//! (counted in [`RecordSummary::rebases`]). A frame at or before the previous frame's time,
//! or audio overlapping what was written, is skipped and counted.
//!
//! Media is held back (at most [`HOLD`] of it) until both flows have started, so `t = 0` and
//! both tracks are known before the header is written; the stream's description gives the
//! tracks when one flow has not started by then.
//!
//! # Killed mid-way
//!
//! Clusters close every `CLUSTER_MS` and are flushed to the file at once, so a
//! recorder killed with SIGKILL leaves a file that plays up to its last cluster. Without the
//! `ffmpeg` feature there is no muxer and [`Recorder::create`] says so.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::proto::wire::{CLOCK_RATE, Description};
use audio::AudioTimeline;

mod audio;
#[cfg(feature = "ffmpeg")]
mod mkv;
#[cfg(all(test, feature = "ffmpeg"))]
mod tests;

#[cfg(feature = "ffmpeg")]
pub use mkv::CLUSTER_MS;
#[cfg(feature = "ffmpeg")]
use mkv::{MkvWriter, Tracks};

/// Jumps longer than this are not kept in the recording (see the module docs).
pub const MAX_GAP: Duration = Duration::from_secs(10);

/// Most media held back while waiting for the second flow to start (by timestamp span).
pub const HOLD: Duration = Duration::from_secs(1);

/// Most items held back while waiting for the second flow.
const HOLD_ITEMS: usize = 512;

/// Errors from a [`Recorder`].
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The muxer failed.
    #[error("writing {path} failed: {message}")]
    Mux {
        /// The file.
        path: PathBuf,
        /// What FFmpeg said.
        message: String,
    },
    /// This build has no muxer.
    #[error(
        "cannot record to {path}: this framecast was built without the `ffmpeg` feature (FFmpeg's libraries write the Matroska file)"
    )]
    Unsupported {
        /// The file.
        path: PathBuf,
    },
}

/// What a recording holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecordSummary {
    /// The Matroska file.
    pub file: Option<PathBuf>,
    /// Frames written, each at its own time.
    pub video_frames: u64,
    /// Frames not written: at or before the previous frame's time.
    pub video_skipped: u64,
    /// Time of the last frame written, seconds from the start of the recording.
    pub last_frame_s: f64,
    /// Audio sample frames written, silence included.
    pub audio_frames: u64,
    /// Of those, silence: gaps and concealed blocks.
    pub audio_silence_frames: u64,
    /// Audio sample frames not written: overlapping, a changed format, or no audio track.
    pub audio_skipped: u64,
    /// Jumps of more than [`MAX_GAP`] that were not kept.
    pub rebases: u64,
    /// Times the audio's drift correction (its resampling ratio) changed: 0 unless the audio
    /// timestamps and sample count disagree by more than rounding.
    pub audio_drift_corrections: u64,
}

enum Item {
    Video {
        pts: u64,
        width: u16,
        height: u16,
        jpeg: Bytes,
    },
    Audio {
        pts: u64,
        rate: u32,
        channels: u16,
        samples: Vec<i16>,
        concealed: bool,
    },
}

impl Item {
    fn pts(&self) -> u64 {
        match self {
            Item::Video { pts, .. } | Item::Audio { pts, .. } => *pts,
        }
    }
}

#[cfg(not(feature = "ffmpeg"))]
struct MkvWriter;

/// Writes a received stream to `PATH.mkv` (see the module docs).
///
/// Feed it frames and audio blocks in the order the jitter buffer releases them, then call
/// [`finish`](Self::finish); dropping it finishes too (errors are then only logged).
pub struct Recorder {
    base: PathBuf,
    path: PathBuf,
    description: Option<Description>,
    pending: VecDeque<Item>,
    started: bool,
    /// Subtracted from a pts to give its time in the file (ticks).
    offset: i128,
    last_video: Option<i128>,
    /// The audio written so far (from its first block), and the audio track's format.
    audio: Option<AudioTimeline>,
    audio_format: Option<(u32, u16)>,
    mkv: Option<MkvWriter>,
    summary: RecordSummary,
    finished: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// `base` with `ext` appended (`out` -> `out.mkv`; `out.x` -> `out.x.mkv`).
fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Ticks (90 kHz) in `d`.
fn ticks(d: Duration) -> i128 {
    d.as_nanos() as i128 * i128::from(CLOCK_RATE) / 1_000_000_000
}

impl Recorder {
    /// Starts a recording at `base`: creates `base.mkv` now (so a bad path fails at once);
    /// its header is written once the tracks are known.
    pub fn create(base: impl Into<PathBuf>) -> Result<Self, RecordError> {
        let base = base.into();
        let path = with_ext(&base, "mkv");
        if cfg!(not(feature = "ffmpeg")) {
            return Err(RecordError::Unsupported { path });
        }
        std::fs::File::create(&path).map_err(|source| RecordError::Create {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            base,
            summary: RecordSummary {
                file: Some(path.clone()),
                ..RecordSummary::default()
            },
            path,
            description: None,
            pending: VecDeque::new(),
            started: false,
            offset: 0,
            last_video: None,
            audio: None,
            audio_format: None,
            mkv: None,
            finished: false,
        })
    }

    /// The path the file is named after.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// What was written so far.
    pub fn summary(&self) -> &RecordSummary {
        &self.summary
    }

    /// Tells the recorder the stream's description (its video size and audio format, used
    /// for a track whose flow has not started when the header is written).
    pub fn describe(&mut self, d: &Description) -> Result<(), RecordError> {
        self.description = Some(d.clone());
        self.maybe_start()
    }

    /// Records a received frame (its JPEG bytes are written unchanged).
    pub fn video(
        &mut self,
        pts: u64,
        width: u16,
        height: u16,
        jpeg: &Bytes,
    ) -> Result<(), RecordError> {
        if self.finished {
            return Ok(());
        }
        let item = Item::Video {
            pts,
            width,
            height,
            jpeg: jpeg.clone(),
        };
        if self.started {
            self.write(item)
        } else {
            self.hold(item)
        }
    }

    /// Records an audio block: interleaved s16 `samples` at `rate` Hz, `channels` channels,
    /// first frame at `pts`; a `concealed` block is written as silence. A format outside
    /// 1..=768000 Hz or 1..=32 channels is skipped.
    pub fn audio(
        &mut self,
        pts: u64,
        rate: u32,
        channels: u16,
        samples: &[i16],
        concealed: bool,
    ) -> Result<(), RecordError> {
        if self.finished {
            return Ok(());
        }
        if !(1..=768_000).contains(&rate) || !(1..=32).contains(&channels) {
            // Not a format a recording of ours holds (and a network could claim anything).
            self.summary.audio_skipped += (samples.len() / usize::from(channels.max(1))) as u64;
            return Ok(());
        }
        let item = Item::Audio {
            pts,
            rate,
            channels,
            samples: samples.to_vec(),
            concealed,
        };
        if self.started {
            self.write(item)
        } else {
            self.hold(item)
        }
    }

    fn hold(&mut self, item: Item) -> Result<(), RecordError> {
        self.pending.push_back(item);
        self.maybe_start()
    }

    fn maybe_start(&mut self) -> Result<(), RecordError> {
        if self.started || self.pending.is_empty() {
            return Ok(());
        }
        let video = self.pending.iter().any(|i| matches!(i, Item::Video { .. }));
        let audio = self.pending.iter().any(|i| matches!(i, Item::Audio { .. }));
        let no_audio = self.description.as_ref().is_some_and(|d| d.audio.is_none());
        let both = video && (audio || no_audio);
        let (lo, hi) = self.pending.iter().fold((u64::MAX, 0), |(lo, hi), i| {
            (lo.min(i.pts()), hi.max(i.pts()))
        });
        let span = i128::from(hi - lo);
        if both || span >= ticks(HOLD) || self.pending.len() >= HOLD_ITEMS {
            self.start()
        } else {
            Ok(())
        }
    }

    #[cfg(feature = "ffmpeg")]
    fn mux_err(&self) -> impl FnOnce(String) -> RecordError + '_ {
        move |message| RecordError::Mux {
            path: self.path.clone(),
            message,
        }
    }

    /// Fixes `t = 0`, writes the header for the tracks known, then what was held.
    fn start(&mut self) -> Result<(), RecordError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let Some(t0) = self.pending.iter().map(Item::pts).min() else {
            return Ok(());
        };
        self.offset = i128::from(t0);
        let video = self.pending.iter().find_map(|i| match i {
            Item::Video { width, height, .. } => Some((*width, *height)),
            _ => None,
        });
        let audio = self.pending.iter().find_map(|i| match i {
            Item::Audio { rate, channels, .. } => Some((*rate, *channels)),
            _ => None,
        });
        let d = self.description.as_ref();
        let video = video.or_else(|| d.map(|d| (d.width, d.height)));
        let audio = audio.or_else(|| {
            d.and_then(|d| d.audio)
                .map(|a| (a.sample_rate, u16::from(a.channels)))
        });
        self.audio_format = audio;
        self.open(video.unwrap_or((16, 16)), audio)?;
        while let Some(item) = self.pending.pop_front() {
            self.write(item)?;
        }
        Ok(())
    }

    #[cfg(feature = "ffmpeg")]
    fn open(
        &mut self,
        (width, height): (u16, u16),
        audio: Option<(u32, u16)>,
    ) -> Result<(), RecordError> {
        let tracks = Tracks {
            width,
            height,
            audio,
        };
        let w = MkvWriter::create(&self.path, tracks).map_err(self.mux_err())?;
        self.mkv = Some(w);
        Ok(())
    }

    #[cfg(not(feature = "ffmpeg"))]
    fn open(&mut self, _: (u16, u16), _: Option<(u32, u16)>) -> Result<(), RecordError> {
        Err(RecordError::Unsupported {
            path: self.path.clone(),
        })
    }

    /// Moves the timeline so that `t` (a time past a jump) lands at `to`.
    fn rebase(&mut self, t: i128, to: i128) {
        self.offset += t - to;
        self.summary.rebases += 1;
    }

    fn write(&mut self, item: Item) -> Result<(), RecordError> {
        match item {
            Item::Video { pts, jpeg, .. } => self.write_video(pts, &jpeg),
            Item::Audio {
                pts,
                rate,
                channels,
                samples,
                concealed,
            } => self.write_audio(pts, rate, channels, &samples, concealed),
        }
    }

    fn write_video(&mut self, pts: u64, jpeg: &Bytes) -> Result<(), RecordError> {
        let mut t = i128::from(pts) - self.offset;
        let gap = ticks(MAX_GAP);
        let reference = self
            .last_video
            .or(self.audio.as_ref().map(AudioTimeline::end));
        if let Some(r) = reference {
            if t > r + gap || t < r - gap {
                // A restarted source: continue one 30 fps frame after what was written.
                let to = r + i128::from(CLOCK_RATE) / 30;
                self.rebase(t, to);
                t = to;
            }
        }
        if t < 0 || self.last_video.is_some_and(|l| t <= l) {
            self.summary.video_skipped += 1;
            return Ok(());
        }
        self.put_video(t, jpeg)?;
        self.last_video = Some(t);
        self.summary.video_frames += 1;
        self.summary.last_frame_s = t as f64 / CLOCK_RATE as f64;
        Ok(())
    }

    fn write_audio(
        &mut self,
        pts: u64,
        rate: u32,
        channels: u16,
        samples: &[i16],
        concealed: bool,
    ) -> Result<(), RecordError> {
        let frames = samples.len() / usize::from(channels.max(1));
        if self.audio_format != Some((rate, channels)) {
            // No audio track, or another format than the track's.
            self.summary.audio_skipped += frames as u64;
            return Ok(());
        }
        let mut t = i128::from(pts) - self.offset;
        let gap = ticks(MAX_GAP);
        let reference = self
            .audio
            .as_ref()
            .map(AudioTimeline::end)
            .or(self.last_video);
        if let Some(r) = reference {
            if t > r + gap || t < r - gap {
                self.rebase(t, r);
                t = r;
            }
        }
        if t < 0 {
            self.summary.audio_skipped += frames as u64;
            return Ok(());
        }
        let audio = self
            .audio
            .get_or_insert_with(|| AudioTimeline::new(rate, channels, t));
        for p in audio.place(t, samples, concealed, &mut self.summary) {
            self.put_audio(p.t, &p.samples, p.dur)?;
        }
        Ok(())
    }

    #[cfg(feature = "ffmpeg")]
    fn put_video(&mut self, t: i128, jpeg: &[u8]) -> Result<(), RecordError> {
        let r = match &mut self.mkv {
            Some(w) => w.video(t as i64, jpeg),
            None => return Ok(()),
        };
        r.map_err(self.mux_err())
    }

    #[cfg(feature = "ffmpeg")]
    fn put_audio(&mut self, t: i128, samples: &[i16], dur: i128) -> Result<(), RecordError> {
        let r = match &mut self.mkv {
            Some(w) => w.audio(t as i64, samples, dur as i64),
            None => return Ok(()),
        };
        r.map_err(self.mux_err())
    }

    #[cfg(not(feature = "ffmpeg"))]
    fn put_video(&mut self, _: i128, _: &[u8]) -> Result<(), RecordError> {
        Ok(())
    }

    #[cfg(not(feature = "ffmpeg"))]
    fn put_audio(&mut self, _: i128, _: &[i16], _: i128) -> Result<(), RecordError> {
        Ok(())
    }

    /// Writes what is still held, then the index and final sizes, and closes the file.
    /// Idempotent; also run on drop.
    pub fn finish(&mut self) -> Result<RecordSummary, RecordError> {
        if self.finished {
            return Ok(self.summary.clone());
        }
        let held = self.start();
        self.finished = true;
        let tail = self
            .audio
            .as_mut()
            .and_then(|a| a.finish(&mut self.summary));
        let tail = match tail {
            Some(p) => self.put_audio(p.t, &p.samples, p.dur),
            None => Ok(()),
        };
        #[cfg(feature = "ffmpeg")]
        let closed = self.mkv.take().map(|w| w.finish().map_err(self.mux_err()));
        #[cfg(not(feature = "ffmpeg"))]
        let closed: Option<Result<(), RecordError>> = self.mkv.take().map(|_| Ok(()));
        held?;
        tail?;
        if let Some(r) = closed {
            r?;
        }
        Ok(self.summary.clone())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = self.finish() {
                log::error!("record: finishing {} failed: {e}", self.path.display());
            }
        }
    }
}
