//! `serve --source file:PATH`: a video file streamed in real time, with its sound.
//!
//! - Video: OpenCV's `VideoCapture` with the ffmpeg backend decodes frames (any container and
//!   codec that backend reads: MP4/H.264, MKV, AVI/MJPEG, ...), timestamped by the file
//!   (`CAP_PROP_POS_MSEC`, falling back to index / fps). Each BGR frame goes to turbojpeg as
//!   BGR: no colour conversion pass and, when the `Mat` is continuous, no copy ([`BgrEncoder`]).
//!   When one encoder cannot keep up with the frame rate, a small pool of encoder threads
//!   takes over, output kept in order ([`Encoders`]).
//! - Audio: the default audio track of the same file, decoded by symphonia to interleaved s16
//!   at the file's own rate ([`FileAudio`]); more than two channels are downmixed to stereo.
//!   A file with no audio track, or with a codec symphonia cannot decode (e.g. Opus, AC-3,
//!   audio in MKV), streams video only after one warning. `--audio FILE.wav` replaces it.
//! - Pacing: video and audio run on their own threads and send each item when
//!   `start + pts` comes (see [`super::wav_source`]).
//! - `--loop`: timestamps keep increasing. With the file's own audio both tracks repeat on
//!   one period, the longer of the two, so they stay aligned loop after loop (the shorter one
//!   leaves a gap; audio is padded with silence there).
//! - Progress: a bar on stderr (indicatif) when stderr is a terminal, else a line every 10 s.
#![cfg(all(feature = "opencv", feature = "jpeg"))]

use std::collections::VecDeque;
use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use opencv::core::{Mat, MatTraitConst, MatTraitConstManual};
use opencv::prelude::{VideoCaptureTrait, VideoCaptureTraitConst};
use opencv::videoio::{self, VideoCapture};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

#[cfg(test)]
use super::JpegDecoder;
use super::Subsampling;
use super::source::{
    AudioFormat, MediaItem, MediaSink, MediaSource, SourceStats, StreamFormat, audio_block_frames,
};
use super::wav_source::{
    AudioLoop, PcmError, PcmReader, WavAudio, downmix_to_stereo, due, forward_items, item_channel,
    run_audio_pump, sleep_until,
};

/// Frames later than this behind their time are skipped rather than encoded.
const LATE_SKIP: Duration = Duration::from_millis(250);
/// Frames encoded on one thread before deciding whether a pool is needed.
const POOL_PROBE_FRAMES: u64 = 10;
/// Most encoder threads.
const MAX_ENCODERS: usize = 4;

