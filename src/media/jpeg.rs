//! JPEG encoding and decoding through turbojpeg (libjpeg-turbo 3).
//!
//! [`JpegEncoder`] turns a [`VideoFrameRgb`] into a baseline JPEG; [`JpegDecoder`] turns a JPEG
//! into a [`VideoFrameRgb`]. Decoding treats its input as untrusted (it came off the network):
//! the header is parsed first and a frame whose claimed area exceeds the caller's bound (by
//! default [`MAX_FRAME_PIXELS`]) is refused before any pixel buffer is allocated, and
//! progressive JPEGs are limited to [`MAX_PROGRESSIVE_SCANS`] scans (libjpeg-turbo's advice
//! against scan-count denial of service).
//!
//! Both types keep their turbojpeg handle, so make one per encoding/decoding thread and reuse it.

use super::{FrameSizeError, MAX_FRAME_PIXELS, VideoFrameRgb};
use turbojpeg::{Compressor, Decompressor, Image, PixelFormat, Subsamp};

pub use super::psnr;

/// Most scans a progressive JPEG may have before decoding gives up.
pub const MAX_PROGRESSIVE_SCANS: u32 = 500;

/// Errors from [`JpegEncoder`] and [`JpegDecoder`].
#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    /// turbojpeg could not create a compressor or decompressor (out of memory).
    #[error("cannot initialise turbojpeg: {0}")]
    Init(#[source] turbojpeg::Error),
    /// The quality is outside 1..=100.
    #[error("JPEG quality {quality} is out of range: must be 1..=100")]
    InvalidQuality {
        /// Requested quality.
        quality: u8,
    },
    /// The frame to encode is inconsistent (buffer length vs dimensions).
    #[error("cannot encode: {0}")]
    BadFrame(#[from] FrameSizeError),
    /// The frame to encode has a zero side or is too large for JPEG (65535 per side).
    #[error("cannot encode a {width}x{height} frame: each side must be 1..=65535 pixels")]
    UnencodableSize {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// turbojpeg failed while compressing.
    #[error("JPEG encoding failed: {0}")]
    Encode(#[source] turbojpeg::Error),
    /// The input does not start with a readable JPEG header.
    #[error("not a valid JPEG ({len} bytes): {source}")]
    Header {
        /// Input length.
        len: usize,
        /// What turbojpeg reported.
        #[source]
        source: turbojpeg::Error,
    },
    /// The header claims a frame larger than allowed; nothing was allocated.
    #[error("JPEG claims {width}x{height} = {pixels} pixels, above the limit of {max_pixels}")]
    TooLarge {
        /// Claimed width.
        width: u64,
        /// Claimed height.
        height: u64,
        /// `width * height`.
        pixels: u64,
        /// The bound in force.
        max_pixels: u64,
    },
    /// The header claims a zero width or height.
    #[error("JPEG claims an empty {width}x{height} frame")]
    Empty {
        /// Claimed width.
        width: u64,
        /// Claimed height.
        height: u64,
    },
    /// turbojpeg failed while decompressing (corrupt or truncated data; libjpeg-turbo warnings
    /// such as "premature end of data" count as failures, so a damaged frame is dropped whole).
    #[error("JPEG decoding failed ({width}x{height}): {source}")]
    Decode {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// What turbojpeg reported.
        #[source]
        source: turbojpeg::Error,
    },
}

/// Chroma subsampling of a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Subsampling {
    /// 4:4:4, full-resolution chroma (largest, sharpest colour edges).
    Yuv444,
    /// 4:2:2, chroma halved horizontally.
    Yuv422,
    /// 4:2:0, chroma halved both ways: what cameras and browsers use; the default.
    #[default]
    Yuv420,
    /// Luma only.
    Gray,
}

impl Subsampling {
    fn to_turbo(self) -> Subsamp {
        match self {
            Self::Yuv444 => Subsamp::None,
            Self::Yuv422 => Subsamp::Sub2x1,
            Self::Yuv420 => Subsamp::Sub2x2,
            Self::Gray => Subsamp::Gray,
        }
    }

    fn from_turbo(s: Subsamp) -> Option<Self> {
        match s {
            Subsamp::None => Some(Self::Yuv444),
            Subsamp::Sub2x1 => Some(Self::Yuv422),
            Subsamp::Sub2x2 => Some(Self::Yuv420),
            Subsamp::Gray => Some(Self::Gray),
            _ => None,
        }
    }
}

/// What a JPEG header says, read without decoding the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Chroma subsampling, `None` for layouts other than those in [`Subsampling`]
    /// (4:4:0, 4:1:1, ...), which still decode.
    pub subsampling: Option<Subsampling>,
    /// Progressive (multi-scan) JPEG.
    pub progressive: bool,
}

impl JpegInfo {
    /// `width * height`.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Compresses RGB frames to JPEG, reusing one turbojpeg compressor.
pub struct JpegEncoder {
    compressor: Compressor,
    quality: u8,
    subsampling: Subsampling,
}

impl std::fmt::Debug for JpegEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JpegEncoder")
            .field("quality", &self.quality)
            .field("subsampling", &self.subsampling)
            .finish_non_exhaustive()
    }
}

