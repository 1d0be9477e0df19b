//! Planar YCbCr frames as libjpeg-turbo compresses them without a colour conversion
//! (`tj3CompressFromYUV8`): the decoder's own planes, copied once (and turned, and stretched to
//! JPEG's full range when the video is "TV range"), never through RGB.
//!
//! The layout is turbojpeg's packed YUV with a row alignment of 1: the Y plane, then Cb, then
//! Cr, each `plane width x plane height` bytes with no padding. The Y plane is the picture padded
//! to a whole number of chroma blocks (an odd-width 4:2:0 picture has a Y plane one column wider);
//! the padding repeats the edge pixels.

use turbojpeg::{Subsamp, YuvImage};

use crate::media::Subsampling;

/// A planar YCbCr picture in JPEG's full range (0-255 for Y, Cb and Cr), laid out as turbojpeg's
/// packed YUV (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YuvFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Chroma subsampling of the planes.
    pub subsampling: Subsampling,
    /// Y, then Cb, then Cr (Y only for [`Subsampling::Gray`]); `len()` is
    /// [`YuvFrame::buffer_len`].
    pub data: Vec<u8>,
}

/// Width and height in bytes of each plane of a `width x height` picture (Y, Cb, Cr; the chroma
/// planes are `(0, 0)` for gray).
pub fn plane_sizes(width: u32, height: u32, subsampling: Subsampling) -> [(usize, usize); 3] {
    let image = YuvImage {
        pixels: (),
        width: width as usize,
        align: 1,
        height: height as usize,
        subsamp: to_turbo(subsampling),
    };
    let chroma = if subsampling == Subsampling::Gray {
        (0, 0)
    } else {
        image.uv_size()
    };
    [image.y_size(), chroma, chroma]
}

/// turbojpeg's name for a subsampling.
pub(super) fn to_turbo(s: Subsampling) -> Subsamp {
    match s {
        Subsampling::Yuv444 => Subsamp::None,
        Subsampling::Yuv422 => Subsamp::Sub2x1,
        Subsampling::Yuv420 => Subsamp::Sub2x2,
        Subsampling::Gray => Subsamp::Gray,
    }
}

impl YuvFrame {
    /// Bytes the planes of a `width x height` picture take.
    pub fn buffer_len(width: u32, height: u32, subsampling: Subsampling) -> usize {
        plane_sizes(width, height, subsampling)
            .iter()
            .map(|(w, h)| w * h)
            .sum()
    }

    /// Sets the shape, resizing the buffer (kept when the shape is unchanged, so a stream of
    /// same-size frames allocates once).
    pub fn reshape(&mut self, width: u32, height: u32, subsampling: Subsampling) {
        self.width = width;
        self.height = height;
        self.subsampling = subsampling;
        self.data
            .resize(Self::buffer_len(width, height, subsampling), 0);
    }

    /// The planes, mutable, each with its width (= stride) and height.
    pub fn planes_mut(&mut self) -> Vec<(&mut [u8], usize, usize)> {
        let sizes = plane_sizes(self.width, self.height, self.subsampling);
        let mut rest = &mut self.data[..];
        let mut out = Vec::with_capacity(3);
        for (w, h) in sizes {
            if w * h == 0 {
                continue;
            }
            let (plane, tail) = std::mem::take(&mut rest).split_at_mut(w * h);
            out.push((plane, w, h));
            rest = tail;
        }
        out
    }

    /// True when the buffer holds exactly the planes its shape says (what the encoder needs).
    pub fn is_consistent(&self) -> bool {
        self.width > 0
            && self.height > 0
            && self.width <= 65535
            && self.height <= 65535
            && self.data.len() == Self::buffer_len(self.width, self.height, self.subsampling)
    }
}