/// Errors opening a video file.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The file does not exist.
    #[error("no such file")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// OpenCV cannot open or decode the file.
    #[error(
        "OpenCV (ffmpeg backend) cannot read {path}: not a video, or an unsupported container or codec ({detail}); check it with `ffprobe {path}`"
    )]
    NotVideo {
        /// The path given.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// An OpenCV call failed.
    #[error("{path}: OpenCV failed to {what}: {source}")]
    OpenCv {
        /// The path given.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
    /// The JPEG encoder could not be set up.
    #[error(transparent)]
    Encoder(#[from] EncodeError),
}

/// Errors encoding a BGR frame.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The frame is not 8-bit, 3-channel.
    #[error("frame of OpenCV type {typ} is not 8-bit BGR")]
    NotBgr {
        /// `Mat::typ()`.
        typ: i32,
    },
    /// A side is 0 or above 65535.
    #[error("cannot encode a {width}x{height} frame as JPEG")]
    Size {
        /// Width.
        width: i32,
        /// Height.
        height: i32,
    },
    /// An OpenCV accessor failed.
    #[error("cannot read the frame's pixels: {0}")]
    OpenCv(#[from] opencv::Error),
    /// turbojpeg failed.
    #[error("JPEG encoding failed: {0}")]
    Jpeg(#[from] turbojpeg::Error),
    /// The quality is outside 1..=100.
    #[error("JPEG quality {0} is out of range: must be 1..=100")]
    Quality(u8),
    /// An encoder thread could not be started.
    #[error("cannot start an encoder thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Compresses OpenCV BGR frames with turbojpeg, straight from BGR.
pub struct BgrEncoder {
    compressor: Compressor,
    /// Rows of a non-continuous `Mat`, gathered.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for BgrEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BgrEncoder").finish_non_exhaustive()
    }
}

impl BgrEncoder {
    /// An encoder at `quality` (1..=100) and chroma `subsampling`.
    pub fn new(quality: u8, subsampling: Subsampling) -> Result<BgrEncoder, EncodeError> {
        if !(1..=100).contains(&quality) {
            return Err(EncodeError::Quality(quality));
        }
        let mut compressor = Compressor::new()?;
        compressor.set_quality(i32::from(quality))?;
        compressor.set_subsamp(match subsampling {
            Subsampling::Yuv444 => Subsamp::None,
            Subsampling::Yuv422 => Subsamp::Sub2x1,
            Subsampling::Yuv420 => Subsamp::Sub2x2,
            Subsampling::Gray => Subsamp::Gray,
        })?;
        Ok(BgrEncoder {
            compressor,
            scratch: Vec::new(),
        })
    }

    /// Compresses an 8-bit 3-channel BGR `Mat` (what `VideoCapture` delivers). A continuous
    /// `Mat` is read in place; otherwise its rows are gathered first.
    pub fn encode(&mut self, mat: &impl MatTraitConst) -> Result<Vec<u8>, EncodeError> {
        if mat.typ() != opencv::core::CV_8UC3 {
            return Err(EncodeError::NotBgr { typ: mat.typ() });
        }
        let (w, h) = (mat.cols(), mat.rows());
        if !(1..=65535).contains(&w) || !(1..=65535).contains(&h) {
            return Err(EncodeError::Size {
                width: w,
                height: h,
            });
        }
        let (w, h) = (w as usize, h as usize);
        let pixels: &[u8] = if mat.is_continuous() {
            mat.data_bytes()?
        } else {
            self.scratch.clear();
            for y in 0..h as i32 {
                self.scratch.extend_from_slice(mat.row(y)?.data_bytes()?);
            }
            &self.scratch
        };
        let image = Image {
            pixels,
            width: w,
            pitch: w * 3,
            height: h,
            format: PixelFormat::BGR,
        };
        Ok(self.compressor.compress_to_vec(image)?)
    }
}

/// One encoded frame out of [`Encoders`].
#[derive(Debug)]
pub struct Encoded {
    /// Its timestamp.
    pub pts: u64,
    /// The JPEG, or why there is none.
    pub jpeg: Result<Vec<u8>, EncodeError>,
    /// Time spent encoding.
    pub took: Duration,
    /// The frame, handed back for reuse.
    pub mat: Mat,
}

struct Job {
    pts: u64,
    mat: Mat,
}

struct Worker {
    jobs: Option<SyncSender<Job>>,
    /// Each worker has at most one job outstanding (round robin, at most one per worker in
    /// flight), so its result never waits for room.
    results: Option<Receiver<Encoded>>,
    handle: Option<JoinHandle<()>>,
}

/// JPEG encoding of a frame sequence: on the calling thread, or on a pool of threads when one
/// cannot keep up. Frames come out in the order they went in.
pub enum Encoders {
    /// One encoder, on the calling thread.
    Inline {
        /// The encoder.
        encoder: Box<BgrEncoder>,
        /// Encoded, not yet collected.
        done: VecDeque<Encoded>,
    },
    /// Worker threads fed round robin and collected round robin (which keeps the order).
    Pool {
        /// The workers.
        workers: Vec<WorkerHandle>,
        /// Next worker to feed.
        next_in: usize,
        /// Next worker to collect from.
        next_out: usize,
        /// Frames submitted, not collected.
        in_flight: usize,
    },
}

/// One thread of an [`Encoders::Pool`].
pub struct WorkerHandle(Worker);

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.0.jobs = None; // the worker's loop ends
        self.0.results = None; // and never waits to hand over a result
        if let Some(h) = self.0.handle.take() {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Encoders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoders")
            .field("threads", &self.threads())
            .finish_non_exhaustive()
    }
}

impl Encoders {
    /// One encoder on the calling thread.
    pub fn inline(quality: u8, subsampling: Subsampling) -> Result<Encoders, EncodeError> {
        Ok(Encoders::Inline {
            encoder: Box::new(BgrEncoder::new(quality, subsampling)?),
            done: VecDeque::new(),
        })
    }

    /// `threads` encoder threads (at least 2).
    pub fn pool(
        threads: usize,
        quality: u8,
        subsampling: Subsampling,
    ) -> Result<Encoders, EncodeError> {
        let mut workers = Vec::new();
        for i in 0..threads.max(2) {
            let mut encoder = BgrEncoder::new(quality, subsampling)?;
            let (jobs, job_rx) = sync_channel::<Job>(1);
            let (done_tx, results) = sync_channel::<Encoded>(2);
            let handle = std::thread::Builder::new()
                .name(format!("jpeg-{i}"))
                .spawn(move || {
                    for Job { pts, mat } in job_rx {
                        let t0 = Instant::now();
                        let jpeg = encoder.encode(&mat);
                        let took = t0.elapsed();
                        let out = Encoded {
                            pts,
                            jpeg,
                            took,
                            mat,
                        };
                        if done_tx.send(out).is_err() {
                            break;
                        }
                    }
                })
                .map_err(EncodeError::Thread)?;
            workers.push(WorkerHandle(Worker {
                jobs: Some(jobs),
                results: Some(results),
                handle: Some(handle),
            }));
        }
        Ok(Encoders::Pool {
            workers,
            next_in: 0,
            next_out: 0,
            in_flight: 0,
        })
    }

    /// Threads encoding (1 for inline).
    pub fn threads(&self) -> usize {
        match self {
            Encoders::Inline { .. } => 1,
            Encoders::Pool { workers, .. } => workers.len(),
        }
    }

    /// Frames submitted and not collected yet.
    pub fn in_flight(&self) -> usize {
        match self {
            Encoders::Inline { done, .. } => done.len(),
            Encoders::Pool { in_flight, .. } => *in_flight,
        }
    }

    /// True when [`submit`](Self::submit) should wait for a [`collect`](Self::collect).
    pub fn full(&self) -> bool {
        self.in_flight() >= self.threads()
    }

    /// Hands a frame over for encoding (inline: encodes it now). Returns the frame back if
    /// a worker is gone.
    pub fn submit(&mut self, pts: u64, mat: Mat) -> Result<(), Mat> {
        match self {
            Encoders::Inline { encoder, done } => {
                let t0 = Instant::now();
                let jpeg = encoder.encode(&mat);
                done.push_back(Encoded {
                    pts,
                    jpeg,
                    took: t0.elapsed(),
                    mat,
                });
                Ok(())
            }
            Encoders::Pool {
                workers,
                next_in,
                in_flight,
                ..
            } => {
                let n = workers.len();
                let Some(jobs) = workers[*next_in].0.jobs.as_ref() else {
                    return Err(mat);
                };
                jobs.send(Job { pts, mat }).map_err(|e| e.0.mat)?;
                *next_in = (*next_in + 1) % n;
                *in_flight += 1;
                Ok(())
            }
        }
    }

    /// The oldest submitted frame, encoded (waits for it); `None` if nothing is in flight or
    /// a worker died.
    pub fn collect(&mut self) -> Option<Encoded> {
        match self {
            Encoders::Inline { done, .. } => done.pop_front(),
            Encoders::Pool {
                workers,
                next_out,
                in_flight,
                ..
            } => {
                if *in_flight == 0 {
                    return None;
                }
                let out = workers[*next_out].0.results.as_ref()?.recv().ok()?;
                *next_out = (*next_out + 1) % workers.len();
                *in_flight -= 1;
                Some(out)
            }
        }
    }
}

/// How many encoder threads it takes to encode at `fps` when one frame takes `mean`.
pub fn encoders_needed(mean: Duration, frame_interval: Duration) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if mean.as_secs_f64() <= frame_interval.as_secs_f64() * 0.9 {
        return 1;
    }
    let need = (mean.as_secs_f64() / frame_interval.as_secs_f64().max(1e-6)).ceil() as usize + 1;
    need.clamp(2, MAX_ENCODERS.min(cores.max(2)))
}

/// The frame rate `fps` as a fraction whose terms fit 16 bits (NTSC rates exactly).
pub fn fps_fraction(fps: f64) -> (u32, u32) {
    if !fps.is_finite() || fps <= 0.0 {
        return (30, 1);
    }
    let fps = fps.clamp(0.01, 1000.0);
    let r = fps.round();
    if (fps - r).abs() < 1e-3 {
        return (r as u32, 1);
    }
    let ntsc = fps * 1.001;
    if (ntsc - ntsc.round()).abs() < 1e-3 && ntsc.round() * 1000.0 <= 65535.0 {
        return (ntsc.round() as u32 * 1000, 1001);
    }
    for den in [1000u32, 100, 10] {
        let num = (fps * f64::from(den)).round();
        if (1.0..=65535.0).contains(&num) {
            return (num as u32, den);
        }
    }
    (r.max(1.0) as u32, 1)
}

/// Runs `f` with OpenCV's own logging at errors only (it prints warnings for every failed
/// open, before our clearer message).
pub(crate) fn quiet_opencv<T>(f: impl FnOnce() -> T) -> T {
    let prev = opencv::core::set_log_level(opencv::core::LogLevel::LOG_LEVEL_ERROR).ok();
    let out = f();
    if let Some(p) = prev {
        let _ = opencv::core::set_log_level(p);
    }
    out
}

/// The default audio track of a media file, decoded by symphonia to interleaved s16 at the
/// file's own rate (stereo when it has more than two channels).
pub struct FileAudio {
    path: PathBuf,
    reader: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    sample_rate: u32,
    source_channels: usize,
    total_frames: Option<u64>,
    /// Decoded samples (output channel count) not handed out yet, from `pending_pos`.
    pending: Vec<i16>,
    pending_pos: usize,
    scratch: Vec<i16>,
    warned_decode: bool,
}

impl std::fmt::Debug for FileAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAudio")
            .field("path", &self.path)
            .field("sample_rate", &self.sample_rate)
            .field("source_channels", &self.source_channels)
            .finish_non_exhaustive()
    }
}