impl JpegEncoder {
    /// An encoder at `quality` (1..=100; 80 is a good default for live video) and chroma
    /// `subsampling`.
    pub fn new(quality: u8, subsampling: Subsampling) -> Result<Self, JpegError> {
        if !(1..=100).contains(&quality) {
            return Err(JpegError::InvalidQuality { quality });
        }
        let mut compressor = Compressor::new().map_err(JpegError::Init)?;
        compressor
            .set_quality(i32::from(quality))
            .map_err(JpegError::Init)?;
        compressor
            .set_subsamp(subsampling.to_turbo())
            .map_err(JpegError::Init)?;
        Ok(Self {
            compressor,
            quality,
            subsampling,
        })
    }

    /// The quality this encoder uses.
    pub fn quality(&self) -> u8 {
        self.quality
    }

    /// The subsampling this encoder uses.
    pub fn subsampling(&self) -> Subsampling {
        self.subsampling
    }

    /// Compresses `frame` into a new baseline JPEG.
    ///
    /// Errors if the frame's buffer disagrees with its dimensions, a side is 0 or above 65535,
    /// or turbojpeg fails; never panics.
    pub fn encode_rgb(&mut self, frame: &VideoFrameRgb) -> Result<Vec<u8>, JpegError> {
        frame.validate()?;
        if frame.width == 0 || frame.height == 0 || frame.width > 65535 || frame.height > 65535 {
            return Err(JpegError::UnencodableSize {
                width: frame.width,
                height: frame.height,
            });
        }
        let image = Image {
            pixels: &frame.data[..],
            width: frame.width as usize,
            pitch: frame.stride(),
            height: frame.height as usize,
            format: PixelFormat::RGB,
        };
        let buf = self
            .compressor
            .compress_to_owned(image)
            .map_err(JpegError::Encode)?;
        Ok(buf.to_vec())
    }
}

/// Decompresses untrusted JPEG bytes to RGB frames, reusing one turbojpeg decompressor.
pub struct JpegDecoder {
    decompressor: Decompressor,
}

impl std::fmt::Debug for JpegDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JpegDecoder").finish_non_exhaustive()
    }
}

impl JpegDecoder {
    /// A decoder (with the progressive scan limit set).
    pub fn new() -> Result<Self, JpegError> {
        let mut decompressor = Decompressor::new().map_err(JpegError::Init)?;
        decompressor
            .set_scan_limit(MAX_PROGRESSIVE_SCANS)
            .map_err(JpegError::Init)?;
        Ok(Self { decompressor })
    }

