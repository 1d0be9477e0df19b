//! Unit tests of the recorder: AVI and WAV contents parsed back, slot filling and audio
//! alignment, padding, jumps and duplicates, finishing on drop, the size limit, bad paths, and
//! ffprobe reading the result.

use super::avi::AVIIF_KEYFRAME;
use super::*;

/// A parsed AVI: (fps num, den), width, height, the `00dc` payloads in `movi` order, and
/// the index entries (offset from `movi`, size).
#[derive(Debug)]
struct ParsedAvi {
    rate: u32,
    scale: u32,
    total_frames: u32,
    length: u32,
    width: u32,
    height: u32,
    handler: [u8; 4],
    compression: [u8; 4],
    frames: Vec<Vec<u8>>,
    index: Vec<(u32, u32)>,
}

fn u32at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn parse_avi(path: &Path) -> ParsedAvi {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(u32at(&b, 4) as usize, b.len() - 8, "RIFF size");
    assert_eq!(&b[8..12], b"AVI ");
    let mut p = ParsedAvi {
        rate: 0,
        scale: 0,
        total_frames: 0,
        length: 0,
        width: 0,
        height: 0,
        handler: [0; 4],
        compression: [0; 4],
        frames: Vec::new(),
        index: Vec::new(),
    };
    let mut movi_at = None;
    // Walk chunks; descend into LISTs.
    fn walk(b: &[u8], mut at: usize, end: usize, p: &mut ParsedAvi, movi_at: &mut Option<usize>) {
        while at + 8 <= end {
            let id: [u8; 4] = b[at..at + 4].try_into().unwrap();
            let size = u32at(b, at + 4) as usize;
            let data = at + 8;
            assert!(data + size <= end, "chunk {:?} overruns its parent", id);
            match &id {
                b"LIST" => {
                    if &b[data..data + 4] == b"movi" {
                        *movi_at = Some(data);
                    }
                    walk(b, data + 4, data + size, p, movi_at);
                }
                b"avih" => {
                    p.total_frames = u32at(b, data + 16);
                    p.width = u32at(b, data + 32);
                    p.height = u32at(b, data + 36);
                }
                b"strh" => {
                    assert_eq!(&b[data..data + 4], b"vids");
                    p.handler = b[data + 4..data + 8].try_into().unwrap();
                    p.scale = u32at(b, data + 20);
                    p.rate = u32at(b, data + 24);
                    p.length = u32at(b, data + 32);
                }
                b"strf" => {
                    assert_eq!(u32at(b, data), 40);
                    p.compression = b[data + 16..data + 20].try_into().unwrap();
                }
                b"00dc" => p.frames.push(b[data..data + size].to_vec()),
                b"idx1" => {
                    for e in b[data..data + size].chunks_exact(16) {
                        assert_eq!(&e[0..4], b"00dc");
                        assert_eq!(u32at(e, 4), AVIIF_KEYFRAME);
                        p.index.push((u32at(e, 8), u32at(e, 12)));
                    }
                }
                _ => {}
            }
            at = data + size + (size & 1);
        }
    }
    walk(&b, 12, b.len(), &mut p, &mut movi_at);
    // Every index entry points at its chunk.
    let movi = movi_at.expect("a movi list");
    for (i, &(off, size)) in p.index.iter().enumerate() {
        let at = movi + off as usize;
        assert_eq!(&b[at..at + 4], b"00dc", "index entry {i}");
        assert_eq!(u32at(&b, at + 4), size);
        assert_eq!(&b[at + 8..at + 8 + size as usize], &p.frames[i][..]);
    }
    p
}

