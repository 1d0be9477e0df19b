//! The synthetic microphone: [`ToneSource`], a sine with a 1 kHz beep at the start of each
//! second, lined up with the test pattern's sync square.

use super::{MAX_TONE_BLOCK_FRAMES, TestSourceError};

/// Deterministic synthetic microphone: a 440 Hz (or chosen) sine at -12 dBFS, plus a 50 ms
/// 1 kHz beep at -6 dBFS starting on every whole second of media time.
///
/// Sample frame `n` depends only on `n`, so blocks of any size join without a phase jump.
/// All channels carry the same signal; output is interleaved signed 16-bit.
#[derive(Debug, Clone)]
pub struct ToneSource {
    sample_rate: u32,
    channels: u16,
    freq_hz: u32,
    beep_hz: u32,
    /// Next sample frame to produce.
    position: u64,
}

/// -12 dBFS of full scale (10^(-12/20) * 32767).
const TONE_AMPLITUDE: f32 = 8231.0;
/// -6 dBFS of full scale.
const BEEP_AMPLITUDE: f32 = 16423.0;
/// Beep length in milliseconds.
const BEEP_MS: u64 = 50;

impl ToneSource {
    /// A tone of `freq_hz` at `sample_rate` Hz on `channels` channels, starting at frame 0.
    ///
    /// Errors if the rate is outside 8000..=384000, channels outside 1..=32, or the frequency
    /// is 0 or not below half the sample rate.
    pub fn new(sample_rate: u32, channels: u16, freq_hz: u32) -> Result<Self, TestSourceError> {
        if !(8000..=384_000).contains(&sample_rate) {
            return Err(TestSourceError::SampleRateOutOfRange { sample_rate });
        }
        if !(1..=32).contains(&channels) {
            return Err(TestSourceError::ChannelsOutOfRange { channels });
        }
        let nyquist = sample_rate / 2;
        if freq_hz == 0 || freq_hz >= nyquist {
            return Err(TestSourceError::FrequencyOutOfRange {
                freq_hz,
                sample_rate,
                nyquist,
            });
        }
        Ok(Self {
            sample_rate,
            channels,
            freq_hz,
            beep_hz: 1000.min(sample_rate / 4),
            position: 0,
        })
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channels per frame.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// The next sample frame [`next_block`](Self::next_block) will produce (frames produced so
    /// far, if started at 0).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves to sample frame `position` (e.g. to line up with a video frame's time).
    pub fn seek(&mut self, position: u64) {
        self.position = position;
    }

    /// True if sample frame `n` lies inside a beep (the first 50 ms of a second).
    pub fn is_beep(&self, n: u64) -> bool {
        n % u64::from(self.sample_rate) < self.beep_frames()
    }

    fn beep_frames(&self) -> u64 {
        u64::from(self.sample_rate) * BEEP_MS / 1000
    }

    /// The mono sample value of frame `n`.
    pub fn sample_at(&self, n: u64) -> i16 {
        let sr = u64::from(self.sample_rate);
        let tau = std::f64::consts::TAU;
        // (n * f) mod sr without overflow: the phase is exact at any position.
        let phase = (n % sr) * u64::from(self.freq_hz) % sr;
        let mut v = TONE_AMPLITUDE as f64 * (tau * phase as f64 / sr as f64).sin();
        let pos = n % sr;
        let beep_len = self.beep_frames();
        if pos < beep_len {
            let bphase = pos * u64::from(self.beep_hz) % sr;
            // 2 ms linear fade in and out so the beep itself does not click.
            let ramp = (sr / 500).max(1);
            let env = (pos.min(beep_len - 1 - pos) as f64 / ramp as f64).min(1.0);
            v += BEEP_AMPLITUDE as f64 * env * (tau * bphase as f64 / sr as f64).sin();
        }
        v.round().clamp(-32768.0, 32767.0) as i16
    }

    /// Fills `out` with whole interleaved frames from the current position and advances it.
    /// Returns the number of frames written (`out.len() / channels`; a trailing partial frame is
    /// left untouched).
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        let ch = usize::from(self.channels);
        let mut frames = 0;
        for frame in out.chunks_exact_mut(ch) {
            frame.fill(self.sample_at(self.position));
            self.position = self.position.wrapping_add(1);
            frames += 1;
        }
        frames
    }

    /// The next `frames` sample frames, interleaved (`frames * channels` samples).
    ///
    /// At most [`MAX_TONE_BLOCK_FRAMES`] frames are returned per call.
    pub fn next_block(&mut self, frames: usize) -> Vec<i16> {
        let frames = frames.min(MAX_TONE_BLOCK_FRAMES);
        let mut out = vec![0; frames * usize::from(self.channels)];
        self.fill(&mut out);
        out
    }
}
