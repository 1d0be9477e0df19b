//! The video track of a file source: frames decoded by FFmpeg, timestamped by the file (or
//! index / fps), skipped when late, encoded ahead of time in bursts, and sent by a pacer
//! thread when `start + pts` comes; with `--loop`, timestamps keep increasing across loops.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use super::Encoders;
use super::burst::BurstQueue;
use super::encode::encoders_needed;
use super::ffvideo::VideoReader;
use super::progress::Progress;
use super::yuv::YuvFrame;
use crate::media::source::{MediaItem, SourceStats};
use crate::media::wav_source::{due, sleep_until};
use bytes::Bytes;

/// Frames later than this behind their time are skipped rather than encoded.
const LATE_SKIP: Duration = Duration::from_millis(250);
/// Frames encoded on one thread before deciding whether a pool is needed.
const POOL_PROBE_FRAMES: u64 = 10;
/// Compressed frames the encoder queues ahead of their time (see [`burst`](super::burst)):
/// it compresses `QUEUED_FRAMES - REFILL_AT` = 8 frames back to back, then rests. Bursts of
/// 6, 8 and 16 frames measured the same (within 3 %), about 11 % less CPU per frame than one
/// frame at a time at 720p; a 1080p JPEG is about 150 kB, so the queue holds under 2 MB.
const QUEUED_FRAMES: usize = 10;
/// Frames still queued when the encoder starts its next burst: the first frame of a burst
/// takes one decode and compression (about 7 ms at 720p, 13 ms at 1080p), well within two
/// frame intervals, so a frame is normally ready when its time comes.
const REFILL_AT: usize = 2;

/// The frame rate `fps` as a fraction whose terms fit 16 bits (NTSC rates exactly).
pub fn fps_fraction(fps: f64) -> (u32, u32) {
    if !fps.is_finite() || fps <= 0.0 {
        return (30, 1);
    }
    let fps = fps.clamp(0.01, 1000.0);
    let r = fps.round();
    if (fps - r).abs() < 1e-3 {
        return (r as u32, 1);
    }
    let ntsc = fps * 1.001;
    if (ntsc - ntsc.round()).abs() < 1e-3 && ntsc.round() * 1000.0 <= 65535.0 {
        return (ntsc.round() as u32 * 1000, 1001);
    }
    for den in [1000u32, 100, 10] {
        let num = (fps * f64::from(den)).round();
        if (1.0..=65535.0).contains(&num) {
            return (num as u32, den);
        }
    }
    (r.max(1.0) as u32, 1)
}

/// The video producer of a file source.
pub(super) struct VideoJob {
    pub(super) path: PathBuf,
    pub(super) reader: VideoReader,
    pub(super) first: Option<(YuvFrame, f64)>,
    pub(super) fps_num: u32,
    pub(super) fps_den: u32,
    pub(super) quality: u8,
    pub(super) looping: bool,
    /// Loop period in audio sample frames at `rate`, when audio and video share one.
    pub(super) period: Option<(u64, u32)>,
    pub(super) progress: Progress,
}

impl VideoJob {
    fn frame_pts(&self, index: u64) -> u64 {
        (u128::from(index) * 90_000 * u128::from(self.fps_den) / u128::from(self.fps_num.max(1)))
            as u64
    }

    /// Start of loop `k` on the 90 kHz clock, with a shared period.
    fn period_offset(&self, k: u64) -> Option<u64> {
        self.period.map(|(frames, rate)| {
            (u128::from(k) * u128::from(frames) * 90_000 / u128::from(rate.max(1))) as u64
        })
    }

    /// Decodes the next frame without converting it (or stands for the one `open` read);
    /// returns its position in ms (negative if unknown), `None` at the end.
    fn grab(&mut self) -> Option<f64> {
        if let Some((_, ms)) = &self.first {
            return Some(*ms);
        }
        self.reader.grab()
    }

    /// The grabbed frame as planar YCbCr into `mat`; false if that fails.
    fn retrieve(&mut self, mat: &mut YuvFrame) -> bool {
        if let Some((first, _)) = self.first.take() {
            *mat = first;
            return true;
        }
        self.reader.retrieve(mat)
    }

    /// Back to the first frame for the next loop; false if that fails.
    fn rewind(&mut self) -> bool {
        self.reader.rewind()
    }

