//! `serve --source file:PATH`: a video file streamed in real time, with its sound.
//!
//! - Video: FFmpeg's demuxers and decoders (libavformat, libavcodec through `ffmpeg-next`:
//!   whatever ffplay plays) decode frames, each stamped with its own timestamp on the file's
//!   timeline (variable frame rates kept as they are), kept as the decoder's planar YCbCr
//!   ([`YuvFrame`]: stretched to full range if it is TV range, libswscale only when the
//!   layout is not the JPEG's subsampling) and turned as the track's display matrix says (a
//!   phone's `rotate=90`), as ffplay shows them (`ffvideo`). Each frame goes to libjpeg-turbo's
//!   raw YUV compression, a band of rows at a time, with no colour conversion
//!   ([`FrameEncoder::encode_planes`], [`FrameEncoder::encode_yuv`]). When one
//!   encoder cannot keep up with the frame rate, a small pool of encoder threads takes over,
//!   output kept in order ([`Encoders`]).
//! - Audio: the best audio track of the same file, through FFmpeg too (any codec and layout
//!   the build decodes: AAC, Vorbis, Opus, PCM, ...), converted by libswresample to
//!   interleaved s16 at the stream's rate, more than two channels downmixed to stereo
//!   ([`FileAudio`]). Both tracks share one timeline: the earliest track start is `t = 0`,
//!   and a track that starts later keeps its offset. A file with no audio track, or one that
//!   cannot be decoded, streams video only after one warning naming the reason.
//!   `--audio FILE.wav` replaces it.
//! - End: without `--loop` the source returns at the end of the file (or where a truncated
//!   file's data ends), and `serve` ends the stream (proto-spec.md §6.9).
//! - Pacing: video and audio run on their own threads and send each item when
//!   `start + pts` comes (see [`super::wav_source`]); video frames are decoded and compressed
//!   ahead of time in bursts and sent by a pacer thread of their own (see `burst`).
//! - `--loop`: timestamps keep increasing. With the file's own audio both tracks repeat on
//!   one period, the longer of the two, so they stay aligned loop after loop (the shorter one
//!   leaves a gap; audio is padded with silence there).
//! - Progress: a bar on stderr (indicatif) when stderr is a terminal, else a line every 10 s.
//!
//! # Layout
//!
//! `demux` (the container: timeline, rotation), `ffvideo` (the video track through FFmpeg),
//! `open` (probing the file, choosing the audio), `video` (timestamps, bursts, the pacer),
//! `burst` (the queue between the video's encoder and its pacer),
//! `yuv` (the planar frame: copying, turning, range), `encode` (planar YUV to JPEG, inline
//! or pooled), `audio` (the file's own sound track), `progress`
//! (the bar or periodic line); [`FileSource`] and its run, joining both tracks, are here.
#![cfg(all(feature = "ffmpeg", feature = "jpeg"))]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::Subsampling;
use super::source::{MediaSink, MediaSource, SourceStats, StreamFormat};
use super::wav_source::{
    AudioLoop, PcmReader, WavAudio, forward_items, item_channel, run_audio_pump,
};

mod audio;
mod band;
mod burst;
mod demux;
mod encode;
mod ffvideo;
mod open;
mod progress;
#[cfg(test)]
mod tests;
mod video;
mod yuv;

pub use audio::FileAudio;
pub use band::BandError;
pub use demux::display_rotation;
pub use encode::{
    EncodeError, Encoded, Encoders, FrameEncoder, Picture, WorkerHandle, encoders_needed,
};
pub use video::fps_fraction;
pub use yuv::{Range, Turn, YuvFrame, YuvPlanes, copy_plane, plane_sizes};

use progress::Progress;
use video::VideoJob;

/// Errors opening a video file.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The file does not exist.
    #[error("no such file")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// FFmpeg cannot open the file, or its video track cannot be decoded.
    #[error("cannot stream {path}: {detail}")]
    NotVideo {
        /// The path given.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The JPEG encoder could not be set up.
    #[error(transparent)]
    Encoder(#[from] EncodeError),
}

/// Where a file source's audio comes from.
#[derive(Debug)]
pub enum FileAudioChoice {
    /// The file's own audio track (if it has one FFmpeg decodes).
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
    reader: ffvideo::VideoReader,
    /// The frame read by `open` (proof that the file decodes) and its position in ms.
    first: Option<(YuvFrame, f64)>,
    format: StreamFormat,
    /// Frames in the file, if the container says.
    frame_count: Option<u64>,
    /// Length of the video track in seconds, if known.
    duration: Option<f64>,
    audio: Option<Box<dyn PcmReader>>,
    audio_loop: AudioLoop,
    block_frames: usize,
    quality: u8,
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
        let duration_s = this.duration;
        let period = match (this.audio_loop, this.format.audio) {
            (AudioLoop::Period { frames }, Some(a)) => Some((frames, a.sample_rate)),
            _ => None,
        };
        let job = VideoJob {
            progress: Progress::new(this.progress, &this.path, duration_s),
            path: this.path,
            reader: this.reader,
            first: this.first,
            fps_num: this.format.fps_num,
            fps_den: this.format.fps_den,
            quality: this.quality,
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
