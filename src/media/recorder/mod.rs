//! Recording what a player receives: `PATH.avi` (MJPEG in AVI, the received JPEG bytes kept
//! unchanged) and `PATH.wav` (16-bit PCM, via hound), on one timeline.
//!
//! # Timeline
//!
//! Both files start at `t = 0`, the earlier of the first video frame's and the first audio
//! block's timestamp: the later-starting one is padded (the first frame repeated, or silence).
//! The AVI has one frame slot per frame interval of the stream's rate; a frame goes into the
//! slot its pts falls in (rounded), and a slot with no frame (a frame dropped upstream)
//! repeats the previous frame, so the video's duration and timestamps stay right. In the WAV,
//! a block goes where its pts says; a gap is filled with silence and concealed blocks are
//! silence. A slow creep between the timestamps and the sample count (an audio clock that
//! does not match the stream's: tens to hundreds of ppm) is not a gap: it is followed by
//! resampling, as the player does ([`DriftEstimator`](crate::media::avsync::DriftEstimator)
//! and [`StreamResampler`](crate::media::resample::StreamResampler)), never by inserting or
//! dropping samples; with matching clocks the samples are written bit for bit. A jump of more than [`MAX_GAP`] (a paused or restarted source) is not filled: the
//! flow continues right after what was written (counted in [`RecordSummary::rebases`]).
//!
//! Media is held back (at most [`HOLD`] of it) until both flows have started, so `t = 0` is
//! known before anything is written; a stream whose description says it has no audio starts
//! at once.
//!
//! # The AVI
//!
//! Plain AVI 1.0 written byte by byte: `RIFF 'AVI '` { `LIST 'hdrl'` { `avih`, `LIST 'strl'`
//! { `strh` (`vids`/`MJPG`), `strf` (BITMAPINFOHEADER, `MJPG`) } }, `LIST 'movi'` { `00dc`
//! chunks }, `idx1` }. The headers are written first with placeholder counts and patched by
//! [`Recorder::finish`] (also run on drop, e.g. after Ctrl-C), which also appends the `idx1`
//! index. Every few seconds the headers are also patched in place, so even a killed process
//! leaves a file players read sequentially, and the WAV header is updated likewise. AVI 1.0
//! sizes are 32-bit: at 4 GiB video recording stops, with a warning (OpenDML is not written).
//!
//! # Layout
//!
//! `avi` (the AVI writer and the video slots), `wav` (the WAV track); the shared timeline,
//! holding back and finishing are here in [`Recorder`].

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::proto::wire::CLOCK_RATE;

mod avi;
#[cfg(test)]
mod tests;
mod wav;

use avi::AviWriter;
use wav::WavOut;

/// Gaps up to this long are filled (repeated frames, at most 600 slots; silence); longer ones
/// are jumped over.
pub const MAX_GAP: Duration = Duration::from_secs(10);

/// Most media held back while waiting for the second flow to start (by timestamp span).
pub const HOLD: Duration = Duration::from_secs(1);

/// Most frame slots filled for one gap, whatever the frame rate claims.
const MAX_GAP_SLOTS: i128 = 600;

/// Most items held back while waiting for the second flow.
const HOLD_ITEMS: usize = 512;

/// Largest AVI 1.0 file (its RIFF size is a 32-bit field).
pub const AVI_MAX_BYTES: u64 = u32::MAX as u64;

/// Largest WAV data chunk written (its size is a 32-bit field; hound counts in `u32`).
const WAV_MAX_BYTES: u64 = u32::MAX as u64 - 4096;

/// Header checkpoint interval, in media time.
const CHECKPOINT_SECS: u64 = 2;

/// Frame rate used when the stream never said its own.
const DEFAULT_FPS: (u32, u32) = (30, 1);

/// Errors from a [`Recorder`].
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the AVI failed.
    #[error("writing {path} failed: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the WAV failed.
    #[error("writing {path} failed: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: hound::Error,
    },
}

