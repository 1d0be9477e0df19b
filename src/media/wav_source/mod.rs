//! Audio from a WAV file (`serve --audio FILE.wav`), and the machinery that runs a source's
//! producers (video, audio) on their own threads and paces them in real time.
//!
//! [`WavAudio`] reads 8/16/24/32-bit integer and 32-bit float WAVs with hound and hands out
//! interleaved s16 ([`PcmReader`]). Files with more than two channels are downmixed to stereo
//! ([`downmix_to_stereo`]): the players output stereo.
//!
//! With the `jpeg` feature, [`WithAudio`] adds such a file's audio to a video-only
//! [`MediaSource`] (the test pattern, a webcam), and [`run_audio_pump`] / [`forward_items`]
//! are the building blocks the file source uses too: every producer thread (for a file's
//! video, the pacer behind its encoder) sleeps until its item is due (`start + pts`) and
//! sends it into one channel; the source's own thread forwards
//! that channel to the sink and turns a stop request or a vanished sink into one `halt` flag
//! that every producer watches.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Most channels a source may have before it is downmixed: what the wire carries (§4.3).
pub const MAX_CHANNELS: u16 = 8;

/// Lowest sample rate the wire accepts.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// Highest sample rate the wire accepts.
pub const MAX_SAMPLE_RATE: u32 = 192_000;

/// Errors opening or reading a WAV file.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file does not exist.
    #[error("{path}: no such file")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file is not a WAV that hound can read (or reading it failed).
    #[error("{path}: not a readable WAV file ({source}); expected PCM or float WAV")]
    Read {
        /// The path given.
        path: PathBuf,
        /// What hound reported.
        #[source]
        source: hound::Error,
    },
    /// The WAV's sample layout is not one this reader converts.
    #[error(
        "{path}: {bits}-bit {kind} samples are not supported; use 8/16/24/32-bit PCM or 32-bit float"
    )]
    SampleFormat {
        /// The path given.
        path: PathBuf,
        /// Bits per sample.
        bits: u16,
        /// "integer" or "float".
        kind: &'static str,
    },
    /// The WAV's rate or channel count cannot be streamed.
    #[error(
        "{path}: {sample_rate} Hz, {channels} channels cannot be streamed; need {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz and 1-{MAX_CHANNELS} channels"
    )]
    Layout {
        /// The path given.
        path: PathBuf,
        /// Samples per second.
        sample_rate: u32,
        /// Channels.
        channels: u16,
    },
}

/// Errors from a [`PcmReader`].
#[derive(Debug, thiserror::Error)]
pub enum PcmError {
    /// From a WAV file.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// From a movie file's audio track (FFmpeg): the container, codec or layout named.
    #[error("{path}: cannot decode the audio: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        message: String,
    },
}

/// Something that hands out interleaved s16 audio in the format it announces, from the
/// start of its input again after [`rewind`](PcmReader::rewind).
pub trait PcmReader: Send {
    /// Samples per second.
    fn sample_rate(&self) -> u32;
    /// Interleaved channels of what [`read_frames`](PcmReader::read_frames) appends (1..=8).
    fn channels(&self) -> u8;
    /// Sample frames in the whole input, when known.
    fn total_frames(&self) -> Option<u64>;
    /// Appends up to `frames` sample frames to `out`; returns how many it appended, 0 only at
    /// the end of the input.
    fn read_frames(&mut self, frames: usize, out: &mut Vec<i16>) -> Result<usize, PcmError>;
    /// Starts again from the beginning of the input.
    fn rewind(&mut self) -> Result<(), PcmError>;
}

/// Mixes `channels`-channel interleaved audio into stereo, appending to `out`.
///
/// Channels are taken in the WAVE / symphonia order (front left, front right, centre, LFE,
/// back left, back right, side left, side right): fronts go to their side, the centre to
/// both at -3 dB, the LFE is dropped, surrounds go to their side at -3 dB. Each output is
/// scaled so that its gains sum to at most 1 (no clipping). Mono and stereo are copied.
pub fn downmix_to_stereo(input: &[i16], channels: usize, out: &mut Vec<i16>) {
    if channels == 0 {
        return;
    }
    if channels <= 2 {
        out.extend_from_slice(input);
        return;
    }
    const H: f32 = std::f32::consts::FRAC_1_SQRT_2;
    // (left gain, right gain) per input channel for the usual layouts.
    let gains: Vec<(f32, f32)> = (0..channels)
        .map(|c| match (channels, c) {
            (_, 0) => (1.0, 0.0),
            (_, 1) => (0.0, 1.0),
            (4, 2) => (H, 0.0),       // quad: back left
            (4, 3) => (0.0, H),       // quad: back right
            (_, 2) => (H, H),         // centre
            (5, 3) => (H, 0.0),       // 5.0: back left
            (5, 4) => (0.0, H),       // 5.0: back right
            (_, 3) => (0.0, 0.0),     // LFE
            (7, 4) => (H * H, H * H), // 6.1: back centre
            (_, c) if c % 2 == 0 => (H, 0.0),
            _ => (0.0, H),
        })
        .collect();
    let (sum_l, sum_r) = gains
        .iter()
        .fold((0.0f32, 0.0f32), |(l, r), g| (l + g.0, r + g.1));
    let (norm_l, norm_r) = (1.0 / sum_l.max(1.0), 1.0 / sum_r.max(1.0));
    out.reserve(input.len() / channels * 2);
    for frame in input.chunks_exact(channels) {
        let (mut l, mut r) = (0.0f32, 0.0f32);
        for (s, g) in frame.iter().zip(&gains) {
            l += f32::from(*s) * g.0;
            r += f32::from(*s) * g.1;
        }
        out.push(to_i16(l * norm_l));
        out.push(to_i16(r * norm_r));
    }
}

