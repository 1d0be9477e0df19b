//! The video track of a movie file through FFmpeg (libavformat, libavcodec, libswscale via
//! `ffmpeg-next`): each frame with its own timestamp on the file's shared timeline,
//! converted to BGR and turned as the display matrix says (ffplay's orientation).

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use opencv::core::{Mat, MatTraitConst, MatTraitManual, Scalar};

use super::demux::{TrackFeed, open_input, stream_duration, stream_rotation, timeline_origin};

/// How a decoded picture is turned before it is streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// As decoded.
    None,
    /// 90° clockwise.
    Cw90,
    /// 180°.
    Half,
    /// 90° counter-clockwise (270° clockwise).
    Ccw90,
}

impl Rotation {
    /// The turn for `degrees` clockwise, if it is a multiple of 90 (within 1°).
    pub fn from_degrees(degrees: f64) -> Option<Rotation> {
        let d = degrees.rem_euclid(360.0);
        let near = |x: f64| (d - x).abs() < 1.0;
        if near(0.0) || near(360.0) {
            Some(Rotation::None)
        } else if near(90.0) {
            Some(Rotation::Cw90)
        } else if near(180.0) {
            Some(Rotation::Half)
        } else if near(270.0) {
            Some(Rotation::Ccw90)
        } else {
            None
        }
    }
}

/// libswscale's converter, owned by one reader.
struct Scaler(ff::software::scaling::Context);

// SAFETY: an `SwsContext` has no thread affinity; it is owned here and used by one thread
// at a time (the reader is opened on one thread and then moved to the video thread).
unsafe impl Send for Scaler {}

/// The best video track of a file, decoded frame by frame.
pub(super) struct VideoReader {
    path: PathBuf,
    input: ff::format::context::Input,
    decoder: ff::decoder::Video,
    scaler: Option<(Scaler, (ff::format::Pixel, u32, u32))>,
    decoded: ff::frame::Video,
    bgr: ff::frame::Video,
    turned: Mat,
    time_base: f64,
    /// The timeline's zero, seconds.
    origin: f64,
    rotation: Rotation,
    /// Reads the track's packets into the decoder.
    feed: TrackFeed,
    /// Frames per second the container states (average), if sane.
    pub(super) fps: Option<f64>,
    /// Length of the track in seconds, if known.
    pub(super) duration: Option<f64>,
    /// Frames in the track, if the container says.
    pub(super) frames: Option<u64>,
}

