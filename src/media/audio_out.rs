//! Audio output, and the player's master clock.
//!
//! A player keeps A/V sync by slaving video to audio: a frame with media time `t` is shown when
//! the audio clock reaches `t`. The audio clock is [`AudioSink::played_frames`] divided by the
//! sample rate: frames of *pushed* audio the output has consumed. Silence inserted on an underrun
//! does not advance it, so the clock stalls with the sound instead of running ahead of it.
//!
//! Two sinks implement [`AudioSink`]:
//!
//! - `AudioOutput` (feature `cpal`): the default sound device. Samples reach its real-time
//!   callback through a lock-free single-producer single-consumer ring (`rtrb`): `push` writes
//!   into it, the callback reads from it, and neither ever waits for the other. The callback
//!   never blocks, never allocates and never logs.
//! - [`ClockSink`]: no device at all. It "plays" pushed audio in real time by arithmetic on the
//!   `now` the caller passes (sans-IO), so a machine without a sound card, CI, and the simulated
//!   `World` all get the same clock semantics, exactly and deterministically.

use std::time::{Duration, Instant};

/// Default ring capacity of an output: half a second.
pub const DEFAULT_BUFFER_MS: u32 = 500;

/// Errors from opening or configuring an audio sink.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The requested format is unusable (zero rate or channels, or absurdly large).
    #[error(
        "invalid audio format {sample_rate} Hz x {channels} channels \
         (rate must be 1..=768000, channels 1..=32)"
    )]
    InvalidFormat {
        /// Requested sample rate.
        sample_rate: u32,
        /// Requested channel count.
        channels: u16,
    },
    /// The audio host has no default output device (no sound card, or no sound server).
    #[error(
        "no default audio output device (no sound card, or no ALSA/PulseAudio device configured)"
    )]
    NoDevice,
    /// The device offers no configuration at this sample rate with enough channels.
    #[error("audio device {device:?} cannot play {sample_rate} Hz with {channels} channels")]
    UnsupportedFormat {
        /// Device name.
        device: String,
        /// Requested sample rate.
        sample_rate: u32,
        /// Requested channel count.
        channels: u16,
    },
    /// The audio backend failed.
    #[cfg(feature = "cpal")]
    #[error("audio output: {op} failed: {source}")]
    Backend {
        /// What was being done ("query device formats", "build stream", "start stream").
        op: &'static str,
        /// The backend's error.
        #[source]
        source: cpal::Error,
    },
}

/// Where decoded audio goes, and the clock it keeps. Implemented by `AudioOutput` (a sound
/// device) and [`ClockSink`] (none).
///
/// Samples are interleaved signed 16-bit at [`sample_rate`](Self::sample_rate) with
/// [`channels`](Self::channels) per frame. `now` is the caller's clock reading (sans-IO); a
/// device sink ignores it.
pub trait AudioSink {
    /// Sample rate in Hz.
    fn sample_rate(&self) -> u32;

    /// Channels per frame.
    fn channels(&self) -> u16;

    /// Queues whole frames from `samples` for playback, as many as fit; returns the number of
    /// *samples* taken (a multiple of the channel count). Never blocks on the device.
    fn push(&mut self, now: Instant, samples: &[i16]) -> usize;

    /// Frames of pushed audio played so far: the audio clock. Never decreases while `now`
    /// does not.
    fn played_frames(&self, now: Instant) -> u64;

    /// Frames pushed but not yet played.
    fn queued_frames(&self, now: Instant) -> u64;

    /// Times playback ran dry while it had been fed before.
    fn underruns(&self) -> u64;

    /// Delay from "played" (counted in [`played_frames`](Self::played_frames)) to the sound
    /// leaving the speaker, when the backend reports it; zero otherwise.
    fn latency(&self) -> Duration {
        Duration::ZERO
    }

    /// [`played_frames`](Self::played_frames) as media time.
    fn played_time(&self, now: Instant) -> Duration {
        frames_to_duration(self.played_frames(now), self.sample_rate())
    }
}

