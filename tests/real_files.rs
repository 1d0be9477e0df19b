//! Files shaped like the ones people report trouble with (issue 9), each made here with
//! ffmpeg, streamed from `serve --source file:` through a relay to a recording player on
//! loopback, and judged by what arrives:
//!
//! - display rotation (`rotate=90` / `270`): the recording's pictures against ffmpeg's own
//!   decode of the rotated file (size, PSNR, and which corner the red box is in);
//! - a track start offset (audio 1 s after the video): the recorded tone starts 1 s after
//!   the first frame, within one audio block;
//! - a browser-style variable-rate WebM without frame durations: every source frame in the
//!   recording, each at its own time;
//! - sound from AAC in MKV, Vorbis in MKV, Opus in WebM, PCM in AVI and 5.1 AAC in MP4: the
//!   440 Hz tone on both channels of the stream, starting with the video;
//! - every run ends with the file: serve returns, and play stops on the end of stream.
#![cfg(all(feature = "jpeg", feature = "ffmpeg"))]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use framecast::app::play::{Play, PlayArgs, PlayEnd, PlayReport};
use framecast::app::relay::{RelayArgs, RelayRole};
use framecast::app::serve::{Serve, ServeArgs, ServeReport};
use framecast::media::file_source::FileAudio;

/// A fresh directory for one test, removed when dropped.
fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("framecast-real-{name}-"))
        .tempdir()
        .expect("a temporary directory")
}

/// Runs ffmpeg (quiet, overwriting) with `args`.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Streams `file` from serve through a relay (pulling from serve) to a recording player,
/// until the file ends; returns what was sent and what was played.
fn stream(file: &Path, rec: &Path) -> (ServeReport, PlayReport) {
    let lo = "127.0.0.1:0".parse().unwrap();
    let mut a = ServeArgs::new(lo);
    a.source = format!("file:{}", file.display());
    // Time for the relay to get the stream from serve and for play, rejected until then, to
    // retry (every 200 ms) before the first frame: the test counts every frame.
    a.start_delay_ms = 1000;
    a.name = "f".into();
    let mut serve = Serve::bind(a).unwrap();
    serve.status = false;
    let mut r = RelayArgs::new(lo);
    r.upstream = Some(serve.local_addr());
    r.duration = Some(60.0); // a bound; stopped below
    let mut relay = RelayRole::bind(r).unwrap();
    relay.status = false;
    let mut p = PlayArgs::new(relay.local_addr(), "f");
    p.duration = Some(30.0); // a bound: the end of stream stops it
    p.record = Some(rec.to_path_buf());
    let mut play = Play::bind(p).unwrap();
    play.status = false;
    let stop_relay = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let relay_t = sc.spawn(|| relay.run(&stop_relay).unwrap());
        let play_t = sc.spawn(|| play.run(&AtomicBool::new(false)).unwrap());
        let sent = serve.run(&AtomicBool::new(false)).unwrap();
        let played = play_t.join().unwrap();
        stop_relay.store(true, Ordering::Relaxed);
        relay_t.join().unwrap();
        assert_eq!(
            played.end,
            PlayEnd::StreamEnded,
            "play stops on the end of stream"
        );
        (sent, played)
    })
}

/// The first video frame of `path` as ffmpeg decodes (and turns) it: (width, height, RGB).
fn first_frame(path: &Path) -> (usize, usize, Vec<u8>) {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height:stream_side_data=rotation",
        ])
        .args(["-of", "default=nw=1", s(path)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    let field = |k: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as i64)
    };
    let (mut w, mut h) = (field("width=") as usize, field("height=") as usize);
    if field("rotation=").rem_euclid(180) == 90 {
        std::mem::swap(&mut w, &mut h);
    }
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", s(path), "-frames:v", "1"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert_eq!(out.stdout.len(), w * h * 3, "{}: {text}", path.display());
    (w, h, out.stdout)
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
}

/// Which corner (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) holds the
/// 120-pixel red box: the one whose centre is reddest.
fn red_corner(w: usize, h: usize, rgb: &[u8]) -> usize {
    let at = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        i32::from(rgb[i]) - i32::from(rgb[i + 1]) / 2 - i32::from(rgb[i + 2]) / 2
    };
    let c = [(60, 60), (w - 60, 60), (60, h - 60), (w - 60, h - 60)];
    (0..4).max_by_key(|&i| at(c[i].0, c[i].1)).unwrap()
}

