//! Opening a video file: FFmpeg's demuxer and decoder for the video track, a first frame
//! decoded as proof that the file reads, the frame rate and length, and the choice of audio
//! with its loop mode.

use std::path::Path;

use super::ffvideo::{Rotation, VideoReader};
use super::video::fps_fraction;
use super::yuv::YuvFrame;
use super::{FileAudio, FileAudioChoice, FileOptions, FileSource, FileSourceError, FrameEncoder};
use crate::media::source::{AudioFormat, StreamFormat, audio_block_frames};
use crate::media::wav_source::{AudioLoop, PcmReader};

impl FileSource {
    /// Opens `path`, decodes its first frame (so an unreadable file fails here, not later),
    /// and opens its audio as `opts` says. `max_frames(channels)` bounds the sample frames of
    /// an audio block (from the datagram size).
    ///
    /// A file with no audio track, or one that cannot be decoded, is not an error: it warns
    /// once, naming the reason, and streams video only (`format().audio` is `None`).
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
        let not_video = |detail: String| FileSourceError::NotVideo {
            path: path.to_path_buf(),
            detail,
        };
        let from_file = matches!(opts.audio, FileAudioChoice::FromFile);
        let mut reader = VideoReader::open(path, from_file, opts.subsampling).map_err(not_video)?;
        let mut first = YuvFrame::default();
        let Some(first_ms) = reader.grab() else {
            return Err(not_video("no video frame decodes".into()));
        };
        if !reader.retrieve(&mut first) {
            return Err(not_video(
                "its first frame cannot be converted to planar YUV".into(),
            ));
        }
        if reader.rotation() != Rotation::None {
            log::info!(
                "{}: turned {:?} for display, as its display matrix says",
                path.display(),
                reader.rotation()
            );
        }
        let (fps_num, fps_den) = fps_fraction(reader.fps.unwrap_or(30.0));
        let duration = reader.duration;
        let frame_count = reader.frames.or_else(|| {
            duration.map(|d| (d * f64::from(fps_num) / f64::from(fps_den)).round() as u64)
        });
        let mut format = StreamFormat {
            width: first.width,
            height: first.height,
            fps_num,
            fps_den,
            audio: None,
        };
        // Make one encoder now: a bad quality fails here.
        FrameEncoder::new(opts.quality)?;

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
                    let video = duration.map(|d| (d * rate).ceil() as u64);
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
            reader,
            first: Some((first, first_ms)),
            format,
            frame_count,
            duration,
            audio,
            audio_loop,
            block_frames,
            quality: opts.quality,
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

    /// Frames in the file, if the container says (or its duration times its frame rate).
    pub fn frame_count(&self) -> Option<u64> {
        self.frame_count
    }
}