impl VideoReader {
    /// Opens the best video track of `path`; `with_audio` says whether the audio track
    /// shares the timeline (its start counts for the origin).
    pub(super) fn open(path: &Path, with_audio: bool) -> Result<VideoReader, String> {
        let input = open_input(path)?;
        let origin = timeline_origin(&input, with_audio);
        let stream = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| "it has no video track (for sound alone, use --audio FILE.wav with a test or webcam source)".to_string())?;
        let index = stream.index();
        let codec_id = stream.parameters().id();
        let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| format!("the video track's parameters are unusable ({e})"))?;
        // Decode on as many threads as there are cores (as OpenCV's backend did): large or
        // fast files keep up in real time.
        let mut threads = ff::codec::threading::Config::kind(ff::codec::threading::Type::Frame);
        threads.count = 0;
        ctx.set_threading(threads);
        let mut decoder = ctx.decoder();
        // Timestamps in the stream's units: the decoder moves a frame's pts past the priming
        // or pre-skip samples it drops (AAC, Opus), which it can only do knowing them.
        decoder.set_packet_time_base(stream.time_base());
        let decoder = decoder.video().map_err(|_| {
            format!(
                "the video codec {} has no decoder in this FFmpeg build",
                codec_name(codec_id)
            )
        })?;
        let time_base = f64::from(stream.time_base());
        let rate = |r: ff::Rational| {
            let f = f64::from(r);
            (r.denominator() != 0 && f.is_finite() && f > 0.0 && f <= 240.0).then_some(f)
        };
        let fps = rate(stream.avg_frame_rate()).or_else(|| rate(stream.rate()));
        let degrees = stream_rotation(&stream).unwrap_or(0.0);
        let rotation = Rotation::from_degrees(degrees).unwrap_or_else(|| {
            log::warn!(
                "{}: the video is to be shown turned by {degrees:.1}°, which is not a multiple of 90°: streamed as decoded",
                path.display()
            );
            Rotation::None
        });
        let duration = stream_duration(&input, &stream);
        let frames = u64::try_from(stream.frames()).ok().filter(|n| *n > 0);
        Ok(VideoReader {
            path: path.to_path_buf(),
            input,
            decoder,
            scaler: None,
            decoded: ff::frame::Video::empty(),
            bgr: ff::frame::Video::empty(),
            turned: Mat::default(),
            time_base,
            origin,
            rotation,
            feed: TrackFeed::new(index, "video"),
            fps,
            duration,
            frames,
        })
    }

    /// The rotation applied to every frame.
    pub(super) fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// Decodes the next frame; returns its time on the shared timeline in ms (negative if
    /// the file gives none), `None` at the end of the track (or where its data ends).
    pub(super) fn grab(&mut self) -> Option<f64> {
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {
                    let ms = match self.decoded.timestamp().or(self.decoded.pts()) {
                        Some(ts) => (ts as f64 * self.time_base - self.origin) * 1000.0,
                        None => -1.0,
                    };
                    return Some(ms);
                }
                Err(ff::Error::Eof) => return None,
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {}
                Err(e) => {
                    log::warn!("{}: video decoding stopped: {e}", self.path.display());
                    return None;
                }
            }
            if self.feed.flushed() {
                return None;
            }
            self.feed
                .feed(&mut self.input, &mut self.decoder, &self.path);
        }
    }

    /// The grabbed frame as BGR, turned for display, into `mat`; false if that fails.
    pub(super) fn retrieve(&mut self, mat: &mut Mat) -> bool {
        match self.convert(mat) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("{}: frame conversion failed: {e}", self.path.display());
                false
            }
        }
    }

    fn convert(&mut self, mat: &mut Mat) -> Result<(), String> {
        let key = (
            self.decoded.format(),
            self.decoded.width(),
            self.decoded.height(),
        );
        if key.1 == 0 || key.2 == 0 {
            return Err("an empty frame".into());
        }
        if self.scaler.as_ref().is_none_or(|(_, k)| *k != key) {
            let ctx = ff::software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                ff::format::Pixel::BGR24,
                key.1,
                key.2,
                ff::software::scaling::Flags::BILINEAR,
            )
            .map_err(|e| format!("no conversion from {:?} to BGR ({e})", key.0))?;
            self.scaler = Some((Scaler(ctx), key));
        }
        let (scaler, _) = self.scaler.as_mut().expect("set above");
        scaler
            .0
            .run(&self.decoded, &mut self.bgr)
            .map_err(|e| e.to_string())?;
        let (w, h) = (key.1 as usize, key.2 as usize);
        let target = if self.rotation == Rotation::None {
            &mut *mat
        } else {
            &mut self.turned
        };
        copy_bgr(&self.bgr, w, h, target)?;
        let flag = match self.rotation {
            Rotation::None => return Ok(()),
            Rotation::Cw90 => opencv::core::ROTATE_90_CLOCKWISE,
            Rotation::Half => opencv::core::ROTATE_180,
            Rotation::Ccw90 => opencv::core::ROTATE_90_COUNTERCLOCKWISE,
        };
        opencv::core::rotate(&self.turned, mat, flag).map_err(|e| e.to_string())
    }

    /// Back to the first frame for the next loop; false if that fails.
    pub(super) fn rewind(&mut self) -> bool {
        match VideoReader::open(&self.path, true) {
            Ok(r) => {
                let origin = self.origin;
                *self = r;
                self.origin = origin;
                true
            }
            Err(e) => {
                log::warn!("cannot loop: {e}");
                false
            }
        }
    }
}

/// Copies a packed BGR24 picture of `w` x `h` into `mat` (reallocated if its shape differs).
fn copy_bgr(frame: &ff::frame::Video, w: usize, h: usize, mat: &mut Mat) -> Result<(), String> {
    let shape_ok = mat.rows() as usize == h
        && mat.cols() as usize == w
        && mat.typ() == opencv::core::CV_8UC3
        && mat.is_continuous();
    if !shape_ok {
        *mat = Mat::new_rows_cols_with_default(
            h as i32,
            w as i32,
            opencv::core::CV_8UC3,
            Scalar::all(0.0),
        )
        .map_err(|e| e.to_string())?;
    }
    let stride = frame.stride(0);
    let src = frame.data(0);
    let dst = mat.data_bytes_mut().map_err(|e| e.to_string())?;
    let row = w * 3;
    if stride < row || src.len() < stride * (h - 1) + row || dst.len() < row * h {
        return Err("a picture smaller than it says".into());
    }
    for y in 0..h {
        dst[y * row..(y + 1) * row].copy_from_slice(&src[y * stride..y * stride + row]);
    }
    Ok(())
}

/// FFmpeg's name of a codec (e.g. "h264"), for messages.
pub(crate) fn codec_name(id: ff::codec::Id) -> String {
    ff::codec::decoder::find(id)
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| format!("{id:?}").to_lowercase())
}