/// A planar YCbCr picture borrowed where it lies (a decoder's frame, a [`YuvFrame`]): what the
/// encoder compresses from, reading the planes in place
/// ([`FrameEncoder::encode_planes`](super::FrameEncoder::encode_planes)).
#[derive(Debug, Clone, Copy)]
pub struct YuvPlanes<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Chroma subsampling of the planes.
    pub subsampling: Subsampling,
    /// Y, Cb and Cr (only Y for [`Subsampling::Gray`]): each plane's samples and its stride in
    /// bytes, each plane at least [`plane_sizes`] big.
    pub planes: [(&'a [u8], usize); 3],
    /// The samples are in TV range (luma 16-235, chroma 16-240) and are stretched to JPEG's
    /// full range as they are compressed; false: already full range.
    pub tv_range: bool,
}

impl YuvPlanes<'_> {
    /// True when the picture is 1 to 65535 pixels each way and each plane holds the rows its
    /// shape and stride say, with a stride of at most `i32::MAX` bytes:
    /// what the encoder needs before it hands the planes to libjpeg.
    pub fn is_consistent(&self) -> bool {
        if self.width == 0 || self.height == 0 || self.width > 65535 || self.height > 65535 {
            return false;
        }
        let sizes = plane_sizes(self.width, self.height, self.subsampling);
        sizes
            .iter()
            .zip(&self.planes)
            .all(|(&(w, h), &(data, stride))| {
                let needed = stride
                    .checked_mul(h.saturating_sub(1))
                    .and_then(|n| n.checked_add(w));
                w * h == 0
                    || (stride >= w
                        && i32::try_from(stride).is_ok()
                        && needed.is_some_and(|n| data.len() >= n))
            })
    }
}

impl YuvFrame {
    /// The frame's planes, borrowed (full range, rows packed).
    pub fn as_planes(&self) -> YuvPlanes<'_> {
        let sizes = plane_sizes(self.width, self.height, self.subsampling);
        let mut planes: [(&[u8], usize); 3] = [(&[], 0); 3];
        let mut rest = &self.data[..];
        for (plane, &(w, h)) in planes.iter_mut().zip(&sizes) {
            let (p, tail) = rest.split_at((w * h).min(rest.len()));
            *plane = (p, w);
            rest = tail;
        }
        YuvPlanes {
            width: self.width,
            height: self.height,
            subsampling: self.subsampling,
            planes,
            tv_range: false,
        }
    }
}

/// How a plane is turned while copied (the file's display matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// As decoded.
    None,
    /// 90° clockwise.
    Cw90,
    /// 180°.
    Half,
    /// 90° counter-clockwise.
    Ccw90,
}

/// Which range stretch a plane needs on its way to JPEG's full range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Already full range (JPEG, "yuvj"): copied as is.
    Full,
    /// TV-range luma (16-235) stretched to 0-255.
    TvLuma,
    /// TV-range chroma (16-240 around 128) stretched to 0-255.
    TvChroma,
}

/// Copies `src` into `dst` stretched to full range: one pass of 16-bit integer arithmetic that
/// the compiler vectorises (the decoded frame is read once, cold from the decoder's thread),
/// with the widest vectors this CPU has (the build targets baseline x86-64, whose SSE2 does
/// 16 samples a step; AVX2 does 32, AVX-512 64, with the same arithmetic and results).
pub(super) fn stretch_into(dst: &mut [u8], src: &[u8], range: Range) {
    if range == Range::Full {
        dst.copy_from_slice(src);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512BW (checked just above).
            return unsafe { stretch_into_avx512(dst, src, range) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { stretch_into_avx2(dst, src, range) };
        }
    }
    stretch_samples(dst, src, range)
}

/// [`stretch_samples`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn stretch_into_avx2(dst: &mut [u8], src: &[u8], range: Range) {
    stretch_samples(dst, src, range)
}

/// [`stretch_samples`] compiled for AVX-512 (byte and word lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
fn stretch_into_avx512(dst: &mut [u8], src: &[u8], range: Range) {
    stretch_samples(dst, src, range)
}

