//! Unit tests of [`AvSync`](super::AvSync).

use super::*;
use crate::media::{AudioSink, ClockSink};

const MS: Duration = Duration::from_millis(1);

fn block(pts: u64, samples: &[i16]) -> AudioBlock<'_> {
    AudioBlock {
        pts,
        sample_rate: 48_000,
        channels: 1,
        samples,
    }
}

fn reading(played: u64) -> AudioReading {
    AudioReading {
        played_frames: played,
        latency: Duration::ZERO,
    }
}

#[test]
fn first_block_is_primed_and_clock_maps_pts() {
    let t0 = Instant::now();
    let mut s = AvSync::new(AvSyncConfig::default());
    assert_eq!(s.audio_clock(reading(0)), None);
    let samples: Vec<i16> = (1..=960).collect(); // 20 ms at 48 kHz
    let mut got = Vec::new();
    let pushed = s.push_audio(t0, block(90_000, &samples), reading(0), |x| {
        got.extend_from_slice(x);
        x.len()
    });
    // 40 ms of silence (1920 frames), then the block untouched.
    assert_eq!(pushed, 1920 + 960);
    assert_eq!(got.len(), 2880);
    assert!(got[..1920].iter().all(|&x| x == 0));
    assert_eq!(&got[1920..], &samples[..]);
    // The silence maps to the 40 ms before the block (3600 ticks).
    assert_eq!(s.audio_clock(reading(0)), Some(90_000 - 3600));
    assert_eq!(s.audio_clock(reading(960)), Some(90_000 - 1800));
    assert_eq!(s.audio_clock(reading(1920)), Some(90_000));
    assert_eq!(s.audio_clock(reading(1920 + 480)), Some(90_000 + 900));
    // Drained: the clock stops at the end of what was pushed.
    assert_eq!(s.audio_clock(reading(10_000)), Some(90_000 + 1800));
    // Device latency moves the clock back.
    let r = AudioReading {
        played_frames: 2400,
        latency: 10 * MS,
    };
    assert_eq!(s.audio_clock(r), Some(90_000 + 900 - 900));
    let st = s.stats();
    assert_eq!((st.audio_primes, st.audio_prime_frames), (1, 1920));
    assert_eq!(st.drift_corrections, 0);
}

#[test]
fn a_long_queue_drops_frames_and_a_short_one_repeats() {
    let t0 = Instant::now();
    let cfg = AvSyncConfig {
        smoothing_shift: 0, // no smoothing: the measurement is the estimate
        ..AvSyncConfig::default()
    };
    let mut s = AvSync::new(cfg);
    let b: Vec<i16> = (0..1000).collect();
    let sink = |x: &[i16]| x.len();
    // Prime: 1920 + 1000 frames pushed.
    s.push_audio(t0, block(0, &b), reading(0), sink);
    assert_eq!(s.pushed_frames(), 2920);
    // Queue of 2920 frames = 60.8 ms, 20.8 ms over: 20.8 / 2000 = 1.04 % → capped at
    // 0.5 % of 1000 = 5 frames dropped, at 100, 300, 500, 700, 900.
    let mut got = Vec::new();
    let pts = 1000 * 90_000 / 48_000;
    s.push_audio(t0 + 20 * MS, block(pts, &b), reading(0), |x| {
        got.extend_from_slice(x);
        x.len()
    });
    assert_eq!(got.len(), 995);
    for dropped in [100, 300, 500, 700, 900] {
        assert!(!got.contains(&dropped), "{dropped} dropped");
    }
    assert_eq!(got[99..102], [99, 101, 102]);
    // The block's 1000 frames of media now span 995 sink frames.
    assert_eq!(s.audio_clock(reading(2920)), Some(pts as i128));
    assert_eq!(s.audio_clock(reading(2920 + 995)), Some(pts as i128 + 1875));
    let st = s.stats();
    assert_eq!((st.drift_corrections, st.audio_frames_dropped), (1, 5));

    // Queue of 1000 frames (20.8 ms, 19.2 ms short): 0.5 % → 5 frames repeated.
    got.clear();
    let played = s.pushed_frames() - 1000;
    s.push_audio(t0 + 40 * MS, block(2 * pts, &b), reading(played), |x| {
        got.extend_from_slice(x);
        x.len()
    });
    assert_eq!(got.len(), 1005);
    assert_eq!(got[99..103], [99, 100, 100, 101]);
    let st = s.stats();
    assert_eq!((st.drift_corrections, st.audio_frames_repeated), (2, 5));

    // Within the dead band (40 ± 2 ms): untouched.
    got.clear();
    let played = s.pushed_frames() - 1950; // 40.6 ms
    s.push_audio(t0 + 60 * MS, block(3 * pts, &b), reading(played), |x| {
        got.extend_from_slice(x);
        x.len()
    });
    assert_eq!(got, b);
    assert_eq!(s.stats().drift_corrections, 2);
}

