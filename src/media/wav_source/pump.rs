//! Real-time pacing shared by the file-backed sources: an audio pump sending PCM blocks when
//! `start + pts` comes (looping as asked), the channel between producer threads and the sink,
//! and a WAV file as the audio of another source ([`WithAudio`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use super::{PcmError, PcmReader, WavAudio};
use crate::media::source::{
    AudioFormat, MediaItem, MediaSink, MediaSource, SourceStats, StreamFormat,
};

/// How often a sleeping producer looks at its halt flag.
const POLL: Duration = Duration::from_millis(50);

/// Sleeps until `deadline`, waking every 50 ms to look at `halt`; false if halted.
pub fn sleep_until(deadline: Instant, halt: &AtomicBool) -> bool {
    loop {
        if halt.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(POLL));
    }
}

/// `start + pts` on the 90 kHz clock.
pub fn due(start: Instant, pts: u64) -> Instant {
    start + Duration::from_nanos((u128::from(pts) * 1_000_000_000 / 90_000) as u64)
}

/// The channel producers send their (already paced) items into.
pub fn item_channel() -> (SyncSender<MediaItem>, Receiver<MediaItem>) {
    sync_channel(16)
}

/// Forwards `rx` to `sink` until every sender is gone, the sink is gone, or `stop` is
/// set; in the last two cases sets `halt`, which the producers watch. Call it on the
/// source's own thread while the producers run on scoped threads.
pub fn forward_items(
    rx: Receiver<MediaItem>,
    sink: &mut MediaSink<'_>,
    stop: &AtomicBool,
    halt: &AtomicBool,
) {
    loop {
        if stop.load(Ordering::Relaxed) {
            halt.store(true, Ordering::Relaxed);
        }
        match rx.recv_timeout(POLL) {
            Ok(item) => {
                if !sink(item) {
                    halt.store(true, Ordering::Relaxed);
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    halt.store(true, Ordering::Relaxed);
}

/// How the audio of a looping source repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioLoop {
    /// Play the input once.
    Once,
    /// Repeat the input back to back.
    Natural,
    /// Repeat every `frames` sample frames exactly: cut the input there, or pad it with
    /// silence up to there (a file's audio beside its video: both loop on one period).
    Period {
        /// Sample frames per loop.
        frames: u64,
    },
}

/// Reads `reader` in blocks of `block_frames`, looping as `looping` says, and sends each
/// block into `tx` when it is due (`start` + its position on the sample clock). The last
/// block of a non-looping input is padded with silence. Returns the blocks sent.
///
/// A read error ends the audio (logged once); the video goes on.
pub fn run_audio_pump(
    reader: &mut dyn PcmReader,
    block_frames: usize,
    looping: AudioLoop,
    start: Instant,
    tx: &SyncSender<MediaItem>,
    halt: &AtomicBool,
) -> u64 {
    let rate = u64::from(reader.sample_rate().max(1));
    let ch = usize::from(reader.channels().max(1));
    let block_frames = block_frames.max(1);
    let mut emitted = 0u64; // sample frames sent, all loops
    let mut in_loop = 0u64; // sample frames of the current loop
    let mut loop_had_input = false;
    let mut blocks = 0u64;
    let mut ended = false;
    let fail = |e: PcmError| log::warn!("audio stops: {e}");
    while !ended {
        let mut samples = Vec::with_capacity(block_frames * ch);
        let mut have = 0usize;
        while have < block_frames {
            let mut want = block_frames - have;
            if let AudioLoop::Period { frames } = looping {
                if in_loop >= frames {
                    if let Err(e) = reader.rewind() {
                        fail(e);
                        ended = true;
                        break;
                    }
                    in_loop = 0;
                    loop_had_input = false;
                }
                want = want.min((frames - in_loop) as usize);
            }
            let n = match reader.read_frames(want, &mut samples) {
                Ok(n) => n,
                Err(e) => {
                    fail(e);
                    ended = true;
                    break;
                }
            };
            if n > 0 {
                loop_had_input = true;
                have += n;
                in_loop += n as u64;
                continue;
            }
            // End of the input.
            match looping {
                AudioLoop::Once => {
                    ended = true;
                    break;
                }
                AudioLoop::Natural => {
                    if !loop_had_input {
                        ended = true; // an empty input would spin
                        break;
                    }
                    if let Err(e) = reader.rewind() {
                        fail(e);
                        ended = true;
                        break;
                    }
                    in_loop = 0;
                    loop_had_input = false;
                }
                AudioLoop::Period { .. } => {
                    // Silence up to the end of the period (`want` stops there).
                    samples.resize(samples.len() + want * ch, 0);
                    have += want;
                    in_loop += want as u64;
                }
            }
        }
        if have == 0 {
            break;
        }
        // Only the last block of a finite input can be short: pad it.
        samples.resize(block_frames * ch, 0);
        let pts = emitted * 90_000 / rate;
        if !sleep_until(due(start, pts), halt) {
            break;
        }
        if tx.send(MediaItem::Audio { pts, samples }).is_err() {
            break;
        }
        emitted += block_frames as u64;
        blocks += 1;
    }
    blocks
}

/// A video-only source with a WAV file's audio added (`--audio FILE.wav` with the test
/// pattern or a webcam).
pub struct WithAudio {
    inner: Box<dyn MediaSource>,
    audio: WavAudio,
    format: StreamFormat,
    block_frames: usize,
    looping: bool,
}

impl std::fmt::Debug for WithAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithAudio")
            .field("audio", &self.audio)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl WithAudio {
    /// `inner`'s video (its own audio, if any, is dropped) with `audio`, in blocks of
    /// `block_frames` sample frames (see `audio_block_frames`); `looping` repeats the WAV.
    pub fn new(
        inner: Box<dyn MediaSource>,
        audio: WavAudio,
        block_frames: usize,
        looping: bool,
    ) -> WithAudio {
        let mut format = inner.format().clone();
        format.audio = Some(wav_format(&audio));
        WithAudio {
            inner,
            audio,
            format,
            block_frames,
            looping,
        }
    }
}

/// The stream audio format of a WAV file (after the downmix).
pub fn wav_format(audio: &WavAudio) -> AudioFormat {
    AudioFormat {
        sample_rate: audio.sample_rate(),
        channels: audio.channels(),
    }
}

impl MediaSource for WithAudio {
    fn format(&self) -> &StreamFormat {
        &self.format
    }

    fn run(
        self: Box<Self>,
        start: Instant,
        sink: &mut MediaSink<'_>,
        stop: &AtomicBool,
    ) -> SourceStats {
        let WithAudio {
            inner,
            mut audio,
            block_frames,
            looping,
            ..
        } = *self;
        let halt = AtomicBool::new(false);
        let (tx, rx) = item_channel();
        std::thread::scope(|s| {
            let halt = &halt;
            let tx_video = tx.clone();
            let video = s.spawn(move || {
                let mut send = |item: MediaItem| {
                    matches!(item, MediaItem::Video { .. }) && tx_video.send(item).is_ok()
                        || !halt.load(Ordering::Relaxed)
                };
                inner.run(start, &mut send, halt)
            });
            let audio = s.spawn(move || {
                let mode = if looping {
                    AudioLoop::Natural
                } else {
                    AudioLoop::Once
                };
                run_audio_pump(&mut audio, block_frames, mode, start, &tx, halt)
            });
            forward_items(rx, sink, stop, halt);
            let mut stats = video.join().unwrap_or_default();
            stats.audio_blocks = audio.join().unwrap_or_default();
            stats
        })
    }
}
