//! Raw camera frames (packed YUYV, semi-planar NV12) made planar for libjpeg-turbo's YUV
//! compression ([`YuvFrame`], [`FrameEncoder::encode_yuv`](crate::media::file_source::FrameEncoder::encode_yuv)):
//! one pass over the camera's buffer, no colour conversion and no BGR.
//!
//! The samples are stretched to JPEG's full range on the way when the camera's are TV range
//! (by a 256-entry table built with the file source's own stretch, so both agree to the bit).
//! 4:2:0 from YUYV averages each pair of chroma rows (rounding half up).

use crate::media::Subsampling;
use crate::media::file_source::{Range, Turn, YuvFrame, copy_plane, plane_sizes};

/// How a raw frame lies in the buffer the camera hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLayout {
    /// Width in pixels (even: both formats carry one chroma pair per two pixels).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next (V4L2's `bytesperline`; for NV12 both planes').
    pub stride: usize,
}

/// A raw frame that cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The buffer holds fewer bytes than the layout needs (a cut-off frame).
    #[error("a {width}x{height} frame needs {need} bytes, the camera gave {got}")]
    Short {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Bytes the layout needs.
        need: usize,
        /// Bytes in the buffer.
        got: usize,
    },
    /// A width that is odd, zero or over 65535, a height of 0 or over 65535, or a stride
    /// shorter than a row.
    #[error("a raw {width}x{height} frame with rows {stride} bytes apart cannot be converted")]
    Layout {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Stride, bytes.
        stride: usize,
    },
}

/// Tables from the camera's sample range to JPEG's full range.
#[derive(Clone)]
pub struct RangeTables {
    luma: [u8; 256],
    chroma: [u8; 256],
    tv: bool,
}

impl std::fmt::Debug for RangeTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeTables").field("tv", &self.tv).finish()
    }
}

impl RangeTables {
    /// Identity tables for full-range samples, stretching ones for TV range (`tv`).
    pub fn new(tv: bool) -> RangeTables {
        let ramp: [u8; 256] = std::array::from_fn(|i| i as u8);
        let table = |range| {
            let mut t = [0u8; 256];
            let done = copy_plane(&ramp, 256, (256, 1), &mut t, (256, 1), Turn::None, range);
            debug_assert!(done);
            t
        };
        let (luma, chroma) = if tv {
            (table(Range::TvLuma), table(Range::TvChroma))
        } else {
            (ramp, ramp)
        };
        RangeTables { luma, chroma, tv }
    }

    fn luma_range(&self) -> Range {
        if self.tv { Range::TvLuma } else { Range::Full }
    }
}

/// Checks the layout and that `got` bytes hold `rows` rows of `row` bytes `stride` apart.
fn check(layout: RawLayout, row: usize, rows: usize, got: usize) -> Result<(), ConvertError> {
    let RawLayout {
        width,
        height,
        stride,
    } = layout;
    if width == 0
        || width % 2 == 1
        || width > 65535
        || height == 0
        || height > 65535
        || stride < row
    {
        return Err(ConvertError::Layout {
            width,
            height,
            stride,
        });
    }
    let need = stride * (rows - 1) + row;
    if got < need {
        return Err(ConvertError::Short {
            width,
            height,
            need,
            got,
        });
    }
    Ok(())
}

/// The planes of a [`YuvFrame`], mutable, with their widths (= strides) and heights.
struct Planes<'a> {
    y: &'a mut [u8],
    yw: usize,
    yh: usize,
    /// Empty for gray.
    cb: &'a mut [u8],
    cr: &'a mut [u8],
    cw: usize,
}

fn split_planes(out: &mut YuvFrame) -> Planes<'_> {
    let [(yw, yh), (cw, ch), _] = plane_sizes(out.width, out.height, out.subsampling);
    let (y, rest) = out.data.split_at_mut(yw * yh);
    let (cb, cr) = rest.split_at_mut(cw * ch);
    Planes {
        y,
        yw,
        yh,
        cb,
        cr: &mut cr[..cw * ch],
        cw,
    }
}

