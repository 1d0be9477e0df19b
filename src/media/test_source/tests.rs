//! Unit tests of the synthetic sources: spec parsing and bounds, the test card's determinism
//! and timing, and the tone's beeps and block independence.

use std::time::Duration;

use super::*;
use crate::media::VideoFrameRgb;

#[test]
fn pattern_is_deterministic_and_sized() {
    let mut a = TestPattern::new(320, 240, 30, 1).unwrap();
    let mut b = TestPattern::new(320, 240, 30, 1).unwrap();
    for i in [0, 1, 29, 30, 1_000_000, u64::MAX] {
        let fa = a.frame(i);
        assert_eq!(fa.validate(), Ok(()));
        assert_eq!((fa.width, fa.height), (320, 240));
        assert!(fa == b.frame(i), "frame {i} differs between instances");
        assert!(fa == a.frame(i), "frame {i} differs on a second call");
    }
    assert!(a.frame(1) != a.frame(2), "the pattern must move");
}

#[test]
fn pattern_odd_and_tiny_sizes_do_not_panic() {
    for (w, h) in [
        (1, 1),
        (2, 1),
        (1, 7),
        (3, 5),
        (17, 9),
        (641, 361),
        (8, 4000),
    ] {
        let mut p = TestPattern::new(w, h, 25, 1).unwrap();
        for i in [0, 7, 12345] {
            let f = p.frame(i);
            assert_eq!(f.validate(), Ok(()), "{w}x{h}");
        }
    }
}