    /// Decodes and compresses the track in bursts on this thread while a pacer thread sends
    /// each frame into `tx` when `start + pts` comes (see [`burst`](super::burst)), until the
    /// end, `halt`, or the receiver is gone.
    pub(super) fn run(
        mut self,
        start: Instant,
        tx: &SyncSender<MediaItem>,
        halt: &AtomicBool,
    ) -> SourceStats {
        let queue = BurstQueue::new(QUEUED_FRAMES, REFILL_AT);
        let progress =
            std::mem::replace(&mut self.progress, Progress::new(false, &self.path, None));
        std::thread::scope(|s| {
            let pacer = s.spawn(|| pace(&queue.consumer(), progress, start, tx, halt));
            let mut stats = self.produce(&queue.producer(), start, halt);
            let (sent, late) = pacer.join().unwrap_or_default();
            stats.frames = sent;
            stats.frames_dropped += late;
            stats
        })
    }

    /// The encoding side of [`run`](Self::run): frames into `queue` until the end.
    fn produce(
        &mut self,
        queue: &BurstQueue<Ready>,
        start: Instant,
        halt: &AtomicBool,
    ) -> SourceStats {
        let mut stats = SourceStats::default();
        let mut encoders = match Encoders::<YuvFrame>::inline(self.quality) {
            Ok(e) => e,
            Err(e) => {
                log::error!("serve: cannot set up the JPEG encoder: {e}");
                return stats;
            }
        };
        let interval = Duration::from_nanos(
            (1_000_000_000u128 * u128::from(self.fps_den) / u128::from(self.fps_num.max(1))) as u64,
        );
        let interval90 = self.frame_pts(1).max(1);
        let (mut encode_total, mut bytes_total, mut encoded) = (Duration::ZERO, 0u64, 0u64);
        let mut spare: Vec<YuvFrame> = Vec::new();
        let mut loop_index = 0u64;
        let mut loop_offset = 0u64; // 90 kHz start of the current loop
        let mut index = 0u64; // frame index in the current loop
        let mut last_t = None::<u64>; // last timestamp in the current loop
        let mut eof = false;
        let mut warned_late = false;
        let mut last_submit = None::<Instant>;
        'frames: loop {
            if !queue.wait_for_room(halt) {
                break;
            }
            // Keep the encoders busy: read and submit until they are full.
            while !eof && !encoders.full() && !halt.load(Ordering::Relaxed) {
                let Some(ms) = self.grab() else {
                    // End of the file.
                    if !self.looping || index == 0 || !self.rewind() {
                        eof = true;
                        break;
                    }
                    let next = match self.period_offset(loop_index + 1) {
                        Some(o) => o,
                        None => loop_offset + last_t.unwrap_or(0) + interval90,
                    };
                    loop_offset = next;
                    loop_index += 1;
                    index = 0;
                    last_t = None;
                    continue;
                };
                // The file's timestamp, or index / fps where it has none.
                let by_index = self.frame_pts(index);
                let mut t = if ms.is_finite() && ms >= 0.0 && (ms > 0.0 || index == 0) {
                    (ms * 90.0).round() as u64
                } else {
                    by_index
                };
                if let Some(prev) = last_t {
                    if t <= prev {
                        t = prev + interval90;
                    }
                }
                index += 1;
                last_t = Some(t);
                let pts = loop_offset + t;
                if self
                    .period_offset(loop_index + 1)
                    .is_some_and(|end| pts >= end)
                {
                    continue; // beyond the shared period: the audio has moved on
                }
                // Behind time: skip the conversion and the encoding to catch up, but let a
                // frame through now and then so that a file that decodes too slowly still
                // shows something.
                let now = Instant::now();
                if now > due(start, pts) + LATE_SKIP
                    && last_submit.is_some_and(|t| now < t + LATE_SKIP)
                {
                    stats.frames_dropped += 1;
                    if !warned_late {
                        warned_late = true;
                        log::warn!(
                            "{}: decoding and encoding cannot keep up with {:.1} fps; late frames are skipped",
                            self.path.display(),
                            f64::from(self.fps_num) / f64::from(self.fps_den.max(1))
                        );
                    }
                    continue;
                }
                // One encoder on this thread reads the decoder's planes where they lie.
                if self.first.is_none() {
                    if let Some(planes) = self.reader.planes() {
                        if encoders.encode_inline(pts, |e| e.encode_planes(&planes)) {
                            last_submit = Some(now);
                            continue;
                        }
                    }
                }
                let mut mat = spare.pop().unwrap_or_default();
                if !self.retrieve(&mut mat) {
                    log::warn!(
                        "{}: a frame failed to convert; skipped",
                        self.path.display()
                    );
                    stats.frames_dropped += 1;
                    continue;
                }
                last_submit = Some(now);
                if let Err(mat) = encoders.submit(pts, mat) {
                    spare.push(mat);
                    break 'frames;
                }
            }
            let Some(done) = encoders.collect() else {
                break;
            };
            if !done.mat.data.is_empty() {
                spare.push(done.mat);
            }
            let jpeg = match done.jpeg {
                Ok(j) => j,
                Err(e) => {
                    log::error!("{}: JPEG encoding failed: {e}", self.path.display());
                    break;
                }
            };
            encode_total += done.took;
            bytes_total += jpeg.len() as u64;
            encoded += 1;
            // One encoder too slow for the frame rate: switch to a pool.
            if encoded == POOL_PROBE_FRAMES && encoders.threads() == 1 && encoders.in_flight() == 0
            {
                let need = encoders_needed(encode_total / encoded as u32, interval);
                if need > 1 {
                    match Encoders::pool(need, self.quality) {
                        Ok(p) => {
                            log::info!(
                                "{}: {need} encoder threads ({:.1} ms per frame, {:.1} ms between frames)",
                                self.path.display(),
                                (encode_total / encoded as u32).as_secs_f64() * 1e3,
                                interval.as_secs_f64() * 1e3
                            );
                            encoders = p;
                        }
                        Err(e) => log::warn!("cannot start encoder threads: {e}"),
                    }
                }
            }
            let ready = Ready {
                pts: done.pts,
                jpeg: Bytes::from(jpeg),
                position_s: done.pts.saturating_sub(loop_offset) as f64 / 90_000.0,
                loop_index,
            };
            if !queue.push(ready) {
                break;
            }
            if spare.len() > 8 {
                spare.truncate(8);
            }
        }
        if encoded > 0 {
            stats.mean_encode_ms = encode_total.as_secs_f64() * 1e3 / encoded as f64;
            stats.mean_jpeg_bytes = bytes_total as f64 / encoded as f64;
        }
        stats
    }
}