#[test]
fn rotated_phone_videos_stream_as_ffplay_shows_them() {
    let dir = tmp("rotation");
    let src = dir.path().join("src.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=640x360:r=10:d=1,drawbox=x=0:y=0:w=120:h=120:color=red:t=fill",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        s(&src),
    ]);
    for deg in ["90", "270"] {
        let rotated = dir.path().join(format!("rotate{deg}.mp4"));
        let tag = format!("rotate={deg}");
        ffmpeg(&[
            "-i",
            s(&src),
            "-c",
            "copy",
            "-metadata:s:v:0",
            &tag,
            s(&rotated),
        ]);
        let rec = dir.path().join(format!("rec{deg}"));
        let (sent, played) = stream(&rotated, &rec);
        assert_eq!(sent.source.frames, 10);
        assert_eq!(played.record.as_ref().unwrap().video_frames, 10);
        let (w, h, want) = first_frame(&rotated);
        assert_eq!((w, h), (360, 640), "rotate={deg}: ffmpeg shows it upright");
        let (rw, rh, got) = first_frame(&rec.with_extension("mkv"));
        assert_eq!((rw, rh), (w, h), "rotate={deg}");
        let q = psnr(&want, &got);
        assert!(
            q >= 30.0,
            "rotate={deg}: PSNR {q:.1} dB against ffmpeg's decode"
        );
        let corner = red_corner(w, h, &want);
        assert_eq!(red_corner(w, h, &got), corner, "rotate={deg}");
        assert_ne!(corner, 0, "the box moved out of the top-left corner");
    }
}

/// Left-channel samples of `path`'s audio as framecast's file reader decodes it (track
/// offsets become leading silence), and the stream's channel count.
fn audio_of(path: &Path) -> (Vec<i16>, u8) {
    let (format, samples) = FileAudio::decode_all(path)
        .unwrap()
        .unwrap_or_else(|| panic!("{}: no audio", path.display()));
    assert_eq!(format.sample_rate, 48_000);
    (samples, format.channels)
}

/// Index of the first sample frame louder than -40 dBFS.
fn first_sound(samples: &[i16], channels: usize) -> usize {
    samples
        .chunks(channels)
        .position(|f| f.iter().any(|&x| x.unsigned_abs() > 328))
        .expect("some sound")
}

#[test]
fn a_late_audio_track_keeps_its_offset() {
    let dir = tmp("offset");
    let file = dir.path().join("audio_starts_1s.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x240:r=30:d=3",
        "-itsoffset",
        "1",
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:r=48000:d=2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-ac",
        "2",
        s(&file),
    ]);
    let rec = dir.path().join("rec");
    let (_, played) = stream(&file, &rec);
    let r = played.record.unwrap();
    assert_eq!(r.video_frames, 90, "{r:?}");
    // The recording starts at the first frame; the tone 1 s later, within one audio block
    // (5 ms at 48 kHz) and the AAC encoder's own ramp.
    let (samples, ch) = audio_of(&rec.with_extension("mkv"));
    let start = first_sound(&samples, usize::from(ch)) as f64 / 48_000.0;
    assert!(
        (start - 1.0).abs() <= 0.010,
        "the tone starts at {start:.4} s"
    );
}

#[test]
fn a_variable_rate_webm_without_durations_records_every_frame_at_its_time() {
    let dir = tmp("vfr");
    let webm = dir.path().join("live.webm");
    // A browser's MediaRecorder: 10 frames 250 ms apart, then 30 fps; live WebM.
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", "testsrc2=s=320x240:r=30:d=4"])
        .args(["-vf", "setpts='if(lt(N,10),N*0.25,2.5+(N-10)/30)/TB'"])
        .args([
            "-fps_mode",
            "passthrough",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
        ])
        .args([
            "-cpu-used",
            "8",
            "-b:v",
            "1M",
            "-live",
            "1",
            "-f",
            "webm",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut bytes = out.stdout;
    // Blank the track's DefaultDuration (ID 0x23E383) with a Void element of its length.
    let at = bytes
        .windows(3)
        .position(|w| w == [0x23, 0xE3, 0x83])
        .expect("a DefaultDuration element");
    let len = 4 + usize::from(bytes[at + 3] & 0x7F); // ID (3) + size (1) + data
    bytes[at] = 0xEC;
    bytes[at + 1] = 0x80 | (len - 2) as u8;
    bytes[at + 2..at + len].fill(0);
    std::fs::write(&webm, &bytes).unwrap();

    // Frame times (ms) as ffplay takes them: the decoder's best-effort timestamps (a live
    // WebM's packets repeat some timestamps).
    let times = |path: &Path| -> Vec<i64> {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "frame=best_effort_timestamp",
                "-of",
                "csv=p=0",
                s(path),
            ])
            .output()
            .unwrap();
        let mut t: Vec<i64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        t.sort();
        let first = t[0];
        t.iter().map(|x| x - first).collect()
    };
    let source = times(&webm);
    assert_eq!(source.len(), 120);
    let rec = dir.path().join("rec");
    let (sent, played) = stream(&webm, &rec);
    assert_eq!(sent.source.frames, 120);
    let r = played.record.unwrap();
    assert_eq!((r.video_frames, r.video_skipped), (120, 0), "{r:?}");
    let mkv = rec.with_extension("mkv");
    // Both in ms: every frame at its own time, none repeated. A frame whose timestamp
    // repeats the previous one's (this encoder writes a few) comes one frame interval
    // (1/30 s, the rate the container states) after it, so no frame is lost.
    let got = times(&mkv);
    assert_eq!(got.len(), source.len());
    let mut want = Vec::new();
    for &t in &source {
        match want.last() {
            Some(&prev) if t <= prev => want.push(prev + 33),
            _ => want.push(t),
        }
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1,
            "frame {i}: {g} ms, want {w} ms\n{got:?}\n{source:?}"
        );
    }
    let size = std::fs::metadata(&mkv).unwrap().len();
    assert!(size < 10 << 20, "{size} bytes");
}

