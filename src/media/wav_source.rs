//! Audio from a WAV file (`serve --audio FILE.wav`), and the machinery that runs a source's
//! producers (video, audio) on their own threads and paces them in real time.
//!
//! [`WavAudio`] reads 8/16/24/32-bit integer and 32-bit float WAVs with hound and hands out
//! interleaved s16 ([`PcmReader`]). Files with more than two channels are downmixed to stereo
//! ([`downmix_to_stereo`]): the players output stereo.
//!
//! With the `jpeg` feature, [`WithAudio`] adds such a file's audio to a video-only
//! [`MediaSource`] (the test pattern, a webcam), and [`run_audio_pump`] / [`forward_items`]
//! are the building blocks the file source uses too: every producer thread sleeps until its
//! item is due (`start + pts`) and sends it into one channel; the source's own thread forwards
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
    /// symphonia cannot read the file's container (AVI, MKV, WebM, ...).
    #[error(
        "{path}: cannot read its audio: symphonia reads MP4/M4A/MOV, WAV, FLAC, MP3 and ADTS AAC, not this container (give the sound as --audio FILE.wav)"
    )]
    UnsupportedContainer {
        /// The file.
        path: PathBuf,
    },
    /// symphonia has no decoder for the audio codec.
    #[error(
        "{path}: audio codec not supported ({detail}); symphonia decodes AAC-LC, MP3, FLAC and PCM (give the sound as --audio FILE.wav)"
    )]
    UnsupportedCodec {
        /// The file.
        path: PathBuf,
        /// What symphonia reported.
        detail: String,
    },
    /// From a compressed file's decoder (symphonia).
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
    reader: hound::WavReader<BufReader<File>>,
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
        let reader = hound::WavReader::open(path).map_err(|source| WavError::Read {
            path: path.to_path_buf(),
            source,
        })?;
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

#[cfg(feature = "jpeg")]
pub use pump::*;

#[cfg(feature = "jpeg")]
mod pump {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
    use std::time::{Duration, Instant};

    use super::{PcmError, PcmReader, WavAudio};
    use crate::media::source::{
        AudioFormat, MediaItem, MediaSink, MediaSource, SourceStats, StreamFormat,
    };

    /// How often a sleeping producer looks at its halt flag.
    const POLL: Duration = Duration::from_millis(50);

    /// Sleeps until `deadline`, waking every 50 ms to look at `halt`; false if halted.
    pub fn sleep_until(deadline: Instant, halt: &AtomicBool) -> bool {
        loop {
            if halt.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::sleep((deadline - now).min(POLL));
        }
    }

    /// `start + pts` on the 90 kHz clock.
    pub fn due(start: Instant, pts: u64) -> Instant {
        start + Duration::from_nanos((u128::from(pts) * 1_000_000_000 / 90_000) as u64)
    }

    /// The channel producers send their (already paced) items into.
    pub fn item_channel() -> (SyncSender<MediaItem>, Receiver<MediaItem>) {
        sync_channel(16)
    }

