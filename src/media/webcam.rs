//! `serve --source webcam[:INDEX]`: a live camera through OpenCV's `VideoCapture` (V4L2 on
//! Linux).
//!
//! Most USB cameras deliver MJPEG themselves. The source asks for MJPG at the requested size
//! and rate and, with `CAP_PROP_CONVERT_RGB` off, the V4L2 backend hands out the camera's own
//! JPEG bytes (a 1 x N 8-bit `Mat`): those go on the wire as they are, with no decode and
//! re-encode (µStreamer's trick; it saves most of the CPU). Each such frame is checked first
//! (starts with FF D8, turbojpeg reads its header, same size as the first). A camera that
//! does not deliver MJPEG gives BGR frames, encoded like a file's ([`FrameEncoder`], a pool
//! of threads when one cannot keep up).
//!
//! Timestamps are the capture time on the 90 kHz clock from the start.
//!
//! The camera itself needs the `opencv` and `jpeg` features; [`parse_webcam_spec`] and
//! [`device_name`] are always there (the CLI names the device in its errors).

/// Parses `webcam` or `webcam:INDEX`; `None` if `spec` names another source.
pub fn parse_webcam_spec(spec: &str) -> Option<Result<i32, String>> {
    if spec == "webcam" {
        return Some(Ok(0));
    }
    let rest = spec.strip_prefix("webcam:")?;
    Some(
        rest.parse::<i32>()
            .ok()
            .filter(|i| (0..=1023).contains(i))
            .ok_or_else(|| format!("camera index {rest:?}: expected a number 0-1023")),
    )
}

/// The device file of camera `index`.
pub fn device_name(index: i32) -> String {
    if cfg!(target_os = "linux") {
        format!("/dev/video{index}")
    } else {
        format!("#{index}")
    }
}

#[cfg(all(feature = "opencv", feature = "jpeg"))]
pub use cam::*;

#[cfg(all(feature = "opencv", feature = "jpeg"))]
mod cam {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use opencv::core::{Mat, MatTraitConst, MatTraitConstManual};
    use opencv::prelude::{VideoCaptureTrait, VideoCaptureTraitConst};
    use opencv::videoio::{self, VideoCapture, VideoWriter};

    use super::device_name;
    use crate::media::file_source::{
        EncodeError, Encoders, encoders_needed, fps_fraction, quiet_opencv,
    };
    use crate::media::source::{MediaItem, MediaSink, MediaSource, SourceStats, StreamFormat};
    use crate::media::{JpegDecoder, Subsampling};

    /// Consecutive failed reads after which the camera counts as gone.
    const MAX_READ_FAILURES: u32 = 50;