/// What a recording holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecordSummary {
    /// The video file, once created.
    pub avi: Option<PathBuf>,
    /// The audio file, once audio arrived.
    pub wav: Option<PathBuf>,
    /// Frame rate of the AVI (numerator, denominator).
    pub fps: (u32, u32),
    /// Frame slots written (frames received plus repeats).
    pub video_frames: u64,
    /// Of those, slots that repeat the previous frame (a frame missing or not yet started).
    pub video_repeats: u64,
    /// Frames not written: two in one slot, behind the timeline, or past the size limit.
    pub video_skipped: u64,
    /// Sample frames written to the WAV, silence included.
    pub audio_frames: u64,
    /// Of those, silence: padding, gaps and concealed blocks.
    pub audio_silence_frames: u64,
    /// Audio sample frames not written: overlapping, a changed format, or past the size limit.
    pub audio_skipped: u64,
    /// Jumps of more than [`MAX_GAP`] that were not filled.
    pub rebases: u64,
    /// Times the audio's drift correction (its resampling ratio) changed: 0 unless the audio
    /// timestamps and sample count disagree by more than jitter.
    pub audio_drift_corrections: u64,
    /// A file hit its size limit and stopped growing.
    pub truncated: bool,
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

/// Writes a received stream to `PATH.avi` and `PATH.wav` (see the module docs).
///
/// Feed it frames and audio blocks in the order the jitter buffer releases them, then call
/// [`finish`](Self::finish); dropping it finishes too (errors are then only logged).
pub struct Recorder {
    base: PathBuf,
    fps: Option<(u32, u32)>,
    has_audio: Option<bool>,
    pending: VecDeque<Item>,
    started: bool,
    t0: i128,
    avi: Option<AviWriter>,
    avi_path: PathBuf,
    /// pts (ticks) of video slot 0.
    video_anchor: i128,
    next_slot: u64,
    last_jpeg: Option<Bytes>,
    video_done: bool,
    wav: Option<WavOut>,
    wav_failed: bool,
    summary: RecordSummary,
    finished: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("base", &self.base)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// `base` with `ext` appended (`out` -> `out.avi`; `out.x` -> `out.x.avi`).
fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// `a * b / c` rounded to nearest, for non-negative `a`.
fn mul_div_round(a: i128, b: i128, c: i128) -> i128 {
    (2 * a * b + c) / (2 * c)
}

impl Recorder {
    /// Starts a recording at `base`: creates `base.avi` now (so a bad path fails at once);
    /// `base.wav` is created when the first audio arrives.
    pub fn create(base: impl Into<PathBuf>) -> Result<Self, RecordError> {
        Self::create_with_limit(base, AVI_MAX_BYTES)
    }

    /// [`create`](Self::create) with a smaller AVI size limit (tests).
    pub fn create_with_limit(
        base: impl Into<PathBuf>,
        max_avi_bytes: u64,
    ) -> Result<Self, RecordError> {
        let base = base.into();
        let avi_path = with_ext(&base, "avi");
        let avi =
            AviWriter::create(&avi_path, max_avi_bytes.min(AVI_MAX_BYTES)).map_err(|source| {
                RecordError::Create {
                    path: avi_path.clone(),
                    source,
                }
            })?;
        let summary = RecordSummary {
            avi: Some(avi_path.clone()),
            fps: DEFAULT_FPS,
            ..RecordSummary::default()
        };
        Ok(Self {
            base,
            fps: None,
            has_audio: None,
            pending: VecDeque::new(),
            started: false,
            t0: 0,
            avi: Some(avi),
            avi_path,
            video_anchor: 0,
            next_slot: 0,
            last_jpeg: None,
            video_done: false,
            wav: None,
            wav_failed: false,
            summary,
            finished: false,
        })
    }

    /// The path the files are named after.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// What was written so far.
    pub fn summary(&self) -> &RecordSummary {
        &self.summary
    }

