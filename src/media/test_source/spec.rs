//! The CLI form `test`, `test:WxH` or `test:WxH@FPS` ([`parse_test_spec`]), parsed into a
//! [`TestSpec`], and the bounds every synthetic video source checks.

use std::time::Duration;

use super::{MAX_TEST_FPS, MAX_TEST_SIDE, TestPattern, TestSourceError};
use crate::media::MAX_FRAME_PIXELS;

/// A parsed `test:WxH@FPS` source: the geometry and rate of a [`TestPattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestSpec {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frame rate numerator (frames).
    pub fps_num: u32,
    /// Frame rate denominator (seconds); `30000/1001` is NTSC 29.97.
    pub fps_den: u32,
}

impl Default for TestSpec {
    /// 1280x720 at 30 fps, what a bare `test` means.
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps_num: 30,
            fps_den: 1,
        }
    }
}

impl TestSpec {
    /// Checks the ranges a [`TestPattern`] needs.
    pub fn validate(&self) -> Result<(), TestSourceError> {
        validate_video(self.width, self.height, self.fps_num, self.fps_den)
    }

    /// Duration of one frame, rounded to the nanosecond.
    pub fn frame_interval(&self) -> Duration {
        frame_time(1, self.fps_num, self.fps_den)
    }

    /// Builds the pattern this spec describes.
    pub fn pattern(&self) -> Result<TestPattern, TestSourceError> {
        TestPattern::new(self.width, self.height, self.fps_num, self.fps_den)
    }
}

/// Parses the CLI source form `test`, `test:WIDTHxHEIGHT` or `test:WIDTHxHEIGHT@FPS`.
///
/// FPS may be an integer (`30`), a decimal (`29.97`) or a fraction (`30000/1001`); a missing
/// `@FPS` means 30. A bare `test` means 1280x720@30. Surrounding whitespace is ignored; `x` may
/// be upper case.
///
/// ```
/// use framecast::media::{parse_test_spec, TestSpec};
/// let s = parse_test_spec("test:640x480@30000/1001").unwrap();
/// assert_eq!(s, TestSpec { width: 640, height: 480, fps_num: 30000, fps_den: 1001 });
/// assert_eq!(parse_test_spec("test").unwrap(), TestSpec::default());
/// assert!(parse_test_spec("test:640x0@30").is_err());
/// ```
pub fn parse_test_spec(s: &str) -> Result<TestSpec, TestSourceError> {
    let input = s.trim();
    let not_test = || TestSourceError::NotTestSpec {
        input: s.to_owned(),
    };
    let rest = input.strip_prefix("test").ok_or_else(not_test)?;
    let mut spec = TestSpec::default();
    if rest.is_empty() {
        return Ok(spec);
    }
    let rest = rest.strip_prefix(':').ok_or_else(not_test)?;
    let (size, fps) = match rest.split_once('@') {
        Some((size, fps)) => (size, Some(fps)),
        None => (rest, None),
    };
    let bad_size = || TestSourceError::BadSize {
        input: size.to_owned(),
    };
    let (w, h) = size.split_once(['x', 'X']).ok_or_else(bad_size)?;
    spec.width = parse_u32(w).ok_or_else(bad_size)?;
    spec.height = parse_u32(h).ok_or_else(bad_size)?;
    if let Some(fps) = fps {
        let (num, den) = parse_fps(fps).ok_or_else(|| TestSourceError::BadFrameRate {
            input: fps.to_owned(),
        })?;
        spec.fps_num = num;
        spec.fps_den = den;
    }
    spec.validate()?;
    Ok(spec)
}

/// Digits only (no sign, no `+`), fits in u32.
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `30`, `29.97` or `30000/1001` to a reduced fraction. Range checks are left to validation.
fn parse_fps(s: &str) -> Option<(u32, u32)> {
    let (num, den) = if let Some((n, d)) = s.split_once('/') {
        (parse_u32(n)?, parse_u32(d)?)
    } else if let Some((int, frac)) = s.split_once('.') {
        if frac.is_empty() || frac.len() > 6 {
            return None;
        }
        let den = 10u64.pow(frac.len() as u32);
        let int = if int.is_empty() {
            0
        } else {
            u64::from(parse_u32(int)?)
        };
        let num = int
            .checked_mul(den)?
            .checked_add(u64::from(parse_u32(frac)?))?;
        (u32::try_from(num).ok()?, den as u32)
    } else {
        (parse_u32(s)?, 1)
    };
    let g = gcd(num, den).max(1);
    Some((num / g, den / g))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

pub(super) fn validate_video(
    width: u32,
    height: u32,
    num: u32,
    den: u32,
) -> Result<(), TestSourceError> {
    if width == 0 || height == 0 || width > MAX_TEST_SIDE || height > MAX_TEST_SIDE {
        return Err(TestSourceError::DimensionsOutOfRange {
            width,
            height,
            max: MAX_TEST_SIDE,
        });
    }
    debug_assert!(u64::from(width) * u64::from(height) <= MAX_FRAME_PIXELS);
    if num == 0 || den == 0 || u64::from(num) > u64::from(MAX_TEST_FPS) * u64::from(den) {
        return Err(TestSourceError::FrameRateOutOfRange {
            num,
            den,
            max: MAX_TEST_FPS,
        });
    }
    Ok(())
}

/// Media time of frame `index` at `num/den` fps, rounded down to the nanosecond.
pub(super) fn frame_time(index: u64, num: u32, den: u32) -> Duration {
    let nanos = u128::from(index) * u128::from(den) * 1_000_000_000 / u128::from(num.max(1));
    let secs = (nanos / 1_000_000_000).min(u128::from(u64::MAX)) as u64;
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}
