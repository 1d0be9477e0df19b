//! JPEG encoding of decoded frames: one [`FrameEncoder`] (libjpeg-turbo straight from planar YUV,
//! [`YuvFrame`]: files and raw cameras), and [`Encoders`], which runs it inline or on a small
//! pool of threads when one cannot keep up, output kept in order.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::band::{BandCompressor, BandError};
use super::yuv::{YuvFrame, YuvPlanes};

/// Most encoder threads.
const MAX_ENCODERS: usize = 4;

/// Errors encoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// libjpeg refused the picture.
    #[error("JPEG encoding failed: {0}")]
    Jpeg(#[from] BandError),
    /// The quality is outside 1..=100.
    #[error("JPEG quality {0} is out of range: must be 1..=100")]
    Quality(u8),
    /// An encoder thread could not be started.
    #[error("cannot start an encoder thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A YUV frame whose buffer disagrees with its shape.
    #[error("a {width}x{height} YUV frame with {len} bytes of planes is inconsistent")]
    BadYuv {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Bytes in its buffer.
        len: usize,
    },
}

/// A picture [`Encoders`] can compress: a [`YuvFrame`] (files, raw cameras).
pub trait Picture: Send + Default + 'static {
    /// Compresses the picture with `encoder`.
    fn encode(&self, encoder: &mut FrameEncoder) -> Result<Vec<u8>, EncodeError>;
}

impl Picture for YuvFrame {
    fn encode(&self, encoder: &mut FrameEncoder) -> Result<Vec<u8>, EncodeError> {
        encoder.encode_yuv(self)
    }
}

/// Compresses frames with libjpeg-turbo, a band of rows at a time ([`band`](super::band)):
/// planar YUV with no colour conversion, the fast forward DCT (as GStreamer's jpegenc), standard
/// Huffman tables (not optimised), baseline.
pub struct FrameEncoder {
    compressor: BandCompressor,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncoder").finish_non_exhaustive()
    }
}

impl FrameEncoder {
    /// An encoder at `quality` (1..=100); each JPEG has its picture's subsampling.
    pub fn new(quality: u8) -> Result<FrameEncoder, EncodeError> {
        if !(1..=100).contains(&quality) {
            return Err(EncodeError::Quality(quality));
        }
        Ok(FrameEncoder {
            compressor: BandCompressor::new(quality)?,
        })
    }

    /// Compresses a planar YUV frame as it is (no colour conversion, no chroma resampling);
    /// the JPEG has the frame's subsampling whatever this encoder was made with. Errors if the
    /// frame is inconsistent ([`YuvFrame::is_consistent`]).
    pub fn encode_yuv(&mut self, frame: &YuvFrame) -> Result<Vec<u8>, EncodeError> {
        if !frame.is_consistent() {
            return Err(EncodeError::BadYuv {
                width: frame.width,
                height: frame.height,
                len: frame.data.len(),
            });
        }
        Ok(self.compressor.compress(&frame.as_planes())?)
    }

    /// Compresses planes where they lie (a decoder's frame), a band of rows at a time
    /// ([`band`](super::band)), TV-range ones stretched to full range band by band. The JPEG
    /// has the planes' subsampling. Errors if the planes are inconsistent
    /// ([`YuvPlanes::is_consistent`]) or libjpeg refuses the picture.
    pub fn encode_planes(&mut self, planes: &YuvPlanes) -> Result<Vec<u8>, EncodeError> {
        if !planes.is_consistent() {
            return Err(EncodeError::BadYuv {
                width: planes.width,
                height: planes.height,
                len: planes.planes[0].0.len(),
            });
        }
        Ok(self.compressor.compress(planes)?)
    }
}

/// One encoded frame out of [`Encoders`].
#[derive(Debug)]
pub struct Encoded<P = YuvFrame> {
    /// Its timestamp.
    pub pts: u64,
    /// The JPEG, or why there is none.
    pub jpeg: Result<Vec<u8>, EncodeError>,
    /// Time spent encoding (for [`Encoders::encode_inline`], including what the closure does
    /// besides).
    pub took: Duration,
    /// The frame, handed back for reuse (an empty default picture after
    /// [`Encoders::encode_inline`], which borrowed its picture).
    pub mat: P,
}

struct Job<P> {
    pts: u64,
    mat: P,
}

struct Worker<P> {
    jobs: Option<SyncSender<Job<P>>>,
    /// Each worker has at most one job outstanding (round robin, at most one per worker in
    /// flight), so its result never waits for room.
    results: Option<Receiver<Encoded<P>>>,
    handle: Option<JoinHandle<()>>,
}

/// JPEG encoding of a frame sequence: on the calling thread, or on a pool of threads when one
/// cannot keep up. Frames come out in the order they went in.
pub enum Encoders<P: Picture = YuvFrame> {
    /// One encoder, on the calling thread.
    Inline {
        /// The encoder.
        encoder: Box<FrameEncoder>,
        /// Encoded, not yet collected.
        done: VecDeque<Encoded<P>>,
    },
    /// Worker threads fed round robin and collected round robin (which keeps the order).
    Pool {
        /// The workers.
        workers: Vec<WorkerHandle<P>>,
        /// Next worker to feed.
        next_in: usize,
        /// Next worker to collect from.
        next_out: usize,
        /// Frames submitted, not collected.
        in_flight: usize,
    },
}

/// One thread of an [`Encoders::Pool`].
pub struct WorkerHandle<P: Picture>(Worker<P>);