#[test]
fn a_full_sink_takes_part_of_a_block() {
    let t0 = Instant::now();
    let mut s = AvSync::new(AvSyncConfig::default());
    let b = [7i16; 960];
    // The sink takes 2000 of the 2880 frames: all the silence, 80 frames of the block.
    let pushed = s.push_audio(t0, block(0, &b), reading(0), |x| x.len().min(2000));
    assert_eq!(pushed, 2000);
    let st = s.stats();
    assert_eq!(st.audio_frames_refused, 880);
    assert_eq!(s.audio_clock(reading(2000)), Some(150)); // 80 frames = 150 ticks
    // Blocks of an impossible shape (a network can claim anything) are ignored, with no
    // allocation sized by the claim.
    for (channels, sample_rate) in [(0, 48_000), (33, 48_000), (2, 0), (2, u32::MAX)] {
        let z = AudioBlock {
            channels,
            sample_rate,
            ..block(0, &b)
        };
        assert_eq!(s.push_audio(t0, z, reading(0), |x| x.len()), 0);
    }
    assert_eq!(s.stats().audio_blocks, 1);
}

fn show(offset_ticks: Option<i64>) -> Present {
    Present::Show { offset_ticks }
}

#[test]
fn video_waits_for_the_audio_clock() {
    let t0 = Instant::now();
    let mut s = AvSync::new(AvSyncConfig::default());
    let b = [0i16; 4800];
    // Audio from pts 0: primed, so pts 0 leaves the speaker after 40 ms (1920 frames).
    s.push_audio(t0, block(0, &b), reading(0), |x| x.len());
    // Frames pts 0 and 3000 ready at t0. Clock at -3600 + 960 frames (1800 ticks) = -1800:
    // frame 1 is 20 ms early, due at 40 ms.
    assert_eq!(
        s.present(t0 + 20 * MS, 0, t0, true, Some(reading(960))),
        Present::Wait(t0 + 40 * MS)
    );
    // At 1920 played: pts 0 is due, offset 0.
    assert_eq!(
        s.present(t0 + 40 * MS, 0, t0, true, Some(reading(1920))),
        show(Some(0))
    );
    // Frame 2 (pts 3000) is not due yet: when 1600 more frames have played, at 73.33 ms.
    assert_eq!(
        s.present(t0 + 40 * MS, 3000, t0, false, Some(reading(1920))),
        Present::Wait(t0 + 40 * MS + Duration::from_nanos(33_333_333))
    );
    // Shown 450 ticks (5 ms) late.
    assert_eq!(
        s.present(t0 + 80 * MS, 3000, t0, false, Some(reading(1920 + 1840))),
        show(Some(-450))
    );
    let st = s.stats();
    assert_eq!((st.frames_shown, st.frames_synced), (2, 2));
    assert!((st.av_offset_mean_ms - -2.5).abs() < 1e-9);
    assert!((st.av_offset_max_ms - 5.0).abs() < 1e-9);
}