fn frames_to_duration(frames: u64, rate: u32) -> Duration {
    let nanos = u128::from(frames) * 1_000_000_000 / u128::from(rate.max(1));
    let secs = (nanos / 1_000_000_000).min(u128::from(u64::MAX)) as u64;
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

fn validate_format(sample_rate: u32, channels: u16) -> Result<(), AudioError> {
    if !(1..=768_000).contains(&sample_rate) || !(1..=32).contains(&channels) {
        return Err(AudioError::InvalidFormat {
            sample_rate,
            channels,
        });
    }
    Ok(())
}

/// An audio sink with no device: it plays pushed audio in real time, computed from the `now`
/// values the caller passes.
///
/// Model: playback starts at the first push and consumes `sample_rate` frames a second while it
/// has any queued. If the queue runs dry it stops (an underrun, counted when the next push comes
/// after a gap) and restarts at the next push. The queue holds at most `capacity_frames`.
/// A `now` earlier than one seen before is treated as no time passing (time never goes back).
#[derive(Debug, Clone)]
pub struct ClockSink {
    sample_rate: u32,
    channels: u16,
    capacity_frames: u64,
    /// Frames accepted in total.
    pushed: u64,
    /// When the current run of continuous playback began, `None` when stopped.
    anchor: Option<Instant>,
    /// Frames played at `anchor` (or in total, when stopped).
    anchor_played: u64,
    /// Latest `now` seen by a push: queries never look earlier than this.
    latest: Option<Instant>,
    underruns: u64,
}

impl ClockSink {
    /// A sink for `sample_rate` Hz, `channels` channels, holding up to `capacity_frames` frames
    /// (use `sample_rate * DEFAULT_BUFFER_MS / 1000` for the output's default).
    pub fn new(sample_rate: u32, channels: u16, capacity_frames: u64) -> Result<Self, AudioError> {
        validate_format(sample_rate, channels)?;
        Ok(Self {
            sample_rate,
            channels,
            capacity_frames,
            pushed: 0,
            anchor: None,
            anchor_played: 0,
            latest: None,
            underruns: 0,
        })
    }

    /// Ring capacity in frames.
    pub fn capacity_frames(&self) -> u64 {
        self.capacity_frames
    }

    /// Frames accepted since creation.
    pub fn pushed_frames(&self) -> u64 {
        self.pushed
    }

    /// Frames played by `now`: the audio clock (see the type's model). A `now` earlier than
    /// the latest push counts as that push's time.
    pub fn played_frames_at(&self, now: Instant) -> u64 {
        let now = self.latest.map_or(now, |t| now.max(t));
        match self.anchor {
            None => self.anchor_played,
            Some(anchor) => {
                let elapsed = now.saturating_duration_since(anchor).as_nanos();
                let frames = elapsed * u128::from(self.sample_rate) / 1_000_000_000;
                let frames = u64::try_from(frames).unwrap_or(u64::MAX);
                self.pushed.min(self.anchor_played.saturating_add(frames))
            }
        }
    }

    /// When the queued audio will have played out, if playing.
    pub fn drained_at(&self) -> Option<Instant> {
        let anchor = self.anchor?;
        let run = u128::from(self.pushed - self.anchor_played);
        // Smallest whole-nanosecond time at which played_frames_at reaches `pushed`.
        let nanos = (run * 1_000_000_000).div_ceil(u128::from(self.sample_rate));
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        anchor.checked_add(Duration::from_nanos(nanos))
    }

    /// Queues whole frames of `samples` at time `now`; returns the samples taken.
    pub fn push_at(&mut self, now: Instant, samples: &[i16]) -> usize {
        let ch = u64::from(self.channels);
        let now = self.latest.map_or(now, |t| now.max(t));
        self.latest = Some(now);
        let played = self.played_frames_at(now);
        let offered = samples.len() as u64 / ch;
        let free = self.capacity_frames.saturating_sub(self.pushed - played);
        let take = offered.min(free);
        if take == 0 {
            return 0;
        }
        if self.anchor.is_some() && played == self.pushed {
            // The queue ran dry at `drained_at`; playback stopped there.
            if self.drained_at().is_some_and(|t| now > t) {
                self.underruns += 1;
            }
            self.anchor = None;
            self.anchor_played = played;
        }
        if self.anchor.is_none() {
            self.anchor = Some(now);
            self.anchor_played = played;
        }
        self.pushed += take;
        (take * ch) as usize
    }
}

impl AudioSink for ClockSink {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn channels(&self) -> u16 {
        self.channels
    }

    fn push(&mut self, now: Instant, samples: &[i16]) -> usize {
        self.push_at(now, samples)
    }

    fn played_frames(&self, now: Instant) -> u64 {
        self.played_frames_at(now)
    }

    fn queued_frames(&self, now: Instant) -> u64 {
        self.pushed - self.played_frames_at(now)
    }

    fn underruns(&self) -> u64 {
        self.underruns
    }
}

#[cfg(feature = "cpal")]
pub use device::AudioOutput;

#[cfg(feature = "cpal")]
mod device {
    use super::{AudioError, AudioSink, DEFAULT_BUFFER_MS, validate_format};
    use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
    use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};
    use rtrb::{Consumer, Producer, RingBuffer};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// Counters shared between the producer and the device callback (the samples themselves
    /// travel through the `rtrb` ring).
    #[derive(Debug)]
    struct Shared {
        played_frames: AtomicU64,
        underruns: AtomicU64,
        stream_errors: AtomicU64,
        latency_nanos: AtomicU64,
        fed: AtomicBool,
    }

    /// The default sound output device, fed through a bounded ring.
    ///
    /// Create it on the thread that will own it (a cpal stream may not be `Send` on every
    /// platform); the device callback runs on cpal's own thread.
    pub struct AudioOutput {
        producer: Producer<i16>,
        capacity: usize,
        shared: Arc<Shared>,
        sample_rate: u32,
        channels: u16,
        device_channels: u16,
        sample_format: SampleFormat,
        device_name: String,
        _stream: cpal::Stream,
    }

    impl std::fmt::Debug for AudioOutput {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("AudioOutput")
                .field("device", &self.device_name)
                .field("sample_rate", &self.sample_rate)
                .field("channels", &self.channels)
                .field("device_channels", &self.device_channels)
                .field("sample_format", &self.sample_format)
                .finish_non_exhaustive()
        }
    }

    /// Preference order for the device sample format.
    const FORMATS: [SampleFormat; 10] = [
        SampleFormat::I16,
        SampleFormat::F32,
        SampleFormat::I32,
        SampleFormat::F64,
        SampleFormat::I24,
        SampleFormat::U16,
        SampleFormat::I8,
        SampleFormat::U8,
        SampleFormat::I64,
        SampleFormat::U32,
    ];

    impl AudioOutput {
        /// Opens the default output device at `sample_rate` Hz for `channels`-channel input,
        /// with a [`DEFAULT_BUFFER_MS`] ring, and starts it (it plays silence until fed).
        ///
        /// The device must support the rate itself (no resampling here); it may have more
        /// channels than the input (mono is copied to all, extra channels stay silent).
        /// Returns an error, never panics, when there is no sound card or sound server.
        pub fn open(sample_rate: u32, channels: u16) -> Result<Self, AudioError> {
            let frames = u64::from(sample_rate) * u64::from(DEFAULT_BUFFER_MS) / 1000;
            Self::open_with_capacity(sample_rate, channels, frames.max(1) as usize)
        }

        /// [`open`](Self::open) with a ring of `capacity_frames` frames.
        pub fn open_with_capacity(
            sample_rate: u32,
            channels: u16,
            capacity_frames: usize,
        ) -> Result<Self, AudioError> {
            validate_format(sample_rate, channels)?;
            let host = cpal::default_host();
            let device = host.default_output_device().ok_or(AudioError::NoDevice)?;
            let device_name = device.to_string();
            let unsupported = || AudioError::UnsupportedFormat {
                device: device_name.clone(),
                sample_rate,
                channels,
            };
            let ranges: Vec<_> = device
                .supported_output_configs()
                .map_err(|source| AudioError::Backend {
                    op: "query device formats",
                    source,
                })?
                .filter(|r| {
                    r.channels() >= channels
                        && r.min_sample_rate() <= sample_rate
                        && sample_rate <= r.max_sample_rate()
                })
                .collect();
            // Fewest channels at or above ours, then the preferred sample format.
            let rank = |r: &cpal::SupportedStreamConfigRange| {
                let fmt = FORMATS
                    .iter()
                    .position(|&f| f == r.sample_format())
                    .unwrap_or(usize::MAX);
                (r.channels(), fmt)
            };
            let best = ranges
                .iter()
                .filter(|r| FORMATS.contains(&r.sample_format()))
                .min_by_key(|r| rank(r))
                .ok_or_else(unsupported)?;
            let device_channels = best.channels();
            let sample_format = best.sample_format();
            let config = StreamConfig {
                channels: device_channels,
                sample_rate,
                buffer_size: cpal::BufferSize::Default,
            };

            let capacity = capacity_frames.max(1).saturating_mul(usize::from(channels));
            let (producer, consumer) = RingBuffer::<i16>::new(capacity);
            let shared = Arc::new(Shared {
                played_frames: AtomicU64::new(0),
                underruns: AtomicU64::new(0),
                stream_errors: AtomicU64::new(0),
                latency_nanos: AtomicU64::new(0),
                fed: AtomicBool::new(false),
            });
            let c = consumer;
            let (d, cfg, sh) = (&device, &config, &shared);
            let stream = match sample_format {
                SampleFormat::I16 => build::<i16>(d, cfg, channels, c, sh),
                SampleFormat::F32 => build::<f32>(d, cfg, channels, c, sh),
                SampleFormat::I32 => build::<i32>(d, cfg, channels, c, sh),
                SampleFormat::F64 => build::<f64>(d, cfg, channels, c, sh),
                SampleFormat::I24 => build::<cpal::I24>(d, cfg, channels, c, sh),
                SampleFormat::U16 => build::<u16>(d, cfg, channels, c, sh),
                SampleFormat::I8 => build::<i8>(d, cfg, channels, c, sh),
                SampleFormat::U8 => build::<u8>(d, cfg, channels, c, sh),
                SampleFormat::I64 => build::<i64>(d, cfg, channels, c, sh),
                SampleFormat::U32 => build::<u32>(d, cfg, channels, c, sh),
                _ => return Err(unsupported()),
            }?;
            stream.play().map_err(|source| AudioError::Backend {
                op: "start stream",
                source,
            })?;
            log::info!(
                "audio output {device_name:?}: {sample_rate} Hz, {device_channels} ch, \
                 {sample_format:?}, ring {capacity_frames} frames"
            );
            Ok(Self {
                producer,
                capacity,
                shared,
                sample_rate,
                channels,
                device_channels,
                sample_format,
                device_name,
                _stream: stream,
            })
        }

        /// Queues whole frames from interleaved `samples`; returns the samples taken (fewer
        /// when the ring is full). Never waits: the ring is lock-free.
        pub fn push(&mut self, samples: &[i16]) -> usize {
            let ch = usize::from(self.channels);
            let whole = samples.len() / ch * ch;
            let free = self.producer.slots() / ch * ch;
            let n = whole.min(free);
            if n == 0 {
                return 0;
            }
            // Cannot fail: `n` slots are free and only this producer fills them.
            if self.producer.push_entire_slice(&samples[..n]).is_err() {
                return 0;
            }
            self.shared.fed.store(true, Ordering::Relaxed);
            n
        }

        /// Frames of pushed audio handed to the device so far: the audio clock. The sound
        /// leaves the speaker [`device_latency`](Self::device_latency) later.
        pub fn played_frames(&self) -> u64 {
            self.shared.played_frames.load(Ordering::Acquire)
        }

        /// Frames waiting in the ring.
        pub fn queued_frames(&self) -> u64 {
            let queued = self.capacity.saturating_sub(self.producer.slots());
            (queued / usize::from(self.channels)) as u64
        }

        /// Callbacks that ran short of data after the first push (each one inserted silence).
        pub fn underruns(&self) -> u64 {
            self.shared.underruns.load(Ordering::Relaxed)
        }

        /// Errors the backend reported on the running stream.
        pub fn stream_errors(&self) -> u64 {
            self.shared.stream_errors.load(Ordering::Relaxed)
        }

        /// Delay between a callback and its samples reaching the speaker, as last reported by
        /// the backend (zero until the first callback or if the backend does not say).
        pub fn device_latency(&self) -> Duration {
            Duration::from_nanos(self.shared.latency_nanos.load(Ordering::Relaxed))
        }

        /// The device's name.
        pub fn device_name(&self) -> &str {
            &self.device_name
        }

        /// The device's sample format (input is converted from s16 in the callback).
        pub fn sample_format(&self) -> SampleFormat {
            self.sample_format
        }

        /// Channels the device plays (at least [`AudioSink::channels`]).
        pub fn device_channels(&self) -> u16 {
            self.device_channels
        }
    }

    impl AudioSink for AudioOutput {
        fn sample_rate(&self) -> u32 {
            self.sample_rate
        }

        fn channels(&self) -> u16 {
            self.channels
        }

        fn push(&mut self, _now: Instant, samples: &[i16]) -> usize {
            AudioOutput::push(self, samples)
        }

        fn played_frames(&self, _now: Instant) -> u64 {
            AudioOutput::played_frames(self)
        }

        fn queued_frames(&self, _now: Instant) -> u64 {
            AudioOutput::queued_frames(self)
        }

        fn underruns(&self) -> u64 {
            AudioOutput::underruns(self)
        }

        fn latency(&self) -> Duration {
            self.device_latency()
        }
    }

    fn build<T>(
        device: &cpal::Device,
        config: &StreamConfig,
        channels: u16,
        mut consumer: Consumer<i16>,
        shared: &Arc<Shared>,
    ) -> Result<cpal::Stream, AudioError>
    where
        T: SizedSample + FromSample<i16> + Send + 'static,
    {
        let src_ch = usize::from(channels);
        let dev_ch = usize::from(config.channels);
        let data_shared = Arc::clone(shared);
        let err_shared = Arc::clone(shared);
        let data_cb = move |out: &mut [T], info: &cpal::OutputCallbackInfo| {
            // Real-time thread: no blocking, no allocation, no logging.
            let ts = info.timestamp();
            let latency = ts.playback.saturating_duration_since(ts.callback);
            let latency = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            data_shared.latency_nanos.store(latency, Ordering::Relaxed);
            let wanted = out.len() / dev_ch;
            // The producer only ever adds whole frames, so the ring holds whole frames.
            let n = wanted.min(consumer.slots() / src_ch);
            let n = match consumer.read_chunk(n * src_ch) {
                Ok(chunk) => {
                    let (a, b) = chunk.as_slices();
                    let get = |i: usize| if i < a.len() { a[i] } else { b[i - a.len()] };
                    for (f, frame) in out.chunks_exact_mut(dev_ch).take(n).enumerate() {
                        let base = f * src_ch;
                        for (c, s) in frame.iter_mut().enumerate() {
                            *s = if c < src_ch {
                                T::from_sample(get(base + c))
                            } else if src_ch == 1 {
                                T::from_sample(get(base))
                            } else {
                                T::EQUILIBRIUM
                            };
                        }
                    }
                    chunk.commit_all();
                    n
                }
                Err(_) => 0,
            };
            out[n * dev_ch..].fill(T::EQUILIBRIUM);
            data_shared
                .played_frames
                .fetch_add(n as u64, Ordering::Release);
            if n < wanted && data_shared.fed.load(Ordering::Relaxed) {
                data_shared.underruns.fetch_add(1, Ordering::Relaxed);
            }
        };
        let err_cb = move |e: cpal::Error| {
            err_shared.stream_errors.fetch_add(1, Ordering::Relaxed);
            log::warn!("audio output stream error: {e}");
        };
        device
            .build_output_stream::<T, _, _>(*config, data_cb, err_cb, Some(Duration::from_secs(2)))
            .map_err(|source| AudioError::Backend {
                op: "build stream",
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn clock_sink_plays_in_real_time() {
        let t0 = Instant::now();
        let mut s = ClockSink::new(48_000, 2, 48_000).unwrap();
        assert_eq!(
            s.played_frames(t0 + 10 * MS),
            0,
            "idle before the first push"
        );
        assert_eq!(s.push(t0, &[0; 2 * 4800]), 9600); // 100 ms
        assert_eq!(s.played_frames(t0), 0);
        assert_eq!(
            s.played_frames(t0 - 5 * MS),
            0,
            "earlier than the push: clamped"
        );
        assert_eq!(s.played_frames(t0 + 10 * MS), 480);
        assert_eq!(s.played_frames(t0 + Duration::from_micros(10_999)), 527); // floor
        assert_eq!(s.queued_frames(t0 + 10 * MS), 4320);
        assert_eq!(s.played_time(t0 + 25 * MS), 25 * MS);
        // More audio appended while playing: one continuous run, no underrun.
        assert_eq!(s.push(t0 + 50 * MS, &[0; 2 * 4800]), 9600);
        assert_eq!(s.played_frames(t0 + 150 * MS), 7200);
        assert_eq!(s.drained_at(), Some(t0 + 200 * MS));
        assert_eq!(s.played_frames(t0 + 200 * MS), 9600);
        assert_eq!(s.played_frames(t0 + 10_000 * MS), 9600, "stops when dry");
        assert_eq!(s.underruns(), 0);
        // Time going backwards is clamped to the latest push (t0 + 50 ms).
        assert_eq!(s.played_frames(t0 - 5 * MS), 2400);
    }

    #[test]
    fn clock_sink_underrun_restarts_at_next_push() {
        let t0 = Instant::now();
        let mut s = ClockSink::new(1000, 1, 10_000).unwrap();
        s.push(t0, &[0; 100]); // 100 ms, dry at t0 + 100 ms
        // Seamless: pushing exactly when it drains is not an underrun.
        s.push(t0 + 100 * MS, &[0; 100]);
        assert_eq!(s.underruns(), 0);
        assert_eq!(s.played_frames(t0 + 150 * MS), 150);
        // Dry at 200 ms; next push at 300 ms: a 100 ms gap, clock stalled at 200.
        assert_eq!(s.played_frames(t0 + 300 * MS), 200);
        s.push(t0 + 300 * MS, &[0; 50]);
        assert_eq!(s.underruns(), 1);
        assert_eq!(s.played_frames(t0 + 300 * MS), 200);
        assert_eq!(s.played_frames(t0 + 320 * MS), 220);
        assert_eq!(s.played_frames(t0 + 400 * MS), 250);
        assert_eq!(s.pushed_frames(), 250);
    }

    #[test]
    fn clock_sink_capacity_and_partial_frames() {
        let t0 = Instant::now();
        let mut s = ClockSink::new(1000, 2, 100).unwrap();
        assert_eq!(s.push(t0, &[0; 7]), 6, "whole frames only");
        assert_eq!(s.push(t0, &[0; 400]), 194, "97 frames of room");
        assert_eq!(s.push(t0, &[0; 2]), 0, "full");
        assert_eq!(s.queued_frames(t0), 100);
        // 30 ms later 30 frames have played and 30 fit again.
        assert_eq!(s.push(t0 + 30 * MS, &[0; 400]), 60);
        assert_eq!(s.queued_frames(t0 + 30 * MS), 100);
        assert_eq!(
            s.push(t0, &[0; 2]),
            0,
            "an older now counts as the latest: still full"
        );
        assert_eq!(s.push(t0 + 40 * MS, &[]), 0);
        assert_eq!(s.queued_frames(t0 + 40 * MS), 90);
        assert_eq!(s.underruns(), 0);
    }

    #[test]
    fn clock_sink_rejects_bad_format() {
        assert!(matches!(
            ClockSink::new(0, 2, 10),
            Err(AudioError::InvalidFormat { .. })
        ));
        assert!(matches!(
            ClockSink::new(48_000, 0, 10),
            Err(AudioError::InvalidFormat { .. })
        ));
        let msg = ClockSink::new(0, 2, 10).unwrap_err().to_string();
        assert!(msg.contains("0 Hz"), "{msg}");
        // Zero capacity is legal and takes nothing.
        let mut s = ClockSink::new(8000, 1, 0).unwrap();
        assert_eq!(s.push(Instant::now(), &[1, 2, 3]), 0);
    }

    #[test]
    fn clock_sink_as_trait_object() {
        let t0 = Instant::now();
        let mut sink: Box<dyn AudioSink> = Box::new(ClockSink::new(8000, 1, 8000).unwrap());
        assert_eq!(sink.push(t0, &[0; 800]), 800);
        assert_eq!(sink.played_frames(t0 + 50 * MS), 400);
        assert_eq!(sink.played_time(t0 + 50 * MS), 50 * MS);
    }

    #[cfg(feature = "cpal")]
    #[test]
    fn audio_output_open_never_panics() {
        match AudioOutput::open(48_000, 2) {
            Ok(mut out) => {
                let before = out.played_frames();
                let taken = out.push(&[0; 960]);
                assert_eq!(taken % 2, 0);
                assert!(out.played_frames() >= before);
                assert!(out.device_channels() >= 2);
            }
            Err(e) => {
                eprintln!("no audio output here (fine): {e}");
                assert!(!e.to_string().is_empty());
            }
        }
        assert!(matches!(
            AudioOutput::open(0, 2),
            Err(AudioError::InvalidFormat { .. })
        ));
    }
}
