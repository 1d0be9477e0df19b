//! Media sources for `serve`: something that produces JPEG frames and PCM blocks in real
//! time on its own thread, timestamped on the 90 kHz media clock from a common start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::{JpegEncoder, Subsampling, TestSpec, ToneSource};

/// One unit of media from a source thread.
#[derive(Debug)]
pub enum MediaItem {
    /// A JPEG frame.
    Video {
        /// 90 kHz timestamp.
        pts: u64,
        /// The JPEG.
        jpeg: Bytes,
    },
    /// A block of interleaved s16 audio.
    Audio {
        /// 90 kHz timestamp of the first sample.
        pts: u64,
        /// Samples.
        samples: Vec<i16>,
    },
}

/// Audio format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AudioFormat {
    /// Samples per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u8,
}

/// What a source produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamFormat {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frame rate numerator.
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
    /// Audio, if any.
    pub audio: Option<AudioFormat>,
}

/// Figures of a source thread.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStats {
    /// Frames encoded (or passed through).
    pub frames: u64,
    /// Frames dropped because the network loop was behind.
    pub frames_dropped: u64,
    /// Mean JPEG size, bytes.
    pub mean_jpeg_bytes: f64,
    /// Mean encode time, milliseconds.
    pub mean_encode_ms: f64,
    /// Audio blocks produced.
    pub audio_blocks: u64,
    /// Passed-through JPEGs refused by the check (or cut off, or over the size bound) and
    /// not sent.
    pub frames_rejected: u64,
    /// Passed-through JPEGs sent with the standard Huffman tables inserted.
    pub frames_repaired: u64,
}

/// Where a source thread hands its media: returns false when the receiver is gone.
pub type MediaSink<'a> = dyn FnMut(MediaItem) -> bool + 'a;

/// A source of media, run on its own thread.
pub trait MediaSource: Send {
    /// The format it produces (known before it runs: the stream description needs it).
    fn format(&self) -> &StreamFormat;

    /// Produces media in real time from `start` until `stop` is set, the input ends, or the
    /// sink is gone. Timestamps start at 0 at `start`.
    fn run(
        self: Box<Self>,
        start: Instant,
        sink: &mut MediaSink<'_>,
        stop: &AtomicBool,
    ) -> SourceStats;
}

/// Audio of the test source: 48 kHz stereo in 5 ms blocks (§5.2).
pub const TEST_AUDIO: AudioFormat = AudioFormat {
    sample_rate: 48_000,
    channels: 2,
};

/// Sample frames per audio block for `format` that fit `max_frames` (from the datagram
/// size): 5 ms where it fits, less where it does not.
pub fn audio_block_frames(format: AudioFormat, max_frames: usize) -> usize {
    let five_ms = (format.sample_rate as usize / 200).max(1);
    five_ms.min(max_frames).max(1)
}

/// The synthetic source: a moving pattern with a frame counter, JPEG-encoded, and a tone.
pub struct TestSource {
    spec: TestSpec,
    format: StreamFormat,
    quality: u8,
    block_frames: usize,
}

impl TestSource {
    /// A test source; `audio` adds the tone, in blocks of `block_frames`.
    pub fn new(spec: TestSpec, quality: u8, audio: bool, block_frames: usize) -> TestSource {
        TestSource {
            format: StreamFormat {
                width: spec.width,
                height: spec.height,
                fps_num: spec.fps_num,
                fps_den: spec.fps_den,
                audio: audio.then_some(TEST_AUDIO),
            },
            spec,
            quality,
            block_frames,
        }
    }
}

impl MediaSource for TestSource {
    fn format(&self) -> &StreamFormat {
        &self.format
    }

    fn run(
        self: Box<Self>,
        start: Instant,
        sink: &mut MediaSink<'_>,
        stop: &AtomicBool,
    ) -> SourceStats {
        let mut stats = SourceStats::default();
        let spec = self.spec;
        let audio = self.format.audio;
        let block = self.block_frames;
        let (Ok(mut pattern), Ok(mut encoder), Ok(mut tone)) = (
            spec.pattern(),
            JpegEncoder::new(self.quality, Subsampling::Yuv420),
            ToneSource::new(TEST_AUDIO.sample_rate, TEST_AUDIO.channels as u16, 440),
        ) else {
            log::error!("serve: cannot set up the test source");
            return stats;
        };
        let frame_ns = 1_000_000_000u128 * spec.fps_den as u128 / spec.fps_num.max(1) as u128;
        let block_ns = 1_000_000_000u128 * block as u128 / TEST_AUDIO.sample_rate as u128;
        let (mut frame, mut blocks) = (0u64, 0u64);
        let mut encode_total = Duration::ZERO;
        let mut bytes_total = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let t_frame = start + Duration::from_nanos((frame as u128 * frame_ns) as u64);
            let t_block = start + Duration::from_nanos((blocks as u128 * block_ns) as u64);
            let next = if audio.is_some() {
                t_frame.min(t_block)
            } else {
                t_frame
            };
            let now = Instant::now();
            if next > now {
                // The source keeps real time; this thread has nothing else to do.
                std::thread::sleep((next - now).min(Duration::from_millis(50)));
                continue;
            }
            let item = if audio.is_some() && t_block <= t_frame {
                let pts = blocks * block as u64 * 90_000 / TEST_AUDIO.sample_rate as u64;
                blocks += 1;
                stats.audio_blocks += 1;
                MediaItem::Audio {
                    pts,
                    samples: tone.next_block(block),
                }
            } else {
                let pts = (frame as u128 * 90_000 * spec.fps_den as u128
                    / spec.fps_num.max(1) as u128) as u64;
                let t0 = Instant::now();
                let img = pattern.frame(frame);
                let jpeg = match encoder.encode_rgb(&img) {
                    Ok(j) => j,
                    Err(e) => {
                        log::error!("serve: JPEG encoding failed: {e}");
                        break;
                    }
                };
                encode_total += t0.elapsed();
                bytes_total += jpeg.len() as u64;
                frame += 1;
                stats.frames += 1;
                MediaItem::Video {
                    pts,
                    jpeg: Bytes::from(jpeg),
                }
            };
            if !sink(item) {
                break;
            }
        }
        if stats.frames > 0 {
            stats.mean_encode_ms = encode_total.as_secs_f64() * 1000.0 / stats.frames as f64;
            stats.mean_jpeg_bytes = bytes_total as f64 / stats.frames as f64;
        }
        stats
    }
}