    /// Parses the JPEG header only: size, subsampling, progressive. Allocates nothing sized by
    /// the input.
    pub fn read_header(&mut self, jpeg: &[u8]) -> Result<JpegInfo, JpegError> {
        let header = self
            .decompressor
            .read_header(jpeg)
            .map_err(|source| JpegError::Header {
                len: jpeg.len(),
                source,
            })?;
        let (w, h) = (header.width as u64, header.height as u64);
        if w == 0 || h == 0 {
            return Err(JpegError::Empty {
                width: w,
                height: h,
            });
        }
        // JPEG sides are 16-bit, so these cannot fail for a real header; stay defensive anyway.
        let too_large = || JpegError::TooLarge {
            width: w,
            height: h,
            pixels: w.saturating_mul(h),
            max_pixels: u64::from(u32::MAX),
        };
        Ok(JpegInfo {
            width: u32::try_from(w).map_err(|_| too_large())?,
            height: u32::try_from(h).map_err(|_| too_large())?,
            subsampling: Subsampling::from_turbo(header.subsamp),
            progressive: header.is_progressive,
        })
    }

    /// Decodes `jpeg` into a new frame, refusing (before allocating) any image whose header
    /// claims more than `max_pixels` pixels. Pass [`MAX_FRAME_PIXELS`] unless you know a tighter
    /// bound (e.g. the stream's announced size).
    pub fn decode_rgb(&mut self, jpeg: &[u8], max_pixels: u64) -> Result<VideoFrameRgb, JpegError> {
        let mut frame = VideoFrameRgb {
            width: 0,
            height: 0,
            data: Vec::new(),
        };
        self.decode_rgb_into(jpeg, max_pixels, &mut frame)?;
        Ok(frame)
    }

    /// [`decode_rgb`](Self::decode_rgb) with the default bound, [`MAX_FRAME_PIXELS`].
    pub fn decode_rgb_default(&mut self, jpeg: &[u8]) -> Result<VideoFrameRgb, JpegError> {
        self.decode_rgb(jpeg, MAX_FRAME_PIXELS)
    }

    /// Like [`decode_rgb`](Self::decode_rgb) but decodes into `frame`, reusing its buffer
    /// (a player decoding a stream of same-size frames allocates once). On error `frame` holds
    /// unspecified pixels but stays consistent (`validate()` passes).
    pub fn decode_rgb_into(
        &mut self,
        jpeg: &[u8],
        max_pixels: u64,
        frame: &mut VideoFrameRgb,
    ) -> Result<JpegInfo, JpegError> {
        let info = self.read_header(jpeg)?;
        if info.pixels() > max_pixels {
            return Err(JpegError::TooLarge {
                width: u64::from(info.width),
                height: u64::from(info.height),
                pixels: info.pixels(),
                max_pixels,
            });
        }
        // Fits in usize: at most 65535 * 65535 * 3 on a 64-bit target, and the bound above.
        let stride = info.width as usize * VideoFrameRgb::BYTES_PER_PIXEL;
        let len = stride * info.height as usize;
        frame.width = info.width;
        frame.height = info.height;
        frame.data.resize(len, 0);
        let image = Image {
            pixels: &mut frame.data[..],
            width: info.width as usize,
            pitch: stride,
            height: info.height as usize,
            format: PixelFormat::RGB,
        };
        self.decompressor
            .decompress(jpeg, image)
            .map_err(|source| JpegError::Decode {
                width: info.width,
                height: info.height,
                source,
            })?;
        Ok(info)
    }
}

/// DCT scaling reductions [`JpegDecoder::decode_bgr_fit`] chooses from: libjpeg-turbo decodes
/// each 8x8 block straight to 8x8, 4x4, 2x2 or 1x1 pixels (SIMD for all four on x86), so a
/// smaller picture costs less IDCT, upsampling and colour conversion, not more.
pub const DCT_REDUCTIONS: [u32; 4] = [1, 2, 4, 8];

/// A frame decoded by [`JpegDecoder::decode_bgr_fit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaledDecode {
    /// What the header says (the full size).
    pub info: JpegInfo,
    /// By how much each side was reduced (one of [`DCT_REDUCTIONS`]).
    pub reduction: u32,
    /// Width of the decoded picture, pixels: `ceil(info.width / reduction)`.
    pub width: u32,
    /// Height of the decoded picture, pixels: `ceil(info.height / reduction)`.
    pub height: u32,
}