/// Repeats the last picture row into the padding row of a plane `rows` tall (an odd-height
/// 4:2:0 picture's Y plane has one more row).
fn pad_bottom(plane: &mut [u8], w: usize, filled: usize, rows: usize) {
    if rows > filled {
        let (done, pad) = plane.split_at_mut(filled * w);
        pad[..w].copy_from_slice(&done[(filled - 1) * w..]);
    }
}

/// Packed YUYV (Y0 Cb Y1 Cr per pixel pair) into `out` as planar `subsampling`: 4:2:2 as it
/// is (4:4:4 is taken as 4:2:2: the chroma is not there), 4:2:0 with each pair of chroma rows
/// averaged, gray as the Y plane alone. `out` is reshaped (its buffer reused).
pub fn yuyv_to_planar(
    src: &[u8],
    layout: RawLayout,
    subsampling: Subsampling,
    tables: &RangeTables,
    out: &mut YuvFrame,
) -> Result<(), ConvertError> {
    let (w, h) = (layout.width as usize, layout.height as usize);
    check(layout, 2 * w, h, src.len())?;
    let subsampling = match subsampling {
        Subsampling::Yuv444 => Subsampling::Yuv422,
        s => s,
    };
    out.reshape(layout.width, layout.height, subsampling);
    let stride = layout.stride;
    let Planes {
        y: yp,
        yw,
        yh,
        cb,
        cr,
        cw,
    } = split_planes(out);
    for y in 0..h {
        let row = &src[y * stride..y * stride + 2 * w];
        for (d, pair) in yp[y * yw..y * yw + w].iter_mut().zip(row.chunks_exact(2)) {
            *d = tables.luma[usize::from(pair[0])];
        }
    }
    pad_bottom(yp, yw, h, yh);
    let chroma_rows = cb.len() / cw.max(1);
    for j in 0..chroma_rows {
        // 4:2:2: row j; 4:2:0: rows 2j and 2j + 1 (the last row twice at an odd height).
        let (r0, r1) = if subsampling == Subsampling::Yuv420 {
            (2 * j, (2 * j + 1).min(h - 1))
        } else {
            (j, j)
        };
        let a = &src[r0 * stride..r0 * stride + 2 * w];
        let b = &src[r1 * stride..r1 * stride + 2 * w];
        let (cb_row, cr_row) = (&mut cb[j * cw..(j + 1) * cw], &mut cr[j * cw..(j + 1) * cw]);
        for (i, (qa, qb)) in a.chunks_exact(4).zip(b.chunks_exact(4)).enumerate() {
            let avg = |x: u8, y: u8| ((u16::from(x) + u16::from(y) + 1) >> 1) as usize;
            cb_row[i] = tables.chroma[avg(qa[1], qb[1])];
            cr_row[i] = tables.chroma[avg(qa[3], qb[3])];
        }
    }
    Ok(())
}

