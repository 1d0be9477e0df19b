//! Which of a camera's pixel formats to ask for, what a raw format becomes on its way to
//! JPEG, and when a frame was captured. Pure functions: the V4L2 calls are in `capture`.

use std::time::{Duration, Instant};

use crate::media::Subsampling;

/// A pixel format framecast reads from a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraFormat {
    /// The camera's own JPEGs (V4L2 `MJPG` or `JPEG`): passed through as they are, after the
    /// check of proto-spec.md §5.1.
    Mjpeg,
    /// Packed 4:2:2 (`YUYV`: Y0 Cb Y1 Cr), made planar.
    Yuyv,
    /// 4:2:0 with a Y plane and an interleaved CbCr plane (`NV12`), made planar.
    Nv12,
}

impl CameraFormat {
    /// The format a V4L2 FOURCC names, `None` if framecast does not read it.
    pub fn from_fourcc(fourcc: [u8; 4]) -> Option<CameraFormat> {
        match &fourcc {
            b"MJPG" | b"JPEG" => Some(CameraFormat::Mjpeg),
            b"YUYV" => Some(CameraFormat::Yuyv),
            b"NV12" => Some(CameraFormat::Nv12),
            _ => None,
        }
    }

    /// Preference order when a camera offers several: MJPEG needs no encoding at all, YUYV
    /// carries more chroma than NV12.
    fn rank(self) -> u8 {
        match self {
            CameraFormat::Mjpeg => 0,
            CameraFormat::Yuyv => 1,
            CameraFormat::Nv12 => 2,
        }
    }

    /// The subsampling the planar frame gets when the JPEG is asked to be `requested`:
    /// the camera's own when more is asked (no chroma is made up), 4:2:0 from YUYV when
    /// 4:2:0 is asked, gray when gray is asked. `None` for MJPEG (passed through).
    pub fn planar_subsampling(self, requested: Subsampling) -> Option<Subsampling> {
        match (self, requested) {
            (CameraFormat::Mjpeg, _) => None,
            (_, Subsampling::Gray) => Some(Subsampling::Gray),
            (CameraFormat::Yuyv, Subsampling::Yuv420) => Some(Subsampling::Yuv420),
            (CameraFormat::Yuyv, _) => Some(Subsampling::Yuv422),
            (CameraFormat::Nv12, _) => Some(Subsampling::Yuv420),
        }
    }
}

/// A camera offers none of the formats framecast reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("offers none of the formats framecast reads (MJPEG, YUYV, NV12){}", offered_list(.offered))]
pub struct UnsupportedFormats {
    /// The FOURCCs it offers (empty: none at all, as on a camera's metadata node).
    pub offered: Vec<[u8; 4]>,
}

fn offered_list(offered: &[[u8; 4]]) -> String {
    if offered.is_empty() {
        return ": it lists no video capture formats (a camera's metadata node?)".into();
    }
    let names: Vec<String> = offered
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim_end().to_string())
        .collect();
    format!(": it offers {}", names.join(", "))
}

/// The FOURCC to ask for among those a camera lists (VIDIOC_ENUM_FMT), best first: MJPEG,
/// then YUYV, then NV12 (see [`CameraFormat`]).
pub fn choose_format(offered: &[[u8; 4]]) -> Result<([u8; 4], CameraFormat), UnsupportedFormats> {
    offered
        .iter()
        .filter_map(|&f| CameraFormat::from_fourcc(f).map(|k| (f, k)))
        .min_by_key(|(_, k)| k.rank())
        .ok_or_else(|| UnsupportedFormats {
            offered: offered.to_vec(),
        })
}

/// Whether a raw frame's samples are "TV range" (Y 16-235, Cb/Cr 16-240) and need stretching
/// to JPEG's full range: V4L2's quantization field (0 default, 1 full, 2 limited); the default
/// for Y'CbCr formats is limited, except in the JPEG colorspace (7).
pub fn is_tv_range(quantization: u32, colorspace: u32) -> bool {
    match quantization {
        1 => false,
        2 => true,
        _ => colorspace != 7,
    }
}

