//! The camera itself: V4L2 through the `v4l` crate (memory-mapped buffers, no OpenCV).
//!
//! Not exercised on the machines this was written on (no camera, no v4l2loopback or vivid
//! module): the format choice, the conversions, the timestamps and the missing-device error
//! are unit-tested; the ioctl sequence (ENUM_FMT, S_FMT, S_PARM, REQBUFS/mmap, STREAMON,
//! DQBUF/QBUF) is the `v4l` crate's.
//!
//! Known limits of `v4l` 0.14 that a real camera could meet: it panics on a V4L2 enum value it
//! does not know (a colorspace, field order or quantization newer than its bindings) and when
//! VIDIOC_STREAMOFF fails with anything but ENODEV while the stream is dropped.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use v4l::buffer::{Flags as BufferFlags, Type};
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::video::capture::Parameters;
use v4l::{Device, Format, FourCC, Fraction};

use super::convert::{RangeTables, RawLayout, nv12_to_planar, yuyv_to_planar};
use super::device_name;
use super::formats::{
    CameraFormat, UnsupportedFormats, capture_instant, choose_format, is_tv_range,
};
use crate::media::file_source::{
    EncodeError, Encoders, FrameEncoder, YuvFrame, encoders_needed, fps_fraction,
};
use crate::media::source::{MediaItem, MediaSink, MediaSource, SourceStats, StreamFormat};
use crate::media::{MAX_FRAME_PIXELS, Subsampling};

/// Buffers the driver fills in turn.
const BUFFERS: u32 = 4;
/// How long the first frame may take (a UVC camera can take a second to start).
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one wait for a frame lasts before the stop flag is looked at again.
const POLL: Duration = Duration::from_millis(200);
/// No frame for this long: the camera counts as gone.
const STALLED: Duration = Duration::from_secs(5);
/// Frames read at open until one is usable (a camera's first JPEG may be damaged).
const FIRST_FRAME_TRIES: u32 = 5;

/// Errors opening a camera.
#[derive(Debug, thiserror::Error)]
pub enum WebcamError {
    /// The device file cannot be opened.
    #[error(
        "cannot open camera {device} ({source}; is a camera connected, and are you in the `video` group?)"
    )]
    CannotOpen {
        /// Camera index.
        index: i32,
        /// Device path.
        device: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another program holds the camera (EBUSY).
    #[error(
        "camera {device} is busy: another program is using it (close that program, or pick another camera with webcam:INDEX)"
    )]
    Busy {
        /// Device path.
        device: String,
    },
    /// The device offers no format framecast reads.
    #[error("camera {device} {formats}; pick another camera with webcam:INDEX")]
    Formats {
        /// Device path.
        device: String,
        /// What it offers.
        formats: UnsupportedFormats,
    },
    /// The device was set up but gave no frame.
    #[error("camera {device} opened but delivers no frames (is another program using it?)")]
    NoFrames {
        /// Device path.
        device: String,
    },
    /// A V4L2 call failed.
    #[error("camera {device}: cannot {what}: {source}")]
    Device {
        /// Device path.
        device: String,
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The JPEG encoder could not be set up.
    #[error(transparent)]
    Encoder(#[from] EncodeError),
}

/// What the camera is asked for (`--width/--height/--fps`), and how raw frames are encoded.
#[derive(Debug, Clone, Copy)]
pub struct WebcamOptions {
    /// Requested width in pixels (default: the camera's current).
    pub width: Option<u32>,
    /// Requested height in pixels (default: the camera's current).
    pub height: Option<u32>,
    /// Requested frame rate, frames per second.
    pub fps: Option<f64>,
    /// JPEG quality (1-100) for cameras that do not deliver MJPEG.
    pub quality: u8,
    /// JPEG chroma subsampling asked for raw cameras (never more than the camera has:
    /// [`CameraFormat::planar_subsampling`]).
    pub subsampling: Subsampling,
}

/// The camera's own JPEG in a buffer, cut after its last EOI marker (drivers may pad the
/// buffer); `None` if there is none.
fn cut_at_eoi(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9])? + 2;
    Some(&bytes[..end])
}

/// The monotonic clock now, as `Instant` reads it on Linux (CLOCK_MONOTONIC).
fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The buffer's timestamp if the driver stamps buffers on the monotonic clock.
fn buffer_time(meta: &v4l::buffer::Metadata) -> Option<Duration> {
    let monotonic = meta.flags.bits() & BufferFlags::TIMESTAMP_MASK.bits()
        == BufferFlags::TIMESTAMP_MONOTONIC.bits();
    let (sec, usec) = (meta.timestamp.sec, meta.timestamp.usec);
    (monotonic && sec >= 0 && (0..1_000_000).contains(&usec))
        .then(|| Duration::new(sec as u64, usec as u32 * 1000))
}

