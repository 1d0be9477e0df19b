//! The cheap check every passed-through JPEG gets before it is sent, and the one repair
//! (proto-spec.md §5.1, "Passed-through JPEGs"): a walk over the marker segments up to the
//! first scan, no decoding.
//!
//! - It must start with SOI and end with EOI (bytes after EOI are cut by the scanner).
//! - Every segment before the first SOS must fit; a frame header (SOF0-SOF2: baseline,
//!   extended, progressive) must come before the scan, with 1 or 3 components and sides
//!   1..=65535 whose area is at most the bound.
//! - No DHT before the first scan (USB cameras' "MJPEG", which leaves the standard tables
//!   implied): the standard tables of ITU-T T.81 Annex K.3 are inserted just before the SOS.
//!   This is the only change ever made to a passed-through JPEG.
//! - Restart markers, 4:2:2, 4:4:4 and grayscale need no repair: they are sent as they are
//!   and `play` (libjpeg-turbo) decodes them.

use std::borrow::Cow;

/// The DHT segment of ITU-T T.81 Annex K.3 (Tables K.3-K.6): the luminance and chrominance
/// DC and AC tables as classes 0 and 1, tables 0 (luma) and 1 (chroma); 420 bytes.
pub const STANDARD_DHT: [u8; 420] = [
    0xff, 0xc4, 0x01, 0xa2, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00,
    0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51,
    0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
    0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47,
    0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67,
    0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6,
    0xf7, 0xf8, 0xf9, 0xfa, 0x01, 0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x11, 0x00, 0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01,
    0x02, 0x77, 0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07,
    0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
    0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19,
    0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46,
    0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66,
    0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85,
    0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3,
    0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba,
    0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8,
    0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6,
    0xf7, 0xf8, 0xf9, 0xfa,
];

/// Why a passed-through JPEG was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JpegCheckError {
    /// It does not start with SOI (FF D8) and end with EOI (FF D9).
    #[error("not a JPEG: it must start with FF D8 and end with FF D9")]
    NotJpeg,
    /// A segment's length runs past the end, or a marker is not where one must be.
    #[error("a damaged marker segment at byte {offset}")]
    Damaged {
        /// Offset of the segment.
        offset: usize,
    },
    /// No frame header (SOF0, SOF1 or SOF2) before the scan.
    #[error("no supported frame header (baseline, extended or progressive Huffman)")]
    NoFrameHeader,
    /// The frame header is not one `play` decodes (lossless, arithmetic, 12-bit, or a
    /// component count other than 1 or 3).
    #[error("an unsupported JPEG (SOF marker FF {marker:02X}, {components} components)")]
    Unsupported {
        /// The SOF marker's second byte.
        marker: u8,
        /// Components it declares.
        components: u8,
    },
    /// The frame header's sides are 0 or its area above the bound.
    #[error(
        "a {width}x{height} JPEG: sides must be 1..=65535 and the area at most {max_pixels} pixels"
    )]
    BadSize {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
        /// The bound in force.
        max_pixels: u64,
    },
}

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedJpeg {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Colour components (1 gray, 3 YCbCr).
    pub components: u8,
    /// Where the standard Huffman tables go if there are none (the first SOS), or `None` when
    /// the JPEG has its own.
    pub needs_dht_at: Option<usize>,
}

/// Checks `jpeg` (one whole JPEG, SOI to EOI) and returns what its header says. Reads only the
/// marker segments before the first scan; allocates nothing.
pub fn check_jpeg(jpeg: &[u8], max_pixels: u64) -> Result<CheckedJpeg, JpegCheckError> {
    if jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] || jpeg[jpeg.len() - 2..] != [0xFF, 0xD9] {
        return Err(JpegCheckError::NotJpeg);
    }
    let mut pos = 2;
    let mut frame = None;
    let mut has_dht = false;
    loop {
        let damaged = JpegCheckError::Damaged { offset: pos };
        if pos + 4 > jpeg.len() || jpeg[pos] != 0xFF {
            return Err(damaged);
        }
        let marker = jpeg[pos + 1];
        if marker == 0xFF {
            pos += 1; // a fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        if len < 2 || pos + 2 + len > jpeg.len() {
            return Err(damaged);
        }
        let body = &jpeg[pos + 4..pos + 2 + len];
        match marker {
            0xC0..=0xC2 => {
                if body.len() < 6 {
                    return Err(damaged);
                }
                let precision = body[0];
                let height = u32::from(u16::from_be_bytes([body[1], body[2]]));
                let width = u32::from(u16::from_be_bytes([body[3], body[4]]));
                let components = body[5];
                if precision != 8 || !(components == 1 || components == 3) {
                    return Err(JpegCheckError::Unsupported { marker, components });
                }
                if width == 0 || height == 0 || u64::from(width) * u64::from(height) > max_pixels {
                    return Err(JpegCheckError::BadSize {
                        width,
                        height,
                        max_pixels,
                    });
                }
                frame = Some((width, height, components));
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(JpegCheckError::Unsupported {
                    marker,
                    components: body.get(5).copied().unwrap_or(0),
                });
            }
            0xC4 => has_dht = true,
            0xDA => {
                let (width, height, components) = frame.ok_or(JpegCheckError::NoFrameHeader)?;
                return Ok(CheckedJpeg {
                    width,
                    height,
                    components,
                    needs_dht_at: (!has_dht).then_some(pos),
                });
            }
            0xD8 | 0xD9 | 0x01 | 0xD0..=0xD7 => return Err(damaged),
            _ => {}
        }
        pos += 2 + len;
    }
}

/// The JPEG to send for `jpeg` as checked: the same bytes, or (no Huffman tables) a copy with
/// [`STANDARD_DHT`] inserted before the first SOS.
pub fn repaired<'a>(jpeg: &'a [u8], checked: &CheckedJpeg) -> Cow<'a, [u8]> {
    match checked.needs_dht_at {
        None => Cow::Borrowed(jpeg),
        Some(at) => {
            let mut out = Vec::with_capacity(jpeg.len() + STANDARD_DHT.len());
            out.extend_from_slice(&jpeg[..at]);
            out.extend_from_slice(&STANDARD_DHT);
            out.extend_from_slice(&jpeg[at..]);
            Cow::Owned(out)
        }
    }
}

/// `jpeg` with every DHT segment before the first scan removed: what a USB camera sends
/// (for tests). `None` if its segments do not parse.
pub fn strip_dht(jpeg: &[u8]) -> Option<Vec<u8>> {
    let mut out = jpeg.get(..2)?.to_vec();
    let mut pos = 2;
    loop {
        if *jpeg.get(pos)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(pos + 1)?;
        if marker == 0xDA {
            out.extend_from_slice(&jpeg[pos..]);
            return Some(out);
        }
        let len = usize::from(u16::from_be_bytes([
            *jpeg.get(pos + 2)?,
            *jpeg.get(pos + 3)?,
        ]));
        let seg = jpeg.get(pos..pos + 2 + len)?;
        if marker != 0xC4 {
            out.extend_from_slice(seg);
        }
        pos += 2 + len;
    }
}
