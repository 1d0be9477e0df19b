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

use std::time::Duration;

use super::{MAX_FRAME_PIXELS, VideoFrameRgb};

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

fn validate_video(width: u32, height: u32, num: u32, den: u32) -> Result<(), TestSourceError> {
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
fn frame_time(index: u64, num: u32, den: u32) -> Duration {
    let nanos = u128::from(index) * u128::from(den) * 1_000_000_000 / u128::from(num.max(1));
    let secs = (nanos / 1_000_000_000).min(u128::from(u64::MAX)) as u64;
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

type Rgb = [u8; 3];

const WHITE: Rgb = [235, 235, 235];
const BLACK: Rgb = [16, 16, 16];

/// 75 % colour bars, left to right.
const BARS: [Rgb; 8] = [
    [191, 191, 191],
    [191, 191, 16],
    [16, 191, 191],
    [16, 191, 16],
    [191, 16, 191],
    [191, 16, 16],
    [16, 16, 191],
    [16, 16, 16],
];

/// Static noise added to the bars and the plasma, in code values either side of zero. Sets how
/// much work a JPEG encoder has (≈ 100 KB for 720p at quality 80).
const NOISE_AMPLITUDE: i32 = 6;

/// Deterministic synthetic camera: call [`TestPattern::frame`] with a frame index.
///
/// The layout scales with the frame size: colour bars in the top 60 %, a scrolling ramp band to
/// 70 %, a scrolling plasma texture below, a checkerboard box bouncing over everything, the frame
/// number (`#000123`) and media time (`00:00:04.100`) top left, and a sync square top right that
/// is white on the frame whose interval holds a whole second (the same instant
/// [`ToneSource`] beeps) and dark otherwise.
///
/// The static layers are rendered once in [`TestPattern::new`]; a frame is memory copies plus a
/// few small fills (well under 5 ms for 720p in release builds).
#[derive(Clone)]
pub struct TestPattern {
    width: u32,
    height: u32,
    fps_num: u32,
    fps_den: u32,
    /// Rows `0..bars_end`, RGB24: bars with static noise.
    bars: Vec<u8>,
    bars_end: u32,
    ramp_end: u32,
    /// Rows `ramp_end..height`, RGB24, periodic in x with period `width`.
    plasma: Vec<u8>,
    /// Font scale: one font pixel is `scale x scale` frame pixels.
    scale: u32,
}

impl std::fmt::Debug for TestPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPattern")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("fps_num", &self.fps_num)
            .field("fps_den", &self.fps_den)
            .finish_non_exhaustive()
    }
}