fn to_i16(x: f32) -> i16 {
    x.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// A WAV file read as interleaved s16 (stereo when the file has more than two channels).
pub struct WavAudio {
    path: PathBuf,
    reader: hound::WavReader<BufReader<WavFile>>,
    spec: hound::WavSpec,
    /// Samples of the file as read, before the downmix.
    raw: Vec<i16>,
}

impl std::fmt::Debug for WavAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavAudio")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl WavAudio {
    /// Opens `path` and checks that its samples can be converted and streamed.
    pub fn open(path: &Path) -> Result<WavAudio, WavError> {
        if !path.exists() {
            return Err(WavError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let read_err = |source| WavError::Read {
            path: path.to_path_buf(),
            source,
        };
        let open = || File::open(path).map_err(|e| read_err(hound::Error::IoError(e)));
        let reader = match hound::WavReader::new(BufReader::new(WavFile::plain(open()?))) {
            Ok(r) => r,
            // A PCM or float header padded to a longer fmt chunk, which ffmpeg reads too.
            Err(hound::Error::FormatError(m)) if m.contains("fmt chunk size") => {
                match WavFile::with_short_fmt(open()?)
                    .map_err(|e| read_err(hound::Error::IoError(e)))?
                {
                    Some(f) => hound::WavReader::new(BufReader::new(f)).map_err(read_err)?,
                    None => return Err(read_err(hound::Error::FormatError(m))),
                }
            }
            Err(e) => return Err(read_err(e)),
        };
        let spec = reader.spec();
        let supported = match spec.sample_format {
            hound::SampleFormat::Int => matches!(spec.bits_per_sample, 8 | 16 | 24 | 32),
            hound::SampleFormat::Float => spec.bits_per_sample == 32,
        };
        if !supported {
            return Err(WavError::SampleFormat {
                path: path.to_path_buf(),
                bits: spec.bits_per_sample,
                kind: match spec.sample_format {
                    hound::SampleFormat::Int => "integer",
                    hound::SampleFormat::Float => "float",
                },
            });
        }
        if spec.channels == 0
            || spec.channels > MAX_CHANNELS
            || !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&spec.sample_rate)
        {
            return Err(WavError::Layout {
                path: path.to_path_buf(),
                sample_rate: spec.sample_rate,
                channels: spec.channels,
            });
        }
        if spec.channels > 2 {
            log::warn!(
                "{}: {} channels, downmixed to stereo",
                path.display(),
                spec.channels
            );
        }
        Ok(WavAudio {
            path: path.to_path_buf(),
            reader,
            spec,
            raw: Vec::new(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads up to `frames` sample frames of the file, as s16 in its own channel count.
    fn read_raw(&mut self, frames: usize) -> Result<usize, WavError> {
        let ch = usize::from(self.spec.channels);
        let want = frames * ch;
        self.raw.clear();
        let path = &self.path;
        let err = |source| WavError::Read {
            path: path.clone(),
            source,
        };
        match self.spec.sample_format {
            hound::SampleFormat::Float => {
                for s in self.reader.samples::<f32>().take(want) {
                    self.raw.push(to_i16(s.map_err(err)? * 32768.0));
                }
            }
            hound::SampleFormat::Int => {
                let bits = self.spec.bits_per_sample;
                for s in self.reader.samples::<i32>().take(want) {
                    let s = s.map_err(err)?;
                    let v = if bits >= 16 {
                        s >> (bits - 16)
                    } else {
                        s << (16 - bits)
                    };
                    self.raw
                        .push(v.clamp(i16::MIN.into(), i16::MAX.into()) as i16);
                }
            }
        }
        // A truncated file can end in the middle of a frame: drop the partial frame.
        let whole = self.raw.len() / ch;
        self.raw.truncate(whole * ch);
        Ok(whole)
    }
}

impl PcmReader for WavAudio {
    fn sample_rate(&self) -> u32 {
        self.spec.sample_rate
    }

    fn channels(&self) -> u8 {
        self.spec.channels.min(2) as u8
    }

    fn total_frames(&self) -> Option<u64> {
        Some(u64::from(self.reader.duration()))
    }

    fn read_frames(&mut self, frames: usize, out: &mut Vec<i16>) -> Result<usize, PcmError> {
        let n = self.read_raw(frames)?;
        downmix_to_stereo(&self.raw, usize::from(self.spec.channels), out);
        Ok(n)
    }

    fn rewind(&mut self) -> Result<(), PcmError> {
        self.reader.seek(0).map_err(|e| WavError::Read {
            path: self.path.clone(),
            source: hound::Error::IoError(e),
        })?;
        Ok(())
    }
}

mod long_fmt;
use long_fmt::WavFile;

#[cfg(feature = "jpeg")]
pub use pump::*;

#[cfg(feature = "jpeg")]
mod pump;

#[cfg(test)]
mod tests;