    /// Errors opening a camera.
    #[derive(Debug, thiserror::Error)]
    pub enum WebcamError {
        /// OpenCV could not open the device.
        #[error(
            "cannot open camera {device} (is a camera connected, and are you in the `video` group?)"
        )]
        CannotOpen {
            /// Camera index.
            index: i32,
            /// Device path (or "camera N" off Linux).
            device: String,
        },
        /// The device opened but gave no frame.
        #[error("camera {device} opened but delivers no frames (is another program using it?)")]
        NoFrames {
            /// Device path.
            device: String,
        },
        /// An OpenCV call failed.
        #[error("camera {device}: OpenCV failed to {what}: {source}")]
        OpenCv {
            /// Device path.
            device: String,
            /// What was being done.
            what: &'static str,
            /// OpenCV's error.
            #[source]
            source: opencv::Error,
        },
        /// The JPEG encoder could not be set up.
        #[error(transparent)]
        Encoder(#[from] EncodeError),
    }

    /// What the camera is asked for (`--width/--height/--fps`), and how to encode.
    #[derive(Debug, Clone, Copy)]
    pub struct WebcamOptions {
        /// Requested width.
        pub width: Option<u32>,
        /// Requested height.
        pub height: Option<u32>,
        /// Requested frame rate.
        pub fps: Option<f64>,
        /// JPEG quality for cameras that do not deliver MJPEG.
        pub quality: u8,
        /// JPEG chroma subsampling for cameras that do not deliver MJPEG.
        pub subsampling: Subsampling,
    }

    /// The size of `jpeg` if it starts like a JPEG and turbojpeg can read its header.
    fn jpeg_size(decoder: &mut JpegDecoder, jpeg: &[u8]) -> Option<(u32, u32)> {
        if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
            return None;
        }
        decoder.read_header(jpeg).ok().map(|i| (i.width, i.height))
    }

    /// The camera's JPEG in a raw frame, cut after its last EOI marker (drivers may pad the
    /// buffer); `None` if the frame is not a single-row byte buffer.
    fn raw_jpeg(mat: &Mat) -> Option<&[u8]> {
        if mat.typ() != opencv::core::CV_8UC1 || mat.rows() != 1 {
            return None;
        }
        let bytes = mat.data_bytes().ok()?;
        let end = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9])? + 2;
        Some(&bytes[..end])
    }

    /// A live camera (see the module docs).
    pub struct Webcam {
        device: String,
        cap: VideoCapture,
        format: StreamFormat,
        /// The camera's JPEG goes out as it is.
        passthrough: bool,
        quality: u8,
        subsampling: Subsampling,
    }

    impl std::fmt::Debug for Webcam {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Webcam")
                .field("device", &self.device)
                .field("format", &self.format)
                .field("passthrough", &self.passthrough)
                .finish_non_exhaustive()
        }
    }

    impl Webcam {
        /// Opens camera `index`, asks for MJPEG at the requested size and rate, and reads one
        /// frame to learn what it delivers. No camera: [`WebcamError::CannotOpen`].
        pub fn open(index: i32, opts: WebcamOptions) -> Result<Webcam, WebcamError> {
            let device = device_name(index);
            let ocv = |what| {
                let device = device.clone();
                move |source| WebcamError::OpenCv {
                    device,
                    what,
                    source,
                }
            };
            let api = if cfg!(target_os = "linux") {
                videoio::CAP_V4L2
            } else {
                videoio::CAP_ANY
            };
            let mut cap = quiet_opencv(|| VideoCapture::new(index, api)).map_err(ocv("open"))?;
            if !cap.is_opened().map_err(ocv("open"))? {
                return Err(WebcamError::CannotOpen { index, device });
            }
            // Ask; the camera picks what it can. Each `set` may fail on some drivers: what the
            // camera really delivers is read back below.
            let mjpg = VideoWriter::fourcc('M', 'J', 'P', 'G').map_err(ocv("make a FOURCC"))?;
            let _ = cap.set(videoio::CAP_PROP_FOURCC, f64::from(mjpg));
            if let Some(w) = opts.width {
                let _ = cap.set(videoio::CAP_PROP_FRAME_WIDTH, f64::from(w));
            }
            if let Some(h) = opts.height {
                let _ = cap.set(videoio::CAP_PROP_FRAME_HEIGHT, f64::from(h));
            }
            if let Some(fps) = opts.fps {
                let _ = cap.set(videoio::CAP_PROP_FPS, fps);
            }
            let fourcc = cap.get(videoio::CAP_PROP_FOURCC).unwrap_or(0.0) as i64 as i32;
            let mut decoder = JpegDecoder::new().ok();
            let mut frame = Mat::default();
            let mut passthrough = None;
            if fourcc == mjpg && matches!(cap.set(videoio::CAP_PROP_CONVERT_RGB, 0.0), Ok(true)) {
                if let (Ok(true), Some(dec)) = (cap.read(&mut frame), decoder.as_mut()) {
                    passthrough = raw_jpeg(&frame).and_then(|j| jpeg_size(dec, j));
                }
                if passthrough.is_none() {
                    // Not raw JPEG after all: let OpenCV decode.
                    let _ = cap.set(videoio::CAP_PROP_CONVERT_RGB, 1.0);
                }
            }
            let (width, height) = match passthrough {
                Some(size) => size,
                None => {
                    let mut tries = 0;
                    while !matches!(cap.read(&mut frame), Ok(true)) || frame.empty() {
                        tries += 1;
                        if tries > 10 {
                            return Err(WebcamError::NoFrames { device });
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if frame.typ() != opencv::core::CV_8UC3 {
                        return Err(WebcamError::OpenCv {
                            device,
                            what: "deliver BGR frames",
                            source: opencv::Error::new(0, format!("frame type {}", frame.typ())),
                        });
                    }
                    (frame.cols() as u32, frame.rows() as u32)
                }
            };
            let fps = cap.get(videoio::CAP_PROP_FPS).unwrap_or(0.0);
            let fps = if fps > 0.0 {
                fps
            } else {
                opts.fps.unwrap_or(30.0)
            };
            let (fps_num, fps_den) = fps_fraction(fps);
            // Make one encoder now: a bad quality fails here.
            crate::media::file_source::FrameEncoder::new(opts.quality, opts.subsampling)?;
            if passthrough.is_some() {
                log::info!("{device}: MJPEG {width}x{height}, passed through without re-encoding");
            } else {
                log::info!("{device}: {width}x{height} BGR, encoded with turbojpeg");
            }
            Ok(Webcam {
                device,
                cap,
                format: StreamFormat {
                    width,
                    height,
                    fps_num,
                    fps_den,
                    audio: None,
                },
                passthrough: passthrough.is_some(),
                quality: opts.quality,
                subsampling: opts.subsampling,
            })
        }

        /// True when the camera's own JPEG is streamed without re-encoding.
        pub fn passthrough(&self) -> bool {
            self.passthrough
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
            let mut encoders = match Encoders::inline(this.quality, this.subsampling) {
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
            let mut failures = 0u32;
            let mut spare: Vec<Mat> = Vec::new();
            let mut send = |pts: u64, jpeg: Vec<u8>, stats: &mut SourceStats| {
                stats.frames += 1;
                sink(MediaItem::Video {
                    pts,
                    jpeg: Bytes::from(jpeg),
                })
            };
            while !stop.load(Ordering::Relaxed) {
                let mut mat = spare.pop().unwrap_or_default();
                let ok = matches!(this.cap.read(&mut mat), Ok(true)) && !mat.empty();
                let now = Instant::now();
                if !ok {
                    failures += 1;
                    if failures >= MAX_READ_FAILURES {
                        log::error!("{}: the camera stopped delivering frames", this.device);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                failures = 0;
                if now < start {
                    spare.push(mat); // before the stream starts
                    continue;
                }
                let pts = ((now - start).as_nanos() * 90_000 / 1_000_000_000) as u64;
                if this.passthrough {
                    let t0 = Instant::now();
                    // The same check and repair as `mjpeg:` sources (proto-spec.md §5.1).
                    let jpeg = raw_jpeg(&mat).and_then(|j| {
                        let c = crate::media::mjpeg::check_jpeg(j, crate::media::MAX_FRAME_PIXELS)
                            .ok()?;
                        ((c.width, c.height) == (this.format.width, this.format.height)).then(
                            || {
                                if c.needs_dht_at.is_some() {
                                    stats.frames_repaired += 1;
                                }
                                crate::media::mjpeg::repaired(j, &c).into_owned()
                            },
                        )
                    });
                    work += t0.elapsed();
                    spare.push(mat);
                    let Some(jpeg) = jpeg else {
                        stats.frames_dropped += 1; // a damaged frame from the camera
                        continue;
                    };
                    counted += 1;
                    bytes_total += jpeg.len() as u64;
                    if !send(pts, jpeg, &mut stats) {
                        break;
                    }
                    continue;
                }
                if let Err(mat) = encoders.submit(pts, mat) {
                    spare.push(mat);
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
                        match Encoders::pool(need, this.quality, this.subsampling) {
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
            assert!(msg.contains(&device_name(63)), "{msg}");
            assert!(msg.contains("is a camera connected"), "{msg}");
        }

        #[test]
        fn raw_jpeg_is_cut_at_eoi() {
            let mut bytes = vec![0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9, 0, 0, 0];
            let m = Mat::from_slice(&bytes).unwrap().try_clone().unwrap();
            assert_eq!(raw_jpeg(&m), Some(&bytes[..7]));
            bytes.truncate(5);
            let m = Mat::from_slice(&bytes).unwrap().try_clone().unwrap();
            assert_eq!(raw_jpeg(&m), None);
            let mut dec = JpegDecoder::new().unwrap();
            assert_eq!(jpeg_size(&mut dec, &[0xFF, 0xD8, 0xFF, 0xD9]), None);
            let jpeg = crate::media::JpegEncoder::new(80, Subsampling::Yuv420)
                .unwrap()
                .encode_rgb(&crate::media::VideoFrameRgb::black(32, 16))
                .unwrap();
            assert_eq!(jpeg_size(&mut dec, &jpeg), Some((32, 16)));
        }
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse_webcam_spec("webcam"), Some(Ok(0)));
        assert_eq!(parse_webcam_spec("webcam:2"), Some(Ok(2)));
        assert!(matches!(parse_webcam_spec("webcam:x"), Some(Err(_))));
        assert!(matches!(parse_webcam_spec("webcam:-1"), Some(Err(_))));
        assert_eq!(parse_webcam_spec("test"), None);
    }
}