impl TestPattern {
    /// A `width` x `height` pattern for `fps_num / fps_den` frames per second (the rate only sets
    /// the time printed on each frame and which frames carry the sync square).
    ///
    /// Errors if a side is 0 or above [`MAX_TEST_SIDE`], or the rate is 0 or above
    /// [`MAX_TEST_FPS`]. Renders the static layers, so it costs a few frames' worth of time.
    pub fn new(
        width: u32,
        height: u32,
        fps_num: u32,
        fps_den: u32,
    ) -> Result<Self, TestSourceError> {
        validate_video(width, height, fps_num, fps_den)?;
        let bars_end = height * 3 / 5;
        let ramp_end = (height * 7 / 10).max(bars_end);
        let mut rng = fastrand::Rng::with_seed(0x6672_616d_6563_6173); // "framecas"
        let w = width as usize;

        let mut bars = Vec::with_capacity(w * bars_end as usize * 3);
        for _ in 0..bars_end {
            for x in 0..w {
                let c = BARS[x * BARS.len() / w];
                let n = rng.i32(-NOISE_AMPLITUDE..=NOISE_AMPLITUDE);
                bars.extend(c.iter().map(|&v| clamp_u8(i32::from(v) + n)));
            }
        }

        // Plasma: sum of sines periodic in x over `width` (integer cycle counts), computed once.
        let tau = std::f32::consts::TAU;
        let col: Vec<[f32; 3]> = (0..w)
            .map(|x| {
                let u = x as f32 / w as f32 * tau;
                [(2.0 * u).sin(), (3.0 * u + 1.0).sin(), (7.0 * u).sin()]
            })
            .collect();
        let plasma_rows = (height - ramp_end) as usize;
        let mut plasma = Vec::with_capacity(w * plasma_rows * 3);
        for y in 0..plasma_rows {
            let v = y as f32 / 24.0;
            let (r1, g1, b1) = (v.sin(), (1.7 * v + 2.0).sin(), (0.6 * v + 4.0).sin());
            let fine = (y as f32 / 3.0).sin();
            for c in &col {
                let n = rng.i32(-NOISE_AMPLITUDE..=NOISE_AMPLITUDE) as f32;
                let r = 128.0 + 55.0 * c[0] + 40.0 * r1 + 20.0 * c[2] * fine + n;
                let g = 128.0 + 50.0 * c[1] + 45.0 * g1 + n;
                let b = 128.0 + 45.0 * (c[0] * c[1]) + 50.0 * b1 + 20.0 * c[2] + n;
                plasma.extend([r, g, b].map(|v| v.clamp(0.0, 255.0) as u8));
            }
        }

        Ok(Self {
            width,
            height,
            fps_num,
            fps_den,
            bars,
            bars_end,
            ramp_end,
            plasma,
            scale: (height / 72).max(1),
        })
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Frame height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Frame rate as `(numerator, denominator)`.
    pub fn fps(&self) -> (u32, u32) {
        (self.fps_num, self.fps_den)
    }

    /// Media time of frame `index` (`index * fps_den / fps_num` seconds, rounded down to the
    /// nanosecond).
    pub fn frame_time(&self, index: u64) -> Duration {
        frame_time(index, self.fps_num, self.fps_den)
    }

    /// True if frame `index` covers a whole second, i.e. some integer `k` lies in
    /// `[index * den / num, (index + 1) * den / num)`. At 1 fps or more exactly one frame per
    /// second is marked; [`ToneSource`] beeps at the same instants.
    pub fn is_sync_frame(&self, index: u64) -> bool {
        let (num, den) = (u128::from(self.fps_num), u128::from(self.fps_den));
        let start = u128::from(index) * den; // times num: start of the frame in 1/num seconds
        let k = start.div_ceil(num); // first whole second at or after the frame start
        k * num < start + den
    }

    /// Renders frame `index`. Pure: the same index gives the same pixels.
    pub fn frame(&mut self, index: u64) -> VideoFrameRgb {
        let mut frame = VideoFrameRgb::black(self.width, self.height);
        self.render_into(index, &mut frame);
        frame
    }

    /// Renders frame `index` into `frame`, reusing its buffer (resized if its dimensions differ).
    pub fn render_into(&self, index: u64, frame: &mut VideoFrameRgb) {
        let (w, h) = (self.width as usize, self.height as usize);
        let stride = w * 3;
        frame.width = self.width;
        frame.height = self.height;
        frame.data.resize(stride * h, 0);
        let data = &mut frame.data[..];

        // Static bars.
        let bars_end = self.bars_end as usize * stride;
        data[..bars_end].copy_from_slice(&self.bars);

        // Ramp band: a triangle ramp (period 512) scrolling right by 4 px a frame.
        let ramp_end = self.ramp_end as usize * stride;
        if ramp_end > bars_end {
            let shift = (index % 128) as usize * 4;
            let (first, rest) = data[bars_end..ramp_end].split_at_mut(stride);
            for (x, px) in first.chunks_exact_mut(3).enumerate() {
                let p = (x + 512 - shift) % 512;
                let v = if p < 256 { p } else { 511 - p } as u8;
                px.copy_from_slice(&[v, v, v]);
            }
            for row in rest.chunks_exact_mut(stride) {
                row.copy_from_slice(first);
            }
        }

        // Plasma band, scrolling left by 3 px a frame (wraps at `width`).
        let off = ((index % w as u64) as usize * 3 % w) * 3;
        for (dst, src) in data[ramp_end..]
            .chunks_exact_mut(stride)
            .zip(self.plasma.chunks_exact(stride))
        {
            dst[..stride - off].copy_from_slice(&src[off..]);
            dst[stride - off..].copy_from_slice(&src[..off]);
        }

        // Bouncing checkerboard box.
        let bw = (h * 2 / 9).max(2).min(w);
        let bh = bw.min(h);
        let bx = triangle(index.wrapping_mul((w as u64 / 160).max(1)), (w - bw) as u64) as usize;
        let by = triangle(index.wrapping_mul((h as u64 / 180).max(1)), (h - bh) as u64) as usize;
        let cell = (bw / 10).max(1);
        let hue = hue_color(index);
        let border = (bw / 40).max(1);
        let phase = (index % cell as u64) as usize * 2;
        for y in 0..bh {
            let row = &mut data[(by + y) * stride + bx * 3..][..bw * 3];
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let edge = x < border || y < border || x + border >= bw || y + border >= bh;
                let c = if edge {
                    [235, 200, 16]
                } else if ((x + phase) / cell + y / cell) % 2 == 0 {
                    WHITE
                } else {
                    hue
                };
                px.copy_from_slice(&c);
            }
        }

        // Frame number and media time, on a dark plate.
        let s = self.scale as usize;
        let t = self.frame_time(index);
        let secs = t.as_secs();
        let lines = [
            format!("#{index:06}"),
            format!(
                "{:02}:{:02}:{:02}.{:03}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                t.subsec_millis()
            ),
        ];
        let chars = lines.iter().map(String::len).max().unwrap_or(0);
        let (px0, py0) = (2 * s, 2 * s);
        fill_rect(
            frame,
            px0,
            py0,
            (chars * 6 + 2) * s,
            (lines.len() * 9 + 1) * s,
            BLACK,
        );
        for (i, line) in lines.iter().enumerate() {
            draw_text(frame, px0 + 2 * s, py0 + (i * 9 + 1) * s, s, line, WHITE);
        }

        // Sync square, top right.
        let side = 8 * s;
        let sx = w.saturating_sub(side + 2 * s);
        let c = if self.is_sync_frame(index) {
            [255, 255, 255]
        } else {
            [0, 0, 0]
        };
        fill_rect(frame, sx, py0, side, side, c);
    }
}

