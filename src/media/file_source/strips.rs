//! One JPEG from a picture compressed in horizontal strips, joined at restart markers.
//!
//! A TV-range picture has to be stretched to JPEG's full range before it is compressed. Done
//! for the whole frame first, the stretched copy (1.4 MB at 720p) has left the core's cache by
//! the time libjpeg-turbo reads it back, and those reads cost more than the stretch itself.
//! Done a strip at a time (about 128 KiB of luma), each strip is compressed while it is still
//! in cache.
//!
//! Each strip is compressed by turbojpeg as a JPEG of its own, with the same tables. A
//! baseline scan restarts at each restart marker (ITU-T T.81 B.2.4.4 and E.1.4: the DC
//! predictions reset and the bit stream is byte-aligned), so the strips' entropy-coded segments, joined with
//! RST0..RST7 between them, make one scan with a restart interval (DRI) of one strip's MCUs,
//! under the first strip's headers with the picture's full height in SOF0. The joined JPEG
//! decodes to exactly the pixels a whole-frame compression gives: every block is coded the
//! same, only the markers between strips are new.

use super::encode::EncodeError;

/// Luma bytes per strip: a strip's stretched rows (luma and chroma) and libjpeg-turbo's work
/// on them stay in a core's L2 cache (512 KiB to 1 MiB on current x86), and the per-strip cost
/// of starting a JPEG (tables, headers) stays small: 8 strips at 720p, 17 at 1080p (192 KiB,
/// 5 and 12 strips, measured the same here: less set-up, more cache misses).
const STRIP_LUMA_BYTES: usize = 128 * 1024;

/// Luma rows per strip for a picture `width` pixels wide whose MCUs are `mcu_w x mcu_h`: a
/// multiple of 16 (every subsampling's MCU height divides it), at least 16, at most 256, and
/// small enough that a strip's MCU count fits DRI's 16 bits.
pub(super) fn strip_rows(width: usize, mcu_w: usize, mcu_h: usize) -> usize {
    let mcus_per_row = width.div_ceil(mcu_w).max(1);
    let by_cache = STRIP_LUMA_BYTES / width.max(1);
    let by_dri = 65535 / mcus_per_row * mcu_h;
    (by_cache.min(by_dri).clamp(16, 256) / 16) * 16
}

/// Where the parts of a baseline JPEG that turbojpeg wrote lie.
struct Layout {
    /// Start of the SOF0 (or SOF1) marker.
    sof: usize,
    /// Start of the SOS marker.
    sos: usize,
    /// First byte of the entropy-coded data (just after the SOS segment).
    data: usize,
    /// Start of the closing EOI marker.
    eoi: usize,
}

fn bad(what: &str) -> EncodeError {
    EncodeError::Jpeg(turbojpeg::Error::TurboJpegError(format!(
        "a strip's JPEG is not as expected: {what}"
    )))
}

/// Finds the markers of one strip's JPEG (turbojpeg's output: SOI, tables, SOF, SOS, data, EOI).
fn layout(jpeg: &[u8]) -> Result<Layout, EncodeError> {
    if jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] || jpeg[jpeg.len() - 2..] != [0xFF, 0xD9] {
        return Err(bad("no SOI or EOI"));
    }
    let mut sof = None;
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return Err(bad("a segment does not start with a marker"));
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if len < 2 || i + 2 + len > jpeg.len() {
            return Err(bad("a segment overruns the JPEG"));
        }
        match jpeg[i + 1] {
            0xC0 | 0xC1 if len >= 7 => sof = Some(i),
            0xDA => {
                return Ok(Layout {
                    sof: sof.ok_or_else(|| bad("no SOF0 before SOS"))?,
                    sos: i,
                    data: i + 2 + len,
                    eoi: jpeg.len() - 2,
                });
            }
            _ => {}
        }
        i += 2 + len;
    }
    Err(bad("no SOS"))
}

/// Builds the joined JPEG strip by strip.
pub(super) struct Joiner {
    out: Vec<u8>,
    strips: usize,
    /// The first strip's headers (SOI to the end of SOS) as turbojpeg wrote them: every
    /// strip's must be the same but for its height, or its data would be coded with other
    /// tables than the joined JPEG states (optimised Huffman tables would do that).
    header: Vec<u8>,
    /// Where the height lies in `header` (SOF0 bytes 5 and 6).
    height_at: usize,
}

