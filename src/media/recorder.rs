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
//! silence. A jump of more than [`MAX_GAP`] (a paused or restarted source) is not filled: the
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

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::proto::wire::CLOCK_RATE;

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

struct WavOut {
    writer: hound::WavWriter<BufWriter<File>>,
    path: PathBuf,
    rate: u32,
    channels: u16,
    /// pts (ticks) of sample frame 0.
    anchor: i128,
    written: u64,
    since_checkpoint: u64,
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

    fn write_video(
        &mut self,
        pts: u64,
        width: u16,
        height: u16,
        jpeg: Bytes,
    ) -> Result<(), RecordError> {
        if self.video_done || self.avi.is_none() {
            self.summary.video_skipped += 1;
            return Ok(());
        }
        let (num, den) = self.fps.unwrap_or(DEFAULT_FPS);
        let (num, den) = (i128::from(num), i128::from(den));
        let tick_den = den * i128::from(CLOCK_RATE);
        let max_gap_slots = (i128::from(MAX_GAP.as_secs() as u32) * num / den).min(MAX_GAP_SLOTS);
        let pts = i128::from(pts);
        let next = i128::from(self.next_slot);
        let mut slot = if pts >= self.video_anchor {
            mul_div_round(pts - self.video_anchor, num, tick_den)
        } else {
            -1 - mul_div_round(self.video_anchor - pts, num, tick_den)
        };
        let one_second_slots = num / den + 1;
        if slot - next > max_gap_slots || next - slot > one_second_slots {
            // A jump forward beyond MAX_GAP, or back by more than a second: a new timeline.
            self.summary.rebases += 1;
            log::warn!("record: video timestamps jumped; continuing the recording without a gap");
            self.video_anchor = pts - mul_div_round(next, tick_den, num);
            slot = next;
        }
        if slot < next {
            self.summary.video_skipped += 1;
            return Ok(());
        }
        let pad = self.last_jpeg.clone().unwrap_or_else(|| jpeg.clone());
        let mut s = next;
        while s < slot {
            if !self.put_frame(&pad, width, height)? {
                return Ok(());
            }
            self.summary.video_repeats += 1;
            s += 1;
        }
        if self.put_frame(&jpeg, width, height)? {
            self.last_jpeg = Some(jpeg);
        }
        Ok(())
    }

    /// Writes one slot; false once the size limit is reached.
    fn put_frame(&mut self, jpeg: &Bytes, width: u16, height: u16) -> Result<bool, RecordError> {
        let path = &self.avi_path;
        let io = |source: io::Error| RecordError::Io {
            path: path.clone(),
            source,
        };
        let Some(avi) = self.avi.as_mut() else {
            return Ok(false);
        };
        avi.note_size(u32::from(width), u32::from(height));
        if !avi.write_frame(jpeg).map_err(io)? {
            log::warn!(
                "record: {} reached the AVI size limit; video recording stops here",
                path.display()
            );
            self.summary.truncated = true;
            self.video_done = true;
            self.summary.video_skipped += 1;
            return Ok(false);
        }
        let every = (CHECKPOINT_SECS * u64::from(avi.fps.0) / u64::from(avi.fps.1.max(1))).max(1);
        if avi.frames() % every == 0 {
            avi.checkpoint().map_err(io)?;
        }
        self.next_slot += 1;
        self.summary.video_frames += 1;
        Ok(true)
    }

