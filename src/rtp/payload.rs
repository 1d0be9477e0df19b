//! RTP payloads: RFC 2435 JPEG fragments and RFC 3551 L16 audio.

use super::jpeg::RtpJpeg;

/// Q value saying the quantization tables travel in-band in the first packet (RFC 2435
/// §3.1.4: 128-255 mean "dynamically defined"; 255 is what senders use).
pub const Q_INBAND: u8 = 255;

/// The RFC 2435 payloads of one frame, in order; each at most `max_payload` bytes (the RTP
/// header is not included). The marker bit belongs on the last.
///
/// Every packet carries the main JPEG header (§3.1); with restart markers (type 64-127) also
/// the restart header (§3.1.7) with F = L = 1 and count 0x3FFF, meaning "decode the frame
/// whole", so fragments need not align with restart intervals; the first packet carries the
/// quantization table header (§3.1.8).
pub fn jpeg_payloads(jpeg: &[u8], info: &RtpJpeg, max_payload: usize) -> Vec<Vec<u8>> {
    let scan = &jpeg[info.scan.clone()];
    let restart = info.restart_interval.is_some();
    let fixed = 8 + if restart { 4 } else { 0 };
    let qheader = 4 + info.qtables.len();
    let mut out = Vec::with_capacity(scan.len() / max_payload.max(1) + 1);
    let mut offset = 0usize;
    while offset < scan.len() || offset == 0 {
        let mut p = Vec::with_capacity(max_payload);
        // Main JPEG header: type-specific 0, 24-bit fragment offset, type, Q, width, height.
        p.push(0);
        p.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
        p.extend_from_slice(&[
            info.type_,
            Q_INBAND,
            info.width_blocks(),
            info.height_blocks(),
        ]);
        if let Some(ri) = info.restart_interval {
            p.extend_from_slice(&ri.to_be_bytes());
            p.extend_from_slice(&0xFFFFu16.to_be_bytes()); // F=1, L=1, count 0x3FFF
        }
        if offset == 0 {
            p.push(0); // MBZ
            p.push(info.precision);
            p.extend_from_slice(&(info.qtables.len() as u16).to_be_bytes());
            p.extend_from_slice(&info.qtables);
        }
        let room = max_payload
            .saturating_sub(fixed + if offset == 0 { qheader } else { 0 })
            .max(1);
        let n = room.min(scan.len() - offset);
        p.extend_from_slice(&scan[offset..offset + n]);
        out.push(p);
        offset += n;
        if n == 0 {
            break;
        }
    }
    out
}

/// Sample frames of `channels` 16-bit samples per L16 packet within `max_payload` bytes.
pub fn l16_frames_per_packet(channels: u8, max_payload: usize) -> usize {
    (max_payload / (2 * usize::from(channels.max(1)))).max(1)
}

/// Interleaved signed 16-bit little-endian samples to L16's network byte order (RFC 3551
/// §4.5.11).
pub fn l16_from_s16le(s16le: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s16le.len() & !1);
    for pair in s16le.chunks_exact(2) {
        out.extend_from_slice(&[pair[1], pair[0]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::jpeg::RtpJpeg;

    fn jpeg(scan_len: usize, dri: bool) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        for t in 0..2u8 {
            j.extend_from_slice(&[0xFF, 0xDB, 0, 67, t]);
            j.extend(std::iter::repeat_n(t + 1, 64));
        }
        j.extend_from_slice(&[
            0xFF, 0xC0, 0, 17, 8, 0, 240, 1, 64, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1,
        ]);
        if dri {
            j.extend_from_slice(&[0xFF, 0xDD, 0, 4, 0, 10]);
        }
        j.extend_from_slice(&[0xFF, 0xDA, 0, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]);
        j.extend((0..scan_len).map(|i| (i % 251) as u8));
        j.extend_from_slice(&[0xFF, 0xD9]);
        j
    }

    /// Reassembling the fragments by their offsets gives back the scan, the first carries the
    /// tables, and every packet fits.
    #[test]
    fn fragments_cover_the_scan_once() {
        for dri in [false, true] {
            let j = jpeg(5000, dri);
            let info = RtpJpeg::parse(&j).unwrap();
            let ps = jpeg_payloads(&j, &info, 1000);
            let hdr = if dri { 12 } else { 8 };
            let mut scan = Vec::new();
            for (k, p) in ps.iter().enumerate() {
                assert!(p.len() <= 1000);
                let off = u32::from_be_bytes([0, p[1], p[2], p[3]]) as usize;
                assert_eq!(off, scan.len());
                assert_eq!(p[4], if dri { 65 } else { 1 });
                assert_eq!((p[5], p[6], p[7]), (255, 40, 30));
                let mut body = &p[hdr..];
                if dri {
                    assert_eq!(&p[8..12], &[0, 10, 0xFF, 0xFF]);
                }
                if k == 0 {
                    assert_eq!(&body[..4], &[0, 0, 0, 128]);
                    assert_eq!((body[4], body[4 + 64]), (1, 2));
                    body = &body[4 + 128..];
                }
                scan.extend_from_slice(body);
            }
            assert_eq!(scan, j[info.scan.clone()]);
        }
    }

    #[test]
    fn l16_swaps_to_network_order() {
        assert_eq!(
            l16_from_s16le(&[0x01, 0x02, 0x03, 0x04, 9]),
            vec![2, 1, 4, 3]
        );
        assert_eq!(l16_frames_per_packet(2, 1200), 300);
    }
}