    /// Tells the recorder the stream's frame rate (`num / den`) and whether it has audio (from
    /// its description). The first valid rate given is the AVI's; later changes are ignored.
    pub fn describe(
        &mut self,
        fps_num: u32,
        fps_den: u32,
        has_audio: bool,
    ) -> Result<(), RecordError> {
        if self.fps.is_none() && fps_num > 0 && fps_den > 0 && !self.started {
            self.fps = Some((fps_num, fps_den));
            self.summary.fps = (fps_num, fps_den);
            if let Some(avi) = &mut self.avi {
                avi.fps = (fps_num, fps_den);
            }
        }
        self.has_audio = Some(has_audio);
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
            // Not a format a WAV of ours holds (and a network could claim anything).
            self.summary.audio_skipped += (samples.len() / usize::from(channels.max(1))) as u64;
            return Ok(());
        }
        if self.started {
            return self.write_audio(pts, rate, channels, samples, concealed);
        }
        self.hold(Item::Audio {
            pts,
            rate,
            channels,
            samples: samples.to_vec(),
            concealed,
        })
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
        let both = video && (audio || self.has_audio == Some(false)) && self.fps.is_some();
        let (lo, hi) = self.pending.iter().fold((u64::MAX, 0), |(lo, hi), i| {
            (lo.min(i.pts()), hi.max(i.pts()))
        });
        let span = Duration::from_nanos(
            ((u128::from(hi - lo) * 1_000_000_000) / u128::from(CLOCK_RATE))
                .min(u128::from(u64::MAX)) as u64,
        );
        if both || span >= HOLD || self.pending.len() >= HOLD_ITEMS {
            self.start()
        } else {
            Ok(())
        }
    }

    /// Fixes `t = 0` and writes what was held.
    fn start(&mut self) -> Result<(), RecordError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let first = |video: bool| {
            self.pending
                .iter()
                .find(|i| matches!(i, Item::Video { .. }) == video)
                .map(Item::pts)
        };
        let t0 = match (first(true), first(false)) {
            (Some(v), Some(a)) => v.min(a),
            (Some(p), None) | (None, Some(p)) => p,
            (None, None) => return Ok(()),
        };
        self.t0 = i128::from(t0);
        self.video_anchor = self.t0;
        let fps = *self.fps.get_or_insert(DEFAULT_FPS);
        if let Some(avi) = &mut self.avi {
            avi.fps = fps;
        }
        while let Some(item) = self.pending.pop_front() {
            self.write(item)?;
        }
        Ok(())
    }

    fn write(&mut self, item: Item) -> Result<(), RecordError> {
        match item {
            Item::Video {
                pts,
                width,
                height,
                jpeg,
            } => self.write_video(pts, width, height, jpeg),
            Item::Audio {
                pts,
                rate,
                channels,
                samples,
                concealed,
            } => self.write_audio(pts, rate, channels, &samples, concealed),
        }
    }

    fn io_err(&self) -> impl FnOnce(io::Error) -> RecordError + '_ {
        move |source| RecordError::Io {
            path: self.avi_path.clone(),
            source,
        }
    }
    /// Writes what is still held, patches the headers, appends the AVI index and closes both
    /// files. Idempotent; also run on drop.
    pub fn finish(&mut self) -> Result<RecordSummary, RecordError> {
        if self.finished {
            return Ok(self.summary.clone());
        }
        let held = self.start();
        self.finished = true;
        let avi = self
            .avi
            .take()
            .map(|mut a| a.finish().map_err(self.io_err()));
        let wav = self.wav.take().map(|w| {
            let path = w.path;
            w.writer
                .finalize()
                .map_err(|source| RecordError::Wav { path, source })
        });
        held?;
        if let Some(r) = avi {
            r?;
        }
        if let Some(r) = wav {
            r?;
        }
        Ok(self.summary.clone())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = self.finish() {
                log::error!("record: finishing {} failed: {e}", self.base.display());
            }
        }
    }
}
