//! The audio file: 16-bit PCM WAV via hound, each block placed where its pts says, gaps and
//! concealed blocks written as silence.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    CHECKPOINT_SECS, MAX_GAP, RecordError, Recorder, WAV_MAX_BYTES, mul_div_round, with_ext,
};
use crate::media::avsync::{DriftConfig, DriftEstimator};
use crate::media::resample::StreamResampler;
use crate::proto::wire::CLOCK_RATE;

pub(super) struct WavOut {
    pub(super) writer: hound::WavWriter<BufWriter<File>>,
    pub(super) path: PathBuf,
    pub(super) rate: u32,
    pub(super) channels: u16,
    /// pts (ticks) of sample frame 0.
    pub(super) anchor: i128,
    pub(super) written: u64,
    pub(super) since_checkpoint: u64,
    /// Frames the timeline has crept ahead of what was written (negative: behind), followed
    /// by resampling rather than filled.
    pub(super) slip: i128,
    pub(super) drift: DriftEstimator,
    pub(super) resampler: Option<StreamResampler>,
    /// Media-time origin for the drift estimator (it wants instants).
    pub(super) epoch: Instant,
    pub(super) out: Vec<i16>,
}

/// The drift estimator reads "written − timeline" plus this, so the reading stays positive.
const SLIP_BIAS: Duration = Duration::from_secs(10);

impl Recorder {
    pub(super) fn write_audio(
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
                slip: 0,
                drift: DriftEstimator::new(DriftConfig::default()),
                resampler: StreamResampler::new(rate, rate, channels).ok(),
                epoch: Instant::now(),
                out: Vec::new(),
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
            w.slip = 0;
        }
        // Within the tolerance of where the last block left the timeline: a creep (or
        // rounding), followed by the drift estimator; beyond it, a gap or an overlap.
        if (pos - written - w.slip).abs() <= tol {
            w.slip = pos - written;
            pos = written;
        } else {
            pos -= w.slip;
        }
        let media = Duration::from_nanos(
            u64::try_from((pts - w.anchor).max(0) * 1_000_000_000 / clock).unwrap_or(0),
        );
        // What the estimator follows: the creep (a gap just filled is no drift).
        let reading = (SLIP_BIAS.as_secs_f64() - w.slip as f64 / f64::from(rate)).max(0.0);
        if w.drift
            .observe(w.epoch + media, Duration::from_secs_f64(reading))
        {
            if let Some(r) = &mut w.resampler {
                r.set_relative_ratio(w.drift.ratio());
            }
        }
        self.summary.audio_drift_corrections = w.drift.corrections();
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
        let resampling = w.resampler.as_ref().is_some_and(|r| r.is_resampling());
        if !resampling {
            // Equal clocks: the samples as received.
            write_silence(&mut w.writer, gap * u64::from(channels)).map_err(wav_err(&w.path))?;
            if concealed {
                write_silence(&mut w.writer, body.len() as u64).map_err(wav_err(&w.path))?;
                self.summary.audio_silence_frames += body_frames;
            } else if !body.is_empty() {
                write_samples(&mut w.writer, body).map_err(wav_err(&w.path))?;
            }
            self.summary.audio_silence_frames += gap;
            w.written += gap + body_frames;
            w.since_checkpoint += gap + body_frames;
        } else if let Some(r) = &mut w.resampler {
            // Drifting clocks: everything through the resampler, silence included, so the
            // ratio applies to all of it and nothing jumps.
            let mut runs = Vec::new();
            let mut made = 0u64;
            let mut left = gap + if concealed { body_frames } else { 0 };
            self.summary.audio_silence_frames += left;
            let zeros = vec![0i16; left.min(4096) as usize * ch];
            while left > 0 {
                let n = left.min(4096) as usize;
                w.out.clear();
                r.process(0, &zeros[..n * ch], &mut w.out, &mut runs);
                write_samples(&mut w.writer, &w.out).map_err(wav_err(&w.path))?;
                made += (w.out.len() / ch) as u64;
                left -= n as u64;
            }
            if !concealed && !body.is_empty() {
                w.out.clear();
                r.process(0, body, &mut w.out, &mut runs);
                write_samples(&mut w.writer, &w.out).map_err(wav_err(&w.path))?;
                made += (w.out.len() / ch) as u64;
            }
            // The timeline moved by what went in, the file by what came out.
            w.slip += i128::from(gap + body_frames) - i128::from(made);
            w.written += made;
            w.since_checkpoint += made;
        }
        self.summary.audio_frames = w.written;
        if w.since_checkpoint >= CHECKPOINT_SECS * u64::from(rate) {
            w.since_checkpoint = 0;
            w.writer.flush().map_err(wav_err(&w.path))?;
        }
        Ok(())
    }
}

fn write_samples(
    w: &mut hound::WavWriter<BufWriter<File>>,
    samples: &[i16],
) -> Result<(), hound::Error> {
    let mut sw = w.get_i16_writer(samples.len() as u32);
    for &s in samples {
        sw.write_sample(s);
    }
    sw.flush()
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
