//! JPEG encoding of decoded frames: one [`FrameEncoder`] (turbojpeg straight from planar YUV,
//! [`YuvFrame`]: files and raw cameras), and [`Encoders`], which runs it inline or on a small
//! pool of threads when one cannot keep up, output kept in order.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use turbojpeg::Subsamp;

use super::strips;
use super::yuv::{Range, YuvFrame, YuvPlanes, plane_sizes, stretch_rows, to_turbo};
use crate::media::Subsampling;

/// Most encoder threads.
const MAX_ENCODERS: usize = 4;

/// Errors encoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// turbojpeg failed.
    #[error("JPEG encoding failed: {0}")]
    Jpeg(#[from] turbojpeg::Error),
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

/// A turbojpeg compressor handle with the settings the `turbojpeg` crate has no setter for
/// (the fast forward DCT), and one output buffer kept for all frames.
struct YuvCompressor {
    handle: turbojpeg::raw::tjhandle,
    /// The output buffer (`tj3Alloc`ed, `buf_len` bytes: the worst case of the largest shape
    /// compressed so far).
    buf: *mut u8,
    buf_len: turbojpeg::raw::size_t,
    /// A strip's stretched planes ([`strips`](super::strips)), kept for all frames.
    strip: Vec<u8>,
}

// SAFETY: a turbojpeg handle and its buffer have no thread affinity; both are owned here and
// used by one thread at a time (`&mut self`).
unsafe impl Send for YuvCompressor {}

impl YuvCompressor {
    fn new(quality: u8, subsamp: Subsamp) -> Result<YuvCompressor, EncodeError> {
        use turbojpeg::raw;
        // SAFETY: tj3Init has no preconditions; a null handle is checked below.
        let handle = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_COMPRESS as i32) };
        if handle.is_null() {
            return Err(EncodeError::Jpeg(turbojpeg::Error::Null));
        }
        let mut c = YuvCompressor {
            handle,
            buf: std::ptr::null_mut(),
            buf_len: 0,
            strip: Vec::new(),
        };
        c.set(raw::TJPARAM_TJPARAM_QUALITY, i32::from(quality))?;
        c.set(raw::TJPARAM_TJPARAM_SUBSAMP, subsamp as i32)?;
        // The fast integer forward DCT, as GStreamer's jpegenc uses by default: 13 % less
        // CPU per 720p frame at quality 80 than the accurate one, files within 0.1 %.
        c.set(raw::TJPARAM_TJPARAM_FASTDCT, 1)?;
        c.set(raw::TJPARAM_TJPARAM_NOREALLOC, 1)?;
        Ok(c)
    }

    fn error(&self) -> EncodeError {
        // SAFETY: the handle is valid; turbojpeg returns a NUL-terminated message it owns.
        let msg = unsafe { std::ffi::CStr::from_ptr(turbojpeg::raw::tj3GetErrorStr(self.handle)) };
        EncodeError::Jpeg(turbojpeg::Error::TurboJpegError(
            msg.to_string_lossy().into_owned(),
        ))
    }

    fn set(&mut self, param: turbojpeg::raw::TJPARAM, value: i32) -> Result<(), EncodeError> {
        // SAFETY: the handle is valid; tj3Set checks the parameter and value.
        if unsafe { turbojpeg::raw::tj3Set(self.handle, param as i32, value) } != 0 {
            return Err(self.error());
        }
        Ok(())
    }

    /// Makes the output buffer hold the worst case of a `width x height` picture.
    fn reserve(&mut self, width: u32, height: u32, subsamp: i32) -> Result<(), EncodeError> {
        use turbojpeg::raw;
        // The output buffer holds the worst case of this shape (turbojpeg's own bound), so
        // turbojpeg never reallocates it (TJPARAM_NOREALLOC) and one serves every frame.
        // SAFETY: plain arithmetic on the frame's shape (0 if turbojpeg refuses it).
        let worst = unsafe { raw::tj3JPEGBufSize(width as i32, height as i32, subsamp) };
        if worst == 0 {
            return Err(self.error());
        }
        if self.buf_len < worst {
            // SAFETY: `buf` is null or turbojpeg's; tj3Alloc returns null or `worst` bytes.
            unsafe {
                raw::tj3Free(self.buf.cast());
                self.buf = raw::tj3Alloc(worst).cast();
            }
            self.buf_len = if self.buf.is_null() { 0 } else { worst };
            if self.buf.is_null() {
                return Err(EncodeError::Jpeg(turbojpeg::Error::Null));
            }
        }
        Ok(())
    }

    /// Compresses a `width x height` picture whose planes start at `planes` with `strides`
    /// (bytes); the JPEG is in the output buffer, returned.
    ///
    /// # Safety
    /// Each plane (only the first for gray) must hold the rows turbojpeg reads for this shape
    /// ([`plane_sizes`]) at its stride, a positive stride at least the plane's width, and
    /// [`reserve`](Self::reserve) must have been called for at least this shape.
    unsafe fn compress_raw(
        &mut self,
        planes: [*const u8; 3],
        strides: [i32; 3],
        width: u32,
        height: u32,
    ) -> Result<&[u8], EncodeError> {
        let mut size = self.buf_len;
        // SAFETY: each plane holds the rows of a `width x height` picture at its stride
        // (the caller's promise); `buf` holds `buf_len` bytes, at least the worst case of
        // this shape, and turbojpeg (NOREALLOC) writes within it and sets `size` to the
        // JPEG's length.
        let r = unsafe {
            turbojpeg::raw::tj3CompressFromYUVPlanes8(
                self.handle,
                planes.as_ptr(),
                width as i32,
                strides.as_ptr(),
                height as i32,
                &mut self.buf,
                &mut size,
            )
        };
        if r != 0 {
            return Err(self.error());
        }
        // SAFETY: turbojpeg wrote `size` (at most `buf_len`) bytes at `buf`.
        Ok(unsafe { std::slice::from_raw_parts(self.buf, size.min(self.buf_len) as usize) })
    }

    /// Compresses `p` (consistent, see [`YuvPlanes::is_consistent`]) into a new `Vec`: in one
    /// call, reading the planes where they lie, when they are full range; stretched and
    /// compressed a strip at a time ([`strips`](super::strips)) when they are TV range.
    fn compress(&mut self, p: &YuvPlanes) -> Result<Vec<u8>, EncodeError> {
        let subsamp = to_turbo(p.subsampling) as i32;
        self.set(turbojpeg::raw::TJPARAM_TJPARAM_SUBSAMP, subsamp)?;
        if !p.tv_range {
            self.reserve(p.width, p.height, subsamp)?;
            let ptrs = p.planes.map(|(d, _)| d.as_ptr());
            let strides = p.planes.map(|(_, s)| s as i32);
            // SAFETY: `p` is consistent (checked by every caller): each plane holds its rows
            // at a stride between the plane's width and i32::MAX; reserved just above.
            let jpeg = unsafe { self.compress_raw(ptrs, strides, p.width, p.height)? };
            return Ok(jpeg.to_vec());
        }
        // The strip buffer is kept for every frame; lent out while the strips are made.
        let mut strip = std::mem::take(&mut self.strip);
        let jpeg = self.compress_strips(p, subsamp, &mut strip);
        self.strip = strip;
        jpeg
    }

    /// Compresses TV-range `p` (consistent) a strip at a time, each stretched into `strip`
    /// just before it is compressed, joined at restart markers ([`strips`](super::strips)).
    fn compress_strips(
        &mut self,
        p: &YuvPlanes,
        subsamp: i32,
        strip: &mut Vec<u8>,
    ) -> Result<Vec<u8>, EncodeError> {
        let (w, h) = (p.width as usize, p.height as usize);
        let (mcu_w, mcu_h) = mcu_size(p.subsampling);
        let rows = strips::strip_rows(w, mcu_w, mcu_h);
        let interval = (h > rows).then(|| (w.div_ceil(mcu_w) * rows / mcu_h) as u16);
        self.reserve(p.width, rows.min(h) as u32, subsamp)?;
        let mut joiner: Option<strips::Joiner> = None;
        for y0 in (0..h).step_by(rows) {
            let strip_h = rows.min(h - y0);
            // The strip's planes, packed one after another in `strip`, stretched.
            let sizes = plane_sizes(p.width, strip_h as u32, p.subsampling);
            strip.resize(sizes.iter().map(|(pw, ph)| pw * ph).sum(), 0);
            let mut ptrs = [std::ptr::null::<u8>(); 3];
            let mut strides = [0i32; 3];
            let mut rest = &mut strip[..];
            for (i, &(pw, ph)) in sizes.iter().enumerate() {
                let (dst, tail) = std::mem::take(&mut rest).split_at_mut(pw * ph);
                if pw * ph > 0 {
                    // The strip's first row in this plane: y0 is a whole number of MCU rows,
                    // so it divides by the vertical subsampling (2 for 4:2:0 chroma).
                    let chroma = i > 0;
                    let first = if chroma && p.subsampling == Subsampling::Yuv420 {
                        y0 / 2
                    } else {
                        y0
                    };
                    let range = if chroma {
                        Range::TvChroma
                    } else {
                        Range::TvLuma
                    };
                    let (src, stride) = p.planes[i];
                    stretch_rows(dst, src, stride, pw, first..first + ph, range);
                }
                ptrs[i] = dst.as_ptr();
                strides[i] = pw as i32;
                rest = tail;
            }
            // SAFETY: the strip's planes were just filled, packed (stride = plane width), to
            // the sizes `plane_sizes` gives for this strip; reserved above for the tallest.
            let jpeg = unsafe { self.compress_raw(ptrs, strides, p.width, strip_h as u32)? };
            match joiner.as_mut() {
                None => {
                    let guess = jpeg.len() * h / strip_h;
                    joiner = Some(strips::Joiner::first(
                        jpeg,
                        p.height as u16,
                        interval,
                        guess,
                    )?);
                }
                Some(j) => j.push(jpeg)?,
            }
        }
        joiner
            .map(strips::Joiner::finish)
            .ok_or(EncodeError::BadYuv {
                width: p.width,
                height: p.height,
                len: 0,
            })
    }
}

