//! RFC 2435 reading and packetization of arbitrary bytes never panics; whatever is accepted
//! fits RFC 2435 (at most 2040 pixels each way, two 64- or 128-byte tables, the scan inside
//! the input), and its fragments fit the packet size and put the scan back together exactly.
#![no_main]

use framecast::rtp::RtpJpeg;
use framecast::rtp::jpeg::MAX_DIMENSION;
use framecast::rtp::payload::jpeg_payloads;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = RtpJpeg::parse(data) else {
        return;
    };
    assert!(info.width <= MAX_DIMENSION && info.height <= MAX_DIMENSION);
    assert!(matches!(info.qtables.len(), 128 | 192 | 256));
    assert!(info.scan.start <= info.scan.end && info.scan.end <= data.len());
    assert!(matches!(info.type_, 0 | 1 | 64 | 65));
    let max = 300;
    let mut scan = Vec::new();
    for (k, p) in jpeg_payloads(data, &info, max).iter().enumerate() {
        assert!(p.len() <= max.max(8 + 4 + 4 + info.qtables.len() + 1));
        let off = u32::from_be_bytes([0, p[1], p[2], p[3]]) as usize;
        assert_eq!(off, scan.len());
        let mut hdr = 8 + if info.restart_interval.is_some() { 4 } else { 0 };
        if k == 0 {
            hdr += 4 + info.qtables.len();
        }
        scan.extend_from_slice(&p[hdr..]);
    }
    assert_eq!(scan, data[info.scan.clone()]);
});