/// A scratch directory, removed when dropped.
struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch directory and the recording base path inside it.
fn tmp(name: &str) -> (TmpDir, PathBuf) {
    let dir = std::env::temp_dir().join(format!("framecast-rec-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("out");
    (TmpDir(dir), base)
}

fn fake_jpeg(i: u8, len: usize) -> Bytes {
    let mut v = vec![0xFF, 0xD8];
    v.extend((0..len).map(|k| i.wrapping_add(k as u8)));
    v.extend([0xFF, 0xD9]);
    Bytes::from(v)
}

fn read_wav(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.samples::<i16>().map(Result::unwrap).collect())
}

#[test]
fn frames_fill_slots_and_audio_is_aligned() {
    let (_dir, base) = tmp("slots");
    let mut rec = Recorder::create(&base).unwrap();
    rec.describe(30, 1, true).unwrap();
    // Video from pts 6000 (2 slots after audio starts), frame 3 lost, odd sizes for padding.
    let frames: Vec<Bytes> = (0..6).map(|i| fake_jpeg(i, 100 + i as usize)).collect();
    for (i, f) in frames.iter().enumerate() {
        if i != 3 {
            rec.video(6000 + 3000 * i as u64, 64, 48, f).unwrap();
        }
    }
    // Audio 8 kHz mono from pts 0: blocks of 80 frames (10 ms = 900 ticks); block 2
    // concealed, block 4 lost (a gap), block 5 arrives.
    for k in 0..6u64 {
        if k == 4 {
            continue;
        }
        let samples: Vec<i16> = (0..80).map(|j| (k * 100 + j) as i16).collect();
        rec.audio(k * 900, 8000, 1, &samples, k == 2).unwrap();
    }
    let s = rec.finish().unwrap();
    assert_eq!(s.video_frames, 2 + 6, "2 leading slots, 6 frame slots");
    assert_eq!(s.video_repeats, 2 + 1);
    assert_eq!((s.audio_frames, s.audio_silence_frames), (480, 160));
    assert_eq!(
        (s.video_skipped, s.audio_skipped, s.rebases, s.truncated),
        (0, 0, 0, false)
    );

    let avi = parse_avi(&with_ext(&base, "avi"));
    assert_eq!((avi.rate, avi.scale), (30, 1));
    assert_eq!((avi.total_frames, avi.length), (8, 8));
    assert_eq!((avi.width, avi.height), (64, 48));
    assert_eq!((&avi.handler, &avi.compression), (b"MJPG", b"MJPG"));
    let want: Vec<&Bytes> = [0, 0, 0, 1, 2, 2, 4, 5]
        .iter()
        .map(|&i| &frames[i])
        .collect();
    assert_eq!(avi.frames.len(), 8);
    for (got, want) in avi.frames.iter().zip(want) {
        assert_eq!(&got[..], &want[..]);
    }
    assert_eq!(avi.index.len(), 8);
    assert_eq!(avi.index[0].0, 4, "the first chunk right after 'movi'");

    let (spec, wav) = read_wav(&with_ext(&base, "wav"));
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    assert_eq!(wav.len(), 480);
    assert_eq!(&wav[0..3], &[0, 1, 2]);
    assert!(wav[160..240].iter().all(|&x| x == 0), "concealed");
    assert_eq!(wav[240], 300);
    assert!(wav[320..400].iter().all(|&x| x == 0), "gap");
    assert_eq!(wav[400], 500);
}

#[test]
fn late_audio_is_padded_and_video_starts_at_zero() {
    let (_dir, base) = tmp("late-audio");
    let mut rec = Recorder::create(&base).unwrap();
    rec.describe(25, 1, true).unwrap();
    let f = fake_jpeg(9, 10);
    rec.video(90_000, 32, 32, &f).unwrap(); // t = 0
    rec.video(90_000 + 3600, 32, 32, &f).unwrap();
    // Audio starts 100 ms after the video: 4800 frames of silence at 48 kHz stereo.
    rec.audio(90_000 + 9000, 48_000, 2, &[1; 2 * 480], false)
        .unwrap();
    let s = rec.finish().unwrap();
    assert_eq!((s.video_frames, s.video_repeats), (2, 0));
    assert_eq!((s.audio_frames, s.audio_silence_frames), (4800 + 480, 4800));
    let (spec, wav) = read_wav(&with_ext(&base, "wav"));
    assert_eq!(spec.channels, 2);
    assert_eq!(wav.len(), 2 * 5280);
    assert_eq!((wav[2 * 4800 - 1], wav[2 * 4800]), (0, 1));
    let avi = parse_avi(&with_ext(&base, "avi"));
    assert_eq!((avi.rate, avi.scale, avi.frames.len()), (25, 1, 2));
}

#[test]
fn jumps_duplicates_and_an_audio_less_stream() {
    let (_dir, base) = tmp("jumps");
    let mut rec = Recorder::create(&base).unwrap();
    rec.describe(30_000, 1001, false).unwrap(); // 29.97 fps, interval 3003 ticks
    let f = fake_jpeg(1, 20);
    rec.video(1000, 8, 8, &f).unwrap(); // starts at once: no audio expected
    assert_eq!(rec.summary().video_frames, 1);
    rec.video(1000 + 3003, 8, 8, &f).unwrap();
    rec.video(1000 + 3003 + 100, 8, 8, &f).unwrap(); // same slot: skipped
    rec.video(1000 + 3003 * 3, 8, 8, &f).unwrap(); // one slot repeated
    rec.video(1000 + 3003 * 3 + 90_000 * 3600, 8, 8, &f)
        .unwrap(); // 1 h jump: not filled
    rec.video(10, 8, 8, &f).unwrap(); // back to the start: a new timeline again
    let s = rec.finish().unwrap();
    assert_eq!(s.wav, None);
    assert_eq!(
        (s.video_frames, s.video_repeats, s.video_skipped, s.rebases),
        (6, 1, 1, 2)
    );
    let avi = parse_avi(&with_ext(&base, "avi"));
    assert_eq!((avi.rate, avi.scale, avi.frames.len()), (30_000, 1001, 6));
    assert!(!with_ext(&base, "wav").exists());
}

#[test]
fn drop_finalises_and_the_size_limit_holds() {
    let (_dir, base) = tmp("drop");
    {
        let mut rec =
            Recorder::create_with_limit(&base, 224 + 3 * (8 + 1000) + 8 + 3 * 16).unwrap();
        rec.describe(10, 1, false).unwrap();
        for i in 0..5u64 {
            rec.video(i * 9000, 16, 16, &fake_jpeg(i as u8, 996))
                .unwrap();
        }
        assert!(rec.summary().truncated);
        assert_eq!(rec.summary().video_frames, 3);
        // Dropped without finish(), like a player unwinding after an error.
    }
    let avi = parse_avi(&with_ext(&base, "avi"));
    assert_eq!(
        (avi.total_frames, avi.frames.len(), avi.index.len()),
        (3, 3, 3)
    );
    assert_eq!(
        std::fs::metadata(with_ext(&base, "avi")).unwrap().len(),
        224 + 3 * 1008 + 8 + 48
    );
}

#[test]
fn a_bad_path_fails_at_once() {
    let err = Recorder::create("/nonexistent-dir/x").unwrap_err();
    assert!(matches!(err, RecordError::Create { .. }));
    assert!(err.to_string().contains("/nonexistent-dir/x.avi"), "{err}");
}

/// Real JPEGs, read back by ffprobe (installed here and in CI: this test requires it).
#[cfg(feature = "jpeg")]
#[test]
fn ffprobe_reads_the_recording() {
    use crate::media::{JpegEncoder, Subsampling, TestPattern};
    let (_dir, base) = tmp("ffprobe");
    let mut rec = Recorder::create(&base).unwrap();
    rec.describe(30, 1, true).unwrap();
    let mut enc = JpegEncoder::new(80, Subsampling::Yuv420).unwrap();
    let mut pat = TestPattern::new(160, 120, 30, 1).unwrap();
    let mut sent = Vec::new();
    for i in 0..45u64 {
        let jpeg = Bytes::from(enc.encode_rgb(&pat.frame(i)).unwrap());
        if i != 10 {
            rec.video(i * 3000, 160, 120, &jpeg).unwrap();
        }
        sent.push(jpeg);
    }
    // 1.5 s of 48 kHz stereo in 20 ms blocks.
    for k in 0..75u64 {
        rec.audio(k * 1800, 48_000, 2, &[k as i16; 2 * 960], false)
            .unwrap();
    }
    let s = rec.finish().unwrap();
    assert_eq!((s.video_frames, s.video_repeats), (45, 1));
    let avi_path = with_ext(&base, "avi");
    let avi = parse_avi(&avi_path);
    assert_eq!(avi.frames.len(), 45);
    for (i, got) in avi.frames.iter().enumerate() {
        let want = if i == 10 { &sent[9] } else { &sent[i] };
        assert_eq!(&got[..], &want[..], "frame {i}");
    }
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames,codec_name,r_frame_rate:format=duration",
            "-of",
            "json",
        ])
        .arg(&avi_path)
        .output()
        .expect("ffprobe is needed for this test (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "ffprobe complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let st = &j["streams"][0];
    assert_eq!(st["codec_name"], "mjpeg");
    assert_eq!(st["nb_read_frames"], "45");
    assert_eq!(st["r_frame_rate"], "30/1");
    assert_eq!(j["format"]["duration"], "1.500000");
    let mut r = hound::WavReader::open(with_ext(&base, "wav")).unwrap();
    assert_eq!(r.duration(), 75 * 960);
    assert_eq!(r.samples::<i16>().count(), 2 * 75 * 960);
}

