//! Media adapters at the edges of the sans-IO core.
//!
//! Everything here either produces media for a sender or consumes it in a player; none of it
//! touches sockets or the protocol state machines (see ARCHITECTURE.md, "media at the edges").
//!
//! | module | feature | what |
//! | --- | --- | --- |
//! | [`test_source`] | none | synthetic camera ([`TestPattern`]) and microphone ([`ToneSource`]), `test:WxH@FPS` parsing |
//! | [`clock`] | none | wall-clock helpers (`unix_micros`) |
//! | `player` | `jpeg` | the player's media side: decode, A/V sync, window, sound, recorder, on their own threads |
//! | [`audio_out`] | none for [`ClockSink`] and [`AudioSink`]; `cpal` for `AudioOutput` | audio output, the player's master clock |
//! | `jpeg` | `jpeg` | `JpegEncoder` / `JpegDecoder` (turbojpeg), with a pixel bound for untrusted input |
//! | [`mjpeg`] | none for the scanner and check; `jpeg` for `MjpegSource` | pass-through of already-compressed JPEGs (`mjpeg:-`, `mjpeg:PATH`) |
//! | `display` | `opencv` | `Window`: an OpenCV highgui window that refuses to open without a display |
//! | [`webcam`] | `webcam` (Linux) for the camera; `jpeg` + `ffmpeg` for its format choice and conversions | V4L2 capture: a camera's MJPEG passed through, raw YUYV/NV12 made planar and compressed from YUV |
//! | `file_source` | `jpeg` + `ffmpeg` | movie files through FFmpeg, compressed from planar YUV |
//!
//! # Pixel format
//!
//! Frames travel between these adapters as [`VideoFrameRgb`]: packed 8-bit RGB (`R, G, B` per
//! pixel, rows top to bottom, no row padding, so `data.len() == width * height * 3`). It is the
//! format turbojpeg compresses from and decompresses to without a conversion pass; the OpenCV
//! window swaps it to BGR itself.

pub mod audio_out;
pub mod avsync;
pub mod clock;
#[cfg(feature = "opencv")]
pub mod display;
pub mod file_source;
#[cfg(feature = "jpeg")]
pub mod jpeg;
pub mod mjpeg;
#[cfg(feature = "jpeg")]
pub mod player;
pub mod recorder;
pub mod resample;

/// Initialises FFmpeg's libraries once, with their own log quiet (our messages say what
/// failed and why).
#[cfg(feature = "ffmpeg")]
pub(crate) fn ffmpeg_init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}
#[cfg(feature = "jpeg")]
pub mod source;
pub mod test_source;
pub mod wav_source;
pub mod webcam;

#[cfg(feature = "cpal")]
pub use audio_out::AudioOutput;
pub use audio_out::{AudioError, AudioSink, ClockSink};
#[cfg(feature = "opencv")]
pub use display::{DisplayError, Key, Window};
#[cfg(feature = "jpeg")]
pub use jpeg::{JpegDecoder, JpegEncoder, JpegError, JpegInfo, Subsampling};
pub use test_source::{TestPattern, TestSourceError, TestSpec, ToneSource, parse_test_spec};

/// Largest frame area, in pixels, that the media adapters accept by default: 8192 x 8192
/// (67 108 864 pixels, 192 MiB as RGB24). It covers 8K UHD (7680 x 4320).
///
/// A JPEG arriving from the network whose header claims more is refused before any pixel buffer
/// is allocated (ARCHITECTURE.md, convention 3: a length claimed by a datagram never sizes an
/// allocation beyond a fixed limit).
pub const MAX_FRAME_PIXELS: u64 = 8192 * 8192;

/// A decoded or generated video frame: packed RGB24, 3 bytes per pixel in `R, G, B` order, rows
/// top to bottom with no padding.
///
/// Invariant (checked by [`VideoFrameRgb::validate`], relied on by the encoders):
/// `data.len() == width * height * 3`.
#[derive(Clone, PartialEq, Eq)]
pub struct VideoFrameRgb {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel bytes, `width * height * 3` of them.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for VideoFrameRgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never dump megabytes of pixels into a log line.
        f.debug_struct("VideoFrameRgb")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// A [`VideoFrameRgb`] whose buffer length disagrees with its dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RGB frame {width}x{height} needs {expected} bytes but holds {actual}")]
pub struct FrameSizeError {
    /// Claimed width.
    pub width: u32,
    /// Claimed height.
    pub height: u32,
    /// `width * height * 3`, or `u64::MAX` if that overflows.
    pub expected: u64,
    /// `data.len()`.
    pub actual: u64,
}

impl VideoFrameRgb {
    /// Bytes per pixel of the packed RGB24 layout.
    pub const BYTES_PER_PIXEL: usize = 3;