    fn write_audio(
        &mut self,
        pts: u64,
        rate: u32,
        channels: u16,
        samples: &[i16],
        concealed: bool,
    ) -> Result<(), RecordError> {
        let ch = usize::from(channels);
        let frames = (samples.len() / ch) as u64;
        if self.wav_failed {
            self.summary.audio_skipped += frames;
            return Ok(());
        }
        if self.wav.is_none() {
            let path = with_ext(&self.base, "wav");
            let spec = hound::WavSpec {
                channels,
                sample_rate: rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let writer = match hound::WavWriter::create(&path, spec) {
                Ok(w) => w,
                Err(hound::Error::IoError(source)) => {
                    return Err(RecordError::Create { path, source });
                }
                Err(source) => return Err(RecordError::Wav { path, source }),
            };
            self.summary.wav = Some(path.clone());
            self.wav = Some(WavOut {
                writer,
                path,
                rate,
                channels,
                anchor: self.t0,
                written: 0,
                since_checkpoint: 0,
            });
        }
        let Some(w) = self.wav.as_mut() else {
            return Ok(());
        };
        if (w.rate, w.channels) != (rate, channels) {
            if self.summary.audio_skipped == 0 {
                log::warn!(
                    "record: audio changed to {rate} Hz x{channels} from {} Hz x{}; \
                     the WAV keeps the first format and skips the rest",
                    w.rate,
                    w.channels
                );
            }
            self.summary.audio_skipped += frames;
            return Ok(());
        }
        let r = i128::from(rate);
        let clock = i128::from(CLOCK_RATE);
        let pts = i128::from(pts);
        let written = i128::from(w.written);
        let mut pos = if pts >= w.anchor {
            mul_div_round(pts - w.anchor, r, clock)
        } else {
            -mul_div_round(w.anchor - pts, r, clock)
        };
        // Rates that do not divide 90 kHz stamp blocks to the nearest tick: allow 2 frames.
        let tol = 2;
        let max_gap = r * i128::from(MAX_GAP.as_secs() as u32);
        if pos - written > max_gap || written - pos > r {
            self.summary.rebases += 1;
            log::warn!("record: audio timestamps jumped; continuing the recording without a gap");
            w.anchor = pts - mul_div_round(written, clock, r);
            pos = written;
        }
        if (pos - written).abs() <= tol {
            pos = written;
        }
        let mut body = samples;
        if pos < written {
            let skip = ((written - pos) as u64).min(frames);
            self.summary.audio_skipped += skip;
            body = &samples[skip as usize * ch..];
        }
        let gap = (pos - written).max(0) as u64;
        let body_frames = (body.len() / ch) as u64;
        let bytes_per_frame = 2 * u64::from(channels);
        if (w.written + gap + body_frames) * bytes_per_frame > WAV_MAX_BYTES {
            if !self.summary.truncated {
                log::warn!(
                    "record: {} reached the WAV size limit; audio recording stops here",
                    w.path.display()
                );
            }
            self.summary.truncated = true;
            self.summary.audio_skipped += frames;
            self.wav_failed = true;
            return Ok(());
        }
        let wav_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RecordError::Wav { path, source }
        };
        write_silence(&mut w.writer, gap * u64::from(channels)).map_err(wav_err(&w.path))?;
        if concealed {
            write_silence(&mut w.writer, body.len() as u64).map_err(wav_err(&w.path))?;
            self.summary.audio_silence_frames += body_frames;
        } else if !body.is_empty() {
            let mut sw = w.writer.get_i16_writer(body.len() as u32);
            for &s in body {
                sw.write_sample(s);
            }
            sw.flush().map_err(wav_err(&w.path))?;
        }
        self.summary.audio_silence_frames += gap;
        w.written += gap + body_frames;
        w.since_checkpoint += gap + body_frames;
        self.summary.audio_frames = w.written;
        if w.since_checkpoint >= CHECKPOINT_SECS * u64::from(rate) {
            w.since_checkpoint = 0;
            w.writer.flush().map_err(wav_err(&w.path))?;
        }
        Ok(())
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

fn write_silence(
    w: &mut hound::WavWriter<BufWriter<File>>,
    samples: u64,
) -> Result<(), hound::Error> {
    let mut left = samples;
    while left > 0 {
        let n = left.min(1 << 16);
        let mut sw = w.get_i16_writer(n as u32);
        for _ in 0..n {
            sw.write_sample(0i16);
        }
        sw.flush()?;
        left -= n;
    }
    Ok(())
}

/// Offset of the `movi` list type in the file; `idx1` offsets count from here.
const MOVI_AT: u64 = 220;
/// Length of the headers up to the first `00dc` chunk.
const HEADER_LEN: usize = 224;
/// AVIF_HASINDEX.
const AVIF_HASINDEX: u32 = 0x10;
/// AVIIF_KEYFRAME: every JPEG stands alone.
const AVIIF_KEYFRAME: u32 = 0x10;

/// A streaming MJPEG AVI 1.0 writer.
struct AviWriter {
    out: BufWriter<File>,
    fps: (u32, u32),
    width: u32,
    height: u32,
    /// (offset from `movi`, size) per chunk.
    index: Vec<(u32, u32)>,
    /// End of the data written.
    pos: u64,
    max_chunk: u32,
    max_bytes: u64,
    done: bool,
}

impl AviWriter {
    fn create(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = File::create(path)?;
        let mut w = Self {
            out: BufWriter::with_capacity(1 << 20, file),
            fps: DEFAULT_FPS,
            width: 0,
            height: 0,
            index: Vec::new(),
            pos: HEADER_LEN as u64,
            max_chunk: 0,
            max_bytes,
            done: false,
        };
        let h = w.header(false);
        w.out.write_all(&h)?;
        Ok(w)
    }

    fn frames(&self) -> u64 {
        self.index.len() as u64
    }

    fn note_size(&mut self, width: u32, height: u32) {
        if self.width == 0 {
            self.width = width;
            self.height = height;
        }
    }

    /// Appends a `00dc` chunk; false (nothing written) if it would pass the size limit.
    fn write_frame(&mut self, jpeg: &[u8]) -> io::Result<bool> {
        let len = jpeg.len() as u64;
        let padded = len + (len & 1);
        let idx_after = (self.index.len() as u64 + 1) * 16 + 8;
        if len > u64::from(u32::MAX) || self.pos + 8 + padded + idx_after > self.max_bytes {
            return Ok(false);
        }
        let offset = (self.pos - MOVI_AT) as u32;
        self.out.write_all(b"00dc")?;
        self.out.write_all(&(len as u32).to_le_bytes())?;
        self.out.write_all(jpeg)?;
        if len & 1 == 1 {
            self.out.write_all(&[0])?;
        }
        self.pos += 8 + padded;
        self.index.push((offset, len as u32));
        self.max_chunk = self.max_chunk.max(len as u32);
        Ok(true)
    }

    /// The headers for the current state; `with_index`: the file ends with `idx1`.
    fn header(&self, with_index: bool) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let mut at = 0;
        let mut put = |b: &[u8]| {
            h[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        };
        let u32le = |v: u32| v.to_le_bytes();
        let u16le = |v: u16| v.to_le_bytes();
        let (num, den) = (self.fps.0.max(1), self.fps.1.max(1));
        let frames = self.index.len() as u32;
        let file_len = self.pos
            + if with_index {
                8 + 16 * u64::from(frames)
            } else {
                0
            };
        let usec = (1_000_000u64 * u64::from(den) / u64::from(num)) as u32;
        let bytes_per_sec = (u64::from(self.max_chunk) * u64::from(num) / u64::from(den))
            .min(u64::from(u32::MAX)) as u32;
        let (w, hgt) = (self.width, self.height);
        put(b"RIFF");
        put(&u32le((file_len - 8).min(u64::from(u32::MAX)) as u32));
        put(b"AVI ");
        put(b"LIST");
        put(&u32le(192));
        put(b"hdrl");
        put(b"avih");
        put(&u32le(56));
        put(&u32le(usec)); // dwMicroSecPerFrame
        put(&u32le(bytes_per_sec)); // dwMaxBytesPerSec
        put(&u32le(0)); // dwPaddingGranularity
        put(&u32le(AVIF_HASINDEX)); // dwFlags
        put(&u32le(frames)); // dwTotalFrames
        put(&u32le(0)); // dwInitialFrames
        put(&u32le(1)); // dwStreams
        put(&u32le(self.max_chunk + 8)); // dwSuggestedBufferSize
        put(&u32le(w)); // dwWidth
        put(&u32le(hgt)); // dwHeight
        put(&[0; 16]); // dwReserved[4]
        put(b"LIST");
        put(&u32le(116));
        put(b"strl");
        put(b"strh");
        put(&u32le(56));
        put(b"vids"); // fccType
        put(b"MJPG"); // fccHandler
        put(&u32le(0)); // dwFlags
        put(&u16le(0)); // wPriority
        put(&u16le(0)); // wLanguage
        put(&u32le(0)); // dwInitialFrames
        put(&u32le(den)); // dwScale
        put(&u32le(num)); // dwRate
        put(&u32le(0)); // dwStart
        put(&u32le(frames)); // dwLength
        put(&u32le(self.max_chunk + 8)); // dwSuggestedBufferSize
        put(&u32le(u32::MAX)); // dwQuality: default
        put(&u32le(0)); // dwSampleSize: varies
        put(&u16le(0)); // rcFrame
        put(&u16le(0));
        put(&u16le(w.min(u32::from(u16::MAX)) as u16));
        put(&u16le(hgt.min(u32::from(u16::MAX)) as u16));
        put(b"strf");
        put(&u32le(40));
        put(&u32le(40)); // biSize
        put(&u32le(w)); // biWidth
        put(&u32le(hgt)); // biHeight
        put(&u16le(1)); // biPlanes
        put(&u16le(24)); // biBitCount
        put(b"MJPG"); // biCompression
        put(&u32le(w.saturating_mul(hgt).saturating_mul(3))); // biSizeImage
        put(&[0; 16]); // biXPelsPerMeter, biYPelsPerMeter, biClrUsed, biClrImportant
        put(b"LIST");
        put(&u32le((self.pos - MOVI_AT) as u32));
        put(b"movi");
        debug_assert_eq!(at, HEADER_LEN);
        h
    }

    /// Patches the headers for what was written so far (no index yet), so a process that
    /// dies leaves a readable file.
    fn checkpoint(&mut self) -> io::Result<()> {
        let h = self.header(false);
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&h)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        self.out.flush()
    }

    /// Appends `idx1` and patches the headers.
    fn finish(&mut self) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        self.out.seek(SeekFrom::Start(self.pos))?;
        let mut idx = Vec::with_capacity(8 + 16 * self.index.len());
        idx.extend_from_slice(b"idx1");
        idx.extend_from_slice(&((16 * self.index.len()) as u32).to_le_bytes());
        for &(offset, size) in &self.index {
            idx.extend_from_slice(b"00dc");
            idx.extend_from_slice(&AVIIF_KEYFRAME.to_le_bytes());
            idx.extend_from_slice(&offset.to_le_bytes());
            idx.extend_from_slice(&size.to_le_bytes());
        }
        self.out.write_all(&idx)?;
        let h = self.header(true);
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&h)?;
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed AVI: (fps num, den), width, height, the `00dc` payloads in `movi` order, and
    /// the index entries (offset from `movi`, size).
    #[derive(Debug)]
    struct ParsedAvi {
        rate: u32,
        scale: u32,
        total_frames: u32,
        length: u32,
        width: u32,
        height: u32,
        handler: [u8; 4],
        compression: [u8; 4],
        frames: Vec<Vec<u8>>,
        index: Vec<(u32, u32)>,
    }