/// The time of the first frame of stream `which` of `path` as ffmpeg decodes it (s).
fn first_frame_time(path: &Path, which: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            which,
            "-read_intervals",
            "%+1",
        ])
        .args([
            "-show_entries",
            "frame=best_effort_timestamp_time",
            "-of",
            "csv=p=0",
            s(path),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // (h264 frames end their line with a comma for their side data.)
    let first = text.lines().next().unwrap_or_default();
    first.trim().trim_end_matches(',').parse().unwrap()
}

/// The audio of `path` as ffmpeg decodes it to stereo s16.
fn stereo_decode(path: &Path) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", s(path), "-map", "0:a:0"])
        .args(["-f", "s16le", "-ac", "2", "-"])
        .output()
        .unwrap();
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// How long after the first video frame the tone starts in `path`, all by ffmpeg alone.
fn tone_after_video(path: &Path) -> f64 {
    let samples = stereo_decode(path);
    let audio = first_frame_time(path, "a:0") + first_sound(&samples, 2) as f64 / 48_000.0;
    audio - first_frame_time(path, "v:0")
}

/// The 440 Hz tone: zero crossings of channel `c` over its first second of sound, and
/// that channel's RMS there.
fn tone(samples: &[i16], channels: usize, c: usize) -> (usize, f64) {
    let start = first_sound(samples, channels);
    let ch: Vec<f64> = samples
        .chunks(channels)
        .skip(start)
        .take(48_000)
        .map(|f| f64::from(f[c]))
        .collect();
    assert_eq!(ch.len(), 48_000);
    let crossings = ch
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    let rms = (ch.iter().map(|x| x * x).sum::<f64>() / ch.len() as f64).sqrt();
    (crossings, rms)
}

#[test]
fn sound_plays_from_every_container_and_layout() {
    let dir = tmp("sound");
    let kinds: [(&str, &[&str]); 5] = [
        ("aac.mkv", &["-c:v", "libx264", "-c:a", "aac", "-ac", "2"]),
        (
            "vorbis.mkv",
            &["-c:v", "libx264", "-c:a", "libvorbis", "-ac", "2"],
        ),
        (
            "opus.webm",
            &[
                "-c:v",
                "libvpx",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-c:a",
                "libopus",
                "-ac",
                "2",
            ],
        ),
        (
            "pcm.avi",
            &["-c:v", "mjpeg", "-c:a", "pcm_s16le", "-ac", "2"],
        ),
        (
            "aac51.mp4",
            &[
                "-c:v",
                "libx264",
                "-c:a",
                "aac",
                "-ac",
                "6",
                "-channel_layout",
                "5.1",
            ],
        ),
    ];
    for (i, (name, codecs)) in kinds.into_iter().enumerate() {
        let file = dir.path().join(name);
        let mut args = vec![
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=30:d=1.5",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:r=48000:d=1.5",
            "-pix_fmt",
            "yuv420p",
        ];
        args.extend_from_slice(codecs);
        args.push(s(&file));
        ffmpeg(&args);
        let rec = dir.path().join(format!("rec{i}"));
        let (sent, played) = stream(&file, &rec);
        assert!(sent.source.audio_blocks > 250, "{name}: {:?}", sent.source);
        assert_eq!(played.client.audio_concealed, 0, "{name}");
        let r = played.record.unwrap();
        assert_eq!(r.video_frames, 45, "{name}: {r:?}");
        // What arrived: the tone, on both channels of the stereo stream, as loud as in
        // ffmpeg's own stereo decode of the file (a 5.1 track's centre channel, where
        // ffmpeg put the mono tone, goes to both sides at ffmpeg's downmix level).
        let (samples, ch) = audio_of(&rec.with_extension("mkv"));
        assert_eq!(ch, 2, "{name}");
        // In sync: the tone starts as far from the first frame as in the source (as ffmpeg
        // decodes both; the encoders shift each track by a few ms), within one 5 ms block.
        let want = tone_after_video(&file);
        let got = tone_after_video(&rec.with_extension("mkv"));
        assert!(
            (got - want).abs() <= 0.006,
            "{name}: the tone starts {got:.4} s after the first frame, in the source {want:.4} s"
        );
        let reference = stereo_decode(&file);
        for c in 0..2 {
            let (crossings, rms) = tone(&samples, 2, c);
            assert!(
                (860..=900).contains(&crossings),
                "{name} channel {c}: {crossings} zero crossings in 1 s"
            );
            let (_, want) = tone(&reference, 2, c);
            assert!(want > 500.0, "{name}: the reference is silent");
            assert!(
                (rms / want - 1.0).abs() < 0.05,
                "{name} channel {c}: RMS {rms:.0}, ffmpeg's {want:.0}"
            );
        }
    }
}