/// A buffer stamped this long or longer before it was dequeued counts as unstamped (its
/// driver's clock is not the monotonic clock after all).
const MAX_BUFFER_AGE: Duration = Duration::from_secs(1);

/// When a frame was captured, as an `Instant`: `arrival` (when it was dequeued) moved back
/// by the buffer's age, if the driver stamped it on the monotonic clock (`buffer_ts`, from
/// `V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC`; `mono_now` read next to `arrival`). No stamp, or one
/// in the future or over a second old: `arrival`.
pub fn capture_instant(
    arrival: Instant,
    mono_now: Duration,
    buffer_ts: Option<Duration>,
) -> Instant {
    buffer_ts
        .and_then(|ts| mono_now.checked_sub(ts))
        .filter(|age| *age < MAX_BUFFER_AGE)
        .and_then(|age| arrival.checked_sub(age))
        .unwrap_or(arrival)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mjpeg_is_preferred_then_yuyv_then_nv12() {
        let all = [*b"NV12", *b"YUYV", *b"MJPG"];
        assert_eq!(choose_format(&all), Ok((*b"MJPG", CameraFormat::Mjpeg)));
        assert_eq!(
            choose_format(&[*b"NV12", *b"JPEG"]),
            Ok((*b"JPEG", CameraFormat::Mjpeg))
        );
        assert_eq!(
            choose_format(&[*b"NV12", *b"H264", *b"YUYV"]),
            Ok((*b"YUYV", CameraFormat::Yuyv))
        );
        assert_eq!(
            choose_format(&[*b"GREY", *b"NV12"]),
            Ok((*b"NV12", CameraFormat::Nv12))
        );
    }

    #[test]
    fn other_formats_are_refused_by_name() {
        let err = choose_format(&[*b"H264", *b"RGB3"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "offers none of the formats framecast reads (MJPEG, YUYV, NV12): it offers H264, RGB3"
        );
        let err = choose_format(&[]).unwrap_err();
        assert!(
            err.to_string().contains("no video capture formats"),
            "{err}"
        );
    }

    #[test]
    fn raw_formats_keep_their_chroma_at_most() {
        use CameraFormat::*;
        use Subsampling::*;
        assert_eq!(Mjpeg.planar_subsampling(Yuv420), None);
        assert_eq!(Yuyv.planar_subsampling(Yuv420), Some(Yuv420));
        assert_eq!(Yuyv.planar_subsampling(Yuv422), Some(Yuv422));
        assert_eq!(Yuyv.planar_subsampling(Yuv444), Some(Yuv422));
        assert_eq!(Yuyv.planar_subsampling(Gray), Some(Gray));
        assert_eq!(Nv12.planar_subsampling(Yuv444), Some(Yuv420));
        assert_eq!(Nv12.planar_subsampling(Yuv420), Some(Yuv420));
        assert_eq!(Nv12.planar_subsampling(Gray), Some(Gray));
    }

    #[test]
    fn range_follows_v4l2_quantization() {
        assert!(is_tv_range(0, 1)); // default, SMPTE 170M
        assert!(!is_tv_range(0, 7)); // default, JPEG colorspace
        assert!(!is_tv_range(1, 1));
        assert!(is_tv_range(2, 7));
    }

    #[test]
    fn capture_time_is_the_buffer_stamp_when_it_is_plausible() {
        let arrival = Instant::now() + Duration::from_secs(10);
        let now = Duration::from_secs(1000);
        let stamped = capture_instant(arrival, now, Some(now - Duration::from_millis(12)));
        assert_eq!(arrival - stamped, Duration::from_millis(12));
        // No stamp, one from the future, one from another clock: the arrival time.
        assert_eq!(capture_instant(arrival, now, None), arrival);
        assert_eq!(
            capture_instant(arrival, now, Some(now + Duration::from_millis(1))),
            arrival
        );
        assert_eq!(
            capture_instant(arrival, now, Some(Duration::from_secs(3))),
            arrival
        );
    }
}
