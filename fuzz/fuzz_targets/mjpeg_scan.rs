//! Arbitrary bytes, cut at arbitrary points, through the pass-through MJPEG scanner, and each
//! JPEG it cuts through the check and the repair (proto-spec.md §5.1).
//!
//! Invariants: no panic; every JPEG cut starts with SOI and ends with EOI and is at most
//! `MAX_JPEG_BYTES`; the scanner never buffers more than the bound plus one push; a JPEG the
//! check accepts has sides within the bound, and its repair is the same bytes or the same
//! bytes with the standard DHT segment inserted.
#![no_main]

use framecast::media::mjpeg::{
    MAX_JPEG_BYTES, MjpegScanner, STANDARD_DHT, Scanned, check_jpeg, repaired,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u16>, Vec<u8>)| {
    let (cuts, data) = input;
    let mut scanner = MjpegScanner::new();
    let mut rest = &data[..];
    let mut cuts = cuts.into_iter();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let n = (cuts.next().unwrap_or(u16::MAX) as usize).clamp(1, rest.len());
        out.extend(scanner.push(&rest[..n]));
        assert!(scanner.buffered() <= MAX_JPEG_BYTES + n);
        rest = &rest[n..];
    }
    out.extend(scanner.finish());
    for item in out {
        let Scanned::Jpeg(j) = item else { continue };
        assert!(j.len() >= 4 && j.len() <= MAX_JPEG_BYTES);
        assert_eq!(j[..2], [0xFF, 0xD8]);
        assert_eq!(j[j.len() - 2..], [0xFF, 0xD9]);
        if let Ok(c) = check_jpeg(&j, 1 << 24) {
            assert!(c.width >= 1 && c.height >= 1);
            assert!(u64::from(c.width) * u64::from(c.height) <= 1 << 24);
            let fixed = repaired(&j, &c);
            match c.needs_dht_at {
                None => assert_eq!(&fixed[..], &j[..]),
                Some(at) => {
                    assert_eq!(fixed.len(), j.len() + STANDARD_DHT.len());
                    assert_eq!(&fixed[at..at + STANDARD_DHT.len()], &STANDARD_DHT[..]);
                }
            }
        }
    }
});
