//! The sound of a movie file: its best audio track demuxed and decoded by FFmpeg
//! (libavformat, libavcodec via `ffmpeg-next`: any container and codec the FFmpeg build
//! reads, e.g. AAC in MP4 or MKV, Vorbis, Opus in WebM, PCM in AVI), converted by
//! libswresample to interleaved s16 at the stream's rate and channel count ([`FileAudio`]).
//!
//! The track keeps its place on the file's timeline: one that starts after the video
//! (or after the timeline's zero, see `demux::timeline_origin`) is preceded by
//! that much silence, so both tracks play as ffplay plays them.

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;

use super::demux::{TrackFeed, open_input, stream_duration, stream_start, timeline_origin};
use super::ffvideo::codec_name;
use crate::media::source::AudioFormat;
use crate::media::wav_source::{self, PcmError, PcmReader};

/// Rate used when the track's own cannot be streamed (outside 8-192 kHz).
const FALLBACK_RATE: u32 = 48_000;

/// The best audio track of a movie file, decoded to interleaved s16 (see the module docs).
pub struct FileAudio {
    path: PathBuf,
    input: ff::format::context::Input,
    decoder: ff::decoder::Audio,
    resampler: Option<ff::software::resampling::Context>,
    /// (format, layout bits / channels, rate) the resampler was made for.
    resampler_for: Option<(ff::format::Sample, i32, u32)>,
    decoded: ff::frame::Audio,
    converted: ff::frame::Audio,
    time_base: f64,
    /// Time of the first decoded sample on the file's timeline (seconds), once known: after
    /// the decoder dropped its priming or pre-skip samples.
    first_time: Option<f64>,
    sample_rate: u32,
    channels: u8,
    source_channels: u16,
    total_frames: Option<u64>,
    /// Silence still to hand out before the track's first sample.
    lead_left: u64,
    /// Sample frames of silence the track starts with (its offset on the timeline).
    lead_frames: u64,
    pending: Vec<i16>,
    pending_pos: usize,
    /// Reads the track's packets into the decoder.
    feed: TrackFeed,
    drained: bool,
    warned: bool,
}

impl std::fmt::Debug for FileAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAudio")
            .field("path", &self.path)
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .field("source_channels", &self.source_channels)
            .field("lead_frames", &self.lead_frames)
            .finish_non_exhaustive()
    }
}