#[test]
fn pattern_shows_counter_and_sync_square() {
    let mut p = TestPattern::new(1280, 720, 30, 1).unwrap();
    // The counter plate differs between consecutive frames (digits change).
    let (a, b) = (p.frame(10), p.frame(11));
    let s = 10; // 720 / 72
    let plate = |f: &VideoFrameRgb| {
        (0..9 * s * 2)
            .flat_map(|y| (0..80 * s).map(move |x| (x, y)))
            .map(|(x, y)| f.pixel(x, y).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(plate(&a) != plate(&b));
    // Sync square: frame 0 and 30 white, 1 and 29 dark.
    let probe = |f: &VideoFrameRgb| f.pixel(1280 - 2 * s - 4 * s, 2 * s + 4 * s).unwrap();
    assert_eq!(probe(&p.frame(0)), [255; 3]);
    assert_eq!(probe(&p.frame(30)), [255; 3]);
    assert_eq!(probe(&p.frame(1)), [0; 3]);
    assert_eq!(probe(&p.frame(29)), [0; 3]);
}

#[test]
fn exactly_one_sync_frame_per_second() {
    for (num, den) in [(30, 1), (30000, 1001), (25, 1), (1, 1), (7, 3), (1000, 1)] {
        let p = TestPattern::new(16, 16, num, den).unwrap();
        // Frames that end by 20 s; they cover more than [0, 19 s], so seconds 0..=19.
        let frames = 20 * u64::from(num) / u64::from(den);
        let marked: Vec<u64> = (0..frames).filter(|&i| p.is_sync_frame(i)).collect();
        assert_eq!(marked.len(), 20, "{num}/{den}: {marked:?}");
        for &i in &marked {
            // The frame's interval [t0, t1) holds a whole second.
            let (t0, t1) = (p.frame_time(i), p.frame_time(i + 1));
            let k = t0.as_secs() + u64::from(t0.subsec_nanos() > 0);
            assert!(Duration::from_secs(k) < t1, "{num}/{den} frame {i}");
        }
    }
    // Below 1 fps every frame holds a whole second.
    let slow = TestPattern::new(16, 16, 1, 2).unwrap();
    assert!((0..10).all(|i| slow.is_sync_frame(i)));
}

#[test]
fn pattern_rejects_bad_geometry() {
    assert!(matches!(
        TestPattern::new(0, 720, 30, 1),
        Err(TestSourceError::DimensionsOutOfRange { .. })
    ));
    assert!(TestPattern::new(8193, 10, 30, 1).is_err());
    assert!(matches!(
        TestPattern::new(10, 10, 0, 1),
        Err(TestSourceError::FrameRateOutOfRange { .. })
    ));
    assert!(TestPattern::new(10, 10, 30, 0).is_err());
    assert!(TestPattern::new(10, 10, 1001, 1).is_err());
}

#[test]
fn tone_is_deterministic_and_continuous_across_blocks() {
    let mut whole = ToneSource::new(48_000, 2, 440).unwrap();
    let all = whole.next_block(48_000 + 1000);
    let mut pieces = ToneSource::new(48_000, 2, 440).unwrap();
    let mut joined = Vec::new();
    for n in [1, 7, 480, 1023, 96, 30_000, 17_393] {
        joined.extend(pieces.next_block(n));
    }
    assert_eq!(joined.len(), all.len());
    assert!(joined == all, "block size changed the signal");
    assert_eq!(pieces.position(), 49_000);
    // Interleaved: both channels equal.
    assert!(all.chunks_exact(2).all(|f| f[0] == f[1]));
    // Outside the beep the step between samples is bounded by the sine's slope
    // (2*pi*440/48000 * 8231 ≈ 474), i.e. no discontinuity anywhere, block joins included.
    let mono: Vec<i16> = all.iter().step_by(2).copied().collect();
    let beep = |n: usize| whole.is_beep(n as u64) || whole.is_beep(n as u64 + 1);
    for n in 0..mono.len() - 1 {
        if !beep(n) {
            let d = (i32::from(mono[n + 1]) - i32::from(mono[n])).abs();
            assert!(d <= 480, "jump of {d} at frame {n}");
        }
    }
    // Level: peak of the plain tone is -12 dBFS.
    let peak = mono[10_000..20_000]
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap();
    assert!((8200..=8232).contains(&peak), "peak {peak}");
    // The beep is louder than the tone.
    let beep_peak = mono[1000..2000]
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap();
    assert!(beep_peak > 15_000, "beep peak {beep_peak}");
    assert!(whole.is_beep(48_000) && !whole.is_beep(48_000 + 2400));
}

#[test]
fn tone_is_exact_far_from_zero() {
    let t = ToneSource::new(44_100, 1, 441).unwrap();
    // 441 Hz at 44.1 kHz repeats every 100 frames, also after many hours.
    let far = 44_100 * 3_600_000 + 30_700;
    for k in 0..100 {
        assert_eq!(t.sample_at(30_000 + k), t.sample_at(far + k));
    }
    assert_eq!(t.sample_at(u64::MAX), t.sample_at(u64::MAX)); // no overflow
}

#[test]
fn tone_rejects_bad_config() {
    assert!(matches!(
        ToneSource::new(0, 2, 440),
        Err(TestSourceError::SampleRateOutOfRange { .. })
    ));
    assert!(matches!(
        ToneSource::new(48_000, 0, 440),
        Err(TestSourceError::ChannelsOutOfRange { .. })
    ));
    assert!(matches!(
        ToneSource::new(48_000, 1, 24_000),
        Err(TestSourceError::FrequencyOutOfRange { .. })
    ));
    let mut t = ToneSource::new(8000, 3, 440).unwrap();
    assert_eq!(t.next_block(usize::MAX).len(), MAX_TONE_BLOCK_FRAMES * 3);
    let mut odd = [0i16; 7];
    assert_eq!(t.fill(&mut odd), 2);
}

#[test]
fn spec_parsing() {
    let ok = |s: &str| parse_test_spec(s).unwrap();
    assert_eq!(ok("test"), TestSpec::default());
    assert_eq!(ok(" test:1280x720@30 "), TestSpec::default());
    assert_eq!(
        ok("test:640X480"),
        TestSpec {
            width: 640,
            height: 480,
            fps_num: 30,
            fps_den: 1
        }
    );
    let ntsc = ok("test:1920x1080@29.97");
    assert_eq!((ntsc.fps_num, ntsc.fps_den), (2997, 100));
    let ntsc = ok("test:1920x1080@30000/1001");
    assert_eq!((ntsc.fps_num, ntsc.fps_den), (30000, 1001));
    assert_eq!(ok("test:8x8@60/2").fps_num, 30);
    assert_eq!(ok("test:8x8@.5").fps_den, 2);
    assert!(ok("test:1280x720@30").frame_interval() > Duration::from_millis(33));
}

#[test]
fn spec_parsing_errors() {
    let err = |s: &str| parse_test_spec(s).unwrap_err();
    assert!(matches!(err("webcam"), TestSourceError::NotTestSpec { .. }));
    assert!(matches!(
        err("testing"),
        TestSourceError::NotTestSpec { .. }
    ));
    assert!(matches!(err("test:"), TestSourceError::BadSize { .. }));
    assert!(matches!(err("test:1280"), TestSourceError::BadSize { .. }));
    assert!(matches!(err("test:1280x"), TestSourceError::BadSize { .. }));
    assert!(matches!(
        err("test:-1x720"),
        TestSourceError::BadSize { .. }
    ));
    assert!(matches!(
        err("test:99999999999x720"),
        TestSourceError::BadSize { .. }
    ));
    assert!(matches!(
        err("test:1280x720@"),
        TestSourceError::BadFrameRate { .. }
    ));
    assert!(matches!(
        err("test:1280x720@abc"),
        TestSourceError::BadFrameRate { .. }
    ));
    assert!(matches!(
        err("test:1280x720@30/"),
        TestSourceError::BadFrameRate { .. }
    ));
    assert!(matches!(
        err("test:1280x720@1.2345678"),
        TestSourceError::BadFrameRate { .. }
    ));
    assert!(matches!(
        err("test:0x720@30"),
        TestSourceError::DimensionsOutOfRange { .. }
    ));
    assert!(matches!(
        err("test:10000x720@30"),
        TestSourceError::DimensionsOutOfRange { .. }
    ));
    assert!(matches!(
        err("test:1280x720@0"),
        TestSourceError::FrameRateOutOfRange { .. }
    ));
    assert!(matches!(
        err("test:1280x720@30/0"),
        TestSourceError::FrameRateOutOfRange { .. }
    ));
    // Messages name the offending input.
    assert!(err("test:1280x720@abc").to_string().contains("\"abc\""));
    assert!(err("test:0x720").to_string().contains("0x720"));
}