fn decode_error(path: &Path, message: impl Into<String>) -> PcmError {
    PcmError::Decode {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A demuxer, the decoder of its default audio track, and that track's id.
type OpenedAudio = (Box<dyn FormatReader>, Box<dyn AudioDecoder>, u32);

fn open_reader(path: &Path) -> Result<Option<OpenedAudio>, PcmError> {
    let open = || {
        let file = File::open(path).map_err(|e| decode_error(path, e.to_string()))?;
        Ok::<_, PcmError>(MediaSourceStream::new(Box::new(file), Default::default()))
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    // MP4 and its kin go straight to their demuxer: the generic probe scans for a marker and
    // logs the four bytes before `ftyp` as junk.
    let mp4 = matches!(ext.as_deref(), Some("mp4" | "m4a" | "m4v" | "mov" | "3gp"));
    let direct = if mp4 {
        symphonia::default::formats::IsoMp4Reader::try_new(open()?, FormatOptions::default())
            .ok()
            .map(|r| Box::new(r) as Box<dyn FormatReader>)
    } else {
        None
    };
    let reader = match direct {
        Some(r) => r,
        None => {
            let mut hint = Hint::new();
            if let Some(ext) = &ext {
                hint.with_extension(ext);
            }
            symphonia::default::get_probe()
                .probe(
                    &hint,
                    open()?,
                    FormatOptions::default(),
                    MetadataOptions::default(),
                )
                .map_err(|_| PcmError::UnsupportedContainer {
                    path: path.to_path_buf(),
                })?
        }
    };
    let Some(track) = reader.default_track(TrackType::Audio) else {
        return Ok(None);
    };
    let Some(params) = track.codec_params.as_ref().and_then(|p| p.audio()) else {
        return Ok(None);
    };
    let track_id = track.id;
    let decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| PcmError::UnsupportedCodec {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    Ok(Some((reader, decoder, track_id)))
}

impl FileAudio {
    /// Opens the default audio track of `path`: `Ok(None)` if the file has none, an error if
    /// symphonia cannot read the container or decode the codec, or the first packets fail.
    pub fn open(path: &Path) -> Result<Option<FileAudio>, PcmError> {
        let Some((reader, decoder, track_id)) = open_reader(path)? else {
            return Ok(None);
        };
        let total_frames = reader
            .tracks()
            .iter()
            .find(|t| t.id == track_id)
            .and_then(|t| t.num_frames);
        let mut audio = FileAudio {
            path: path.to_path_buf(),
            reader,
            decoder,
            track_id,
            sample_rate: 0,
            source_channels: 0,
            total_frames,
            pending: Vec::new(),
            pending_pos: 0,
            scratch: Vec::new(),
            warned_decode: false,
        };
        // The first decoded packet tells the real rate and channels (what the container says
        // can differ).
        if !audio.decode_next()? {
            return Ok(None); // an audio track with no packets
        }
        let rate = audio.sample_rate;
        if !(super::wav_source::MIN_SAMPLE_RATE..=super::wav_source::MAX_SAMPLE_RATE)
            .contains(&rate)
        {
            return Err(decode_error(
                path,
                format!("sample rate {rate} Hz cannot be streamed"),
            ));
        }
        if audio.source_channels > 2 {
            log::warn!(
                "{}: {} audio channels, downmixed to stereo",
                path.display(),
                audio.source_channels
            );
        }
        Ok(Some(audio))
    }

    /// Decodes packets until one yields samples; false at the end of the track.
    fn decode_next(&mut self) -> Result<bool, PcmError> {
        loop {
            let packet = match self.reader.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(false),
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(false);
                }
                Err(SymError::ResetRequired) => return Ok(false),
                Err(e) => return Err(decode_error(&self.path, e.to_string())),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let buf = match self.decoder.decode(&packet) {
                Ok(buf) => buf,
                Err(SymError::DecodeError(e)) => {
                    // A damaged packet: skip it, as players do.
                    if !self.warned_decode {
                        self.warned_decode = true;
                        log::warn!(
                            "{}: damaged audio packet skipped ({e})",
                            self.path.display()
                        );
                    }
                    continue;
                }
                Err(SymError::IoError(_)) => continue,
                Err(SymError::ResetRequired) => {
                    self.decoder.reset();
                    continue;
                }
                Err(e) => return Err(decode_error(&self.path, e.to_string())),
            };
            if buf.frames() == 0 {
                continue;
            }
            let (rate, channels) = (buf.spec().rate(), buf.spec().channels().count());
            if self.sample_rate == 0 {
                if channels == 0 || channels > usize::from(super::wav_source::MAX_CHANNELS) {
                    return Err(decode_error(
                        &self.path,
                        format!("{channels} audio channels cannot be streamed (1-8)"),
                    ));
                }
                self.sample_rate = rate;
                self.source_channels = channels;
            } else if rate != self.sample_rate || channels != self.source_channels {
                return Err(decode_error(
                    &self.path,
                    format!(
                        "the audio format changes mid-stream ({} Hz x {} -> {rate} Hz x {channels})",
                        self.sample_rate, self.source_channels
                    ),
                ));
            }
            // Drop what was handed out before appending.
            self.pending.drain(..self.pending_pos);
            self.pending_pos = 0;
            if channels <= 2 {
                buf.copy_to_vec_interleaved::<i16>(&mut self.scratch);
                self.pending.extend_from_slice(&self.scratch);
            } else {
                buf.copy_to_vec_interleaved::<i16>(&mut self.scratch);
                downmix_to_stereo(&self.scratch, channels, &mut self.pending);
            }
            return Ok(true);
        }
    }

    /// The whole track decoded at once: what a player receiving this file should hear,
    /// sample for sample (tests compare against it).
    pub fn decode_all(path: &Path) -> Result<Option<(AudioFormat, Vec<i16>)>, PcmError> {
        let Some(mut audio) = FileAudio::open(path)? else {
            return Ok(None);
        };
        let format = AudioFormat {
            sample_rate: audio.sample_rate(),
            channels: audio.channels(),
        };
        let mut out = Vec::new();
        while audio.read_frames(4096, &mut out)? > 0 {}
        Ok(Some((format, out)))
    }
}

impl PcmReader for FileAudio {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn channels(&self) -> u8 {
        self.source_channels.min(2) as u8
    }

    fn total_frames(&self) -> Option<u64> {
        self.total_frames
    }

    fn read_frames(&mut self, frames: usize, out: &mut Vec<i16>) -> Result<usize, PcmError> {
        let ch = usize::from(self.channels().max(1));
        while self.pending.len() - self.pending_pos < ch {
            if !self.decode_next()? {
                return Ok(0);
            }
        }
        let avail = (self.pending.len() - self.pending_pos) / ch;
        let n = avail.min(frames);
        out.extend_from_slice(&self.pending[self.pending_pos..self.pending_pos + n * ch]);
        self.pending_pos += n * ch;
        Ok(n)
    }

    fn rewind(&mut self) -> Result<(), PcmError> {
        let Some((reader, decoder, track_id)) = open_reader(&self.path)? else {
            return Err(decode_error(&self.path, "the audio track is gone"));
        };
        self.reader = reader;
        self.decoder = decoder;
        self.track_id = track_id;
        self.pending.clear();
        self.pending_pos = 0;
        Ok(())
    }
}

/// Where a file source's audio comes from.
#[derive(Debug)]
pub enum FileAudioChoice {
    /// The file's own audio track (if it has one symphonia decodes).
    FromFile,
    /// A WAV file instead (`--audio`).
    Wav(WavAudio),
    /// None (`--no-audio`).
    None,
}

/// Options of [`FileSource::open`].
#[derive(Debug)]
pub struct FileOptions {
    /// JPEG quality, 1-100.
    pub quality: u8,
    /// JPEG chroma subsampling.
    pub subsampling: Subsampling,
    /// Repeat the file (`--loop`).
    pub looping: bool,
    /// Where the audio comes from.
    pub audio: FileAudioChoice,
    /// Show a progress bar on a terminal (a line every 10 s otherwise).
    pub progress: bool,
}

/// A video file with its sound, streamed in real time (see the module docs).
pub struct FileSource {
    path: PathBuf,
    cap: VideoCapture,
    /// The frame read by `open` (proof that the file decodes) and its position in ms.
    first: Option<(Mat, f64)>,
    format: StreamFormat,
    /// Frames in the file, if the container says.
    frame_count: Option<u64>,
    audio: Option<Box<dyn PcmReader>>,
    audio_loop: AudioLoop,
    block_frames: usize,
    quality: u8,
    subsampling: Subsampling,
    looping: bool,
    progress: bool,
    audio_note: Option<String>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("frame_count", &self.frame_count)
            .field("audio_loop", &self.audio_loop)
            .finish_non_exhaustive()
    }
}

fn open_capture(path: &Path) -> Result<VideoCapture, FileSourceError> {
    let ocv = |what| {
        move |source| FileSourceError::OpenCv {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let cap = quiet_opencv(|| VideoCapture::from_file(path, videoio::CAP_FFMPEG))
        .map_err(ocv("open the file"))?;
    if !cap.is_opened().map_err(ocv("open the file"))? {
        return Err(FileSourceError::NotVideo {
            path: path.to_path_buf(),
            detail: "it does not open".into(),
        });
    }
    Ok(cap)
}

impl FileSource {
    /// Opens `path`, decodes its first frame (so an unreadable file fails here, not later),
    /// and opens its audio as `opts` says. `max_frames(channels)` bounds the sample frames of
    /// an audio block (from the datagram size).
    ///
    /// A file with no audio track, or one symphonia cannot decode, is not an error: it warns
    /// once and streams video only (`format().audio` is `None`).
    pub fn open(
        path: &Path,
        opts: FileOptions,
        max_frames: &dyn Fn(u8) -> usize,
    ) -> Result<FileSource, FileSourceError> {
        if !path.exists() {
            return Err(FileSourceError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let ocv = |what| {
            move |source| FileSourceError::OpenCv {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        let mut cap = open_capture(path)?;
        let mut first = Mat::default();
        let got = quiet_opencv(|| cap.read(&mut first)).map_err(ocv("decode the first frame"))?;
        if !got || first.empty() {
            return Err(FileSourceError::NotVideo {
                path: path.to_path_buf(),
                detail: "no video frame decodes".into(),
            });
        }
        if first.typ() != opencv::core::CV_8UC3 {
            return Err(FileSourceError::NotVideo {
                path: path.to_path_buf(),
                detail: format!("frames come out as OpenCV type {}, not BGR", first.typ()),
            });
        }
        let first_ms = cap.get(videoio::CAP_PROP_POS_MSEC).unwrap_or(0.0);
        let fps = cap.get(videoio::CAP_PROP_FPS).unwrap_or(0.0);
        let (fps_num, fps_den) = fps_fraction(fps);
        let frame_count = cap
            .get(videoio::CAP_PROP_FRAME_COUNT)
            .ok()
            .filter(|n| n.is_finite() && *n >= 1.0)
            .map(|n| n as u64);
        let mut format = StreamFormat {
            width: first.cols() as u32,
            height: first.rows() as u32,
            fps_num,
            fps_den,
            audio: None,
        };
        // Make one encoder now: a bad quality fails here.
        BgrEncoder::new(opts.quality, opts.subsampling)?;

        let mut note = None;
        let (audio, from_file): (Option<Box<dyn PcmReader>>, bool) = match opts.audio {
            FileAudioChoice::None => (None, false),
            FileAudioChoice::Wav(w) => (Some(Box::new(w)), false),
            FileAudioChoice::FromFile => match FileAudio::open(path) {
                Ok(Some(a)) => (Some(Box::new(a)), true),
                Ok(None) => {
                    note = Some(format!(
                        "no audio track in {}; streaming video only",
                        path.display()
                    ));
                    (None, false)
                }
                Err(e) => {
                    note = Some(format!("{e}; streaming video only"));
                    (None, false)
                }
            },
        };
        if let Some(n) = &note {
            log::warn!("{n}");
        }
        let mut block_frames = 1;
        let mut audio_loop = AudioLoop::Once;
        if let Some(a) = &audio {
            let af = AudioFormat {
                sample_rate: a.sample_rate(),
                channels: a.channels(),
            };
            block_frames = audio_block_frames(af, max_frames(af.channels));
            format.audio = Some(af);
            audio_loop = match (opts.looping, from_file) {
                (false, _) => AudioLoop::Once,
                (true, false) => AudioLoop::Natural,
                (true, true) => {
                    // One period for both tracks: the longer of the two.
                    let rate = f64::from(af.sample_rate);
                    let video = frame_count.map(|n| {
                        (n as f64 * f64::from(fps_den) / f64::from(fps_num) * rate).ceil() as u64
                    });
                    match (video, a.total_frames()) {
                        (Some(v), Some(a)) => AudioLoop::Period { frames: v.max(a) },
                        (Some(x), None) | (None, Some(x)) => AudioLoop::Period { frames: x },
                        (None, None) => {
                            log::warn!(
                                "{}: duration unknown; audio and video loop separately and may drift apart",
                                path.display()
                            );
                            AudioLoop::Natural
                        }
                    }
                }
            };
        }
        Ok(FileSource {
            path: path.to_path_buf(),
            cap,
            first: Some((first, first_ms)),
            format,
            frame_count,
            audio,
            audio_loop,
            block_frames,
            quality: opts.quality,
            subsampling: opts.subsampling,
            looping: opts.looping,
            progress: opts.progress,
            audio_note: note,
        })
    }

    /// Why the file streams without its audio, if it does (what `open` warned about).
    pub fn audio_note(&self) -> Option<&str> {
        self.audio_note.as_deref()
    }

    /// How the audio repeats with `--loop` (for tests and diagnostics).
    pub fn audio_loop(&self) -> AudioLoop {
        self.audio_loop
    }

    /// Frames in the file, if the container says.
    pub fn frame_count(&self) -> Option<u64> {
        self.frame_count
    }
}

/// An indicatif draw target that draws a one-line bar on the terminal line above the cursor
/// (saving and restoring the cursor around it), leaving the cursor's line to the role's
/// status line.
#[derive(Debug, Default)]
struct LineAbove {
    text: std::sync::Mutex<String>,
}

impl indicatif::TermLike for LineAbove {
    fn width(&self) -> u16 {
        1000 // lines are short; trailing padding is trimmed
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        if let Ok(mut t) = self.text.lock() {
            t.push_str(s.trim_start_matches('\r'));
        }
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        if let Ok(mut t) = self.text.lock() {
            t.clear();
        }
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        use std::io::Write;
        let text = match self.text.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return Ok(()),
        };
        // Save cursor, up one line, clear it, draw, restore cursor.
        let mut err = std::io::stderr().lock();
        write!(err, "\x1b7\x1b[1A\r\x1b[2K{}\x1b8", text.trim_end())?;
        err.flush()
    }
}

/// Progress display of a file source.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    name: String,
    duration_s: Option<f64>,
    next_line: Instant,
    window: (Instant, u64),
    fps: f64,
    enabled: bool,
}

impl Progress {
    fn new(enabled: bool, path: &Path, duration_s: Option<f64>) -> Progress {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let len = duration_s.map_or(0, |d| (d * 1000.0) as u64);
            // The bar lives on its own line above the cursor: serve's status line keeps the
            // cursor's line, and the two never overwrite each other.
            eprintln!();
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(len),
                indicatif::ProgressDrawTarget::term_like_with_hz(Box::new(LineAbove::default()), 2),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} [{bar:24}] {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            let mut short: String = name.chars().take(24).collect();
            if short.len() < name.len() {
                short.push('~');
            }
            bar.set_prefix(short);
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            name,
            duration_s,
            next_line: now + Duration::from_secs(10),
            window: (now, 0),
            fps: 0.0,
            enabled,
        }
    }

    fn update(&mut self, pos_s: f64, loop_index: u64, frames: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.window.0).as_secs_f64();
        if dt >= 1.0 {
            self.fps = (frames - self.window.1) as f64 / dt;
            self.window = (now, frames);
        }
        let total = self
            .duration_s
            .map_or_else(|| "?".to_string(), |d| format!("{d:.1} s"));
        let looped = if loop_index > 0 {
            format!(" | loop {}", loop_index + 1)
        } else {
            String::new()
        };
        let msg = format!("{pos_s:.1} / {total} | {:.1} fps{looped}", self.fps);
        if let Some(bar) = &self.bar {
            bar.set_position((pos_s * 1000.0) as u64);
            bar.set_message(msg);
        } else if now >= self.next_line {
            self.next_line = now + Duration::from_secs(10);
            eprintln!("file {}: {msg}", self.name);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            // Leave the last drawing as it is: by now the status line may have ended its
            // line, and "the line above" is no longer the bar's.
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            bar.finish();
        }
    }
}

/// The video producer of a file source.
struct VideoJob {
    path: PathBuf,
    cap: VideoCapture,
    first: Option<(Mat, f64)>,
    fps_num: u32,
    fps_den: u32,
    quality: u8,
    subsampling: Subsampling,
    looping: bool,
    /// Loop period in audio sample frames at `rate`, when audio and video share one.
    period: Option<(u64, u32)>,
    progress: Progress,
}

impl VideoJob {
    fn frame_pts(&self, index: u64) -> u64 {
        (u128::from(index) * 90_000 * u128::from(self.fps_den) / u128::from(self.fps_num.max(1)))
            as u64
    }

    /// Start of loop `k` on the 90 kHz clock, with a shared period.
    fn period_offset(&self, k: u64) -> Option<u64> {
        self.period.map(|(frames, rate)| {
            (u128::from(k) * u128::from(frames) * 90_000 / u128::from(rate.max(1))) as u64
        })
    }

    /// Decodes the next frame without converting it (or stands for the one `open` read);
    /// returns its position in ms (negative if unknown), `None` at the end.
    fn grab(&mut self) -> Option<f64> {
        if let Some((_, ms)) = &self.first {
            return Some(*ms);
        }
        match self.cap.grab() {
            Ok(true) => Some(self.cap.get(videoio::CAP_PROP_POS_MSEC).unwrap_or(-1.0)),
            Ok(false) => None,
            Err(e) => {
                log::warn!("{}: video decoding stopped: {e}", self.path.display());
                None
            }
        }
    }

    /// The grabbed frame as BGR into `mat`; false if that fails.
    fn retrieve(&mut self, mat: &mut Mat) -> bool {
        if let Some((first, _)) = self.first.take() {
            *mat = first;
            return true;
        }
        matches!(self.cap.retrieve(mat, 0), Ok(true)) && !mat.empty()
    }

    /// Back to the first frame for the next loop; false if that fails.
    fn rewind(&mut self) -> bool {
        if matches!(self.cap.set(videoio::CAP_PROP_POS_FRAMES, 0.0), Ok(true)) {
            return true;
        }
        match open_capture(&self.path) {
            Ok(cap) => {
                self.cap = cap;
                true
            }
            Err(e) => {
                log::warn!("cannot loop: {e}");
                false
            }
        }
    }

    fn run(mut self, start: Instant, tx: &SyncSender<MediaItem>, halt: &AtomicBool) -> SourceStats {
        let mut stats = SourceStats::default();
        let mut encoders = match Encoders::inline(self.quality, self.subsampling) {
            Ok(e) => e,
            Err(e) => {
                log::error!("serve: cannot set up the JPEG encoder: {e}");
                return stats;
            }
        };
        let interval = Duration::from_nanos(
            (1_000_000_000u128 * u128::from(self.fps_den) / u128::from(self.fps_num.max(1))) as u64,
        );
        let interval90 = self.frame_pts(1).max(1);
        let (mut encode_total, mut bytes_total, mut encoded) = (Duration::ZERO, 0u64, 0u64);
        let mut spare: Vec<Mat> = Vec::new();
        let mut loop_index = 0u64;
        let mut loop_offset = 0u64; // 90 kHz start of the current loop
        let mut index = 0u64; // frame index in the current loop
        let mut last_t = None::<u64>; // last timestamp in the current loop
        let mut eof = false;
        let mut warned_late = false;
        let mut last_submit = None::<Instant>;
        'frames: loop {
            // Keep the encoders busy: read and submit until they are full.
            while !eof && !encoders.full() && !halt.load(Ordering::Relaxed) {
                let Some(ms) = self.grab() else {
                    // End of the file.
                    if !self.looping || index == 0 || !self.rewind() {
                        eof = true;
                        break;
                    }
                    let next = match self.period_offset(loop_index + 1) {
                        Some(o) => o,
                        None => loop_offset + last_t.unwrap_or(0) + interval90,
                    };
                    loop_offset = next;
                    loop_index += 1;
                    index = 0;
                    last_t = None;
                    continue;
                };
                // The file's timestamp, or index / fps where it has none.
                let by_index = self.frame_pts(index);
                let mut t = if ms.is_finite() && ms >= 0.0 && (ms > 0.0 || index == 0) {
                    (ms * 90.0).round() as u64
                } else {
                    by_index
                };
                if let Some(prev) = last_t {
                    if t <= prev {
                        t = prev + interval90;
                    }
                }
                index += 1;
                last_t = Some(t);
                let pts = loop_offset + t;
                if self
                    .period_offset(loop_index + 1)
                    .is_some_and(|end| pts >= end)
                {
                    continue; // beyond the shared period: the audio has moved on
                }
                // Behind time: skip the conversion and the encoding to catch up, but let a
                // frame through now and then so that a file that decodes too slowly still
                // shows something.
                let now = Instant::now();
                if now > due(start, pts) + LATE_SKIP
                    && last_submit.is_some_and(|t| now < t + LATE_SKIP)
                {
                    stats.frames_dropped += 1;
                    if !warned_late {
                        warned_late = true;
                        log::warn!(
                            "{}: decoding and encoding cannot keep up with {:.1} fps; late frames are skipped",
                            self.path.display(),
                            f64::from(self.fps_num) / f64::from(self.fps_den.max(1))
                        );
                    }
                    continue;
                }
                let mut mat = spare.pop().unwrap_or_default();
                if !self.retrieve(&mut mat) {
                    log::warn!(
                        "{}: a frame failed to convert; skipped",
                        self.path.display()
                    );
                    stats.frames_dropped += 1;
                    continue;
                }
                last_submit = Some(now);
                if let Err(mat) = encoders.submit(pts, mat) {
                    spare.push(mat);
                    break 'frames;
                }
            }
            let Some(done) = encoders.collect() else {
                break;
            };
            spare.push(done.mat);
            let jpeg = match done.jpeg {
                Ok(j) => j,
                Err(e) => {
                    log::error!("{}: JPEG encoding failed: {e}", self.path.display());
                    break;
                }
            };
            encode_total += done.took;
            bytes_total += jpeg.len() as u64;
            encoded += 1;
            // One encoder too slow for the frame rate: switch to a pool.
            if encoded == POOL_PROBE_FRAMES && encoders.threads() == 1 && encoders.in_flight() == 0
            {
                let need = encoders_needed(encode_total / encoded as u32, interval);
                if need > 1 {
                    match Encoders::pool(need, self.quality, self.subsampling) {
                        Ok(p) => {
                            log::info!(
                                "{}: {need} encoder threads ({:.1} ms per frame, {:.1} ms between frames)",
                                self.path.display(),
                                (encode_total / encoded as u32).as_secs_f64() * 1e3,
                                interval.as_secs_f64() * 1e3
                            );
                            encoders = p;
                        }
                        Err(e) => log::warn!("cannot start encoder threads: {e}"),
                    }
                }
            }
            if !sleep_until(due(start, done.pts), halt) {
                break;
            }
            if tx
                .send(MediaItem::Video {
                    pts: done.pts,
                    jpeg: Bytes::from(jpeg),
                })
                .is_err()
            {
                break;
            }
            stats.frames += 1;
            let pos = done.pts.saturating_sub(loop_offset) as f64 / 90_000.0;
            self.progress.update(pos, loop_index, stats.frames);
            if spare.len() > 8 {
                spare.truncate(8);
            }
        }
        self.progress.finish();
        if encoded > 0 {
            stats.mean_encode_ms = encode_total.as_secs_f64() * 1e3 / encoded as f64;
            stats.mean_jpeg_bytes = bytes_total as f64 / encoded as f64;
        }
        stats
    }
}

impl MediaSource for FileSource {
    fn format(&self) -> &StreamFormat {
        &self.format
    }

    fn run(
        self: Box<Self>,
        start: Instant,
        sink: &mut MediaSink<'_>,
        stop: &AtomicBool,
    ) -> SourceStats {
        let this = *self;
        let duration_s = this
            .frame_count
            .map(|n| n as f64 * f64::from(this.format.fps_den) / f64::from(this.format.fps_num));
        let period = match (this.audio_loop, this.format.audio) {
            (AudioLoop::Period { frames }, Some(a)) => Some((frames, a.sample_rate)),
            _ => None,
        };
        let job = VideoJob {
            progress: Progress::new(this.progress, &this.path, duration_s),
            path: this.path,
            cap: this.cap,
            first: this.first,
            fps_num: this.format.fps_num,
            fps_den: this.format.fps_den,
            quality: this.quality,
            subsampling: this.subsampling,
            looping: this.looping,
            period,
        };
        let (block, mode) = (this.block_frames, this.audio_loop);
        let halt = AtomicBool::new(false);
        let (tx, rx) = item_channel();
        std::thread::scope(|s| {
            let halt = &halt;
            let audio = this.audio.map(|mut a| {
                let tx = tx.clone();
                s.spawn(move || run_audio_pump(&mut *a, block, mode, start, &tx, halt))
            });
            let video = s.spawn(move || job.run(start, &tx, halt));
            forward_items(rx, sink, stop, halt);
            let mut stats = video.join().unwrap_or_default();
            stats.audio_blocks = audio.map_or(0, |a| a.join().unwrap_or_default());
            stats
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, Size};
    use opencv::prelude::{VideoWriterTrait, VideoWriterTraitConst};
    use opencv::videoio::VideoWriter;

    fn tmp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("framecast-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A 320x240 MJPEG AVI (no audio) of `frames` frames at `fps`, each a flat grey level.
    fn write_avi(path: &Path, frames: u32, fps: f64) {
        write_video(path, ('M', 'J', 'P', 'G'), frames, fps);
    }

    /// A 320x240 video (no audio) in the container `path` names, with codec `fourcc`.
    fn write_video(path: &Path, fourcc: (char, char, char, char), frames: u32, fps: f64) {
        let fourcc = VideoWriter::fourcc(fourcc.0, fourcc.1, fourcc.2, fourcc.3).unwrap();
        let mut w = VideoWriter::new(path, fourcc, fps, Size::new(320, 240), true).unwrap();
        assert!(
            w.is_opened().unwrap(),
            "OpenCV cannot write {}",
            path.display()
        );
        for i in 0..frames {
            let v = f64::from(20 + i * 10);
            let m = Mat::new_rows_cols_with_default(
                240,
                320,
                opencv::core::CV_8UC3,
                Scalar::new(v, v, v, 0.0),
            )
            .unwrap();
            w.write(&m).unwrap();
        }
        w.release().unwrap();
    }

    fn opts() -> FileOptions {
        FileOptions {
            quality: 80,
            subsampling: Subsampling::Yuv420,
            looping: false,
            audio: FileAudioChoice::FromFile,
            progress: false,
        }
    }

    fn collect(src: FileSource, secs: u64) -> (Vec<MediaItem>, SourceStats, Duration) {
        let mut items = Vec::new();
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let stats = Box::new(src).run(
            start,
            &mut |item| {
                items.push(item);
                Instant::now() < deadline
            },
            &stop,
        );
        (items, stats, start.elapsed())
    }

    #[test]
    fn mjpeg_avi_frames_and_timestamps() {
        let path = tmp_dir().join("ten.avi");
        write_avi(&path, 10, 25.0);
        let src = FileSource::open(&path, opts(), &|_| 240).unwrap();
        let f = src.format().clone();
        assert_eq!((f.width, f.height, f.fps_num, f.fps_den), (320, 240, 25, 1));
        assert_eq!(f.audio, None, "no audio: video only");
        // symphonia does not read AVI: said so, and the video goes on.
        let note = src.audio_note().unwrap();
        assert!(note.contains("not this container"), "{note}");
        assert!(note.ends_with("streaming video only"), "{note}");
        assert_eq!(src.frame_count(), Some(10));
        let (items, stats, took) = collect(src, 10);
        assert_eq!(stats.frames, 10);
        assert_eq!(stats.audio_blocks, 0);
        let mut dec = JpegDecoder::new().unwrap();
        let pts: Vec<u64> = items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                MediaItem::Video { pts, jpeg } => {
                    let frame = dec.decode_rgb_default(jpeg).unwrap();
                    assert_eq!((frame.width, frame.height), (320, 240));
                    // The grey level survives MJPEG -> BGR -> JPEG.
                    let want = 20 + i as i32 * 10;
                    let got = i32::from(frame.pixel(160, 120).unwrap()[0]);
                    assert!((got - want).abs() <= 4, "frame {i}: {got} vs {want}");
                    *pts
                }
                MediaItem::Audio { .. } => panic!("audio from a silent file"),
            })
            .collect();
        // 25 fps: 3600 ticks apart, from 0.
        assert_eq!(pts, (0..10).map(|i| i * 3600).collect::<Vec<_>>());
        // Paced in real time: the last frame is due at 360 ms.
        assert!(took >= Duration::from_millis(350), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn mp4_without_audio_warns_and_streams_video() {
        let path = tmp_dir().join("silent.mp4");
        write_video(&path, ('m', 'p', '4', 'v'), 6, 30.0);
        let src = FileSource::open(&path, opts(), &|_| 240).unwrap();
        assert_eq!(src.format().audio, None);
        assert_eq!(
            src.audio_note(),
            Some(format!("no audio track in {}; streaming video only", path.display()).as_str())
        );
        let (items, stats, _) = collect(src, 10);
        assert_eq!(stats.frames, 6);
        assert_eq!(items.len(), 6);
        let pts: Vec<u64> = items
            .iter()
            .filter_map(|i| match i {
                MediaItem::Video { pts, .. } => Some(*pts),
                MediaItem::Audio { .. } => None,
            })
            .collect();
        assert_eq!(pts, (0..6).map(|i| i * 3000).collect::<Vec<_>>());
    }

    #[test]
    fn looping_keeps_timestamps_increasing() {
        let path = tmp_dir().join("loop.avi");
        write_avi(&path, 4, 50.0);
        let src = FileSource::open(
            &path,
            FileOptions {
                looping: true,
                ..opts()
            },
            &|_| 240,
        )
        .unwrap();
        let mut items = Vec::new();
        let stop = AtomicBool::new(false);
        Box::new(src).run(
            Instant::now(),
            &mut |item| {
                items.push(item);
                items.len() < 10
            },
            &stop,
        );
        let pts: Vec<u64> = items
            .iter()
            .filter_map(|i| match i {
                MediaItem::Video { pts, .. } => Some(*pts),
                MediaItem::Audio { .. } => None,
            })
            .collect();
        assert_eq!(pts, (0..10).map(|i| i * 1800).collect::<Vec<_>>());
    }

    #[test]
    fn wav_replaces_the_audio() {
        let dir = tmp_dir();
        let path = dir.join("wav.avi");
        write_avi(&path, 5, 25.0);
        let wav_path = dir.join("tone.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wav_path, spec).unwrap();
        for i in 0..4800 {
            w.write_sample((i % 100) as i16).unwrap();
            w.write_sample(-((i % 100) as i16)).unwrap();
        }
        w.finalize().unwrap();
        let wav = WavAudio::open(&wav_path).unwrap();
        let src = FileSource::open(
            &path,
            FileOptions {
                audio: FileAudioChoice::Wav(wav),
                ..opts()
            },
            &|_| 240,
        )
        .unwrap();
        assert_eq!(
            src.format().audio,
            Some(AudioFormat {
                sample_rate: 48_000,
                channels: 2
            })
        );
        let (items, stats, _) = collect(src, 10);
        assert_eq!(stats.frames, 5);
        // 100 ms of audio in 5 ms blocks of 240 frames.
        assert_eq!(stats.audio_blocks, 20);
        let audio: Vec<(u64, usize)> = items
            .iter()
            .filter_map(|i| match i {
                MediaItem::Audio { pts, samples } => Some((*pts, samples.len())),
                MediaItem::Video { .. } => None,
            })
            .collect();
        assert_eq!(audio.len(), 20);
        for (k, (pts, len)) in audio.iter().enumerate() {
            assert_eq!((*pts, *len), (k as u64 * 450, 480));
        }
    }

    #[test]
    fn missing_and_unreadable_files_are_clear_errors() {
        let err = FileSource::open(Path::new("/nonexistent/x.mp4"), opts(), &|_| 240).unwrap_err();
        assert!(matches!(err, FileSourceError::NotFound { .. }));
        assert_eq!(err.to_string(), "no such file");
        let junk = tmp_dir().join("junk.mp4");
        std::fs::write(&junk, b"this is not a video, just some text").unwrap();
        let err = FileSource::open(&junk, opts(), &|_| 240).unwrap_err();
        assert!(matches!(err, FileSourceError::NotVideo { .. }), "{err}");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[test]
    fn encoder_reads_bgr_in_place_and_from_a_roi() {
        let mut m = Mat::new_rows_cols_with_default(
            64,
            64,
            opencv::core::CV_8UC3,
            Scalar::new(255.0, 0.0, 0.0, 0.0), // blue in BGR
        )
        .unwrap();
        let mut enc = BgrEncoder::new(90, Subsampling::Yuv444).unwrap();
        let mut dec = JpegDecoder::new().unwrap();
        let rgb = dec.decode_rgb_default(&enc.encode(&m).unwrap()).unwrap();
        let [r, g, b] = rgb.pixel(10, 10).unwrap();
        assert!(b > 240 && r < 15 && g < 15, "{r} {g} {b}");
        // A region of interest is not continuous: rows are gathered.
        let roi = Mat::roi(&m, opencv::core::Rect::new(8, 8, 16, 16))
            .unwrap()
            .try_clone()
            .unwrap();
        assert!(roi.is_continuous());
        let view = Mat::roi_mut(&mut m, opencv::core::Rect::new(8, 8, 16, 16)).unwrap();
        assert!(!view.is_continuous());
        let jpeg = enc.encode(&view).unwrap();
        assert_eq!(dec.read_header(&jpeg).unwrap().width, 16);
        let gray =
            Mat::new_rows_cols_with_default(8, 8, opencv::core::CV_8UC1, Scalar::all(0.0)).unwrap();
        assert!(matches!(enc.encode(&gray), Err(EncodeError::NotBgr { .. })));
    }

    #[test]
    fn pool_keeps_order() {
        let mut pool = Encoders::pool(3, 80, Subsampling::Yuv420).unwrap();
        let mut out = Vec::new();
        for i in 0..10u64 {
            while pool.full() {
                out.push(pool.collect().unwrap());
            }
            let m = Mat::new_rows_cols_with_default(
                48,
                64,
                opencv::core::CV_8UC3,
                Scalar::all(i as f64 * 20.0),
            )
            .unwrap();
            pool.submit(i * 10, m).unwrap();
        }
        while let Some(e) = pool.collect() {
            out.push(e);
        }
        let pts: Vec<u64> = out.iter().map(|e| e.pts).collect();
        assert_eq!(pts, (0..10).map(|i| i * 10).collect::<Vec<_>>());
        assert!(out.iter().all(|e| e.jpeg.is_ok()));
    }

    #[test]
    fn fps_fractions() {
        assert_eq!(fps_fraction(30.0), (30, 1));
        assert_eq!(fps_fraction(29.97002997), (30000, 1001));
        assert_eq!(fps_fraction(59.94005994), (60000, 1001));
        assert_eq!(fps_fraction(12.5), (12500, 1000));
        assert_eq!(fps_fraction(0.0), (30, 1));
        assert_eq!(fps_fraction(f64::NAN), (30, 1));
        assert_eq!(
            encoders_needed(Duration::from_millis(10), Duration::from_millis(33)),
            1
        );
        assert!(encoders_needed(Duration::from_millis(50), Duration::from_millis(33)) >= 2);
    }
}
