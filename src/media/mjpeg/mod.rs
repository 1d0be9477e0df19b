//! `serve --source mjpeg:-` and `mjpeg:PATH`: JPEGs that are already compressed (an
//! `ffmpeg ... -c:v mjpeg -f mjpeg -` pipe, `rpicam-vid --codec mjpeg -o -`, a FIFO, a
//! `.mjpeg` file) sent as they are received, byte for byte, with no decode and re-encode.
//!
//! - Cutting: [`MjpegScanner`] splits the concatenated stream on the JPEG marker structure,
//!   with a fixed bound of [`MAX_JPEG_BYTES`] per JPEG (a larger one is dropped and counted,
//!   never buffered whole).
//! - Checking: each JPEG gets [`check_jpeg`] (SOI/EOI, segment lengths, a frame header with
//!   sides within bounds) and must have the stream's size (that of the first JPEG); a JPEG
//!   that fails is dropped and counted (`frames_rejected`). A JPEG with no Huffman tables
//!   (what USB cameras send) gets the standard ones inserted (`frames_repaired`); nothing else
//!   is ever changed (proto-spec.md §5.1). Webcams that deliver MJPEG use the same check.
//! - Pacing: a pipe, FIFO or terminal is sent as it arrives: a reader thread stamps each JPEG
//!   with its arrival, and its timestamp is the time since the first JPEG arrived (a pipe is
//!   read even while the stream's start delay runs, so the spacing is kept; a sender that
//!   falls more than 256 JPEGs or 64 MiB behind drops what arrives, counted). A regular file
//!   is sent at `--fps` (30 by default), frame `i` at `i / fps`; with `--loop` it starts over
//!   at its end.
//!
//! Reading waits at most 100 ms at a time (poll), so a quiet pipe never keeps `serve` from
//! stopping.

mod check;
mod scan;
#[cfg(all(test, feature = "jpeg"))]
mod tests;

pub use check::{CheckedJpeg, JpegCheckError, STANDARD_DHT, check_jpeg, repaired, strip_dht};
pub use scan::{DropReason, MAX_JPEG_BYTES, MjpegScanner, Scanned};

/// Where a pass-through source reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MjpegInput {
    /// Standard input (`mjpeg:-`).
    Stdin,
    /// A file, FIFO or device (`mjpeg:PATH`).
    Path(std::path::PathBuf),
}

/// Parses `mjpeg:-` (or `stdin`) and `mjpeg:PATH`; `None` if `spec` names another source.
pub fn parse_mjpeg_spec(spec: &str) -> Option<Result<MjpegInput, String>> {
    if spec == "stdin" {
        return Some(Ok(MjpegInput::Stdin));
    }
    let rest = spec.strip_prefix("mjpeg:")?;
    Some(match rest {
        "" => Err("expected mjpeg:- (standard input) or mjpeg:PATH".to_string()),
        "-" => Ok(MjpegInput::Stdin),
        p => Ok(MjpegInput::Path(p.into())),
    })
}

#[cfg(feature = "jpeg")]
pub use source::*;

#[cfg(feature = "jpeg")]
mod source {
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::{MjpegInput, MjpegScanner, Scanned, check_jpeg, repaired};
    use crate::media::MAX_FRAME_PIXELS;
    use crate::media::source::{MediaItem, MediaSink, MediaSource, SourceStats, StreamFormat};
    use crate::media::wav_source::{due, sleep_until};

    /// Bytes read at a time.
    const READ_CHUNK: usize = 64 * 1024;
    /// JPEGs read ahead of the sender at most.
    const QUEUE_JPEGS: usize = 256;
    /// Bytes of JPEGs read ahead of the sender from a pipe at most (64 MiB).
    const MAX_QUEUED_BYTES: usize = 64 << 20;
    /// Input read while looking for the first good JPEG before giving up.
    const MAX_LEAD_IN: usize = 64 << 20;

