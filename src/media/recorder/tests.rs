//! Unit tests of the recorder: the Matroska file read back by ffprobe and ffmpeg (packet
//! times, bytes, audio samples), gaps, overlaps and jumps, finishing on drop, bad paths.

use std::process::Command;

use super::*;
use crate::proto::wire::AudioParams;

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(name: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("framecast-rec-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

fn description(audio: bool) -> Description {
    Description {
        name: "cam".into(),
        width: 32,
        height: 16,
        fps_num: 30,
        fps_den: 1,
        audio: audio.then_some(AudioParams {
            sample_rate: 8000,
            channels: 1,
            block_frames: 80,
        }),
        video_seq_base: 0,
    }
}

/// A stand-in JPEG: the muxer stores bytes, it does not decode them.
fn jpeg(i: u8) -> Bytes {
    Bytes::from(vec![0xFF, 0xD8, i, i, i, 0xFF, 0xD9])
}

/// (pts in ms, size) of each packet of stream `which` ("v" or "a").
fn packets(path: &Path, which: &str) -> Vec<(i64, usize)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", which])
        .args(["-show_entries", "packet=pts,size", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.split(',');
            let pts = f.next().unwrap().parse().unwrap();
            let size = f.next().unwrap().parse().unwrap();
            (pts, size)
        })
        .collect()
}

/// The video packets' bytes, in order.
fn video_bytes(path: &Path) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v", "-c", "copy", "-f", "data", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The audio track decoded to mono s16.
fn audio_samples(path: &Path) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a", "-f", "s16le", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Variable frame intervals are kept exactly (to Matroska's 1 ms), every frame once, its
/// bytes unchanged; a frame at or before the previous one's time is skipped.
#[test]
fn every_frame_keeps_its_own_time_and_bytes() {
    let dir = tmp("vfr");
    let mut r = Recorder::create(dir.0.join("v")).unwrap();
    r.describe(&description(false)).unwrap();
    // 250 ms apart, then 1/30 s apart: a browser's variable-rate recording.
    let times_ms = [0u64, 250, 500, 750, 783, 817, 850];
    let base = 900_000u64;
    let mut want = Vec::new();
    for (i, ms) in times_ms.iter().enumerate() {
        let j = jpeg(i as u8);
        want.extend_from_slice(&j);
        r.video(base + ms * 90, 32, 16, &j).unwrap();
    }
    r.video(base + 800 * 90, 32, 16, &jpeg(99)).unwrap(); // behind: skipped
    let s = r.finish().unwrap();
    assert_eq!((s.video_frames, s.video_skipped), (7, 1), "{s:?}");
    assert!((s.last_frame_s - 0.85).abs() < 1e-9, "{s:?}");
    let path = s.file.unwrap();
    let got: Vec<i64> = packets(&path, "v").iter().map(|p| p.0).collect();
    assert_eq!(got, times_ms.iter().map(|&m| m as i64).collect::<Vec<_>>());
    assert_eq!(video_bytes(&path), want);
}

/// Audio is continuous: a gap becomes silence, a concealed block is silence, an
/// overlapping block is skipped; the first block starts where its pts says relative to the
/// first frame.
#[test]
fn audio_gaps_are_silence_and_overlaps_are_skipped() {
    let dir = tmp("audio");
    let mut r = Recorder::create(dir.0.join("a")).unwrap();
    r.describe(&description(true)).unwrap();
    // 8 kHz mono: 80 frames = 10 ms = 900 ticks.
    let block = |v: i16| vec![v; 80];
    r.video(0, 32, 16, &jpeg(0)).unwrap();
    r.audio(900, 8000, 1, &block(1), false).unwrap(); // starts 10 ms after the frame
    r.audio(1800, 8000, 1, &block(2), false).unwrap();
    r.audio(1800, 8000, 1, &block(9), false).unwrap(); // overlap: skipped
    r.audio(4500, 8000, 1, &block(3), false).unwrap(); // 20 ms gap
    r.audio(5400, 8000, 1, &block(4), true).unwrap(); // concealed
    r.audio(6300, 8000, 2, &[5; 160], false).unwrap(); // another format: skipped
    let s = r.finish().unwrap();
    assert_eq!(s.audio_frames, 4 * 80 + 160, "{s:?}");
    assert_eq!(s.audio_silence_frames, 160 + 80, "{s:?}");
    assert_eq!(s.audio_skipped, 80 + 80, "{s:?}");
    let path = s.file.unwrap();
    let mut want = Vec::new();
    for v in [1, 2, 0, 0, 3, 0] {
        want.extend(block(v));
    }
    assert_eq!(audio_samples(&path), want);
    // The recording starts at the frame; the audio 10 ms after it, as its pts said.
    assert_eq!(packets(&path, "a").first().map(|p| p.0), Some(10));
}

/// A source that restarts its clock (a jump of more than MAX_GAP) continues right after
/// what was written.
#[test]
fn jumps_are_not_kept() {
    let dir = tmp("jump");
    let mut r = Recorder::create(dir.0.join("j")).unwrap();
    r.describe(&description(false)).unwrap();
    r.video(90_000, 32, 16, &jpeg(0)).unwrap();
    r.video(93_000, 32, 16, &jpeg(1)).unwrap();
    r.video(90_000 + 3600 * 90_000, 32, 16, &jpeg(2)).unwrap(); // an hour later
    r.video(90_000 + 3600 * 90_000 + 3000, 32, 16, &jpeg(3))
        .unwrap();
    let s = r.finish().unwrap();
    assert_eq!((s.video_frames, s.rebases), (4, 1), "{s:?}");
    let got: Vec<i64> = packets(&s.file.unwrap(), "v").iter().map(|p| p.0).collect();
    assert_eq!(got, vec![0, 33, 67, 100]);
}

/// Dropping the recorder finishes the file (Ctrl-C path); a directory that does not exist
/// fails at once, naming the file.
#[test]
fn drop_finishes_and_bad_paths_fail_at_once() {
    let dir = tmp("drop");
    {
        let mut r = Recorder::create(dir.0.join("d")).unwrap();
        r.describe(&description(false)).unwrap();
        for i in 0..5u64 {
            r.video(i * 3000, 32, 16, &jpeg(i as u8)).unwrap();
        }
    }
    assert_eq!(packets(&dir.0.join("d.mkv"), "v").len(), 5);
    let err = Recorder::create(dir.0.join("no/such/dir/x")).unwrap_err();
    assert!(matches!(err, RecordError::Create { .. }), "{err}");
    assert!(err.to_string().contains("x.mkv"), "{err}");
}

/// With no audio flow yet, the description's format makes the audio track, so audio that
/// starts late is still recorded.
#[test]
fn the_description_makes_the_audio_track() {
    let dir = tmp("late-audio");
    let mut r = Recorder::create(dir.0.join("l")).unwrap();
    r.describe(&description(true)).unwrap();
    // Video alone for more than HOLD: the recording starts without an audio block.
    for i in 0..40u64 {
        r.video(i * 3000, 32, 16, &jpeg(i as u8)).unwrap();
    }
    r.audio(40 * 3000, 8000, 1, &[7; 80], false).unwrap();
    let s = r.finish().unwrap();
    assert_eq!(s.video_frames, 40);
    assert_eq!(s.audio_frames, 80);
    let a = packets(s.file.as_ref().unwrap(), "a");
    assert_eq!(a.first().map(|p| p.0), Some(1333), "{a:?}");
}

/// Audio stamped 200 ppm faster than its samples play (a source whose audio clock does not
/// match the stream's): the recording follows by resampling, smoothly, with no silence
/// inserted and nothing skipped; with matching clocks nothing is corrected, and a block lost
/// now and then is silence of its own length, the rest bit for bit.
#[test]
fn audio_clock_drift_is_resampled_not_padded() {
    // A pure 440 Hz sine: it moves at most 2765 a sample, so a dropped sample (a step of
    // about twice that) or inserted silence (up to 8000) would show.
    let sine = |n: u64| (8000.0 * (std::f64::consts::TAU * 440.0 * n as f64 / 8000.0).sin()) as i16;
    let blocks = 8000u64 * 180 / 40; // 3 minutes of 5 ms blocks (40 frames, 450 ticks)
    for ppm in [0.0f64, 200.0] {
        let dir = tmp(&format!("drift{ppm}"));
        let mut r = Recorder::create(dir.0.join("d")).unwrap();
        r.describe(&description(true)).unwrap();
        r.video(0, 32, 16, &jpeg(0)).unwrap();
        let mut want = Vec::new();
        for k in 0..blocks {
            let samples: Vec<i16> = (0..40).map(|j| sine(k * 40 + j)).collect();
            if ppm == 0.0 && k % 1000 == 500 {
                want.extend([0i16; 40]);
                continue; // a block lost now and then: a gap, filled, and no drift
            }
            want.extend_from_slice(&samples);
            let pts = (k as f64 * 450.0 * (1.0 + ppm * 1e-6)).round() as u64;
            r.audio(pts, 8000, 1, &samples, false).unwrap();
        }
        let s = r.finish().unwrap();
        let got = audio_samples(s.file.as_ref().unwrap());
        assert_eq!(got.len() as u64, s.audio_frames, "{s:?}");
        if ppm == 0.0 {
            let lost = blocks / 1000 * 40;
            assert_eq!(
                (s.audio_silence_frames, s.audio_skipped),
                (lost, 0),
                "{s:?}"
            );
            assert_eq!(s.audio_drift_corrections, 0, "{s:?}");
            assert_eq!(got.len() as u64, blocks * 40);
            assert!(got == want, "the samples are not written unchanged");
            continue;
        }
        assert_eq!((s.audio_silence_frames, s.audio_skipped), (0, 0), "{s:?}");
        assert!(s.audio_drift_corrections > 0, "{s:?}");
        // The file spans the timestamps (3 min + 200 ppm = 288 frames more than the samples
        // sent) to within 10 ms (80 frames).
        let span = (blocks * 40) as f64 * (1.0 + ppm * 1e-6);
        assert!(
            (got.len() as f64 - span).abs() <= 80.0,
            "{} frames for {span}",
            got.len()
        );
        // Smooth: no step beyond the sine's own (2765 a sample, plus the resampling
        // filter's few % of ripple); a dropped sample would step about 5500.
        let max_step = got
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap();
        eprintln!("{s:?} frames {} span {span} max_step {max_step}", got.len());
        assert!(max_step <= 3000, "step {max_step}");
    }
}