    fn u32at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn parse_avi(path: &Path) -> ParsedAvi {
        let b = std::fs::read(path).unwrap();
        assert_eq!(&b[0..4], b"RIFF");
        assert_eq!(u32at(&b, 4) as usize, b.len() - 8, "RIFF size");
        assert_eq!(&b[8..12], b"AVI ");
        let mut p = ParsedAvi {
            rate: 0,
            scale: 0,
            total_frames: 0,
            length: 0,
            width: 0,
            height: 0,
            handler: [0; 4],
            compression: [0; 4],
            frames: Vec::new(),
            index: Vec::new(),
        };
        let mut movi_at = None;
        // Walk chunks; descend into LISTs.
        fn walk(
            b: &[u8],
            mut at: usize,
            end: usize,
            p: &mut ParsedAvi,
            movi_at: &mut Option<usize>,
        ) {
            while at + 8 <= end {
                let id: [u8; 4] = b[at..at + 4].try_into().unwrap();
                let size = u32at(b, at + 4) as usize;
                let data = at + 8;
                assert!(data + size <= end, "chunk {:?} overruns its parent", id);
                match &id {
                    b"LIST" => {
                        if &b[data..data + 4] == b"movi" {
                            *movi_at = Some(data);
                        }
                        walk(b, data + 4, data + size, p, movi_at);
                    }
                    b"avih" => {
                        p.total_frames = u32at(b, data + 16);
                        p.width = u32at(b, data + 32);
                        p.height = u32at(b, data + 36);
                    }
                    b"strh" => {
                        assert_eq!(&b[data..data + 4], b"vids");
                        p.handler = b[data + 4..data + 8].try_into().unwrap();
                        p.scale = u32at(b, data + 20);
                        p.rate = u32at(b, data + 24);
                        p.length = u32at(b, data + 32);
                    }
                    b"strf" => {
                        assert_eq!(u32at(b, data), 40);
                        p.compression = b[data + 16..data + 20].try_into().unwrap();
                    }
                    b"00dc" => p.frames.push(b[data..data + size].to_vec()),
                    b"idx1" => {
                        for e in b[data..data + size].chunks_exact(16) {
                            assert_eq!(&e[0..4], b"00dc");
                            assert_eq!(u32at(e, 4), AVIIF_KEYFRAME);
                            p.index.push((u32at(e, 8), u32at(e, 12)));
                        }
                    }
                    _ => {}
                }
                at = data + size + (size & 1);
            }
        }
        walk(&b, 12, b.len(), &mut p, &mut movi_at);
        // Every index entry points at its chunk.
        let movi = movi_at.expect("a movi list");
        for (i, &(off, size)) in p.index.iter().enumerate() {
            let at = movi + off as usize;
            assert_eq!(&b[at..at + 4], b"00dc", "index entry {i}");
            assert_eq!(u32at(&b, at + 4), size);
            assert_eq!(&b[at + 8..at + 8 + size as usize], &p.frames[i][..]);
        }
        p
    }

