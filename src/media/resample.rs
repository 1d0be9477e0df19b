//! A streaming resampler for interleaved s16 audio ([`StreamResampler`]): converts the
//! stream's rate to the device's and applies a drift correction as a slowly varying ratio,
//! with `rubato`'s asynchronous sinc resampler (band-limited interpolation, the ratio ramped
//! across each chunk), so neither a rate change nor a correction ever drops or repeats a
//! sample.
//!
//! While the two rates are equal and no correction was ever asked for, audio passes through
//! bit for bit. The first correction hands over to the resampler seamlessly: it is warmed up
//! with the frames already passed through, and its output is trimmed to continue exactly where
//! the pass-through stopped.
//!
//! Each call reports [`Run`]s: which input media time the output frames carry, so the audio
//! clock stays exact through the resampler's delay and ratio.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Adjustable, Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use crate::proto::wire::CLOCK_RATE;

/// Sinc filter length, taps (a 64-tap filter passes up to about 0.9 of Nyquist).
const SINC_LEN: usize = 64;
/// Largest ratio change from the nominal one (both ways) a resampler accepts: 1 %.
const MAX_RELATIVE: f64 = 1.01;
/// Frames of history kept for a seamless hand-over from pass-through.
const HISTORY: usize = 2 * SINC_LEN;
/// The sinc resampler's delay, input frames: output frame `j` plays input position
/// `j * in_rate / out_rate - DELAY` (the filter is centred `SINC_LEN / 2` frames into a window
/// that starts `SINC_LEN - 1` frames back; measured with an impulse, as `output_delay()`
/// rounds it to whole output frames and one frame long).
const DELAY: usize = SINC_LEN / 2 - 1;

/// Errors from setting up a [`StreamResampler`].
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// The rates or channel count are unusable.
    #[error("cannot resample {input} Hz to {output} Hz with {channels} channels: {source}")]
    Construction {
        /// Input rate, Hz.
        input: u32,
        /// Output rate, Hz.
        output: u32,
        /// Channels.
        channels: u16,
        /// The resampler's complaint.
        #[source]
        source: rubato::ResamplerConstructionError,
    },
}

/// Output frames that carry input media from `pts` on: output frame `i` of the run plays
/// input time `pts + i * in_frames / out_frames` input frames (in 90 kHz ticks: `pts +
/// i * in_frames * 90000 / (out_frames * in_rate)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Media time of the run's first output frame, 90 kHz ticks (may precede the stream's
    /// first timestamp: the resampler's warm-up).
    pub pts: i128,
    /// Input frames the run spans.
    pub in_frames: u64,
    /// Output frames in the run.
    pub out_frames: u64,
}

/// See the module docs.
pub struct StreamResampler {
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    chunk: usize,
    inner: Option<Async<f32>>,
    relative: f64,
    /// Input not yet resampled (interleaved, scaled to ±1) and the media time of its first frame.
    pending: Vec<f32>,
    pending_pts: i128,
    /// Output frames still to be dropped (the resampler's delay and the hand-over's overlap).
    skip_out: usize,
    /// The last frames passed through (interleaved), for the hand-over.
    history: Vec<i16>,
    history_pts: i128,
    out_buf: Vec<f32>,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .field("channels", &self.channels)
            .field("resampling", &self.inner.is_some())
            .field("relative", &self.relative)
            .finish_non_exhaustive()
    }
}

fn ticks(frames: f64, rate: u32) -> i128 {
    (frames * CLOCK_RATE as f64 / f64::from(rate.max(1))).round() as i128
}

impl StreamResampler {
    /// A resampler from `in_rate` to `out_rate` Hz for `channels` interleaved channels.
    pub fn new(in_rate: u32, out_rate: u32, channels: u16) -> Result<Self, ResampleError> {
        let mut r = Self {
            in_rate,
            out_rate,
            channels: usize::from(channels.max(1)),
            chunk: (in_rate as usize / 200).max(16),
            inner: None,
            relative: 1.0,
            pending: Vec::new(),
            pending_pts: 0,
            skip_out: 0,
            history: Vec::new(),
            history_pts: 0,
            out_buf: Vec::new(),
        };
        if in_rate != out_rate {
            r.engage(false)?;
        } else if channels == 0 || in_rate == 0 {
            return Err(r.construction_error(rubato::ResamplerConstructionError::InvalidRatio(0.0)));
        }
        Ok(r)
    }

    fn construction_error(&self, source: rubato::ResamplerConstructionError) -> ResampleError {
        ResampleError::Construction {
            input: self.in_rate,
            output: self.out_rate,
            channels: self.channels as u16,
            source,
        }
    }

    /// Starts the sinc resampler; with `handover`, primed with the passed-through history.
    fn engage(&mut self, handover: bool) -> Result<(), ResampleError> {
        let params = SincInterpolationParameters {
            sinc_len: SINC_LEN,
            f_cutoff: None,
            oversampling_factor: 128,
            interpolation: SincInterpolationType::Cubic,
            window: WindowFunction::BlackmanHarris2,
        };
        let ratio = f64::from(self.out_rate) / f64::from(self.in_rate);
        let mut inner = Async::<f32>::new_sinc(
            ratio,
            MAX_RELATIVE,
            &params,
            self.chunk,
            self.channels,
            FixedAsync::Input,
        )
        .map_err(|e| self.construction_error(e))?;
        if self.relative != 1.0 {
            let _ = inner.set_resample_ratio_relative(self.relative, false);
        }
        self.skip_out = (DELAY as f64 * ratio).round() as usize;
        self.out_buf = vec![0.0; inner.output_frames_max() * self.channels];
        if handover {
            // Re-feed what already played so the filter is warm; drop its output up to the
            // first new frame (equal rates: one output frame per input frame).
            let h = self.history.len() / self.channels;
            self.skip_out += h;
            self.pending = self
                .history
                .iter()
                .map(|&s| f32::from(s) / 32768.0)
                .collect();
            self.pending_pts = self.history_pts;
        }
        self.inner = Some(inner);
        Ok(())
    }