/// Audio stamped 200 ppm faster than its samples play (a source whose audio clock does not
/// match the stream's): the WAV follows by resampling, smoothly, with no silence inserted
/// and nothing skipped; with matching clocks nothing is corrected.
#[test]
fn audio_clock_drift_is_resampled_not_padded() {
    for ppm in [0.0f64, 200.0] {
        let (_dir, base) = tmp(&format!("drift{ppm}"));
        let mut rec = Recorder::create(&base).unwrap();
        rec.describe(30, 1, true).unwrap();
        rec.video(0, 8, 8, &fake_jpeg(1, 20)).unwrap();
        // A pure 440 Hz sine: it moves at most 2765 a sample, so a dropped sample (a step of
        // twice that) or inserted silence (up to 8000) would show.
        let sine =
            |n: u64| (8000.0 * (std::f64::consts::TAU * 440.0 * n as f64 / 8000.0).sin()) as i16;
        let blocks = 8000u64 * 180 / 40; // 3 minutes of 5 ms blocks
        for k in 0..blocks {
            if ppm == 0.0 && k % 1000 == 500 {
                continue; // a block lost now and then: a gap, filled, and no drift
            }
            let samples: Vec<i16> = (0..40).map(|j| sine(k * 40 + j)).collect();
            let pts = (k as f64 * 450.0 * (1.0 + ppm * 1e-6)).round() as u64;
            rec.audio(pts, 8000, 1, &samples, false).unwrap();
        }
        let s = rec.finish().unwrap();
        let lost = if ppm == 0.0 { blocks / 1000 * 40 } else { 0 };
        assert_eq!(
            (s.audio_silence_frames, s.audio_skipped),
            (lost, 0),
            "{s:?}"
        );
        let (_, wav) = read_wav(&with_ext(&base, "wav"));
        if ppm == 0.0 {
            assert_eq!(s.audio_drift_corrections, 0);
            assert_eq!(wav.len() as u64, blocks * 40);
            continue;
        }
        assert!(s.audio_drift_corrections > 0, "{s:?}");
        // The file spans the timestamps (3 min + 200 ppm = 288 frames more), to within the
        // dead band and the resampler's hold (5 + 5 ms = 80 frames).
        let want = (blocks * 40) as f64 * (1.0 + ppm * 1e-6);
        assert!(
            (wav.len() as f64 - want).abs() < 100.0,
            "{} vs {want}",
            wav.len()
        );
        // Smooth: no step beyond the sine's own (2751 a sample, plus the resampling
        // filter's few % of ripple); a dropped sample would step about 5500.
        let max_step = wav
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap();
        assert!(max_step <= 3000, "step {max_step}");
    }
}
