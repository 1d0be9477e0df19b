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

    /// True once the output consumes audio at its steady pace (a device's first callbacks
    /// fill its own buffer, and a sound server may take a while to start the stream: audio
    /// pushed before then would only pile up as latency). Always true without a device.
    fn running(&self) -> bool {
        true
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
mod device;

#[cfg(test)]
mod tests;