#[test]
fn late_frames_are_dropped_only_when_a_newer_one_is_ready() {
    let t0 = Instant::now();
    let mut s = AvSync::new(AvSyncConfig::default());
    let b = [0i16; 48_000]; // one second
    s.push_audio(t0, block(0, &b), reading(0), |x| x.len());
    // Clock at pts 9000 (100 ms): 1920 + 4800 frames played. Frames 3000, 6000 and 12000
    // are ready.
    let r = Some(reading(1920 + 4800));
    // 6000 ticks late, a newer frame ready: skipped.
    assert_eq!(s.present(t0, 3000, t0, true, r), Present::Late);
    assert_eq!(s.stats().frames_late, 1);
    // 3000 ticks late: exactly one interval, not more: shown.
    assert_eq!(s.present(t0, 6000, t0, true, r), show(Some(-3000)));
    assert_eq!(s.stats().frames_late, 1);
    // Early.
    assert!(matches!(
        s.present(t0, 12_000, t0, false, r),
        Present::Wait(_)
    ));
    // Alone, a late frame is still shown.
    let r = Some(reading(1920 + 48_000));
    assert_eq!(
        s.present(t0 + 10 * MS, 12_000, t0, false, r),
        show(Some(12_000 - 90_000))
    );
    let st = s.stats();
    assert_eq!((st.frames_shown, st.frames_late), (2, 1));
}

#[test]
fn without_audio_frames_show_on_arrival() {
    let t0 = Instant::now();
    let mut s = AvSync::new(AvSyncConfig::default());
    // No audio clock: due on arrival.
    assert_eq!(s.audio_clock(reading(0)), None);
    assert_eq!(s.present(t0, 1_000_000, t0, false, None), show(None));
    // A backlog: the older frame, more than an interval late, gives way to the newest.
    assert_eq!(
        s.present(t0 + 40 * MS, 1_003_000, t0, true, None),
        Present::Late
    );
    assert_eq!(
        s.present(t0 + 40 * MS, 1_006_000, t0 + 40 * MS, false, None),
        show(None)
    );
    assert_eq!(s.stats().frames_late, 1);
    // Audio pushed once, then nothing for longer than the timeout: video runs free.
    let b = [0i16; 480];
    s.push_audio(t0, block(0, &b), reading(0), |x| x.len());
    assert_eq!(
        s.present(
            t0 + 600 * MS,
            5_000_000,
            t0 + 600 * MS,
            false,
            Some(reading(0))
        ),
        show(None)
    );
    assert_eq!(s.stats().frames_synced, 0);
}

#[test]
fn a_frame_never_waits_past_the_limit() {
    let t0 = Instant::now();
    let mut s = AvSync::new(AvSyncConfig::default());
    let b = [0i16; 48_000];
    s.push_audio(t0, block(0, &b), reading(0), |x| x.len());
    // A frame 1 h ahead of the audio (a timestamp discontinuity).
    let pts = 3600 * 90_000;
    assert_eq!(
        s.present(t0 + 100 * MS, pts, t0, false, Some(reading(100))),
        Present::Wait(t0 + 500 * MS),
        "audio goes stale first"
    );
    assert_eq!(
        s.present(t0 + 1000 * MS, pts, t0, false, Some(reading(1000))),
        show(None),
        "shown after waiting 1 s (audio stale by then anyway)"
    );
    // Still fresh audio, but the frame has waited its longest: shown anyway.
    s.push_audio(t0 + 1000 * MS, block(0, &b), reading(0), |x| x.len());
    assert!(matches!(
        s.present(t0 + 1000 * MS, pts, t0, false, Some(reading(0))),
        Present::Show {
            offset_ticks: Some(_)
        }
    ));
    // The player's queue of decoded frames is bounded (see the player's queue tests); what it
    // drops is counted here.
    s.note_overflow(1);
    assert_eq!(s.stats().frames_overflow, 1);
}