/// The stretch itself, inlined into each of [`stretch_into`]'s builds.
#[inline(always)]
fn stretch_samples(dst: &mut [u8], src: &[u8], range: Range) {
    match range {
        Range::Full => dst.copy_from_slice(src),
        // 255 / 219 as 298 / 256 (within 0.03%); 16-235 in, 0-255 out.
        Range::TvLuma => {
            for (d, &s) in dst.iter_mut().zip(src) {
                let v = u16::from(s.clamp(16, 235) - 16);
                *d = ((v * 298 + 128) >> 8) as u8;
            }
        }
        // 255 / 224 as 146 / 128 (within 0.2%), around 128; 16-240 in, 0-255 out.
        Range::TvChroma => {
            for (d, &s) in dst.iter_mut().zip(src) {
                let v = i16::from(s.clamp(16, 240)) - 128;
                *d = (((v * 146 + 64) >> 7) + 128).clamp(0, 255) as u8;
            }
        }
    }
}

/// Stretches TV-range samples to full range in place (the turned planes).
fn stretch(row: &mut [u8], range: Range) {
    if range == Range::Full {
        return;
    }
    let mut tmp = [0u8; 256];
    for chunk in row.chunks_mut(256) {
        let n = chunk.len();
        tmp[..n].copy_from_slice(chunk);
        stretch_into(chunk, &tmp[..n], range);
    }
}

