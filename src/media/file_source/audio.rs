//! The sound of a video file: its default audio track decoded by symphonia to interleaved
//! s16 at the file's own rate ([`FileAudio`]), downmixed to stereo above two channels.

use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::media::source::AudioFormat;
use crate::media::wav_source::{self, PcmError, PcmReader, downmix_to_stereo};

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
        if !(wav_source::MIN_SAMPLE_RATE..=wav_source::MAX_SAMPLE_RATE).contains(&rate) {
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
                if channels == 0 || channels > usize::from(wav_source::MAX_CHANNELS) {
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
