//! The scanner, the check and the repair on JPEGs made by ffmpeg: plain, restart markers,
//! 4:2:2, grayscale, no Huffman tables, bytes after EOI, an EXIF-like APP segment holding FF D9.

use super::*;

/// `n` JPEGs of a 160x120 test pattern from ffmpeg's MJPEG encoder with `extra` options, as
/// one concatenated stream.
pub(crate) fn ffmpeg_mjpeg(n: u32, extra: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=s=160x120:r=30")
        .args(["-frames:v", &n.to_string(), "-c:v", "mjpeg"])
        .args(extra)
        .args(["-f", "mjpeg", "-"])
        .output()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The JPEGs of `stream` re-encoded by libjpeg-turbo with `subsamp` (a `TJSAMP_*`) and
/// `restart_rows` (a restart marker every so many MCU rows, 0 for none): FFmpeg's MJPEG
/// encoder writes neither restart markers nor grayscale.
fn reencoded(stream: &[u8], subsamp: i32, restart_rows: i32) -> Vec<u8> {
    use turbojpeg::raw;
    let (jpegs, _) = scan_all(stream, stream.len());
    let mut dec = crate::media::JpegDecoder::new().unwrap();
    let mut out = Vec::new();
    for j in jpegs {
        let rgb = dec.decode_rgb_default(&j).unwrap();
        // SAFETY: a handle of our own, an RGB buffer of the size given, and the output
        // buffer turbojpeg allocates, copied and freed here.
        unsafe {
            let h = raw::tj3Init(raw::TJINIT_TJINIT_COMPRESS as i32);
            assert!(!h.is_null());
            assert_eq!(raw::tj3Set(h, raw::TJPARAM_TJPARAM_QUALITY as i32, 80), 0);
            assert_eq!(
                raw::tj3Set(h, raw::TJPARAM_TJPARAM_SUBSAMP as i32, subsamp),
                0
            );
            assert_eq!(
                raw::tj3Set(h, raw::TJPARAM_TJPARAM_RESTARTROWS as i32, restart_rows),
                0
            );
            let mut buf: *mut u8 = std::ptr::null_mut();
            let mut len: raw::size_t = 0;
            let r = raw::tj3Compress8(
                h,
                rgb.data.as_ptr(),
                rgb.width as i32,
                0,
                rgb.height as i32,
                raw::TJPF_TJPF_RGB,
                &mut buf,
                &mut len,
            );
            assert_eq!(r, 0);
            out.extend_from_slice(std::slice::from_raw_parts(buf, len as usize));
            raw::tj3Free(buf as *mut _);
            raw::tj3Destroy(h);
        }
    }
    out
}

fn scan_all(stream: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Vec<DropReason>) {
    let mut s = MjpegScanner::new();
    let (mut jpegs, mut drops) = (Vec::new(), Vec::new());
    let mut items: Vec<Scanned> = stream.chunks(chunk).flat_map(|c| s.push(c)).collect();
    items.extend(s.finish());
    for i in items {
        match i {
            Scanned::Jpeg(j) => jpegs.push(j),
            Scanned::Dropped(d) => drops.push(d),
        }
    }
    (jpegs, drops)
}

/// Offsets of every SOI in a stream of ffmpeg JPEGs (ffmpeg writes no embedded thumbnails).
fn soi_offsets(stream: &[u8]) -> Vec<usize> {
    stream
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0xD8])
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn cuts_a_stream_into_the_same_jpegs_whatever_the_read_size() {
    let stream = ffmpeg_mjpeg(5, &[]);
    let starts = soi_offsets(&stream);
    assert_eq!(starts.len(), 5);
    for chunk in [1, 7, 4096, stream.len()] {
        let (jpegs, drops) = scan_all(&stream, chunk);
        assert!(drops.is_empty(), "{drops:?}");
        assert_eq!(jpegs.len(), 5, "chunk {chunk}");
        assert_eq!(jpegs.concat(), stream, "byte-identical, chunk {chunk}");
    }
}

#[test]
fn quirks_are_checked_and_decode() {
    let mut dec = crate::media::JpegDecoder::new().unwrap();
    let cases: [(&str, &[&str], u8); 4] = [
        ("restart markers", &[], 3),
        ("4:2:2", &["-pix_fmt", "yuvj422p"], 3),
        ("4:4:4", &["-pix_fmt", "yuvj444p"], 3),
        ("gray", &[], 1),
    ];
    for (name, extra, components) in cases {
        let mut stream = ffmpeg_mjpeg(2, extra);
        if name == "restart markers" {
            stream = reencoded(&stream, turbojpeg::raw::TJSAMP_TJSAMP_420, 1);
        }
        if name == "gray" {
            stream = reencoded(&stream, turbojpeg::raw::TJSAMP_TJSAMP_GRAY, 0);
        }
        let (jpegs, drops) = scan_all(&stream, 333);
        assert!(drops.is_empty(), "{name}: {drops:?}");
        assert_eq!(jpegs.len(), 2, "{name}");
        for j in &jpegs {
            let c = check_jpeg(j, 1 << 20).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (c.width, c.height, c.components),
                (160, 120, components),
                "{name}"
            );
            assert_eq!(c.needs_dht_at, None, "{name}");
            assert!(matches!(repaired(j, &c), std::borrow::Cow::Borrowed(_)));
            let rgb = dec
                .decode_rgb_default(j)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((rgb.width, rgb.height), (160, 120));
        }
        if name == "restart markers" {
            let j = &jpegs[0];
            assert!(j.windows(2).any(|w| w == [0xFF, 0xDD]), "a DRI segment");
            assert!(
                j.windows(2)
                    .any(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
            );
        }
    }
}