    /// Input rate, Hz.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// Output rate, Hz.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// True once samples go through the sinc resampler (not passed through).
    pub fn is_resampling(&self) -> bool {
        self.inner.is_some()
    }

    /// Sets the drift correction: output frames per input frame relative to the nominal
    /// `out_rate / in_rate`, clamped to ±1 %. Takes effect from the next chunk, ramped across
    /// it. A first correction away from 1 starts the resampler.
    pub fn set_relative_ratio(&mut self, relative: f64) {
        let relative = relative.clamp(1.0 / MAX_RELATIVE, MAX_RELATIVE);
        if relative == self.relative {
            return;
        }
        self.relative = relative;
        match &mut self.inner {
            Some(inner) => {
                let _ = inner.set_resample_ratio_relative(relative, true);
            }
            None => {
                if self.engage(true).is_err() {
                    // Cannot happen for rates that passed `new`; keep passing through.
                    self.relative = 1.0;
                }
            }
        }
    }

    /// Input frames taken but not given out yet: the input held until a whole chunk is
    /// there and the filter's delay (0 while passing through). Output frames = input frames
    /// taken − this, times the ratio.
    pub fn held_frames(&self) -> u64 {
        if self.inner.is_none() {
            return 0;
        }
        // Output still to be cut (a hand-over's re-fed history, the delay before any
        // output) carries no new input.
        let cut = self.skip_out as f64 * f64::from(self.in_rate) / f64::from(self.out_rate);
        ((self.pending.len() / self.channels + DELAY) as f64 - cut)
            .max(0.0)
            .round() as u64
    }

    /// Gives out what is held ([`held_frames`](Self::held_frames)) at the end of a stream:
    /// the filter is run on silence past the last input and its output cut where that
    /// input ends, so the output spans all the input. Nothing while passing through.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        let held = self.held_frames();
        if held == 0 {
            return;
        }
        let ch = self.channels;
        let per_in = f64::from(self.out_rate) / f64::from(self.in_rate) * self.relative;
        let want = (held as f64 * per_in).round() as usize;
        let zeros = vec![0i16; self.chunk * ch];
        let mut tail = Vec::new();
        let mut runs = Vec::new();
        // Each chunk of silence gives out about a chunk: bounded by what is held.
        let rounds = held as usize / self.chunk + 3;
        for _ in 0..rounds {
            if tail.len() / ch >= want {
                break;
            }
            let pts = self.pending_pts + ticks((self.pending.len() / ch) as f64, self.in_rate);
            self.process(pts.max(0) as u64, &zeros, &mut tail, &mut runs);
        }
        tail.truncate(want * ch);
        out.extend_from_slice(&tail);
    }

    /// Resamples one block of interleaved `samples` whose first frame has media time `pts`
    /// (90 kHz), appending the output to `out` and its media mapping to `runs`. A trailing
    /// partial frame is ignored. Input is held back until a whole chunk (5 ms) is there.
    pub fn process(&mut self, pts: u64, samples: &[i16], out: &mut Vec<i16>, runs: &mut Vec<Run>) {
        let ch = self.channels;
        let whole = samples.len() / ch * ch;
        let samples = &samples[..whole];
        let n = (whole / ch) as u64;
        if n == 0 {
            return;
        }
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(samples);
            runs.push(Run {
                pts: i128::from(pts),
                in_frames: n,
                out_frames: n,
            });
            // Keep the last HISTORY frames and the media time of the first of them.
            let keep = HISTORY * ch;
            self.history.extend_from_slice(samples);
            let excess = self.history.len().saturating_sub(keep);
            self.history.drain(..excess);
            let held = (self.history.len() / ch) as f64;
            self.history_pts = i128::from(pts) + ticks(n as f64 - held, self.in_rate);
            return;
        };
        if self.pending.is_empty() {
            self.pending_pts = i128::from(pts);
        } else {
            // Follow the block's own timestamp (a gap upstream moves the mapping with it).
            let queued = (self.pending.len() / ch) as f64;
            self.pending_pts = i128::from(pts) - ticks(queued, self.in_rate);
        }
        self.pending
            .extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
        let delay_ticks = ticks(DELAY as f64, self.in_rate);
        loop {
            let need = inner.input_frames_next();
            if self.pending.len() < need * ch {
                break;
            }
            let Ok(input) = InterleavedSlice::new(&self.pending[..need * ch], ch, need) else {
                break;
            };
            let cap = self.out_buf.len() / ch;
            let Ok(mut output) = InterleavedSlice::new_mut(&mut self.out_buf, ch, cap) else {
                break;
            };
            let Ok((used, made)) = inner.process_into_buffer(&input, &mut output, None) else {
                break;
            };
            let chunk_pts = self.pending_pts - delay_ticks;
            let skip = self.skip_out.min(made);
            self.skip_out -= skip;
            let kept = made - skip;
            if kept > 0 {
                let per_out = used as f64 / made as f64;
                out.extend(
                    self.out_buf[skip * ch..made * ch]
                        .iter()
                        .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
                );
                runs.push(Run {
                    pts: chunk_pts + ticks(skip as f64 * per_out, self.in_rate),
                    in_frames: (kept as f64 * per_out).round() as u64,
                    out_frames: kept as u64,
                });
            }
            self.pending.drain(..used * ch);
            self.pending_pts += ticks(used as f64, self.in_rate);
        }
    }
}

#[cfg(test)]
mod tests;