/// 0, 1, .., max, max-1, .., 1, 0, 1, .. (period `2 * max`).
fn triangle(t: u64, max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let p = t % (2 * max);
    if p <= max { p } else { 2 * max - p }
}

/// A saturated colour that walks around the hue circle, one step per frame.
fn hue_color(index: u64) -> Rgb {
    let p = (index % 768) as u32;
    let (seg, f) = (p / 256, (p % 256) as u8);
    match seg {
        0 => [255 - f, f, 40],
        1 => [40, 255 - f, f],
        _ => [f, 40, 255 - f],
    }
}

fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Fills a rectangle, clipped to the frame.
fn fill_rect(frame: &mut VideoFrameRgb, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    let (x1, y1) = ((x + w).min(fw), (y + h).min(fh));
    if x >= x1 || y >= y1 {
        return;
    }
    let stride = fw * 3;
    for row in frame.data[y * stride..y1 * stride].chunks_exact_mut(stride) {
        for px in row[x * 3..x1 * 3].chunks_exact_mut(3) {
            px.copy_from_slice(&c);
        }
    }
}

/// Draws `text` with the 5x7 font, each font pixel `s x s`, advancing 6 font pixels a glyph.
fn draw_text(frame: &mut VideoFrameRgb, x: usize, y: usize, s: usize, text: &str, c: Rgb) {
    for (i, ch) in text.chars().enumerate() {
        let gx = x + i * 6 * s;
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    fill_rect(frame, gx + col * s, y + row * s, s, s, c);
                }
            }
        }
    }
}