impl Joiner {
    /// Starts the JPEG with the first strip: its headers, with `height` (the whole picture's)
    /// in SOF0 and a DRI of `interval` MCUs (one strip's; none when there is one strip) before
    /// SOS, then its entropy-coded data. `capacity` is a guess of the whole JPEG's size in
    /// bytes.
    pub(super) fn first(
        strip: &[u8],
        height: u16,
        interval: Option<u16>,
        capacity: usize,
    ) -> Result<Joiner, EncodeError> {
        let l = layout(strip)?;
        let mut out = Vec::with_capacity(capacity.max(strip.len()) + 64);
        out.extend_from_slice(&strip[..l.sos]);
        // SOF0: FF C0, length (2), precision (1), then the height (2).
        out[l.sof + 5..l.sof + 7].copy_from_slice(&height.to_be_bytes());
        if let Some(n) = interval {
            out.extend_from_slice(&[0xFF, 0xDD, 0, 4]);
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&strip[l.sos..l.eoi]);
        Ok(Joiner {
            out,
            strips: 1,
            header: strip[..l.data].to_vec(),
            height_at: l.sof + 5,
        })
    }

    /// Appends the next strip's entropy-coded data after the next restart marker. Errors if
    /// the strip's headers differ from the first strip's (but for the height).
    pub(super) fn push(&mut self, strip: &[u8]) -> Result<(), EncodeError> {
        let l = layout(strip)?;
        let h = self.height_at;
        if l.data != self.header.len()
            || strip[..h] != self.header[..h]
            || strip[h + 2..l.data] != self.header[h + 2..]
        {
            return Err(bad("its tables differ from the first strip's"));
        }
        // RSTm, m counting 0..7 from the first boundary.
        self.out
            .extend_from_slice(&[0xFF, 0xD0 + ((self.strips - 1) % 8) as u8]);
        self.out.extend_from_slice(&strip[l.data..l.eoi]);
        self.strips += 1;
        Ok(())
    }

    /// The finished JPEG.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0xFF, 0xD9]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_are_whole_mcu_rows_in_cache_and_within_dri() {
        // 720p: 102 rows of 1280 fit 128 KiB; rounded down to 96.
        assert_eq!(strip_rows(1280, 16, 16), 96);
        assert_eq!(strip_rows(1920, 16, 16), 64);
        // Narrow pictures: at most 256 rows; wide ones at least 16.
        assert_eq!(strip_rows(64, 16, 16), 256);
        assert_eq!(strip_rows(16384, 16, 16), 16);
        // The widest 4:4:4 picture: 8192 MCUs a row, 8 a DRI can count 7 rows of.
        let rows = strip_rows(65535, 8, 8);
        assert!(
            rows % 16 == 0 && 65535usize.div_ceil(8) * rows / 8 <= 65535,
            "{rows}"
        );
    }

    #[test]
    fn strips_join_under_one_header_with_a_dri_and_restart_markers() {
        use crate::rtp::jpeg::tests_support::skeleton;
        // Three 320x16 strips (20 MCUs each); their data is `12 34 FF 00 56`.
        let strip = skeleton(320, 16, 2, 2, None);
        let mut j = Joiner::first(&strip, 40, Some(20), 0).unwrap();
        j.push(&strip).unwrap();
        j.push(&strip).unwrap();
        let joined = j.finish();
        let data = [0x12, 0x34, 0xFF, 0x00, 0x56];
        let mut want = skeleton(320, 40, 2, 2, Some(20));
        want.truncate(want.len() - 2); // EOI
        for rst in [0xD0, 0xD1] {
            want.extend_from_slice(&[0xFF, rst]);
            want.extend_from_slice(&data);
        }
        want.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(joined, want);
        // What RFC 2435 output makes of it: 4:2:0 with restart markers, the whole height.
        let rtp = crate::rtp::jpeg::RtpJpeg::parse(&joined).unwrap();
        assert_eq!((rtp.type_, rtp.restart_interval), (65, Some(20)));
        // A strip coded with other tables (here: another quantisation table) is refused.
        let mut other = strip.clone();
        other[10] ^= 1;
        let mut j = Joiner::first(&strip, 40, Some(20), 0).unwrap();
        assert!(j.push(&other).is_err());
    }

    #[test]
    fn a_jpeg_without_its_parts_is_refused() {
        assert!(layout(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
        // An SOS with no SOF before it.
        let j = [0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 0xFF, 0xD9];
        assert!(layout(&j).is_err());
        // A segment longer than the JPEG.
        let j = [0xFF, 0xD8, 0xFF, 0xC0, 0xFF, 0xFF, 0xFF, 0xD9];
        assert!(layout(&j).is_err());
    }
}