/// NV12 (a Y plane, then a plane of Cb Cr pairs at half height, both `layout.stride` bytes a
/// row) into `out` as planar 4:2:0, or the Y plane alone when `gray`. `out` is reshaped.
pub fn nv12_to_planar(
    src: &[u8],
    layout: RawLayout,
    gray: bool,
    tables: &RangeTables,
    out: &mut YuvFrame,
) -> Result<(), ConvertError> {
    let (w, h) = (layout.width as usize, layout.height as usize);
    let chroma_h = h.div_ceil(2);
    // The CbCr plane follows the Y plane directly (V4L2's single-planar NV12).
    check(layout, w, h + chroma_h, src.len())?;
    let subsampling = if gray {
        Subsampling::Gray
    } else {
        Subsampling::Yuv420
    };
    out.reshape(layout.width, layout.height, subsampling);
    let stride = layout.stride;
    let Planes {
        y: yp,
        yw,
        yh,
        cb,
        cr,
        cw,
    } = split_planes(out);
    let copied = copy_plane(
        src,
        stride,
        (w, h),
        yp,
        (yw, yh),
        Turn::None,
        tables.luma_range(),
    );
    debug_assert!(copied, "shapes checked above");
    if gray {
        return Ok(());
    }
    let uv = &src[h * stride..];
    for j in 0..chroma_h {
        let row = &uv[j * stride..j * stride + w];
        for (i, pair) in row.chunks_exact(2).enumerate() {
            cb[j * cw + i] = tables.chroma[usize::from(pair[0])];
            cr[j * cw + i] = tables.chroma[usize::from(pair[1])];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> RangeTables {
        RangeTables::new(false)
    }

    /// A 4x2 YUYV frame with rows 10 bytes apart (2 bytes of padding each).
    fn yuyv_4x2() -> (Vec<u8>, RawLayout) {
        #[rustfmt::skip]
        let src = vec![
            // Y0 Cb  Y1 Cr   Y2 Cb  Y3 Cr   pad
            10, 100, 11, 200, 12, 101, 13, 201, 0, 0,
            20, 110, 21, 210, 22, 111, 23, 211, 0, 0,
        ];
        let layout = RawLayout {
            width: 4,
            height: 2,
            stride: 10,
        };
        (src, layout)
    }

    #[test]
    fn yuyv_to_i422_keeps_every_sample() {
        let (src, layout) = yuyv_4x2();
        let mut out = YuvFrame::default();
        yuyv_to_planar(&src, layout, Subsampling::Yuv422, &full(), &mut out).unwrap();
        assert_eq!((out.width, out.height), (4, 2));
        assert_eq!(out.subsampling, Subsampling::Yuv422);
        #[rustfmt::skip]
        let want = [
            10, 11, 12, 13, 20, 21, 22, 23, // Y 4x2
            100, 101, 110, 111,             // Cb 2x2
            200, 201, 210, 211,             // Cr 2x2
        ];
        assert_eq!(out.data, want);
        assert!(out.is_consistent());
        // 4:4:4 asked: the chroma is not there, so 4:2:2.
        yuyv_to_planar(&src, layout, Subsampling::Yuv444, &full(), &mut out).unwrap();
        assert_eq!(out.subsampling, Subsampling::Yuv422);
        assert_eq!(out.data, want);
    }

    #[test]
    fn yuyv_to_i420_averages_row_pairs() {
        let (src, layout) = yuyv_4x2();
        let mut out = YuvFrame::default();
        yuyv_to_planar(&src, layout, Subsampling::Yuv420, &full(), &mut out).unwrap();
        assert_eq!(out.subsampling, Subsampling::Yuv420);
        // (100 + 110 + 1) / 2 = 105, (101 + 111 + 1) / 2 = 106, ...
        assert_eq!(
            out.data,
            [10, 11, 12, 13, 20, 21, 22, 23, 105, 106, 205, 206]
        );
        assert!(out.is_consistent());
        yuyv_to_planar(&src, layout, Subsampling::Gray, &full(), &mut out).unwrap();
        assert_eq!(out.data, [10, 11, 12, 13, 20, 21, 22, 23]);
    }

    #[test]
    fn yuyv_odd_height_pads_and_uses_the_last_row_alone() {
        // 2x3: the Y plane is padded to 2x4, the last chroma row comes from row 2 alone.
        let src = [1, 50, 2, 60, 3, 51, 4, 61, 5, 52, 6, 62];
        let layout = RawLayout {
            width: 2,
            height: 3,
            stride: 4,
        };
        let mut out = YuvFrame::default();
        yuyv_to_planar(&src, layout, Subsampling::Yuv420, &full(), &mut out).unwrap();
        assert_eq!(out.data, [1, 2, 3, 4, 5, 6, 5, 6, 51, 52, 61, 62]);
        assert!(out.is_consistent());
    }

    #[test]
    fn nv12_to_i420_deinterleaves_the_chroma() {
        #[rustfmt::skip]
        let src = [
            // Y, 4x2, stride 6
            1, 2, 3, 4, 0, 0,
            5, 6, 7, 8, 0, 0,
            // CbCr, 1 row
            100, 200, 101, 201, 0, 0,
        ];
        let layout = RawLayout {
            width: 4,
            height: 2,
            stride: 6,
        };
        let mut out = YuvFrame::default();
        nv12_to_planar(&src, layout, false, &full(), &mut out).unwrap();
        assert_eq!(out.subsampling, Subsampling::Yuv420);
        assert_eq!(out.data, [1, 2, 3, 4, 5, 6, 7, 8, 100, 101, 200, 201]);
        assert!(out.is_consistent());
        nv12_to_planar(&src, layout, true, &full(), &mut out).unwrap();
        assert_eq!(out.data, [1, 2, 3, 4, 5, 6, 7, 8]);
        // The last row's padding need not be there.
        nv12_to_planar(&src[..16], layout, false, &full(), &mut out).unwrap();
        assert_eq!(out.data, [1, 2, 3, 4, 5, 6, 7, 8, 100, 101, 200, 201]);
    }

    #[test]
    fn tv_range_is_stretched_like_the_file_source() {
        let tv = RangeTables::new(true);
        let src = [16, 16, 235, 240]; // Y0=16 Cb=16 Y1=235 Cr=240
        let layout = RawLayout {
            width: 2,
            height: 1,
            stride: 4,
        };
        let mut out = YuvFrame::default();
        yuyv_to_planar(&src, layout, Subsampling::Yuv422, &tv, &mut out).unwrap();
        assert_eq!(out.data[..2], [0, 255]);
        assert!(out.data[2] <= 1, "{}", out.data[2]); // 16 is 0.5 exactly
        assert_eq!(out.data[3], 255);
        let nv12 = [16, 235, 128, 240];
        let nv12_layout = RawLayout {
            stride: 2,
            ..layout
        };
        nv12_to_planar(&nv12, nv12_layout, false, &tv, &mut out).unwrap();
        // One row: the 4:2:0 Y plane is padded to two, the row repeated.
        assert_eq!(out.data, [0, 255, 0, 255, 128, 255]);
    }

    #[test]
    fn short_or_odd_frames_are_refused() {
        let (src, layout) = yuyv_4x2();
        let mut out = YuvFrame::default();
        let err = yuyv_to_planar(&src[..17], layout, Subsampling::Yuv422, &full(), &mut out);
        assert_eq!(
            err,
            Err(ConvertError::Short {
                width: 4,
                height: 2,
                need: 18,
                got: 17
            })
        );
        let odd = RawLayout { width: 3, ..layout };
        assert!(matches!(
            yuyv_to_planar(&src, odd, Subsampling::Yuv422, &full(), &mut out),
            Err(ConvertError::Layout { .. })
        ));
        let narrow = RawLayout {
            stride: 6,
            ..layout
        };
        assert!(matches!(
            yuyv_to_planar(&src, narrow, Subsampling::Yuv422, &full(), &mut out),
            Err(ConvertError::Layout { .. })
        ));
        let nv12 = RawLayout {
            width: 4,
            height: 2,
            stride: 4,
        };
        assert!(matches!(
            nv12_to_planar(&[0; 11], nv12, false, &full(), &mut out),
            Err(ConvertError::Short { need: 12, .. })
        ));
    }

    #[test]
    fn converted_frames_encode_to_the_camera_colour() {
        // A flat 16x8 YUYV frame of RGB 51 102 204: BT.601 gives Y 98, Cb 188, Cr 94 in full
        // range, which is Y 100, Cb 180, Cr 98 in TV range.
        let (y, cb, cr) = (100u8, 180u8, 98u8);
        let src: Vec<u8> = (0..16 * 8 / 2).flat_map(|_| [y, cb, y, cr]).collect();
        let layout = RawLayout {
            width: 16,
            height: 8,
            stride: 32,
        };
        let mut out = YuvFrame::default();
        yuyv_to_planar(
            &src,
            layout,
            Subsampling::Yuv420,
            &RangeTables::new(true),
            &mut out,
        )
        .unwrap();
        let mut enc = crate::media::file_source::FrameEncoder::new(95).unwrap();
        let jpeg = enc.encode_yuv(&out).unwrap();
        let rgb = crate::media::JpegDecoder::new()
            .unwrap()
            .decode_rgb_default(&jpeg)
            .unwrap();
        let [r, g, b] = rgb.pixel(8, 4).unwrap();
        for (got, want) in [(r, 51), (g, 102), (b, 204)] {
            assert!((i32::from(got) - want).abs() <= 6, "{r} {g} {b}");
        }
    }
}