/// `side` reduced by `reduction` as libjpeg-turbo's DCT scaling rounds it (up).
pub fn reduced_side(side: u32, reduction: u32) -> u32 {
    side.div_ceil(reduction.max(1))
}

/// The largest reduction in [`DCT_REDUCTIONS`] that leaves a `width` x `height` picture at
/// least `fit` (width, height) on both sides, so showing it in a `fit`-sized area only ever
/// scales down; 1 when the area is as large as the picture or larger (or has a zero side).
pub fn reduction_to_fit(width: u32, height: u32, fit: (u32, u32)) -> u32 {
    let (fw, fh) = fit;
    if fw == 0 || fh == 0 {
        return 1;
    }
    DCT_REDUCTIONS
        .into_iter()
        .rev()
        .find(|&r| reduced_side(width, r) >= fw && reduced_side(height, r) >= fh)
        .unwrap_or(1)
}

impl JpegDecoder {
    /// Refuses `info` when it claims more than `max_pixels`.
    fn check_bound(info: &JpegInfo, max_pixels: u64) -> Result<(), JpegError> {
        if info.pixels() > max_pixels {
            return Err(JpegError::TooLarge {
                width: u64::from(info.width),
                height: u64::from(info.height),
                pixels: info.pixels(),
                max_pixels,
            });
        }
        Ok(())
    }

    /// Decompresses at `reduction` into `image`-shaped output, falling back to full size for a
    /// lossless JPEG (which libjpeg-turbo cannot scale); leaves the decompressor at full size.
    /// Returns the reduction used.
    fn decompress_reduced(
        &mut self,
        jpeg: &[u8],
        info: &JpegInfo,
        reduction: u32,
        format: PixelFormat,
        buf: &mut Vec<u8>,
    ) -> Result<u32, JpegError> {
        let mut reduction = reduction;
        loop {
            let (w, h) = (
                reduced_side(info.width, reduction) as usize,
                reduced_side(info.height, reduction) as usize,
            );
            let pitch = w * format.size();
            // Bounded: at most the full picture, which the caller checked against its bound.
            buf.resize(pitch * h, 0);
            let image = Image {
                pixels: &mut buf[..],
                width: w,
                pitch,
                height: h,
                format,
            };
            let scale = turbojpeg::ScalingFactor::new(1, reduction as usize);
            let r = self
                .decompressor
                .set_scaling_factor(scale)
                .and_then(|()| self.decompressor.decompress(jpeg, image));
            // Leave full size for decode_rgb_into and the next caller.
            let _ = self
                .decompressor
                .set_scaling_factor(turbojpeg::ScalingFactor::ONE);
            match r {
                Ok(()) => return Ok(reduction),
                Err(turbojpeg::Error::CannotScaleLossless) if reduction != 1 => reduction = 1,
                Err(source) => {
                    return Err(JpegError::Decode {
                        width: info.width,
                        height: info.height,
                        source,
                    });
                }
            }
        }
    }

    /// Decodes `jpeg` straight to packed BGR (`B, G, R` per pixel, rows top to bottom, no
    /// padding: what OpenCV's `imshow` takes) into `buf` (reused), using libjpeg-turbo's DCT
    /// scaling to decode no more pixels than an area of `fit` (width, height) shows: the
    /// largest of [`DCT_REDUCTIONS`] that still covers it ([`reduction_to_fit`]); `None`
    /// decodes at full size. A picture whose header claims more than `max_pixels` is refused
    /// before anything is allocated.
    ///
    /// # Errors
    /// [`JpegError::Header`], [`JpegError::Empty`], [`JpegError::TooLarge`], or
    /// [`JpegError::Decode`] (corrupt or truncated data; `buf` then holds unspecified pixels).
    pub fn decode_bgr_fit(
        &mut self,
        jpeg: &[u8],
        max_pixels: u64,
        fit: Option<(u32, u32)>,
        buf: &mut Vec<u8>,
    ) -> Result<ScaledDecode, JpegError> {
        let info = self.read_header(jpeg)?;
        Self::check_bound(&info, max_pixels)?;
        let want = fit.map_or(1, |f| reduction_to_fit(info.width, info.height, f));
        let reduction = self.decompress_reduced(jpeg, &info, want, PixelFormat::BGR, buf)?;
        Ok(ScaledDecode {
            info,
            reduction,
            width: reduced_side(info.width, reduction),
            height: reduced_side(info.height, reduction),
        })
    }

