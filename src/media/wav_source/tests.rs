//! Unit tests of WAV reading, downmixing and the real-time audio pump.

use super::*;

fn write_wav(path: &Path, spec: hound::WavSpec, frames: u32) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        for c in 0..spec.channels {
            let v = (i as i32 * 100 + i32::from(c)) % 30000;
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(v as f32 / 32768.0).unwrap(),
                (_, 16) => w.write_sample(v as i16).unwrap(),
                (_, 24) => w.write_sample(v << 8).unwrap(),
                (_, 32) => w.write_sample(v << 16).unwrap(),
                (_, 8) => w.write_sample((v >> 8) as i8).unwrap(),
                _ => unreachable!(),
            }
        }
    }
    w.finalize().unwrap();
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("framecast-wav-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn reads_every_sample_format_as_s16() {
    for (fmt, bits) in [
        (hound::SampleFormat::Int, 16),
        (hound::SampleFormat::Int, 24),
        (hound::SampleFormat::Int, 32),
        (hound::SampleFormat::Float, 32),
    ] {
        let path = tmp(&format!("fmt{bits}{fmt:?}.wav"));
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: bits,
            sample_format: fmt,
        };
        write_wav(&path, spec, 1000);
        let mut wav = WavAudio::open(&path).unwrap();
        assert_eq!((wav.sample_rate(), wav.channels()), (44_100, 2));
        assert_eq!(wav.total_frames(), Some(1000));
        let mut out = Vec::new();
        let mut total = 0;
        loop {
            let n = wav.read_frames(300, &mut out).unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 1000);
        assert_eq!(out.len(), 2000);
        // Frame 7, channel 1: 701.
        assert!(
            (i32::from(out[15]) - 701).abs() <= 1,
            "{bits} {fmt:?}: {}",
            out[15]
        );
        wav.rewind().unwrap();
        let mut again = Vec::new();
        assert_eq!(wav.read_frames(10, &mut again).unwrap(), 10);
        assert_eq!(again[..], out[..20]);
    }
}

#[test]
fn six_channels_are_downmixed_to_stereo() {
    let path = tmp("six.wav");
    let spec = hound::WavSpec {
        channels: 6,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_wav(&path, spec, 10);
    let mut wav = WavAudio::open(&path).unwrap();
    assert_eq!(wav.channels(), 2);
    let mut out = Vec::new();
    assert_eq!(wav.read_frames(10, &mut out).unwrap(), 10);
    assert_eq!(out.len(), 20);
    // Full-scale input on every channel never clips.
    let mut loud = Vec::new();
    downmix_to_stereo(&[i16::MAX; 12], 6, &mut loud);
    assert!(loud.iter().all(|&s| s > 30_000), "{loud:?}");
}

#[test]
fn bad_files_are_clear_errors() {
    let missing = WavAudio::open(Path::new("/nonexistent/a.wav")).unwrap_err();
    assert!(matches!(missing, WavError::NotFound { .. }));
    assert_eq!(missing.to_string(), "/nonexistent/a.wav: no such file");
    let junk = tmp("junk.wav");
    std::fs::write(&junk, b"this is not a wav file at all").unwrap();
    let err = WavAudio::open(&junk).unwrap_err();
    assert!(matches!(err, WavError::Read { .. }), "{err}");
    assert!(err.to_string().contains("not a readable WAV"), "{err}");
    let slow = tmp("slow.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 4_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_wav(&slow, spec, 10);
    let err = WavAudio::open(&slow).unwrap_err();
    assert!(err.to_string().contains("4000 Hz"), "{err}");
}

#[cfg(feature = "jpeg")]
#[test]
fn pump_paces_loops_and_pads() {
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    use crate::media::source::MediaItem;
    let path = tmp("pump.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_wav(&path, spec, 100); // 12.5 ms
    let halt = AtomicBool::new(false);

    // Once: 100 frames in blocks of 40 -> 3 blocks, the last padded.
    let mut wav = WavAudio::open(&path).unwrap();
    let (tx, rx) = item_channel();
    let start = Instant::now();
    let n = run_audio_pump(&mut wav, 40, AudioLoop::Once, start, &tx, &halt);
    drop(tx);
    let items: Vec<_> = rx.iter().collect();
    assert_eq!(n, 3);
    let pts: Vec<u64> = items
        .iter()
        .map(|i| match i {
            MediaItem::Audio { pts, samples } => {
                assert_eq!(samples.len(), 40);
                *pts
            }
            MediaItem::Video { .. } => panic!("video from the audio pump"),
        })
        .collect();
    assert_eq!(pts, vec![0, 450, 900]); // 40 frames at 8 kHz = 5 ms = 450 ticks
    assert!(start.elapsed() >= Duration::from_millis(10));
    if let MediaItem::Audio { samples, .. } = &items[2] {
        assert_eq!(samples[20..], [0; 20]);
    }

    // Period of 150 frames: 100 of the file then 50 of silence, then the file again.
    let mut wav = WavAudio::open(&path).unwrap();
    let (tx, rx) = item_channel();
    let pump = std::thread::spawn(move || {
        let halt = AtomicBool::new(false);
        let mode = AudioLoop::Period { frames: 150 };
        run_audio_pump(&mut wav, 50, mode, Instant::now(), &tx, &halt)
    });
    let blocks: Vec<Vec<i16>> = rx
        .iter()
        .take(6)
        .map(|i| match i {
            MediaItem::Audio { samples, .. } => samples,
            MediaItem::Video { .. } => Vec::new(),
        })
        .collect();
    drop(rx); // the pump ends when its channel is gone
    assert!(pump.join().unwrap() >= 6);
    assert_eq!(blocks[2], vec![0; 50]);
    assert_eq!(blocks[3], blocks[0]);
    assert_ne!(blocks[0], vec![0; 50]);
}