/// Copies a `src_w x src_h` plane (rows `stride` bytes apart) into `dst`, a `dst_w x dst_h`
/// plane, turned by `turn` and stretched to full range. `dst` may be larger than the turned
/// source by the padding of a partial chroma block: the padding repeats the edge. Returns false
/// (copying nothing) if `src` is shorter than its claimed shape or the shapes disagree.
#[allow(clippy::too_many_arguments)]
pub fn copy_plane(
    src: &[u8],
    stride: usize,
    (src_w, src_h): (usize, usize),
    dst: &mut [u8],
    (dst_w, dst_h): (usize, usize),
    turn: Turn,
    range: Range,
) -> bool {
    let (tw, th) = match turn {
        Turn::None | Turn::Half => (src_w, src_h),
        Turn::Cw90 | Turn::Ccw90 => (src_h, src_w),
    };
    if src_w == 0
        || src_h == 0
        || stride < src_w
        || src.len() < stride * (src_h - 1) + src_w
        || dst.len() < dst_w * dst_h
        || tw > dst_w
        || th > dst_h
        || dst_w > tw + 1
        || dst_h > th + 1
    {
        return false;
    }
    let at = |x: usize, y: usize| src[y * stride + x];
    for y in 0..th {
        let row = &mut dst[y * dst_w..y * dst_w + tw];
        match turn {
            Turn::None => stretch_into(row, &src[y * stride..y * stride + src_w], range),
            Turn::Half => {
                let s = &src[(src_h - 1 - y) * stride..(src_h - 1 - y) * stride + src_w];
                for (d, s) in row.iter_mut().zip(s.iter().rev()) {
                    *d = *s;
                }
            }
            // Row y of the result is column y of the source, read bottom to top.
            Turn::Cw90 => {
                for (x, d) in row.iter_mut().enumerate() {
                    *d = at(y, src_h - 1 - x);
                }
            }
            // Row y of the result is column (w - 1 - y) of the source, read top to bottom.
            Turn::Ccw90 => {
                for (x, d) in row.iter_mut().enumerate() {
                    *d = at(src_w - 1 - y, x);
                }
            }
        }
        if turn != Turn::None {
            stretch(row, range);
        }
        if dst_w > tw {
            dst[y * dst_w + tw] = dst[y * dst_w + tw - 1];
        }
    }
    if dst_h > th {
        let (done, pad) = dst.split_at_mut(th * dst_w);
        pad[..dst_w].copy_from_slice(&done[(th - 1) * dst_w..]);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_sizes_follow_turbojpeg() {
        assert_eq!(
            plane_sizes(1280, 720, Subsampling::Yuv420),
            [(1280, 720), (640, 360), (640, 360)]
        );
        // Odd sides: Y padded to whole chroma blocks.
        assert_eq!(
            plane_sizes(17, 9, Subsampling::Yuv420),
            [(18, 10), (9, 5), (9, 5)]
        );
        assert_eq!(
            plane_sizes(17, 9, Subsampling::Yuv422),
            [(18, 9), (9, 9), (9, 9)]
        );
        assert_eq!(
            plane_sizes(17, 9, Subsampling::Gray),
            [(17, 9), (0, 0), (0, 0)]
        );
        let mut f = YuvFrame::default();
        f.reshape(17, 9, Subsampling::Yuv420);
        assert_eq!(f.data.len(), 18 * 10 + 2 * 45);
        assert!(f.is_consistent());
        let planes = f.planes_mut();
        assert_eq!(planes.len(), 3);
        assert_eq!((planes[1].1, planes[1].2), (9, 5));
    }

    #[test]
    fn turns_and_pads() {
        // 3 x 2 source with a stride of 4:
        // 1 2 3
        // 4 5 6
        let src = [1, 2, 3, 0, 4, 5, 6, 0];
        let mut dst = [0u8; 6];
        let ok = |turn, dst: &mut [u8], d| copy_plane(&src, 4, (3, 2), dst, d, turn, Range::Full);
        assert!(ok(Turn::None, &mut dst, (3, 2)));
        assert_eq!(dst, [1, 2, 3, 4, 5, 6]);
        assert!(ok(Turn::Half, &mut dst, (3, 2)));
        assert_eq!(dst, [6, 5, 4, 3, 2, 1]);
        assert!(ok(Turn::Cw90, &mut dst, (2, 3)));
        assert_eq!(dst, [4, 1, 5, 2, 6, 3]);
        assert!(ok(Turn::Ccw90, &mut dst, (2, 3)));
        assert_eq!(dst, [3, 6, 2, 5, 1, 4]);
        // Padding to 4 x 3 repeats the right column and the bottom row.
        let mut padded = [0u8; 12];
        assert!(ok(Turn::None, &mut padded, (4, 3)));
        assert_eq!(padded, [1, 2, 3, 3, 4, 5, 6, 6, 4, 5, 6, 6]);
        // Inconsistent shapes copy nothing.
        assert!(!ok(Turn::None, &mut dst, (2, 3)));
        assert!(!copy_plane(
            &src[..5],
            4,
            (3, 2),
            &mut dst,
            (3, 2),
            Turn::None,
            Range::Full
        ));
    }

    #[test]
    fn vector_builds_match_the_scalar_stretch() {
        // Every sample value, at lengths that end mid-vector for SSE2, AVX2 and AVX-512.
        let src: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for range in [Range::TvLuma, Range::TvChroma] {
            for len in [1, 15, 31, 63, 64, 65, 257, 1000] {
                let mut want = vec![0u8; len];
                for (d, &s) in want.iter_mut().zip(&src[..len]) {
                    stretch_samples(std::slice::from_mut(d), &[s], range);
                }
                let mut got = vec![0u8; len];
                stretch_into(&mut got, &src[..len], range);
                assert_eq!(got, want, "{range:?}, {len} samples");
            }
        }
        // Luma endpoints and the middle, chroma's centre, computed by hand.
        let mut out = [0u8; 3];
        stretch_into(&mut out, &[16, 235, 126], Range::TvLuma);
        assert_eq!(out, [0, 255, 128]);
        stretch_into(&mut out, &[128, 240, 16], Range::TvChroma);
        assert_eq!(out, [128, 255, 0]);
    }

    #[test]
    fn tv_range_is_stretched_to_full() {
        let src = [16, 235, 0, 255, 126];
        let mut dst = [0u8; 5];
        assert!(copy_plane(
            &src,
            5,
            (5, 1),
            &mut dst,
            (5, 1),
            Turn::None,
            Range::TvLuma
        ));
        assert_eq!(dst[..4], [0, 255, 0, 255]);
        assert!((127..=129).contains(&dst[4]), "{}", dst[4]);
        let src = [16, 240, 128, 0];
        let mut dst = [0u8; 4];
        assert!(copy_plane(
            &src,
            4,
            (4, 1),
            &mut dst,
            (4, 1),
            Turn::None,
            Range::TvChroma
        ));
        // 16 is 0.5 in exact arithmetic: either neighbour is right.
        assert!(dst[0] <= 1, "{}", dst[0]);
        assert_eq!(dst[1..], [255, 128, 0]);
    }
}
