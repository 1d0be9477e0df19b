//! `serve --source webcam[:INDEX]`: a live camera, captured through V4L2 directly (the `v4l`
//! crate: memory-mapped buffers; no OpenCV, whose `videoio` module alone pulls some 240 shared
//! libraries into the binary).
//!
//! - MJPEG first: most USB cameras compress themselves. Their JPEGs go on the wire byte for
//!   byte after the check and repair every pass-through source gets (proto-spec.md §5.1:
//!   SOI/EOI, header size within bounds and equal to the stream's, standard Huffman tables
//!   inserted when the camera leaves them out), with no decode and re-encode (µStreamer's
//!   trick; it saves most of the CPU).
//! - Otherwise raw YUYV (4:2:2) or NV12 (4:2:0), made planar in one pass (`convert`) and
//!   compressed by libjpeg-turbo's YUV compression like a file's frames
//!   ([`FrameEncoder::encode_yuv`](crate::media::file_source::FrameEncoder::encode_yuv), a pool
//!   of threads when one cannot keep up): no BGR anywhere. Any other format is refused by name.
//! - Timestamps: the capture time on the 90 kHz clock from the start: the driver's buffer
//!   timestamp when it is on the monotonic clock (UVC stamps the start of the frame), else the
//!   time the frame was dequeued.
//!
//! Capture itself is untested here (no camera, and no v4l2loopback or vivid module on the
//! build machines): the format choice, the conversions, the timestamps and the errors for a
//! missing device or one that is not a camera are unit-tested.
//!
//! `formats` and `convert` need the `jpeg` and `ffmpeg` features (the encoder and
//! [`YuvFrame`](crate::media::file_source::YuvFrame) live with the file source); the camera
//! itself (`capture`) needs the `webcam` feature, Linux only. [`parse_webcam_spec`] and
//! [`device_name`] are always there (the CLI names the device in its errors).

#[cfg(all(feature = "jpeg", feature = "ffmpeg"))]
pub mod convert;
#[cfg(all(feature = "jpeg", feature = "ffmpeg"))]
pub mod formats;

#[cfg(all(target_os = "linux", feature = "webcam"))]
mod capture;
#[cfg(all(target_os = "linux", feature = "webcam"))]
pub use capture::{Webcam, WebcamError, WebcamOptions};

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
