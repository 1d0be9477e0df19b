//! The sound card output ([`AudioOutput`], `cpal` feature): a lock-free ring buffer between the
//! player and the device callback, whose played-frame count is the player's master clock.

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
    /// At the last callback: delay from then until the end of what it wrote is heard.
    latency_nanos: AtomicU64,
    /// When the last callback ran, nanoseconds after `epoch`.
    callback_nanos: AtomicU64,
    epoch: Instant,
    fed: AtomicBool,
    callbacks: AtomicU64,
}

/// Callbacks after which a device counts as running at its steady pace (the first ones
/// prefill its buffer, and a sound server may pause between them while it starts the stream).
const STARTUP_CALLBACKS: u64 = 4;

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
    /// Opens the default output device for `channels`-channel input, at `sample_rate` Hz
    /// when the device supports it, else at the device's own default rate (or the nearest
    /// it supports): [`AudioSink::sample_rate`] says which, and the caller resamples to it.
    /// The ring holds [`DEFAULT_BUFFER_MS`]; the stream is started (silent until fed).
    ///
    /// The device may have more channels than the input (mono is copied to all, extra
    /// channels stay silent). Returns an error, never panics, when there is no sound card or
    /// sound server.
    pub fn open(sample_rate: u32, channels: u16) -> Result<Self, AudioError> {
        Self::open_with_buffer(sample_rate, channels, DEFAULT_BUFFER_MS)
    }

    /// [`open`](Self::open) with a ring of `buffer_ms` milliseconds (at the device's rate).
    pub fn open_with_buffer(
        sample_rate: u32,
        channels: u16,
        buffer_ms: u32,
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
            .filter(|r| r.channels() >= channels && FORMATS.contains(&r.sample_format()))
            .collect();
        // The rate: ours if the device takes it, else its default, else the nearest it takes.
        let takes = |rate: u32| {
            ranges
                .iter()
                .any(|r| r.min_sample_rate() <= rate && rate <= r.max_sample_rate())
        };
        let default_rate = device.default_output_config().ok().map(|c| c.sample_rate());
        let rate = if takes(sample_rate) {
            sample_rate
        } else if let Some(d) = default_rate.filter(|&d| takes(d)) {
            d
        } else {
            ranges
                .iter()
                .map(|r| sample_rate.clamp(r.min_sample_rate(), r.max_sample_rate()))
                .min_by_key(|&r| r.abs_diff(sample_rate))
                .ok_or_else(unsupported)?
        };
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
            .filter(|r| r.min_sample_rate() <= rate && rate <= r.max_sample_rate())
            .min_by_key(|r| rank(r))
            .ok_or_else(unsupported)?;
        let sample_rate = rate;
        let capacity_frames = (u64::from(rate) * u64::from(buffer_ms) / 1000).max(1) as usize;
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
            callback_nanos: AtomicU64::new(0),
            epoch: Instant::now(),
            fed: AtomicBool::new(false),
            callbacks: AtomicU64::new(0),
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

    /// Delay from now until the last frame handed to the device (counted in
    /// [`played_frames`](Self::played_frames)) leaves the speaker: what the backend reported
    /// at the last callback (its start plus the callback's own buffer), less the time since.
    /// Zero until the first callback or if the backend does not say. Between callbacks it
    /// shrinks in real time, so the audio clock advances smoothly instead of in
    /// callback-sized steps.
    pub fn device_latency(&self) -> Duration {
        let sh = &self.shared;
        let at_callback = sh.latency_nanos.load(Ordering::Acquire);
        let since = (sh.epoch.elapsed().as_nanos() as u64)
            .saturating_sub(sh.callback_nanos.load(Ordering::Acquire));
        Duration::from_nanos(at_callback.saturating_sub(since))
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

    fn running(&self) -> bool {
        self.shared.callbacks.load(Ordering::Relaxed) >= STARTUP_CALLBACKS
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
    let rate = config.sample_rate;
    let data_shared = Arc::clone(shared);
    let err_shared = Arc::clone(shared);
    let data_cb = move |out: &mut [T], info: &cpal::OutputCallbackInfo| {
        // Real-time thread: no blocking, no allocation, no logging.
        data_shared.callbacks.fetch_add(1, Ordering::Relaxed);
        let ts = info.timestamp();
        let wanted = out.len() / dev_ch;
        // The buffer's first frame is heard `playback - callback` from now, its last one a
        // buffer later.
        let latency = ts
            .playback
            .saturating_duration_since(ts.callback)
            .as_nanos()
            + wanted as u128 * 1_000_000_000 / u128::from(rate.max(1));
        let latency = u64::try_from(latency).unwrap_or(u64::MAX);
        let now = data_shared.epoch.elapsed().as_nanos() as u64;
        data_shared.callback_nanos.store(now, Ordering::Release);
        data_shared.latency_nanos.store(latency, Ordering::Release);
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