    /// Forwards `rx` to `sink` until every sender is gone, the sink is gone, or `stop` is
    /// set; in the last two cases sets `halt`, which the producers watch. Call it on the
    /// source's own thread while the producers run on scoped threads.
    pub fn forward_items(
        rx: Receiver<MediaItem>,
        sink: &mut MediaSink<'_>,
        stop: &AtomicBool,
        halt: &AtomicBool,
    ) {
        loop {
            if stop.load(Ordering::Relaxed) {
                halt.store(true, Ordering::Relaxed);
            }
            match rx.recv_timeout(POLL) {
                Ok(item) => {
                    if !sink(item) {
                        halt.store(true, Ordering::Relaxed);
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        halt.store(true, Ordering::Relaxed);
    }

    /// How the audio of a looping source repeats.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AudioLoop {
        /// Play the input once.
        Once,
        /// Repeat the input back to back.
        Natural,
        /// Repeat every `frames` sample frames exactly: cut the input there, or pad it with
        /// silence up to there (a file's audio beside its video: both loop on one period).
        Period {
            /// Sample frames per loop.
            frames: u64,
        },
    }

    /// Reads `reader` in blocks of `block_frames`, looping as `looping` says, and sends each
    /// block into `tx` when it is due (`start` + its position on the sample clock). The last
    /// block of a non-looping input is padded with silence. Returns the blocks sent.
    ///
    /// A read error ends the audio (logged once); the video goes on.
    pub fn run_audio_pump(
        reader: &mut dyn PcmReader,
        block_frames: usize,
        looping: AudioLoop,
        start: Instant,
        tx: &SyncSender<MediaItem>,
        halt: &AtomicBool,
    ) -> u64 {
        let rate = u64::from(reader.sample_rate().max(1));
        let ch = usize::from(reader.channels().max(1));
        let block_frames = block_frames.max(1);
        let mut emitted = 0u64; // sample frames sent, all loops
        let mut in_loop = 0u64; // sample frames of the current loop
        let mut loop_had_input = false;
        let mut blocks = 0u64;
        let mut ended = false;
        let fail = |e: PcmError| log::warn!("audio stops: {e}");
        while !ended {
            let mut samples = Vec::with_capacity(block_frames * ch);
            let mut have = 0usize;
            while have < block_frames {
                let mut want = block_frames - have;
                if let AudioLoop::Period { frames } = looping {
                    if in_loop >= frames {
                        if let Err(e) = reader.rewind() {
                            fail(e);
                            ended = true;
                            break;
                        }
                        in_loop = 0;
                        loop_had_input = false;
                    }
                    want = want.min((frames - in_loop) as usize);
                }
                let n = match reader.read_frames(want, &mut samples) {
                    Ok(n) => n,
                    Err(e) => {
                        fail(e);
                        ended = true;
                        break;
                    }
                };
                if n > 0 {
                    loop_had_input = true;
                    have += n;
                    in_loop += n as u64;
                    continue;
                }
                // End of the input.
                match looping {
                    AudioLoop::Once => {
                        ended = true;
                        break;
                    }
                    AudioLoop::Natural => {
                        if !loop_had_input {
                            ended = true; // an empty input would spin
                            break;
                        }
                        if let Err(e) = reader.rewind() {
                            fail(e);
                            ended = true;
                            break;
                        }
                        in_loop = 0;
                        loop_had_input = false;
                    }
                    AudioLoop::Period { .. } => {
                        // Silence up to the end of the period (`want` stops there).
                        samples.resize(samples.len() + want * ch, 0);
                        have += want;
                        in_loop += want as u64;
                    }
                }
            }
            if have == 0 {
                break;
            }
            // Only the last block of a finite input can be short: pad it.
            samples.resize(block_frames * ch, 0);
            let pts = emitted * 90_000 / rate;
            if !sleep_until(due(start, pts), halt) {
                break;
            }
            if tx.send(MediaItem::Audio { pts, samples }).is_err() {
                break;
            }
            emitted += block_frames as u64;
            blocks += 1;
        }
        blocks
    }

    /// A video-only source with a WAV file's audio added (`--audio FILE.wav` with the test
    /// pattern or a webcam).
    pub struct WithAudio {
        inner: Box<dyn MediaSource>,
        audio: WavAudio,
        format: StreamFormat,
        block_frames: usize,
        looping: bool,
    }

    impl std::fmt::Debug for WithAudio {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("WithAudio")
                .field("audio", &self.audio)
                .field("format", &self.format)
                .finish_non_exhaustive()
        }
    }

    impl WithAudio {
        /// `inner`'s video (its own audio, if any, is dropped) with `audio`, in blocks of
        /// `block_frames` sample frames (see `audio_block_frames`); `looping` repeats the WAV.
        pub fn new(
            inner: Box<dyn MediaSource>,
            audio: WavAudio,
            block_frames: usize,
            looping: bool,
        ) -> WithAudio {
            let mut format = inner.format().clone();
            format.audio = Some(wav_format(&audio));
            WithAudio {
                inner,
                audio,
                format,
                block_frames,
                looping,
            }
        }
    }

    /// The stream audio format of a WAV file (after the downmix).
    pub fn wav_format(audio: &WavAudio) -> AudioFormat {
        AudioFormat {
            sample_rate: audio.sample_rate(),
            channels: audio.channels(),
        }
    }

    impl MediaSource for WithAudio {
        fn format(&self) -> &StreamFormat {
            &self.format
        }

        fn run(
            self: Box<Self>,
            start: Instant,
            sink: &mut MediaSink<'_>,
            stop: &AtomicBool,
        ) -> SourceStats {
            let WithAudio {
                inner,
                mut audio,
                block_frames,
                looping,
                ..
            } = *self;
            let halt = AtomicBool::new(false);
            let (tx, rx) = item_channel();
            std::thread::scope(|s| {
                let halt = &halt;
                let tx_video = tx.clone();
                let video = s.spawn(move || {
                    let mut send = |item: MediaItem| {
                        matches!(item, MediaItem::Video { .. }) && tx_video.send(item).is_ok()
                            || !halt.load(Ordering::Relaxed)
                    };
                    inner.run(start, &mut send, halt)
                });
                let audio = s.spawn(move || {
                    let mode = if looping {
                        AudioLoop::Natural
                    } else {
                        AudioLoop::Once
                    };
                    run_audio_pump(&mut audio, block_frames, mode, start, &tx, halt)
                });
                forward_items(rx, sink, stop, halt);
                let mut stats = video.join().unwrap_or_default();
                stats.audio_blocks = audio.join().unwrap_or_default();
                stats
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, spec: hound::WavSpec, frames: u32) {
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames {
            for c in 0..spec.channels {
                let v = (i as i32 * 100 + i32::from(c)) % 30000;
                match (spec.sample_format, spec.bits_per_sample) {
                    (hound::SampleFormat::Float, _) => w.write_sample(v as f32 / 32768.0).unwrap(),
                    (_, 16) => w.write_sample(v as i16).unwrap(),
                    (_, 24) => w.write_sample(v << 8).unwrap(),
                    (_, 32) => w.write_sample(v << 16).unwrap(),
                    (_, 8) => w.write_sample((v >> 8) as i8).unwrap(),
                    _ => unreachable!(),
                }
            }
        }
        w.finalize().unwrap();
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("framecast-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn reads_every_sample_format_as_s16() {
        for (fmt, bits) in [
            (hound::SampleFormat::Int, 16),
            (hound::SampleFormat::Int, 24),
            (hound::SampleFormat::Int, 32),
            (hound::SampleFormat::Float, 32),
        ] {
            let path = tmp(&format!("fmt{bits}{fmt:?}.wav"));
            let spec = hound::WavSpec {
                channels: 2,
                sample_rate: 44_100,
                bits_per_sample: bits,
                sample_format: fmt,
            };
            write_wav(&path, spec, 1000);
            let mut wav = WavAudio::open(&path).unwrap();
            assert_eq!((wav.sample_rate(), wav.channels()), (44_100, 2));
            assert_eq!(wav.total_frames(), Some(1000));
            let mut out = Vec::new();
            let mut total = 0;
            loop {
                let n = wav.read_frames(300, &mut out).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            assert_eq!(total, 1000);
            assert_eq!(out.len(), 2000);
            // Frame 7, channel 1: 701.
            assert!(
                (i32::from(out[15]) - 701).abs() <= 1,
                "{bits} {fmt:?}: {}",
                out[15]
            );
            wav.rewind().unwrap();
            let mut again = Vec::new();
            assert_eq!(wav.read_frames(10, &mut again).unwrap(), 10);
            assert_eq!(again[..], out[..20]);
        }
    }

    #[test]
    fn six_channels_are_downmixed_to_stereo() {
        let path = tmp("six.wav");
        let spec = hound::WavSpec {
            channels: 6,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        write_wav(&path, spec, 10);
        let mut wav = WavAudio::open(&path).unwrap();
        assert_eq!(wav.channels(), 2);
        let mut out = Vec::new();
        assert_eq!(wav.read_frames(10, &mut out).unwrap(), 10);
        assert_eq!(out.len(), 20);
        // Full-scale input on every channel never clips.
        let mut loud = Vec::new();
        downmix_to_stereo(&[i16::MAX; 12], 6, &mut loud);
        assert!(loud.iter().all(|&s| s > 30_000), "{loud:?}");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let missing = WavAudio::open(Path::new("/nonexistent/a.wav")).unwrap_err();
        assert!(matches!(missing, WavError::NotFound { .. }));
        assert_eq!(missing.to_string(), "/nonexistent/a.wav: no such file");
        let junk = tmp("junk.wav");
        std::fs::write(&junk, b"this is not a wav file at all").unwrap();
        let err = WavAudio::open(&junk).unwrap_err();
        assert!(matches!(err, WavError::Read { .. }), "{err}");
        assert!(err.to_string().contains("not a readable WAV"), "{err}");
        let slow = tmp("slow.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 4_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        write_wav(&slow, spec, 10);
        let err = WavAudio::open(&slow).unwrap_err();
        assert!(err.to_string().contains("4000 Hz"), "{err}");
    }

    #[cfg(feature = "jpeg")]
    #[test]
    fn pump_paces_loops_and_pads() {
        use std::sync::atomic::AtomicBool;
        use std::time::{Duration, Instant};

        use crate::media::source::MediaItem;
        let path = tmp("pump.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        write_wav(&path, spec, 100); // 12.5 ms
        let halt = AtomicBool::new(false);

        // Once: 100 frames in blocks of 40 -> 3 blocks, the last padded.
        let mut wav = WavAudio::open(&path).unwrap();
        let (tx, rx) = item_channel();
        let start = Instant::now();
        let n = run_audio_pump(&mut wav, 40, AudioLoop::Once, start, &tx, &halt);
        drop(tx);
        let items: Vec<_> = rx.iter().collect();
        assert_eq!(n, 3);
        let pts: Vec<u64> = items
            .iter()
            .map(|i| match i {
                MediaItem::Audio { pts, samples } => {
                    assert_eq!(samples.len(), 40);
                    *pts
                }
                MediaItem::Video { .. } => panic!("video from the audio pump"),
            })
            .collect();
        assert_eq!(pts, vec![0, 450, 900]); // 40 frames at 8 kHz = 5 ms = 450 ticks
        assert!(start.elapsed() >= Duration::from_millis(10));
        if let MediaItem::Audio { samples, .. } = &items[2] {
            assert_eq!(samples[20..], [0; 20]);
        }

        // Period of 150 frames: 100 of the file then 50 of silence, then the file again.
        let mut wav = WavAudio::open(&path).unwrap();
        let (tx, rx) = item_channel();
        let pump = std::thread::spawn(move || {
            let halt = AtomicBool::new(false);
            let mode = AudioLoop::Period { frames: 150 };
            run_audio_pump(&mut wav, 50, mode, Instant::now(), &tx, &halt)
        });
        let blocks: Vec<Vec<i16>> = rx
            .iter()
            .take(6)
            .map(|i| match i {
                MediaItem::Audio { samples, .. } => samples,
                MediaItem::Video { .. } => Vec::new(),
            })
            .collect();
        drop(rx); // the pump ends when its channel is gone
        assert!(pump.join().unwrap() >= 6);
        assert_eq!(blocks[2], vec![0; 50]);
        assert_eq!(blocks[3], blocks[0]);
        assert_ne!(blocks[0], vec![0; 50]);
    }
}