    /// A scratch directory, removed when dropped.
    struct TmpDir(PathBuf);

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A scratch directory and the recording base path inside it.
    fn tmp(name: &str) -> (TmpDir, PathBuf) {
        let dir = std::env::temp_dir().join(format!("framecast-rec-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("out");
        (TmpDir(dir), base)
    }

    fn fake_jpeg(i: u8, len: usize) -> Bytes {
        let mut v = vec![0xFF, 0xD8];
        v.extend((0..len).map(|k| i.wrapping_add(k as u8)));
        v.extend([0xFF, 0xD9]);
        Bytes::from(v)
    }

    fn read_wav(path: &Path) -> (hound::WavSpec, Vec<i16>) {
        let mut r = hound::WavReader::open(path).unwrap();
        let spec = r.spec();
        (spec, r.samples::<i16>().map(Result::unwrap).collect())
    }

    #[test]
    fn frames_fill_slots_and_audio_is_aligned() {
        let (_dir, base) = tmp("slots");
        let mut rec = Recorder::create(&base).unwrap();
        rec.describe(30, 1, true).unwrap();
        // Video from pts 6000 (2 slots after audio starts), frame 3 lost, odd sizes for padding.
        let frames: Vec<Bytes> = (0..6).map(|i| fake_jpeg(i, 100 + i as usize)).collect();
        for (i, f) in frames.iter().enumerate() {
            if i != 3 {
                rec.video(6000 + 3000 * i as u64, 64, 48, f).unwrap();
            }
        }
        // Audio 8 kHz mono from pts 0: blocks of 80 frames (10 ms = 900 ticks); block 2
        // concealed, block 4 lost (a gap), block 5 arrives.
        for k in 0..6u64 {
            if k == 4 {
                continue;
            }
            let samples: Vec<i16> = (0..80).map(|j| (k * 100 + j) as i16).collect();
            rec.audio(k * 900, 8000, 1, &samples, k == 2).unwrap();
        }
        let s = rec.finish().unwrap();
        assert_eq!(s.video_frames, 2 + 6, "2 leading slots, 6 frame slots");
        assert_eq!(s.video_repeats, 2 + 1);
        assert_eq!((s.audio_frames, s.audio_silence_frames), (480, 160));
        assert_eq!(
            (s.video_skipped, s.audio_skipped, s.rebases, s.truncated),
            (0, 0, 0, false)
        );

        let avi = parse_avi(&with_ext(&base, "avi"));
        assert_eq!((avi.rate, avi.scale), (30, 1));
        assert_eq!((avi.total_frames, avi.length), (8, 8));
        assert_eq!((avi.width, avi.height), (64, 48));
        assert_eq!((&avi.handler, &avi.compression), (b"MJPG", b"MJPG"));
        let want: Vec<&Bytes> = [0, 0, 0, 1, 2, 2, 4, 5]
            .iter()
            .map(|&i| &frames[i])
            .collect();
        assert_eq!(avi.frames.len(), 8);
        for (got, want) in avi.frames.iter().zip(want) {
            assert_eq!(&got[..], &want[..]);
        }
        assert_eq!(avi.index.len(), 8);
        assert_eq!(avi.index[0].0, 4, "the first chunk right after 'movi'");

        let (spec, wav) = read_wav(&with_ext(&base, "wav"));
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (8000, 1, 16)
        );
        assert_eq!(wav.len(), 480);
        assert_eq!(&wav[0..3], &[0, 1, 2]);
        assert!(wav[160..240].iter().all(|&x| x == 0), "concealed");
        assert_eq!(wav[240], 300);
        assert!(wav[320..400].iter().all(|&x| x == 0), "gap");
        assert_eq!(wav[400], 500);
    }

    #[test]
    fn late_audio_is_padded_and_video_starts_at_zero() {
        let (_dir, base) = tmp("late-audio");
        let mut rec = Recorder::create(&base).unwrap();
        rec.describe(25, 1, true).unwrap();
        let f = fake_jpeg(9, 10);
        rec.video(90_000, 32, 32, &f).unwrap(); // t = 0
        rec.video(90_000 + 3600, 32, 32, &f).unwrap();
        // Audio starts 100 ms after the video: 4800 frames of silence at 48 kHz stereo.
        rec.audio(90_000 + 9000, 48_000, 2, &[1; 2 * 480], false)
            .unwrap();
        let s = rec.finish().unwrap();
        assert_eq!((s.video_frames, s.video_repeats), (2, 0));
        assert_eq!((s.audio_frames, s.audio_silence_frames), (4800 + 480, 4800));
        let (spec, wav) = read_wav(&with_ext(&base, "wav"));
        assert_eq!(spec.channels, 2);
        assert_eq!(wav.len(), 2 * 5280);
        assert_eq!((wav[2 * 4800 - 1], wav[2 * 4800]), (0, 1));
        let avi = parse_avi(&with_ext(&base, "avi"));
        assert_eq!((avi.rate, avi.scale, avi.frames.len()), (25, 1, 2));
    }

    #[test]
    fn jumps_duplicates_and_an_audio_less_stream() {
        let (_dir, base) = tmp("jumps");
        let mut rec = Recorder::create(&base).unwrap();
        rec.describe(30_000, 1001, false).unwrap(); // 29.97 fps, interval 3003 ticks
        let f = fake_jpeg(1, 20);
        rec.video(1000, 8, 8, &f).unwrap(); // starts at once: no audio expected
        assert_eq!(rec.summary().video_frames, 1);
        rec.video(1000 + 3003, 8, 8, &f).unwrap();
        rec.video(1000 + 3003 + 100, 8, 8, &f).unwrap(); // same slot: skipped
        rec.video(1000 + 3003 * 3, 8, 8, &f).unwrap(); // one slot repeated
        rec.video(1000 + 3003 * 3 + 90_000 * 3600, 8, 8, &f)
            .unwrap(); // 1 h jump: not filled
        rec.video(10, 8, 8, &f).unwrap(); // back to the start: a new timeline again
        let s = rec.finish().unwrap();
        assert_eq!(s.wav, None);
        assert_eq!(
            (s.video_frames, s.video_repeats, s.video_skipped, s.rebases),
            (6, 1, 1, 2)
        );
        let avi = parse_avi(&with_ext(&base, "avi"));
        assert_eq!((avi.rate, avi.scale, avi.frames.len()), (30_000, 1001, 6));
        assert!(!with_ext(&base, "wav").exists());
    }

    #[test]
    fn drop_finalises_and_the_size_limit_holds() {
        let (_dir, base) = tmp("drop");
        {
            let mut rec =
                Recorder::create_with_limit(&base, 224 + 3 * (8 + 1000) + 8 + 3 * 16).unwrap();
            rec.describe(10, 1, false).unwrap();
            for i in 0..5u64 {
                rec.video(i * 9000, 16, 16, &fake_jpeg(i as u8, 996))
                    .unwrap();
            }
            assert!(rec.summary().truncated);
            assert_eq!(rec.summary().video_frames, 3);
            // Dropped without finish(), like a player unwinding after an error.
        }
        let avi = parse_avi(&with_ext(&base, "avi"));
        assert_eq!(
            (avi.total_frames, avi.frames.len(), avi.index.len()),
            (3, 3, 3)
        );
        assert_eq!(
            std::fs::metadata(with_ext(&base, "avi")).unwrap().len(),
            224 + 3 * 1008 + 8 + 48
        );
    }

    #[test]
    fn a_bad_path_fails_at_once() {
        let err = Recorder::create("/nonexistent-dir/x").unwrap_err();
        assert!(matches!(err, RecordError::Create { .. }));
        assert!(err.to_string().contains("/nonexistent-dir/x.avi"), "{err}");
    }

    /// Real JPEGs, read back by ffprobe (installed here and in CI: this test requires it).
    #[cfg(feature = "jpeg")]
    #[test]
    fn ffprobe_reads_the_recording() {
        use crate::media::{JpegEncoder, Subsampling, TestPattern};
        let (_dir, base) = tmp("ffprobe");
        let mut rec = Recorder::create(&base).unwrap();
        rec.describe(30, 1, true).unwrap();
        let mut enc = JpegEncoder::new(80, Subsampling::Yuv420).unwrap();
        let mut pat = TestPattern::new(160, 120, 30, 1).unwrap();
        let mut sent = Vec::new();
        for i in 0..45u64 {
            let jpeg = Bytes::from(enc.encode_rgb(&pat.frame(i)).unwrap());
            if i != 10 {
                rec.video(i * 3000, 160, 120, &jpeg).unwrap();
            }
            sent.push(jpeg);
        }
        // 1.5 s of 48 kHz stereo in 20 ms blocks.
        for k in 0..75u64 {
            rec.audio(k * 1800, 48_000, 2, &[k as i16; 2 * 960], false)
                .unwrap();
        }
        let s = rec.finish().unwrap();
        assert_eq!((s.video_frames, s.video_repeats), (45, 1));
        let avi_path = with_ext(&base, "avi");
        let avi = parse_avi(&avi_path);
        assert_eq!(avi.frames.len(), 45);
        for (i, got) in avi.frames.iter().enumerate() {
            let want = if i == 10 { &sent[9] } else { &sent[i] };
            assert_eq!(&got[..], &want[..], "frame {i}");
        }
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=nb_read_frames,codec_name,r_frame_rate:format=duration",
                "-of",
                "json",
            ])
            .arg(&avi_path)
            .output()
            .expect("ffprobe is needed for this test (apt-get install ffmpeg)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "ffprobe complained: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let st = &j["streams"][0];
        assert_eq!(st["codec_name"], "mjpeg");
        assert_eq!(st["nb_read_frames"], "45");
        assert_eq!(st["r_frame_rate"], "30/1");
        assert_eq!(j["format"]["duration"], "1.500000");
        let mut r = hound::WavReader::open(with_ext(&base, "wav")).unwrap();
        assert_eq!(r.duration(), 75 * 960);
        assert_eq!(r.samples::<i16>().count(), 2 * 75 * 960);
    }
}