/// A compressed frame waiting for its time.
pub(super) struct Ready {
    pts: u64,
    jpeg: Bytes,
    /// Its position in the file (seconds) and loop, for the progress display.
    position_s: f64,
    loop_index: u64,
}

/// The sending side of [`VideoJob::run`]: each frame of `queue` into `tx` at `start + pts`;
/// returns how many were sent and how many were dropped as late (queued frames that a
/// stalled receiver made more than [`LATE_SKIP`] late with newer ones queued behind them,
/// one let through every `LATE_SKIP`, as the encoder skips them). Ends when the queue does, on `halt`, or when the receiver is gone
/// (the encoder is then stopped, as the queue's end is dropped).
fn pace(
    queue: &BurstQueue<Ready>,
    mut progress: Progress,
    start: Instant,
    tx: &SyncSender<MediaItem>,
    halt: &AtomicBool,
) -> (u64, u64) {
    let (mut frames, mut late) = (0u64, 0u64);
    let mut last_sent = None::<Instant>;
    while let Some(r) = queue.pop(halt) {
        let at = due(start, r.pts);
        let now = Instant::now();
        if now > at + LATE_SKIP
            && queue.queued() > 0
            && last_sent.is_some_and(|t| now < t + LATE_SKIP)
        {
            late += 1;
            continue;
        }
        if !sleep_until(at, halt) {
            break;
        }
        if tx
            .send(MediaItem::Video {
                pts: r.pts,
                jpeg: r.jpeg,
            })
            .is_err()
        {
            break;
        }
        last_sent = Some(Instant::now());
        frames += 1;
        progress.update(r.position_s, r.loop_index, frames);
    }
    progress.finish();
    (frames, late)
}