/// A live camera (see the module docs).
pub struct Webcam {
    device: String,
    /// Dropped before `_dev` (stops streaming, unmaps the buffers).
    stream: Stream<'static>,
    _dev: Device,
    kind: CameraFormat,
    /// Rows of a raw frame (width, height, bytes per row).
    layout: RawLayout,
    /// The planar subsampling raw frames become (`None` for MJPEG).
    planar: Option<Subsampling>,
    tables: RangeTables,
    format: StreamFormat,
    quality: u8,
}

impl std::fmt::Debug for Webcam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webcam")
            .field("device", &self.device)
            .field("kind", &self.kind)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Webcam {
    /// Opens camera `index` (/dev/videoINDEX), asks for MJPEG (else YUYV, else NV12) at the
    /// requested size and rate, and reads frames until one is usable. Errors:
    /// [`WebcamError::CannotOpen`] (no such device, no permission), [`WebcamError::Busy`],
    /// [`WebcamError::Formats`], [`WebcamError::NoFrames`], [`WebcamError::Device`].
    pub fn open(index: i32, opts: WebcamOptions) -> Result<Webcam, WebcamError> {
        Self::open_device(index, device_name(index), opts)
    }

    /// [`Webcam::open`] on a device path (`index` only names it in errors).
    fn open_device(index: i32, device: String, opts: WebcamOptions) -> Result<Webcam, WebcamError> {
        let fail = |what: &'static str| {
            let device = device.clone();
            move |source: io::Error| {
                if source.raw_os_error() == Some(libc::EBUSY) {
                    WebcamError::Busy { device }
                } else {
                    WebcamError::Device {
                        device,
                        what,
                        source,
                    }
                }
            }
        };
        let dev = Device::with_path(&device).map_err(|source| {
            if source.raw_os_error() == Some(libc::EBUSY) {
                WebcamError::Busy {
                    device: device.clone(),
                }
            } else {
                WebcamError::CannotOpen {
                    index,
                    device: device.clone(),
                    source,
                }
            }
        })?;
        let offered: Vec<[u8; 4]> = dev
            .enum_formats()
            .map_err(fail("list its formats"))?
            .iter()
            .map(|d| d.fourcc.repr)
            .collect();
        let (fourcc, _) = choose_format(&offered).map_err(|formats| WebcamError::Formats {
            device: device.clone(),
            formats,
        })?;
        let current = dev.format().map_err(fail("read its format"))?;
        let want = Format::new(
            opts.width.unwrap_or(current.width),
            opts.height.unwrap_or(current.height),
            FourCC::new(&fourcc),
        );
        // The driver picks the nearest it can; what it picked is what counts.
        let got = dev.set_format(&want).map_err(fail("set its format"))?;
        let kind =
            CameraFormat::from_fourcc(got.fourcc.repr).ok_or_else(|| WebcamError::Formats {
                device: device.clone(),
                formats: UnsupportedFormats {
                    offered: vec![got.fourcc.repr],
                },
            })?;
        if let Some(fps) = opts.fps {
            let (num, den) = fps_fraction(fps);
            // Not every camera lets its rate be set: the rate read back below is the one used.
            if let Err(e) = dev.set_params(&Parameters::new(Fraction::new(den, num))) {
                log::warn!("{device}: cannot set the frame rate to {fps}: {e}");
            }
        }
        let (fps_num, fps_den) = match dev.params().map(|p| p.interval) {
            Ok(i) if i.numerator > 0 && i.denominator > 0 => (i.denominator, i.numerator),
            _ => fps_fraction(opts.fps.unwrap_or(30.0)),
        };
        let bytes_per_pixel = if kind == CameraFormat::Yuyv { 2 } else { 1 };
        let layout = RawLayout {
            width: got.width,
            height: got.height,
            stride: (got.stride as usize).max(got.width as usize * bytes_per_pixel),
        };
        let planar = kind.planar_subsampling(opts.subsampling);
        let tables = RangeTables::new(is_tv_range(got.quantization as u32, got.colorspace as u32));
        // A bad quality fails here, not on the first frame.
        FrameEncoder::new(opts.quality)?;
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, BUFFERS)
            .map_err(fail("map its buffers"))?;
        stream.set_timeout(FIRST_FRAME_TIMEOUT);
        let mut size = (got.width, got.height);
        let mut usable = false;
        let mut scratch = YuvFrame::default();
        for _ in 0..FIRST_FRAME_TRIES {
            let (buf, meta) = match stream.next() {
                Ok(frame) => frame,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(WebcamError::NoFrames { device });
                }
                Err(e) => return Err(fail("start capturing")(e)),
            };
            let bytes = &buf[..(meta.bytesused as usize).min(buf.len())];
            if meta.flags.contains(BufferFlags::ERROR) {
                continue;
            }
            usable = match kind {
                CameraFormat::Mjpeg => {
                    let checked = cut_at_eoi(bytes)
                        .and_then(|j| crate::media::mjpeg::check_jpeg(j, MAX_FRAME_PIXELS).ok());
                    if let Some(c) = checked {
                        size = (c.width, c.height);
                    }
                    checked.is_some()
                }
                CameraFormat::Yuyv => yuyv_to_planar(
                    bytes,
                    layout,
                    planar.unwrap_or(Subsampling::Yuv422),
                    &tables,
                    &mut scratch,
                )
                .is_ok(),
                CameraFormat::Nv12 => nv12_to_planar(
                    bytes,
                    layout,
                    planar == Some(Subsampling::Gray),
                    &tables,
                    &mut scratch,
                )
                .is_ok(),
            };
            if usable {
                break;
            }
        }
        if !usable {
            return Err(WebcamError::NoFrames { device });
        }
        stream.set_timeout(POLL);
        let (width, height) = size;
        match planar {
            None => {
                log::info!("{device}: MJPEG {width}x{height}, passed through without re-encoding")
            }
            Some(s) => log::info!(
                "{device}: {} {width}x{height}, compressed from planar YUV ({s:?}) with libjpeg-turbo",
                String::from_utf8_lossy(&got.fourcc.repr)
            ),
        }
        Ok(Webcam {
            device,
            stream,
            _dev: dev,
            kind,
            layout,
            planar,
            tables,
            format: StreamFormat {
                width,
                height,
                fps_num,
                fps_den,
                audio: None,
            },
            quality: opts.quality,
        })
    }

    /// True when the camera's own JPEG is streamed without re-encoding.
    pub fn passthrough(&self) -> bool {
        self.kind == CameraFormat::Mjpeg
    }
}