/// Width and height in pixels of a JPEG MCU (one block of each component) at `subsampling`.
fn mcu_size(subsampling: Subsampling) -> (usize, usize) {
    match subsampling {
        Subsampling::Yuv420 => (16, 16),
        Subsampling::Yuv422 => (16, 8),
        Subsampling::Yuv444 | Subsampling::Gray => (8, 8),
    }
}

impl Drop for YuvCompressor {
    fn drop(&mut self) {
        // SAFETY: both were made by turbojpeg and are freed once, here.
        unsafe {
            turbojpeg::raw::tj3Free(self.buf.cast());
            turbojpeg::raw::tj3Destroy(self.handle);
        }
    }
}

/// Compresses frames with turbojpeg: planar YUV with no colour conversion, the fast forward
/// DCT (as GStreamer's jpegenc), standard Huffman tables (not optimised), baseline.
pub struct FrameEncoder {
    compressor: YuvCompressor,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncoder").finish_non_exhaustive()
    }
}

impl FrameEncoder {
    /// An encoder at `quality` (1..=100) and chroma `subsampling`.
    pub fn new(quality: u8, subsampling: Subsampling) -> Result<FrameEncoder, EncodeError> {
        if !(1..=100).contains(&quality) {
            return Err(EncodeError::Quality(quality));
        }
        Ok(FrameEncoder {
            compressor: YuvCompressor::new(quality, to_turbo(subsampling))?,
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
        self.compressor.compress(&frame.as_planes())
    }

    /// Compresses planes where they lie (a decoder's frame): full-range planes in one
    /// turbojpeg call, TV-range ones stretched to full range and compressed a strip at a time,
    /// joined at restart markers (the JPEG then has a DRI; [`strips`](super::strips)). The JPEG
    /// has the planes' subsampling. Errors if the planes are inconsistent
    /// ([`YuvPlanes::is_consistent`]) or turbojpeg fails.
    pub fn encode_planes(&mut self, planes: &YuvPlanes) -> Result<Vec<u8>, EncodeError> {
        if !planes.is_consistent() {
            return Err(EncodeError::BadYuv {
                width: planes.width,
                height: planes.height,
                len: planes.planes[0].0.len(),
            });
        }
        self.compressor.compress(planes)
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
    /// besides: the strip-wise stretch of a TV-range frame).
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
    pub fn inline(quality: u8, subsampling: Subsampling) -> Result<Encoders<P>, EncodeError> {
        Ok(Encoders::Inline {
            encoder: Box::new(FrameEncoder::new(quality, subsampling)?),
            done: VecDeque::new(),
        })
    }

    /// `threads` encoder threads (at least 2).
    pub fn pool(
        threads: usize,
        quality: u8,
        subsampling: Subsampling,
    ) -> Result<Encoders<P>, EncodeError> {
        let mut workers = Vec::new();
        for i in 0..threads.max(2) {
            let mut encoder = FrameEncoder::new(quality, subsampling)?;
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
