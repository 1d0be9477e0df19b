//! Synthetic media sources that stand in for a camera and a microphone.
//!
//! - [`TestPattern`] draws a deterministic, moving test card: textured colour bars, a scrolling
//!   luma ramp, a scrolling plasma texture, a bouncing checkerboard box, the frame number and the
//!   media time in big digits, and a sync square that lights on the frame holding each whole
//!   second.
//! - [`ToneSource`] produces a 440 Hz sine at -12 dBFS with a 50 ms 1 kHz beep at the start of
//!   each second, so the beep and the video sync square mark the same instant and A/V sync can be
//!   checked by eye and ear.
//! - [`parse_test_spec`] reads the CLI form `test` or `test:WxH@FPS`.
//!
//! Both sources are pure functions of their position: frame `i` and sample frame `n` are the same
//! on every run, machine and block size.
//!
//! # Layout
//!
//! `spec` (parsing and bounds), `pattern` ([`TestPattern`]), `tone` ([`ToneSource`]); the shared
//! limits and [`TestSourceError`] are here.

mod pattern;
mod spec;
#[cfg(test)]
mod tests;
mod tone;

pub use pattern::TestPattern;
pub use spec::{TestSpec, parse_test_spec};
pub use tone::ToneSource;

/// Largest width or height, in pixels, that a test source accepts.
pub const MAX_TEST_SIDE: u32 = 8192;

/// Largest frame rate, in frames per second, that a test source accepts.
pub const MAX_TEST_FPS: u32 = 1000;

/// Most sample frames [`ToneSource::next_block`] returns in one call (about 21 s at 48 kHz).
pub const MAX_TONE_BLOCK_FRAMES: usize = 1 << 20;

/// Errors from parsing a test spec or configuring a synthetic source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestSourceError {
    /// The source string is not a test source at all.
    #[error("expected `test` or `test:WIDTHxHEIGHT@FPS` (e.g. `test:1280x720@30`), got {input:?}")]
    NotTestSpec {
        /// The string given.
        input: String,
    },
    /// The size part is not `WIDTHxHEIGHT`.
    #[error("bad frame size {input:?} in test spec: expected WIDTHxHEIGHT, e.g. 1280x720")]
    BadSize {
        /// The size part as given.
        input: String,
    },
    /// The frame rate part is not a number, `N/D` fraction or decimal.
    #[error("bad frame rate {input:?} in test spec: expected e.g. 30, 29.97 or 30000/1001")]
    BadFrameRate {
        /// The frame rate part as given.
        input: String,
    },
    /// Width or height is zero or too large.
    #[error("frame size {width}x{height} is out of range: each side must be 1..={max} pixels")]
    DimensionsOutOfRange {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Largest allowed side.
        max: u32,
    },
    /// The frame rate is zero, has a zero denominator or is too high.
    #[error("frame rate {num}/{den} is out of range: must be above 0 and at most {max} fps")]
    FrameRateOutOfRange {
        /// Numerator.
        num: u32,
        /// Denominator.
        den: u32,
        /// Largest allowed rate in whole frames per second.
        max: u32,
    },
    /// The audio sample rate is outside 8000..=384000 Hz.
    #[error("sample rate {sample_rate} Hz is out of range: must be 8000..=384000")]
    SampleRateOutOfRange {
        /// Requested rate.
        sample_rate: u32,
    },
    /// The channel count is outside 1..=32.
    #[error("channel count {channels} is out of range: must be 1..=32")]
    ChannelsOutOfRange {
        /// Requested count.
        channels: u16,
    },
    /// The tone frequency is zero or at/above the Nyquist frequency.
    #[error(
        "tone frequency {freq_hz} Hz is out of range for {sample_rate} Hz: must be 1..{nyquist}"
    )]
    FrequencyOutOfRange {
        /// Requested frequency.
        freq_hz: u32,
        /// Sample rate it was requested for.
        sample_rate: u32,
        /// Half the sample rate (exclusive bound).
        nyquist: u32,
    },
}
