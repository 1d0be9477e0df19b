//! What RFC 2435 needs from a JPEG: its type (4:2:2 or 4:2:0, with or without restart
//! markers), its size in 8-pixel blocks, its quantization tables (sent in-band, Q = 255) and
//! its entropy-coded data. Everything else in the file (Huffman tables, component ids, JFIF
//! headers) the receiver rebuilds from the RFC's fixed assumptions, so a JPEG that departs
//! from them is refused here rather than sent broken.
//!
//! The input is untrusted: every length is checked against the buffer, nothing is allocated
//! from a claimed size beyond two 128-byte tables, and parsing never panics.

use std::ops::Range;

use thiserror::Error;

/// RFC 2435 stores width and height in 8-pixel units in one byte: 255 x 8 = 2040 pixels.
pub const MAX_DIMENSION: u16 = 2040;

/// Why a JPEG cannot be sent as RTP/JPEG.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JpegError {
    /// The bytes are not a JPEG, or it ends early.
    #[error("not a complete JPEG ({0})")]
    Malformed(&'static str),
    /// RFC 2435 carries at most 2040 x 2040 pixels.
    #[error(
        "{width}x{height} is larger than RTP/JPEG (RFC 2435) can describe (at most 2040x2040 pixels)"
    )]
    TooLarge {
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
    /// Something RFC 2435's fixed assumptions do not cover.
    #[error("RTP/JPEG (RFC 2435) cannot carry this JPEG: {0}")]
    Unsupported(&'static str),
}

/// A JPEG read for RFC 2435 packetization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpJpeg {
    /// RFC 2435 type: 0 (4:2:2) or 1 (4:2:0), plus 64 when restart markers are present.
    pub type_: u8,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Restart interval in MCUs (§3.1.7), when the JPEG has a DRI marker.
    pub restart_interval: Option<u16>,
    /// Bit i set: table i is 16-bit (§3.1.8 precision field).
    pub precision: u8,
    /// The luminance then the chrominance quantization table, in zig-zag order as in DQT.
    pub qtables: Vec<u8>,
    /// Where the entropy-coded data lies in the JPEG (after the SOS header, before EOI).
    pub scan: Range<usize>,
}