    /// Errors opening a pass-through source.
    #[derive(Debug, thiserror::Error)]
    pub enum MjpegSourceError {
        /// The input cannot be opened or read.
        #[error("cannot read {what}: {source}")]
        Io {
            /// The input named.
            what: String,
            /// The error.
            #[source]
            source: std::io::Error,
        },
        /// The input ended (or went on too long) without one whole, valid JPEG.
        #[error(
            "no valid JPEG in the first {read} bytes of {what} (expected a concatenated MJPEG stream, e.g. ffmpeg -f mjpeg)"
        )]
        NoJpeg {
            /// The input named.
            what: String,
            /// Bytes read.
            read: usize,
        },
    }

    /// A pass-through MJPEG source (see the module docs).
    pub struct MjpegSource {
        what: String,
        input: MjpegInput,
        file: File,
        by_arrival: bool,
        looping: bool,
        format: StreamFormat,
        scanner: MjpegScanner,
        /// The first JPEG (already checked and repaired) and its arrival.
        first: Option<(Vec<u8>, Instant)>,
        /// JPEGs cut but not sent yet.
        queue: std::collections::VecDeque<Vec<u8>>,
        lead_in_rejected: u64,
        /// The first JPEG had its Huffman tables inserted.
        first_repaired: bool,
    }

    impl std::fmt::Debug for MjpegSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MjpegSource")
                .field("input", &self.input)
                .field("by_arrival", &self.by_arrival)
                .field("format", &self.format)
                .finish_non_exhaustive()
        }
    }

    /// Waits up to 100 ms for `file` to be readable (true if it may be).
    fn wait_readable(file: &File) -> bool {
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for a descriptor we own.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        n != 0
    }

    impl MjpegSource {
        /// Opens `input` and reads up to its first valid JPEG (which gives the stream's size).
        /// `fps` paces a regular file (default 30) and is the rate announced for a pipe.
        pub fn open(
            input: MjpegInput,
            fps: Option<f64>,
            looping: bool,
        ) -> Result<MjpegSource, MjpegSourceError> {
            let what = match &input {
                MjpegInput::Stdin => "standard input".to_string(),
                MjpegInput::Path(p) => p.display().to_string(),
            };
            let io = |source| MjpegSourceError::Io {
                what: what.clone(),
                source,
            };
            let file = match &input {
                MjpegInput::Stdin => {
                    use std::os::fd::AsFd;
                    File::from(std::io::stdin().as_fd().try_clone_to_owned().map_err(io)?)
                }
                MjpegInput::Path(p) => File::open(p).map_err(io)?,
            };
            let by_arrival = !file.metadata().map_err(io)?.is_file();
            // The rate as a fraction: whole rates exactly, others to a thousandth.
            let fps = fps.filter(|f| f.is_finite() && *f > 0.0).unwrap_or(30.0);
            let (fps_num, fps_den) = if (fps - fps.round()).abs() < 1e-3 {
                (fps.round().max(1.0) as u32, 1)
            } else {
                ((fps * 1000.0).round().max(1.0) as u32, 1000)
            };
            let mut src = MjpegSource {
                what: what.clone(),
                input,
                file,
                by_arrival,
                looping,
                format: StreamFormat {
                    width: 0,
                    height: 0,
                    fps_num,
                    fps_den,
                    audio: None,
                },
                scanner: MjpegScanner::new(),
                first: None,
                queue: Default::default(),
                lead_in_rejected: 0,
                first_repaired: false,
            };
            let mut read = 0usize;
            let mut buf = vec![0u8; READ_CHUNK];
            while src.first.is_none() {
                let n = src.file.read(&mut buf).map_err(io)?;
                read += n;
                let mut cut = src.scanner.push(&buf[..n]);
                if n == 0 {
                    cut.extend(src.scanner.finish());
                }
                for item in cut {
                    let Scanned::Jpeg(jpeg) = item else {
                        src.lead_in_rejected += 1;
                        continue;
                    };
                    if src.first.is_some() {
                        src.queue.push_back(jpeg);
                        continue;
                    }
                    match check_jpeg(&jpeg, MAX_FRAME_PIXELS) {
                        Ok(c) => {
                            src.format.width = c.width;
                            src.format.height = c.height;
                            src.first_repaired = c.needs_dht_at.is_some();
                            let jpeg = repaired(&jpeg, &c).into_owned();
                            src.first = Some((jpeg, Instant::now()));
                        }
                        Err(e) => {
                            log::warn!("{}: a JPEG was refused: {e}", src.what);
                            src.lead_in_rejected += 1;
                        }
                    }
                }
                if src.first.is_none() && (n == 0 || read > MAX_LEAD_IN) {
                    return Err(MjpegSourceError::NoJpeg {
                        what: src.what,
                        read,
                    });
                }
            }
            Ok(src)
        }

        /// True when JPEGs are stamped and sent as they arrive (pipes); false for a regular
        /// file paced at the frame rate.
        pub fn by_arrival(&self) -> bool {
            self.by_arrival
        }

        /// Reads the input until its end or `stop`, handing each JPEG cut from it to `tx` with
        /// its arrival time. A pipe never waits for the sender: when [`MAX_QUEUED_BYTES`] are
        /// queued, a JPEG that arrives is dropped (counted); a file waits.
        fn read_all(
            &mut self,
            tx: &std::sync::mpsc::SyncSender<(Vec<u8>, Instant)>,
            queued: &std::sync::atomic::AtomicUsize,
            dropped: &mut u64,
            stop: &AtomicBool,
        ) {
            let mut buf = vec![0u8; READ_CHUNK];
            let mut sent_any = !self.queue.is_empty();
            loop {
                for jpeg in self.queue.drain(..) {
                    let len = jpeg.len();
                    if self.by_arrival && queued.load(Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
                        *dropped += 1;
                        continue;
                    }
                    queued.fetch_add(len, Ordering::Relaxed);
                    let item = (jpeg, Instant::now());
                    let ok = if self.by_arrival {
                        match tx.try_send(item) {
                            Ok(()) => true,
                            Err(std::sync::mpsc::TrySendError::Full((j, _))) => {
                                queued.fetch_sub(j.len(), Ordering::Relaxed);
                                *dropped += 1;
                                true
                            }
                            Err(_) => false,
                        }
                    } else {
                        tx.send(item).is_ok()
                    };
                    if !ok {
                        return;
                    }
                    sent_any = true;
                }
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if self.by_arrival && !wait_readable(&self.file) {
                    continue;
                }
                let n = match self.file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::warn!("{}: reading stopped: {e}", self.what);
                        0
                    }
                };
                let mut cut = self.scanner.push(&buf[..n]);
                if n == 0 {
                    cut.extend(self.scanner.finish());
                }
                for item in cut {
                    match item {
                        Scanned::Jpeg(j) => self.queue.push_back(j),
                        Scanned::Dropped(why) => {
                            log::debug!("{}: a JPEG was dropped ({why:?})", self.what);
                            *dropped += 1;
                        }
                    }
                }
                if n == 0 && self.queue.is_empty() {
                    use std::io::Seek;
                    // A file with no JPEG in it would loop for ever: it ends.
                    if !self.looping || self.by_arrival || !sent_any || self.file.rewind().is_err()
                    {
                        return;
                    }
                }
            }
        }
    }

    impl MediaSource for MjpegSource {
        fn format(&self) -> &StreamFormat {
            &self.format
        }

        fn run(
            self: Box<Self>,
            start: Instant,
            sink: &mut MediaSink<'_>,
            stop: &AtomicBool,
        ) -> SourceStats {
            let mut this = *self;
            let mut stats = SourceStats::default();
            let (w, h) = (this.format.width, this.format.height);
            let what = this.what.clone();
            let (by_arrival, fps_num, fps_den) =
                (this.by_arrival, this.format.fps_num, this.format.fps_den);
            let Some((first, first_at)) = this.first.take() else {
                return stats;
            };
            let lead_in_rejected = this.lead_in_rejected;
            stats.frames_repaired = u64::from(this.first_repaired);
            let queued = std::sync::atomic::AtomicUsize::new(0);
            let halt = AtomicBool::new(false);
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, Instant)>(QUEUE_JPEGS);
            let mut index = 0u64;
            let mut last_pts = None::<u64>;
            let mut bytes_total = 0u64;
            let mut check_time = Duration::ZERO;
            let dropped = std::thread::scope(|s| {
                let (queued, halt) = (&queued, &halt);
                let reader = s.spawn(move || {
                    let mut dropped = 0u64;
                    this.read_all(&tx, queued, &mut dropped, halt);
                    dropped
                });
                let mut next = Some((first, first_at, true));
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (jpeg, arrived, checked) = match next.take() {
                        Some(n) => n,
                        None => match rx.recv_timeout(Duration::from_millis(100)) {
                            Ok((j, at)) => {
                                queued.fetch_sub(j.len(), Ordering::Relaxed);
                                (j, at, false)
                            }
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                            Err(_) => break,
                        },
                    };
                    let t0 = Instant::now();
                    let jpeg = if checked {
                        jpeg
                    } else {
                        match check_jpeg(&jpeg, MAX_FRAME_PIXELS) {
                            Ok(c) if (c.width, c.height) == (w, h) => {
                                if c.needs_dht_at.is_some() {
                                    stats.frames_repaired += 1;
                                    repaired(&jpeg, &c).into_owned()
                                } else {
                                    jpeg
                                }
                            }
                            Ok(c) => {
                                log::debug!(
                                    "{what}: a {}x{} JPEG in a {w}x{h} stream was dropped",
                                    c.width,
                                    c.height
                                );
                                stats.frames_rejected += 1;
                                continue;
                            }
                            Err(e) => {
                                log::debug!("{what}: a JPEG was refused: {e}");
                                stats.frames_rejected += 1;
                                continue;
                            }
                        }
                    };
                    check_time += t0.elapsed();
                    let pts = if by_arrival {
                        // Arrival after the first JPEG's, on the 90 kHz clock: the spacing
                        // the frames arrived with is kept.
                        let t = arrived.saturating_duration_since(first_at);
                        (t.as_nanos() * 90_000 / 1_000_000_000) as u64
                    } else {
                        (u128::from(index) * 90_000 * u128::from(fps_den)
                            / u128::from(fps_num.max(1))) as u64
                    };
                    // Strictly increasing timestamps, even for JPEGs that arrived together.
                    let pts = match last_pts {
                        Some(p) if pts <= p => p + 1,
                        _ => pts,
                    };
                    if !sleep_until(due(start, pts), stop) {
                        break;
                    }
                    last_pts = Some(pts);
                    index += 1;
                    bytes_total += jpeg.len() as u64;
                    stats.frames += 1;
                    if !sink(MediaItem::Video {
                        pts,
                        jpeg: Bytes::from(jpeg),
                    }) {
                        break;
                    }
                }
                halt.store(true, Ordering::Relaxed);
                drop(rx);
                reader.join().unwrap_or(0)
            });
            stats.frames_rejected += lead_in_rejected + dropped;
            if stats.frames > 0 {
                stats.mean_jpeg_bytes = bytes_total as f64 / stats.frames as f64;
                stats.mean_encode_ms = check_time.as_secs_f64() * 1e3 / stats.frames as f64;
            }
            stats
        }
    }
}