    /// Checks that `jpeg` decodes, as cheaply as libjpeg-turbo allows while still reading all
    /// of it: the header, then every scan entropy-decoded in full (every Huffman code of every
    /// block of every component, so corrupt or truncated data is found exactly as a full
    /// decode finds it), with the IDCT reduced to 1/8 (each block's DC value) and only the
    /// luma kept: no upsampling and no colour conversion. `scratch` (reused) receives that
    /// 1/8-size gray picture. For a player with nothing to show.
    ///
    /// # Errors
    /// As [`decode_bgr_fit`](Self::decode_bgr_fit).
    pub fn check(
        &mut self,
        jpeg: &[u8],
        max_pixels: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<JpegInfo, JpegError> {
        let info = self.read_header(jpeg)?;
        Self::check_bound(&info, max_pixels)?;
        self.decompress_reduced(jpeg, &info, 8, PixelFormat::GRAY, scratch)?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::TestPattern;

    fn pattern(w: u32, h: u32, i: u64) -> VideoFrameRgb {
        TestPattern::new(w, h, 30, 1).unwrap().frame(i)
    }

    #[test]
    fn round_trip_640x480() {
        let src = pattern(640, 480, 42);
        let mut enc = JpegEncoder::new(90, Subsampling::Yuv420).unwrap();
        let jpeg = enc.encode_rgb(&src).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "SOI marker");
        let mut dec = JpegDecoder::new().unwrap();
        let info = dec.read_header(&jpeg).unwrap();
        assert_eq!(
            info,
            JpegInfo {
                width: 640,
                height: 480,
                subsampling: Some(Subsampling::Yuv420),
                progressive: false
            }
        );
        let out = dec.decode_rgb(&jpeg, MAX_FRAME_PIXELS).unwrap();
        assert_eq!((out.width, out.height), (640, 480));
        assert_eq!(out.validate(), Ok(()));
        let db = psnr(&src, &out).unwrap();
        assert!(db > 30.0, "PSNR {db:.1} dB");

        // 4:4:4 and gray also round-trip; reusing the decoder buffer works.
        let mut frame = VideoFrameRgb::black(1, 1);
        for s in [Subsampling::Yuv444, Subsampling::Yuv422, Subsampling::Gray] {
            let jpeg = JpegEncoder::new(90, s).unwrap().encode_rgb(&src).unwrap();
            let info = dec
                .decode_rgb_into(&jpeg, MAX_FRAME_PIXELS, &mut frame)
                .unwrap();
            assert_eq!(info.subsampling, Some(s));
            assert_eq!(frame.validate(), Ok(()));
            if s != Subsampling::Gray {
                assert!(psnr(&src, &frame).unwrap() > 30.0, "{s:?}");
            }
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let mut dec = JpegDecoder::new().unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0xFF], vec![0xFF, 0xD8], vec![0; 1000]];
        inputs.extend((0..50).map(|n| (0..n * 37).map(|_| rng.u8(..)).collect()));
        for input in &inputs {
            assert!(
                dec.decode_rgb(input, MAX_FRAME_PIXELS).is_err(),
                "{} bytes",
                input.len()
            );
        }
        assert!(matches!(
            dec.read_header(b"not a jpeg"),
            Err(JpegError::Header { len: 10, .. })
        ));
    }