/// (bits per code length, number of values, CRC-32 of the values) of the JPEG standard's
/// Huffman tables (ITU T.81 Annex K.3), which RFC 2435 receivers assume.
const STD_DC_LUMA: ([u8; 16], usize, u32) = (
    [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
    12,
    0x9270_c965,
);
const STD_DC_CHROMA: ([u8; 16], usize, u32) = (
    [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    12,
    0x9270_c965,
);
const STD_AC_LUMA: ([u8; 16], usize, u32) = (
    [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 125],
    162,
    0xaef8_d3cc,
);
const STD_AC_CHROMA: ([u8; 16], usize, u32) = (
    [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 119],
    162,
    0xcc0d_dcd7,
);

#[derive(Debug, Clone, Copy, Default)]
struct Component {
    id: u8,
    h: u8,
    v: u8,
    tq: u8,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl RtpJpeg {
    /// Reads `jpeg`, checking everything RFC 2435 assumes: baseline (or extended sequential)
    /// 8-bit Huffman coding with the standard tables, three components with luminance
    /// sampled 2x1 or 2x2 and chrominance 1x1 sharing one quantization table, one scan, and
    /// at most 2040 pixels each way.
    pub fn parse(jpeg: &[u8]) -> Result<RtpJpeg, JpegError> {
        if jpeg.get(..2) != Some(&[0xFF, 0xD8]) {
            return Err(JpegError::Malformed("no SOI marker"));
        }
        let mut tables: [Option<(bool, Range<usize>)>; 4] = Default::default();
        let mut comps: Option<[Component; 3]> = None;
        let mut size = None;
        let mut restart = None;
        let mut at = 2;
        loop {
            // A marker: 0xFF, optional fill 0xFF bytes, then the code.
            if jpeg.get(at) != Some(&0xFF) {
                return Err(JpegError::Malformed("expected a marker"));
            }
            while jpeg.get(at) == Some(&0xFF) {
                at += 1;
            }
            let code = *jpeg
                .get(at)
                .ok_or(JpegError::Malformed("ends in a marker"))?;
            at += 1;
            if code == 0x01 || (0xD0..=0xD7).contains(&code) {
                continue; // standalone markers
            }
            if code == 0xD9 {
                return Err(JpegError::Malformed("EOI before any scan"));
            }
            let len = be16(jpeg, at).ok_or(JpegError::Malformed("truncated segment"))? as usize;
            if len < 2 || at + len > jpeg.len() {
                return Err(JpegError::Malformed("segment length beyond the data"));
            }
            let body = &jpeg[at + 2..at + len];
            let body_start = at + 2;
            match code {
                0xDB => {
                    let mut i = 0;
                    while i < body.len() {
                        let pq = body[i] >> 4;
                        let tq = (body[i] & 0x0F) as usize;
                        let n = if pq == 0 { 64 } else { 128 };
                        if pq > 1 || tq > 3 || i + 1 + n > body.len() {
                            return Err(JpegError::Malformed("bad DQT"));
                        }
                        let start = body_start + i + 1;
                        tables[tq] = Some((pq == 1, start..start + n));
                        i += 1 + n;
                    }
                }
                0xC0 | 0xC1 => {
                    if body.len() < 6 || body[0] != 8 {
                        return Err(JpegError::Unsupported("only 8-bit samples"));
                    }
                    let height = be16(body, 1).unwrap_or(0);
                    let width = be16(body, 3).unwrap_or(0);
                    if body[5] != 3 || body.len() < 6 + 9 {
                        return Err(JpegError::Unsupported("only three-component (YCbCr) JPEGs"));
                    }
                    let mut c = [Component::default(); 3];
                    for (k, comp) in c.iter_mut().enumerate() {
                        let b = &body[6 + 3 * k..9 + 3 * k];
                        *comp = Component {
                            id: b[0],
                            h: b[1] >> 4,
                            v: b[1] & 0x0F,
                            tq: b[2] & 0x0F,
                        };
                    }
                    comps = Some(c);
                    size = Some((width, height));
                }
                0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                    return Err(JpegError::Unsupported(
                        "progressive, lossless or arithmetic-coded JPEG (only baseline)",
                    ));
                }
                0xC4 => check_huffman(body)?,
                0xDD => {
                    let ri = be16(body, 0).ok_or(JpegError::Malformed("bad DRI"))?;
                    restart = (ri > 0).then_some(ri);
                }
                0xDA => {
                    let scan_start = at + len;
                    let c = comps.ok_or(JpegError::Malformed("SOS before SOF"))?;
                    let (width, height) = size.unwrap_or((0, 0));
                    check_scan(body, &c)?;
                    return finish(jpeg, scan_start, c, width, height, restart, &tables);
                }
                _ => {} // APPn, COM and the rest carry nothing RFC 2435 needs
            }
            at += len;
        }
    }

    /// The width field of the RFC 2435 header (8-pixel units, rounded up).
    pub fn width_blocks(&self) -> u8 {
        self.width.div_ceil(8) as u8
    }

    /// The height field of the RFC 2435 header (8-pixel units, rounded up).
    pub fn height_blocks(&self) -> u8 {
        self.height.div_ceil(8) as u8
    }
}

/// Every Huffman table in a DHT segment must be the standard one for its slot (0: luminance,
/// 1: chrominance), since RFC 2435 receivers use those.
fn check_huffman(body: &[u8]) -> Result<(), JpegError> {
    let mut i = 0;
    while i < body.len() {
        let class = body[i] >> 4;
        let slot = body[i] & 0x0F;
        let bits: [u8; 16] = body
            .get(i + 1..i + 17)
            .and_then(|b| b.try_into().ok())
            .ok_or(JpegError::Malformed("bad DHT"))?;
        let n: usize = bits.iter().map(|&b| b as usize).sum();
        let vals = body
            .get(i + 17..i + 17 + n)
            .ok_or(JpegError::Malformed("bad DHT"))?;
        let std = match (class, slot) {
            (0, 0) => STD_DC_LUMA,
            (0, 1) => STD_DC_CHROMA,
            (1, 0) => STD_AC_LUMA,
            (1, 1) => STD_AC_CHROMA,
            _ => {
                return Err(JpegError::Unsupported(
                    "Huffman tables beyond slots 0 and 1",
                ));
            }
        };
        if bits != std.0 || n != std.1 || crc32fast::hash(vals) != std.2 {
            return Err(JpegError::Unsupported(
                "non-standard (optimized) Huffman tables",
            ));
        }
        i += 17 + n;
    }
    Ok(())
}

/// One scan of all three components, luminance on Huffman tables 0, chrominance on 1.
fn check_scan(body: &[u8], c: &[Component; 3]) -> Result<(), JpegError> {
    if body.first() != Some(&3) || body.len() < 1 + 6 + 3 {
        return Err(JpegError::Unsupported(
            "one interleaved scan of three components",
        ));
    }
    for (k, comp) in c.iter().enumerate() {
        let (id, tables) = (body[1 + 2 * k], body[2 + 2 * k]);
        let want = if k == 0 { 0x00 } else { 0x11 };
        if id != comp.id || tables != want {
            return Err(JpegError::Unsupported(
                "scan components out of order or on non-standard Huffman slots",
            ));
        }
    }
    Ok(())
}

fn finish(
    jpeg: &[u8],
    scan_start: usize,
    c: [Component; 3],
    width: u16,
    height: u16,
    restart: Option<u16>,
    tables: &[Option<(bool, Range<usize>)>; 4],
) -> Result<RtpJpeg, JpegError> {
    if width == 0 || height == 0 {
        return Err(JpegError::Malformed("zero width or height"));
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(JpegError::TooLarge { width, height });
    }
    let base_type = match (c[0].h, c[0].v) {
        (2, 1) => 0,
        (2, 2) => 1,
        _ => {
            return Err(JpegError::Unsupported(
                "luminance must be sampled 2x1 (4:2:2) or 2x2 (4:2:0); 4:4:4 is not in RFC 2435",
            ));
        }
    };
    if c[1..].iter().any(|x| x.h != 1 || x.v != 1) || c[1].tq != c[2].tq {
        return Err(JpegError::Unsupported(
            "chrominance must be 1x1 sharing one quantization table",
        ));
    }
    let mut qtables = Vec::with_capacity(256);
    let mut precision = 0;
    for (i, tq) in [c[0].tq, c[1].tq].into_iter().enumerate() {
        let (wide, range) =
            tables
                .get(tq as usize)
                .cloned()
                .flatten()
                .ok_or(JpegError::Malformed(
                    "a component's quantization table is missing",
                ))?;
        precision |= u8::from(wide) << i;
        qtables.extend_from_slice(&jpeg[range]);
    }
    // The entropy-coded data ends at the last EOI (trailing bytes after it are ignored).
    let end = jpeg[scan_start..]
        .windows(2)
        .rposition(|w| w == [0xFF, 0xD9])
        .map(|p| scan_start + p)
        .ok_or(JpegError::Malformed("no EOI marker"))?;
    Ok(RtpJpeg {
        type_: base_type + if restart.is_some() { 64 } else { 0 },
        width,
        height,
        restart_interval: restart,
        precision,
        qtables,
        scan: scan_start..end,
    })
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A minimal baseline 4:2:0 JPEG skeleton: DQT x2, SOF0, DRI (optional), SOS, data, EOI.
    pub(crate) fn skeleton(width: u16, height: u16, h: u8, v: u8, dri: Option<u16>) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        for t in 0..2u8 {
            j.extend_from_slice(&[0xFF, 0xDB, 0, 67, t]);
            j.extend((0..64).map(|k| k as u8 + t));
        }
        j.extend_from_slice(&[0xFF, 0xC0, 0, 17, 8]);
        j.extend_from_slice(&height.to_be_bytes());
        j.extend_from_slice(&width.to_be_bytes());
        j.extend_from_slice(&[3, 1, (h << 4) | v, 0, 2, 0x11, 1, 3, 0x11, 1]);
        if let Some(r) = dri {
            j.extend_from_slice(&[0xFF, 0xDD, 0, 4]);
            j.extend_from_slice(&r.to_be_bytes());
        }
        j.extend_from_slice(&[0xFF, 0xDA, 0, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
        j.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56]);
        j.extend_from_slice(&[0xFF, 0xD9]);
        j
    }

    /// A 320x240 4:2:0 JPEG skeleton with `scan_len` bytes of entropy-coded data.
    pub(crate) fn jpeg(scan_len: usize) -> Vec<u8> {
        let mut j = skeleton(320, 240, 2, 2, None);
        let tail = j.split_off(j.len() - 7);
        j.extend((0..scan_len).map(|i| (i % 251) as u8));
        j.extend_from_slice(&tail[5..]);
        j
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::skeleton;
    use super::*;

    #[test]
    fn reads_type_size_tables_and_scan() {
        let j = skeleton(640, 480, 2, 2, None);
        let r = RtpJpeg::parse(&j).unwrap();
        assert_eq!(r.type_, 1);
        assert_eq!((r.width_blocks(), r.height_blocks()), (80, 60));
        assert_eq!(r.qtables.len(), 128);
        assert_eq!(r.qtables[64], 1, "chrominance table second");
        assert_eq!(&j[r.scan.clone()], &[0x12, 0x34, 0xFF, 0x00, 0x56]);
        let r = RtpJpeg::parse(&skeleton(642, 480, 2, 1, Some(4))).unwrap();
        assert_eq!((r.type_, r.restart_interval), (64, Some(4)));
        assert_eq!(r.width_blocks(), 81, "rounded up");
    }

    #[test]
    fn refuses_what_rfc_2435_cannot_carry() {
        assert_eq!(
            RtpJpeg::parse(&skeleton(2048, 1080, 2, 2, None)),
            Err(JpegError::TooLarge {
                width: 2048,
                height: 1080
            })
        );
        assert!(matches!(
            RtpJpeg::parse(&skeleton(64, 64, 1, 1, None)),
            Err(JpegError::Unsupported(_))
        ));
        let mut j = skeleton(64, 64, 2, 2, None);
        j[2 + 69 * 2 + 1] = 0xC2; // SOF0 -> SOF2 (progressive)
        assert!(matches!(RtpJpeg::parse(&j), Err(JpegError::Unsupported(_))));
    }

    #[test]
    fn standard_huffman_tables_pass_others_are_refused() {
        let mut dht = vec![0x00];
        dht.extend_from_slice(&STD_DC_LUMA.0);
        dht.extend(0..12u8);
        assert_eq!(check_huffman(&dht), Ok(()));
        dht[17] = 1; // a changed value
        assert!(check_huffman(&dht).is_err());
        assert!(check_huffman(&[0x00, 1]).is_err(), "truncated");
    }

    /// What libjpeg-turbo writes (as `serve` does) is accepted for 4:2:0 and 4:2:2 with the
    /// right type, and 4:4:4 and greyscale are refused.
    #[cfg(feature = "jpeg")]
    #[test]
    fn turbojpeg_output_is_accepted_or_refused_by_subsampling() {
        use crate::media::{JpegEncoder, Subsampling, VideoFrameRgb};
        let frame = VideoFrameRgb::black(100, 60);
        for (sub, want) in [
            (Subsampling::Yuv420, Some(1)),
            (Subsampling::Yuv422, Some(0)),
            (Subsampling::Yuv444, None),
            (Subsampling::Gray, None),
        ] {
            let j = JpegEncoder::new(80, sub)
                .unwrap()
                .encode_rgb(&frame)
                .unwrap();
            let got = RtpJpeg::parse(&j);
            assert_eq!(got.as_ref().ok().map(|r| r.type_), want, "{sub:?}: {got:?}");
            if let Ok(r) = got {
                assert_eq!((r.width, r.height, r.qtables.len()), (100, 60, 128));
                assert_eq!(j[r.scan.end..], [0xFF, 0xD9]);
            }
        }
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let j = skeleton(320, 240, 2, 2, None);
        for n in 0..j.len() - 1 {
            let _ = RtpJpeg::parse(&j[..n]);
        }
        let mut rng = 7u32;
        for _ in 0..2000 {
            let mut k = j.clone();
            rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let at = (rng >> 8) as usize % k.len();
            k[at] = (rng >> 24) as u8;
            let _ = RtpJpeg::parse(&k);
        }
        assert!(RtpJpeg::parse(&j[..j.len() - 2]).is_err(), "no EOI");
    }
}
