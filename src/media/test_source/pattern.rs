//! The synthetic camera: [`TestPattern`], a deterministic moving test card (colour bars, luma
//! ramp, plasma, bouncing box, frame number and time in big digits, a sync square each second).

use std::time::Duration;

use super::TestSourceError;
use super::spec::{frame_time, validate_video};
use crate::media::VideoFrameRgb;

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
/// [`ToneSource`](super::ToneSource) beeps) and dark otherwise.
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
    /// Errors if a side is 0 or above [`MAX_TEST_SIDE`](super::MAX_TEST_SIDE), or the rate is 0 or above
    /// [`MAX_TEST_FPS`](super::MAX_TEST_FPS). Renders the static layers, so it costs a few frames' worth of time.
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
    /// second is marked; [`ToneSource`](super::ToneSource) beeps at the same instants.
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