    /// A black frame of the given size.
    ///
    /// Allocates `width * height * 3` bytes: callers bound the size first (see
    /// [`MAX_FRAME_PIXELS`]).
    pub fn black(width: u32, height: u32) -> Self {
        let len = width as usize * height as usize * Self::BYTES_PER_PIXEL;
        Self {
            width,
            height,
            data: vec![0; len],
        }
    }

    /// Bytes in one row (`width * 3`).
    pub fn stride(&self) -> usize {
        self.width as usize * Self::BYTES_PER_PIXEL
    }

    /// Checks the invariant `data.len() == width * height * 3`.
    pub fn validate(&self) -> Result<(), FrameSizeError> {
        let expected = u64::from(self.width)
            .checked_mul(u64::from(self.height))
            .and_then(|p| p.checked_mul(Self::BYTES_PER_PIXEL as u64))
            .unwrap_or(u64::MAX);
        let actual = self.data.len() as u64;
        if expected == actual {
            Ok(())
        } else {
            Err(FrameSizeError {
                width: self.width,
                height: self.height,
                expected,
                actual,
            })
        }
    }

    /// The `R, G, B` bytes of pixel (`x`, `y`), or `None` outside the frame or if the buffer is
    /// too short.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * Self::BYTES_PER_PIXEL;
        let p = self.data.get(i..i + Self::BYTES_PER_PIXEL)?;
        Some([p[0], p[1], p[2]])
    }
}

/// Peak signal-to-noise ratio between two frames in dB, over all RGB samples (peak 255).
///
/// `None` if the frames differ in size or either is inconsistent; `f64::INFINITY` if they are
/// identical. Above 30 dB is a decent JPEG, above 40 dB near-transparent. Meant for tests and
/// diagnostics, also from other modules' tests.
pub fn psnr(a: &VideoFrameRgb, b: &VideoFrameRgb) -> Option<f64> {
    if a.width != b.width || a.height != b.height || a.validate().is_err() || b.validate().is_err()
    {
        return None;
    }
    if a.data.is_empty() {
        return None;
    }
    let sse: u64 = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(&x, &y)| {
            let d = u64::from(x.abs_diff(y));
            d * d
        })
        .sum();
    if sse == 0 {
        return Some(f64::INFINITY);
    }
    let mse = sse as f64 / a.data.len() as f64;
    Some(10.0 * (255.0 * 255.0 / mse).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_and_pixel() {
        let mut f = VideoFrameRgb::black(4, 2);
        assert_eq!(f.validate(), Ok(()));
        assert_eq!(f.stride(), 12);
        f.data[(5 * 3)..(5 * 3 + 3)].copy_from_slice(&[1, 2, 3]);
        assert_eq!(f.pixel(1, 1), Some([1, 2, 3]));
        assert_eq!(f.pixel(4, 0), None);
        f.data.pop();
        let err = f.validate().unwrap_err();
        assert_eq!((err.expected, err.actual), (24, 23));
        assert!(err.to_string().contains("4x2"));
        assert!(format!("{f:?}").contains("data_len"));
    }

    #[test]
    fn psnr_values() {
        let a = VideoFrameRgb::black(2, 2);
        let mut b = a.clone();
        assert_eq!(psnr(&a, &b), Some(f64::INFINITY));
        b.data.fill(255); // every sample off by the full peak: 0 dB
        assert!(psnr(&a, &b).unwrap().abs() < 1e-9);
        b.data.fill(1); // MSE 1: 48.13 dB
        assert!((psnr(&a, &b).unwrap() - 48.1308).abs() < 1e-3);
        assert_eq!(psnr(&a, &VideoFrameRgb::black(2, 3)), None);
        assert_eq!(
            psnr(&VideoFrameRgb::black(0, 0), &VideoFrameRgb::black(0, 0)),
            None
        );
    }
}