#[test]
fn set_frame_rate() {
    let mut s = AvSync::new(AvSyncConfig::default());
    s.set_frame_rate(25, 1);
    assert_eq!(s.config().frame_interval, 3600);
    s.set_frame_rate(30_000, 1001);
    assert_eq!(s.config().frame_interval, 3003);
    s.set_frame_rate(0, 1);
    assert_eq!(s.config().frame_interval, 3003);
}

/// Sender blocks of 20 ms arrive every 20 ms of sender time; the receiver's sound card runs
/// `ppm` fast or slow. Returns (sync stats, sink underruns, the largest and the smallest
/// queue in frames, just after a push, over the last 30 s).
fn run_drift(ppm: i64, seconds: u64) -> (AvStats, u64, u64, u64) {
    let t0 = Instant::now();
    let mut sink = ClockSink::new(48_000, 1, 48_000).unwrap();
    let mut s = AvSync::new(AvSyncConfig::default());
    let b = [100i16; 960];
    // The sink sees device time: real time scaled by (1 + ppm / 1e6).
    let device = |t: Duration| {
        let n = t.as_nanos() as i128;
        t0 + Duration::from_nanos((n + n * i128::from(ppm) / 1_000_000) as u64)
    };
    let (mut hi, mut lo) = (0, u64::MAX);
    let blocks = seconds * 50;
    for i in 0..blocks {
        let t = Duration::from_millis(20 * i);
        let now = device(t);
        let r = reading(sink.played_frames(now));
        s.push_audio(t0 + t, block(i * 1800, &b), r, |x| sink.push(now, x));
        if i >= blocks - 1500 {
            let q = sink.queued_frames(now);
            hi = hi.max(q);
            lo = lo.min(q);
        }
    }
    (s.stats(), sink.underruns(), hi, lo)
}

#[test]
fn drift_is_corrected_without_latency_creep() {
    // Equal clocks: nothing to correct, the queue sits at the target (40 ms + the block
    // just pushed, measured right after the push).
    let (st, underruns, hi, lo) = run_drift(0, 60);
    assert_eq!(
        (st.drift_corrections, underruns, st.audio_primes),
        (0, 0, 1)
    );
    assert_eq!((hi, lo), (1920 + 960, 1920 + 960));

    // A sound card 1000 ppm fast drains 48 extra frames a second, 2880 over the minute.
    // They are made up by repeating frames, except the 96 frames (2 ms) of dead band the
    // queue settles below its target; the queue then holds still: no underrun, no creep.
    let (st, underruns, hi, lo) = run_drift(1000, 60);
    assert_eq!(
        (underruns, st.audio_primes, st.audio_frames_dropped),
        (0, 1, 0)
    );
    assert_eq!(st.audio_frames_repeated, 2784);
    assert_eq!((hi, lo), (2785, 2784));
    // 1000 ppm slow: frames dropped instead; the queue settles 2 ms above the target.
    let (st, underruns, hi, lo) = run_drift(-1000, 60);
    assert_eq!(
        (underruns, st.audio_primes, st.audio_frames_repeated),
        (0, 1, 0)
    );
    assert_eq!(st.audio_frames_dropped, 2783);
    assert_eq!((hi, lo), (2977, 2975));
    // A typical 100 ppm: 288 frames of drift, 191 corrected, 97 absorbed by the band.
    let (st, underruns, hi, lo) = run_drift(100, 60);
    assert_eq!((underruns, st.audio_frames_repeated), (0, 191));
    assert_eq!((hi, lo), (2786, 2783));
    // At the 0.5 % limit the queue still holds, 10 ms below its target.
    let (st, underruns, hi, lo) = run_drift(5000, 60);
    assert_eq!((underruns, st.audio_frames_repeated), (0, 13_920));
    assert_eq!((hi, lo), (2405, 2404));
}