#[test]
fn missing_huffman_tables_are_inserted_and_decode_as_the_original() {
    // ffmpeg's default tables are Annex K's with `-huffman default`.
    let stream = ffmpeg_mjpeg(1, &["-huffman", "default"]);
    let original = &stream[..];
    let stripped = strip_dht(original).unwrap();
    assert!(stripped.len() < original.len());
    assert!(
        !stripped[..stripped.len() - 100]
            .windows(2)
            .any(|w| w == [0xFF, 0xC4])
    );
    let c = check_jpeg(&stripped, 1 << 20).unwrap();
    let at = c.needs_dht_at.expect("no DHT");
    assert_eq!(stripped[at..at + 2], [0xFF, 0xDA]);
    let fixed = repaired(&stripped, &c);
    assert_eq!(fixed.len(), stripped.len() + STANDARD_DHT.len());
    assert_eq!(check_jpeg(&fixed, 1 << 20).unwrap().needs_dht_at, None);
    let mut dec = crate::media::JpegDecoder::new().unwrap();
    let want = dec.decode_rgb_default(original).unwrap();
    let got = dec.decode_rgb_default(&fixed).unwrap();
    assert!(
        want == got,
        "the repaired JPEG decodes to the original's pixels"
    );
    // Optimised tables differ: stripping them breaks the picture, which is why only JPEGs
    // with no tables at all are repaired (and then with the tables they were made with).
}

#[test]
fn bytes_after_eoi_and_between_jpegs_are_cut() {
    let one = ffmpeg_mjpeg(1, &[]);
    let mut stream = b"garbage".to_vec();
    stream.extend_from_slice(&one);
    stream.extend_from_slice(&[0, 0, 0xFF, 0, 0xFF]); // a driver's padding
    stream.extend_from_slice(&one);
    stream.extend_from_slice(&[0xAA; 10]);
    let mut s = MjpegScanner::new();
    let mut items = s.push(&stream);
    items.extend(s.finish());
    assert_eq!(
        items,
        vec![Scanned::Jpeg(one.clone()), Scanned::Jpeg(one.clone())]
    );
    assert_eq!(s.junk_bytes, 7 + 5 + 10);
}

#[test]
fn an_ff_d9_inside_an_app_segment_does_not_end_the_jpeg() {
    let one = ffmpeg_mjpeg(1, &[]);
    // APP1 holding a tiny "thumbnail" FF D8 .. FF D9, right after SOI.
    let app = [0xFF, 0xE1, 0x00, 0x08, 0xFF, 0xD8, 0x00, 0x00, 0xFF, 0xD9];
    let mut j = one[..2].to_vec();
    j.extend_from_slice(&app);
    j.extend_from_slice(&one[2..]);
    let (jpegs, drops) = scan_all(&j, 5);
    assert!(drops.is_empty());
    assert_eq!(jpegs, vec![j.clone()]);
    assert!(check_jpeg(&j, 1 << 20).is_ok());
}

#[test]
fn broken_oversized_and_truncated_jpegs_are_dropped_and_counted() {
    let one = ffmpeg_mjpeg(1, &[]);
    // A segment length of 1 is impossible.
    let mut broken = one.clone();
    broken[4..6].copy_from_slice(&[0, 1]);
    let mut stream = broken;
    stream.extend_from_slice(&one);
    let (jpegs, drops) = scan_all(&stream, 100);
    assert_eq!(jpegs, vec![one.clone()]);
    assert_eq!(drops, vec![DropReason::Damaged]);
    // Over the bound: an SOI, an SOS and then endless entropy-coded bytes, fed in chunks;
    // the buffer never holds more than the bound plus a chunk.
    let mut s = MjpegScanner::new();
    let mut items = s.push(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]);
    let junk = vec![0x55u8; 1 << 20];
    for _ in 0..10 {
        items.extend(s.push(&junk));
        assert!(s.buffered() <= MAX_JPEG_BYTES + junk.len());
    }
    assert_eq!(items, vec![Scanned::Dropped(DropReason::TooLarge)]);
    items = s.push(&one);
    assert_eq!(items, vec![Scanned::Jpeg(one.clone())]);
    // Cut off by the end of the input.
    let mut s = MjpegScanner::new();
    assert!(s.push(&one[..one.len() / 2]).is_empty());
    assert_eq!(s.finish(), Some(Scanned::Dropped(DropReason::Truncated)));
}

#[test]
fn the_check_refuses_bad_headers_without_panicking() {
    let one = ffmpeg_mjpeg(1, &[]);
    assert!(check_jpeg(&one, 160 * 120).is_ok());
    assert!(matches!(
        check_jpeg(&one, 160 * 120 - 1),
        Err(JpegCheckError::BadSize {
            width: 160,
            height: 120,
            ..
        })
    ));
    assert_eq!(
        check_jpeg(&one[..one.len() - 1], 1 << 20),
        Err(JpegCheckError::NotJpeg)
    );
    assert_eq!(
        check_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9], 1 << 20),
        Err(JpegCheckError::Damaged { offset: 2 })
    );
    // Every truncation and many corruptions: an answer, never a panic.
    let mut rng = fastrand::Rng::with_seed(5);
    for cut in (0..one.len()).step_by(13) {
        let mut j = one[..cut].to_vec();
        j.extend_from_slice(&[0xFF, 0xD9]);
        let _ = check_jpeg(&j, 1 << 20);
    }
    for _ in 0..500 {
        let mut j = one.clone();
        for _ in 0..4 {
            let i = rng.usize(..j.len());
            j[i] = rng.u8(..);
        }
        let _ = check_jpeg(&j, 1 << 20);
        let _ = scan_all(&j, 50);
    }
}