/// 5x7 bitmaps, one byte per row, bit 4 is the leftmost column. Unknown characters are blank.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        _ => [0; 7],
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_sized() {
        let mut a = TestPattern::new(320, 240, 30, 1).unwrap();
        let mut b = TestPattern::new(320, 240, 30, 1).unwrap();
        for i in [0, 1, 29, 30, 1_000_000, u64::MAX] {
            let fa = a.frame(i);
            assert_eq!(fa.validate(), Ok(()));
            assert_eq!((fa.width, fa.height), (320, 240));
            assert!(fa == b.frame(i), "frame {i} differs between instances");
            assert!(fa == a.frame(i), "frame {i} differs on a second call");
        }
        assert!(a.frame(1) != a.frame(2), "the pattern must move");
    }

    #[test]
    fn pattern_odd_and_tiny_sizes_do_not_panic() {
        for (w, h) in [
            (1, 1),
            (2, 1),
            (1, 7),
            (3, 5),
            (17, 9),
            (641, 361),
            (8, 4000),
        ] {
            let mut p = TestPattern::new(w, h, 25, 1).unwrap();
            for i in [0, 7, 12345] {
                let f = p.frame(i);
                assert_eq!(f.validate(), Ok(()), "{w}x{h}");
            }
        }
    }

    #[test]
    fn pattern_shows_counter_and_sync_square() {
        let mut p = TestPattern::new(1280, 720, 30, 1).unwrap();
        // The counter plate differs between consecutive frames (digits change).
        let (a, b) = (p.frame(10), p.frame(11));
        let s = 10; // 720 / 72
        let plate = |f: &VideoFrameRgb| {
            (0..9 * s * 2)
                .flat_map(|y| (0..80 * s).map(move |x| (x, y)))
                .map(|(x, y)| f.pixel(x, y).unwrap())
                .collect::<Vec<_>>()
        };
        assert!(plate(&a) != plate(&b));
        // Sync square: frame 0 and 30 white, 1 and 29 dark.
        let probe = |f: &VideoFrameRgb| f.pixel(1280 - 2 * s - 4 * s, 2 * s + 4 * s).unwrap();
        assert_eq!(probe(&p.frame(0)), [255; 3]);
        assert_eq!(probe(&p.frame(30)), [255; 3]);
        assert_eq!(probe(&p.frame(1)), [0; 3]);
        assert_eq!(probe(&p.frame(29)), [0; 3]);
    }

    #[test]
    fn exactly_one_sync_frame_per_second() {
        for (num, den) in [(30, 1), (30000, 1001), (25, 1), (1, 1), (7, 3), (1000, 1)] {
            let p = TestPattern::new(16, 16, num, den).unwrap();
            // Frames that end by 20 s; they cover more than [0, 19 s], so seconds 0..=19.
            let frames = 20 * u64::from(num) / u64::from(den);
            let marked: Vec<u64> = (0..frames).filter(|&i| p.is_sync_frame(i)).collect();
            assert_eq!(marked.len(), 20, "{num}/{den}: {marked:?}");
            for &i in &marked {
                // The frame's interval [t0, t1) holds a whole second.
                let (t0, t1) = (p.frame_time(i), p.frame_time(i + 1));
                let k = t0.as_secs() + u64::from(t0.subsec_nanos() > 0);
                assert!(Duration::from_secs(k) < t1, "{num}/{den} frame {i}");
            }
        }
        // Below 1 fps every frame holds a whole second.
        let slow = TestPattern::new(16, 16, 1, 2).unwrap();
        assert!((0..10).all(|i| slow.is_sync_frame(i)));
    }

    #[test]
    fn pattern_rejects_bad_geometry() {
        assert!(matches!(
            TestPattern::new(0, 720, 30, 1),
            Err(TestSourceError::DimensionsOutOfRange { .. })
        ));
        assert!(TestPattern::new(8193, 10, 30, 1).is_err());
        assert!(matches!(
            TestPattern::new(10, 10, 0, 1),
            Err(TestSourceError::FrameRateOutOfRange { .. })
        ));
        assert!(TestPattern::new(10, 10, 30, 0).is_err());
        assert!(TestPattern::new(10, 10, 1001, 1).is_err());
    }

    #[test]
    fn tone_is_deterministic_and_continuous_across_blocks() {
        let mut whole = ToneSource::new(48_000, 2, 440).unwrap();
        let all = whole.next_block(48_000 + 1000);
        let mut pieces = ToneSource::new(48_000, 2, 440).unwrap();
        let mut joined = Vec::new();
        for n in [1, 7, 480, 1023, 96, 30_000, 17_393] {
            joined.extend(pieces.next_block(n));
        }
        assert_eq!(joined.len(), all.len());
        assert!(joined == all, "block size changed the signal");
        assert_eq!(pieces.position(), 49_000);
        // Interleaved: both channels equal.
        assert!(all.chunks_exact(2).all(|f| f[0] == f[1]));
        // Outside the beep the step between samples is bounded by the sine's slope
        // (2*pi*440/48000 * 8231 ≈ 474), i.e. no discontinuity anywhere, block joins included.
        let mono: Vec<i16> = all.iter().step_by(2).copied().collect();
        let beep = |n: usize| whole.is_beep(n as u64) || whole.is_beep(n as u64 + 1);
        for n in 0..mono.len() - 1 {
            if !beep(n) {
                let d = (i32::from(mono[n + 1]) - i32::from(mono[n])).abs();
                assert!(d <= 480, "jump of {d} at frame {n}");
            }
        }
        // Level: peak of the plain tone is -12 dBFS.
        let peak = mono[10_000..20_000]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!((8200..=8232).contains(&peak), "peak {peak}");
        // The beep is louder than the tone.
        let beep_peak = mono[1000..2000]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!(beep_peak > 15_000, "beep peak {beep_peak}");
        assert!(whole.is_beep(48_000) && !whole.is_beep(48_000 + 2400));
    }

    #[test]
    fn tone_is_exact_far_from_zero() {
        let t = ToneSource::new(44_100, 1, 441).unwrap();
        // 441 Hz at 44.1 kHz repeats every 100 frames, also after many hours.
        let far = 44_100 * 3_600_000 + 30_700;
        for k in 0..100 {
            assert_eq!(t.sample_at(30_000 + k), t.sample_at(far + k));
        }
        assert_eq!(t.sample_at(u64::MAX), t.sample_at(u64::MAX)); // no overflow
    }

    #[test]
    fn tone_rejects_bad_config() {
        assert!(matches!(
            ToneSource::new(0, 2, 440),
            Err(TestSourceError::SampleRateOutOfRange { .. })
        ));
        assert!(matches!(
            ToneSource::new(48_000, 0, 440),
            Err(TestSourceError::ChannelsOutOfRange { .. })
        ));
        assert!(matches!(
            ToneSource::new(48_000, 1, 24_000),
            Err(TestSourceError::FrequencyOutOfRange { .. })
        ));
        let mut t = ToneSource::new(8000, 3, 440).unwrap();
        assert_eq!(t.next_block(usize::MAX).len(), MAX_TONE_BLOCK_FRAMES * 3);
        let mut odd = [0i16; 7];
        assert_eq!(t.fill(&mut odd), 2);
    }

    #[test]
    fn spec_parsing() {
        let ok = |s: &str| parse_test_spec(s).unwrap();
        assert_eq!(ok("test"), TestSpec::default());
        assert_eq!(ok(" test:1280x720@30 "), TestSpec::default());
        assert_eq!(
            ok("test:640X480"),
            TestSpec {
                width: 640,
                height: 480,
                fps_num: 30,
                fps_den: 1
            }
        );
        let ntsc = ok("test:1920x1080@29.97");
        assert_eq!((ntsc.fps_num, ntsc.fps_den), (2997, 100));
        let ntsc = ok("test:1920x1080@30000/1001");
        assert_eq!((ntsc.fps_num, ntsc.fps_den), (30000, 1001));
        assert_eq!(ok("test:8x8@60/2").fps_num, 30);
        assert_eq!(ok("test:8x8@.5").fps_den, 2);
        assert!(ok("test:1280x720@30").frame_interval() > Duration::from_millis(33));
    }

    #[test]
    fn spec_parsing_errors() {
        let err = |s: &str| parse_test_spec(s).unwrap_err();
        assert!(matches!(err("webcam"), TestSourceError::NotTestSpec { .. }));
        assert!(matches!(
            err("testing"),
            TestSourceError::NotTestSpec { .. }
        ));
        assert!(matches!(err("test:"), TestSourceError::BadSize { .. }));
        assert!(matches!(err("test:1280"), TestSourceError::BadSize { .. }));
        assert!(matches!(err("test:1280x"), TestSourceError::BadSize { .. }));
        assert!(matches!(
            err("test:-1x720"),
            TestSourceError::BadSize { .. }
        ));
        assert!(matches!(
            err("test:99999999999x720"),
            TestSourceError::BadSize { .. }
        ));
        assert!(matches!(
            err("test:1280x720@"),
            TestSourceError::BadFrameRate { .. }
        ));
        assert!(matches!(
            err("test:1280x720@abc"),
            TestSourceError::BadFrameRate { .. }
        ));
        assert!(matches!(
            err("test:1280x720@30/"),
            TestSourceError::BadFrameRate { .. }
        ));
        assert!(matches!(
            err("test:1280x720@1.2345678"),
            TestSourceError::BadFrameRate { .. }
        ));
        assert!(matches!(
            err("test:0x720@30"),
            TestSourceError::DimensionsOutOfRange { .. }
        ));
        assert!(matches!(
            err("test:10000x720@30"),
            TestSourceError::DimensionsOutOfRange { .. }
        ));
        assert!(matches!(
            err("test:1280x720@0"),
            TestSourceError::FrameRateOutOfRange { .. }
        ));
        assert!(matches!(
            err("test:1280x720@30/0"),
            TestSourceError::FrameRateOutOfRange { .. }
        ));
        // Messages name the offending input.
        assert!(err("test:1280x720@abc").to_string().contains("\"abc\""));
        assert!(err("test:0x720").to_string().contains("0x720"));
    }
}