impl MediaSource for Webcam {
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
        let mut encoders = match Encoders::<YuvFrame>::inline(this.quality) {
            Ok(e) => e,
            Err(e) => {
                log::error!("{}: cannot set up the JPEG encoder: {e}", this.device);
                return stats;
            }
        };
        let interval = Duration::from_nanos(
            (1_000_000_000u128 * u128::from(this.format.fps_den)
                / u128::from(this.format.fps_num.max(1))) as u64,
        );
        let (mut work, mut bytes_total, mut counted) = (Duration::ZERO, 0u64, 0u64);
        let mut waited = Duration::ZERO;
        let mut spare: Vec<YuvFrame> = Vec::new();
        let mut send = |pts: u64, jpeg: Vec<u8>, stats: &mut SourceStats| {
            stats.frames += 1;
            sink(MediaItem::Video {
                pts,
                jpeg: Bytes::from(jpeg),
            })
        };
        while !stop.load(Ordering::Relaxed) {
            let (buf, meta) = match this.stream.next() {
                Ok(frame) => frame,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    waited += POLL;
                    if waited >= STALLED {
                        log::error!("{}: the camera stopped delivering frames", this.device);
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    log::error!("{}: cannot read a frame: {e}", this.device);
                    break;
                }
            };
            waited = Duration::ZERO;
            let captured = capture_instant(Instant::now(), monotonic_now(), buffer_time(meta));
            if captured < start {
                continue; // before the stream starts
            }
            if meta.flags.contains(BufferFlags::ERROR) {
                stats.frames_dropped += 1; // the driver says the frame is damaged
                continue;
            }
            let bytes = &buf[..(meta.bytesused as usize).min(buf.len())];
            let pts = ((captured - start).as_nanos() * 90_000 / 1_000_000_000) as u64;
            let t0 = Instant::now();
            let Some(planar) = this.planar else {
                // The same check and repair as `mjpeg:` sources (proto-spec.md §5.1).
                let size = (this.format.width, this.format.height);
                let jpeg = cut_at_eoi(bytes).and_then(|j| {
                    let c = crate::media::mjpeg::check_jpeg(j, MAX_FRAME_PIXELS).ok()?;
                    ((c.width, c.height) == size).then(|| {
                        if c.needs_dht_at.is_some() {
                            stats.frames_repaired += 1;
                        }
                        crate::media::mjpeg::repaired(j, &c).into_owned()
                    })
                });
                work += t0.elapsed();
                let Some(jpeg) = jpeg else {
                    stats.frames_rejected += 1; // a damaged frame from the camera
                    continue;
                };
                counted += 1;
                bytes_total += jpeg.len() as u64;
                if !send(pts, jpeg, &mut stats) {
                    break;
                }
                continue;
            };
            let mut frame = spare.pop().unwrap_or_default();
            let converted = match this.kind {
                CameraFormat::Nv12 => nv12_to_planar(
                    bytes,
                    this.layout,
                    planar == Subsampling::Gray,
                    &this.tables,
                    &mut frame,
                ),
                _ => yuyv_to_planar(bytes, this.layout, planar, &this.tables, &mut frame),
            };
            work += t0.elapsed();
            if let Err(e) = converted {
                log::debug!("{}: {e}", this.device);
                stats.frames_dropped += 1;
                spare.push(frame);
                continue;
            }
            if let Err(frame) = encoders.submit(pts, frame) {
                spare.push(frame);
                break;
            }
            let mut gone = false;
            while encoders.full() || (encoders.threads() == 1 && encoders.in_flight() > 0) {
                let Some(done) = encoders.collect() else {
                    gone = true;
                    break;
                };
                spare.push(done.mat);
                match done.jpeg {
                    Ok(jpeg) => {
                        work += done.took;
                        counted += 1;
                        bytes_total += jpeg.len() as u64;
                        if !send(done.pts, jpeg, &mut stats) {
                            gone = true;
                            break;
                        }
                    }
                    Err(e) => {
                        log::warn!("{}: JPEG encoding failed: {e}", this.device);
                        stats.frames_dropped += 1;
                    }
                }
            }
            if gone {
                break;
            }
            if counted == 30 && encoders.threads() == 1 {
                let need = encoders_needed(work / counted as u32, interval);
                if need > 1 {
                    match Encoders::pool(need, this.quality) {
                        Ok(p) => encoders = p,
                        Err(e) => log::warn!("{}: {e}", this.device),
                    }
                }
            }
            spare.truncate(8);
        }
        if counted > 0 {
            stats.mean_encode_ms = work.as_secs_f64() * 1e3 / counted as f64;
            stats.mean_jpeg_bytes = bytes_total as f64 / counted as f64;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> WebcamOptions {
        WebcamOptions {
            width: Some(640),
            height: Some(480),
            fps: Some(30.0),
            quality: 80,
            subsampling: Subsampling::Yuv420,
        }
    }

    #[test]
    fn no_camera_is_a_clear_error() {
        let err = Webcam::open(63, opts()).unwrap_err();
        assert!(
            matches!(err, WebcamError::CannotOpen { index: 63, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("/dev/video63"), "{msg}");
        assert!(msg.contains("is a camera connected"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn a_device_that_is_not_a_camera_is_a_clear_error() {
        // /dev/null opens but answers no V4L2 ioctl: no formats, said so in one line.
        let err = Webcam::open_device(0, "/dev/null".into(), opts()).unwrap_err();
        assert!(matches!(err, WebcamError::Formats { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("no video capture formats"), "{msg}");
        assert!(msg.starts_with("camera /dev/null offers none"), "{msg}");
        assert!(
            msg.ends_with("pick another camera with webcam:INDEX"),
            "{msg}"
        );
    }

    #[test]
    fn the_jpeg_is_cut_at_its_last_eoi() {
        let bytes = [0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9, 0, 0, 0];
        assert_eq!(cut_at_eoi(&bytes), Some(&bytes[..7]));
        assert_eq!(cut_at_eoi(&bytes[..5]), None);
    }

    #[test]
    fn monotonic_buffer_stamps_are_read() {
        let mut meta = v4l::buffer::Metadata {
            timestamp: v4l::Timestamp::new(12, 345_678),
            ..Default::default()
        };
        assert_eq!(buffer_time(&meta), None, "no clock flag: not trusted");
        meta.flags = BufferFlags::TIMESTAMP_MONOTONIC;
        assert_eq!(buffer_time(&meta), Some(Duration::new(12, 345_678_000)));
        meta.timestamp.usec = 1_000_000;
        assert_eq!(buffer_time(&meta), None);
        let a = monotonic_now();
        assert!(monotonic_now() >= a);
    }
}