impl<P: Picture> Drop for WorkerHandle<P> {
    fn drop(&mut self) {
        self.0.jobs = None; // the worker's loop ends
        self.0.results = None; // and never waits to hand over a result
        if let Some(h) = self.0.handle.take() {
            let _ = h.join();
        }
    }
}

impl<P: Picture> std::fmt::Debug for Encoders<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoders")
            .field("threads", &self.threads())
            .finish_non_exhaustive()
    }
}

impl<P: Picture> Encoders<P> {
    /// One encoder on the calling thread.
    pub fn inline(quality: u8) -> Result<Encoders<P>, EncodeError> {
        Ok(Encoders::Inline {
            encoder: Box::new(FrameEncoder::new(quality)?),
            done: VecDeque::new(),
        })
    }

    /// `threads` encoder threads (at least 2).
    pub fn pool(threads: usize, quality: u8) -> Result<Encoders<P>, EncodeError> {
        let mut workers = Vec::new();
        for i in 0..threads.max(2) {
            let mut encoder = FrameEncoder::new(quality)?;
            let (jobs, job_rx) = sync_channel::<Job<P>>(1);
            let (done_tx, results) = sync_channel::<Encoded<P>>(2);
            let handle = std::thread::Builder::new()
                .name(format!("jpeg-{i}"))
                .spawn(move || {
                    for Job { pts, mat } in job_rx {
                        let t0 = Instant::now();
                        let jpeg = mat.encode(&mut encoder);
                        let took = t0.elapsed();
                        let out = Encoded {
                            pts,
                            jpeg,
                            took,
                            mat,
                        };
                        if done_tx.send(out).is_err() {
                            break;
                        }
                    }
                })
                .map_err(EncodeError::Thread)?;
            workers.push(WorkerHandle(Worker {
                jobs: Some(jobs),
                results: Some(results),
                handle: Some(handle),
            }));
        }
        Ok(Encoders::Pool {
            workers,
            next_in: 0,
            next_out: 0,
            in_flight: 0,
        })
    }

    /// Threads encoding (1 for inline).
    pub fn threads(&self) -> usize {
        match self {
            Encoders::Inline { .. } => 1,
            Encoders::Pool { workers, .. } => workers.len(),
        }
    }

    /// Frames submitted and not collected yet.
    pub fn in_flight(&self) -> usize {
        match self {
            Encoders::Inline { done, .. } => done.len(),
            Encoders::Pool { in_flight, .. } => *in_flight,
        }
    }

    /// True when [`submit`](Self::submit) should wait for a [`collect`](Self::collect).
    pub fn full(&self) -> bool {
        self.in_flight() >= self.threads()
    }

    /// Hands a frame over for encoding (inline: encodes it now). Returns the frame back if
    /// a worker is gone.
    pub fn submit(&mut self, pts: u64, mat: P) -> Result<(), P> {
        match self {
            Encoders::Inline { encoder, done } => {
                let t0 = Instant::now();
                let jpeg = mat.encode(encoder);
                done.push_back(Encoded {
                    pts,
                    jpeg,
                    took: t0.elapsed(),
                    mat,
                });
                Ok(())
            }
            Encoders::Pool {
                workers,
                next_in,
                in_flight,
                ..
            } => {
                let n = workers.len();
                let Some(jobs) = workers[*next_in].0.jobs.as_ref() else {
                    return Err(mat);
                };
                jobs.send(Job { pts, mat }).map_err(|e| e.0.mat)?;
                *next_in = (*next_in + 1) % n;
                *in_flight += 1;
                Ok(())
            }
        }
    }

    /// Encodes a frame now with the one inline encoder (`encode` gets it), for pictures that
    /// are not [`Picture`]s of their own (a decoder's planes, [`FrameEncoder::encode_planes`]);
    /// the result is [`collect`](Self::collect)ed in order with a default picture. False (and
    /// `encode` is not called) for a pool, whose threads take owned pictures.
    pub fn encode_inline(
        &mut self,
        pts: u64,
        encode: impl FnOnce(&mut FrameEncoder) -> Result<Vec<u8>, EncodeError>,
    ) -> bool {
        match self {
            Encoders::Inline { encoder, done } => {
                let t0 = Instant::now();
                let jpeg = encode(encoder);
                done.push_back(Encoded {
                    pts,
                    jpeg,
                    took: t0.elapsed(),
                    mat: P::default(),
                });
                true
            }
            Encoders::Pool { .. } => false,
        }
    }

    /// The oldest submitted frame, encoded (waits for it); `None` if nothing is in flight or
    /// a worker died.
    pub fn collect(&mut self) -> Option<Encoded<P>> {
        match self {
            Encoders::Inline { done, .. } => done.pop_front(),
            Encoders::Pool {
                workers,
                next_out,
                in_flight,
                ..
            } => {
                if *in_flight == 0 {
                    return None;
                }
                let out = workers[*next_out].0.results.as_ref()?.recv().ok()?;
                *next_out = (*next_out + 1) % workers.len();
                *in_flight -= 1;
                Some(out)
            }
        }
    }
}

/// How many encoder threads it takes to encode at `fps` when one frame takes `mean`.
pub fn encoders_needed(mean: Duration, frame_interval: Duration) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if mean.as_secs_f64() <= frame_interval.as_secs_f64() * 0.9 {
        return 1;
    }
    let need = (mean.as_secs_f64() / frame_interval.as_secs_f64().max(1e-6)).ceil() as usize + 1;
    need.clamp(2, MAX_ENCODERS.min(cores.max(2)))
}