fn error(path: &Path, message: impl Into<String>) -> PcmError {
    PcmError::Decode {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The output layout for `channels` source channels: mono stays mono, everything else
/// becomes stereo (libswresample's downmix matrix: centre and surrounds at -3 dB).
fn out_layout(channels: u16) -> (ff::ChannelLayout, u8) {
    if channels == 1 {
        (ff::ChannelLayout::MONO, 1)
    } else {
        (ff::ChannelLayout::STEREO, 2)
    }
}

impl FileAudio {
    /// Opens the best audio track of `path`: `Ok(None)` if the file has none, an error
    /// naming the reason (container, codec, or layout) if it cannot be streamed.
    pub fn open(path: &Path) -> Result<Option<FileAudio>, PcmError> {
        let input = open_input(path).map_err(|m| error(path, m))?;
        let origin = timeline_origin(&input, true);
        FileAudio::open_at(path, input, origin, true)
    }

    fn open_at(
        path: &Path,
        input: ff::format::context::Input,
        origin: f64,
        announce: bool,
    ) -> Result<Option<FileAudio>, PcmError> {
        let Some(stream) = input.streams().best(ff::media::Type::Audio) else {
            return Ok(None);
        };
        let index = stream.index();
        let id = stream.parameters().id();
        let ctx =
            ff::codec::context::Context::from_parameters(stream.parameters()).map_err(|e| {
                error(
                    path,
                    format!("the audio track's parameters are unusable ({e})"),
                )
            })?;
        let mut decoder = ctx.decoder();
        // Timestamps in the stream's units: the decoder moves a frame's pts past the priming
        // or pre-skip samples it drops (AAC, Opus), which it can only do knowing them.
        decoder.set_packet_time_base(stream.time_base());
        let decoder = decoder.audio().map_err(|_| {
            error(
                path,
                format!(
                    "the audio codec {} has no decoder in this FFmpeg build",
                    codec_name(id)
                ),
            )
        })?;
        let start = stream_start(&stream);
        let duration = stream_duration(&input, &stream);
        let source_channels = decoder.channels();
        let source_rate = decoder.rate();
        if source_channels == 0 || source_rate == 0 {
            return Err(error(
                path,
                format!(
                    "the {} audio track states no channel layout or rate",
                    codec_name(id)
                ),
            ));
        }
        let rate =
            if (wav_source::MIN_SAMPLE_RATE..=wav_source::MAX_SAMPLE_RATE).contains(&source_rate) {
                source_rate
            } else {
                FALLBACK_RATE
            };
        let (_, channels) = out_layout(source_channels);
        let time_base = f64::from(stream.time_base());
        let mut audio = FileAudio {
            path: path.to_path_buf(),
            input,
            decoder,
            resampler: None,
            resampler_for: None,
            decoded: ff::frame::Audio::empty(),
            converted: ff::frame::Audio::empty(),
            time_base,
            first_time: None,
            sample_rate: rate,
            channels,
            source_channels,
            total_frames: None,
            lead_left: 0,
            lead_frames: 0,
            pending: Vec::new(),
            pending_pos: 0,
            feed: TrackFeed::new(index, "audio"),
            drained: false,
            warned: false,
        };
        // The first samples prove that the track decodes.
        if !audio.decode_next()? {
            return Ok(None); // an audio track with no packets
        }
        // The track's place on the timeline: where its first sample plays.
        let first = audio.first_time.unwrap_or(start);
        let lead = ((first - origin).max(0.0) * f64::from(rate)).round() as u64;
        audio.lead_left = lead;
        audio.lead_frames = lead;
        audio.total_frames = duration.map(|d| (d * f64::from(rate)).round() as u64 + lead);
        if announce {
            let mut changes = Vec::new();
            if source_channels > 2 {
                changes.push(format!("{source_channels} channels downmixed to stereo"));
            }
            if rate != source_rate {
                changes.push(format!("{source_rate} Hz resampled to {rate} Hz"));
            }
            if !changes.is_empty() {
                log::warn!(
                    "{}: {} audio: {}",
                    path.display(),
                    codec_name(id),
                    changes.join(", ")
                );
            }
            if lead > 0 {
                log::info!(
                    "{}: the audio starts {:.3} s after the video",
                    path.display(),
                    lead as f64 / f64::from(rate)
                );
            }
        }
        Ok(Some(audio))
    }

    /// Sample frames of silence before the track's first sample (its start offset).
    pub fn lead_frames(&self) -> u64 {
        self.lead_frames
    }

    /// Channels of the track in the file (before any downmix).
    pub fn source_channels(&self) -> u16 {
        self.source_channels
    }

    /// Reads packets and decodes until some samples are pending; false at the end.
    fn decode_next(&mut self) -> Result<bool, PcmError> {
        loop {
            if self.drained {
                return Ok(false);
            }
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {
                    if self.convert()? {
                        return Ok(true);
                    }
                    continue;
                }
                Err(ff::Error::Eof) => {
                    self.drained = true;
                    return Ok(false);
                }
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {}
                Err(e) => {
                    if !self.warned {
                        self.warned = true;
                        log::warn!("{}: audio decoding error ({e})", self.path.display());
                    }
                }
            }
            if self.feed.flushed() {
                self.drained = true;
                return Ok(false);
            }
            self.feed
                .feed(&mut self.input, &mut self.decoder, &self.path);
        }
    }

    /// Converts the decoded frame into `pending`; false if it gave no samples.
    fn convert(&mut self) -> Result<bool, PcmError> {
        if self.decoded.samples() == 0 {
            return Ok(false);
        }
        if self.first_time.is_none() {
            self.first_time = self
                .decoded
                .timestamp()
                .or(self.decoded.pts())
                .map(|ts| ts as f64 * self.time_base);
        }
        let mut layout = self.decoded.channel_layout();
        let ch = self.decoded.channels();
        if layout.is_empty() || layout.channels() != i32::from(ch) {
            layout = ff::ChannelLayout::default(i32::from(ch));
        }
        let key = (self.decoded.format(), i32::from(ch), self.decoded.rate());
        if self.resampler_for != Some(key) {
            let (out, _) = out_layout(self.source_channels);
            let r = ff::software::resampling::Context::get(
                key.0,
                layout,
                key.2,
                ff::format::Sample::I16(ff::format::sample::Type::Packed),
                out,
                self.sample_rate,
            )
            .map_err(|e| {
                error(
                    &self.path,
                    format!(
                        "cannot convert {ch} channels ({layout:?}) at {} Hz to the stream's {} channels at {} Hz ({e})",
                        key.2, self.channels, self.sample_rate
                    ),
                )
            })?;
            self.resampler = Some(r);
            self.resampler_for = Some(key);
        }
        let r = self.resampler.as_mut().expect("made above");
        self.decoded.set_channel_layout(layout);
        // A fresh output frame: swr_convert_frame would cap the output at an allocated
        // frame's size (a first Vorbis or Opus frame is shorter than the rest).
        self.converted = ff::frame::Audio::empty();
        r.run(&self.decoded, &mut self.converted)
            .map_err(|e| error(&self.path, format!("audio conversion failed ({e})")))?;
        let n = self.converted.samples() * usize::from(self.channels);
        if n == 0 {
            return Ok(false);
        }
        self.pending.drain(..self.pending_pos);
        self.pending_pos = 0;
        let bytes = &self.converted.data(0)[..n * 2];
        self.pending.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_ne_bytes([b[0], b[1]])),
        );
        Ok(true)
    }

    /// The whole track decoded at once, its leading silence included: what a player
    /// receiving this file should hear, sample for sample (tests compare against it).
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
        self.channels
    }

    fn total_frames(&self) -> Option<u64> {
        self.total_frames
    }

    fn read_frames(&mut self, frames: usize, out: &mut Vec<i16>) -> Result<usize, PcmError> {
        let ch = usize::from(self.channels.max(1));
        if self.lead_left > 0 {
            let n = (self.lead_left.min(frames as u64)) as usize;
            out.resize(out.len() + n * ch, 0);
            self.lead_left -= n as u64;
            return Ok(n);
        }
        while self.pending.len() - self.pending_pos < ch {
            if !self.decode_next()? {
                // The resampler may hold a few samples back.
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
        let input = open_input(&self.path).map_err(|m| error(&self.path, m))?;
        let origin = timeline_origin(&input, true);
        match FileAudio::open_at(&self.path, input, origin, false)? {
            Some(a) => {
                *self = a;
                Ok(())
            }
            None => Err(error(&self.path, "the audio track is gone")),
        }
    }
}