    #[test]
    fn truncated_and_corrupted_jpegs_do_not_panic() {
        let jpeg = JpegEncoder::new(80, Subsampling::Yuv420)
            .unwrap()
            .encode_rgb(&pattern(160, 120, 3))
            .unwrap();
        let mut dec = JpegDecoder::new().unwrap();
        for cut in [2, 20, 100, jpeg.len() / 2, jpeg.len() - 2] {
            assert!(
                dec.decode_rgb(&jpeg[..cut], MAX_FRAME_PIXELS).is_err(),
                "cut at {cut}"
            );
        }
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let mut bad = jpeg.clone();
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(..bad.len());
                bad[i] = rng.u8(..);
            }
            // Either outcome is fine; a panic or an abort is not.
            if let Ok(f) = dec.decode_rgb(&bad, 1 << 20) {
                assert_eq!(f.validate(), Ok(()));
            }
        }
    }

    /// Offset of the SOF0 (baseline) marker's height field.
    fn sof0_dims_offset(jpeg: &[u8]) -> usize {
        let i = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline JPEG has SOF0");
        i + 5 // FF C0, length (2), precision (1), then height (2), width (2)
    }

    #[test]
    fn huge_claimed_dimensions_are_refused_before_allocating() {
        let mut jpeg = JpegEncoder::new(80, Subsampling::Yuv420)
            .unwrap()
            .encode_rgb(&pattern(64, 48, 0))
            .unwrap();
        let off = sof0_dims_offset(&jpeg);
        assert_eq!(&jpeg[off..off + 4], &[0, 48, 0, 64]);
        jpeg[off..off + 4].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]); // 60000 x 60000
        let mut dec = JpegDecoder::new().unwrap();
        let info = dec.read_header(&jpeg).unwrap();
        assert_eq!((info.width, info.height), (60000, 60000));
        // 60000^2 * 3 = 10.8 GB: refused from the header alone, nothing allocated.
        match dec.decode_rgb(&jpeg, MAX_FRAME_PIXELS) {
            Err(JpegError::TooLarge {
                width: 60000,
                height: 60000,
                pixels: 3_600_000_000,
                max_pixels: MAX_FRAME_PIXELS,
            }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let msg = dec.decode_rgb_default(&jpeg).unwrap_err().to_string();
        assert!(msg.contains("60000x60000"), "{msg}");
    }

    #[test]
    fn caller_bound_and_zero_height() {
        let mut jpeg = JpegEncoder::new(80, Subsampling::Yuv420)
            .unwrap()
            .encode_rgb(&pattern(64, 48, 0))
            .unwrap();
        let mut dec = JpegDecoder::new().unwrap();
        assert!(dec.decode_rgb(&jpeg, 64 * 48).is_ok());
        assert!(matches!(
            dec.decode_rgb(&jpeg, 64 * 48 - 1),
            Err(JpegError::TooLarge { .. })
        ));
        // A zero height in SOF (a DNL-defined height, unsupported) must be an error.
        let off = sof0_dims_offset(&jpeg);
        jpeg[off..off + 2].copy_from_slice(&[0, 0]);
        assert!(dec.decode_rgb(&jpeg, MAX_FRAME_PIXELS).is_err());
    }

    #[test]
    fn encoder_rejects_bad_input() {
        assert!(matches!(
            JpegEncoder::new(0, Subsampling::Yuv420),
            Err(JpegError::InvalidQuality { quality: 0 })
        ));
        assert!(JpegEncoder::new(101, Subsampling::Yuv420).is_err());
        let mut enc = JpegEncoder::new(80, Subsampling::Yuv420).unwrap();
        let mut short = VideoFrameRgb::black(16, 16);
        short.data.truncate(10);
        assert!(matches!(
            enc.encode_rgb(&short),
            Err(JpegError::BadFrame(_))
        ));
        let empty = VideoFrameRgb::black(0, 16);
        assert!(matches!(
            enc.encode_rgb(&empty),
            Err(JpegError::UnencodableSize { .. })
        ));
        // Odd sizes encode fine.
        let f = pattern(17, 9, 1);
        let jpeg = enc.encode_rgb(&f).unwrap();
        let out = JpegDecoder::new()
            .unwrap()
            .decode_rgb_default(&jpeg)
            .unwrap();
        assert_eq!((out.width, out.height), (17, 9));
    }
}
