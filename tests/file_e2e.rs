//! A real clip (tests/data/clip.mp4: 3 s of 320x240 H.264 + 48 kHz stereo AAC) streamed from
//! a file through a relay to a recording player on loopback: every frame arrives byte-exact,
//! the pictures match FFmpeg's own decode of the file (PSNR), the audio equals FFmpeg's
//! decode sample for sample, audio and video stay within a frame interval of each other,
//! the stream ends with the file (serve, then play, return on their own), and the Matroska
//! recording reads back with every frame and the same audio.
#![cfg(all(feature = "jpeg", feature = "ffmpeg"))]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use framecast::app::play::{Play, PlayArgs, PlayEnd};
use framecast::app::relay::{RelayArgs, RelayRole};
use framecast::app::serve::{Serve, ServeArgs};
use framecast::media::file_source::FileAudio;
use framecast::media::{VideoFrameRgb, psnr};

fn clip() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/clip.mp4")
}

/// Every frame of a 320x240 video as RGB, decoded by the ffmpeg command-line tool.
fn frames_of(path: &std::path::Path) -> Vec<VideoFrameRgb> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args([
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg cannot decode {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let size = 320 * 240 * 3;
    assert_eq!(out.stdout.len() % size, 0, "{}", path.display());
    out.stdout
        .chunks_exact(size)
        .map(|c| VideoFrameRgb {
            width: 320,
            height: 240,
            data: c.to_vec(),
        })
        .collect()
}

#[test]
fn a_file_streams_through_a_relay_intact_and_in_sync() {
    let dir = std::env::temp_dir().join(format!("framecast-file-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lo = "127.0.0.1:0".parse().unwrap();

    let mut s = ServeArgs::new(lo);
    s.source = format!("file:{}", clip().display());
    s.quality = 90;
    s.start_delay_ms = 300;
    s.name = "clip".into();
    let mut serve = Serve::bind(s).unwrap();
    serve.record_checksums = true;
    serve.status = false;

    let mut r = RelayArgs::new(lo);
    r.upstream = Some(serve.local_addr());
    r.duration = Some(4.6);
    let mut relay = RelayRole::bind(r).unwrap();
    relay.status = false;

    let mut p = PlayArgs::new(relay.local_addr(), "clip");
    p.duration = Some(20.0); // a bound: the stream's end stops it
    p.no_audio = false; // timed by the clock sink here (no sound card), so A/V sync runs
    p.record = Some(dir.join("rec"));
    let mut play = Play::bind(p).unwrap();
    play.record_checksums = true;
    play.status = false;

    let (sent, played) = std::thread::scope(|sc| {
        let relay_t = sc.spawn(|| relay.run(&AtomicBool::new(false)).unwrap());
        let play_t = sc.spawn(|| play.run(&AtomicBool::new(false)).unwrap());
        let sent = serve.run(&AtomicBool::new(false)).unwrap();
        relay_t.join().unwrap();
        (sent, play_t.join().unwrap())
    });

    // Every frame of the file, byte-identical, in order.
    assert_eq!(sent.frame_crcs.len(), 90, "the clip has 90 frames");
    assert_eq!(played.frame_crcs, sent.frame_crcs);

    // The audio equals FFmpeg's decode of the file, sample for sample.
    let (format, reference) = FileAudio::decode_all(&clip())
        .unwrap()
        .expect("the clip has audio");
    assert_eq!((format.sample_rate, format.channels), (48_000, 2));
    // (What was played is what was sent, and the recording below is compared sample by
    // sample with the reference.)
    assert_eq!(played.audio_crc, sent.audio_crc);
    assert_eq!(played.client.audio_concealed, 0);

    // Audio is the master clock: every shown frame within one frame interval of it.
    let av = &played.av;
    assert!(av.frames_shown >= 85, "{av:?}");
    assert!(av.av_offset_max_ms.abs() < 1000.0 / 30.0, "{av:?}");

    // The file's end ended the stream: play stopped on it, not on its --duration.
    assert_eq!(played.end, PlayEnd::StreamEnded);

    // The recording: the 90 received JPEGs, 1/30 s apart, and the same audio.
    let rec = played.record.clone().expect("recording summary");
    assert_eq!(rec.video_frames, 90, "{rec:?}");
    assert!((rec.last_frame_s - 89.0 / 30.0).abs() < 0.002, "{rec:?}");
    let mkv = rec.file.clone().unwrap();
    let (rformat, recorded) = FileAudio::decode_all(&mkv)
        .unwrap()
        .expect("recorded audio");
    assert_eq!((rformat.sample_rate, rformat.channels), (48_000, 2));
    assert!(
        recorded.len() >= reference.len(),
        "{} < {}",
        recorded.len(),
        reference.len()
    );
    if recorded[..reference.len()] != reference[..] {
        let first = recorded
            .iter()
            .zip(&reference)
            .position(|(a, b)| a != b)
            .unwrap();
        panic!(
            "recorded audio differs from sample {first}: {:?} vs {:?} (len {} vs {})",
            &recorded[first..first + 8],
            &reference[first..first + 8],
            recorded.len(),
            reference.len()
        );
    }
    // The last block is filled up with silence: at most one 5 ms block of it.
    let tail = &recorded[reference.len()..];
    assert!(
        tail.len() < 2 * 240 && tail.iter().all(|&s| s == 0),
        "tail of {} samples",
        tail.len()
    );

    // Pictures: the recorded frames against FFmpeg's own decode of the file.
    let original = frames_of(&clip());
    let received = frames_of(&mkv);
    assert_eq!(original.len(), 90);
    assert_eq!(received.len(), 90);
    let mut worst = f64::INFINITY;
    for (a, b) in original.iter().zip(&received) {
        worst = worst.min(psnr(a, b).unwrap());
    }
    assert!(worst >= 30.0, "worst PSNR {worst:.1} dB");
    std::fs::remove_dir_all(&dir).ok();
}
